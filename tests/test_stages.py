"""probe.readers.stages (sources, errors, closure stages on real data) and probe.extraction.sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, synthetic_meta
from probe import columns as C
from probe.errors import ConfigError, DataError, OutputExistsError
from probe.readers import open_dataset
from probe.extraction.sampling import SamplingConfig, sample_frames
from probe.readers.closure_stages import closure_stage_table, closure_stages, open_g1_inspire
from probe.readers.stages import (UNLABELLED, StageSource, StageSpec, label_stages, run_progress, stage_labeller,
                                  stages_by_embodiment_report)
from probe.readers.stage_files import read_stage_file, write_stage_file
from test_readers_formats import write_v3

G1 = SHARED_DATA / "g1_inspire_pick_can"
GR1 = SHARED_DATA / "gr1_sim_picknplace"
HAND = SHARED_DATA / "human_hand_dexretargeting"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "g1_closure_stages.py"


@pytest.fixture(scope="module")
def v3(tmp_path_factory) -> Path:
    return write_v3(tmp_path_factory.mktemp("v3") / "ds")  # lengths 10, 12, 8; fps 10


@pytest.fixture(scope="module")
def v3_plain(tmp_path_factory) -> Path:
    return write_v3(tmp_path_factory.mktemp("v3p") / "ds", stage_column=False)


def test_spec_parsing() -> None:
    assert StageSpec.parse("auto").source is StageSource.AUTO
    assert StageSpec.parse("column:phase").column == "phase"
    assert StageSpec.parse("progress:3").bins == 3 and StageSpec.parse("progress").bins == 5
    assert StageSpec.parse("file:/a/b:c.csv").path == "/a/b:c.csv"
    assert str(StageSpec.parse("progress:4")) == "progress:4" and str(StageSpec.parse("subtasks")) == "subtasks"
    with pytest.raises(ConfigError, match="unknown stage source 'phases'"):
        StageSpec.parse("phases")
    with pytest.raises(ConfigError, match="integer >= 1"):
        StageSpec.parse("progress:0")
    with pytest.raises(ConfigError, match="must be an integer"):
        StageSpec.parse("progress:x")
    with pytest.raises(ConfigError, match="needs a path"):
        StageSpec.parse("file:")


def test_run_progress() -> None:
    np.testing.assert_allclose(run_progress(["a", "a", "a", "b", "a"]), [0, 0.5, 1, 0, 0])


def test_column_and_auto(v3: Path) -> None:
    ds = open_dataset(v3)
    table = label_stages(ds, 1, "column:stage")
    assert list(table[C.STAGE]) == ["reach"] * 6 + ["grasp"] * 6
    np.testing.assert_allclose(table[C.STAGE_PROGRESS][:6], np.arange(6) / 5)
    np.testing.assert_allclose(table[C.PROGRESS], np.arange(12) / 11)
    labeller = stage_labeller(ds, "auto")
    assert list(labeller.label(1)[C.STAGE])[:7] == ["reach"] * 6 + ["grasp"]
    assert labeller.sources[1] == "column:stage"
    with pytest.raises(DataError, match="no per-frame column 'phase'"):
        label_stages(ds, 0, "column:phase")


def test_subtasks_and_auto_fallbacks(v3_plain: Path, tmp_path: Path) -> None:
    ds = open_dataset(v3_plain)
    table = label_stages(ds, 1, "auto")  # no stage column: the subtask segments
    assert list(table[C.STAGE]) == ["approach"] * 3 + ["take"] * 9
    np.testing.assert_allclose(table[C.STAGE_PROGRESS][3:], np.arange(9) / 8)
    hdf = tmp_path / "x.hdf5"
    from test_readers_formats import write_hdf5

    write_hdf5(hdf)
    plain = open_dataset(hdf)
    with pytest.raises(DataError, match="has no subtask annotations"):
        label_stages(plain, 0, "subtasks")
    bins = label_stages(plain, 1, "progress:2")
    assert list(bins[C.STAGE]) == ["p0", "p0", "p1", "p1"]  # progress 0, 1/3, 2/3, 1
    auto = stage_labeller(plain, "auto")
    assert list(auto.label(1)[C.STAGE]) == ["reach", "reach", "grasp", "grasp"] and auto.sources[1] == "column:stage"
    kp = SHARED_DATA / "human_hand_dexretargeting"
    if kp.exists():  # nothing annotated: progress bins
        hand = open_dataset(kp, keypoints="human_joint_right.npy")
        labeller = stage_labeller(hand, "auto")
        assert set(labeller.label(0)[C.STAGE]) == {"p0", "p1", "p2", "p3", "p4"}
        assert labeller.sources[0] == "progress:5"


def test_progress_bins(v3: Path) -> None:
    table = label_stages(open_dataset(v3), 0, "progress:5")
    assert list(table[C.STAGE]) == ["p0", "p0", "p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"]
    assert table[C.STAGE_PROGRESS].between(0, 1).all()


def test_sidecar_frames_seconds_and_gaps(v3: Path, tmp_path: Path) -> None:
    ds = open_dataset(v3)
    csv = tmp_path / "stages.csv"
    pd.DataFrame({"episode": [0, 0, 1], "start": [0, 4, 0], "end": [4, 8, 12],
                  "stage": ["reach", "grasp", "reach"]}).to_csv(csv, index=False)
    labeller = stage_labeller(ds, f"file:{csv}")
    t0 = labeller.label(0)
    assert list(t0[C.STAGE]) == ["reach"] * 4 + ["grasp"] * 4 + [UNLABELLED] * 2  # frames 8, 9 uncovered
    assert any("2 of 10 frames lie in no segment" in w for w in labeller.warnings)
    assert list(labeller.label(2)[C.STAGE]) == [UNLABELLED] * 8
    js = tmp_path / "stages.json"
    js.write_text(json.dumps({"unit": "seconds", "segments": [
        {"episode": 1, "start": 0.0, "end": 0.5, "stage": "reach"},
        {"episode": 1, "start": 0.5, "end": 1.2, "stage": "lift"}]}))
    t1 = label_stages(ds, 1, f"file:{js}")
    assert list(t1[C.STAGE]) == ["reach"] * 5 + ["lift"] * 7
    pq_path = tmp_path / "stages.parquet"
    pd.DataFrame({"dataset": ["ds", "other"], "episode": [2, 99], "start_s": [0.0, 0.0], "end_s": [0.8, 1.0],
                  "stage": ["all", "x"]}).to_parquet(pq_path)
    assert set(label_stages(ds, 2, f"file:{pq_path}")[C.STAGE]) == {"all"}  # 'other' rows ignored


def test_sidecar_unknown_episode(v3: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    pd.DataFrame({"episode": [0, 7], "start": [0, 0], "end": [3, 3], "stage": ["a", "b"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"refers to episode\(s\) \[7\] that dataset 'ds' does not have"):
        stage_labeller(open_dataset(v3), f"file:{path}")


def test_sidecar_overlap(v3: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    pd.DataFrame({"episode": [0, 0], "start": [0, 3], "end": [5, 8], "stage": ["a", "b"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"episode 0 in stage file .*'a' \[0, 5\) and 'b' \[3, 8\) overlap"):
        stage_labeller(open_dataset(v3), f"file:{path}")


def test_sidecar_out_of_range_and_bad_columns(v3: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    pd.DataFrame({"episode": [0], "start": [5], "end": [40], "stage": ["a"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"outside the episode's frames \[0, 10\)"):
        stage_labeller(open_dataset(v3), f"file:{path}")
    pd.DataFrame({"ep": [0], "from": [0], "to": [3], "stage": ["a"]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"lacks column\(s\) \['episode', 'start', 'end'\]"):
        read_stage_file(path)
    with pytest.raises(DataError, match="does not exist"):
        stage_labeller(open_dataset(v3), f"file:{tmp_path / 'none.csv'}")


def test_stages_by_embodiment_report() -> None:
    meta = synthetic_meta(n_episodes=1, frames=6, tasks=("pick",), stages=("reach", "grasp"))
    assert stages_by_embodiment_report(meta) == []
    meta.loc[(meta[C.EMBODIMENT] == "robot") & (meta[C.STAGE] == "grasp"), C.STAGE] = "release"
    report = stages_by_embodiment_report(meta)
    assert len(report) == 2
    assert any("stage 'release' is seen only by embodiment 'robot' (3 samples)" in r for r in report)
    assert any("stage 'grasp' is seen only by embodiment 'human'" in r for r in report)
    assert stages_by_embodiment_report(meta[meta[C.EMBODIMENT] == "robot"]) == []


def test_closure_stages_synthetic() -> None:
    c = np.concatenate([np.full(30, 0.6), np.linspace(0.6, 1.0, 10), np.full(20, 1.0), np.linspace(1, 0.4, 10),
                        np.full(40, 0.4), np.linspace(0.4, 1.0, 10), np.full(30, 1.0)])
    segs = closure_stages(c, fps=30)
    assert [s for s, _, _ in segs] == ["reach", "grasp", "lift", "put down", "release"]
    assert segs[0][1] == 0 and segs[-1][2] == len(c)
    assert all(a < b for _, a, b in segs) and all(segs[k][2] == segs[k + 1][1] for k in range(4))
    assert 55 <= segs[1][1] <= 66 and 64 <= segs[2][1] <= 72  # closing starts ~60, closed from ~65
    assert 105 <= segs[4][1] <= 115
    with pytest.raises(DataError, match="barely changes"):
        closure_stages(np.ones(50), fps=30, episode=3)


@pytest.mark.skipif(not G1.exists(), reason=f"real dataset not found at {G1} (shared data absent)")
def test_g1_closure_sidecar_round_trip(tmp_path: Path) -> None:
    ds = open_dataset(G1, skip_bad_episodes=True)
    segments = closure_stage_table(ds)
    assert set(segments["episode"]) == {e.index for e in ds.episodes()}
    assert list(segments["stage"][:5]) == ["reach", "grasp", "lift", "put down", "release"]
    path = write_stage_file(segments, tmp_path / "g1_stages.csv")
    labeller = stage_labeller(ds, f"file:{path}")
    table = labeller.label(1)
    assert len(table) == 393 and UNLABELLED not in set(table[C.STAGE]) and not labeller.warnings
    assert list(dict.fromkeys(table[C.STAGE])) == ["reach", "grasp", "lift", "put down", "release"]
    state = ds.read(1, np.arange(393), images=False).state
    closure = state[:, 20:26].mean(axis=1)
    grasped = table[C.STAGE].isin(["lift", "put down"]).to_numpy()
    assert closure[grasped].mean() < closure[~grasped].mean() - 0.1  # the hand is closed while lifting
    # a full-dataset sidecar also fits the dataset opened without skipping
    full = closure_stage_table(open_dataset(G1, video_keys=[]))
    assert full["episode"].nunique() == 100
    write_stage_file(full, tmp_path / "all.parquet")
    stage_labeller(ds, f"file:{tmp_path / 'all.parquet'}")  # skipped episodes are known, not an error


def _run_example(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(EXAMPLE), *args], capture_output=True, text=True,
                          cwd=EXAMPLE.parents[1], timeout=300)


def test_closure_stages_refuse_a_state_that_is_not_the_g1_inspire_layout(v3: Path) -> None:
    with pytest.raises(DataError, match=r"has a 3-D observation.state.*not the G1 Inspire layout"):
        open_g1_inspire(v3)  # 3-D state: dims 20:26 do not exist, so the mean would be of nothing


@pytest.mark.skipif(not GR1.exists(), reason=f"real dataset not found at {GR1} (shared data absent)")
def test_g1_example_refuses_another_robots_state_in_one_line(tmp_path: Path) -> None:
    # GR1's 44-D state has other joints at 20:26: the example used to write stages from them (exit 0)
    out = tmp_path / "stages.csv"
    done = _run_example(str(GR1), str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "'gr1_sim_picknplace' (robot_type GR1ArmsOnly) has a 44-D observation.state" in done.stderr
    assert "not the G1 Inspire layout" in done.stderr and "--stages" in done.stderr
    assert not out.exists() and done.stdout == ""


@pytest.mark.skipif(not HAND.exists(), reason=f"real dataset not found at {HAND} (shared data absent)")
def test_g1_example_says_a_keypoints_folder_is_not_a_lerobot_dataset(tmp_path: Path) -> None:
    out = tmp_path / "stages.csv"
    done = _run_example(str(HAND), str(out))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "is keypoints data, not a LeRobot dataset" in done.stderr and "g1_inspire_pick_can" in done.stderr
    assert "video_keys" not in done.stderr and "unexpected keyword" not in done.stderr  # the reader's TypeError
    assert not out.exists()
    if G1.exists():  # the dataset it is made for passes the same check
        assert open_g1_inspire(G1).info.features["observation.state"] == (26,)


def test_write_stage_file_never_replaces_other_files(tmp_path: Path) -> None:
    segments = pd.DataFrame({"episode": [0, 0], "start": [0, 5], "end": [5, 9], "stage": ["reach", "grasp"]})
    for name in ("s.csv", "s.json", "s.parquet"):
        path = write_stage_file(segments, tmp_path / name)
        pd.testing.assert_frame_equal(read_stage_file(path), segments, check_dtype=False)
        with pytest.raises(OutputExistsError, match="already exists.*overwrite"):
            write_stage_file(segments.iloc[:1], path)
        write_stage_file(segments.iloc[:1], path, overwrite=True)  # its own kind of file: replaced
        assert len(read_stage_file(path)) == 1
    notes = tmp_path / "notes.csv"
    notes.write_text("name,value\nmine,1\n")
    with pytest.raises(OutputExistsError, match="not a stage file written by this toolkit"):
        write_stage_file(segments, notes, overwrite=True)
    assert notes.read_text() == "name,value\nmine,1\n"
    with pytest.raises(DataError, match=r"must end in \.csv"):
        write_stage_file(segments, tmp_path / "s.txt")
    assert not (tmp_path / "s.txt").exists()


def test_sampling() -> None:
    np.testing.assert_array_equal(sample_frames(10, 30, SamplingConfig()), np.arange(10))
    np.testing.assert_array_equal(sample_frames(10, 30, SamplingConfig(stride=3)), [0, 3, 6, 9])
    np.testing.assert_array_equal(sample_frames(12, 30, SamplingConfig(fps=10)), [0, 3, 6, 9])
    np.testing.assert_array_equal(sample_frames(7, 30, SamplingConfig(fps=20)), [0, 2, 3, 5, 6])
    np.testing.assert_array_equal(sample_frames(10, 30, SamplingConfig(stride=2, fps=30)), [0, 2, 4, 6, 8])
    capped = sample_frames(101, 30, SamplingConfig(max_frames=5))
    np.testing.assert_array_equal(capped, [0, 25, 50, 75, 100])
    np.testing.assert_array_equal(sample_frames(3, 30, SamplingConfig(max_frames=10)), [0, 1, 2])
    assert sample_frames(0, 30).size == 0 and sample_frames(5, 30, SamplingConfig(max_frames=1)).tolist() == [0]
    assert sample_frames(50, 30, SamplingConfig(fps=7, max_frames=4)).dtype == np.int64
    np.testing.assert_array_equal(sample_frames(50, 30, SamplingConfig(fps=7)),
                                  sample_frames(50, 30, SamplingConfig(fps=7)))


@pytest.mark.parametrize("kwargs, match", [({"stride": 0}, "stride must be an integer >= 1"),
                                           ({"stride": 1.5}, "stride must be an integer"),
                                           ({"fps": -1.0}, "fps must be a positive number"),
                                           ({"max_frames": 0}, "max_frames must be an integer >= 1")])
def test_sampling_config_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        SamplingConfig(**kwargs)
