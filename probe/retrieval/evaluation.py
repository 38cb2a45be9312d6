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

    Where no query of a direction has its label among the reference's, its scores are ``nan``
    (undefined, written as ``null`` in JSON) and the direction carries a ``"note"`` saying why
    (:func:`no_shared_label`).
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
        if not np.isin(labels[b_rows], labels[a_rows]).any():
            note = no_shared_label(b, a, meta.iloc[b_rows], meta.iloc[a_rows])
            out[f"{b}_to_{a}"]["note"] = out[f"{a}_to_{b}"]["note"] = note
    return out


def no_shared_label(query: str, indexed: str, query_meta, index_meta, shown: int = 3) -> str:
    """The one line that says why retrieval between ``query`` and the ``indexed`` embodiment has no score:
    no (task, stage) label of one is a label of the other (a few of each are named)."""
    def few(m) -> str:
        pairs = sorted(set(zip(m[C.TASK].astype(str), m[C.STAGE].astype(str))))
        named = ", ".join(f"{t}/{s}" for t, s in pairs[:shown])
        return named + (f", ... ({len(pairs)} in all)" if len(pairs) > shown else "")

    return (f"no {query} query shares a (task, stage) label with the {indexed} index: precision is undefined "
            f"({query}: {few(query_meta)}; {indexed}: {few(index_meta)}); label stages/tasks consistently "
            "across embodiments")


def _summary(result, match: np.ndarray, k: int, search: str) -> dict:
    per_query = match.mean(axis=1).astype(np.float64)
    per_query[result.r == 0] = np.nan
    finite = per_query[~np.isnan(per_query)]
    return {**result.summary(), f"precision_at_{k}": float(finite.mean()) if finite.size else float("nan"),
            "search": search}
