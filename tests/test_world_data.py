"""The built-in world's datasets: LeRobot v3.0 layout, decodable videos, labels, determinism, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from probe.errors import ConfigError, OutputExistsError
from probe.world.embodiments import SPECS, robot_ik, robot_points
from probe.world.generate import generate_world
from probe.world.tasks import STAGES, TASKS

EPISODE_COLUMNS = {
    "episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
    "dataset_to_index", "subtask_names", "subtask_start_frames", "subtask_end_frames",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return generate_world(tmp_path_factory.mktemp("world") / "w", size="tiny", seed=3)


def _read(root: Path):
    info = json.loads((root / "meta/info.json").read_text())
    data = pd.read_parquet(root / "data/chunk-000/file-000.parquet")
    eps = pd.read_parquet(root / "meta/episodes/chunk-000/file-000.parquet")
    tasks = pd.read_parquet(root / "meta/tasks.parquet")
    return info, data, eps, tasks


@pytest.mark.parametrize("embodiment", ["human", "robot"])
def test_lerobot_v3_layout(world, embodiment):
    root = world / "datasets" / embodiment
    info, data, eps, tasks = _read(root)
    spec = SPECS[embodiment]
    assert info["codebase_version"] == "v3.0"
    assert (info["robot_type"] == "human") == (embodiment == "human")
    assert info["total_episodes"] == len(eps) == 6
    assert info["total_frames"] == len(data) == int(eps["length"].sum())
    assert info["total_tasks"] == len(tasks) == 3
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    feats = info["features"]
    assert feats["observation.state"]["shape"] == [spec.state_dim]
    assert feats["observation.state"]["names"] == list(spec.state_names)
    assert feats["action"]["shape"] == [spec.action_dim]
    assert feats[spec.video_key]["dtype"] == "video" and feats[spec.video_key]["info"]["video.fps"] == 10
    # tasks: task string as index
    assert tasks.index.name == "task" and set(tasks.index) == {t.instruction for t in TASKS}
    assert sorted(tasks["task_index"]) == [0, 1, 2]
    # episodes table
    key = spec.video_key
    assert EPISODE_COLUMNS | {f"videos/{key}/{c}" for c in ("chunk_index", "file_index", "from_timestamp",
                                                               "to_timestamp")} <= set(eps.columns)
    # frames table
    assert list(data["index"]) == list(range(len(data)))
    state = np.stack(data["observation.state"].to_numpy())
    action = np.stack(data["action"].to_numpy())
    assert state.shape == (len(data), spec.state_dim) and action.shape == (len(data), spec.action_dim)
    assert np.isfinite(state).all() and np.isfinite(action).all()
    assert set(data["stage"]) <= set(STAGES) and data["progress"].between(0, 1).all()
    for _, ep in eps.iterrows():
        frames = data.iloc[ep["dataset_from_index"]:ep["dataset_to_index"]]
        assert (frames["episode_index"] == ep["episode_index"]).all()
        assert list(frames["frame_index"]) == list(range(ep["length"]))
        np.testing.assert_allclose(frames["timestamp"], np.arange(ep["length"]) / 10.0, atol=1e-5)
        task_of_frames = tasks.index[tasks["task_index"].tolist().index(frames["task_index"].iloc[0])]
        assert list(ep["tasks"]) == [task_of_frames]
        # stage segments cover the episode in order and agree with the per-frame stage column
        names, starts, ends = list(ep["subtask_names"]), list(ep["subtask_start_frames"]), list(ep["subtask_end_frames"])
        task = next(t for t in TASKS if t.instruction == task_of_frames)
        assert names == list(task.stages) and 4 <= len(names) <= 6
        assert starts[0] == 0 and ends[-1] == ep["length"] and starts[1:] == ends[:-1]
        expected = np.repeat(names, np.subtract(ends, starts))
        assert list(frames["stage"]) == list(expected)
        assert frames["progress"].iloc[0] == 0 and frames["progress"].iloc[-1] == pytest.approx(1.0)
    stats = json.loads((root / "meta/stats.json").read_text())
    np.testing.assert_allclose(stats["observation.state"]["mean"], state.mean(0), rtol=1e-4, atol=1e-5)
    assert np.array(stats[key]["mean"]).shape == (3, 1, 1)


@pytest.mark.parametrize("embodiment", ["human", "robot"])
def test_videos_decode_with_pyav_several_episodes_per_file(world, embodiment):
    root = world / "datasets" / embodiment
    info, data, eps, _ = _read(root)
    key = SPECS[embodiment].video_key
    files = eps[f"videos/{key}/file_index"]
    assert files.nunique() == 2 and (files.value_counts() > 1).all()  # several episodes per mp4
    stats = json.loads((root / "meta/stats.json").read_text())
    for file_index, group in eps.groupby(f"videos/{key}/file_index"):
        path = root / info["video_path"].format(video_key=key, chunk_index=0, file_index=file_index)
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            decoded = [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
        times = np.array([t for t, _ in decoded])
        for _, ep in group.iterrows():
            lo, hi = ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"]
            n = int(round((hi - lo) * info["fps"]))
            assert n == ep["length"]
            inside = (times >= lo - 1e-3) & (times < hi - 1e-3)
            assert inside.sum() == ep["length"]
        imgs = np.stack([img for _, img in decoded])
        assert imgs.shape[1:] == (64, 64, 3)
        assert imgs.std() > 10  # real pictures, not a blank stream
        np.testing.assert_allclose((imgs / 255.0).mean((0, 1, 2)),
                                   np.array(stats[key]["mean"]).reshape(3), atol=0.05)


def test_embodiments_differ_in_action_and_state_spaces(world):
    (_, hd, _, _), (_, rd, _, _) = _read(world / "datasets/human"), _read(world / "datasets/robot")
    assert len(hd["observation.state"].iloc[0]) != len(rd["observation.state"].iloc[0])
    assert len(hd["action"].iloc[0]) != len(rd["action"].iloc[0])
    # the robot is slower: its episodes of the same tasks are longer on average
    assert rd.groupby("episode_index").size().mean() > hd.groupby("episode_index").size().mean()


def test_robot_kinematics_reach_the_effector_track():
    ee = np.array([[0.3, 0.3, 0.05], [0.7, 0.6, 0.3]], np.float32)
    wrist = robot_points(robot_ik(ee))["wrist"]
    np.testing.assert_allclose(wrist, ee + np.array([0, 0, 0.12]), atol=1e-4)


def test_generation_is_seeded_and_deterministic(world, tmp_path):
    again = generate_world(tmp_path / "again", size="tiny", seed=3)
    other = generate_world(tmp_path / "other", size="tiny", seed=4)
    for emb in ("human", "robot"):
        a = _read(world / "datasets" / emb)[1]
        b = _read(again / "datasets" / emb)[1]
        c = _read(other / "datasets" / emb)[1]
        np.testing.assert_array_equal(np.stack(a["observation.state"]), np.stack(b["observation.state"]))
        assert len(a) != len(c) or not np.array_equal(np.stack(a["observation.state"]), np.stack(c["observation.state"]))
    for video in sorted(world.glob("datasets/*/videos/**/*.mp4")):  # encoded bit for bit the same
        assert video.read_bytes() == (again / video.relative_to(world)).read_bytes()
    assert json.loads((world / "world.json").read_text())["config_hash"] == \
        json.loads((again / "world.json").read_text())["config_hash"]


def test_unknown_task_lists_known_tasks(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown task 'pick_plcae'.*did you mean 'pick_place'.*known tasks: "
                                          r"pick_place .*open_drawer.*push_block"):
        generate_world(tmp_path / "w", size="tiny", tasks=["pick_plcae"])
    assert not (tmp_path / "w").exists()


def test_task_subset_by_name_or_instruction(tmp_path):
    out = generate_world(tmp_path / "w", size="tiny", tasks=["open_drawer", "push the block to the target"],
                         episodes_per_task=1)
    info, data, eps, tasks = _read(out / "datasets/robot")
    assert info["total_episodes"] == 2 and set(tasks.index) == {"open the drawer", "push the block to the target"}


def test_zero_episodes_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="episodes_per_task must be at least 1, got 0"):
        generate_world(tmp_path / "w", size="tiny", episodes_per_task=0)
    assert not (tmp_path / "w").exists()


def test_existing_output_is_refused_unless_overwrite(world, tmp_path):
    out = tmp_path / "w"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="world directory .* already exists.*--overwrite"):
        generate_world(out, size="tiny", episodes_per_task=1)
    assert (out / "keep.txt").read_text() == "mine"
    with pytest.raises(OutputExistsError, match="is not a world directory written by this toolkit.*keep.txt"):
        generate_world(out, size="tiny", episodes_per_task=1, overwrite=True)  # never a user's folder
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    generate_world(out, size="tiny", episodes_per_task=1, overwrite=True)  # an empty folder: replaced
    generate_world(out, size="tiny", episodes_per_task=1, overwrite=True)  # a world: replaced
    assert (out / "datasets/human/meta/info.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_counterfactual_renders_put_a_person_in_the_robots_lab_and_camera():
    """``make_episode(look=..., shot=...)`` films a body in another scene and from another camera; the
    motion, states and labels stay the body's own (what bench_world_separation.py compares)."""
    from probe.world.bodies import LAB, TARGET
    from probe.world.episodes import make_episode
    from probe.world.tasks import sample_scene

    def episode(embodiment, **kw):
        rng = np.random.default_rng(5)
        return make_episode(TASKS[0], embodiment, rng, scene=sample_scene(TASKS[0], rng, region="near"), **kw)

    own, moved, robot = episode("human"), episode("human", look=LAB, shot=TARGET.shot), episode("robot")
    np.testing.assert_array_equal(own.state, moved.state)
    np.testing.assert_array_equal(own.stage, moved.stage)
    # the same scene from the same camera: only the effector (and its shadow) differs from the robot's frame
    differ = lambda e: (np.abs(e.frames[-1].astype(int) - robot.frames[-1].astype(int)).max(-1) > 30).mean()  # noqa: E731
    assert differ(moved) < 0.25 and differ(own) > 0.9
    assert differ(episode("human", look=LAB)) > 2 * differ(moved)  # the head camera alone moves the whole view


def test_moves_as_gives_a_body_the_other_kinds_motion_and_keeps_its_look():
    """``make_episode(moves_as=...)``: a person moving as the robot starts where the robot rests and grips with the
    robot's apertures (no tremor); a robot moving as a person starts near the person; a bad value is refused."""
    from probe.world.embodiments import GRIP_APERTURE, START_APERTURE
    from probe.world.episodes import make_episode
    from probe.world.tasks import sample_scene

    def episode(embodiment, **kw):
        rng = np.random.default_rng(5)
        return make_episode(TASKS[0], embodiment, rng, scene=sample_scene(TASKS[0], rng, region="near"), **kw)

    person, as_robot, robot = episode("human"), episode("human", moves_as="robot"), episode("robot")
    assert as_robot.motion.aperture[0] == pytest.approx(START_APERTURE["robot"], abs=0.05)
    assert abs(as_robot.motion.aperture[0] - START_APERTURE["human"]) > 0.05
    assert as_robot.motion.ee[0, 1] == pytest.approx(robot.motion.ee[0, 1], abs=0.05)  # the robot's rest, far side
    assert person.motion.ee[0, 1] < 0.25
    assert set(np.round(as_robot.motion.aperture[-1:], 3)) <= {round(v, 3) for v in GRIP_APERTURE["robot"].values()}
    assert as_robot.length > person.length  # the robot's slower timing
    assert as_robot.frames.shape[1:] == person.frames.shape[1:] and as_robot.state.shape[1] == person.state.shape[1]
    assert episode("robot", moves_as="human").motion.ee[0, 1] < 0.25
    with pytest.raises(ValueError, match="moves_as"):
        episode("human", moves_as="cat")
