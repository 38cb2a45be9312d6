"""Loading the stores: :func:`prepare` computes everything the app shows before the server starts.

It opens the stores (one per checkpoint), picks the map points (a deterministic
subsample by sample id), registers the videos, lays out each layer in 2-D (cached,
warm-started and aligned across checkpoints), builds the nearest-clip indexes and
computes the metrics records.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboard.state.metrics_panel import layer_metrics
from dashboard.state.neighbours import NeighbourSearch
from dashboard.state.prepared import Checkpoint, Prepared, View
from probe import columns as C
from probe.errors import ConfigError
from probe.progress import track
from probe.store.media import FIX, VIDEO_SUFFIXES, VideoPaths, check_data_roots
from probe.store.series import default_layer, training_order
from probe.store.store import Store, layer_filename, open_store
from probe.validate import check_layer

log = logging.getLogger(__name__)

PROGRESS_LEVELS = 32  # progress colour is quantised to this many steps


def _sample_rows(meta: pd.DataFrame, max_points: int) -> np.ndarray:
    """Deterministic subsample by hashed sample id: the same samples are kept in every checkpoint."""
    n = len(meta)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    h = pd.util.hash_pandas_object(meta[C.SAMPLE_ID].astype(str), index=False).to_numpy()
    return np.sort(np.argpartition(h, max_points)[:max_points]).astype(np.int64)


def _register_videos(store: Store, media: dict[str, Path], data_roots: Mapping[str, Path] | None,
                     roots: set[str]) -> tuple[np.ndarray, list[str]]:
    """Register the store's servable videos: per-row index into the token list (-1: no video shown).

    Only files :class:`probe.store.media.VideoPaths` accepts (video files inside the store's
    dataset roots) are registered, each under a random token of this process (the same file
    keeps its token across checkpoints). The rows naming anything else are left out with one
    warning; rows whose video is missing with another.
    """
    meta = store.meta
    code = np.full(len(meta), -1, dtype=np.int32)
    if C.VIDEO not in meta.columns:
        return code, []
    videos = VideoPaths(store, data_roots)
    roots.update(str(entry.root) for entry in videos.roots.values() if entry.root is not None)
    for warning in videos.warnings:
        log.warning(warning)
    values = meta[C.VIDEO].astype("string").fillna("")
    keys, uniques = pd.factorize(meta[C.DATASET].astype(str) + "\0" + values)
    token_of = {path: token for token, path in media.items()}
    tokens: list[str] = []
    problems: dict[bool, list[tuple[int, str]]] = {True: [], False: []}  # refused -> (key, problem)
    key_code = np.full(len(uniques), -1, dtype=np.int32)
    for i, key in enumerate(uniques):
        dataset, _, value = key.partition("\0")
        found = videos.find(value, dataset)
        if found.problem is not None:
            problems[found.refused].append((i, found.problem))
            continue
        if found.path is None:
            continue
        if found.path not in token_of:
            token_of[found.path] = secrets.token_hex(10)
            media[token_of[found.path]] = found.path
        key_code[i] = len(tokens)
        tokens.append(token_of[found.path])
    code[:] = key_code[keys]
    for refused, found in problems.items():
        if found:
            log.warning(_rows_warning(store, keys, found, refused))
    return code, tokens


def _rows_warning(store: Store, keys: np.ndarray, found: list[tuple[int, str]], refused: bool) -> str:
    """One line naming the rows left without video: how many, the first few and their problems."""
    rows = np.flatnonzero(np.isin(keys, [i for i, _ in found]))
    first = ", ".join(str(r) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
    what = f"{len(rows)} row(s) (rows {first}) naming {len(found)} file(s)"
    if refused:
        return (f"store '{store.path}': {what} are left out, e.g. {found[0][1]}; only video files "
                f"({', '.join(VIDEO_SUFFIXES)}) inside the store's dataset roots are served; {FIX}")
    return (f"store '{store.path}': {what} have no video, e.g. {found[0][1]}; they are shown without frames "
            f"({FIX})")


def _checkpoint(name: str, store: Store, max_points: int, categories: dict[str, list[str]],
                media: dict[str, Path], data_roots: Mapping[str, Path] | None, roots: set[str]) -> Checkpoint:
    meta = store.meta
    rows = _sample_rows(meta, max_points)
    point_of_row = np.full(len(meta), -1, dtype=np.int64)
    point_of_row[rows] = np.arange(len(rows))
    points = meta.iloc[rows].reset_index(drop=True).copy()
    points["episode_key"] = C.episode_keys(points)
    codes = {}
    for col, name_ in ((C.TASK, "task"), (C.STAGE, "stage"), (C.EMBODIMENT, "embodiment"),
                       ("episode_key", "episode")):
        cats = pd.Categorical(points[col].astype(str), categories=categories[name_])
        codes[name_] = cats.codes.astype(np.int32)
    codes["progress"] = np.clip((points[C.PROGRESS].to_numpy(float) * PROGRESS_LEVELS).astype(np.int32),
                                0, PROGRESS_LEVELS - 1)
    order = np.lexsort((points[C.FRAME].to_numpy(), codes["episode"]))
    ep_sorted = codes["episode"][order]
    bounds = np.flatnonzero(np.diff(ep_sorted)) + 1
    episode_points = {int(ep_sorted[g[0]]): g for g in np.split(order, bounds) if len(g)} if len(order) else {}
    video_code, tokens = _register_videos(store, media, data_roots, roots)
    return Checkpoint(name, store, rows, point_of_row, points, codes, episode_points, video_code, tokens,
                      pd.Index(meta[C.SAMPLE_ID].astype(str)))


def _layout(ck: Checkpoint, layer: str, method: str, previous: Any | None, cache: Path | None) -> Any:
    """A :class:`probe.projection.project.Layout` of the map points, warm-started from ``previous`` (cached)."""
    from probe.projection.layout import ProjectionConfig
    from probe.projection.project import project

    config = ProjectionConfig(method=method, max_points=None)
    return project(ck.store.latents(layer), config, fingerprint=ck.store.fingerprint, cache_dir=cache,
                   previous=previous, rows=ck.rows)


def _align(coords: np.ndarray, ck: Checkpoint, ref_ck: Checkpoint, ref_coords: np.ndarray) -> np.ndarray:
    """Rotate/reflect/scale ``coords`` onto the reference layout over the samples both maps share."""
    ref_pos = ref_ck.sample_index.get_indexer(ck.points[C.SAMPLE_ID].astype(str))
    ref_point = np.where(ref_pos >= 0, ref_ck.point_of_row[np.maximum(ref_pos, 0)], -1)
    both = ref_point >= 0
    if both.sum() < 3:
        return coords
    A = coords[both].astype(np.float64)
    B = ref_coords[ref_point[both]].astype(np.float64)
    mu_a, mu_b = A.mean(0), B.mean(0)
    U, S, Vt = np.linalg.svd((A - mu_a).T @ (B - mu_b))
    R = U @ Vt
    scale = S.sum() / max(((A - mu_a) ** 2).sum(), 1e-12)
    return (((coords - mu_a) @ R) * scale + mu_b).astype(np.float32)


class Views(Mapping):
    """The (checkpoint index, layer) -> :class:`View` map, each view prepared on first use.

    A view's layout is warm-started from the previous checkpoint's and aligned to the first
    checkpoint's, so preparing checkpoint i of a layer prepares 0..i of it first. Thread-safe:
    the server's request threads and :meth:`start`'s background thread share one lock per layer.

    A ``temporary`` ``index_root`` (no cache) is removed by :meth:`close`, or when the views are
    garbage-collected or the interpreter exits, whichever comes first.
    """

    def __init__(self, checkpoints: list[Checkpoint], layers: list[str], *, method: str, cache_dir: Path | None,
                 index_root: Path, k: int, metrics_config: Any, temporary: bool = False) -> None:
        self.checkpoints, self.layers, self.method = checkpoints, layers, method
        self.cache_dir, self.index_root, self.k, self.metrics_config = cache_dir, index_root, k, metrics_config
        self._remove = weakref.finalize(self, shutil.rmtree, str(index_root), ignore_errors=True) if temporary else None
        self.order = [(i, layer) for layer in layers for i in range(len(checkpoints))]
        self._views: dict[tuple[int, str], View] = {}
        self._previous: dict[str, Any] = {}
        self._locks = {layer: threading.Lock() for layer in layers}
        self.error: str | None = None

    def __getitem__(self, key: tuple[int, str]) -> View:
        if key in self._views:
            return self._views[key]
        i, layer = key
        if layer not in self._locks or not 0 <= i < len(self.checkpoints):
            raise KeyError(key)
        with self._locks[layer]:
            for j in range(i + 1):
                if (j, layer) not in self._views:
                    self._views[(j, layer)] = self._build(j, layer)
        return self._views[key]

    def _build(self, i: int, layer: str) -> View:
        ck = self.checkpoints[i]
        lay = _layout(ck, layer, self.method, self._previous.get(layer), self.cache_dir)
        self._previous[layer] = lay
        coords = np.asarray(lay.coords, dtype=np.float32)
        if i > 0:  # warm starts keep maps close; a similarity transform makes them comparable
            coords = _align(coords, ck, self.checkpoints[0], self._views[(0, layer)].coords)
        index_dir = self.index_root / f"{ck.store.fingerprint[:16]}-{layer_filename(layer)[:-4]}"
        search = NeighbourSearch.build(ck.store, layer, ck.row_tokens(), self.k, index_dir)
        record, gaps = layer_metrics(ck.store, layer, self.metrics_config, self.cache_dir)
        return View(i, layer, coords, lay.method, float(lay.trustworthiness), search, record, gaps)

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)

    def close(self) -> None:
        """Remove the temporary index folder (none with a cache); views not yet prepared cannot be after this."""
        if self._remove is not None:
            self._remove()

    def ready(self) -> int:
        """How many views are prepared."""
        return len(self._views)

    def start(self) -> threading.Thread:
        """Prepare every view in the background (a daemon thread), in checkpoint order per layer."""
        def work() -> None:
            for key in self.order:
                try:
                    self[key]
                except Exception as exc:  # shown in the page; the view is tried again on first use
                    self.error = f"could not prepare {self.checkpoints[key[0]].name} · {key[1]}: {exc}"
                    log.warning(self.error)
                    return

        thread = threading.Thread(target=work, name="probe-dashboard-prepare", daemon=True)
        thread.start()
        return thread


def prepare(stores: Sequence[str | Path | Store], *, layers: str | Sequence[str] | None = None,
            max_points: int = 200_000, cache: str | Path | None = None, k: int = 8,
            method: str = "umap", metrics_config: Any | None = None, progress: bool = False,
            data_roots: Mapping[str, str | Path] | None = None, lazy: bool = False,
            start: str | None = None) -> Prepared:
    """Open the stores (one per checkpoint) and compute everything the app shows.

    Parameters
    ----------
    stores : paths of latent stores (or opened stores), one per checkpoint, in any order.
        Checkpoints are labelled and ordered as in the report (:func:`probe.store.series.training_order`:
        series in order of first appearance, each by training step or pre-training diversity).
    layers : layer name(s) to prepare; all layers the stores share when None.
    max_points : at most this many points per map (a deterministic subsample by sample id).
    cache : cache directory for layouts and indexes (None: nothing cached, indexes in a temporary directory
        removed by :meth:`Prepared.close <dashboard.state.prepared.Prepared.close>`, on garbage collection or at exit).
    k : human clips listed for a clicked point.
    method : layout method, "umap" (warm-started across checkpoints) or "pca".
    metrics_config : :class:`metrics.suite.MetricsConfig` of the metrics panel (default:
        :func:`probe.measure.suite.interactive_config`, per stage).
    progress : show a progress bar.
    data_roots : dataset name -> the folder a moved dataset now lives in (``--data-root``); videos
        are served only from inside the stores' dataset roots (:mod:`probe.store.media`).
    lazy : prepare only the first store's map of the ``start`` layer now; every other (store, layer) is
        prepared on first use or by :meth:`Views.start` in the background (``probe serve``). Default: all now.
    start : the layer the page opens on (the others stay in its layer menu and are prepared after it);
        default: :func:`probe.store.series.default_layer` of the prepared layers (the last), said in
        ``Prepared.start_note``.

    Raises
    ------
    StoreError
        A store is missing or corrupt (raised before any server starts).
    ConfigError, LayerNotFoundError
        Bad options or a layer no store holds.
    """
    if not stores:
        raise ConfigError("no store given; pass one or more latent store directories (one per checkpoint)")
    if max_points < 10:
        raise ConfigError(f"max_points must be >= 10, got {max_points}")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if method not in ("umap", "pca"):
        raise ConfigError(f"method must be 'umap' or 'pca', got {method!r}")
    if metrics_config is None:
        from probe.measure.suite import interactive_config

        metrics_config = interactive_config()
    opened = [s if isinstance(s, Store) else open_store(s) for s in stores]
    check_data_roots(data_roots, opened)
    ordered = training_order(opened)  # the checkpoint menu in training order, labelled as in the report
    opened, names = [c.store for c in ordered], [c.label for c in ordered]
    roots = {name: Path(p) for name, p in (data_roots or {}).items()}
    common = [layer for layer in opened[0].layers if all(layer in s.layers for s in opened[1:])]
    if not common:
        raise ConfigError("the stores share no layer; pass stores extracted from the same model layers "
                          f"(layers: {', '.join(f'{s.path.name}: {s.layers}' for s in opened)})")
    if layers is None:
        chosen = common
    else:
        chosen = [layers] if isinstance(layers, str) else list(layers)
        for layer in chosen:
            check_layer(layer, common, where="the stores", hint="run 'probe info STORE' to list layers")
    note = None
    if start is None:
        start, note = default_layer(chosen, whose="the shown layers'", option="--start-layer")
    else:
        check_layer(start, chosen, where="the layers shown", hint="name a shown layer (see --layer)")
    metas = [s.meta for s in opened]
    categories = {
        "embodiment": list(dict.fromkeys(v for m in metas for v in sorted(m[C.EMBODIMENT].astype(str).unique()))),
        "task": list(dict.fromkeys(v for m in metas for v in sorted(m[C.TASK].astype(str).unique()))),
        "stage": list(dict.fromkeys(v for m in metas for v in m[C.STAGE].astype(str))),
        "episode": list(dict.fromkeys(v for m in metas for v in C.episode_keys(m))),
        "checkpoint": names,
    }
    media: dict[str, Path] = {}
    video_roots: set[str] = set()
    checkpoints = [_checkpoint(n, s, max_points, categories, media, roots, video_roots)
                   for n, s in zip(names, opened)]
    cache_dir = Path(cache) if cache is not None else None
    # without a cache nothing is kept: the indexes go to a temporary folder that Prepared.close() (or garbage
    # collection, or the interpreter's exit) removes
    index_root = cache_dir / "dashboard-indexes" if cache_dir is not None else Path(tempfile.mkdtemp(prefix="probe-dash-"))
    views = Views(checkpoints, [start] + [layer for layer in chosen if layer != start], method=method,
                  cache_dir=cache_dir, index_root=index_root, k=k, metrics_config=metrics_config,
                  temporary=cache_dir is None)
    try:
        if lazy:  # the first store's start layer now; the others on first view or in the background
            views[(0, start)]
        else:
            for key in track(views.order, total=len(views.order), desc="preparing maps, indexes, metrics",
                             enabled=progress):
                views[key]
    except BaseException:
        views.close()
        raise
    return Prepared(checkpoints, chosen, views, categories, media, k, tuple(sorted(video_roots)), start, note)
