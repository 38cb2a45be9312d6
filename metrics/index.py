"""The one FAISS index factory: the kinds of index, their parameters chosen from the data size, and
building an empty index of a kind.

Two users build their indexes here: the suite's approximate kNN graph (:func:`metrics.graph.build_graph`)
and the retrieval indexes (:mod:`probe.retrieval.index` trains, fills and saves them,
:mod:`probe.retrieval.index_search` searches them).
:func:`resolve_params` turns the options a user gave (``None``: choose from the data size) into the
concrete parameters, :func:`new_index` builds the empty index, :func:`training_rows` picks the rows an
IVF index trains on and :func:`few_threads` runs a handful of queries on one FAISS thread.
Exact search itself is :mod:`metrics.knn`'s (:func:`metrics.knn.flat_index`), the floor below this one.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Iterator
from enum import Enum
from typing import TypedDict

import faiss
import numpy as np

from metrics.knn import Metric, flat_index

log = logging.getLogger(__name__)

__all__ = [
    "IndexKind",
    "IndexParams",
    "check_options",
    "faiss_metric",
    "few_threads",
    "index_kind",
    "new_index",
    "resolve_params",
    "training_rows",
]

FEW_QUERIES = 4  # searches of at most this many queries run single-threaded
TRAIN_PER_LIST = 64  # training points per IVF list
MIN_PER_LIST = 39  # FAISS warns below 39 training points per list: nlist is at most n / 39
MIN_NPROBE = 16  # IVF lists probed per query by default: max(MIN_NPROBE, nlist / NPROBE_SHARE), at most nlist
NPROBE_SHARE = 40  # (recall@10 ~1.0 at 100k x 256)
HNSW_M = 32  # HNSW neighbours per node
EF_CONSTRUCTION = 80  # HNSW build depth
EF_SEARCH = 128  # HNSW search depth
PQ_RERANK = 100  # candidates re-ranked exactly by default for ivfpq, whose stored distances are approximate
OPTIONS = ("nlist", "pq_m", "pq_nbits", "hnsw_m", "ef_construction", "nprobe", "ef_search", "rerank")


class IndexKind(str, Enum):
    """The kinds of FAISS index: exact (flat) or approximate (HNSW, IVF-flat, IVF-PQ).

    ``EXACT`` and ``FLAT`` are the same exact search (a FAISS ``IndexFlat``) under the two
    spellings in use: ``exact`` is the metrics suite's (``--index exact``, graph cache names),
    ``flat`` the retrieval index's (``probe index --kind flat``, index manifests). Ask
    :attr:`exact` rather than comparing with one of them.
    """

    EXACT = "exact"
    FLAT = "flat"
    HNSW = "hnsw"
    IVF = "ivf"
    IVFPQ = "ivfpq"

    @property
    def exact(self) -> bool:
        """Whether this kind searches exactly (``exact`` or ``flat``)."""
        return self in (IndexKind.EXACT, IndexKind.FLAT)

    @property
    def inverted(self) -> bool:
        """Whether this kind is an inverted-list (IVF) index: trained, and searched with ``nprobe``."""
        return self in (IndexKind.IVF, IndexKind.IVFPQ)


class IndexParams(TypedDict, total=False):
    """Concrete build and search parameters of an index (JSON-ready; only those of its kind are present).

    ``nlist``, ``nprobe``: IVF lists and lists probed per query (ivf, ivfpq); ``pq_m``, ``pq_nbits``:
    PQ sub-vectors and bits per code (ivfpq); ``hnsw_m``, ``ef_construction``, ``ef_search``: HNSW
    neighbours per node, build and search depth (hnsw); ``rerank``: top candidates re-ranked with
    exact distances (0: off; every kind).
    """

    nlist: int
    nprobe: int
    pq_m: int
    pq_nbits: int
    hnsw_m: int
    ef_construction: int
    ef_search: int
    rerank: int


def index_kind(value: IndexKind | str, allowed: Iterable[IndexKind] = tuple(IndexKind)) -> IndexKind:
    """``value`` as an :class:`IndexKind`, one of ``allowed``.

    Parameters
    ----------
    value : IndexKind or its value (``"ivf"`` ...)
    allowed : the kinds a caller builds (default: all)

    Raises
    ------
    ValueError
        ``value`` names no kind, or one outside ``allowed``; the message lists the allowed ones.
    """
    names = [k.value for k in allowed]
    if value not in names:
        raise ValueError(f"index kind must be one of {names}, got {value!r}")
    return IndexKind(value)


def check_options(nlist: int | None = None, pq_m: int | None = None, pq_nbits: int | None = None,
                  hnsw_m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION, nprobe: int | None = None,
                  ef_search: int | None = None, rerank: int | None = None) -> None:
    """Check the options :func:`resolve_params` takes, before any data is seen.

    Raises
    ------
    ValueError
        An option lies outside its range (the message names it and its range).
    """
    for name, value in (("nlist", nlist), ("pq_m", pq_m), ("pq_nbits", pq_nbits), ("nprobe", nprobe),
                        ("ef_search", ef_search)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if pq_nbits is not None and pq_nbits > 16:
        raise ValueError(f"pq_nbits must be <= 16, got {pq_nbits}")
    if hnsw_m < 2 or ef_construction < 1:
        raise ValueError(f"hnsw_m must be >= 2 and ef_construction >= 1, got {hnsw_m}, {ef_construction}")
    if rerank is not None and rerank < 0:
        raise ValueError(f"rerank must be >= 0 (0 turns it off), got {rerank}")


def _nearest_divisor(d: int, target: float) -> int:
    divisors = [m for m in range(1, d + 1) if d % m == 0]
    return min(divisors, key=lambda m: (abs(m - target), -m))


def resolve_params(kind: IndexKind | str, n: int, d: int, *, nlist: int | None = None, pq_m: int | None = None,
                   pq_nbits: int | None = None, hnsw_m: int = HNSW_M, ef_construction: int = EF_CONSTRUCTION,
                   nprobe: int | None = None, ef_search: int | None = None,
                   rerank: int | None = None) -> IndexParams:
    """The concrete build and search parameters of a ``kind`` index over ``n`` vectors of dimension ``d``.

    Parameters
    ----------
    kind : IndexKind or its value
    n, d : int
        Vectors the index will hold and their dimension.
    nlist : IVF lists (default ``4 sqrt(n)``, rounded; at most ``n / 39``, a warning when a given one is cut)
    pq_m : PQ sub-vectors (default: the divisor of ``d`` nearest ``d / 16``, at least 4: 16 bytes per
        256-d vector; more sub-vectors train much slower and re-ranking recovers the recall)
    pq_nbits : bits per PQ code (default 8, fewer for tiny sets)
    hnsw_m : HNSW neighbours per node (default 32)
    ef_construction : HNSW build depth (default 80)
    nprobe : IVF lists visited per query (default ``max(16, nlist / 40)``, at most ``nlist``)
    ef_search : HNSW search depth (default 128)
    rerank : re-rank this many top candidates with exact distances (0: off; default 0, and 100 for
        ``ivfpq`` whose stored distances are approximate)

    Returns
    -------
    IndexParams
        Only the parameters of ``kind`` (and ``rerank``), in a fixed order.

    Raises
    ------
    ValueError
        An option is out of range (:func:`check_options`) or ``pq_m`` does not divide ``d``.
    """
    kind = IndexKind(kind)
    check_options(nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits, hnsw_m=hnsw_m, ef_construction=ef_construction,
                  nprobe=nprobe, ef_search=ef_search, rerank=rerank)
    params: IndexParams = {}
    if kind.inverted:
        lists = max(1, min(nlist or int(round(4 * math.sqrt(n))), n // MIN_PER_LIST if n >= MIN_PER_LIST else 1))
        if nlist and lists != nlist:
            log.warning("nlist=%d is too many lists for %d vectors; using %d", nlist, n, lists)
        params["nlist"] = lists
        params["nprobe"] = min(lists, nprobe or max(MIN_NPROBE, lists // NPROBE_SHARE))
    if kind is IndexKind.IVFPQ:
        m = pq_m or _nearest_divisor(d, max(d / 16, min(d, 4)))
        if d % m:
            raise ValueError(f"pq_m={m} must divide the dimension {d}; try one of "
                             f"{[x for x in range(1, d + 1) if d % x == 0]}")
        nbits = pq_nbits or max(1, min(8, int(math.log2(max(n, 2) / MIN_PER_LIST)) if n >= 2 * MIN_PER_LIST else 1))
        params["pq_m"], params["pq_nbits"] = m, nbits
    if kind is IndexKind.HNSW:
        params["hnsw_m"], params["ef_construction"] = hnsw_m, ef_construction
        params["ef_search"] = ef_search or EF_SEARCH
    params["rerank"] = (PQ_RERANK if kind is IndexKind.IVFPQ else 0) if rerank is None else int(rerank)
    return params


def faiss_metric(metric: Metric | str) -> int:
    """FAISS's metric constant for ``metric``: inner product for cosine (on normalised rows), L2 otherwise."""
    return faiss.METRIC_INNER_PRODUCT if Metric(metric) is Metric.COSINE else faiss.METRIC_L2


def new_index(kind: IndexKind | str, d: int, metric: Metric | str, params: IndexParams | None = None) -> faiss.Index:
    """An empty FAISS index of ``kind`` for rows of dimension ``d``.

    Parameters
    ----------
    kind : IndexKind or its value
    d : int
        Dimension of the rows (prepared by :func:`metrics.knn.prepare` for ``metric``).
    metric : "cosine" or "l2"
    params : IndexParams, optional
        From :func:`resolve_params`; needed by the approximate kinds (not by exact / flat).

    Returns
    -------
    faiss.Index
        Exact kinds: :func:`metrics.knn.flat_index`. HNSW: ``IndexHNSWFlat`` with ``efConstruction``
        set. IVF / IVF-PQ: ``IndexIVFFlat`` / ``IndexIVFPQ`` owning a flat quantiser, untrained
        (train on :func:`training_rows`). Search parameters (``nprobe``, ``efSearch``) are the caller's.
    """
    kind = IndexKind(kind)
    if kind.exact:
        return flat_index(d, metric)
    if params is None:
        raise ValueError(f"a {kind.value} index needs its parameters; pass resolve_params({kind.value!r}, n, d)")
    fm = faiss_metric(metric)
    if kind is IndexKind.HNSW:
        index = faiss.IndexHNSWFlat(d, params["hnsw_m"], fm)
        index.hnsw.efConstruction = params["ef_construction"]
        return index
    quantizer = flat_index(d, metric)
    if kind is IndexKind.IVF:
        index = faiss.IndexIVFFlat(quantizer, d, params["nlist"], fm)
    else:
        index = faiss.IndexIVFPQ(quantizer, d, params["nlist"], params["pq_m"], params["pq_nbits"], fm)
    index.own_fields = True
    quantizer.this.disown()
    return index


def training_rows(n: int, kind: IndexKind | str, params: IndexParams, seed: int) -> np.ndarray:
    """Sorted positions of the rows a ``kind`` index over ``n`` rows trains on.

    IVF kinds train on 64 rows per list (IVF-PQ on at least 64 per PQ centroid), sampled without
    replacement with ``seed``; all rows when that is at least ``n``. Other kinds need no training:
    one row (all when fewer).
    """
    kind = IndexKind(kind)
    want = 0
    if kind.inverted:
        want = TRAIN_PER_LIST * params["nlist"]
    if kind is IndexKind.IVFPQ:
        want = max(want, 64 * (1 << params["pq_nbits"]))
    want = min(n, max(want, 1))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=want, replace=False)) if want < n else np.arange(n)


@contextlib.contextmanager
def few_threads(n_queries: int) -> Iterator[None]:
    """One FAISS thread while searching a handful of queries (at most :data:`FEW_QUERIES`).

    OpenMP start-up and, on busy machines, waiting for cores cost more than the scan (measured:
    2.5 ms single-threaded vs 50 ms with 2 threads for one query over 20k x 256 on a loaded
    2-core machine). More queries run with FAISS's threads unchanged.
    """
    if n_queries > FEW_QUERIES:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
