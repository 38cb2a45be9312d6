"""Checkpoint comparisons with paired intervals, and the report's CI gates (--gate bound, --max-drop)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from metrics.compare import difference, holm
from probe.cli import main
from probe.store.writer import write_store
from tests.conftest import clustered_latents, synthetic_meta

METRICS = ("ilisi,kbet,silhouette_stage,stage_transfer_acc_robot_to_human,retrieval_map_at_r_human_to_robot,"
           "procrustes_angular")
# metrics whose intervals are calibrated (ilisi, kbet, silhouette_stage and stage transfer report none)
MIX = "retrieval_map_at_r_human_to_robot"
PRO = "procrustes_angular"  # lower is better
FAST = ["--projection", "pca", "--max-points", "200", "--metrics", METRICS, "--bootstrap", "20"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Three checkpoints of one extraction: aligned, aligned again (other weights), and one whose robot stages
    no longer match the human's (the robot's (task, stage) clusters drawn elsewhere)."""
    root = tmp_path_factory.mktemp("gates")
    meta = synthetic_meta(n_episodes=5, frames=12)
    robot = (meta["embodiment"] == "robot").to_numpy()
    paths = {}
    for name, seed in (("a", 0), ("b", 1), ("drop", 2)):
        X = clustered_latents(meta, dim=12, shift=0.2, seed=seed)
        if name == "drop":
            X[robot] = clustered_latents(meta, dim=12, seed=99)[robot]
        paths[name] = write_store(root / f"step-{len(paths) + 1:06d}", meta, {"l": X},
                                  provenance={"step": len(paths) + 1}).path
    return paths


def test_paired_difference_is_narrower_than_independent_and_holm_is_monotone():
    rng = np.random.default_rng(0)
    common = rng.normal(size=30)
    reps_a, reps_b = 0.5 + common * 0.1, 0.52 + common * 0.1 + rng.normal(size=30) * 0.005
    paired = difference(0.5, reps_a, 1.0, 0.52, reps_b, 1.0, paired=True)
    independent = difference(0.5, reps_a, 1.0, 0.52, reps_b, 1.0, paired=False)
    assert paired.paired and not independent.paired
    assert paired.hi - paired.lo < (independent.hi - independent.lo) / 5
    assert paired.lo <= 0.02 <= paired.hi and paired.p < 0.01 < independent.p
    adjusted = holm(np.array([0.01, 0.04, np.nan, 0.03]))
    assert adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06)
    assert adjusted[1] == pytest.approx(0.06) and np.isnan(adjusted[2])


def test_metrics_of_several_stores_compare_them_paired(stores, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["metrics", str(stores["a"]), str(stores["drop"]), "--metrics", METRICS, "--bootstrap", "20",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "changes" in printed and "Holm" in printed
    records = json.loads(out.read_text())
    change = records[1]["compared_to"]
    assert change["store"] == "step 1" and change["correction"] == "Holm-Bonferroni"  # the report's label
    mix = change["metrics"][MIX]
    assert mix["paired"] and mix["significant"] and mix["direction"] == "worse"
    assert mix["ci"][0] <= mix["delta"] <= mix["ci"][1] < 0
    assert "ilisi" not in change["metrics"] and "kbet" not in change["metrics"]  # no interval, no comparison


def test_gate_bound_judges_the_pessimistic_end_of_the_interval(stores, tmp_path, capsys):
    argv = ["report", str(stores["a"]), *FAST]
    assert main([*argv, "--out", str(tmp_path / "v")]) == 0
    rec = json.loads((tmp_path / "v" / "metrics.json").read_text())["records"][0]["metrics"][PRO]
    value, hi = rec["value"], rec["ci"][1]
    assert value < hi
    threshold = f"{PRO}={(value + hi) / 2:.9f}"  # between the estimate and the pessimistic (upper) bound
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "value"), "--fail-under", threshold]) == 0
    passed = capsys.readouterr().out
    # a gate that passes says so, one line per gate
    assert f"gate passed: {PRO} <= {float(threshold.split('=')[1]):g} (1 of 1 checkpoint)" in passed.splitlines()
    assert "FAIL" not in passed
    assert main([*argv, "--out", str(tmp_path / "bound"), "--fail-under", threshold, "--gate", "bound"]) == 1
    printed = capsys.readouterr().out
    assert f"gate failed: {PRO} <= {float(threshold.split('=')[1]):g} (95% bound) (0 of 1 checkpoint pass)" in printed
    # the FAIL line says that the number is the interval's (upper: lower is better) bound, not the estimate
    (fail,) = [line for line in printed.splitlines() if line.startswith("FAIL")]
    assert fail.startswith(f"FAIL --fail-under {PRO} <=")
    assert f"got upper bound {hi:.3f} (estimate {value:.3f})" in fail
    gate = json.loads((tmp_path / "bound" / "metrics.json").read_text())["gates"][0]
    assert gate["gate"] == "bound" and gate["judged"] == pytest.approx(hi) and not gate["passed"]


def test_max_drop_passes_a_reseeded_rerun_and_fails_a_real_drop(stores, tmp_path, capsys):
    base = tmp_path / "base"
    assert main(["report", str(stores["a"]), *FAST, "--out", str(base)]) == 0
    # the same checkpoint, metrics with another seed: no drop beyond noise, even allowing none
    assert main(["report", str(stores["a"]), *FAST, "--seed", "7", "--out", str(tmp_path / "rerun"),
                 "--baseline", str(base), "--max-drop", f"{MIX}=0", "--max-drop", f"{PRO}=0"]) == 0
    gates = json.loads((tmp_path / "rerun" / "metrics.json").read_text())["gates"]
    assert [g["kind"] for g in gates] == ["max-drop", "max-drop"] and all(g["passed"] for g in gates)
    assert not gates[0]["paired"]  # other seed: other resampled episodes, compared as independent runs
    capsys.readouterr()
    assert main(["report", str(stores["drop"]), *FAST, "--out", str(tmp_path / "dropped"),
                 "--baseline", str(base / "metrics.json"), "--max-drop", f"{MIX}=0.1"]) == 1
    printed = capsys.readouterr().out.replace("\n", " ")
    assert f"FAIL --max-drop {MIX}=0.1" in printed and "beyond noise" in printed
    assert (tmp_path / "dropped" / "report.html").is_file()  # the report is written before the gate fails


def test_gate_inputs_are_checked_before_any_work(stores, tmp_path, capsys):
    for extra, needle in ((["--max-drop", "ilisi=0.1"], "--max-drop needs --baseline"),
                          (["--baseline", str(tmp_path / "nope.json"), "--max-drop", f"{MIX}=0.1"], "does not exist"),
                          (["--baseline", str(stores["a"] / "manifest.json"), "--max-drop", f"{MIX}=1"],
                           "not the metrics.json of a 'probe report'"),
                          # gates that judge an interval, on metrics that report none (not calibrated)
                          (["--fail-under", "ilisi=0.5", "--gate", "bound"],
                           "--fail-under ilisi: ilisi reports no 95% interval (not calibrated: coverage"),
                          (["--baseline", str(tmp_path / "nope.json"), "--max-drop", "kbet=0.1"],
                           "--max-drop kbet: kbet reports no 95% interval"),
                          (["--max-drop", "ilisi=-1", "--baseline", "x"], "must be >= 0"),
                          (["--max-drop", "ilsi=0.1", "--baseline", str(stores["a"])], "unknown metric 'ilsi'")):
        out = tmp_path / "never"
        assert main(["report", str(stores["a"]), *FAST, "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_compare_first_pairs_every_store_with_the_first_of_its_layer(stores, tmp_path):
    out = tmp_path / "m.json"
    assert main(["metrics", str(stores["a"]), str(stores["b"]), str(stores["drop"]), "--metrics", METRICS,
                 "--bootstrap", "10", "--compare", "first", "--out", str(out)]) == 0
    records = json.loads(out.read_text())
    assert "compared_to" not in records[0]
    assert [r["compared_to"]["store"] for r in records[1:]] == ["step 1"] * 2
