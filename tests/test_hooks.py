"""Hooks and pooling: hand-computed pooling, captured layers, unknown and silent layers, listing."""

from __future__ import annotations

import pytest
import torch

from probe.errors import ConfigError, LayerNotFoundError
from probe.model.hooks import LayerHooks, Pooling, list_layers, pool

from extract_models import tiny_cnn, tokens

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def test_pool_tokens_hand_computed():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]])  # (1, 3, 2)
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(pool(x, "mean"), torch.tensor([[104 / 3, -94 / 3]]))
    assert pool(x, "mean", mask).tolist() == [[2.0, 3.0]]
    assert pool(x, "max", mask).tolist() == [[3.0, 4.0]]
    assert pool(x, "max").tolist() == [[100.0, 4.0]]
    assert pool(x, "first").tolist() == [[1.0, 2.0]]
    assert pool(x, "last").tolist() == [[100.0, -100.0]]
    assert pool(x, "last", mask).tolist() == [[3.0, 4.0]]
    assert pool(x, "flatten").tolist() == [[1.0, 2.0, 3.0, 4.0, 100.0, -100.0]]


def test_pool_spatial_and_vectors():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.allclose(pool(x, Pooling.MEAN), x.mean(dim=(2, 3)))
    assert torch.equal(pool(x, Pooling.MAX), x.amax(dim=(2, 3)))
    assert pool(x, Pooling.FLATTEN).shape == (2, 12)
    v = torch.randn(4, 5, dtype=torch.float64)
    assert pool(v, "mean").dtype == torch.float32 and torch.allclose(pool(v, "first"), v.float())


def test_pool_rejects_unknown_name():
    with pytest.raises(ConfigError, match="pooling must be one of"):
        pool(torch.zeros(2, 3), "median")


def test_hooks_capture_layers_in_one_pass():
    model = tiny_cnn().eval()
    x = torch.rand(3, 3, 16, 16)
    with LayerHooks(model, ["stem", "head", "output"], pooling="mean") as hooks, torch.inference_mode():
        hooks.reset()
        result = model(x)
        got = hooks.collect(result)
    assert set(got) == {"stem", "head", "output"}
    assert torch.allclose(got["head"], result) and torch.allclose(got["output"], result)
    with torch.no_grad():
        assert torch.allclose(got["stem"], model.stem(x).mean(dim=(2, 3)), atol=1e-6)
    assert got["stem"].shape == (3, 8)


def test_hooks_apply_the_attention_mask():
    model = tokens().eval()
    ids = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    with LayerHooks(model, ["embed"], pooling="mean") as hooks, torch.inference_mode():
        hooks.reset(mask)
        model(ids, mask)
        got = hooks.collect()["embed"]
    with torch.no_grad():
        emb = model.embed(ids)
    assert torch.allclose(got[0], emb[0, :3].mean(0)) and torch.allclose(got[1], emb[1, :2].mean(0))


def test_unknown_layer_lists_close_matches():
    with pytest.raises(LayerNotFoundError) as info:
        LayerHooks(tiny_cnn(), ["blok"])
    msg = str(info.value)
    assert "layer 'blok' not found" in msg and "block" in msg and "probe layers CHECKPOINT" in msg


def test_layer_that_never_fires_is_an_error():
    model = tiny_cnn().eval()
    with LayerHooks(model, ["head", "unused"]) as hooks, torch.inference_mode():
        hooks.reset()
        model(torch.rand(1, 3, 8, 8))
        with pytest.raises(ConfigError, match=r"\['unused'\] never ran"):
            hooks.collect()


def test_hooks_are_removed():
    model = tiny_cnn().eval()
    with LayerHooks(model, ["head"]):
        pass
    assert not model.head._forward_hooks


def test_threads_sharing_the_hooks_each_collect_their_own_pass():
    import threading

    model = tiny_cnn().eval()
    hooks = LayerHooks(model, ["stem", "head"])
    inputs = [torch.rand(2 + i, 3, 16, 16) for i in range(8)]
    got: dict[int, dict[str, torch.Tensor]] = {}
    start = threading.Barrier(4)

    def work(k: int) -> None:
        start.wait()
        for i in range(k, len(inputs), 4):
            with hooks, torch.inference_mode():
                hooks.reset()
                got[i] = hooks.collect(model(inputs[i]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not model.head._forward_hooks  # removed once the last thread left
    for i, x in enumerate(inputs):
        with torch.no_grad():
            assert torch.allclose(got[i]["head"], model(x)), i
            assert torch.allclose(got[i]["stem"], model.stem(x).mean(dim=(2, 3)), atol=1e-6), i


def test_list_layers_shapes():
    model = tiny_cnn().eval()
    infos = {i.name: i for i in list_layers(model, lambda: model(torch.zeros(2, 3, 16, 16)))}
    assert infos["stem"].shape == (2, 8, 8, 8)
    assert infos["block.0"].shape == (2, 8, 4, 4)
    assert infos["head"].shape == (2, 16) and infos["head"].parameters == 8 * 16 + 16
    assert infos["unused"].shape is None
    assert infos["output"].shape == (2, 16)


def test_torchscript_submodules_cannot_be_hooked():
    scripted = torch.jit.script(tiny_cnn().eval())
    with pytest.raises(ConfigError, match="TorchScript"):
        LayerHooks(scripted, ["head"])
    with LayerHooks(scripted, ["output"]) as hooks, torch.inference_mode():
        hooks.reset()
        out = hooks.collect(scripted(torch.rand(2, 3, 8, 8)))
    assert out["output"].shape == (2, 16)


def test_a_missing_output_key_lists_the_keys_plainly():
    model = tiny_cnn()
    hooks = LayerHooks(model, ["output.embedding"], pooling="mean")
    hooks.reset()
    result = {"ee": torch.zeros(2, 3), "stage": torch.zeros(2, 4)}
    with pytest.raises(ConfigError) as err:
        hooks.collect(result)
    assert str(err.value) == ("layer 'output.embedding': the model returned dict with keys ee, stage, without "
                              "'embedding'; use one of output.ee, output.stage")
