"""Raw-observation queries: an .npz frame embedded by the store's checkpoint, adapter and layer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probe import columns as C
from probe.cli import main
from probe.errors import CheckpointError, DataError
from probe.extraction.config import ExtractConfig
from probe.extraction.run import extract
from probe.retrieval.index import build_index
from probe.extraction.observation import ObservationEmbedder, read_observation
from probe.retrieval.retriever import Retriever
from probe.extraction.observation import embed_observation
from probe.model.config import ModelConfig
from probe.extraction.config import PassConfig
from probe.extraction.sampling import SamplingConfig

LAYERS = ("trunk.block2", "output.embedding")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny built-in world, two policies, a store of the first and a human index of it."""
    pytest.importorskip("probe.world.policy", reason="the built-in world policy is not available")
    from probe.world.embodiments import SPECS
    from probe.world.generate import generate_world
    from probe.world.policy import make_policy, save_policy
    from probe.world.tasks import STAGES, TASK_NAMES

    root = tmp_path_factory.mktemp("qworld")
    generate_world(root / "w", size="tiny", tasks=["push_block", "open_drawer"], episodes_per_task=1)
    for step in (100, 200):
        torch.manual_seed(step)
        policy = make_policy({k: {"state_dim": s.state_dim, "action_dim": s.action_dim} for k, s in SPECS.items()},
                             list(TASK_NAMES), list(STAGES), image_size=64)
        save_policy(policy, root / "ckpt" / f"step-{step:06d}", step, "cotrained")
    data = (f"human={root / 'w/datasets/human'}", f"robot={root / 'w/datasets/robot'}")
    store = extract(ExtractConfig(checkpoints=(str(root / "ckpt/step-000100"),),
                                  data=data,
                                  out=str(root / "store"),
                                  model=ModelConfig(layers=LAYERS, layer_pooling={"trunk.block2": "last"}, device="cpu"),
                                  sampling=SamplingConfig(stride=4),
                                  passes=PassConfig(batch_size=8)))
    build_index(store, "output.embedding", root / "idx")
    return root, store


def _robot_frames(root, store, n: int = 2):
    """``n`` stored robot frames of the first robot episode, read from the dataset as extraction read them."""
    from probe.readers import open_dataset

    ds = open_dataset(root / "w/datasets/robot")
    ep = ds.episodes()[0]
    rows = np.flatnonzero(((store.meta[C.EMBODIMENT] == "robot") & (store.meta[C.EPISODE] == ep.index)).to_numpy())
    rows = rows[:n]
    batch = ds.read(ep, store.meta[C.FRAME].to_numpy()[rows], size=(64, 64))
    return rows, batch.images[ds.info.video_keys[0]], batch.state, str(store.meta[C.TASK].iloc[rows[0]])


def test_dataset_frame_embeds_to_its_stored_latent(world, tmp_path):
    root, store = world
    rows, images, state, task = _robot_frames(root, store)
    np.savez(tmp_path / "one.npz", image=images[0], state=state[0], task=task)
    np.savez(tmp_path / "two.npz", image=images, state=state, task=task, embodiment="robot")
    for layer in LAYERS:  # per-layer pooling comes from the manifest ("last" for trunk.block2)
        X, info = embed_observation(store, layer, tmp_path / "one.npz")
        assert X.shape == (1, store.layer_info(layer)["dim"]) and X.dtype == np.float32
        np.testing.assert_allclose(X[0], store.matrix(layer)[rows[0]], atol=1e-4)
        assert info["embodiment"] == "robot" and info["task"] == task and info["frames"] == 1
        assert info["checkpoint"] == str(root / "ckpt/step-000100") and info["images"].shape == (1, 64, 64, 3)
    X, _ = embed_observation(store, "output.embedding", tmp_path / "two.npz")
    np.testing.assert_allclose(X, store.matrix("output.embedding")[rows], atol=1e-4)
    # another checkpoint (same architecture) gives other latents of the same size
    X2, info2 = embed_observation(store, "output.embedding", tmp_path / "one.npz",
                                  checkpoint=root / "ckpt/step-000200")
    assert info2["checkpoint"].endswith("step-000200") and X2.shape == X[:1].shape
    assert np.abs(X2[0] - X[0]).max() > 1e-3


def test_native_size_image_is_resized_like_the_reader(world, tmp_path):
    root, store = world
    rows, images, state, task = _robot_frames(root, store, n=1)
    big = np.repeat(np.repeat(images[0], 2, axis=0), 2, axis=1)  # 128x128: the embedder resizes it to 64x64
    np.savez(tmp_path / "big.npz", image=big, state=state[0], task=task)
    X, _ = embed_observation(store, "output.embedding", tmp_path / "big.npz")
    ref = store.matrix("output.embedding")
    cos = float(X[0] @ ref[rows[0]] / np.linalg.norm(X[0]) / np.linalg.norm(ref[rows[0]]))
    assert cos > 0.99


def test_cli_query_file_retrieves_human_clips(world, tmp_path, capsys):
    root, store = world
    rows, images, state, task = _robot_frames(root, store, n=1)
    np.savez(tmp_path / "obs.npz", image=images[0], state=state[0], task=task)
    assert main(["retrieve", "--index", str(root / "idx"), "--query-file", str(tmp_path / "obs.npz"), "-k", "2",
                 "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["queries"][0]["source"] == str(tmp_path / "obs.npz") and "image" not in payload["queries"][0]
    hits = payload["results"]
    assert len(hits) == 2 and {h["embodiment"] for h in hits} == {"human"}
    # the same as searching with the stored latent of that frame
    expected = Retriever.open(root / "idx").search(store.matrix("output.embedding")[rows], k=2, per_episode=1)
    assert [h["sample_id"] for h in hits] == expected[C.SAMPLE_ID].tolist()
    assert main(["retrieve", "--index", str(root / "idx"), "--query-file", str(tmp_path / "obs.npz"), "-k", "2",
                 "--checkpoint", str(root / "ckpt/step-000200")]) == 0
    assert "query 0" in capsys.readouterr().out


def test_state_of_wrong_dimension_names_expected_and_got(world, tmp_path, capsys):
    root, store = world
    _, images, state, task = _robot_frames(root, store, n=1)
    np.savez(tmp_path / "bad.npz", image=images[0], state=state[0, :-1], task=task)
    want = state.shape[1]
    with pytest.raises(DataError, match=rf"has {want - 1} values per frame, the model expects {want} "
                                        r"for embodiment 'robot'"):
        embed_observation(store, "output.embedding", tmp_path / "bad.npz")
    assert main(["retrieve", "--index", str(root / "idx"), "--query-file", str(tmp_path / "bad.npz")]) == 2
    assert f"the model expects {want}" in capsys.readouterr().err


def test_missing_file_and_missing_keys(world, tmp_path, capsys):
    root, store = world
    with pytest.raises(DataError, match="observation file .*nope.npz' does not exist; save a frame with"):
        embed_observation(store, "output.embedding", tmp_path / "nope.npz")
    assert main(["retrieve", "--index", str(root / "idx"), "--query-file", str(tmp_path / "nope.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    np.savez(tmp_path / "empty.npz", pixels=np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match=r"holds neither 'image' nor 'state' \(its keys: \['pixels'\]\)"):
        read_observation(tmp_path / "empty.npz")
    assert main(["retrieve", "--index", str(root / "idx"), "--query-file", str(tmp_path / "empty.npz")]) == 2
    assert "neither 'image' nor 'state'" in capsys.readouterr().err
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="is not a readable .npz"):
        read_observation(tmp_path / "junk.npz")


def test_bad_shapes_task_and_embodiment(world, tmp_path):
    root, store = world
    _, images, state, task = _robot_frames(root, store, n=1)
    cases = {
        "gray": (dict(image=images[0, ..., 0], state=state[0], task=task), r"must be RGB \(H, W, 3\).*got shape"),
        "float": (dict(image=images[0] / 255.0, state=state[0], task=task), "must be uint8"),
        "count": (dict(image=np.stack([images[0]] * 2), state=state[0:1].repeat(3, 0), task=task),
                  "2 images but 3 states"),
        "nostate": (dict(image=images[0], task=task), "has no 'state'"),
        "notask": (dict(image=images[0], state=state[0]), r"has no 'task'; add task='...' to the file \(one of"),
        "alien": (dict(image=images[0], state=state[0], task=task, embodiment="octopus"),
                  r"embodiment 'octopus' .* is not one the model knows"),
        "badtask": (dict(image=images[0], state=state[0], task="juggle"), r"juggle.*not among the policy's tasks"),
    }
    embedder = ObservationEmbedder.from_store(store, "output.embedding", device="cpu")
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(DataError, match=message):
            embedder(read_observation(tmp_path / f"{name}.npz"))


def test_moved_checkpoint_asks_for_checkpoint_option(world, tmp_path):
    root, store = world
    from probe.store.store import open_store

    moved = tmp_path / "store"
    import shutil

    shutil.copytree(store.path, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["provenance"]["checkpoint"]["path"] = str(tmp_path / "gone")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    _, images, state, task = _robot_frames(root, store, n=1)
    np.savez(tmp_path / "obs.npz", image=images[0], state=state[0], task=task)
    with pytest.raises(CheckpointError, match="does not exist here; pass --checkpoint PATH"):
        embed_observation(open_store(moved), "output.embedding", tmp_path / "obs.npz")
