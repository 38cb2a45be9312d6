"""Extraction on real third-party data (AV1 robot video, a human hand video) and on the built-in world."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import extract_config
import torch

from probe import columns as C
from probe.cli import main
from probe.errors import DataError
from probe.extraction.config import ExtractConfig
from probe.extraction.run import extract
from probe.store.store import open_store
from probe.model.config import ModelConfig
from probe.extraction.config import PassConfig
from probe.extraction.sampling import SamplingConfig

from conftest import SHARED_DATA
from extract_models import tiny_cnn

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
G1 = SHARED_DATA / "g1_inspire_pick_can"
HAND = SHARED_DATA / "human_hand_dexretargeting"
needs_data = pytest.mark.skipif(not (G1.exists() and HAND.exists()),
                                reason=f"real datasets not found under {SHARED_DATA} (see shared/data/README.md)")


@needs_data
def test_cli_extract_real_robot_av1_and_human_video(tmp_path, capsys):
    scripted = torch.jit.script(tiny_cnn(seed=1).eval())
    torch.jit.save(scripted, tmp_path / "encoder.pt")
    out = tmp_path / "store"
    code = main(["extract", "--checkpoint", str(tmp_path / "encoder.pt"), "--data", f"robot={G1}",
                 "--data", f"human={HAND}", "--layer", "output", "--max-episodes", "1", "--max-frames", "3",
                 "--skip-bad-episodes", "--adapter-kwargs", '{"size": 64}', "--batch-size", "2",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "wrote store" in capsys.readouterr().out
    store = open_store(out)
    assert store.n == 6 and store.meta[C.EMBODIMENT].tolist() == ["robot"] * 3 + ["human"] * 3
    assert store.meta[C.VIDEO].str.endswith(".mp4").all()
    X = store.matrix("output")
    assert X.shape == (6, 16) and np.isfinite(X).all()
    assert np.linalg.norm(X[0] - X[3]) > 1e-3  # different videos give different latents
    assert any("skipped" in w for w in store.manifest["warnings"])  # g1 declares videos it does not ship
    # the same frames decoded by the reader and run through the model directly
    from probe.readers import open_dataset

    ds = open_dataset(G1, skip_bad_episodes=True)
    ep = ds.episodes()[0]
    frames = store.meta.loc[store.meta[C.DATASET] == ds.info.name, C.FRAME].to_numpy()
    batch = ds.read(ep, frames, size=(64, 64))
    x = torch.from_numpy(batch.images[ds.info.video_keys[0]].copy()).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        np.testing.assert_allclose(X[:3], scripted(x).numpy(), atol=1e-4)


@needs_data
def test_layers_on_a_dataset_whose_first_episode_has_no_video(tmp_path, capsys):
    """g1 declares a video for episode 0 that it does not ship: probe layers says to skip, and can."""
    torch.jit.save(torch.jit.script(tiny_cnn().eval()), tmp_path / "encoder.pt")
    argv = ["layers", str(tmp_path / "encoder.pt"), "--data", f"robot={G1}", "--adapter-kwargs", '{"size": 32}']
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "episode 0" in err and "--skip-bad-episodes" in err and "Traceback" not in err
    assert main([*argv, "--skip-bad-episodes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^output +\S+ +2x16 ", out, re.M), out
    assert "--skip-bad-episodes" in next(line for line in out.splitlines() if "probe extract" in line)


@needs_data
def test_missing_video_names_the_episode_without_skip(tmp_path):
    torch.jit.save(torch.jit.script(tiny_cnn().eval()), tmp_path / "encoder.pt")
    cfg = ExtractConfig(checkpoints=(str(tmp_path / "encoder.pt"),),
                        data=(f"robot={G1}",),
                        out=str(tmp_path / "store"),
                        model=ModelConfig(layers=("output",), device="cpu"),
                        sampling=SamplingConfig(max_episodes=1, max_frames=2))
    with pytest.raises(DataError, match=r"episode 0.*--skip-bad-episodes"):
        extract(cfg)
    assert not (tmp_path / "store").exists()


def test_dataset_path_missing_or_unknown(tmp_path):
    torch.jit.save(torch.jit.script(tiny_cnn().eval()), tmp_path / "encoder.pt")
    base = dict(checkpoints=(str(tmp_path / "encoder.pt"),), layers=("output",), out=str(tmp_path / "s"))
    with pytest.raises(DataError, match="does not exist"):
        extract(extract_config(data=(f"human={tmp_path / 'nope'}",), **base))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="cannot tell the format"):
        extract(extract_config(data=(str(tmp_path / "notes.txt"),), **base))
    assert not (tmp_path / "s").exists()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    pytest.importorskip("probe.world.policy", reason="the built-in world policy is not available")
    from probe.world.embodiments import SPECS
    from probe.world.generate import generate_world
    from probe.world.policy import make_policy, save_policy
    from probe.world.tasks import STAGES, TASK_NAMES

    root = tmp_path_factory.mktemp("world")
    generate_world(root / "w", size="tiny", tasks=["push_block", "open_drawer"], episodes_per_task=1)
    for step in (0, 400):
        torch.manual_seed(step)
        policy = make_policy({k: {"state_dim": s.state_dim, "action_dim": s.action_dim} for k, s in SPECS.items()},
                             list(TASK_NAMES), list(STAGES), image_size=64)
        save_policy(policy, root / "ckpt" / "cotrained" / f"step-{step:06d}", step, "cotrained")
    return root


def test_world_policy_two_checkpoints(world, tmp_path):
    ckpts = [str(world / "ckpt" / "cotrained" / f"step-{s:06d}") for s in (0, 400)]
    data = (f"human={world / 'w/datasets/human'}", f"robot={world / 'w/datasets/robot'}")
    stores = extract(ExtractConfig(checkpoints=tuple(ckpts),
                                   data=data,
                                   out=str(tmp_path / "cmp"),
                                   model=ModelConfig(layers=("trunk.block2", "output.embedding"), device="cpu"),
                                   sampling=SamplingConfig(stride=4),
                                   passes=PassConfig(batch_size=8)))
    assert [s.path.name for s in stores] == ["step-000000", "step-000400"]
    s0, s1 = stores
    assert s1.provenance["checkpoint"]["step"] == 400 and s1.provenance["adapter"]["name"] == "world"
    assert s1.provenance["checkpoint"]["recipe"] == "cotrained"  # the report names series by it
    assert s1.layers == ["trunk.block2", "output.embedding"] and s1.layer_info("trunk.block2")["dim"] == 128
    assert set(s1.meta[C.EMBODIMENT]) == {"human", "robot"} and set(s1.meta[C.STAGE]) >= {"reach", "release"}
    assert not np.allclose(s0.matrix("output.embedding"), s1.matrix("output.embedding"))
    # agreement with a direct forward of the policy on the reader's frames
    from probe.readers import open_dataset
    from probe.world.policy import load_policy

    policy = load_policy(ckpts[1])
    ds = open_dataset(world / "w/datasets/robot")
    ep = ds.episodes()[0]
    rows = ((s1.meta[C.EMBODIMENT] == "robot") & (s1.meta[C.EPISODE] == ep.index)).to_numpy()
    batch = ds.read(ep, s1.meta.loc[rows, C.FRAME].to_numpy(), size=(64, 64))
    image = torch.from_numpy(batch.images[ds.info.video_keys[0]].copy()).permute(0, 3, 1, 2).float() / 255
    task = torch.full((len(batch),), policy.config["tasks"].index("push_block" if "push" in ep.task else "open_drawer"))
    with torch.no_grad():
        out = policy(image, torch.from_numpy(batch.state.copy()), "robot", task)
    np.testing.assert_allclose(s1.matrix("output.embedding")[rows], out["embedding"].numpy(), atol=1e-4)


def test_world_layers_cli_with_data(world, capsys):
    ckpt = world / "ckpt" / "cotrained" / "step-000400"
    assert main(["layers", str(ckpt), "--data", f"human={world / 'w/datasets/human'}"]) == 0
    out = capsys.readouterr().out
    assert "stems.human" in out and "stems.robot" not in out and "trunk.block1" in out and "(world, step 400)" in out


def test_video_paths_resolve_whatever_the_working_directory(world, tmp_path, monkeypatch):
    from probe.store.media import VideoPaths

    monkeypatch.chdir(world)  # relative dataset paths, as a user in the project directory would type them
    store = extract(ExtractConfig(checkpoints=(str(world / "ckpt" / "cotrained" / "step-000400"),),
                                  data=("human=w/datasets/human", "robot=w/datasets/robot"),
                                  out=str(tmp_path / "s"),
                                  model=ModelConfig(layers=("trunk.block2",), device="cpu"),
                                  sampling=SamplingConfig(stride=8)))
    # the provenance records each dataset's root resolved; rows keep their video relative to it
    roots = {d["name"]: d["root"] for d in store.provenance["datasets"]}
    assert roots == {e: str((world / "w" / "datasets" / e).resolve()) for e in ("human", "robot")}
    assert not store.meta[C.VIDEO].map(lambda v: Path(v).is_absolute()).any()
    monkeypatch.chdir(tmp_path)
    videos = VideoPaths(store)
    files = [videos.path(v, d) for v, d in zip(store.meta[C.VIDEO], store.meta[C.DATASET])]
    assert all(f.is_absolute() and f.is_file() for f in files)


def test_world_checkpoints_of_a_pass_share_one_prepare_per_batch(world, tmp_path, monkeypatch):
    from probe.world.adapter import WorldAdapter

    ckpts = tuple(str(world / "ckpt" / "cotrained" / f"step-{s:06d}") for s in (0, 400))
    data = (f"human={world / 'w/datasets/human'}", f"robot={world / 'w/datasets/robot'}")
    base = dict(checkpoints=ckpts, data=data, layers=("trunk.block2",), stride=4, device="cpu", batch_size=8)
    calls = []
    prepare = WorldAdapter.prepare
    monkeypatch.setattr(WorldAdapter, "prepare", lambda self, *a: calls.append(1) or prepare(self, *a))
    together = extract(extract_config(out=str(tmp_path / "together"), **base))
    batches = len(calls)
    calls.clear()
    apart = extract(extract_config(out=str(tmp_path / "apart"), pass_memory=0, **base))
    assert len(calls) == 2 * batches  # one pass each: every checkpoint prepares every batch
    for a, b in zip(together, apart):
        np.testing.assert_array_equal(a.matrix("trunk.block2"), b.matrix("trunk.block2"))
