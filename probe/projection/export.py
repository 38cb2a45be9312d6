"""``probe export``: one parquet file of points (latents, 2-D coordinates, metadata) for other tools.

The file opens directly in pandas (``pd.read_parquet``) and in Embedding Atlas
(``embedding-atlas points.parquet --x x --y y --neighbors neighbors --text text [--image thumbnail]``):
one row per laid-out sample (in store order) with every metadata column and

- ``x`` / ``y``: the projection;
- ``neighbors``: ``{"ids": list<int64>, "distances": list<float>}``, each row's nearest other rows
  as 0-based row numbers of this table (Embedding Atlas's format), from the one kNN graph the
  metrics and layouts share (:func:`probe.cache.graphs.shared_graph`; searched among the exported
  rows when they are a sample); distances as in :class:`metrics.knn.Neighbors`;
- ``text``: a one-line description (``robot · open the drawer · grasp · ep 12 f 30``) for search and tooltips;
- ``thumbnail`` (with ``thumbnails=True``): the row's video frame as JPEG bytes (null without video);
- ``vector``: the latent as a list column (unless ``include_latents=False``).

File-level metadata records the store fingerprint, layer, projection method,
trustworthiness, sampling, the neighbour graph and the store's dataset roots (``datasets``: where
its videos lie, as :class:`probe.store.media.VideoPaths` found them, ``--data-root`` applied), so
that a store imported from the file reads its videos as the source store did. The column names live in
:mod:`probe.store.points_file`, where ``probe import`` recognises the file and takes it back as a store.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.atomic import atomic_file, json_text
from probe.cache.directory import default_cache_dir
from probe.projection.layout import Layout, ProjectionConfig
from probe.projection.project import project_store
from probe.store.points_file import (DATASETS, MARK_COLUMNS, METADATA_KEY, NEIGHBORS, TEXT, THUMBNAIL, VECTOR,
                                     X_COORD, Y_COORD, export_info)
from probe.store.series import store_layer
from probe.store.store import open_store
from probe.validate import FileKind, check_output_path

log = logging.getLogger(__name__)

DEFAULT_NEIGHBORS = 15  # per row: Embedding Atlas lists them for a selected point
THUMBNAIL_HEIGHT = 96  # pixels; smaller frames are kept at their size


def _is_export(path: Path) -> bool:
    """A parquet file with this exporter's metadata and columns (its footer only is read)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    info = export_info(schema.metadata)
    return {"fingerprint", "layer", "method"} <= set(info) and set(MARK_COLUMNS) <= set(schema.names)


#: the file ``probe export`` writes: only such a file is replaced (``overwrite``)
EXPORT_FILE = FileKind("export file", _is_export)


@dataclass(frozen=True)
class ExportResult:
    """Where the points went and the layout they came from."""

    path: Path
    rows: int
    layout: Layout
    layer: str  # the layer exported (the store's default layer when none was named)
    thumbnails: int = 0  # rows given a thumbnail (0 without ``thumbnails=True``)
    with_video: int = 0  # rows that name a video (those a thumbnail is looked for; 0 without ``thumbnails=True``)
    layer_note: str | None = None  # which layer was taken and why, when none was named (for the caller to say)


#: what an output file of export must be called
EXPORT_SUFFIX = ".parquet"


def check_export_name(out: str | Path, flag: str = "--out") -> None:
    """:class:`ConfigError` unless ``out`` ends in ``.parquet``: export writes parquet, and a file called
    ``points.csv`` holding parquet misleads every tool that opens it."""
    from probe.errors import ConfigError

    path = Path(out)
    if path.suffix.lower() != EXPORT_SUFFIX:
        fixed = path.with_name(f"{path.stem or path.name}{EXPORT_SUFFIX}")
        raise ConfigError(f"{flag} '{out}' does not end in {EXPORT_SUFFIX}: probe export writes a parquet file "
                          f"(for pd.read_parquet and Embedding Atlas); name it e.g. '{fixed}'")


def export_points(store_path: str | Path, layer: str | None, out: str | Path, *,
                  projection: ProjectionConfig = ProjectionConfig(max_points=None),
                  cache_dir: str | Path | None = None, include_latents: bool = True,
                  neighbors: int = DEFAULT_NEIGHBORS, thumbnails: bool = False, overwrite: bool = False,
                  progress: bool = False, data_roots: Mapping[str, str | Path] | None = None) -> ExportResult:
    """Write ``out`` (parquet): metadata, ``x``, ``y``, ``neighbors``, ``text``, optionally ``thumbnail`` and
    the latents as a list column (see the module docstring).

    ``layer=None`` exports the store's default layer, its last one, as ``probe export`` without
    ``--layer`` does (:func:`probe.store.series.store_layer`; the choice is logged and returned in
    :attr:`ExportResult.layer` and :attr:`ExportResult.layer_note`); a named layer missing from the store is
    an error naming the ones there.

    Only laid-out rows are written: with ``projection.max_points`` set, a stratified
    sample (said in the file metadata and the log). ``neighbors`` (>= 1) per row;
    ``thumbnails`` decodes every row's frame (minutes for large stores). ``data_roots`` maps dataset
    names to the folders they now live in (``--data-root NAME=PATH``): thumbnails are read there and
    the file records those roots. ``out`` must end in ``.parquet``.

    Every input is checked before any work, in this order: ``neighbors``, the output path (an existing file
    only with ``overwrite``, and only one this exporter wrote), its name, the store, ``data_roots``, the layer;
    ``probe export`` checks none of them itself.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from probe.errors import ConfigError
    from probe.store.media import VideoPaths, check_data_roots

    if neighbors < 1:
        raise ConfigError(f"neighbors must be >= 1, got {neighbors}")
    check_output_path(out, overwrite, kind=EXPORT_FILE)
    check_export_name(out)  # named as --out: probe export leaves this check to export_points
    store = open_store(store_path)
    check_data_roots(data_roots, [store])
    videos = VideoPaths(store, data_roots)
    for warning in videos.warnings if thumbnails else ():
        log.warning("%s", warning)
    layer, note = store_layer(store, layer)  # a named one missing: an error naming the available ones
    if note:
        log.info("%s", note)
    cache = cache_dir or default_cache_dir()
    layout = project_store(store, layer, projection, cache_dir=cache, progress=progress)
    rows = layout.rows
    meta = store.meta.iloc[rows].reset_index(drop=True)
    table = pa.Table.from_pandas(meta, preserve_index=False)
    table = table.append_column(X_COORD, pa.array(layout.coords[:, 0].astype(np.float32)))
    table = table.append_column(Y_COORD, pa.array(layout.coords[:, 1].astype(np.float32)))
    graph = _neighbors(store, layer, rows, neighbors, projection.metric, cache)
    table = table.append_column(NEIGHBORS, graph)
    table = table.append_column(TEXT, pa.array(describe_rows(meta), pa.string()))
    n_thumbnails = n_video = 0
    if thumbnails:
        images = frame_thumbnails(store, rows, progress=progress, videos=videos)
        n_thumbnails = sum(image is not None for image in images)
        if C.VIDEO in meta.columns and C.VIDEO_TIMESTAMP in meta.columns:
            n_video = int(meta[C.VIDEO].map(lambda v: isinstance(v, str) and v != "").sum())
        table = table.append_column(THUMBNAIL, pa.array(images, pa.binary()))
    if include_latents:
        X = np.ascontiguousarray(store.matrix(layer)[rows], dtype=np.float32)
        offsets = pa.array(np.arange(0, X.size + 1, X.shape[1], dtype=np.int32))
        table = table.append_column(VECTOR, pa.ListArray.from_arrays(offsets, pa.array(X.reshape(-1))))
    info = {"store": str(store.path), "fingerprint": store.fingerprint, "layer": layer, "method": layout.method,
            "trustworthiness": layout.trustworthiness, "sampled": layout.sampled, "n_total": layout.n_total,
            "params": layout.params, "neighbors": {"k": int(neighbors), "metric": str(projection.metric),
                                                  "among": "sample" if layout.sampled else "all rows"},
            DATASETS: _dataset_roots(videos, meta)}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           METADATA_KEY: json_text(info, indent=None, default=str).encode()})
    if layout.sampled:
        log.warning("exported a stratified sample of %d of %d points (max_points)", len(rows), layout.n_total)
    with atomic_file(out, overwrite=overwrite, kind=EXPORT_FILE) as tmp:
        pq.write_table(table, tmp)
    return ExportResult(Path(out), len(rows), layout, layer, n_thumbnails, n_video, layer_note=note or None)


def _dataset_roots(videos, meta: pd.DataFrame) -> list[dict[str, Any]]:
    """The roots of the exported rows' datasets, as a store's provenance records them (absolute, resolved;
    ``media_roots``: other folders the store allows its videos in): where ``videos`` finds them now."""
    present = set(meta[C.DATASET].astype(str)) if C.DATASET in meta.columns else set()
    out = []
    for name, entry in videos.roots.items():
        if name in present and entry.root is not None:
            extra = [str(p) for p in entry.allowed[1:]]
            out.append({"name": name, "root": str(entry.root), **({"media_roots": extra} if extra else {})})
    return out


def _neighbors(store, layer: str, rows: np.ndarray, k: int, metric: str, cache: str | Path):
    """The ``neighbors`` column: each exported row's ``k`` nearest other exported rows (0-based positions).

    All rows: the shared, cached kNN graph of the metrics and layouts (its first ``k``).
    A sample: an exact search among the sampled rows, so that every row keeps ``k``.
    """
    import pyarrow as pa

    from metrics.knn import knn
    from metrics.spec import MetricsConfig
    from probe.cache.graphs import shared_graph

    X = store.matrix(layer)
    n = len(rows)
    k = min(int(k), n - 1)
    if n == len(X):  # rows are 0..n-1 in store order
        graph = shared_graph(X, fingerprint=store.fingerprint, layer=layer, k=max(k, MetricsConfig.k),
                             metric=metric, cache_dir=cache).top(k)
    else:
        graph = knn(np.ascontiguousarray(X[rows], dtype=np.float32), k=k, metric=metric)
    keep = graph.indices >= 0  # -1 where a row has fewer than k neighbours
    offsets = pa.array(np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32))
    ids = pa.ListArray.from_arrays(offsets, pa.array(graph.indices[keep].astype(np.int64)))
    distances = pa.ListArray.from_arrays(offsets, pa.array(graph.distances[keep].astype(np.float32)))
    return pa.StructArray.from_arrays([ids, distances], names=["ids", "distances"])


def describe_rows(meta: pd.DataFrame) -> list[str]:
    """One line per row for search and tooltips: ``robot · open the drawer · grasp · ep 12 f 30``."""
    return [f"{emb} · {task} · {stage} · ep {ep} f {frame}" for emb, task, stage, ep, frame in
            zip(meta[C.EMBODIMENT].astype(str), meta[C.TASK].astype(str), meta[C.STAGE].astype(str),
                meta[C.EPISODE], meta[C.FRAME])]


def frame_thumbnails(store, rows: np.ndarray, *, height: int = THUMBNAIL_HEIGHT, quality: int = 85,
                     progress: bool = False, videos=None) -> list[bytes | None]:
    """Each row's video frame as JPEG bytes (at most ``height`` pixels high), None where the row has no video.

    Frames are decoded one video file at a time (:func:`probe.readers.video.decode_at`, all of a
    file's wanted times in one pass); files are found through the store's
    :class:`probe.store.media.VideoPaths` (``videos``, default: the store's recorded roots; a refused
    or missing file leaves its rows without thumbnails, with a warning).
    """
    from probe.errors import ProbeError
    from probe.images import encode_image, fit_height
    from probe.progress import track
    from probe.readers.video import decode_at
    from probe.store.media import VideoPaths

    out: list[bytes | None] = [None] * len(rows)
    meta = store.meta.iloc[rows]
    if C.VIDEO not in meta.columns or C.VIDEO_TIMESTAMP not in meta.columns:
        log.warning("store '%s' has no video columns: no thumbnails", store.path)
        return out
    videos = videos if videos is not None else VideoPaths(store)
    groups = meta.assign(_pos=np.arange(len(rows))).dropna(subset=[C.VIDEO]).groupby([C.DATASET, C.VIDEO], sort=False)
    for (dataset, value), group in track(groups, total=groups.ngroups, desc="thumbnails", enabled=progress):
        found = videos.find(value, dataset)
        if found.path is None:
            if found.problem is not None:
                log.warning("no thumbnails for %d rows of video '%s': %s", len(group), value, found.problem)
            continue
        try:
            frames = decode_at(found.path, group[C.VIDEO_TIMESTAMP].to_numpy(np.float64))
        except ProbeError as exc:
            log.warning("no thumbnails for %d rows of video '%s': %s", len(group), value, exc)
            continue
        for pos, frame in zip(group["_pos"].to_numpy(), frames):
            small = fit_height(frame, height) if frame.shape[0] > height else frame
            out[int(pos)] = encode_image(small, ".jpg", quality)
    return out
