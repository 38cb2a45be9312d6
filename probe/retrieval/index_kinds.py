"""The kinds of FAISS index (flat, HNSW, IVF, IVF-PQ): their options, parameters chosen from the data
size, and building an empty index of a kind. :mod:`probe.retrieval.index` trains, fills, saves and searches them."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

import faiss
import numpy as np

from metrics.knn import Metric
from probe.errors import ConfigError

log = logging.getLogger(__name__)

FEW_QUERIES = 4  # searches of at most this many queries run single-threaded
TRAIN_PER_LIST = 64  # training points per IVF list (FAISS warns below 39)


class IndexKind(str, Enum):
    """The kinds of FAISS index ``probe index`` builds."""

    FLAT = "flat"
    HNSW = "hnsw"
    IVF = "ivf"
    IVFPQ = "ivfpq"


@dataclass(frozen=True)
class IndexConfig:
    """How to build and search an index. ``None`` parameters are chosen from the data size.

    Parameters
    ----------
    kind : flat | hnsw | ivf | ivfpq
    metric : cosine (rows L2-normalised, inner product) | l2 (squared Euclidean)
    nlist : IVF lists (default ``4 sqrt(n)``, at most ``n / 39``)
    pq_m : PQ sub-vectors (default: the divisor of ``d`` nearest ``d / 16``, at least 4: 16 bytes
        per 256-d vector; more sub-vectors train much slower and re-ranking recovers the recall)
    pq_nbits : bits per PQ code (default 8, fewer for tiny sets)
    hnsw_m : HNSW neighbours per node (default 32)
    ef_construction : HNSW build depth (default 80)
    nprobe : IVF lists visited per query (default ``max(16, nlist / 40)``: recall@10 ~1.0 at 100k x 256)
    ef_search : HNSW search depth (default 128)
    rerank : re-rank this many top candidates with exact distances (0: off;
        default 0, and 100 for ``ivfpq`` whose stored distances are approximate)
    seed : seed for training-set sampling
    """

    kind: IndexKind = IndexKind.FLAT
    metric: Metric = Metric.COSINE
    nlist: int | None = None
    pq_m: int | None = None
    pq_nbits: int | None = None
    hnsw_m: int = 32
    ef_construction: int = 80
    nprobe: int | None = None
    ef_search: int | None = None
    rerank: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", IndexKind(self.kind))
        except ValueError:
            raise ConfigError(f"index kind must be one of {[k.value for k in IndexKind]}, got {self.kind!r}") from None
        try:
            object.__setattr__(self, "metric", Metric(self.metric))
        except ValueError:
            raise ConfigError(f"metric must be one of {[m.value for m in Metric]}, got {self.metric!r}") from None
        for name in ("nlist", "pq_m", "pq_nbits", "nprobe", "ef_search"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        if self.pq_nbits is not None and self.pq_nbits > 16:
            raise ConfigError(f"pq_nbits must be <= 16, got {self.pq_nbits}")
        if self.hnsw_m < 2 or self.ef_construction < 1:
            raise ConfigError(f"hnsw_m must be >= 2 and ef_construction >= 1, got {self.hnsw_m}, {self.ef_construction}")
        if self.rerank is not None and self.rerank < 0:
            raise ConfigError(f"rerank must be >= 0 (0 turns it off), got {self.rerank}")


@contextlib.contextmanager
def few_threads(n_queries: int):
    """One FAISS thread for a handful of queries: OpenMP start-up and, on busy machines, waiting
    for cores cost more than the scan (measured: 2.5 ms single-threaded vs 50 ms with 2 threads
    for one query over 20k x 256 on a loaded 2-core machine)."""
    if n_queries > FEW_QUERIES:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _nearest_divisor(d: int, target: float) -> int:
    divisors = [m for m in range(1, d + 1) if d % m == 0]
    return min(divisors, key=lambda m: (abs(m - target), -m))


def resolve_params(config: IndexConfig, n: int, d: int) -> dict[str, Any]:
    """The concrete build and search parameters for ``n`` vectors of dimension ``d``."""
    kind = config.kind
    params: dict[str, Any] = {}
    if kind in (IndexKind.IVF, IndexKind.IVFPQ):
        nlist = config.nlist or int(round(4 * math.sqrt(n)))
        nlist = max(1, min(nlist, n // 39 if n >= 39 else 1))
        if config.nlist and nlist != config.nlist:
            log.warning("nlist=%d is too many lists for %d vectors; using %d", config.nlist, n, nlist)
        params["nlist"] = nlist
        params["nprobe"] = min(nlist, config.nprobe or max(16, nlist // 40))
    if kind is IndexKind.IVFPQ:
        m = config.pq_m or _nearest_divisor(d, max(d / 16, min(d, 4)))
        if d % m:
            raise ConfigError(f"pq_m={m} must divide the dimension {d}; try one of "
                              f"{[x for x in range(1, d + 1) if d % x == 0]}")
        nbits = config.pq_nbits or max(1, min(8, int(math.log2(max(n, 2) / 39)) if n >= 78 else 1))
        params["pq_m"], params["pq_nbits"] = m, nbits
    if kind is IndexKind.HNSW:
        params["hnsw_m"] = config.hnsw_m
        params["ef_construction"] = config.ef_construction
        params["ef_search"] = config.ef_search or 128
    default_rerank = 100 if kind is IndexKind.IVFPQ else 0
    params["rerank"] = default_rerank if config.rerank is None else int(config.rerank)
    return params


def faiss_metric(metric: Metric) -> int:
    return faiss.METRIC_INNER_PRODUCT if metric is Metric.COSINE else faiss.METRIC_L2


def new_index(kind: IndexKind, metric: Metric, d: int, params: dict[str, Any]) -> faiss.Index:
    fm = faiss_metric(metric)
    if kind is IndexKind.FLAT:
        return faiss.IndexFlatIP(d) if metric is Metric.COSINE else faiss.IndexFlatL2(d)
    if kind is IndexKind.HNSW:
        index = faiss.IndexHNSWFlat(d, params["hnsw_m"], fm)
        index.hnsw.efConstruction = params["ef_construction"]
        return index
    quantizer = faiss.IndexFlatIP(d) if metric is Metric.COSINE else faiss.IndexFlatL2(d)
    if kind is IndexKind.IVF:
        index = faiss.IndexIVFFlat(quantizer, d, params["nlist"], fm)
    else:
        index = faiss.IndexIVFPQ(quantizer, d, params["nlist"], params["pq_m"], params["pq_nbits"], fm)
    index.own_fields = True
    quantizer.this.disown()
    return index


def training_rows(n: int, kind: IndexKind, params: dict[str, Any], seed: int) -> np.ndarray:
    want = 0
    if kind in (IndexKind.IVF, IndexKind.IVFPQ):
        want = TRAIN_PER_LIST * params["nlist"]
    if kind is IndexKind.IVFPQ:
        want = max(want, 64 * (1 << params["pq_nbits"]))
    want = min(n, max(want, 1))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=want, replace=False)) if want < n else np.arange(n)
