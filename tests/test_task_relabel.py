"""``--task EMBODIMENT=TEXT``: real human and robot datasets recorded under different task names, matched.

The keypoints recording's task is its folder name and the G1 dataset's "Pick up the yellow bottle on the table.",
so no (task, stage) is shared and the paired, retrieval and temporal metrics are undefined until both are given
one task.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, extract_config
from extract_models import tiny_cnn
from probe import columns as C
from probe.cli import main
from probe.errors import ConfigError
from probe.extraction.run import extract
from probe.extraction.sampling import SamplingConfig, parse_tasks
from probe.model.adapters import ImageAdapter
from probe.store.store import open_store

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
G1 = SHARED_DATA / "g1_inspire_pick_can"
HAND = SHARED_DATA / "human_hand_dexretargeting"
G1_TASK = "Pick up the yellow bottle on the table."
TASK = "pick up the can"
needs_data = pytest.mark.skipif(not (G1.exists() and HAND.exists()),
                                reason=f"real datasets not found under {SHARED_DATA} (see shared/data/README.md)")
# metrics that pair samples of one (task, stage) or task across embodiments
PAIRED = ["cka_linear", "mutual_knn", "procrustes_angular", "svcca", "retrieval_precision_at_1_robot_to_human",
          "retrieval_precision_at_1_human_to_robot", "retrieval_map_at_r_robot_to_human",
          "retrieval_map_at_r_human_to_robot", "kendall_tau", "cycle_consistency"]


class PromptImage(ImageAdapter):
    """A user's image adapter that records the task of every sample it prepares: what a policy's prompt gets."""

    seen: set[str] = set()

    def prepare(self, batch, meta, embodiment, device):
        PromptImage.seen.update(meta[C.TASK].astype(str))
        return super().prepare(batch, meta, embodiment, device)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "encoder.pt"
    torch.jit.save(torch.jit.script(tiny_cnn(seed=1).eval()), path)
    return path


def _argv(encoder, out, *extra):
    # the human dataset unlabelled: its embodiment is the keypoints reader's default, 'human'
    return ["extract", "--checkpoint", str(encoder), "--data", f"robot={G1}", "--data", str(HAND),
            "--layer", "output", "--max-episodes", "3", "--max-frames", "20", "--skip-bad-episodes",
            "--adapter", "test_task_relabel:PromptImage", "--adapter-kwargs", '{"size": 64}', "--batch-size", "8",
            "--device", "cpu", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def stores(encoder, tmp_path_factory):
    """The same extraction without and with ``--task``: the stores, the CLI's output and the prompts seen."""
    root = tmp_path_factory.mktemp("stores")
    result = {}
    for name, extra in (("base", []), ("relabelled", ["--task", f"robot={TASK}", "--task", f"human={TASK}"])):
        PromptImage.seen = set()
        with contextlib.redirect_stdout(io.StringIO()) as printed:  # the console writes to sys.stdout
            assert main(_argv(encoder, root / name, *extra)) == 0
        result[name] = (open_store(root / name), printed.getvalue(), set(PromptImage.seen))
    return result


@needs_data
def test_both_datasets_and_their_prompts_carry_the_given_task(stores):
    base, _, base_seen = stores["base"]
    store, printed, seen = stores["relabelled"]
    tasks = base.meta.groupby(C.EMBODIMENT)[C.TASK].unique().map(list).to_dict()
    assert tasks == {"robot": [G1_TASK], "human": ["human_hand_dexretargeting"]}
    assert base_seen == {G1_TASK, "human_hand_dexretargeting"}
    assert set(store.meta[C.EMBODIMENT]) == {"human", "robot"} and (store.meta[C.TASK] == TASK).all()
    assert seen == {TASK}  # the model's inputs were built from the relabelled task, never the datasets' own
    # nothing else changed: the same samples, stages and (an image model ignores the task) latents
    for column in (C.SAMPLE_ID, C.EMBODIMENT, C.STAGE, C.FRAME):
        assert store.meta[column].tolist() == base.meta[column].tolist()
    np.testing.assert_array_equal(store.matrix("output"), base.matrix("output"))
    relabels = {d["embodiment"]: d.get("task_relabel") for d in store.provenance["datasets"]}
    assert relabels == {"robot": {"to": TASK, "from": [G1_TASK], "from_count": 1},
                        "human": {"to": TASK, "from": ["human_hand_dexretargeting"], "from_count": 1}}
    assert all("task_relabel" not in d for d in base.provenance["datasets"])
    assert store.provenance["resume_key"]["sampling"]["tasks"] == {"robot": TASK, "human": TASK}
    assert "tasks" not in base.provenance["resume_key"]["sampling"]  # as stores made before --task existed
    assert f"note: robot: task '{G1_TASK}' relabelled as '{TASK}'" in printed


@needs_data
def test_probe_info_says_which_tasks_were_relabelled(stores, capsys):
    for name, said in (("relabelled", True), ("base", False)):
        capsys.readouterr()
        assert main(["info", str(stores[name][0].path)]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert (f"task (--task): robot: task '{G1_TASK}' relabelled as '{TASK}'" in out) == said, out


@needs_data
def test_paired_retrieval_and_temporal_metrics_are_defined_once_tasks_match(stores, tmp_path, capsys):
    values = {}
    for name in ("base", "relabelled"):
        out = tmp_path / f"{name}.json"
        argv = ["metrics", str(stores[name][0].path), "--bootstrap", "0", "--nulls", "0", "--permutations", "0",
                "--out", str(out)]
        assert main(argv) == 0, capsys.readouterr().err
        record = json.loads(out.read_text())
        record = record[0] if isinstance(record, list) else record
        values[name] = {m: record["metrics"][m]["value"] for m in PAIRED}
        shared = [n for n in record["notes"] if "is seen by both 'human' and 'robot'" in n]
        assert bool(shared) == (name == "base"), record["notes"]  # "no (task, stage) / no task is seen by both"
    assert all(v is None for v in values["base"].values()), values["base"]
    assert all(v is not None and np.isfinite(v) for v in values["relabelled"].values()), values["relabelled"]


@needs_data
@pytest.mark.parametrize("tasks, message", [
    (["--task", "robt=pick"], "no dataset is labelled 'robt' (the --data embodiments: robot, human)"),
    (["--task", "robot=pick", "--task", "robot=place"], "--task robot= given twice ('pick' and 'place')"),
    (["--task", "pick"], "expected EMBODIMENT=TEXT"),
    (["--task", "robot="], "no task after '='"),
])
def test_a_bad_task_stops_before_any_work(encoder, tmp_path, capsys, tasks, message):
    out = tmp_path / "new" / "store"
    assert main(_argv(encoder, out, *tasks)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "new").exists()  # not the store, not its folder, not a lock


def test_task_text_may_hold_equals_signs():
    assert parse_tasks(["robot=key=value: pick", "human=pick"]) == {"robot": "key=value: pick", "human": "pick"}
    assert parse_tasks(None) == {}
    with pytest.raises(ConfigError, match="the task of 'robot' must be a non-empty string"):
        SamplingConfig(tasks={"robot": "  "})
    with pytest.raises(ConfigError, match="must be a mapping"):
        SamplingConfig(tasks=[("robot", "pick")])
    hash(SamplingConfig(tasks={"robot": "pick"}))  # still hashable, like every other config


@needs_data
def test_resume_with_another_task_is_refused(encoder, tmp_path, monkeypatch):
    from extract_models import InterruptingImage

    def config(resume=True, **tasks):
        return extract_config(checkpoints=(str(encoder),), data=(f"robot={G1}", f"human={HAND}"),
                              out=str(tmp_path / "s"), layers=("output",), max_episodes=2, max_frames=6,
                              skip_bad_episodes=True, adapter="extract_models:InterruptingImage",
                              adapter_kwargs={"size": 32}, batch_size=4, device="cpu", resume=resume, tasks=tasks)

    monkeypatch.setattr(InterruptingImage, "after", 1)
    with pytest.raises(KeyboardInterrupt):
        extract(config(False, robot=TASK, human=TASK))
    monkeypatch.setattr(InterruptingImage, "after", None)
    with pytest.raises(ConfigError, match=r"cannot resume: .* used sampling\.tasks\.robot 'pick up the can', this run "
                                          r"'pick up a can'"):
        extract(config(robot="pick up a can", human=TASK))
    with pytest.raises(ConfigError, match=r"cannot resume: .*sampling\.tasks"):
        extract(config())  # the datasets' own tasks
    store = extract(config(robot=TASK, human=TASK))
    assert store.n == 18 and (store.meta[C.TASK] == TASK).all()
    with pytest.raises(ConfigError, match=r"cannot resume: the complete store .*sampling\.tasks\.human"):
        extract(config(robot=TASK, human="wave"))


@needs_data
def test_extract_prints_each_reader_warning_once_and_notes_unshared_tasks(stores, encoder, tmp_path, caplog):
    """The real extraction without --task: each reader warning (the hand folder's two .npy files, the G1 episodes
    without video) reaches the console once, as the end summary's 'warning:' line, not also as a live log record,
    and one note says the human shares no task with the robot; with --task for both, no such note."""
    base, printed, _ = stores["base"]
    assert base.manifest["warnings"]
    for warning in base.manifest["warnings"]:
        assert printed.count(warning) == 1 and f"warning: {warning}" in printed, warning
    notes = [line for line in printed.splitlines() if "share no task name" in line]
    assert len(notes) == 1 and notes[0].startswith("note: human and robot share no task name"), printed
    assert "--task" in notes[0]
    assert "share no task" not in stores["relabelled"][1]
    with caplog.at_level(logging.INFO):  # the log handlers the console shows see none of the kept warnings
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(_argv(encoder, tmp_path / "again")) == 0
    logged = [r.getMessage() for r in caplog.records]
    assert logged, "no log record at all: the check below would pass vacuously"
    kept = [w.split(": ", 1)[-1] for w in base.manifest["warnings"]]
    assert not [m for m in logged for w in kept if w in m], logged
