"""Retrieval metrics: hand-computed cases, brute-force numpy, frozen pytorch-metric-learning values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metrics import ranking
from metrics import retrieval as R
from metrics.knn import knn
from tests.conftest import clustered_latents, synthetic_meta

FIXTURES = Path(__file__).with_name("fixtures")

# reference labels a a b b c; three queries: a, b, and d (absent from the reference)
REF = np.array(["a", "a", "b", "b", "c"])
QUERY = np.array(["a", "b", "d"])
IDX = np.array([[0, 2, 1, 3, 4],   # a b a b c
                [0, 1, 2, 4, 3],   # a a b c b
                [4, 0, 1, 2, 3]])


def test_hand_computed_tiny_case():
    res = R.evaluate_retrieval(IDX, QUERY, REF)
    np.testing.assert_array_equal(res.hit_at_1, [1.0, 0.0, np.nan])
    np.testing.assert_array_equal(res.hit_at_5, [1.0, 1.0, np.nan])
    np.testing.assert_allclose(res.ap_at_r, [0.5, 0.0, np.nan])       # R = 2: (1/1 + 0) / 2 and 0
    np.testing.assert_allclose(res.reciprocal_rank, [1.0, 1 / 3, np.nan])
    np.testing.assert_array_equal(res.r, [2, 2, 0])
    assert res.precision_at_1 == 0.5
    assert res.map_at_r == pytest.approx(0.25)
    assert res.mrr == pytest.approx(2 / 3)
    assert res.recall_at_10 == 1.0  # the reference holds 5 < 10 samples: top-10 is all of it
    assert (res.n_queries, res.n_evaluated, res.n_missing_label, res.n_r_capped) == (3, 2, 1, 0)
    s = res.summary()
    assert s["n_missing_label"] == 1 and s["k"] == 5 and json.dumps(s)
    # the aggregate functions agree with the result object
    assert R.retrieval_precision_at_1(IDX, QUERY, REF) == 0.5
    assert R.retrieval_map_at_r(IDX, QUERY, REF) == pytest.approx(0.25)
    assert R.retrieval_mrr(IDX, QUERY, REF) == pytest.approx(2 / 3)
    assert R.retrieval_recall_at_5(IDX, QUERY, REF) == 1.0
    assert R.retrieval_recall_at_k(IDX, QUERY, REF, 2) == 0.5


def test_r_cap_and_narrow_graph_are_flagged():
    ap = R.ap_at_r_samples(IDX, QUERY, REF, r_cap=1)
    np.testing.assert_allclose(ap.values, [1.0, 0.0, np.nan])
    np.testing.assert_array_equal(ap.capped, [True, True, False])
    res = R.evaluate_retrieval(IDX, QUERY, REF, r_cap=1)
    assert res.n_r_capped == 2
    narrow = R.ap_at_r_samples(IDX[:, :1], QUERY, REF)    # k = 1 < R = 2
    np.testing.assert_array_equal(narrow.r_used, [1, 1, 0])


def test_missing_neighbours_never_match():
    idx = np.array([[-1, 0], [2, -1]])
    np.testing.assert_array_equal(ranking.match_matrix(idx, np.array(["a", "b"]), REF), [[False, True], [True, False]])
    np.testing.assert_allclose(R.reciprocal_rank_samples(idx, np.array(["a", "b"]), REF), [0.5, 1.0])


def test_numeric_and_string_labels_give_the_same_scores():
    as_int = {"a": 0, "b": 1, "c": 2, "d": 3}
    qi = np.array([as_int[x] for x in QUERY])
    ri = np.array([as_int[x] for x in REF])
    assert R.retrieval_map_at_r(IDX, qi, ri) == R.retrieval_map_at_r(IDX, QUERY, REF)
    lab = ranking.combine_labels(np.array(["pick", "pick"]), np.array(["reach", "grasp"]))
    assert lab[0] != lab[1] and len(set(ranking.combine_labels(np.array(["a_b", "a"]), np.array(["c", "b_c"])))) == 2


def _brute_force(idx, ql, rl):
    ap, rr, hit1, hit5 = [], [], [], []
    for i, row in enumerate(idx):
        r = int((rl == ql[i]).sum())
        if r == 0:
            ap.append(np.nan), rr.append(np.nan), hit1.append(np.nan), hit5.append(np.nan)
            continue
        match = [rl[j] == ql[i] for j in row]
        r_used = min(r, len(row))
        ap.append(sum(np.mean(match[: p + 1]) for p in range(r_used) if match[p]) / r_used)
        rr.append(next((1.0 / (p + 1) for p, m in enumerate(match) if m), 0.0))
        hit1.append(float(match[0]))
        hit5.append(float(any(match[:5])))
    return map(np.array, (ap, rr, hit1, hit5))


@pytest.mark.parametrize("k", [None, 12])
def test_agrees_with_brute_force_numpy(k, monkeypatch):
    monkeypatch.setattr(ranking, "BLOCK", 7)   # several query blocks
    rng = np.random.default_rng(3)
    ref_labels = rng.integers(0, 6, size=120)
    query_labels = rng.integers(0, 7, size=50)
    centers = rng.normal(size=(7, 5))
    ref = (centers[ref_labels] + rng.normal(size=(120, 5))).astype(np.float32)
    query = (centers[query_labels] + rng.normal(size=(50, 5))).astype(np.float32)
    kk = R.retrieval_k(ref_labels) if k is None else k
    nb = knn(query, ref, kk, "cosine")
    res = R.evaluate_retrieval(nb, query_labels, ref_labels)
    ap, rr, hit1, hit5 = _brute_force(nb.indices, query_labels, ref_labels)
    np.testing.assert_allclose(res.ap_at_r, ap, atol=1e-12)
    np.testing.assert_allclose(res.reciprocal_rank, rr, atol=1e-12)
    np.testing.assert_array_equal(res.hit_at_1, hit1)
    np.testing.assert_array_equal(res.hit_at_5, hit5)
    assert res.n_missing_label == int((query_labels == 6).sum()) > 0
    assert (res.n_r_capped > 0) == (k is not None)


def test_agrees_with_frozen_pytorch_metric_learning():
    ref = json.loads((FIXTURES / "pml_reference.json").read_text())
    query = np.array(ref["query"], dtype=np.float32)
    reference = np.array(ref["reference"], dtype=np.float32)
    ql, rl = np.array(ref["query_labels"]), np.array(ref["reference_labels"])
    exact = ref["cases"]["exact"]
    assert exact["k"] == R.retrieval_k(rl)
    nb = knn(query, reference, exact["k"], "l2")       # PML's FaissKNN is exact L2 too
    np.testing.assert_array_equal(nb.indices, exact["indices"])
    res = R.evaluate_retrieval(nb, ql, rl)
    assert res.n_missing_label > 0 and res.n_r_capped == 0
    assert res.precision_at_1 == pytest.approx(exact["scores"]["precision_at_1"], abs=1e-6)
    assert res.map_at_r == pytest.approx(exact["scores"]["mean_average_precision_at_r"], abs=1e-6)
    assert res.mrr == pytest.approx(exact["scores"]["mean_reciprocal_rank"], abs=1e-6)
    # capped graph (k=3): same MRR / P@1 on the graph; PML divides the truncated sum by the full R
    capped = ref["cases"]["capped_k3"]
    idx3 = np.array(capped["indices"])
    np.testing.assert_array_equal(idx3, nb.indices[:, :3])
    assert R.retrieval_mrr(idx3, ql, rl) == pytest.approx(capped["scores"]["mean_reciprocal_rank"], abs=1e-6)
    ap = R.ap_at_r_samples(idx3, ql, rl)
    assert ap.capped.sum() == (ap.r > 3).sum() > 0
    lower_bound = np.nanmean(ap.values * ap.r_used / np.where(ap.r > 0, ap.r, 1))
    assert lower_bound == pytest.approx(capped["scores"]["mean_average_precision_at_r"], abs=1e-6)


def test_separated_labels_score_one_and_shuffled_labels_score_chance():
    meta = synthetic_meta(n_episodes=3, frames=12)
    X = clustered_latents(meta, noise=0.05)
    labels = ranking.combine_labels(meta["task"].to_numpy(), meta["stage"].to_numpy())
    emb = meta["embodiment"].to_numpy()
    out = R.cross_retrieval(X, emb, labels)
    assert set(out) == {"robot_to_human", "human_to_robot"}
    for res in out.values():
        assert res.precision_at_1 == 1.0 and res.map_at_r == pytest.approx(1.0) and res.mrr == 1.0
        assert res.n_r_capped == 0
    shuffled = np.random.default_rng(0).permutation(labels)
    chance = R.cross_retrieval(X, emb, shuffled, k=10)
    assert chance["robot_to_human"].precision_at_1 < 0.5


def test_invalid_inputs_have_helpful_messages():
    with pytest.raises(ValueError, match="query labels hold 2 entries but the neighbour matrix has 3"):
        R.evaluate_retrieval(IDX, QUERY[:2], REF)
    with pytest.raises(ValueError, match=r"must lie in \[-1, 4\].*swapped"):
        R.evaluate_retrieval(IDX + 1, QUERY, REF)
    with pytest.raises(ValueError, match="recall@10 needs 10 neighbours per query but the graph holds 5"):
        R.evaluate_retrieval(IDX, QUERY, np.array(list("aabbc") * 3))
    with pytest.raises(ValueError, match="labels must be 1-D.*combine_labels"):
        R.evaluate_retrieval(IDX, QUERY[:, None], REF)
    with pytest.raises(ValueError, match="r_cap must be >= 1"):
        R.ap_at_r_samples(IDX, QUERY, REF, r_cap=0)
    with pytest.raises(ValueError, match="2-D"):
        R.evaluate_retrieval(np.arange(3), QUERY, REF)
    with pytest.raises(ValueError, match="must be integers"):
        R.evaluate_retrieval(IDX.astype(float), QUERY, REF)
    X = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="no samples of embodiment 'robot'; present: \\['human'\\]"):
        R.cross_retrieval(X, np.array(["human"] * 4), np.array(list("abab")))
