"""Metrics on too little data are undefined and say why once: paired metrics on fewer matched pairs than they
need, notes on undefined metrics grouped one line per reason (with the fix where one exists), and the report's
best-mixed layer when no layer mixes or layers tie."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import clustered_latents, synthetic_meta
from probe import columns as C

FIX = "give both embodiments one task name with probe extract --task EMBODIMENT=TEXT"
PAIRED4 = ("cka_linear", "cka_debiased", "procrustes_angular", "svcca")


def _labels(meta: pd.DataFrame):
    from metrics.spec import Labels

    return Labels(embodiment=meta[C.EMBODIMENT].astype(str).to_numpy(), stage=meta[C.STAGE].astype(str).to_numpy(),
                  task=meta[C.TASK].astype(str).to_numpy(), episode=meta[C.EPISODE].astype(str).to_numpy(),
                  progress=meta[C.PROGRESS].to_numpy(), frame=meta[C.FRAME].to_numpy(),
                  stage_progress=meta[C.STAGE_PROGRESS].to_numpy())


def _few_grasp_pairs() -> pd.DataFrame:
    """One task, stages of 10 frames (one per stage-progress bin); the human's grasp kept in bins 0-2 of one
    episode only: 3 matched pairs in grasp, 10 in reach and lift."""
    meta = synthetic_meta(n_episodes=3, frames=30, tasks=("pick",))
    human_grasp = (meta[C.EMBODIMENT] == "human") & (meta[C.STAGE] == "grasp")
    first = meta[C.EPISODE] == meta.loc[meta[C.EMBODIMENT] == "human", C.EPISODE].min()
    drop = human_grasp & ~(first & (meta[C.STAGE_PROGRESS] < 0.3))
    return meta[~drop].reset_index(drop=True)


def test_two_pairs_make_the_biased_paired_scores_perfect_whatever_the_data():
    """Why a minimum: two centred rows are one line, so unrelated representations score perfectly."""
    from metrics import paired as P

    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(2, 16)), rng.normal(size=(2, 9))
    assert P.cka_linear(A, B) == pytest.approx(1.0) and P.svcca(A, B) == pytest.approx(1.0)
    assert P.procrustes_angular(A, B) == pytest.approx(0.0, abs=1e-6)
    for m in (0, 2, 3):
        scores = P.paired_scores(rng.normal(size=(m, 16)), rng.normal(size=(m, 16)))
        assert scores["n_pairs"] == m and all(np.isnan(scores[name]) for name in PAIRED4 + ("mutual_knn",))


def test_paired_scores_at_the_minimum_are_the_functions_values():
    from metrics import paired as P

    rng = np.random.default_rng(1)
    assert P.min_pairs(10) == {**{name: P.MIN_PAIRS for name in PAIRED4}, "mutual_knn": 11} and P.MIN_PAIRS == 4
    for m, k in ((4, 3), (11, 10)):
        A, B = rng.normal(size=(m, 6)), rng.normal(size=(m, 5))
        scores = P.paired_scores(A, B, k=k)
        assert scores["cka_linear"] == P.cka_linear(A, B) and scores["svcca"] == P.svcca(A, B)
        assert scores["cka_debiased"] == P.cka_debiased(A, B)
        assert scores["procrustes_angular"] == P.procrustes_angular(A, B)
        assert scores["mutual_knn"] == P.mutual_knn(A, B, k)


def test_a_stage_with_too_few_pairs_is_undefined_with_one_note_and_the_others_keep_their_values():
    from metrics.notes import group_notes
    from metrics.pairs import matched_pairs
    from metrics.paired import paired_scores
    from metrics.suite import MetricsConfig, run_suite

    meta = _few_grasp_pairs()
    X = clustered_latents(meta, dim=12)
    labels = _labels(meta)
    names = PAIRED4 + ("mutual_knn",)
    res = run_suite(X, labels, MetricsConfig(bootstrap=0, null_repeats=0, permutations=0, k=20, by="stage",
                                             metrics=names))
    for stage in ("reach", "lift"):  # 10 pairs: the four defined, as computed directly; mutual_knn needs 11
        rows = meta[C.STAGE] == stage
        pairs = matched_pairs(X[rows], labels.embodiment[rows], labels.task[rows], labels.stage[rows],
                              labels.stage_progress[rows], "human", "robot")
        direct = paired_scores(pairs.A, pairs.B)
        assert len(pairs) == 10
        for name in PAIRED4:
            assert res.scopes[stage][name].value == pytest.approx(direct[name], abs=1e-9), (stage, name)
        assert np.isnan(res.scopes[stage]["mutual_knn"].value)
    assert all(np.isnan(res.scopes["grasp"][name].value) for name in names)
    overall = matched_pairs(X, labels.embodiment, labels.task, labels.stage, labels.stage_progress, "human", "robot")
    assert len(overall) == 23  # the whole store has enough: every metric defined, as computed directly
    direct = paired_scores(overall.A, overall.B)
    assert all(res.metrics[name].value == pytest.approx(direct[name], abs=1e-9) for name in names)
    why = ("matched pairs ((task, stage, stage-progress bin) cells seen by both 'human' and 'robot'); cka_linear, "
           "cka_debiased, procrustes_angular and svcca need at least 4, mutual_knn at least 11")
    assert [n for n in group_notes(res.notes) if "matched pairs" in n] == [
        f"cka_linear, cka_debiased, mutual_knn, procrustes_angular, svcca (stage grasp): not computed (3 {why})",
        f"mutual_knn (stages reach, lift): not computed (10 {why})"]


def test_a_store_with_too_few_pairs_is_undefined_overall_and_a_gate_says_why():
    from metrics.notes import group_notes
    from metrics.suite import MetricsConfig, run_suite
    from probe.report.gates import undefined_reason

    meta = synthetic_meta(n_episodes=2, frames=10, tasks=("pick",), stages=("reach",))
    keep = (meta[C.EMBODIMENT] == "robot") | ((meta[C.EPISODE] == 0) & (meta[C.FRAME] < 3))
    meta = meta[keep].reset_index(drop=True)  # the human: 3 frames in 3 bins of one stage
    res = run_suite(clustered_latents(meta, dim=8, seed=2), _labels(meta),
                    MetricsConfig(bootstrap=0, null_repeats=0, permutations=0, k=10, metrics=PAIRED4))
    assert all(np.isnan(res.metrics[name].value) for name in PAIRED4)
    grouped = [n for n in group_notes(res.notes) if "matched pairs" in n]
    assert len(grouped) == 1 and grouped[0].startswith(", ".join(PAIRED4) + ": not computed (3 matched pairs")
    record = {"metrics": {n: v.to_dict() for n, v in res.metrics.items()}, "notes": res.notes}
    assert record["metrics"]["svcca"]["value"] is None
    assert undefined_reason(record, "svcca").startswith("undefined: 3 matched pairs ((task, stage, stage-progress bin)")


def test_group_notes_makes_one_line_per_reason():
    from metrics.notes import group_notes, undefined_note

    why = "the embodiment probe needs at least 2 episodes of every embodiment"
    notes = ["95% intervals from 30 replicates", undefined_note("embodiment_probe_acc", "not computed", why)]
    notes += [undefined_note("embodiment_probe_acc", "not computed", why, f"stage {s}") for s in ("reach", "put down")]
    notes += [undefined_note(n, "nan", "no task is seen by both (x)") for n in ("kendall_tau", "cycle_consistency")]
    notes += [undefined_note("svcca", "not computed", why, "null"), "95% intervals from 30 replicates"]
    assert notes[2] == f"embodiment_probe_acc (stage reach): not computed ({why})"
    assert group_notes(notes) == [
        "95% intervals from 30 replicates",
        f"embodiment_probe_acc (overall; stages reach, put down); svcca (null): not computed ({why})",
        "kendall_tau, cycle_consistency: nan (no task is seen by both (x))"]
    assert group_notes(["frechet_distance: the covariances are singular"]) == ["frechet_distance: the covariances "
                                                                               "are singular"]


def test_unshared_tasks_and_stages_say_how_to_share_them():
    from metrics.suite import MetricsConfig, run_suite

    meta = synthetic_meta(n_episodes=3, frames=12, tasks=("pick",))
    config = MetricsConfig(bootstrap=0, null_repeats=0, permutations=0, k=20, metrics=("cka_linear", "kendall_tau"))
    human = meta[C.EMBODIMENT] == "human"
    staged = meta.copy()
    staged.loc[human, C.STAGE] = "h-" + staged.loc[human, C.STAGE]  # a task shared, no stage name
    res = run_suite(clustered_latents(staged, dim=8), _labels(staged), config)
    assert np.isfinite(res.metrics["kendall_tau"].value)
    assert res.notes.count("cka_linear: nan (no (task, stage) is seen by both 'human' and 'robot'; they share a task "
                           "but no stage name in it: label both embodiments' stages alike (probe extract --stages))") == 1
    tasked = meta.copy()
    tasked.loc[human, C.TASK] = "pick-by-hand"
    res = run_suite(clustered_latents(tasked, dim=8), _labels(tasked), config)
    assert [n for n in res.notes if "is seen by both" in n] == [
        f"cka_linear: nan (no (task, stage) is seen by both 'human' and 'robot'; their task names differ: {FIX})",
        f"kendall_tau: nan (no task is seen by both 'human' and 'robot'; their task names differ: {FIX})"]


def test_probe_metrics_prints_each_reason_once(tmp_path, capsys):
    from probe.cli import main
    from probe.store.writer import write_store

    meta = synthetic_meta(n_episodes=3, frames=12)
    human = meta[C.EMBODIMENT] == "human"
    meta.loc[human, C.TASK] = meta.loc[human, C.TASK] + "-by-hand"  # nothing shared
    meta = meta[~human | (meta[C.EPISODE] == meta.loc[human, C.EPISODE].min())].reset_index(drop=True)  # 1 episode
    write_store(tmp_path / "s", meta, {"b": clustered_latents(meta, dim=8)})
    code = main(["metrics", str(tmp_path / "s"), "--by", "stage", "--bootstrap", "0", "--nulls", "0",
                 "--permutations", "0", "--k", "10", "--metrics", "embodiment_probe_acc,ilisi,cka_linear,svcca,"
                 "retrieval_precision_at_1_robot_to_human,kendall_tau,cycle_consistency"])
    assert code == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note")]
    probe_notes = [n for n in notes if "embodiment probe needs at least 2 episodes" in n]
    assert len(probe_notes) == 1 and "embodiment_probe_acc (overall; stages reach, grasp, lift): not" in probe_notes[0]
    shared = [n for n in notes if "is seen by both" in n]
    assert len(shared) == 2 and all(n.endswith(f"their task names differ: {FIX})") for n in shared)
    assert ("cka_linear, svcca, retrieval_precision_at_1_robot_to_human: nan (no (task, stage) is seen by both "
            in shared[0]) and "kendall_tau, cycle_consistency: nan (no task is seen by both" in shared[1]


def test_best_mixed_layer_names_no_layer_when_none_mixes_and_all_tied_layers():
    from probe.report.summary import best_mixed_layer

    assert best_mixed_layer({"a": 0.2, "b": 0.61, "c": float("nan")}, "ilisi") == "; best-mixed layer: b (61% of null)"
    assert best_mixed_layer({"a": 0.0, "b": 0.004}, "ilisi") == ("; no layer mixes: ilisi at 0% of its null in "
                                                                 "every layer")
    assert best_mixed_layer({"a": 0.0, "b": float("nan")}, "kbet") == ("; no layer mixes: kbet at 0% of its null in "
                                                                       "every layer with a value (none in b)")
    assert best_mixed_layer({"a": 0.451, "b": 0.3, "c": 0.449}, "ilisi") == ("; best-mixed layers: a, c (tied at 45% "
                                                                             "of null)")
    assert best_mixed_layer({"a": float("nan")}, "ilisi") == ""
