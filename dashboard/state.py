"""What the dashboard shows, computed before the server starts; and the view state in the URL.

``prepare(stores)`` opens every store (one per checkpoint), lays out each layer in
2-D (cached, aligned across checkpoints so a point's move means something), builds a
FAISS index over the human rows for nearest-clip queries, computes the metrics
records and registers the media files. Callbacks only read a :class:`Prepared`.

``ViewState`` is what the URL holds: checkpoint, layer, colour, filters, the selected
point and highlighted clip (by ``sample_id``, stable across checkpoints) and the
checkpoints shown side by side. ``decode_state`` never fails: unknown or stale values
fall back to defaults and come back as notices for the user.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import ConfigError
from probe.progress import track
from probe.store import Store, layer_filename, open_store
from probe.validate import check_layer

log = logging.getLogger(__name__)

MAX_PANELS = 4  # a page holds only a handful of WebGL contexts
PROGRESS_LEVELS = 32  # progress colour is quantised to this many steps
EPISODE_COLORS = 24  # episodes cycle through this many colours


class ColorBy(str, Enum):
    """What colours the points of the map."""

    EMBODIMENT = "embodiment"
    TASK = "task"
    STAGE = "stage"
    PROGRESS = "progress"
    EPISODE = "episode"
    CHECKPOINT = "checkpoint"


FILTERS: tuple[str, ...] = ("task", "stage", "embodiment", "episode")


# ----------------------------------------------------------------------------------------------
# prepared data


@dataclass(frozen=True)
class Clip:
    """A human clip near a query point: the matched moment and a window around it."""

    row: int
    sample_id: str
    episode: str
    task: str
    stage: str
    score: float
    start: float
    end: float
    video_token: str | None = None
    video_start: float | None = None
    video_end: float | None = None


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """One store (a checkpoint) and the rows drawn on its map.

    ``rows[p]`` is the store row of map point ``p`` (clicks map to rows through it);
    ``point_of_row[r]`` is the inverse (-1 for rows not drawn).
    """

    name: str
    store: Store
    rows: np.ndarray
    point_of_row: np.ndarray
    points: pd.DataFrame  # meta of the map points, in point order, plus an 'episode_key' column
    codes: dict[str, np.ndarray]  # colour/filter name -> category code per map point
    episode_points: dict[int, np.ndarray]  # episode code -> map points of that episode by frame
    video_code: np.ndarray  # per store row: index into video_tokens, -1 without video
    video_tokens: list[str]
    sample_index: pd.Index  # sample_id -> store row
    video_by_value: dict[str, str] = field(default_factory=dict)  # 'video' column value -> token

    @property
    def meta(self) -> pd.DataFrame:
        return self.store.meta

    def row_of(self, sample_id: str | None) -> int | None:
        """Store row of a sample id, or None when unknown."""
        if sample_id is None:
            return None
        pos = self.sample_index.get_indexer([sample_id])[0]
        return None if pos < 0 else int(pos)

    def trajectory(self, row: int) -> np.ndarray:
        """Map points of the episode holding ``row``, in frame order (empty if not drawn)."""
        p = int(self.point_of_row[row]) if 0 <= row < len(self.point_of_row) else -1
        if p < 0:
            key = _episode_key(self.meta.iloc[[row]])[0]
            code = self.points.index[self.points["episode_key"] == key]
            p = int(code[0]) if len(code) else -1
            if p < 0:
                return np.empty(0, dtype=np.int64)
        return self.episode_points.get(int(self.codes["episode"][p]), np.empty(0, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class View:
    """One (checkpoint, layer): the 2-D layout of the map points, the nearest-clip index and metrics."""

    checkpoint: int
    layer: str
    coords: np.ndarray  # (m, 2) float32, row-aligned with Checkpoint.rows
    method: str
    trustworthiness: float | None
    neighbours: Any  # NeighbourSearch
    metrics: dict[str, Any] | None
    coverage: list[str]


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything the app needs, computed once before the server starts."""

    checkpoints: list[Checkpoint]
    layers: list[str]
    views: dict[tuple[int, str], View]
    categories: dict[str, list[str]]  # task / stage / embodiment / episode / checkpoint -> ordered values
    media: dict[str, Path]  # token -> absolute path of a registered video
    k: int

    @property
    def names(self) -> list[str]:
        return [ck.name for ck in self.checkpoints]

    def checkpoint(self, name: str) -> tuple[int, Checkpoint]:
        i = self.names.index(name)
        return i, self.checkpoints[i]

    def view(self, name: str, layer: str) -> View:
        return self.views[(self.names.index(name), layer)]

    def default_state(self) -> ViewState:
        return ViewState(store=self.names[-1], layer=self.layers[0])

    def frame_location(self, checkpoint: int, row: int) -> tuple[Path, float] | None:
        """Registered video file and time of a store row's frame (None without video or out of range)."""
        if not 0 <= checkpoint < len(self.checkpoints):
            return None
        ck = self.checkpoints[checkpoint]
        if not 0 <= row < len(ck.video_code) or ck.video_code[row] < 0:
            return None
        meta = ck.meta
        column = C.VIDEO_TIMESTAMP if C.VIDEO_TIMESTAMP in meta.columns else C.TIMESTAMP
        return self.media[ck.video_tokens[ck.video_code[row]]], float(meta[column].iat[row])

    def choices(self) -> Choices:
        return Choices(self.names, self.layers,
                       {k: self.categories[k] for k in FILTERS},
                       {ck.name: ck.sample_index for ck in self.checkpoints})


class NeighbourSearch:
    """Nearest human clips of a store row: a :class:`probe.retrieval.Retriever` over the human rows.

    The FAISS index is built (or reopened from the cache) at prepare time; a click runs
    one single-vector search (a few ms at 100k rows), cached per row.
    """

    def __init__(self, retriever: Any | None, video_tokens: Mapping[str, str], k: int,
                 window: float = 1.0) -> None:
        self.retriever, self.k, self.window = retriever, k, window
        self._cache: dict[tuple[int, int], list[Clip]] = {}
        self.n = 0
        if retriever is None:
            return
        store = retriever.store
        meta = store.meta
        self.n = len(meta)
        self.X = store.matrix(retriever.layer)
        self.episode = _episode_key(meta)
        ref = retriever.reference  # index id -> metadata of the human rows
        self.ref_rows = np.asarray(retriever.index.rows, dtype=np.int64)
        self.ref_episode = self.episode[self.ref_rows]
        self.ref_t = ref[C.TIMESTAMP].to_numpy(np.float64)
        grouped = pd.Series(self.ref_t).groupby(self.ref_episode)
        self.ref_lo = grouped.transform("min").to_numpy()
        self.ref_hi = grouped.transform("max").to_numpy()
        self.ref_sid = ref[C.SAMPLE_ID].astype(str).to_numpy()
        self.ref_task = ref[C.TASK].astype(str).to_numpy()
        self.ref_stage = ref[C.STAGE].astype(str).to_numpy()
        self.ref_token = np.full(len(ref), None, dtype=object)
        self.ref_vt = self.ref_t.copy()
        if C.VIDEO in ref.columns:
            self.ref_token = ref[C.VIDEO].map(lambda v: video_tokens.get(str(v))).to_numpy(dtype=object)
            if C.VIDEO_TIMESTAMP in ref.columns:
                self.ref_vt = ref[C.VIDEO_TIMESTAMP].to_numpy(np.float64)

    @classmethod
    def build(cls, store: Store, layer: str, video_tokens: Mapping[str, str], k: int,
              index_dir: Path) -> NeighbourSearch:
        """Open the cached index of the store's human rows, or build it into ``index_dir``."""
        from probe.errors import ProbeError
        from probe.index import build_index, open_index
        from probe.retrieval import Retriever

        if not (store.meta[C.EMBODIMENT] == C.HUMAN).any():
            return cls(None, video_tokens, k)
        index = None
        if index_dir.exists():
            try:
                index = open_index(index_dir, store, layer=layer)
            except ProbeError as exc:
                log.info("rebuilding index %s (%s)", index_dir, exc)
        if index is None:
            index = build_index(store, layer, index_dir, embodiment=C.HUMAN, overwrite=True)
        return cls(Retriever(index), video_tokens, k)

    def clips(self, row: int, k: int | None = None) -> list[Clip]:
        """Top-k human clips for store row ``row``: one per human episode, never the query's own episode.

        As :meth:`probe.retrieval.Retriever.search` with ``per_episode=1``: one search of
        the index (deepened while too few episodes are found), then numpy bookkeeping
        over arrays prepared once (no data frames on the click path).
        """
        k = k or self.k
        if self.retriever is None or not 0 <= row < self.n:
            return []
        key = (row, k)
        if key in self._cache:
            return self._cache[key]
        index = self.retriever.index
        q = np.asarray(self.X[[row]], dtype=np.float32)
        own = self.episode[row]
        depth = min(index.n, max(8 * k, 64))
        while True:
            D, I = index.search(q, depth)
            ids, dist = I[0], D[0]
            keep = ids >= 0
            ids, dist = ids[keep], dist[keep]
            eps = self.ref_episode[ids]
            ok = eps != own
            _, first = np.unique(eps[ok], return_index=True)
            chosen = np.sort(first)[:k]
            if len(chosen) >= k or depth >= index.n:
                break
            depth = min(index.n, depth * 4)
        ids, dist = ids[ok][chosen], dist[ok][chosen]
        metric = getattr(index.metric, "value", index.metric)
        out = []
        for i, d in zip(ids.tolist(), dist.tolist()):
            t = self.ref_t[i]
            start, end = max(self.ref_lo[i], t - self.window), min(self.ref_hi[i], t + self.window)
            token = self.ref_token[i]
            vt = self.ref_vt[i]
            out.append(Clip(int(self.ref_rows[i]), str(self.ref_sid[i]), str(self.ref_episode[i]),
                            str(self.ref_task[i]), str(self.ref_stage[i]),
                            float(1.0 - d) if metric == "cosine" else float(-d), float(start), float(end),
                            token, vt - (t - start) if token else None, vt + (end - t) if token else None))
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = out
        return out


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def _episode_key(meta: pd.DataFrame) -> np.ndarray:
    return (meta[C.DATASET].astype(str) + ":" + meta[C.EPISODE].astype(str)).to_numpy()


def _sample_rows(meta: pd.DataFrame, max_points: int) -> np.ndarray:
    """Deterministic subsample by hashed sample id: the same samples are kept in every checkpoint."""
    n = len(meta)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    h = pd.util.hash_pandas_object(meta[C.SAMPLE_ID].astype(str), index=False).to_numpy()
    return np.sort(np.argpartition(h, max_points)[:max_points]).astype(np.int64)


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def _register_videos(store: Store, media: dict[str, Path]) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Register the store's existing video files: per-row index into the token list, and value -> token."""
    meta = store.meta
    code = np.full(len(meta), -1, dtype=np.int32)
    by_value: dict[str, str] = {}
    if C.VIDEO not in meta.columns:
        return code, [], by_value
    videos = meta[C.VIDEO].astype("string")
    uniques = [v for v in videos.dropna().unique().tolist() if v]
    tokens: list[str] = []
    for value in uniques:
        path = Path(value)
        candidates = [path] if path.is_absolute() else [store.path / path, Path.cwd() / path]
        found = next((p.resolve() for p in candidates if p.is_file()), None)
        if found is None:
            log.warning("video '%s' of store '%s' not found; its frames are shown without thumbnails",
                        value, store.path)
            continue
        token = hashlib.sha256(str(found).encode()).hexdigest()[:20]
        media[token] = found
        code[(videos == value).fillna(False).to_numpy()] = len(tokens)
        tokens.append(token)
        by_value[value] = token
    return code, tokens, by_value


def _checkpoint(name: str, store: Store, max_points: int, categories: dict[str, list[str]],
                media: dict[str, Path]) -> Checkpoint:
    meta = store.meta
    rows = _sample_rows(meta, max_points)
    point_of_row = np.full(len(meta), -1, dtype=np.int64)
    point_of_row[rows] = np.arange(len(rows))
    points = meta.iloc[rows].reset_index(drop=True).copy()
    points["episode_key"] = _episode_key(points)
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
    video_code, tokens, by_value = _register_videos(store, media)
    return Checkpoint(name, store, rows, point_of_row, points, codes, episode_points, video_code, tokens,
                      pd.Index(meta[C.SAMPLE_ID].astype(str)), by_value)


def _layout(ck: Checkpoint, layer: str, method: str, previous: Any | None, cache: Path | None) -> Any:
    """A :class:`probe.projection.Layout` of the map points, warm-started from ``previous`` (cached)."""
    from probe.projection import ProjectionConfig, project

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


HEADLINE = ("ilisi", "knn_embodiment_mixing", "clisi", "stage_transfer_acc_robot_to_human",
            "retrieval_precision_at_1_robot_to_human", "retrieval_map_at_r_robot_to_human")
STAGE_COLUMNS = ("knn_embodiment_mixing", "retrieval_precision_at_1_robot_to_human", "silhouette_stage")


def _metrics(store: Store, layer: str, config: Any, cache: Path | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The layer's metrics record and coverage gaps.

    The record comes from :func:`probe.evaluate.evaluate` with its cache (shared with
    ``probe metrics``, the report and the demo); coverage advice is cached beside it
    under ``cache/dashboard-coverage``. A layer on which the metrics cannot be computed
    (one embodiment ...) gets an ``error`` record instead of failing.
    """
    import json

    from probe.errors import ProbeError
    from probe.evaluate import evaluate

    try:
        record = evaluate(store, layer, config, cache_dir=cache)[0]
    except ProbeError as exc:
        log.warning("no metrics for %s layer %s: %s", store.path, layer, exc)
        record = {"error": str(exc)}
    key = hashlib.sha256(json.dumps([store.fingerprint, layer]).encode()).hexdigest()[:24]
    file = cache / "dashboard-coverage" / f"{key}.json" if cache is not None else None
    if file is not None and file.is_file():
        try:
            return record, json.loads(file.read_text(encoding="utf-8"))["gaps"]
        except (ValueError, KeyError):
            log.info("ignoring unreadable coverage cache %s", file)
    gaps = _coverage_gaps(store.latents(layer))
    if file is not None:
        from probe.atomic import write_json

        file.parent.mkdir(parents=True, exist_ok=True)
        write_json(file, {"gaps": gaps})
    return record, gaps


def _coverage_gaps(latents: Any) -> list[str]:
    """Plain sentences on which robot stages human data covers poorly (:mod:`probe.coverage`)."""
    from probe.coverage import coverage
    from probe.errors import ProbeError

    try:
        return coverage(latents).advice()
    except ProbeError as exc:
        return [f"coverage not computed: {exc}"]


def prepare(stores: Sequence[str | Path | Store], *, layers: str | Sequence[str] | None = None,
            max_points: int = 200_000, cache: str | Path | None = None, k: int = 8,
            method: str = "umap", metrics_config: Any | None = None, progress: bool = False) -> Prepared:
    """Open the stores (one per checkpoint) and compute everything the app shows.

    Parameters
    ----------
    stores : paths of latent stores (or opened stores), in checkpoint order.
    layers : layer name(s) to prepare; all layers the stores share when None.
    max_points : at most this many points per map (a deterministic subsample by sample id).
    cache : cache directory for layouts and indexes (None: nothing cached, indexes in a temporary directory).
    k : human clips listed for a clicked point.
    method : layout method, "umap" (warm-started across checkpoints) or "pca".
    metrics_config : :class:`metrics.suite.MetricsConfig` of the metrics panel (default:
        :func:`probe.evaluate.interactive_config`, per stage).
    progress : show a progress bar.

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
        from probe.evaluate import interactive_config

        metrics_config = interactive_config()
    opened = [s if isinstance(s, Store) else open_store(s) for s in stores]
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
    names = _unique_names([s.path for s in opened])
    metas = [s.meta for s in opened]
    categories = {
        "embodiment": list(dict.fromkeys(v for m in metas for v in sorted(m[C.EMBODIMENT].astype(str).unique()))),
        "task": list(dict.fromkeys(v for m in metas for v in sorted(m[C.TASK].astype(str).unique()))),
        "stage": list(dict.fromkeys(v for m in metas for v in m[C.STAGE].astype(str))),
        "episode": list(dict.fromkeys(v for m in metas for v in _episode_key(m))),
        "checkpoint": names,
    }
    media: dict[str, Path] = {}
    checkpoints = [_checkpoint(n, s, max_points, categories, media) for n, s in zip(names, opened)]
    views: dict[tuple[int, str], View] = {}
    jobs = [(i, layer) for layer in chosen for i in range(len(checkpoints))]
    cache_dir = Path(cache) if cache is not None else None
    index_root = cache_dir / "dashboard-indexes" if cache_dir is not None else Path(tempfile.mkdtemp(prefix="probe-dash-"))
    previous: dict[str, Any] = {}
    for i, layer in track(jobs, total=len(jobs), desc="preparing maps, indexes, metrics", enabled=progress):
        ck = checkpoints[i]
        lay = _layout(ck, layer, method, previous.get(layer), cache_dir)
        previous[layer] = lay
        coords = np.asarray(lay.coords, dtype=np.float32)
        if i > 0:  # warm starts keep maps close; a similarity transform makes them comparable
            coords = _align(coords, ck, checkpoints[0], views[(0, layer)].coords)
        index_dir = index_root / f"{ck.store.fingerprint[:16]}-{layer_filename(layer)[:-4]}"
        search = NeighbourSearch.build(ck.store, layer, ck.video_by_value, k, index_dir)
        record, gaps = _metrics(ck.store, layer, metrics_config, cache_dir)
        views[(i, layer)] = View(i, layer, coords, lay.method, float(lay.trustworthiness), search, record, gaps)
    return Prepared(checkpoints, chosen, views, categories, media, k)


# ----------------------------------------------------------------------------------------------
# view state and URL


@dataclass(frozen=True)
class ViewState:
    """Everything that defines a view; all values are plain strings so it round-trips through a URL."""

    store: str
    layer: str
    color: ColorBy = ColorBy.EMBODIMENT
    task: tuple[str, ...] = ()
    stage: tuple[str, ...] = ()
    embodiment: tuple[str, ...] = ()
    episode: tuple[str, ...] = ()
    point: str | None = None
    clip: str | None = None
    compare: tuple[str, ...] = field(default=())

    def filters(self) -> dict[str, tuple[str, ...]]:
        """The active filters: column -> allowed values (empty tuple = no filter)."""
        return {name: getattr(self, name) for name in FILTERS}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["color"] = self.color.value
        for key in (*FILTERS, "compare"):
            d[key] = list(d[key])
        return d

    def with_(self, **changes: Any) -> ViewState:
        """A copy with some fields changed (sequences become tuples)."""
        for key in (*FILTERS, "compare"):
            if key in changes:
                changes[key] = tuple(changes[key] or ())
        if "color" in changes:
            changes["color"] = ColorBy(changes["color"])
        return replace(self, **changes)


@dataclass(frozen=True)
class Choices:
    """The values a view state may take (from the prepared data)."""

    stores: Sequence[str]
    layers: Sequence[str]
    categories: Mapping[str, Sequence[str]]  # filter name -> allowed values
    points: Mapping[str, Any] | None = None  # store name -> container of its sample ids (``in`` is enough)


def encode_state(state: ViewState, default: ViewState | None = None) -> str:
    """The query string (with leading ``?``) of a state; fields equal to ``default`` are left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in state.to_dict().items():
        if default is not None and value == default.to_dict()[key] and key not in ("store", "layer"):
            continue
        if value is None or value == []:
            continue
        if isinstance(value, list):
            pairs.extend((key, str(v)) for v in value)
        else:
            pairs.append((key, str(value)))
    return "?" + urlencode(pairs)


def decode_state(search: str | None, choices: Choices, default: ViewState) -> tuple[ViewState, list[str]]:
    """Parse a query string into a valid state; returns the state and notices about dropped values."""
    notices: list[str] = []
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl((search or "").lstrip("?"), keep_blank_values=False):
        values.setdefault(key, []).append(value)
    unknown = sorted(set(values) - set(default.to_dict()))
    if unknown:
        notices.append(f"ignored unknown URL parameter(s): {', '.join(unknown)}")

    def one(key: str, allowed: Sequence[str], fallback: str) -> str:
        got = values.get(key)
        if not got:
            return fallback
        if got[0] in allowed:
            return got[0]
        notices.append(f"{key} '{got[0]}' is not available (choose from: {', '.join(list(allowed)[:8])}); "
                       f"showing '{fallback}'")
        return fallback

    store = one("store", choices.stores, default.store)
    layer = one("layer", choices.layers, default.layer)
    color = one("color", [c.value for c in ColorBy], default.color.value)
    filters: dict[str, tuple[str, ...]] = {}
    for name in FILTERS:
        allowed = set(choices.categories.get(name, ()))
        got = values.get(name, [])
        kept = tuple(dict.fromkeys(v for v in got if v in allowed))
        dropped = [v for v in got if v not in allowed]
        if dropped:
            notices.append(f"ignored unknown {name} value(s): {', '.join(dropped[:5])}")
        filters[name] = kept
    compare_got = values.get("compare", [])
    compare = tuple(dict.fromkeys(v for v in compare_got if v in choices.stores))[:MAX_PANELS]
    if len(compare) < len(set(compare_got)):
        notices.append(f"compare holds at most {MAX_PANELS} known checkpoints; ignored the rest")
    points = {}
    for key in ("point", "clip"):
        got = values.get(key)
        sid = got[0] if got else None
        if sid is not None and choices.points is not None and sid not in choices.points.get(store, ()):
            notices.append(f"{key} '{sid}' is not a point of checkpoint '{store}'; nothing selected")
            sid = None
        points[key] = sid
    state = ViewState(store=store, layer=layer, color=ColorBy(color), compare=compare, **filters, **points)
    return state, notices


def state_from_dict(d: Mapping[str, Any] | None, default: ViewState, choices: Choices | None = None) -> ViewState:
    """The state held in the page's ``dcc.Store`` (a dict); ``default`` when empty or malformed.

    With ``choices``, values that are not available (a crafted or stale request) are
    replaced as :func:`decode_state` would.
    """
    if not d or not isinstance(d, Mapping):
        return default
    try:
        state = default.with_(**{k: d[k] for k in default.to_dict() if k in d})
    except (TypeError, ValueError):
        return default
    if choices is None:
        return state
    state, _ = decode_state(encode_state(state), choices, default)
    return state


# ----------------------------------------------------------------------------------------------
# events -> state (pure; the callbacks are thin adapters over these)


def click_row(prepared: Prepared, state: ViewState, click: Mapping[str, Any] | None) -> int | None:
    """Store row of a clicked map point, from its trace and point index (never from coordinates).

    Trace 0 holds every map point (``Checkpoint.rows``); trace 1 the selected point's
    episode, trace 2 the highlighted clip's episode, trace 3 the marks (selected point,
    then matched clips), each rebuilt here from the state. Unknown points give None.
    """
    from dashboard.figures import CLIP_TRAJECTORY, MARKS, POINTS, TRAJECTORY

    try:
        point = click["points"][0]  # type: ignore[index]
        trace = int(point.get("curveNumber", 0))
        index = int(point.get("pointIndex", point.get("pointNumber")))
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if state.store not in prepared.names:
        return None
    ci, ck = prepared.checkpoint(state.store)
    if trace == POINTS:
        points = np.arange(len(ck.rows))
    elif trace in (TRAJECTORY, CLIP_TRAJECTORY):
        row = ck.row_of(state.point if trace == TRAJECTORY else state.clip)
        points = ck.trajectory(row) if row is not None else np.empty(0, dtype=np.int64)
    elif trace == MARKS:
        points = np.asarray(mark_points(prepared, state), dtype=np.int64)
    else:
        return None
    if not 0 <= index < len(points):
        return None
    return int(ck.rows[points[index]])


def selected_clips(prepared: Prepared, state: ViewState) -> list[Clip]:
    """Nearest human clips of the selected point (one FAISS search, cached per row)."""
    if state.point is None or state.store not in prepared.names or state.layer not in prepared.layers:
        return []
    ci, ck = prepared.checkpoint(state.store)
    row = ck.row_of(state.point)
    if row is None:
        return []
    return prepared.views[(ci, state.layer)].neighbours.clips(row)


def mark_points(prepared: Prepared, state: ViewState) -> list[int]:
    """Map points of the marks trace: the selected point, then matched clips drawn on the map."""
    if state.store not in prepared.names:
        return []
    _, ck = prepared.checkpoint(state.store)
    row = ck.row_of(state.point)
    if row is None or ck.point_of_row[row] < 0:
        return []
    out = [int(ck.point_of_row[row])]
    out += [int(ck.point_of_row[c.row]) for c in selected_clips(prepared, state) if ck.point_of_row[c.row] >= 0]
    return out


def apply_event(prepared: Prepared, state: ViewState, event: str, value: Any) -> ViewState:
    """The state after one user event (a control change, a click, a clip or stage button, clear)."""
    if event in ("store", "layer", "color"):
        if value is None:
            return state
        allowed = {"store": prepared.names, "layer": prepared.layers, "color": [c.value for c in ColorBy]}[event]
        return state.with_(**{event: value}) if value in allowed else state
    if event in FILTERS:
        allowed = set(prepared.categories[event])
        return state.with_(**{event: [v for v in (value or []) if v in allowed]})
    if event == "compare":
        return state.with_(compare=[v for v in (value or []) if v in prepared.names][:MAX_PANELS])
    if event == "click":
        row = click_row(prepared, state, value)
        if row is None:
            return state
        _, ck = prepared.checkpoint(state.store)
        return state.with_(point=str(ck.meta[C.SAMPLE_ID].iat[row]), clip=None)
    if event == "clip":
        return state.with_(clip=None if value == state.clip else value)
    if event == "metric_stage":
        return state.with_(stage=() if state.stage == (value,) else (value,))
    if event == "clear":
        return state.with_(task=(), stage=(), embodiment=(), episode=(), point=None, clip=None)
    return state
