"""``probe retrieve`` on the command line: the table, JSON, clip export, --eval, README commands and narrow
terminals (the Retriever itself: test_retrieval.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import clustered_latents, synthetic_meta
from probe import columns as C
from probe.cli import main
from probe.errors import DataError
from probe.retrieval.evaluation import retrieval_scores
from probe.retrieval.index import build_index
from probe.retrieval.retriever import Retriever
from probe.store.writer import write_store
from retrieval_world import robot_sample as _robot_sample, world as world  # noqa: F401  (a fixture)


def test_cli_retrieve_table_json_and_export(world, capsys):
    store, tmp = world
    ep = int(store.meta.loc[store.meta[C.SAMPLE_ID] == _robot_sample(store), C.EPISODE].iloc[0])
    assert main(["retrieve", "--index", str(tmp / "idx"), "--episode", str(ep), "--frame", "10", "-k", "3",
                 "--export-clips", str(tmp / "cli-clips")]) == 0
    out = capsys.readouterr().out
    assert "grasp" in out and "human.mp4" in out and "contact sheet" in out
    assert len(list((tmp / "cli-clips").glob("*.mp4"))) == 3
    clips = json.loads((tmp / "cli-clips" / "clips.json").read_text(), parse_constant=_refuse_nan)  # strict JSON
    assert len(clips["queries"][0]["clips"]) == 3
    assert main(["retrieve", "--index", str(tmp / "idx"), "--sample-id", _robot_sample(store), "-k", "2",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["queries"][0]["task"] == "pick" and len(payload["results"]) == 2
    assert payload["results"][0]["stage"] == "grasp" and payload["results"][0]["video_end"] is not None
    assert main(["retrieve", "--index", str(tmp / "idx"), "--episode", "999", "--frame", "0"]) == 2
    assert "episode 999 is not in store" in capsys.readouterr().err
    assert main(["retrieve", "--index", str(tmp / "idx"), "--episode", str(ep), "--frame", "0", "-k", "500"]) == 2
    assert "k=500 must lie in 1..120" in capsys.readouterr().err


def test_eval_uses_metrics_retrieval_both_directions(world, capsys):
    store, tmp = world
    scores = retrieval_scores(Retriever.open(tmp / "idx"), k=5)
    assert set(scores) == {"robot_to_human", "human_to_robot"}
    from metrics.ranking import combine_labels
    from metrics.retrieval import cross_retrieval

    ref = cross_retrieval(np.asarray(store.matrix("trunk")), store.meta[C.EMBODIMENT].to_numpy(),
                          combine_labels(store.meta[C.TASK].to_numpy(), store.meta[C.STAGE].to_numpy()))
    for direction, s in scores.items():
        assert s["map_at_r"] == pytest.approx(ref[direction].map_at_r)
        assert s["precision_at_1"] == pytest.approx(ref[direction].precision_at_1)
        assert 0.9 <= s["precision_at_5"] <= 1.0  # clusters by (task, stage): near perfect
    assert main(["retrieve", "--index", str(tmp / "idx"), "--eval", "--out", str(tmp / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert "robot -> human" in out and "human -> robot" in out and "MAP@R" in out
    assert json.loads((tmp / "eval.json").read_text())["scores"]["robot_to_human"]["n_queries"] == 120


def test_raw_observation_query_needs_a_store_made_by_extract(world, capsys):
    _, tmp = world  # a store written directly: no checkpoint in its provenance (tests/test_query_file.py embeds)
    np.savez(tmp / "obs.npz", image=np.zeros((24, 32, 3), np.uint8), state=np.zeros(4, np.float32))
    assert main(["retrieve", "--index", str(tmp / "idx"), "--query-file", str(tmp / "obs.npz")]) == 2
    assert "records no checkpoint" in capsys.readouterr().err


def _readme_command(start: str) -> list[str]:
    """The README's command line that starts with ``start``, as argv (without ``probe``)."""
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    lines = [line.strip() for line in readme.splitlines() if line.strip().startswith(start)]
    assert lines, f"the README has no command starting with {start!r}"
    return shlex.split(lines[0])[1:]


def test_readme_retrieve_by_episode_works_where_both_datasets_number_episodes_alike(tmp_path, capsys):
    # episodes numbered 0.. in each dataset (as LeRobot datasets are, and the demo's are): episode 3 is in both
    meta = synthetic_meta(n_episodes=4, frames=45)
    meta[C.EPISODE] = meta.groupby(C.EMBODIMENT)[C.EPISODE].rank(method="dense").astype(np.int64) - 1
    meta[C.SAMPLE_ID] = meta[C.DATASET] + "/" + meta[C.EPISODE].astype(str) + "/" + meta[C.FRAME].astype(str)
    store = write_store(tmp_path / "store", meta, {"trunk.block2": clustered_latents(meta, dim=16)})
    index = _readme_command("probe index ")
    index[1] = str(store.path)
    index[index.index("--out") + 1] = str(tmp_path / "idx/human")
    assert main(index) == 0
    argv = _readme_command("probe retrieve --index idx/human --episode 3")
    argv[argv.index("--index") + 1] = str(tmp_path / "idx/human")
    argv[argv.index("--export-clips") + 1] = str(tmp_path / "clips")
    capsys.readouterr()
    code, printed = main(argv), capsys.readouterr()
    assert code == 0, printed.err
    assert "sample_id robot-data/3/40" in printed.out and (tmp_path / "clips" / "contact_sheet.png").is_file()
    assert main([*argv[:argv.index("--export-clips")], "--json"]) == 0
    query = json.loads(capsys.readouterr().out)["queries"][0]
    assert (query["embodiment"], query["episode"], query["frame"]) == ("robot", 3, 40)  # the robot frame, not an error
    # a robot index is queried with the human episode; --dataset names the query's dataset, of the other embodiment
    r = Retriever.open(build_index(store, "trunk.block2", tmp_path / "idx-robot", embodiment="robot").path, store)
    assert store.meta[C.DATASET].iloc[r.locate(3, 10)] == "human-data"
    assert store.meta[C.DATASET].iloc[r.locate(3, 10, "human-data")] == "human-data"
    with pytest.raises(DataError, match="dataset 'robot-data' is robot data, the embodiment the index holds"):
        r.locate(3, 10, "robot-data")


def test_cli_retrieve_hides_no_value_at_80_columns_and_says_what_next(world, capsys, monkeypatch):
    from probe.console import console

    store, tmp = world
    ep = int(store.meta.loc[store.meta[C.SAMPLE_ID] == _robot_sample(store), C.EPISODE].iloc[0])
    query = ["retrieve", "--index", str(tmp / "idx"), "--episode", str(ep), "--frame", "10", "-k", "3"]
    assert main([*query, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    monkeypatch.setattr(console, "width", 80)
    assert main(query) == 0
    lines = capsys.readouterr().out.splitlines()
    table = "\n".join(lines[:lines.index("next:")])
    assert "…" not in table and max(map(len, table.splitlines())) <= 80
    for r in results:  # Rich alone showed '0…' for scores and cut episodes and clip times
        assert f"{r['score']:.3f}" in table and f"{r['start']:.2f}-{r['end']:.2f}" in table
        assert C.episode_key(r["dataset"], r["episode"]) in table
    steps = lines[lines.index("next:") + 1:]
    assert any(s.split("   (")[0].strip().endswith("-k 3 --export-clips clips") for s in steps)
    assert any(s.split("   (")[0].strip().endswith("--eval") for s in steps)
    assert main(["retrieve", "--index", str(tmp / "idx"), "--eval"]) == 0
    assert "next:" in capsys.readouterr().out


def test_an_episode_only_the_indexed_embodiment_holds_is_no_query(world, capsys):
    from conftest import assert_refused

    store, tmp = world  # episodes numbered across embodiments: human 0..5, robot 6..11; a human index
    human = sorted(set(store.meta.loc[store.meta[C.EMBODIMENT] == "human", C.EPISODE].tolist()))
    robot = sorted(set(store.meta.loc[store.meta[C.EMBODIMENT] == "robot", C.EPISODE].tolist()))
    assert not set(human) & set(robot)
    ep = human[0]
    err = assert_refused(capsys, ["retrieve", "--index", str(tmp / "idx"), "--episode", str(ep), "--frame", "5"],
                         f"episode {ep} is only in the human data", "a query comes from another embodiment",
                         f"robot episodes {', '.join(map(str, robot[:5]))}, ... ({len(robot)} in all)")
    assert "--sample-id" in err  # the way to query a human sample against the human index
    with pytest.raises(Exception, match="only in the human data"):  # the library says the same
        Retriever.open(tmp / "idx").search_frame(ep, 5)
    # a robot episode is a query; a human sample is queried by id (its own episode skipped)
    assert main(["retrieve", "--index", str(tmp / "idx"), "--episode", str(robot[0]), "--frame", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["queries"][0]["embodiment"] == "robot"
    sample = str(store.meta.loc[(store.meta[C.EPISODE] == ep) & (store.meta[C.FRAME] == 5), C.SAMPLE_ID].iloc[0])
    assert main(["retrieve", "--index", str(tmp / "idx"), "--sample-id", sample, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["queries"][0]["embodiment"] == "human"
    assert payload["results"] and all(r["episode"] != ep for r in payload["results"])


def test_a_dataset_of_the_indexed_embodiment_is_no_query_as_its_episodes_are_not(world, capsys):
    from conftest import assert_refused

    store, tmp = world  # a human index; datasets human-data and robot-data
    meta = store.meta
    human_ep = int(meta.loc[meta[C.EMBODIMENT] == "human", C.EPISODE].iloc[0])
    robot_ep = int(meta.loc[meta[C.EMBODIMENT] == "robot", C.EPISODE].iloc[0])
    index = ["retrieve", "--index", str(tmp / "idx")]
    # --dataset used to pick the human dataset and query the human index with a human frame (exit 0)
    err = assert_refused(capsys, [*index, "--episode", str(human_ep), "--frame", "5", "--dataset", "human-data"],
                         "dataset 'human-data' is human data, the embodiment the index holds",
                         "another embodiment (robot: robot-data)", "--sample-id")
    assert "--dataset human-data" not in err  # no longer offered as the way round
    # refused whichever episode is named (the robot episode is not in human-data either)
    assert_refused(capsys, [*index, "--episode", str(robot_ep), "--frame", "5", "--dataset", "human-data", "--json"],
                   "dataset 'human-data' is human data")
    with pytest.raises(DataError, match="dataset 'human-data' is human data"):  # the library has the same rule
        Retriever.open(tmp / "idx").search_frame(human_ep, 5, dataset="human-data")
    # the other embodiment's dataset is a query, as its episodes are
    assert main([*index, "--episode", str(robot_ep), "--frame", "5", "--dataset", "robot-data", "--json"]) == 0
    query = json.loads(capsys.readouterr().out)["queries"][0]
    assert (query["embodiment"], query["dataset"], query["episode"]) == ("robot", "robot-data", robot_ep)


def _refuse_nan(token: str):
    raise ValueError(f"not JSON: {token}")


def test_eval_without_a_shared_label_writes_null_and_says_why(tmp_path, capsys):
    meta = synthetic_meta(n_episodes=3, frames=20)
    meta.loc[meta[C.EMBODIMENT] == "robot", C.TASK] = "other"  # no (task, stage) label in common
    store = write_store(tmp_path / "store", meta, {"trunk": clustered_latents(meta, dim=16)})
    build_index(store, "trunk", tmp_path / "idx")
    out = tmp_path / "ev.json"
    assert main(["retrieve", "--index", str(tmp_path / "idx"), "--eval", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    reason = "no robot query shares a (task, stage) label with the human index: precision is undefined"
    assert printed.count(reason) == 1 and "label stages/tasks consistently" in printed and "nan" not in printed
    text = out.read_text()
    assert "NaN" not in text
    scores = json.loads(text, parse_constant=_refuse_nan)["scores"]
    for direction in ("robot_to_human", "human_to_robot"):
        s = scores[direction]
        assert s["precision_at_1"] is None and s["map_at_r"] is None and s["precision_at_5"] is None
        assert s["n_evaluated"] == 0 and reason in s["note"]
    assert main(["retrieve", "--index", str(tmp_path / "idx"), "--eval", "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out, parse_constant=_refuse_nan)["robot_to_human"]["mrr"] is None
    assert reason in printed.err


def test_the_json_writer_writes_no_nan_token(tmp_path):
    from probe.atomic import json_text, write_json

    value = {"a": float("nan"), "b": [np.float32("inf"), np.float64(-np.inf), 1.5], "c": np.array([np.nan, 2.0]),
             "d": {"e": np.int64(3)}}
    expected = {"a": None, "b": [None, None, 1.5], "c": [None, 2.0], "d": {"e": 3}}
    assert json.loads(json_text(value), parse_constant=_refuse_nan) == expected
    write_json(tmp_path / "x.json", value)
    assert json.loads((tmp_path / "x.json").read_text(), parse_constant=_refuse_nan) == expected
    with pytest.raises(TypeError, match="cannot write object to JSON"):
        json_text({"x": object()})
