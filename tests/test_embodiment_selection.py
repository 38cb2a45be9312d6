"""`--embodiments` on `probe metrics` and `probe report` (probe.measure.selection): a store with a human and two
robots, the human close to robot_b and far from robot_a (the alphabetically first, which the paired and
distribution metrics compare with by default)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_refused, clustered_latents, synthetic_meta
from metrics.spec import MetricsConfig
from probe import columns as C
from probe.cli import main
from probe.errors import ConfigError
from probe.measure.suite import evaluate
from probe.store.writer import write_store

EMBODIMENTS = ("human", "robot_a", "robot_b")
CFG = MetricsConfig(k=20, bootstrap=0, null_repeats=0, permutations=0,
                    metrics=("cka_linear", "frechet_distance", "mmd_rbf", "ilisi"))
FAST = ["--k", "20", "--bootstrap", "0", "--nulls", "0", "--permutations", "0"]


def three_embodiments(path: Path, *, robot_a_seed: int = 7):
    """Human and robot_b share the (task, stage) cluster centres; robot_a has centres of its own, moved away."""
    meta = synthetic_meta(n_episodes=3, frames=12, embodiments=EMBODIMENTS)
    X = clustered_latents(meta, dim=16, seed=0)
    robot_a = (meta[C.EMBODIMENT] == "robot_a").to_numpy()
    X[robot_a] = clustered_latents(meta, dim=16, seed=robot_a_seed)[robot_a]
    X[robot_a, 0] += 10.0
    return write_store(path, meta, {"trunk": X}, provenance={"step": 100})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return three_embodiments(tmp_path_factory.mktemp("three") / "step-100")


def values(record: dict) -> dict[str, float]:
    return {name: v["value"] for name, v in record["metrics"].items()}


def test_default_compares_the_human_with_the_first_robot_and_says_how_to_choose(store, tmp_path):
    (full,) = evaluate(store.path, config=CFG, cache_dir=tmp_path)
    (with_a,) = evaluate(store.path, config=CFG, cache_dir=tmp_path, embodiments=["human", "robot_a"])
    (with_b,) = evaluate(store.path, config=CFG, cache_dir=tmp_path, embodiments=["human", "robot_b"])
    assert full["embodiments"] is None and full["n"] == 216
    assert with_b["embodiments"] == ["human", "robot_b"] and with_b["n"] == 144 and with_a["n"] == 144
    # without a selection the paired and distribution metrics are those of human vs robot_a
    for name in ("cka_linear", "frechet_distance", "mmd_rbf"):
        assert values(full)[name] == pytest.approx(values(with_a)[name], rel=1e-6), name
    # robot_b is the close one: smaller distances, higher paired similarity
    assert values(with_b)["frechet_distance"] < values(with_a)["frechet_distance"] / 5
    assert values(with_b)["mmd_rbf"] < values(with_a)["mmd_rbf"]
    assert values(with_b)["cka_linear"] > values(with_a)["cka_linear"] + 0.2
    note = next(n for n in full["notes"] if "also present" in n)
    assert "'human' with 'robot_a' only (also present: robot_b)" in note and "--embodiments human,robot_b" in note
    assert not any("also present" in n for n in with_b["notes"])
    assert any("left out: robot_a" in n for n in with_b["notes"])
    # mixing metrics run on the kept rows only (its own cached graph, not the store's)
    assert values(with_b)["ilisi"] != values(full)["ilisi"]
    (again,) = evaluate(store.path, config=CFG, cache_dir=tmp_path, embodiments=["human", "robot_b"])
    assert values(again) == values(with_b) and again["embodiments"] == ["human", "robot_b"]


def test_cli_metrics_with_a_selection_writes_it_into_the_json(store, tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(["metrics", str(store.path), *FAST, "--metrics", "frechet_distance,cka_linear",
                 "--embodiments", "human,robot_b", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rec = json.loads(out.read_text())
    assert rec["embodiments"] == ["human", "robot_b"] and rec["n"] == 144
    (lib,) = evaluate(store.path, config=MetricsConfig(k=20, bootstrap=0, null_repeats=0, permutations=0,
                                                       metrics=("frechet_distance", "cka_linear")),
                      embodiments=("human", "robot_b"))
    assert values(rec) == pytest.approx(values(lib))
    text = " ".join(capsys.readouterr().out.split())
    assert "left out: robot_a" in text
    # and without it the JSON says every embodiment was measured, and the note says how to choose
    out_all = tmp_path / "all.json"
    assert main(["metrics", str(store.path), *FAST, "--metrics", "frechet_distance", "--out", str(out_all)]) == 0
    rec_all = json.loads(out_all.read_text())
    assert rec_all["embodiments"] is None and rec_all["n"] == 216
    assert rec_all["metrics"]["frechet_distance"]["value"] > rec["metrics"]["frechet_distance"]["value"] * 5
    assert "--embodiments" in " ".join(capsys.readouterr().out.split())


def test_cli_unknown_embodiment_is_one_line_naming_those_present_and_writes_nothing(store, tmp_path, capsys):
    out = tmp_path / "m.json"
    err = assert_refused(capsys, ["metrics", str(store.path), *FAST, "--embodiments", "human,robot_c",
                                  "--out", str(out)],
                         "--embodiments", "'robot_c'", "human, robot_a, robot_b", str(store.path))
    assert "did you mean" in err
    assert not out.exists()


@pytest.mark.parametrize("argv, needles", [
    (["--embodiments", "human"], ("at least two embodiments", "'human' only")),
    (["--embodiments", "human,,human"], ("at least two embodiments",)),
    (["--embodiments", "robot_a,robot_b"],
     ("leaves out the human embodiment 'human'", "--embodiments human,robot_a,robot_b", "--families mixing")),
    (["--embodiments", "robot_a,robot_b", "--human", "robot_c"], ("leaves out the human embodiment 'robot_c'",)),
])
def test_cli_bad_selections_are_refused_before_any_work(store, tmp_path, capsys, argv, needles):
    out = tmp_path / "m.json"
    assert_refused(capsys, ["metrics", str(store.path), *FAST, *argv, "--out", str(out)], *needles)
    assert not out.exists()


def test_a_selection_without_the_human_is_fine_for_metrics_that_need_none(store, tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(["metrics", str(store.path), *FAST, "--families", "mixing", "--embodiments", "robot_a,robot_b",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    rec = json.loads(out.read_text())
    assert rec["embodiments"] == ["robot_a", "robot_b"] and rec["n"] == 144
    assert np.isfinite(rec["metrics"]["ilisi"]["value"])


def test_library_refuses_bad_selections_with_the_same_messages(store):
    with pytest.raises(ConfigError, match="which store .* does not hold; its embodiments: human, robot_a, robot_b"):
        evaluate(store.path, config=CFG, embodiments=["human", "robot"])
    with pytest.raises(ConfigError, match="at least two embodiments"):
        evaluate(store.latents("trunk"), config=CFG, embodiments=["robot_b"])
    # a Latents source is checked too (its layer named)
    with pytest.raises(ConfigError, match="layer 'trunk' does not hold"):
        evaluate(store.latents("trunk"), config=CFG, embodiments=["human", "robot_z"])


def test_scales_count_the_selected_rows(store, tmp_path, capsys):
    """--scales refuses a k at or above the rows the selection keeps (144 of 216), before any work."""
    assert_refused(capsys, ["metrics", str(store.path), *FAST, "--families", "mixing",
                            "--embodiments", "human,robot_b", "--scales", "150"], "--scales", "150")


def test_report_applies_the_same_selection_to_every_store(store, tmp_path, capsys):
    other = three_embodiments(tmp_path / "step-200", robot_a_seed=8)
    args = ["report", str(store.path), str(other.path), "--projection", "pca", "--bootstrap", "0",
            "--metrics", "frechet_distance", "--cache", str(tmp_path / "c")]
    assert main(args + ["--embodiments", "human,robot_b", "--out", str(tmp_path / "r")]) == 0
    doc = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert doc["embodiments"] == ["human", "robot_b"]
    assert len(doc["records"]) == 2 and all(r["embodiments"] == ["human", "robot_b"] for r in doc["records"])
    assert all(r["n"] == 144 for r in doc["records"])
    assert any("--embodiments" in n for n in doc["notes"])
    assert main(args + ["--out", str(tmp_path / "all")]) == 0
    full = json.loads((tmp_path / "all" / "metrics.json").read_text())
    assert full["embodiments"] is None
    near = [r["metrics"]["frechet_distance"]["value"] for r in doc["records"]]
    far = [r["metrics"]["frechet_distance"]["value"] for r in full["records"]]
    assert all(a < b / 5 for a, b in zip(near, far))
    capsys.readouterr()
    # a name one of the stores lacks: refused before any work, naming that store
    meta = synthetic_meta(n_episodes=3, frames=12, embodiments=("human", "robot_a"))
    two = write_store(tmp_path / "step-300", meta, {"trunk": clustered_latents(meta)}, provenance={"step": 300})
    assert_refused(capsys, ["report", str(store.path), str(two.path), "--projection", "pca", "--bootstrap", "0",
                            "--embodiments", "human,robot_b", "--out", str(tmp_path / "bad")],
                   str(two.path), "'robot_b'", "its embodiments: human, robot_a")
    assert not (tmp_path / "bad").exists()
