"""The Ray Data engine gives the same store as the local engine (Ray started locally, one CPU actor)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from probe.extraction.config import ExtractConfig
from probe.extraction.run import extract
from probe.model.config import ModelConfig
from probe.extraction.config import PassConfig

from extract_models import ArrayDataset, tiny_cnn

ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra: pip install 'ray[data]')")


@pytest.mark.slow
def test_ray_engine_equals_local(tmp_path):
    ckpt = tmp_path / "enc.safetensors"
    save_file(tiny_cnn(seed=3).state_dict(), ckpt)

    def cfg(out, engine):
        data = (ArrayDataset("hands", "human", seed=1, bad=(2,)), ArrayDataset("arm", "robot", seed=2))
        return ExtractConfig(checkpoints=(str(ckpt),),
                             data=data,
                             out=str(tmp_path / out),
                             skip_bad_episodes=True,
                             model=ModelConfig(layers=("stem", "head"), model="extract_models:tiny_cnn", adapter_kwargs={"size": None}, device="cpu"),
                             passes=PassConfig(batch_size=8, engine=engine))

    local = extract(cfg("local", "local"))
    tests_dir = str(Path(__file__).resolve().parent)  # actors import the model factory from tests/
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": tests_dir + os.pathsep + str(Path(tests_dir).parent)}})
    try:
        remote = extract(cfg("ray", "ray"))
    finally:
        ray.shutdown()
    assert remote.provenance["engine"] == "ray"
    assert remote.meta["sample_id"].tolist() == local.meta["sample_id"].tolist()
    assert remote.layers == local.layers
    for layer in local.layers:
        np.testing.assert_allclose(remote.matrix(layer), local.matrix(layer), atol=1e-6)
    assert any("skipped" in w for w in remote.manifest["warnings"])


@pytest.mark.slow
def test_ray_engine_model_error_is_the_toolkit_error_and_leaves_nothing(tmp_path):
    from probe.errors import ModelCallError

    ckpt = tmp_path / "enc.safetensors"
    save_file(tiny_cnn(seed=3).state_dict(), ckpt)
    data = (ArrayDataset("hands", "human", seed=1), ArrayDataset("arm", "robot", seed=2, bright=(1,)))
    config = ExtractConfig(checkpoints=(str(ckpt),), data=data, out=str(tmp_path / "store"),
                           model=ModelConfig(layers=("head",), model="extract_models:failing_cnn",
                                             adapter_kwargs={"size": None}, device="cpu"),
                           passes=PassConfig(batch_size=8, engine="ray"))
    tests_dir = str(Path(__file__).resolve().parent)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": tests_dir + os.pathsep + str(Path(tests_dir).parent)}})
    try:
        with pytest.raises(ModelCallError, match=r"on robot dataset 'arm': the model's forward raised RuntimeError: "
                                                 r"too bright \("):
            extract(config)
    finally:
        ray.shutdown()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.safetensors"]
