"""How well an index retrieves the same task stage across embodiments (both directions)."""

from __future__ import annotations

import numpy as np

from probe import columns as C
from probe.errors import ConfigError
from probe.retrieval.retriever import Retriever
from probe.validate import FileKind, json_with_keys

#: the file ``probe retrieve --eval --out`` writes: only such a file is replaced (``--overwrite``)
SCORES_JSON = FileKind("retrieval scores JSON", json_with_keys("index", "layer", "scores"))


def retrieval_scores(retriever: Retriever, *, k: int = 5, r_cap: int | None = 1000) -> dict[str, dict]:
    """Stage-match retrieval scores of the index's store, both directions, label = (task, stage).

    For every other embodiment ``b`` of the store: ``"{b}_to_{a}"`` queries all of
    ``b``'s samples against the index (so an approximate index is judged as it is
    used) and ``"{a}_to_{b}"`` queries the indexed samples against ``b`` exactly
    (:func:`metrics.knn.knn`). Scores come from :mod:`metrics.retrieval`
    (precision@1, MAP@R, MRR, recall@5/10) plus precision@k, the mean share of the
    first ``k`` neighbours with the query's label. ``r_cap`` bounds R (and the search
    depth) on large stores; capped queries are counted in ``n_r_capped``.
    """
    from metrics.knn import knn
    from metrics.ranking import combine_labels, match_matrix
    from metrics.retrieval import evaluate_retrieval, retrieval_k

    index = retriever.index
    X = retriever.store.matrix(retriever.layer)
    meta = retriever.store.meta
    labels = combine_labels(meta[C.TASK].to_numpy(), meta[C.STAGE].to_numpy())
    emb = meta[C.EMBODIMENT].astype(str).to_numpy()
    a = retriever.embodiment
    others = [e for e in sorted(set(emb.tolist())) if e != a]
    if not others:
        raise ConfigError(f"store '{retriever.store.path}' holds only embodiment '{a}'; retrieval evaluation "
                          "needs a second embodiment to query with")
    a_rows = index.rows
    a_X = np.asarray(X[a_rows])
    out: dict[str, dict] = {}
    for b in others:
        b_rows = np.flatnonzero(emb == b)
        b_X = np.asarray(X[b_rows])
        kk = retrieval_k(labels[a_rows], r_cap, min_k=max(10, k))
        _, I = index.search(b_X, kk)
        out[f"{b}_to_{a}"] = _summary(evaluate_retrieval(I, labels[b_rows], labels[a_rows], r_cap),
                                      match_matrix(I[:, :k], labels[b_rows], labels[a_rows]), k,
                                      f"{index.kind.value} index")
        kk = retrieval_k(labels[b_rows], r_cap, min_k=max(10, k))
        nb = knn(a_X, b_X, kk, index.metric)
        out[f"{a}_to_{b}"] = _summary(evaluate_retrieval(nb, labels[a_rows], labels[b_rows], r_cap),
                                      match_matrix(nb.indices[:, :k], labels[a_rows], labels[b_rows]), k,
                                      "exact")
    return out


def _summary(result, match: np.ndarray, k: int, search: str) -> dict:
    per_query = match.mean(axis=1).astype(np.float64)
    per_query[result.r == 0] = np.nan
    finite = per_query[~np.isnan(per_query)]
    return {**result.summary(), f"precision_at_{k}": float(finite.mean()) if finite.size else float("nan"),
            "search": search}
