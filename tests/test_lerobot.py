"""LeRobot policy checkpoints opened as they are: detection, loading, inputs, embeddings and errors.

Checkpoints are built at test time with LeRobot's own classes (``tests/lerobot_models.py``) or trained
for 20 steps by ``lerobot-train`` on the built-in world's robot dataset (once per session, offline).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lerobot_models import FRONT, act_checkpoint, diffusion_checkpoint
from probe.cli import main
from tests.conftest import SHARED_DATA, assert_refused

G1 = SHARED_DATA / "g1_inspire_pick_can"
EGO = "observation.images.egocentric"




@pytest.fixture(scope="session")
def world(tmp_path_factory) -> dict[str, Path]:
    from probe.world.generate import generate_world

    out = tmp_path_factory.mktemp("lerobot-world") / "world"
    generate_world(out, size="tiny")
    info = json.loads((out / "world.json").read_text())
    return {name: out / d["path"] for name, d in info["datasets"].items()}


@pytest.fixture(scope="session")
def act_dir(tmp_path_factory) -> Path:
    return act_checkpoint(tmp_path_factory.mktemp("act") / "pretrained_model")


@pytest.fixture(scope="session")
def trained(tmp_path_factory, world) -> Path:
    """A real ACT checkpoint: 20 steps of ``lerobot-train`` on the world's robot dataset, offline."""
    root = tmp_path_factory.mktemp("lerobot-train")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(root / "hf"), HF_LEROBOT_HOME=str(root / "lerobot"),
               WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    train = Path(sys.executable).with_name("lerobot-train")
    done = subprocess.run(
        [str(train), "--policy.type=act", "--policy.pretrained_backbone_weights=null", "--policy.push_to_hub=false",
         "--policy.device=cpu", "--policy.dim_model=64", "--policy.dim_feedforward=128", "--policy.chunk_size=10",
         "--policy.n_action_steps=10", "--dataset.repo_id=local/robot", f"--dataset.root={world['robot']}",
         "--steps=20", "--batch_size=4", "--save_freq=20", "--log_freq=10", "--num_workers=0", "--eval_freq=0",
         "--wandb.enable=false", f"--output_dir={root / 'run'}"],
        env=env, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run"


# -- detection, without LeRobot ---------------------------------------------------------------------------------


def test_lerobot_directories_are_recognised_without_importing_lerobot(tmp_path):
    from probe.model.checkpoints import LEROBOT_LOADER, checkpoint_name, directory_kind, resolve_checkpoint_dir

    model = tmp_path / "run" / "checkpoints" / "000400" / "pretrained_model"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"type": "smolvla"}))
    (tmp_path / "run" / "checkpoints" / "last").symlink_to("000400")
    assert directory_kind({"type": "act"}).loader == LEROBOT_LOADER
    assert directory_kind({"type": "pi0"}).loader == LEROBOT_LOADER
    assert directory_kind({"model_type": "vit", "architectures": ["ViTModel"]}).config_type == "transformers"
    assert directory_kind({"type": "nothing-we-know"}) is None
    assert resolve_checkpoint_dir(tmp_path / "run") == tmp_path / "run/checkpoints/last/pretrained_model"
    assert resolve_checkpoint_dir(model.parent) == model
    assert checkpoint_name(model) == checkpoint_name(model.parent) == "000400"
    assert checkpoint_name(tmp_path / "run") == "run"


def test_without_lerobot_one_line_names_the_extra(tmp_path):
    ckpt = tmp_path / "pretrained_model"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"type": "act"}))
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(ckpt / "model.safetensors"))
    code = ("import sys; sys.modules['lerobot'] = None\n"  # as if LeRobot were not installed
            "from probe.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "layers", str(ckpt)], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "LeRobot 'act' policy" in err and "embodiment-probe[lerobot]" in err, err


# -- ACT and Diffusion built with save_pretrained -----------------------------------------------------------------


def test_act_layers_suggest_per_type(act_dir, capsys):
    assert main(["layers", str(act_dir)]) == 0
    out = capsys.readouterr().out
    assert "lerobot-act" in out and "model.backbone.layer4" in out
    assert "suggested layers (lerobot-act): model.backbone.layer4, model.encoder, model.decoder" in out
    # shapes as extraction sees them: ACT's transformer runs sequence-first, shown batch first (2 example frames)
    shapes = {line.split()[0]: line.split()[2] for line in out.splitlines() if line.startswith("model.")}
    assert shapes["model.encoder"].startswith("2x") and shapes["model.decoder"].startswith("2x"), shapes


def _lerobot_reference(policy, pre, dataset_root: Path, indices: list[int], layer: str) -> dict:
    """What a user's own loop gives: LeRobot's dataset class, the checkpoint's preprocessor, the policy, a hook."""
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/robot", root=dataset_root)
    batch = torch.utils.data.default_collate([ds[i] for i in indices])
    keys = list(zip(batch["episode_index"].tolist(), batch["frame_index"].tolist()))
    module = dict(policy.named_modules())[layer]
    seen = {}
    handle = module.register_forward_hook(lambda m, a, out: seen.setdefault("x", out))
    try:
        with torch.inference_mode():
            policy.predict_action_chunk(pre(batch))
    finally:
        handle.remove()
    x = seen["x"]
    return dict(zip(keys, x.flatten(2).mean(-1).numpy()))


def test_act_latents_match_lerobots_own_pipeline(act_dir, world, tmp_path):
    from probe.model.lerobot_policies import build_preprocessor, load_lerobot_policy
    from probe.store.store import open_store

    rc = main(["extract", "--checkpoint", str(act_dir), "--data", f"robot={world['robot']}", "--max-episodes", "2",
               "--layer", "model.backbone.layer4", "--layer", "model.encoder", "--layer", "output",
               "--out", str(tmp_path / "store"), "--frame-cache", "off", "--device", "cpu"])
    assert rc == 0
    store = open_store(tmp_path / "store")
    assert store.provenance["checkpoint"]["kind"] == "lerobot-act"
    assert store.provenance["adapter"]["options"]["preprocessor"] == "policy_preprocessor.json"
    assert store.layer_info("model.encoder")["dim"] == 32 and store.layer_info("output")["dim"] == 5  # the chunk, mean-pooled
    loaded = load_lerobot_policy(act_dir, json.loads((act_dir / "config.json").read_text()), "cpu")
    pre, _ = build_preprocessor(act_dir, loaded.model.config, "cpu")
    ref = _lerobot_reference(loaded.model, pre, world["robot"], [0, 5, 17, 40], "model.backbone.layer4")
    X = store.latents("model.backbone.layer4").X
    row = {(int(e), int(f)): i for i, (e, f) in enumerate(zip(store.meta["episode"], store.meta["frame"]))}
    for key, want in ref.items():
        got = X[row[key]]
        cos = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
        assert cos > 0.999, (key, cos)  # the same frames, decoded by PyAV here and by LeRobot's decoder there
        np.testing.assert_allclose(got, want, rtol=0.05, atol=0.05)


def test_diffusion_global_conditioning_with_history_matches_lerobots_dataset(world, tmp_path):
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.utils.constants import OBS_IMAGES

    from probe.model.lerobot_policies import build_preprocessor, load_lerobot_policy
    from probe.store.store import open_store

    ckpt = diffusion_checkpoint(tmp_path / "diffusion")
    rc = main(["extract", "--checkpoint", str(ckpt), "--data", f"robot={world['robot']}", "--max-episodes", "1",
               "--stride", "7", "--batch-size", "4", "--layer", "output.global_cond", "--layer",
               "diffusion.rgb_encoder", "--out", str(tmp_path / "store"), "--frame-cache", "off"])
    assert rc == 0
    store = open_store(tmp_path / "store")
    options = store.provenance["adapter"]["options"]
    assert options["n_obs_steps"] == 2 and "delta_timestamps" in options["history"]
    assert options["embedding"] == "global conditioning, no denoising"
    cond = store.latents("output.global_cond").X
    assert cond.shape[1] == 2 * (8 + 16)  # two steps of (state, 8 keypoints x 2)
    assert store.layer_info("diffusion.rgb_encoder")["dim"] == 16
    frames = store.meta["frame"].to_numpy()
    np.testing.assert_allclose(cond[frames == 0, :24], cond[frames == 0, 24:])  # before the episode: its first frame
    assert not np.allclose(cond[frames > 0, :24], cond[frames > 0, 24:])  # later: the previous frame, another one
    # LeRobot's own dataset with the policy's delta_timestamps (episode 0: dataset index = frame)
    loaded = load_lerobot_policy(ckpt, json.loads((ckpt / "config.json").read_text()), "cpu")
    policy = loaded.model
    pre, _ = build_preprocessor(ckpt, policy.config, "cpu")
    fps = LeRobotDataset("local/robot", root=world["robot"]).fps
    deltas = [i / fps for i in policy.config.observation_delta_indices]
    ds = LeRobotDataset("local/robot", root=world["robot"], delta_timestamps={FRONT: deltas, "observation.state": deltas})
    batch = pre(torch.utils.data.default_collate([ds[int(f)] for f in frames]))
    batch[OBS_IMAGES] = torch.stack([batch[k] for k in policy.config.image_features], dim=-4)
    with torch.inference_mode():
        want = policy.diffusion._prepare_global_conditioning(batch).numpy()
    cos = (cond * want).sum(1) / (np.linalg.norm(cond, axis=1) * np.linalg.norm(want, axis=1))
    assert cos.min() > 0.999, cos
    np.testing.assert_allclose(cond, want, rtol=0.05, atol=0.05)


@pytest.mark.slow
def test_history_on_the_ray_engine_equals_the_local_engine(world, tmp_path):
    """Ray actors build the observation history from their own datasets, as the local engine does."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra)")
    from probe.store.store import open_store

    ckpt = diffusion_checkpoint(tmp_path / "diffusion")
    argv = ["extract", "--checkpoint", str(ckpt), "--data", f"robot={world['robot']}", "--max-episodes", "1",
            "--stride", "7", "--batch-size", "4", "--layer", "output.global_cond", "--frame-cache", "off"]
    assert main([*argv, "--out", str(tmp_path / "local")]) == 0
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert main([*argv, "--engine", "ray", "--out", str(tmp_path / "ray")]) == 0
    finally:
        ray.shutdown()
    local, remote = open_store(tmp_path / "local"), open_store(tmp_path / "ray")
    assert remote.provenance["engine"] == "ray"
    assert remote.provenance["adapter"]["options"]["history"] == local.provenance["adapter"]["options"]["history"]
    a, b = local.latents("output.global_cond").X, remote.latents("output.global_cond").X
    assert not np.allclose(a[:, :24], a[:, 24:])  # history, not the current frame twice
    np.testing.assert_allclose(b, a, atol=1e-5)


# -- a real checkpoint written by lerobot-train -------------------------------------------------------------------


def test_lerobot_train_checkpoint_from_its_run_directory(trained, world, tmp_path, capsys):
    from probe.store.store import open_store

    assert main(["layers", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "(lerobot-act, step 20)" in out and "model.backbone.layer4" in out
    stores = tmp_path / "stores"
    rc = main(["extract", "--checkpoint", str(trained), "--checkpoint", str(trained / "checkpoints" / "000020"),
               "--data", f"robot={world['robot']}", "--data", f"human={world['human']}",
               "--rename", f"{EGO}={FRONT}", "--adapter-kwargs", '{"fill_state": true}', "--max-frames", "8",
               "--layer", "model.backbone.layer4", "--layer", "model.encoder", "--out", str(stores),
               "--frame-cache", "off"])
    assert rc == 0, capsys.readouterr().err
    a, b = open_store(stores / "run"), open_store(stores / "000020")
    assert set(a.meta["embodiment"]) == {"human", "robot"}
    assert a.provenance["checkpoint"]["step"] == 20
    assert a.provenance["adapter"]["options"]["rename"] == {EGO: FRONT}
    np.testing.assert_allclose(a.latents("model.encoder").X, b.latents("model.encoder").X, rtol=1e-5, atol=1e-5)


def test_missing_camera_and_state_are_named_in_one_line(act_dir, world, tmp_path, capsys):
    base = ["extract", "--checkpoint", str(act_dir), "--data", f"human={world['human']}", "--layer", "model.encoder",
            "--max-frames", "2", "--frame-cache", "off"]
    assert_refused(capsys, [*base, "--out", str(tmp_path / "a")], f"camera(s) ['{FRONT}']", f"--rename {EGO}={FRONT}",
             "observation.state of 8 values", "fill_state")
    assert_refused(capsys, [*base, "--rename", f"{EGO}={FRONT}", "--out", str(tmp_path / "b")],
             "observation.state of 8 values (the dataset's has 10 values")
    assert_refused(capsys, [*base, "--rename", "observation.images.wrist=observation.images.top", "--out",
                      str(tmp_path / "c")], f"camera(s) ['{FRONT}']")
    assert_refused(capsys, [*base, "--rename", "no-equals-sign", "--out", str(tmp_path / "d")], "DATASET_KEY=POLICY_KEY")
    assert not any((tmp_path / x).exists() for x in "abcd")


def test_a_checkpoint_trained_on_a_gpu_loads_on_the_cpu(tmp_path, world):
    from probe.store.store import open_store

    ckpt = act_checkpoint(tmp_path / "pretrained_model", device="cuda")
    assert json.loads((ckpt / "config.json").read_text())["device"] == "cuda"
    assert '"cuda"' in (ckpt / "policy_preprocessor.json").read_text()
    rc = main(["extract", "--checkpoint", str(ckpt), "--data", f"robot={world['robot']}", "--max-episodes", "1",
               "--max-frames", "4", "--layer", "model.backbone.layer4", "--out", str(tmp_path / "store"),
               "--device", "cpu", "--frame-cache", "off"])
    assert rc == 0
    assert open_store(tmp_path / "store").n == 4


@pytest.mark.skipif(not G1.is_dir(), reason=f"real datasets not found under {SHARED_DATA} (see shared/data/README.md)")
def test_extraction_on_the_real_g1_dataset(tmp_path):
    from probe.store.store import open_store

    cam = "observation.images.cam_high"
    ckpt = act_checkpoint(tmp_path / "g1", cameras={cam: (3, 96, 128)}, state_dim=26, action_dim=26)
    rc = main(["extract", "--checkpoint", str(ckpt), "--data", f"robot={G1}", "--max-episodes", "2",
               "--max-frames", "3", "--layer", "model.backbone.layer4", "--layer", "model.encoder",
               "--out", str(tmp_path / "store"), "--frame-cache", "off", "--skip-bad-episodes"])
    assert rc == 0
    store = open_store(tmp_path / "store")
    assert store.n == 6 and set(store.meta["task"]) == {"Pick up the yellow bottle on the table."}
    assert np.isfinite(store.latents("model.encoder").X).all()


# -- SmolVLA on a tiny local VLM ----------------------------------------------------------------------------------


def test_smolvla_tiny_layers_and_extraction_with_one_denoising_step(world, tmp_path, capsys):
    from lerobot_models import smolvla_checkpoint, tiny_vlm
    from probe.store.store import open_store

    ckpt = smolvla_checkpoint(tmp_path / "smolvla", tiny_vlm(tmp_path / "vlm"))
    assert main(["layers", str(ckpt)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("suggested layers (lerobot-smolvla): "))
    suggested = line.split(": ", 1)[1].split(", ")
    assert [x.rsplit(".", 1)[-1] for x in suggested] == ["vision_model", "connector", "mlp"]
    expert = next(x.split()[0] for x in out.splitlines() if x.startswith("model.vlm_with_expert.lm_expert.layers.0.mlp "))
    args = ["extract", "--checkpoint", str(ckpt), "--data", f"robot={world['robot']}", "--data",
            f"human={world['human']}", "--rename", f"{EGO}={FRONT}", "--adapter-kwargs", '{"fill_state": true}',
            "--max-episodes", "2", "--max-frames", "3", *[a for x in suggested for a in ("--layer", x)],
            "--layer", expert, "--frame-cache", "off"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--batch-size", "5", "--out", str(tmp_path / "b")]) == 0
    a, b = open_store(tmp_path / "a"), open_store(tmp_path / "b")
    assert a.provenance["adapter"]["options"]["denoising"].startswith("one denoising step (num_steps=1) from fixed noise")
    assert a.n == 12
    for layer in [*suggested, expert]:  # fixed noise: the same latents whatever the batching
        np.testing.assert_allclose(a.latents(layer).X, b.latents(layer).X, rtol=1e-4, atol=1e-5)


# -- Hugging Face transformers checkpoints ------------------------------------------------------------------------


def test_transformers_checkpoint_opens_with_automodel(world, tmp_path, capsys):
    from transformers import ViTConfig, ViTModel

    from probe.store.store import open_store

    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8)).save_pretrained(tmp_path / "vit")
    assert main(["layers", str(tmp_path / "vit")]) == 0
    assert "encoder.layer.1" in capsys.readouterr().out
    rc = main(["extract", "--checkpoint", str(tmp_path / "vit"), "--data", f"robot={world['robot']}",
               "--max-episodes", "1", "--max-frames", "4", "--layer", "encoder.layer.1", "--layer", "output",
               "--out", str(tmp_path / "store"), "--frame-cache", "off"])
    assert rc == 0
    store = open_store(tmp_path / "store")
    assert store.provenance["checkpoint"]["kind"] == "transformers" and store.layer_info("output")["dim"] == 16


def test_a_checkpoint_older_than_0_4_uses_its_normalisation_buffers(act_dir, world, tmp_path):
    from safetensors.torch import load_file, save_file

    from lerobot_models import stats
    from probe.store.store import open_store

    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(act_dir / "config.json", old / "config.json")
    weights = load_file(str(act_dir / "model.safetensors"))
    for feature, values in stats({FRONT: (3, 64, 64)}, 8, 5).items():  # what act_checkpoint normalised with
        prefix = "unnormalize_outputs" if feature == "action" else "normalize_inputs"
        for stat, tensor in values.items():
            weights[f"{prefix}.buffer_{feature.replace('.', '_')}.{stat}"] = tensor.contiguous()
    save_file(weights, str(old / "model.safetensors"))
    args = ["--data", f"robot={world['robot']}", "--max-episodes", "1", "--max-frames", "5", "--layer",
            "model.encoder", "--frame-cache", "off"]
    assert main(["extract", "--checkpoint", str(old), *args, "--out", str(tmp_path / "a")]) == 0
    assert main(["extract", "--checkpoint", str(act_dir), *args, "--out", str(tmp_path / "b")]) == 0
    a, b = open_store(tmp_path / "a"), open_store(tmp_path / "b")
    assert a.provenance["adapter"]["options"]["preprocessor"] == "migrated normalisation buffers"
    np.testing.assert_allclose(a.latents("model.encoder").X, b.latents("model.encoder").X, rtol=1e-5, atol=1e-5)


def test_a_checkpoint_from_a_newer_lerobot_is_refused_in_one_line(act_dir, tmp_path, capsys):
    newer = tmp_path / "newer"
    shutil.copytree(act_dir, newer)
    config = json.loads((newer / "config.json").read_text())
    (newer / "config.json").write_text(json.dumps(config | {"a_field_of_lerobot_0_6": 1}))
    assert_refused(capsys, ["layers", str(newer)], "cannot read the policy config", "a_field_of_lerobot_0_6",
             "upgrade LeRobot")
