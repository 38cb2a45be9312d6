"""A user's model that does not take the inputs an adapter made, or fails on a batch: one error line naming the
checkpoint, adapter and data (exit 2 from the CLI), the model's own error chained for --debug, nothing left behind."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probe.cli import main
from probe.extraction.run import extract

from extract_models import ArrayDataset, tiny_cnn_checkpoint
from test_extract import FACTORY, _leftovers, config


@pytest.fixture
def ckpt(tmp_path):
    return tiny_cnn_checkpoint(tmp_path / "ckpts" / "enc-step-000400.safetensors")


def hdf5_dataset(path, episodes: int = 2, length: int = 5):
    """A small robomimic-style HDF5 dataset on disk (images 16x16, a 4-value state), for the CLI."""
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as fh:
        data = fh.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "env_kwargs": {"control_freq": 10}})
        for i in range(episodes):
            demo = data.create_group(f"demo_{i}")
            demo.attrs["num_samples"] = length
            obs = demo.create_group("obs")
            obs["agentview_image"] = rng.integers(0, 255, (length, 16, 16, 3), dtype=np.uint8)
            obs["eef_pos"] = rng.normal(size=(length, 4))
            demo["actions"] = np.zeros((length, 7))
    return path


def _left_of(out):
    """What a run left beside ``out``: the store, its staging and lock siblings (``.NAME.staging`` ...)."""
    return sorted(p.name for p in out.parent.iterdir() if out.name in p.name)


@pytest.mark.parametrize("factory, adapter, error", [
    ("extract_models:tiny_cnn", "state", "RuntimeError: Expected 3D (unbatched) or 4D (batched) input to conv2d"),
    ("extract_models:two_inputs", "image", "TypeError: TwoInputs.forward() missing 1 required positional argument"),
])
def test_extract_cli_model_that_refuses_the_inputs_is_one_line_and_leaves_nothing(tmp_path, ckpt, capsys, factory,
                                                                                  adapter, error):
    from tests.conftest import assert_refused

    data = hdf5_dataset(tmp_path / "lift.hdf5")
    out = tmp_path / "stores" / "s"
    out.parent.mkdir()
    err = assert_refused(capsys, ["extract", "--checkpoint", str(ckpt), "--model", factory, "--adapter", adapter,
                                  "--data", f"robot={data}", "--layer", "head", "--batch-size", "4",
                                  "--device", "cpu", "--frame-cache", "off", "--out", str(out)],
                         f"checkpoint '{ckpt}' with adapter '{adapter}' on robot dataset 'lift'",
                         f"the model's forward raised {error}", "the adapter passed one tensor (4, ",
                         "--adapter", "--debug")
    assert err.startswith("error: checkpoint ") and _left_of(out) == []
    # --debug: the toolkit's error, chained to the model's own (whose traceback Python prints)
    from probe.errors import ModelCallError

    with pytest.raises(ModelCallError) as raised:
        main(["--debug", "extract", "--checkpoint", str(ckpt), "--model", factory, "--adapter", adapter,
              "--data", f"robot={data}", "--layer", "head", "--device", "cpu", "--frame-cache", "off",
              "--out", str(out)])
    assert type(raised.value.__cause__).__name__ == error.split(":")[0]
    assert _left_of(out) == []


def test_a_model_failing_on_a_later_batch_drops_what_was_staged(tmp_path, ckpt):
    from probe.errors import ModelCallError

    data = (ArrayDataset("hands", "human", seed=1), ArrayDataset("arm", "robot", seed=2, bright=(2,)))
    out = tmp_path / "store"
    with pytest.raises(ModelCallError) as raised:  # batches of the first 5 episodes were written before it failed
        extract(config(ckpt, out, data=data, model="extract_models:failing_cnn", layers=("head",), model_workers=1))
    message = str(raised.value)
    assert "on robot dataset 'arm': the model's forward raised RuntimeError: too bright (" in message
    assert "second line" not in message and "\n" not in message
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_an_embed_function_that_raises_is_named(tmp_path, ckpt):
    from probe.errors import ModelCallError

    with pytest.raises(ModelCallError, match=r"--embed extract_models:two_layers raised RuntimeError: .*fix that "
                                             r"function"):
        extract(config(ckpt, tmp_path / "s", adapter="state", adapter_kwargs={}, embed="extract_models:two_layers",
                       layers=("manual.logits",)))
    assert _leftovers(tmp_path) == []


def test_layers_cli_model_that_refuses_the_example_is_one_line(tmp_path, ckpt, capsys):
    from tests.conftest import assert_refused

    assert_refused(capsys, ["layers", str(ckpt), "--model", FACTORY, "--input-shape", "3,32"],
                   f"checkpoint '{ckpt}' with adapter 'image' on example inputs of --input-shape 3,32",
                   "the model's forward raised RuntimeError: ", "the adapter passed one tensor (2, 3, 32)",
                   "check --input-shape", "--debug")
    data = hdf5_dataset(tmp_path / "lift.hdf5")
    assert_refused(capsys, ["layers", str(ckpt), "--model", "extract_models:two_inputs", "--data", f"robot={data}"],
                   "with adapter 'image' on 2 frames of robot dataset 'lift'",
                   "TypeError: TwoInputs.forward() missing 1 required positional argument: 'state'")
    from probe.errors import ModelCallError

    with pytest.raises(ModelCallError) as raised:
        main(["--debug", "layers", str(ckpt), "--model", FACTORY, "--input-shape", "3,32"])
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_layers_cli_next_step_carries_the_model_options(tmp_path, ckpt, capsys):
    import shlex

    kwargs = '{"size": 32}'
    assert main(["layers", str(ckpt), "--model", FACTORY, "--model-kwargs", "{}", "--adapter", "image",
                 "--adapter-kwargs", kwargs]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "probe extract" in x)
    argv = shlex.split(line)
    assert argv[:4] == ["probe", "extract", "--checkpoint", str(ckpt)]
    for option, value in (("--model", FACTORY), ("--model-kwargs", "{}"), ("--adapter", "image"),
                          ("--adapter-kwargs", kwargs)):
        assert argv[argv.index(option) + 1] == value
