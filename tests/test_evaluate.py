"""probe.measure.suite and 'probe metrics': stores and Latents in, records / long-form frame / JSON / CSV out."""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conftest import clustered_latents, synthetic_meta
from probe.cli import main
from probe.errors import LatentsError, LayerNotFoundError, MetricError
from probe.measure.suite import FRAME_COLUMNS, evaluate, metrics_frame, write_metrics_json
from metrics.spec import MetricsConfig
from probe.latents import Latents
from probe.store.writer import write_store

CFG = MetricsConfig(k=20, bootstrap=3, null_repeats=1, bootstrap_samples=200, families=("mixing", "conservation"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    meta = synthetic_meta(n_episodes=4, frames=15)
    layers = {"trunk.block1": clustered_latents(meta, noise=1.0), "head": clustered_latents(meta, shift=30.0, seed=1)}
    return write_store(tmp_path_factory.mktemp("s") / "step-000400", meta, layers, provenance={"step": 400})


def test_evaluate_store_all_layers_json_shape(store, tmp_path):
    records = evaluate(store.path, layers="all", config=replace(CFG, by="stage"))
    assert [r["layer"] for r in records] == ["trunk.block1", "head"]
    rec = records[0]
    assert rec["store"] == str(store.path) and rec["step"] == 400 and rec["n"] == 240
    assert set(rec["metrics"]["stage_nmi"]) == {"value", "ci", "null", "interval"}
    assert "recomputed" in rec["metrics"]["stage_nmi"]["interval"]
    # a metric whose intervals are not calibrated has none, and says why
    assert set(rec["metrics"]["ilisi"]) == {"value", "ci", "null", "p", "interval_note"}
    assert 0 < rec["metrics"]["ilisi"]["p"] <= 1
    assert rec["metrics"]["ilisi"]["ci"] is None and "not calibrated" in rec["metrics"]["ilisi"]["interval_note"]
    fast = evaluate(store.path, layers="head", config=replace(CFG, intervals="reweight", all_intervals=True))
    assert "reweighting" in fast[0]["metrics"]["knn_embodiment_mixing"]["interval"]
    assert "subsampling" in fast[0]["metrics"]["stage_nmi"]["interval"]
    assert set(rec["per_stage"]) == {"reach", "grasp", "lift"}
    assert isinstance(rec["notes"], list)
    # the shared layer mixes embodiments, the head separates them
    assert records[0]["metrics"]["ilisi"]["value"] > 0.3 > records[1]["metrics"]["ilisi"]["value"]
    path = write_metrics_json(tmp_path / "m.json", records)
    loaded = json.loads(path.read_text())
    assert isinstance(loaded, list) and loaded[1]["metrics"]["kbet"]["value"] == records[1]["metrics"]["kbet"]["value"]
    write_metrics_json(tmp_path / "one.json", records[:1])
    assert json.loads((tmp_path / "one.json").read_text())["layer"] == "trunk.block1"


def test_metrics_frame_long_form(store):
    records = evaluate(store, layers=["head"], config=replace(CFG, by="task"))
    frame = metrics_frame(records)
    assert list(frame.columns) == FRAME_COLUMNS
    assert set(frame["scope"]) == {"overall", "pick", "push"}
    row = frame[(frame.metric == "embodiment_probe_acc") & (frame.scope == "overall")].iloc[0]
    assert row.value == 1.0 and row.better == "lower" and row.family == "mixing" and row.step == 400
    assert frame["value"].dtype == float


def test_evaluate_latents_directly():
    meta = synthetic_meta(n_episodes=3, frames=12)
    lat = Latents(clustered_latents(meta), meta, "emb")
    (rec,) = evaluate(lat, config=CFG)
    assert rec["layer"] == "emb" and rec["store"] == ""


def test_layer_not_in_store(store):
    with pytest.raises(LayerNotFoundError, match="layer 'trunk.block9' not found .* close matches: trunk.block1"):
        evaluate(store.path, layers="trunk.block9", config=CFG)


def test_nan_latents_rejected_at_latents():
    meta = synthetic_meta(n_episodes=2, frames=10)
    X = clustered_latents(meta)
    X[5, 0] = np.nan
    with pytest.raises(LatentsError, match="NaN or Inf"):
        Latents(X, meta, "x")


def test_one_embodiment_store_is_a_metric_error(tmp_path):
    meta = synthetic_meta(n_episodes=3, frames=10, embodiments=("robot",))
    store = write_store(tmp_path / "robot-only", meta, {"h": clustered_latents(meta)})
    with pytest.raises(MetricError, match="layer 'h': alignment metrics compare embodiments, but only one"):
        evaluate(store.path, config=CFG)


def test_cli_writes_json_and_csv(store, tmp_path, capsys):
    out, csv = tmp_path / "m.json", tmp_path / "m.csv"
    code = main(["metrics", str(store.path), "--layer", "trunk.block1", "--k", "20", "--bootstrap", "2",
                 "--nulls", "1", "--families", "mixing", "--out", str(out), "--csv", str(csv)])
    assert code == 0
    text = capsys.readouterr().out
    assert "ilisi" in text and "95% interval" in text and "wrote metrics JSON" in text
    rec = json.loads(out.read_text())
    assert rec["layer"] == "trunk.block1" and "clisi" not in rec["metrics"] and "kbet" in rec["metrics"]
    frame = pd.read_csv(csv)
    assert set(frame.metric) == set(rec["metrics"])


def test_cli_shows_the_checkpoints_step_and_the_reports_labels(tmp_path, capsys):
    """The step a checkpoint entry of the provenance records, and the labels `probe report` uses: two stores in
    folders of the same name (level-100) are told apart by their series."""
    meta = synthetic_meta(n_episodes=4, frames=12)
    paths = []
    for recipe, step, seed in (("robot-only", 500, 0), ("cotrained", 1000, 1)):
        prov = {"checkpoint": {"step": step, "recipe": recipe, "diversity": 100}}
        paths.append(str(write_store(tmp_path / recipe / "level-100", meta, {"l": clustered_latents(meta, seed=seed)},
                                     provenance=prov).path))
    out = tmp_path / "m.json"
    assert main(["metrics", *paths, "--metrics", "ilisi,retrieval_map_at_r_human_to_robot", "--bootstrap", "4",
                 "--nulls", "0", "--permutations", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "robot-only diversity 100%" in text and "cotrained diversity 100%" in text and "1000" in text
    assert "level-100" not in text.replace(paths[0], "")  # the labels, not folder names (a next step names a path)
    records = json.loads(out.read_text())
    assert [(r["step"], r["checkpoint"]) for r in records] == [(500, "robot-only diversity 100%"),
                                                                (1000, "cotrained diversity 100%")]
    assert records[1]["compared_to"]["store"] == "robot-only diversity 100%"
    # a note every store shares is printed once, for all of them; a store's own note names it
    shared = [n for n in records[0]["notes"] if n in records[1]["notes"]]
    assert shared and all(text.count(n[:60]) == 1 for n in shared)
    assert "note (all 2 stores, l): " + shared[0][:40] in " ".join(text.split())


def test_cli_errors_are_one_line(store, capsys):
    assert main(["metrics", str(store.path), "--layer", "nope"]) == 2
    assert "error: layer 'nope' not found" in capsys.readouterr().err
    assert main(["metrics", str(store.path), "--bootstrap", "-1"]) == 2
    assert "bootstrap must be >= 0" in capsys.readouterr().err


def test_records_are_cached_by_fingerprint_layer_and_config(store, tmp_path):
    first = evaluate(store.path, layers="head", config=CFG, cache_dir=tmp_path)
    files = list((tmp_path / "metrics").glob("*.json"))
    assert len(files) == 1
    # a cached record is returned as stored: tamper with it to prove the second call reads it
    saved = json.loads(files[0].read_text())
    saved["notes"] = ["from the cache"]
    files[0].write_text(json.dumps(saved))
    again = evaluate(store.path, layers="head", config=CFG, cache_dir=tmp_path)
    assert again[0]["notes"] == ["from the cache"]
    assert again[0]["metrics"]["ilisi"] == first[0]["metrics"]["ilisi"]
    # another configuration is another entry
    evaluate(store.path, layers="head", config=replace(CFG, k=15), cache_dir=tmp_path)
    assert len(list((tmp_path / "metrics").glob("*.json"))) == 2


def test_cli_per_stage_table_hides_no_value_at_80_columns(tmp_path, capsys, monkeypatch):
    from probe.console import console

    stages = ("reach", "grasp", "lift", "move", "place", "release", "pull", "retreat", "lower", "push")
    meta = synthetic_meta(n_episodes=4, frames=40, stages=stages)
    store = write_store(tmp_path / "s", meta, {"trunk": clustered_latents(meta, dim=8)})
    monkeypatch.setattr(console, "width", 80)
    out = tmp_path / "m.json"
    assert main(["metrics", str(store.path), "--by", "stage", "--families", "mixing", "--bootstrap", "0", "--nulls",
                 "0", "--permutations", "0", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.strip().startswith(f"per stage: {Path(store.path).name}, layer trunk") for line in lines)
    tables = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert "…" not in "\n".join(tables) and max(map(len, tables)) <= 80
    per_stage = json.loads(out.read_text())["per_stage"]
    text = "\n".join(tables)
    for stage in stages:  # Rich alone showed '0.0…' for every value and 'rea…' for the stages
        assert f" {stage} " in text
        for name, entry in per_stage[stage].items():
            if entry.get("value") is not None:
                assert f" {entry['value']:.3f} " in text, (stage, name)


def test_cli_unknown_metric_and_family_names_suggest_the_nearest(store, capsys):
    assert main(["metrics", str(store.path), "--metrics", "ilsi"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'ilsi' (did you mean ilisi" in err and "['" not in err
    assert main(["metrics", str(store.path), "--families", "mixng"]) == 2
    err = capsys.readouterr().err
    assert "unknown metric family 'mixng' (did you mean mixing?)" in err
    assert "mixing, conservation, paired, distribution, temporal, retrieval" in err
