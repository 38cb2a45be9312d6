"""Output safety of single-file outputs (``--out`` / ``--csv`` of metrics, coverage, retrieve --eval and export):
an existing file is refused before any work unless ``--overwrite``, and even then only a file the toolkit wrote as
that output is replaced, never a user's file."""

from __future__ import annotations

import json
import os

import pytest

from output_safety_fixtures import hidden, one_line_error
from output_safety_fixtures import store as store  # a fixture: imported under its own name
from probe.cli import main
from probe.errors import OutputExistsError
from probe.retrieval.index import build_index
from probe.validate import FileKind, check_output_path, json_with_keys

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

FAST_METRICS = ["--families", "mixing", "--bootstrap", "0", "--nulls", "0", "--permutations", "0"]


@pytest.fixture
def index(store, tmp_path):
    return build_index(store, "latent", tmp_path / "data" / "index")


def _flags(store, index, tmp_path):
    """Each single-file output flag: (argv writing ``out``, the file it writes for ``out``, the work it does first,
    what the refusal names it)."""
    cache = str(tmp_path / "cache")
    return {
        "metrics --out": (lambda out: ["metrics", str(store.path), *FAST_METRICS, "--out", str(out)],
                          lambda out: out, "probe.measure.suite.evaluate", "metrics JSON"),
        "metrics --csv": (lambda out: ["metrics", str(store.path), *FAST_METRICS, "--csv", str(out)],
                          lambda out: out, "probe.measure.suite.evaluate", "metrics table"),
        "coverage --out": (lambda out: ["coverage", str(store.path), "--out", str(out)],
                           lambda out: out, "probe.measure.coverage.coverage", "coverage JSON"),
        "coverage --csv": (lambda out: ["coverage", str(store.path), "--out", str(out), "--csv"],
                           lambda out: out.with_name(f"{out.stem}.stages.csv"), "probe.measure.coverage.coverage",
                           "coverage stages table"),
        "retrieve --eval --out": (lambda out: ["retrieve", "--index", str(index.path), "--eval", "--out", str(out)],
                                  lambda out: out, "probe.retrieval.evaluation.retrieval_scores",
                                  "retrieval scores JSON"),
        "export --out": (lambda out: ["export", str(store.path), "--layer", "latent", "--projection", "pca",
                                      "--cache", cache, "--out", str(out.with_suffix(".parquet"))],
                         lambda out: out.with_suffix(".parquet"), "probe.projection.export.project_store",
                         "export file"),  # export writes only a .parquet name
    }


FLAGS = ["metrics --out", "metrics --csv", "coverage --out", "coverage --csv", "retrieve --eval --out", "export --out"]


def _no_work(monkeypatch, target: str) -> None:
    """Make the command's work fail loudly: a refusal must come before it."""
    def work(*args, **kwargs):
        raise AssertionError(f"{target} ran before the output path was checked")
    monkeypatch.setattr(target, work)


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("flag", FLAGS)
def test_a_users_file_is_never_replaced(flag, overwrite, tmp_path, store, index, monkeypatch, capsys):
    argv, written, work, what = _flags(store, index, tmp_path)[flag]
    out = tmp_path / "f" / "mine.json"
    target = written(out)
    target.parent.mkdir()
    precious = b"precious: my own notes\n\x00\xff"
    target.write_bytes(precious)
    _no_work(monkeypatch, work)
    assert main(argv(out) + (["--overwrite"] if overwrite else [])) == 2
    line = one_line_error(capsys)
    assert f"'{target}' exists and is not a" in line and f"{what} written by this toolkit" in line, line
    assert "choose another path" in line
    assert target.read_bytes() == precious and hidden(target.parent) == [] and hidden(tmp_path) == []


@pytest.mark.parametrize("flag", FLAGS)
def test_the_toolkits_own_file_needs_overwrite_and_is_then_replaced(flag, tmp_path, store, index, monkeypatch,
                                                                     capsys):
    argv, written, work, what = _flags(store, index, tmp_path)[flag]
    out = tmp_path / "f" / "out.json"
    target = written(out)
    assert main(argv(out)) == 0 and target.is_file()
    before, inode = target.read_bytes(), target.stat().st_ino
    capsys.readouterr()
    with monkeypatch.context() as patched:
        _no_work(patched, work)
        assert main(argv(out)) == 2  # without --overwrite: refused before any work
    line = one_line_error(capsys)
    assert f"'{out.parent}{os.sep}" in line and "already exists" in line and "--overwrite" in line, line
    assert target.read_bytes() == before and target.stat().st_ino == inode
    assert main(argv(out) + ["--overwrite"]) == 0
    assert target.stat().st_ino != inode  # a new file, renamed into place
    assert hidden(target.parent) == []


def test_an_empty_file_is_replaced_with_overwrite_only(tmp_path, store, capsys):
    out = tmp_path / "metrics.json"
    out.touch()
    assert main(["metrics", str(store.path), *FAST_METRICS, "--out", str(out)]) == 2
    assert "already exists" in one_line_error(capsys) and out.read_bytes() == b""
    assert main(["metrics", str(store.path), *FAST_METRICS, "--out", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["layer"] == "latent"


def test_another_commands_file_is_not_replaced(tmp_path, store, capsys):
    """A file the toolkit wrote as another output is no more this command's to replace than a user's."""
    cov = tmp_path / "cov.json"
    assert main(["coverage", str(store.path), "--out", str(cov)]) == 0
    before = cov.read_bytes()
    capsys.readouterr()
    assert main(["metrics", str(store.path), *FAST_METRICS, "--out", str(cov), "--overwrite"]) == 2
    assert "is not a metrics JSON written by this toolkit" in one_line_error(capsys)
    assert main(["metrics", str(store.path), *FAST_METRICS, "--csv", str(cov.with_name("cov.stages.csv"))]) == 0
    capsys.readouterr()
    assert main(["coverage", str(store.path), "--out", str(cov), "--csv", "--overwrite"]) == 2
    assert "is not a coverage stages table written by this toolkit" in one_line_error(capsys)
    assert cov.read_bytes() == before


def test_out_and_csv_of_metrics_may_not_be_one_file(tmp_path, store, capsys):
    out = tmp_path / "m.json"
    assert main(["metrics", str(store.path), "--out", str(out), "--csv", str(out)]) == 2
    assert "--out and --csv are the same file" in one_line_error(capsys) and not out.exists()


def test_file_kinds_recognise_only_their_shape(tmp_path):
    kind = FileKind("scores JSON", json_with_keys("index", "scores"))
    path = tmp_path / "s.json"
    for text in ('{"index": "i"}', "[1, 2]", "not json", '{"index": 1, "scores": {}}'):
        path.write_text(text)
        assert kind.holds(path) == (text == '{"index": 1, "scores": {}}')
    path.write_text('{"notes": 1}')
    with pytest.raises(OutputExistsError, match="is not a scores JSON written by this toolkit"):
        check_output_path(path, True, kind=kind)
    assert not kind.holds(tmp_path)  # a directory is no file of any kind

    def unreadable(p):
        raise PermissionError(f"cannot read {p}")

    assert not FileKind("scores JSON", unreadable).holds(path)  # an error while reading: not recognised


def test_retrieve_out_without_eval_is_refused(index, tmp_path, capsys):
    """``--out`` holds --eval's scores: with a query it used to be ignored without a word."""
    out = tmp_path / "scores.json"
    code = main(["retrieve", "--index", str(index.path), "--episode", "0", "--frame", "0", "--out", str(out)])
    assert code == 2
    line = one_line_error(capsys)
    assert "--out" in line and "--eval" in line
    assert not out.exists()


def test_index_needs_out_and_eval_exports_no_clips(store, index, tmp_path, capsys):
    """``probe index`` without ``--out`` used to write beside the store, where a store glob took it for a store;
    ``retrieve --eval`` exports no clips, so ``--export-clips`` with it is refused rather than ignored."""
    with pytest.raises(SystemExit) as exc:
        main(["index", str(store.path)])
    assert exc.value.code == 2 and "--out" in capsys.readouterr().err
    assert not [p.name for p in store.path.parent.iterdir() if p.name.endswith(".index")]
    clips = tmp_path / "clips"
    assert main(["retrieve", "--index", str(index.path), "--eval", "--export-clips", str(clips)]) == 2
    assert "--export-clips" in one_line_error(capsys) and not clips.exists()


def test_a_link_at_a_file_output_is_refused_even_with_overwrite(store, tmp_path, capsys):
    """Replacing the output would swap the user's symbolic link for a regular file: refused, the link kept."""
    target = tmp_path / "real.json"
    assert main(["metrics", str(store.path), *FAST_METRICS, "--out", str(target)]) == 0
    link = tmp_path / "link.json"
    link.symlink_to(target)
    capsys.readouterr()
    assert main(["metrics", str(store.path), *FAST_METRICS, "--out", str(link), "--overwrite"]) == 2
    assert "symbolic link" in one_line_error(capsys) and link.is_symlink()
