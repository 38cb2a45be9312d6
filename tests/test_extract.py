"""Extraction end to end on datasets that follow the reader contract, with real tiny torch models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import extract_config
import torch
from safetensors.torch import save_file

from probe import columns as C
from probe.cli import main
from probe.errors import DataError, LatentsError, LayerNotFoundError, OutputExistsError
from probe.extraction.config import ExtractConfig
from probe.extraction.run import extract
from probe.model.config import ModelConfig
from probe.extraction.config import PassConfig

from extract_models import ArrayDataset, tiny_cnn, tiny_cnn_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
FACTORY = "extract_models:tiny_cnn"


@pytest.fixture
def ckpt(tmp_path):
    return tiny_cnn_checkpoint(tmp_path / "ckpts" / "enc-step-000400.safetensors")


def datasets(**kw):
    return (ArrayDataset("hands", "human", seed=1, **kw), ArrayDataset("arm", "robot", seed=2, **kw))


def config(ckpt, out, data=None, **kw):
    base = dict(checkpoints=(str(ckpt),), data=data or datasets(), layers=("stem", "head"), out=str(out),
                model=FACTORY, adapter="image", adapter_kwargs={"size": None}, batch_size=4, device="cpu")
    return extract_config(**(base | kw))


def test_model_kwargs_are_recorded_so_the_model_can_be_rebuilt(tmp_path):
    path = tmp_path / "wide.safetensors"
    save_file(tiny_cnn(dim=12, seed=3).state_dict(), path)
    store = extract(config(path, tmp_path / "store", model_kwargs={"dim": 12}))
    assert store.provenance["checkpoint"]["model_kwargs"] == {"dim": 12}
    assert store.layer_info("head")["dim"] == 12


def _leftovers(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))


def test_extract_matches_the_model_and_records_provenance(tmp_path, ckpt):
    data = datasets()
    store = extract(config(ckpt, tmp_path / "store", data=data))
    assert store.n == 2 * 3 * 10 and set(store.layers) == {"stem", "head"}
    meta = store.meta
    assert meta[C.SAMPLE_ID].iloc[0] == "hands/0/0" and set(meta[C.EMBODIMENT]) == {"human", "robot"}
    assert set(meta[C.STAGE]) == {"reach", "grasp"}
    # videos relative to their dataset's root, which the provenance records (absolute)
    assert meta[C.VIDEO].iloc[11] == "ep1.mp4" and meta[C.VIDEO_TIMESTAMP].iloc[11] == pytest.approx(2.1)
    # agreement with the bare model on the same frames
    model = tiny_cnn(seed=3).eval()
    robot_ep2 = torch.from_numpy(data[1].images[2]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected_head = model(robot_ep2).numpy()
        expected_stem = model.stem(robot_ep2).mean(dim=(2, 3)).numpy()
    rows = (meta[C.DATASET] == "arm").to_numpy() & (meta[C.EPISODE] == 2).to_numpy()
    np.testing.assert_allclose(store.matrix("head")[rows], expected_head, atol=1e-5)
    np.testing.assert_allclose(store.matrix("stem")[rows], expected_stem, atol=1e-5)
    prov = store.provenance
    assert prov["checkpoint"]["sha256"] and prov["checkpoint"]["factory"] == FACTORY
    assert [d["embodiment"] for d in prov["datasets"]] == ["human", "robot"]
    assert prov["datasets"][0]["fingerprint"] == "fp-hands-1" and prov["datasets"][0]["root"] == "/memory/hands"
    assert prov["layers"] == {"stem": "mean", "head": "mean"} and store.layer_info("stem")["pooling"] == "mean"
    assert prov["adapter"]["name"] == "image" and prov["engine"] == "local"
    assert prov["sampling"]["stride"] == 1
    assert _leftovers(tmp_path) == []


def test_sampling_options_shrink_the_table(tmp_path, ckpt):
    store = extract(config(ckpt, tmp_path / "s", stride=3, max_episodes=2))
    assert store.n == 2 * 2 * 4 and sorted(store.meta[C.FRAME].unique()) == [0, 3, 6, 9]


def test_resume_after_interrupt_gives_the_same_store(tmp_path, ckpt, monkeypatch):
    from extract_models import InterruptingImage

    full = extract(config(ckpt, tmp_path / "full"))
    interrupting = dict(adapter="extract_models:InterruptingImage")
    monkeypatch.setattr(InterruptingImage, "after", 3)
    with pytest.raises(KeyboardInterrupt):
        extract(config(ckpt, tmp_path / "resumed", **interrupting))
    assert not (tmp_path / "resumed").exists()
    (partial,) = tmp_path.glob(".*resumed*.partial")
    assert np.load(partial / "done.npy").sum() == 12  # three batches of four were written
    monkeypatch.setattr(InterruptingImage, "after", None)
    data = datasets()
    resumed = extract(config(ckpt, tmp_path / "resumed", data=data, resume=True, **interrupting))
    assert data[0].frames_read + data[1].frames_read == 60 - 12  # only what was left was read again
    assert resumed.fingerprint == full.fingerprint
    np.testing.assert_array_equal(resumed.matrix("head"), full.matrix("head"))
    assert _leftovers(tmp_path) == []


def test_several_checkpoints_give_one_store_each(tmp_path, ckpt):
    second = tmp_path / "ckpts" / "enc-step-000800.safetensors"
    save_file(tiny_cnn(seed=9).state_dict(), second)
    stores = extract(config(ckpt, tmp_path / "cmp", checkpoints=(str(ckpt), str(second)), layers=("head",)))
    assert [s.path.name for s in stores] == ["enc-step-000400", "enc-step-000800"]
    assert stores[0].meta[C.SAMPLE_ID].tolist() == stores[1].meta[C.SAMPLE_ID].tolist()
    assert not np.allclose(stores[0].matrix("head"), stores[1].matrix("head"))


def test_nan_from_the_model_names_layer_and_samples(tmp_path):
    data = (ArrayDataset("hands", "human", seed=1, bright=(1,)), ArrayDataset("arm", "robot", seed=2))
    cfg = ExtractConfig(checkpoints=(str(_nan_checkpoint(tmp_path)),),
                        data=data,
                        out=str(tmp_path / "store"),
                        model=ModelConfig(layers=("output",), model="extract_models:nan_cnn", adapter_kwargs={"size": None}, device="cpu"),
                        passes=PassConfig(batch_size=4))
    with pytest.raises(LatentsError, match=r"NaN or Inf in layer 'output' for 2 sample\(s\) \(first: hands/1/0, hands/1/1"):
        extract(cfg)
    assert not (tmp_path / "store").exists() and _leftovers(tmp_path) == []


def _nan_checkpoint(tmp_path):
    from extract_models import nan_cnn

    path = tmp_path / "nan.safetensors"
    save_file(nan_cnn().state_dict(), path)
    return path


def test_undecodable_episode_is_an_error_naming_it(tmp_path, ckpt):
    data = (ArrayDataset("hands", "human", seed=1, bad=(1,)), ArrayDataset("arm", "robot", seed=2))
    with pytest.raises(DataError, match="dataset 'hands' episode 1: cannot read frames.*--skip-bad-episodes"):
        extract(config(ckpt, tmp_path / "store", data=data))
    assert not (tmp_path / "store").exists() and _leftovers(tmp_path) == []


def test_skip_bad_episodes_drops_them_with_a_warning(tmp_path, ckpt, caplog):
    data = (ArrayDataset("hands", "human", seed=1, bad=(1,)), ArrayDataset("arm", "robot", seed=2))
    store = extract(config(ckpt, tmp_path / "store", data=data, skip_bad_episodes=True))
    assert store.n == 50 and 1 not in set(store.meta.loc[store.meta[C.DATASET] == "hands", C.EPISODE])
    assert any("episode 1" in w and "skipped" in w for w in store.manifest["warnings"])
    assert "skipped" in caplog.text
    reference = extract(config(ckpt, tmp_path / "ref"))
    keep = ~((reference.meta[C.DATASET] == "hands") & (reference.meta[C.EPISODE] == 1)).to_numpy()
    np.testing.assert_allclose(store.matrix("head"), reference.matrix("head")[keep], atol=1e-6)
    assert caplog.text.count("episode 1: cannot read") == 1  # tried once, not once per batch
    assert _leftovers(tmp_path) == []


def test_unknown_layer_lists_close_matches_and_writes_nothing(tmp_path, ckpt):
    with pytest.raises(LayerNotFoundError, match=r"layer 'hed' not found.*head.*probe layers CHECKPOINT"):
        extract(config(ckpt, tmp_path / "store", layers=("hed",)))
    assert not (tmp_path / "store").exists() and _leftovers(tmp_path) == []


def test_stage_seen_by_one_embodiment_is_a_manifest_warning(tmp_path, ckpt):
    data = (ArrayDataset("hands", "human", seed=1, stages=("reach", "grasp", "wave")), ArrayDataset("arm", "robot"))
    store = extract(config(ckpt, tmp_path / "store", data=data, layers=("head",)))
    assert any("stage 'wave' is seen only by embodiment 'human'" in w for w in store.manifest["warnings"])


def test_existing_output_needs_overwrite(tmp_path, ckpt):
    extract(config(ckpt, tmp_path / "store", layers=("head",)))
    with pytest.raises(OutputExistsError, match="--overwrite"):
        extract(config(ckpt, tmp_path / "store", layers=("head",)))
    store = extract(config(ckpt, tmp_path / "store", layers=("stem",), overwrite=True))
    assert store.layers == ["stem"]


def test_embed_function_reaches_unhooked_representations(tmp_path, ckpt):
    store = extract(config(ckpt, tmp_path / "store", layers=("head", "manual.stem_tokens"),
                           embed="extract_models:two_layers", pool="max"))
    assert set(store.layers) == {"head", "manual.stem_tokens"}
    assert store.layer_info("manual.stem_tokens")["dim"] == 8 and store.provenance["embed"] == "extract_models:two_layers"
    all_named = extract(config(ckpt, tmp_path / "all", layers=(), embed="extract_models:two_layers"))
    assert set(all_named.layers) == {"manual.stem_tokens", "manual.logits"}
    np.testing.assert_allclose(all_named.matrix("manual.logits"), store.matrix("head"), atol=1e-6)


def test_state_adapter(tmp_path):
    path = tmp_path / "mlp.safetensors"
    from extract_models import state_mlp

    save_file(state_mlp().state_dict(), path)
    data = datasets()
    store = extract(ExtractConfig(checkpoints=(str(path),),
                                  data=data,
                                  out=str(tmp_path / "s"),
                                  model=ModelConfig(layers=("act",), model="extract_models:state_mlp", adapter="state", device="cpu")))
    with torch.no_grad():
        m = state_mlp().eval()
        expected = m.act(m.fc1(torch.from_numpy(data[0].states[0]))).numpy()
    np.testing.assert_allclose(store.matrix("act")[:10], expected, atol=1e-6)
    assert data[0].reads > 0


def test_torchscript_output_layer(tmp_path):
    torch.jit.save(torch.jit.script(tiny_cnn(seed=3).eval()), tmp_path / "enc.pt")
    store = extract(ExtractConfig(checkpoints=(str(tmp_path / "enc.pt"),),
                                  data=datasets(),
                                  out=str(tmp_path / "s"),
                                  model=ModelConfig(layers=("output",), adapter_kwargs={"size": None}, device="cpu")))
    assert store.layer_info("output")["dim"] == 16 and store.provenance["checkpoint"]["kind"] == "torchscript"


def test_layers_cli_lists_shapes(tmp_path, ckpt, capsys):
    code = main(["layers", str(ckpt), "--model", FACTORY, "--input-shape", "3,32,32"])
    out = capsys.readouterr().out
    assert code == 0
    assert "block.0" in out and "2x8x8x8" in out and "2x16" in out


def test_layers_cli_bad_checkpoint_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"garbage")
    assert main(["layers", str(bad), "--model", FACTORY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: safetensors file") and "corrupt" in err


def test_extract_cli_bad_model_kwargs(tmp_path, ckpt, capsys):
    code = main(["extract", "--checkpoint", str(ckpt), "--data", "human=/nope", "--layer", "head",
                 "--model", FACTORY, "--model-kwargs", "{dim: 3}", "--out", str(tmp_path / "s")])
    assert code == 2 and "--model-kwargs: expected a JSON object" in capsys.readouterr().err


def test_config_validation():
    from probe.errors import ConfigError

    with pytest.raises(ConfigError, match="no layer given"):
        ExtractConfig(checkpoints=("c",),
                      data=("p",),
                      out="o",
                      model=ModelConfig(layers=()))
    with pytest.raises(ConfigError, match="exclude each other"):
        ExtractConfig(checkpoints=("c",),
                      data=("p",),
                      out="o",
                      resume=True,
                      overwrite=True,
                      model=ModelConfig(layers=("x",)))
    with pytest.raises(ConfigError, match="pooling must be one of"):
        ExtractConfig(checkpoints=("c",),
                      data=("p",),
                      out="o",
                      model=ModelConfig(layers=("x",), pool="median"))
    spec = ExtractConfig(checkpoints="c",
                         data="human=some/path",
                         out="o",
                         model=ModelConfig(layers="x")).data[0]
    assert (spec.embodiment, spec.path) == ("human", "some/path")
    assert json.loads('{"a": 1}') == {"a": 1}


def test_stage_spec_progress_bins_and_bad_spec(tmp_path, ckpt):
    store = extract(config(ckpt, tmp_path / "s", layers=("head",), stages="progress:2"))
    assert set(store.meta[C.STAGE]) == {"p0", "p1"} and store.provenance["stages"] == "progress:2"
    from probe.errors import ConfigError

    with pytest.raises((ConfigError, DataError), match="progress"):
        config(ckpt, tmp_path / "t", stages="progres:2")


def test_autocast_bf16_is_close_to_float32(tmp_path, ckpt):
    full = extract(config(ckpt, tmp_path / "f32", layers=("head",), max_episodes=1))
    half = extract(config(ckpt, tmp_path / "bf16", layers=("head",), max_episodes=1, autocast="bf16"))
    assert half.provenance["autocast"] == "bf16"
    np.testing.assert_allclose(half.matrix("head"), full.matrix("head"), atol=0.05)
    assert not np.array_equal(half.matrix("head"), full.matrix("head"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error(tmp_path, ckpt):
    from probe.errors import ConfigError

    with pytest.raises(ConfigError, match="no CUDA GPU; use --device cpu or auto"):
        extract(config(ckpt, tmp_path / "s", device="cuda"))


def test_query_file_embedding_of_a_pickled_checkpoint_needs_trust(tmp_path):
    from probe.cli import build_parser
    from probe.errors import CheckpointError
    from probe.extraction.observation import embed_observation

    path = tmp_path / "full.pt"
    torch.save(tiny_cnn(seed=3), path)  # a whole pickled module: it loads only with trust
    data = datasets()
    store = extract(config(path, tmp_path / "store", data=data, model=None, trust_checkpoint=True))
    np.savez(tmp_path / "obs.npz", image=data[1].images[0][0], embodiment="robot")
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        embed_observation(store, "head", tmp_path / "obs.npz")
    X, _ = embed_observation(store, "head", tmp_path / "obs.npz", trust=True)
    np.testing.assert_allclose(X[0], store.matrix("head")[int(np.flatnonzero(
        (store.meta[C.DATASET] == "arm").to_numpy())[0])], atol=1e-5)
    args = build_parser().parse_args(["retrieve", "--index", "i", "--query-file", "q.npz", "--trust-checkpoint"])
    assert args.trust_checkpoint is True


def test_data_spec_mistakes_get_the_cli_syntax(tmp_path, ckpt, capsys):
    from probe.errors import ConfigError
    from probe.extraction.config import DataSpec
    from probe.readers import detect_format

    (tmp_path / "human").mkdir()
    with pytest.raises(DataError, match=r"does not exist; to label a dataset with its embodiment write "
                                        r"EMBODIMENT=PATH \(e.g. human=.*/human\), not EMBODIMENT:PATH"):
        DataSpec.parse(f"human:{tmp_path / 'human'}")
    for empty in ("human=", "human= "):
        with pytest.raises(ConfigError, match=r"--data 'human=\s?': no path after '='; give EMBODIMENT=PATH"):
            DataSpec.parse(empty)
    assert DataSpec.parse(f"human={tmp_path / 'human'}") == DataSpec(str(tmp_path / "human"), "human")
    assert DataSpec.parse(str(tmp_path / "human")).embodiment is None
    with pytest.raises(DataError) as err:
        detect_format(tmp_path / "human")
    assert "--data takes a LeRobot" in str(err.value) and "pass format=" not in str(err.value)
    code = main(["extract", "--checkpoint", str(ckpt), "--data", "human=", "--layer", "head", "--model", FACTORY,
                 "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "no path after '='" in err and "cannot tell the format of '.'" not in err

