"""``--stages EMBODIMENT=SPEC``: each embodiment's datasets labelled from their own stage source (e.g. annotated
sub-tasks for the robot, a stage file or progress bins for people), with one default for the rest."""

from __future__ import annotations

import pytest

from extract_models import ArrayDataset
from output_safety_fixtures import ckpt as ckpt  # a fixture: imported under its own name
from output_safety_fixtures import one_line_error
from probe import columns as C
from probe.cli import main
from probe.errors import ConfigError
from probe.extraction.run import extract
from probe.extraction.sampling import SamplingConfig, parse_stages
from tests.conftest import SHARED_DATA, extract_config

GR1 = SHARED_DATA / "gr1_sim_picknplace"


def _config(ckpt, out, **kw):
    data = (ArrayDataset("hands", "human", seed=1), ArrayDataset("arm", "robot", seed=2))
    base = dict(checkpoints=(str(ckpt),), data=data, layers=("head",), out=str(out), model="extract_models:tiny_cnn",
                adapter="image", adapter_kwargs={"size": None}, batch_size=4, device="cpu")
    return extract_config(**(base | kw))


def test_parse_stages_splits_the_default_from_each_embodiments_own():
    assert parse_stages([]) == ("auto", {})
    assert parse_stages(["progress:3"]) == ("progress:3", {})
    assert parse_stages(["robot=subtasks", "human=progress:5", "column:phase"]) == (
        "column:phase", {"robot": "subtasks", "human": "progress:5"})
    assert parse_stages(["file:runs/a=b.csv"]) == ("file:runs/a=b.csv", {})  # '=' inside a spec is no embodiment
    with pytest.raises(ConfigError, match="--stages given twice for every dataset"):
        parse_stages(["progress:3", "auto"])
    with pytest.raises(ConfigError, match=r"--stages human= given twice \('progress:3' and 'progress:4'\)"):
        parse_stages(["human=progress:3", "human=progress:4"])
    with pytest.raises(ConfigError, match="progres"):
        SamplingConfig(embodiment_stages={"human": "progres:2"})  # a bad spec fails before any work


def test_each_embodiment_gets_its_own_stage_source(tmp_path, ckpt):
    store = extract(_config(ckpt, tmp_path / "s", embodiment_stages={"human": "progress:2"}))
    stages = store.meta.groupby(C.EMBODIMENT)[C.STAGE].unique().map(set).to_dict()
    assert stages == {"human": {"p0", "p1"}, "robot": {"reach", "grasp"}}  # the robot keeps its annotations
    assert store.provenance["embodiment_stages"] == {"human": "progress:2"}
    assert store.provenance["resume_key"]["sampling"]["embodiment_stages"] == {"human": "progress:2"}
    plain = extract(_config(ckpt, tmp_path / "plain"))
    assert "embodiment_stages" not in plain.provenance["resume_key"]["sampling"]  # as stores made before it
    assert set(plain.meta.loc[plain.meta[C.EMBODIMENT] == "human", C.STAGE]) == {"reach", "grasp"}
    with pytest.raises(ConfigError, match=r"used sampling\.embodiment_stages"):  # a resume with other stages
        extract(_config(ckpt, tmp_path / "plain", resume=True, embodiment_stages={"robot": "progress:3"}))


@pytest.mark.skipif(not GR1.exists(), reason=f"real dataset not found: {GR1} (see shared/data/README.md)")
def test_an_embodiment_no_dataset_carries_is_one_line(tmp_path, ckpt, capsys):
    out = tmp_path / "s"
    argv = ["extract", "--checkpoint", str(ckpt), "--model", "extract_models:tiny_cnn", "--data", f"robot={GR1}",
            "--layer", "head", "--out", str(out), "--stages", "robt=progress:2"]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert "--stages robt=...: no dataset is labelled 'robt' (the --data embodiments: robot)" in line, line
    assert "--stages robot=SPEC" in line and not out.exists()
