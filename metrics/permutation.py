"""Label permutations of kNN-graph metrics without touching the graph again.

The nulls shuffle labels between whole (episode, stage) runs. Under such a shuffle a
sample's neighbourhood changes only through the labels of the runs its neighbours
belong to, so the graph is aggregated **once** into a sparse (samples x runs) matrix
of neighbour weights (counts for kBET and kNN mixing, the LISI kernel for iLISI and
cLISI); each permutation is then one sparse product with the runs' one-hot labels.
That makes the 99 permutations behind a p-value cost about as much as a few
ordinary evaluations. :class:`RunGraph` produces the same per-sample states the
metrics' own ``prepare`` functions return (equal up to rounding, tested), so the
metrics' scores apply unchanged.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.stats import chi2

from metrics.knn import Neighbors
from metrics.lisi import lisi_kernel
from metrics.mixing import MixingSamples
from metrics.spec import Context, Labels


class RunGraph:
    """The kNN graph aggregated by runs: ``weights[i, r]`` = summed weight of sample i's neighbours in run r.

    Parameters
    ----------
    neighbors : the graph (``indices`` < 0 are missing neighbours)
    run_codes : (n,) run index of each sample, 0..R-1
    weights : (n, k) neighbour weights (e.g. the LISI kernel), or None for counts
    """

    def __init__(self, neighbors: Neighbors, run_codes: np.ndarray, weights: np.ndarray | None = None) -> None:
        idx = neighbors.indices
        n, k = idx.shape
        valid = idx >= 0
        run_codes = np.asarray(run_codes, dtype=np.int64)
        n_runs = int(run_codes.max()) + 1 if len(run_codes) else 0
        rows = np.repeat(np.arange(n), k).reshape(n, k)[valid]
        data = np.ones(int(valid.sum())) if weights is None else np.asarray(weights, dtype=np.float64)[valid]
        self.matrix = sparse.csr_matrix((data, (rows, run_codes[idx[valid]])), shape=(n, n_runs))
        self.matrix.sum_duplicates()
        self.run_codes = run_codes
        self.valid = valid.sum(axis=1).astype(np.float64)

    def per_label(self, row_codes: np.ndarray, n_labels: int) -> np.ndarray:
        """(n, L) neighbour weight on each label, for labels given per row (constant within runs)."""
        run_labels = np.zeros(self.matrix.shape[1], dtype=np.int64)
        run_labels[self.run_codes] = row_codes
        onehot = np.zeros((len(run_labels), n_labels))
        onehot[np.arange(len(run_labels)), run_labels] = 1.0
        return np.asarray(self.matrix @ onehot)  # sparse x dense: O(nnz * L)


def lisi_from_runs(graph: RunGraph, row_codes: np.ndarray, n_labels: int) -> np.ndarray:
    """Per-sample LISI (as :func:`metrics.lisi.lisi_samples`) from a kernel-weighted :class:`RunGraph`."""
    per_label = graph.per_label(row_codes, n_labels)
    simpson = np.square(per_label).sum(axis=1)
    with np.errstate(divide="ignore"):
        return np.where(simpson > 0, 1.0 / np.where(simpson > 0, simpson, 1.0), np.nan)


def kbet_from_runs(graph: RunGraph, row_codes: np.ndarray, n_labels: int, alpha: float) -> np.ndarray:
    """Per-sample kBET acceptance (1.0 accepted, 0.0 rejected; as the suite's kBET state) from a count graph."""
    observed = graph.per_label(row_codes, n_labels)
    freq = np.bincount(row_codes, minlength=n_labels) / len(row_codes)
    expected = freq[None, :] * graph.valid[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.nansum(np.square(observed - expected) / expected, axis=1)
    return (stat <= chi2.isf(alpha, n_labels - 1)).astype(np.float64)  # p >= alpha, without n tail integrals


def mixing_from_runs(graph: RunGraph, row_codes: np.ndarray, n_labels: int) -> MixingSamples:
    """Observed and expected other-embodiment shares (as :func:`metrics.mixing.knn_mixing_samples`)."""
    per_label = graph.per_label(row_codes, n_labels)
    own = per_label[np.arange(len(row_codes)), row_codes]
    observed = 1.0 - own / np.maximum(graph.valid, 1)
    observed = np.where(graph.valid > 0, observed, 0.0)
    counts = np.bincount(row_codes, minlength=n_labels)
    n = len(row_codes)
    return MixingSamples(observed, (n - counts[row_codes]) / (n - 1))


# ---------------------------------------------------------------- the suite's permuted states (MetricSpec.permuted)


def lisi_kernel_of(ctx: Context) -> np.ndarray:
    """The label-free part of LISI, once per graph (shared by iLISI, cLISI and their permutations)."""
    if "lisi_kernel" not in ctx.cache:
        ctx.cache["lisi_kernel"] = lisi_kernel(ctx.graph)
    return ctx.cache["lisi_kernel"]


def run_graph(ctx: Context, kind: str) -> RunGraph:
    """The suite's graph aggregated by (episode, stage) runs, once per suite: LISI-kernel weights ("lisi") or
    neighbour counts at the kBET ("kbet") or kNN-mixing ("mixing") k."""
    key = ("run_graph", kind)
    if key not in ctx.cache:
        if kind == "lisi":
            ctx.cache[key] = RunGraph(ctx.graph, ctx.cache["runs"], lisi_kernel_of(ctx))
        else:
            k = ctx.config.kbet_k if kind == "kbet" else ctx.config.mixing_k
            ctx.cache[key] = RunGraph(ctx.neighbors(k), ctx.cache["runs"])
    return ctx.cache[key]


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.ravel(), len(uniques)


def permuted_ilisi(ctx: Context, labels: Labels) -> np.ndarray:
    return lisi_from_runs(run_graph(ctx, "lisi"), *_codes(labels.embodiment))


def permuted_clisi(ctx: Context, labels: Labels) -> np.ndarray:
    return lisi_from_runs(run_graph(ctx, "lisi"), *_codes(labels.stage))


def permuted_kbet(ctx: Context, labels: Labels) -> np.ndarray:
    return kbet_from_runs(run_graph(ctx, "kbet"), *_codes(labels.embodiment), ctx.config.alpha)


def permuted_mixing(ctx: Context, labels: Labels) -> MixingSamples:
    return mixing_from_runs(run_graph(ctx, "mixing"), *_codes(labels.embodiment))
