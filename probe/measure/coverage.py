"""Coverage: where does human data fail to cover robot states, and which human clips carry the transfer?

For every sample of embodiment ``b`` (robot) we take the distance to its nearest
sample of embodiment ``a`` (human). A robot state counts as *uncovered* when that
distance exceeds a threshold calibrated on the human data itself: the
``quantile`` (default 0.95) of the distance from each human sample to its nearest
human sample **in another episode**. Human demonstrations of the same moment find
each other within that distance 95% of the time, so a robot state farther from
every human sample than that is a moment the human data does not show (in this
layer's geometry). Other episodes, not all other samples, because neighbouring
frames of one episode are near-duplicates and would make the threshold tiny.

Robot (task, stage) groups are ranked by the share of their samples beyond the
threshold (then by median distance): the top of that list is where to collect
more human data. Human episodes and clips (one stage of one episode) are ranked
by how many *covered* robot states (within the threshold) they hold the nearest
human sample of: the clips that carry the most transfer. Uncovered states are
left out of that count, since their nearest human sample is not a match.

The computations are functions of arrays (:func:`other_episode_nn`,
:func:`calibrate_threshold`, :func:`rank_groups`, :func:`nearest_counts`) so the
report and the dashboard can reuse them; :func:`coverage` ties them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import pandas as pd

from metrics.knn import Metric, exact_index, knn, prepare
from probe import columns as C
from probe.errors import ConfigError, MetricError
from probe.latents import Latents
from probe.validate import FileKind, csv_with_columns, json_with_keys

DEFAULT_QUANTILE = 0.95
_PROBE_K = 64  # neighbours searched before falling back to a per-episode search
#: the files ``probe coverage --out`` writes (with ``--csv`` also ``<stem>.<table>.csv``): only these are replaced
COVERAGE_JSON = FileKind("coverage JSON", json_with_keys("store", "fingerprint", "threshold", "stages", "clips"))
COVERAGE_TABLES = {name: FileKind(f"coverage {name} table", csv_with_columns(*columns)) for name, columns in {
    "stages": ("rank", C.TASK, C.STAGE, "share_beyond", "reference_samples", "nn_same_stage"),
    "tasks": ("rank", C.TASK, "share_beyond", "reference_samples"),
    "episodes": ("rank", C.DATASET, C.EPISODE, "nearest_to", "share"),
    "clips": ("rank", C.DATASET, C.EPISODE, C.STAGE, "nearest_to", "share"),
    "samples": (C.SAMPLE_ID, "nn_distance", "beyond", "nn_sample_id"),
}.items()}


# --------------------------------------------------------------------------- pure computations


def other_episode_nn(X: np.ndarray, episodes: np.ndarray, metric: Metric | str = Metric.COSINE,
                     k: int = _PROBE_K) -> tuple[np.ndarray, np.ndarray]:
    """Each row's nearest row from a **different** episode.

    Parameters
    ----------
    X : (n, d) float array
    episodes : (n,) episode key per row (at least two distinct)
    metric : "cosine" (distance ``1 - cos``) or "l2" (squared)
    k : neighbours searched at once; rows whose ``k`` nearest all share their
        episode are searched again with their episode excluded (exact either way)

    Returns
    -------
    distances (n,) float32 and indices (n,) int64 into ``X``
    """
    metric = Metric(metric)
    episodes = np.asarray(episodes)
    n = len(X)
    if len(np.unique(episodes)) < 2:
        raise MetricError(f"other-episode neighbours need at least two episodes; got {len(np.unique(episodes))}")
    nb = knn(X, None, min(k, n - 1), metric)
    other = episodes[np.where(nb.indices >= 0, nb.indices, 0)] != episodes[:, None]
    other &= nb.indices >= 0
    found = other.any(axis=1)
    first = np.argmax(other, axis=1)
    dist = np.where(found, nb.distances[np.arange(n), first], np.inf).astype(np.float32)
    idx = np.where(found, nb.indices[np.arange(n), first], -1).astype(np.int64)
    missing = np.flatnonzero(~found)
    if len(missing):
        ref = prepare(X, metric)
        index = exact_index(ref, metric)
        for ep in np.unique(episodes[missing]):
            rows = missing[episodes[missing] == ep]
            own = np.flatnonzero(episodes == ep).astype(np.int64)
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(own))
            params = faiss.SearchParameters()
            params.sel = sel
            D, I = index.search(ref[rows], 1, params=params)
            dist[rows] = 1.0 - D[:, 0] if metric is Metric.COSINE else D[:, 0]
            idx[rows] = I[:, 0]
    return dist, idx


def calibrate_threshold(distances: np.ndarray, quantile: float = DEFAULT_QUANTILE) -> float:
    """The ``quantile`` of reference-to-reference nearest-neighbour distances (finite values only)."""
    if not 0.0 < quantile <= 1.0:
        raise ConfigError(f"quantile must lie in (0, 1], got {quantile}")
    d = np.asarray(distances, dtype=np.float64)
    d = d[np.isfinite(d)]
    if not d.size:
        raise MetricError("no finite nearest-neighbour distance to calibrate the coverage threshold on")
    return float(np.quantile(d, quantile))


def rank_groups(distances: np.ndarray, threshold: float, groups: pd.DataFrame,
                reference_counts: pd.Series | None = None) -> pd.DataFrame:
    """Per group (the columns of ``groups``): how poorly the reference covers it, worst first.

    Columns: ``samples``, ``median_distance``, ``mean_distance``, ``p90_distance``,
    ``share_beyond`` (share of samples farther than ``threshold``), ``reference_samples``
    (from ``reference_counts``, indexed by the same keys, 0 where absent) and ``rank``.
    Sorted by ``share_beyond`` then ``median_distance``, descending.
    """
    d = np.asarray(distances, dtype=np.float64)
    keys = list(groups.columns)
    frame = groups.reset_index(drop=True).assign(_d=d, _beyond=d > threshold)
    out = frame.groupby(keys, sort=False).agg(
        samples=("_d", "size"), median_distance=("_d", "median"), mean_distance=("_d", "mean"),
        p90_distance=("_d", lambda s: float(np.quantile(s, 0.9))), share_beyond=("_beyond", "mean"))
    if reference_counts is not None:
        out["reference_samples"] = reference_counts.reindex(out.index).fillna(0).astype(np.int64).to_numpy()
    out = out.sort_values(["share_beyond", "median_distance"], ascending=False).reset_index()
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def nearest_counts(nn_indices: np.ndarray, n_reference: int) -> np.ndarray:
    """How many queries each reference row is the nearest neighbour of (``nn_indices`` = (n_query,))."""
    idx = np.asarray(nn_indices, dtype=np.int64)
    return np.bincount(idx[idx >= 0], minlength=n_reference)


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class CoverageResult:
    """Coverage of embodiment ``b``'s states by embodiment ``a``'s data (see the module docstring).

    Tables (pandas): ``samples`` (one row per ``b`` sample), ``stages`` and ``tasks``
    (worst covered first), ``episodes`` and ``clips`` of ``a`` (most nearest-to first).
    """

    a: str
    b: str
    metric: Metric
    layer: str
    quantile: float
    threshold: float
    samples: pd.DataFrame = field(repr=False)
    stages: pd.DataFrame = field(repr=False)
    tasks: pd.DataFrame = field(repr=False)
    episodes: pd.DataFrame = field(repr=False)
    clips: pd.DataFrame = field(repr=False)

    @property
    def share_beyond(self) -> float:
        """Share of all ``b`` samples farther from ``a`` than the threshold."""
        return float(self.samples["beyond"].mean())

    def advice(self, top: int = 3) -> list[str]:
        """Plain sentences: where to collect data, and which clips carry the most transfer."""
        lines = []
        for _, r in self.stages.head(top).iterrows():
            if r["share_beyond"] <= 0:
                break
            what = "no" if r["reference_samples"] == 0 else f"{r['reference_samples']}"
            lines.append(f"collect more {self.a} data for task '{r[C.TASK]}', stage '{r[C.STAGE]}': "
                         f"{r['share_beyond']:.0%} of its {r['samples']} {self.b} states lie beyond the "
                         f"threshold ({what} {self.a} samples of that stage)")
        if not lines:
            lines.append(f"every ({self.b}) stage is covered: no more than the calibrated "
                         f"{1 - self.quantile:.0%} of states lie beyond the threshold in any stage"
                         if self.stages["share_beyond"].max() <= 1 - self.quantile else
                         f"no stage stands out; {self.share_beyond:.0%} of {self.b} states lie beyond the threshold")
        if len(self.clips) and self.clips["nearest_to"].iloc[0] > 0:
            c = self.clips.iloc[0]
            n = int(c["nearest_to"])
            lines.append(f"the {self.a} clip carrying the most transfer is {c[C.DATASET]} episode {c[C.EPISODE]}, "
                         f"stage '{c[C.STAGE]}' ({c['start']:.2f}-{c['end']:.2f}s): the nearest {self.a} clip to "
                         f"{n} covered {self.b} state{'' if n == 1 else 's'}")
        elif len(self.clips):
            lines.append(f"no {self.a} clip carries transfer yet: every one of the {len(self.samples)} {self.b} "
                         f"states lies beyond the threshold, so none has a {self.a} match")
        return lines

    def to_dict(self, *, samples: bool = False) -> dict[str, Any]:
        """JSON-ready summary and tables (``samples=True`` adds the per-sample table)."""
        out: dict[str, Any] = {
            "a": self.a, "b": self.b, "metric": self.metric.value, "layer": self.layer,
            "threshold": {"value": self.threshold, "quantile": self.quantile,
                          "calibration": f"{self.quantile:.0%} quantile of the distance from each {self.a} "
                                         f"sample to its nearest {self.a} sample in another episode"},
            "n_samples": int(len(self.samples)), "share_beyond": self.share_beyond,
            "advice": self.advice(),
            "stages": _records(self.stages), "tasks": _records(self.tasks),
            "episodes": _records(self.episodes), "clips": _records(self.clips),
        }
        if samples:
            out["samples"] = _records(self.samples)
        return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    recs = df.to_dict(orient="records")
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v.item() if isinstance(v, np.generic)
                 else v) for k, v in r.items()} for r in recs]


# --------------------------------------------------------------------------- putting it together


def covered_default(present: list[str], a: str) -> str:
    """The covered embodiment when none is named: ``robot`` when the store holds it, else the one embodiment
    besides ``a``. With several others the choice is refused, listing them: every table of the result is about
    that one embodiment, so a silent pick would answer another question than the one asked."""
    others = [name for name in present if name != a]
    if len(others) == 1 or C.ROBOT in others:
        return C.ROBOT if C.ROBOT in others else others[0]
    if not others:
        raise ConfigError(f"coverage compares two embodiments, but the store holds '{a}' only")
    raise ConfigError(f"the store holds several embodiments besides '{a}': {', '.join(others)}; name the one "
                      f"'{a}' should cover with --b NAME (b= in Python)")


def coverage(latents: Latents, a: str = C.HUMAN, b: str | None = None, metric: Metric | str = Metric.COSINE,
             quantile: float = DEFAULT_QUANTILE) -> CoverageResult:
    """How well embodiment ``a``'s samples cover embodiment ``b``'s, from one layer's latents.

    Parameters
    ----------
    latents : the store layer (all embodiments)
    a : the covering embodiment (human); needs at least two episodes for the threshold
    b : the covered embodiment (a robot); None: ``robot`` if present, else the one embodiment besides ``a``
        (refused, listing them, when there are several)
    metric : "cosine" (``1 - cos``) or "l2" (squared)
    quantile : threshold quantile of ``a``-to-other-``a``-episode NN distances

    Returns
    -------
    CoverageResult
    """
    metric = Metric(metric)
    present = latents.meta[C.EMBODIMENT].value_counts()
    if b is None and a in present.index:
        b = covered_default(sorted(map(str, present.index)), a)
    for name in (a, b):
        if name not in present.index:
            listed = ", ".join(f"{k} ({v} samples)" for k, v in present.items())
            raise ConfigError(f"embodiment '{name}' has no samples; the store's embodiments are: {listed} "
                              "(choose them with --a / --b)")
    if a == b:
        raise ConfigError(f"coverage compares two embodiments; got '{a}' twice")
    A, B = latents.of(a), latents.of(b)
    a_ep = A.episode_keys()
    if len(np.unique(a_ep)) < 2:
        raise MetricError(f"embodiment '{a}' has a single episode; the coverage threshold is calibrated on "
                          f"{a}-to-other-{a}-episode distances and needs at least two episodes")
    ref_d, _ = other_episode_nn(A.X, a_ep, metric)
    threshold = calibrate_threshold(ref_d, quantile)
    nb = knn(B.X, A.X, 1, metric)
    dist, nn = nb.distances[:, 0].astype(np.float64), nb.indices[:, 0]
    am, bm = A.meta, B.meta
    samples = pd.DataFrame({
        C.SAMPLE_ID: bm[C.SAMPLE_ID].to_numpy(), C.DATASET: bm[C.DATASET].to_numpy(),
        C.EPISODE: bm[C.EPISODE].to_numpy(), C.FRAME: bm[C.FRAME].to_numpy(), C.TASK: bm[C.TASK].to_numpy(),
        C.STAGE: bm[C.STAGE].to_numpy(), "nn_distance": dist, "beyond": dist > threshold,
        "nn_sample_id": am[C.SAMPLE_ID].to_numpy()[nn], "nn_task": am[C.TASK].to_numpy()[nn],
        "nn_stage": am[C.STAGE].to_numpy()[nn],
    })
    samples["nn_same_stage"] = (samples["nn_task"] == samples[C.TASK]) & (samples["nn_stage"] == samples[C.STAGE])
    a_stage_counts = am.groupby([C.TASK, C.STAGE]).size()
    stages = rank_groups(dist, threshold, samples[[C.TASK, C.STAGE]], a_stage_counts)
    same = samples.groupby([C.TASK, C.STAGE])["nn_same_stage"].mean()
    stages["nn_same_stage"] = same.reindex(pd.MultiIndex.from_frame(stages[[C.TASK, C.STAGE]])).to_numpy()
    tasks = rank_groups(dist, threshold, samples[[C.TASK]], am.groupby(C.TASK).size())
    covered = dist <= threshold  # an uncovered state's nearest human sample carries no transfer
    episodes, clips = _carriers(am, a_ep, nearest_counts(nn[covered], len(A)), dist[covered], nn[covered], len(B))
    return CoverageResult(a, b, metric, latents.layer, float(quantile), threshold, samples, stages, tasks,
                          episodes, clips)


def _carriers(am: pd.DataFrame, a_ep: np.ndarray, counts: np.ndarray, dist: np.ndarray, nn: np.ndarray,
              n_b: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Human episodes and (episode, stage) clips ranked by how many covered ``b`` states they are nearest to.

    ``counts`` (per ``a`` row), ``dist`` and ``nn`` are those of the covered ``b`` states; ``share``
    is relative to all ``n_b`` states.
    """
    has_video = C.VIDEO in am.columns and C.VIDEO_TIMESTAMP in am.columns
    frame = am.assign(_ep=a_ep, _count=counts)
    # mean distance of the b states matched to each a row, summed per group below
    dsum = np.bincount(nn, weights=dist, minlength=len(am)) if len(nn) else np.zeros(len(am))
    frame["_dsum"] = dsum

    def table(keys: list[str]) -> pd.DataFrame:
        agg = {"samples": (C.SAMPLE_ID, "size"), "nearest_to": ("_count", "sum"), "_dsum": ("_dsum", "sum"),
               "start": (C.TIMESTAMP, "min"), "end": (C.TIMESTAMP, "max")}
        if has_video:
            agg.update({C.VIDEO: (C.VIDEO, "first"), "video_start": (C.VIDEO_TIMESTAMP, "min"),
                        "video_end": (C.VIDEO_TIMESTAMP, "max")})
        out = frame.groupby(keys, sort=False).agg(**agg).reset_index()
        with np.errstate(invalid="ignore", divide="ignore"):
            out["mean_distance"] = np.where(out["nearest_to"] > 0, out["_dsum"] / out["nearest_to"], np.nan)
        out["share"] = out["nearest_to"] / max(n_b, 1)
        out = out.drop(columns="_dsum").sort_values(["nearest_to", "mean_distance"], ascending=[False, True])
        out = out.reset_index(drop=True)
        out.insert(0, "rank", np.arange(1, len(out) + 1))
        return out

    episodes = table([C.DATASET, C.EPISODE, C.TASK])
    clips = table([C.DATASET, C.EPISODE, C.TASK, C.STAGE])
    return episodes, clips
