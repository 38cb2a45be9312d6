"""Turn latents computed elsewhere (JAX models such as Octo or openpi) into a store.

Accepted sources:

* ``.parquet``: one row per sample; each column holding fixed-length lists or
  arrays is a layer (``latent`` or any name, e.g. ``trunk.block3``); scalar columns
  are metadata (see :mod:`probe.columns`); extra metadata columns must start with
  ``x_``.
* ``.npz``: ``X`` or ``latent`` (a 2-D array: layer ``latent``) and/or
  ``latent.<layer>`` arrays, plus one 1-D array per metadata column.
* a parquet file ``probe export`` wrote (:mod:`probe.store.points_file`): its
  ``vector`` column becomes the exported layer, its layout columns (``x``, ``y``,
  ``neighbors``, ``text``, ``thumbnail``) are dropped and its metadata columns, a
  store's, are kept as they are; the store's provenance says so (``probe_export``). The dataset
  roots the file records (where the source store's videos lie) become the imported store's, so its
  ``video`` values, relative to those roots, resolve as the source store's did.

Required metadata: ``embodiment``, ``episode``, ``task``, ``stage``. Missing
optional columns are derived: ``dataset`` (the file's stem), ``frame`` (order
within the episode), ``timestamp`` (frame / fps, 30 by default), ``progress`` and
``stage_progress`` (position within the episode and within each stage run), and
``sample_id`` (``<dataset>/<embodiment>/<episode>/<frame>``).
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import ImportSourceError, StoreNotFoundError
from probe.store.media import video_roots
from probe.store.points_file import VECTOR, PointsFile, points_file
from probe.store.store import MANIFEST, STORE_KIND, Store
from probe.store.writer import write_store
from probe.validate import check_output_path

REQUIRED_ON_IMPORT = (C.EMBODIMENT, C.EPISODE, C.TASK, C.STAGE)
KNOWN_META = set(C.REQUIRED) | set(C.MEDIA)
EXTRA_PREFIX = "x_"
DEFAULT_FPS = 30.0
#: export's metadata kept in the provenance of a store imported from a points file
EXPORT_PROVENANCE = ("store", "fingerprint", "layer", "method", "sampled", "n_total")

log = logging.getLogger(__name__)


def _fraction_within(groups: pd.Series | list[pd.Series], order: pd.Series, frame: pd.DataFrame) -> np.ndarray:
    """Position of each row within its group, ordered by ``order``, scaled to [0, 1]."""
    keyed = frame.assign(_order=order.to_numpy())
    rank = keyed.groupby(groups, sort=False)["_order"].rank(method="first") - 1
    size = keyed.groupby(groups, sort=False)["_order"].transform("size") - 1
    out = (rank / size.where(size > 0, 1)).to_numpy(dtype=np.float64)
    return np.clip(out, 0.0, 1.0)


def complete_meta(meta: pd.DataFrame, *, dataset: str, fps: float = DEFAULT_FPS) -> pd.DataFrame:
    """Fill the derivable metadata columns of an imported table (see module docstring)."""
    missing = [c for c in REQUIRED_ON_IMPORT if c not in meta.columns]
    if missing:
        raise ImportSourceError(
            f"import source lacks required column(s) {missing}; every sample needs "
            f"{list(REQUIRED_ON_IMPORT)} (see 'Importing latents' in the README)"
        )
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise ImportSourceError(f"--fps must be a positive frame rate, got {fps}")
    meta = meta.copy()
    for col in (C.EPISODE, C.FRAME):
        if col in meta:
            meta[col] = _integer_ids(meta[col], col)
    for col in (C.EMBODIMENT, C.TASK, C.STAGE):
        meta[col] = meta[col].astype(str)
    if C.DATASET not in meta:
        meta[C.DATASET] = dataset
    meta[C.DATASET] = meta[C.DATASET].astype(str)
    episode = [meta[C.DATASET], meta[C.EMBODIMENT], meta[C.EPISODE]]
    if C.FRAME not in meta:
        meta[C.FRAME] = meta.groupby(episode, sort=False).cumcount()
    meta[C.EPISODE] = meta[C.EPISODE].astype(np.int64)
    meta[C.FRAME] = meta[C.FRAME].astype(np.int64)
    if C.TIMESTAMP not in meta:
        meta[C.TIMESTAMP] = meta[C.FRAME] / fps
    if C.PROGRESS not in meta:
        meta[C.PROGRESS] = _fraction_within(episode, meta[C.FRAME], meta)
    if C.STAGE_PROGRESS not in meta:
        ordered = meta.sort_values([C.DATASET, C.EMBODIMENT, C.EPISODE, C.FRAME], kind="stable")
        run = (ordered[C.STAGE] != ordered.groupby([C.DATASET, C.EMBODIMENT, C.EPISODE], sort=False)[C.STAGE].shift()).cumsum()
        run = run.reindex(meta.index)
        meta[C.STAGE_PROGRESS] = _fraction_within(run, meta[C.FRAME], meta)
    if C.SAMPLE_ID not in meta:
        meta[C.SAMPLE_ID] = (meta[C.DATASET] + "/" + meta[C.EMBODIMENT] + "/" + meta[C.EPISODE].astype(str)
                             + "/" + meta[C.FRAME].astype(str))
    meta[C.SAMPLE_ID] = meta[C.SAMPLE_ID].astype(str)
    for col in (C.TIMESTAMP, C.PROGRESS, C.STAGE_PROGRESS):
        meta[col] = meta[col].astype(np.float64)
    ordered_cols = [c for c in C.REQUIRED] + [c for c in meta.columns if c not in C.REQUIRED]
    return meta[ordered_cols]


def _integer_ids(values: pd.Series, col: str) -> pd.Series:
    """``values`` as int64, or an error naming the column when they are not whole numbers."""
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        first = next((v for v in values if not isinstance(v, (int, np.integer))), values.iloc[0])
        raise ImportSourceError(
            f"column '{col}' must hold integer ids, got {values.dtype} values such as {first!r}; "
            f"map them to integers first (e.g. with pandas.factorize)"
        )
    numbers = values.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        raise ImportSourceError(
            f"column '{col}' must hold integer ids, but {int(bad.sum())} row(s) hold "
            f"{numbers[bad][0]!r} (first at row {int(np.flatnonzero(bad)[0])}); fill or drop them before importing"
        )
    return values.astype(np.int64)


def _check_unknown(columns: list[str], src: Path) -> None:
    unknown = [c for c in columns if c not in KNOWN_META and not c.startswith(EXTRA_PREFIX)]
    if unknown:
        raise ImportSourceError(
            f"'{src}': unknown column(s) {unknown}; metadata columns must be among {sorted(KNOWN_META)}; "
            f"rename them, or prefix extra metadata with '{EXTRA_PREFIX}' to keep it (e.g. '{EXTRA_PREFIX}{unknown[0]}')"
        )


def _stack(values: Any, name: str, src: Path) -> np.ndarray:
    try:
        lengths = {len(v) for v in values}
    except TypeError as exc:
        raise ImportSourceError(f"'{src}': column '{name}' mixes vectors and scalars") from exc
    if len(lengths) > 1:
        raise ImportSourceError(
            f"'{src}': column '{name}' holds ragged vectors (lengths {sorted(lengths)[:5]}); "
            "every latent of one layer must have the same dimension: pool or pad them first"
        )
    X = np.asarray(np.stack([np.asarray(v, dtype=np.float32) for v in values]), dtype=np.float32)
    if X.ndim != 2:
        raise ImportSourceError(f"'{src}': column '{name}' must hold 1-D vectors, got shape {X.shape[1:]} per row")
    return X


def _parquet(src: Path, columns: list[str] | None = None) -> pd.DataFrame:
    try:
        return pd.read_parquet(src, columns=columns)
    except Exception as exc:
        raise ImportSourceError(f"'{src}' cannot be read as parquet ({type(exc).__name__}: {exc})") from exc


def _points_file(src: Path) -> PointsFile | None:
    """``src`` as a file ``probe export`` wrote (its footer only is read), or None."""
    import pyarrow.parquet as pq

    try:
        return points_file(pq.read_schema(src))
    except Exception as exc:
        raise ImportSourceError(f"'{src}' cannot be read as parquet ({type(exc).__name__}: {exc})") from exc


def _read_export(src: Path, points: PointsFile) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """A points file's metadata and latents (the exported layer); its layout columns are not read."""
    if not points.has_latents:
        store, layer = points.info.get("store"), points.layer
        again = shlex.join(["probe", "export", str(store or "STORE"), *(["--layer", layer] if layer else []),
                            "--out", "FILE"])
        raise ImportSourceError(
            f"'{src}' is a probe export written with --no-latents: it holds no latents to import; "
            f"export again without --no-latents ({again})"
        )
    table = _parquet(src, points.meta_columns + [VECTOR])
    if len(table) == 0:
        raise ImportSourceError(f"'{src}' has no rows; nothing to import")
    layers = {points.layer or VECTOR: _stack(table[VECTOR].tolist(), VECTOR, src)}
    log.info("'%s' is a probe export file: dropped its layout columns %s", src, ", ".join(points.dropped))
    return table.drop(columns=[VECTOR]), layers


def _read_parquet(src: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    table = _parquet(src)
    if len(table) == 0:
        raise ImportSourceError(f"'{src}' has no rows; nothing to import")
    layer_cols = [c for c in table.columns
                  if table[c].dtype == object and isinstance(table[c].iloc[0], (list, tuple, np.ndarray))]
    if not layer_cols:
        raise ImportSourceError(
            f"'{src}' has no latent column: expected a column of fixed-length vectors, e.g. 'latent'"
        )
    _check_unknown([c for c in table.columns if c not in layer_cols], src)
    layers = {c: _stack(table[c].tolist(), c, src) for c in layer_cols}
    return table.drop(columns=layer_cols), layers


def _read_npz(src: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    try:
        data = np.load(src, allow_pickle=False)
        arrays = {k: data[k] for k in data.files}
    except Exception as exc:
        raise ImportSourceError(
            f"'{src}' cannot be read as .npz without pickles ({type(exc).__name__}: {exc}); "
            "save label arrays as strings or numbers, not Python objects"
        ) from exc
    layers: dict[str, np.ndarray] = {}
    for key in list(arrays):
        if key in ("X", "latent"):
            layers["latent"] = arrays.pop(key)
        elif key.startswith("latent."):
            layers[key.split(".", 1)[1]] = arrays.pop(key)
    if not layers:
        raise ImportSourceError(f"'{src}' has no latents: expected an array 'X' or 'latent' (or 'latent.<layer>')")
    _check_unknown(list(arrays), src)
    n = {name: X.shape[0] for name, X in layers.items()}
    for name, X in layers.items():
        if X.ndim != 2:
            raise ImportSourceError(f"'{src}': latents '{name}' must be 2-D (n, dim), got shape {X.shape}")
    for key, arr in arrays.items():
        if arr.ndim != 1:
            raise ImportSourceError(f"'{src}': label array '{key}' must be 1-D, got shape {arr.shape}")
    sizes = set(n.values()) | {a.shape[0] for a in arrays.values()}
    if len(sizes) > 1:
        raise ImportSourceError(f"'{src}': arrays have different lengths {sorted(sizes)}; all must have one row per sample")
    meta = pd.DataFrame({k: (v.astype(str) if v.dtype.kind in "USO" else v) for k, v in arrays.items()})
    return meta, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in layers.items()}


def _roots(meta: pd.DataFrame, recorded: list[dict[str, Any]] | None) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The dataset roots of an imported table (videos are read only from inside them) and the table with its
    ``video`` values relative to them: the roots a points file recorded (its values are already relative
    to them, as in the source store), and for every other dataset those :func:`video_roots` finds."""
    datasets = meta[C.DATASET].astype(str)
    present = set(datasets)
    carried = [d for d in recorded or [] if d["name"] in present]
    rest = ~datasets.isin({d["name"] for d in carried}).to_numpy()
    if C.VIDEO not in meta.columns or not rest.any():
        return meta, carried
    if not carried:
        return video_roots(meta)
    found_meta, found = video_roots(meta[rest])
    meta = meta.copy()
    meta[C.VIDEO] = meta[C.VIDEO].astype(object)
    meta.loc[rest, C.VIDEO] = found_meta[C.VIDEO].to_numpy()
    return meta, carried + found


def import_latents(src: str | Path, out: str | Path, *, overwrite: bool = False, fps: float = DEFAULT_FPS) -> Store:
    """Import a ``.parquet`` or ``.npz`` of precomputed latents, or a file ``probe export`` wrote, as a store at
    ``out`` (see the module docstring)."""
    check_output_path(out, overwrite, kind=STORE_KIND)  # before reading the source
    src = Path(src)
    if not src.exists():
        raise StoreNotFoundError(f"import source '{src}' does not exist; check the path")
    if src.is_dir():
        what = "a latent store already" if (src / MANIFEST).is_file() else "a directory"
        raise ImportSourceError(f"'{src}' is {what}; probe import takes one .parquet or .npz file of latents "
                                "(a store opens as it is: probe info, probe metrics)")
    suffix = src.suffix.lower()
    points = _points_file(src) if suffix == ".parquet" else None
    if points is not None:
        meta, layers = _read_export(src, points)
    elif suffix == ".parquet":
        meta, layers = _read_parquet(src)
    elif suffix == ".npz":
        meta, layers = _read_npz(src)
    else:
        raise ImportSourceError(f"'{src}': unknown source type '{suffix}'; expected .parquet or .npz")
    if any(X.shape[0] == 0 for X in layers.values()):
        raise ImportSourceError(f"'{src}' has no rows; nothing to import")
    for name, X in layers.items():
        if X.shape[1] == 0:
            raise ImportSourceError(f"'{src}': latents '{name}' have width 0 (shape {X.shape}); "
                                    "each sample needs a vector of at least one value")
    meta = complete_meta(meta, dataset=src.stem, fps=fps)
    meta, datasets = _roots(meta, points.datasets if points is not None else None)
    provenance = {"source": "import", "imported_from": str(src.resolve()), "fps": fps,
                  **({"datasets": datasets} if datasets else {})}
    if points is not None:
        provenance["probe_export"] = {**{k: points.info[k] for k in EXPORT_PROVENANCE if k in points.info},
                                      "dropped": list(points.dropped)}
    return write_store(out, meta, layers, provenance=provenance, overwrite=overwrite)
