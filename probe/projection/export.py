"""``probe export``: one parquet file of points (latents, 2-D coordinates, metadata) for other tools.

The file opens directly in pandas (``pd.read_parquet``) and Embedding Atlas
(``embedding-atlas points.parquet --x x --y y``): one row per laid-out sample with
every metadata column, ``x`` / ``y`` from the projection, ``row`` (the store row)
and the latent vector as a list column (``vector``). File-level metadata records
the store fingerprint, layer, projection method, trustworthiness and sampling.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.atomic import atomic_file
from probe.cache.directory import default_cache_dir
from probe.projection.layout import Layout, ProjectionConfig
from probe.projection.project import project_store
from probe.store.store import open_store
from probe.validate import check_output_path

log = logging.getLogger(__name__)

VECTOR = "vector"


@dataclass(frozen=True)
class ExportResult:
    """Where the points went and the layout they came from."""

    path: Path
    rows: int
    layout: Layout


def export_points(store_path: str | Path, layer: str, out: str | Path, *,
                  projection: ProjectionConfig = ProjectionConfig(max_points=None),
                  cache_dir: str | Path | None = None, include_latents: bool = True,
                  overwrite: bool = False, progress: bool = False) -> ExportResult:
    """Write ``out`` (parquet): metadata, ``x``, ``y``, ``row`` and (optionally) the latents as a list column.

    Only laid-out rows are written: with ``projection.max_points`` set, a stratified
    sample (said in the file metadata and the log).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_output_path(out, overwrite, what="export file")
    store = open_store(store_path)
    store.layer_info(layer)  # a clear error naming the store, the layer and the available ones
    layout = project_store(store, layer, projection, cache_dir=cache_dir or default_cache_dir(), progress=progress)
    rows = layout.rows
    meta = store.meta.iloc[rows].reset_index(drop=True)
    table = pa.Table.from_pandas(meta, preserve_index=False)
    table = table.append_column("row", pa.array(rows.astype(np.int64)))
    table = table.append_column("x", pa.array(layout.coords[:, 0].astype(np.float32)))
    table = table.append_column("y", pa.array(layout.coords[:, 1].astype(np.float32)))
    if include_latents:
        X = np.ascontiguousarray(store.matrix(layer)[rows], dtype=np.float32)
        offsets = pa.array(np.arange(0, X.size + 1, X.shape[1], dtype=np.int32))
        table = table.append_column(VECTOR, pa.ListArray.from_arrays(offsets, pa.array(X.reshape(-1))))
    info = {"store": str(store.path), "fingerprint": store.fingerprint, "layer": layer, "method": layout.method,
            "trustworthiness": layout.trustworthiness, "sampled": layout.sampled, "n_total": layout.n_total,
            "params": layout.params}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"embodiment_probe": json.dumps(info, default=str).encode()})
    if layout.sampled:
        log.warning("exported a stratified sample of %d of %d points (max_points)", len(rows), layout.n_total)
    with atomic_file(out, overwrite=overwrite, what="export file") as tmp:
        pq.write_table(table, tmp)
    return ExportResult(Path(out), len(rows), layout)
