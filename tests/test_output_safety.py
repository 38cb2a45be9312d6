"""Output safety (issue #16): no user file is ever replaced, no corrupt store is published as a success,
and full disks, read-only folders and wrong paths are one line with exit code 2 and nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from extract_models import ArrayDataset, InterruptingImage, tiny_cnn
from fs_helpers import fill, read_only, small_disk
from probe import columns as C
from probe.cli import main
from probe.errors import ConfigError, StoreError
from probe.extraction.run import extract, lock_path
from probe.retrieval.index import build_index
from probe.store.store import open_store
from probe.store.writer import StoreWriter, write_store
from tests.conftest import extract_config

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
FACTORY = "extract_models:tiny_cnn"


def one_line_error(capsys) -> str:
    """The command's stderr: one line, ``error: ...``, no traceback (after progress bars, if any)."""
    err = capsys.readouterr().err
    *bars, line = [line.strip() for line in err.splitlines() if line.strip()] or [""]
    assert line.startswith("error: ") and "Traceback" not in err, err
    assert all("%|" in bar or "it/s" in bar for bar in bars), err
    return line


def hidden(folder: Path) -> list[str]:
    """Temporaries, staging and lock files a command may have left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) if folder.is_dir() else []


@pytest.fixture
def store(tmp_path, meta, latents_matrix):
    return write_store(tmp_path / "data" / "store", meta, {"latent": latents_matrix})


@pytest.fixture
def index(store, tmp_path):
    return build_index(store, "latent", tmp_path / "data" / "index")


@pytest.fixture
def source(tmp_path, meta, latents_matrix):
    """An ``.npz`` for ``probe import``."""
    path = tmp_path / "data" / "latents.npz"
    path.parent.mkdir(exist_ok=True)
    np.savez(path, X=latents_matrix, embodiment=meta[C.EMBODIMENT].to_numpy(str), episode=meta[C.EPISODE].to_numpy(),
             task=meta[C.TASK].to_numpy(str), stage=meta[C.STAGE].to_numpy(str))
    return path


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "ckpts" / "enc-a.safetensors"
    path.parent.mkdir()
    save_file(tiny_cnn(seed=3).state_dict(), path)
    return path


def extract_argv(out, *checkpoints, extra=()):
    """``probe extract`` whose output checks come first: the data need not exist to test them."""
    argv = ["extract", "--data", "human=/nonexistent/hands", "--layer", "head", "--model", FACTORY, "--out", str(out)]
    for checkpoint in checkpoints:
        argv += ["--checkpoint", str(checkpoint)]
    return argv + list(extra)


def datasets(**kw):
    return (ArrayDataset("hands", "human", seed=1, **kw), ArrayDataset("arm", "robot", seed=2, **kw))


def config(ckpt, out, **kw):
    base = dict(checkpoints=(str(ckpt),), data=datasets(), layers=("stem", "head"), out=str(out), model=FACTORY,
                adapter="extract_models:InterruptingImage", adapter_kwargs={"size": None}, batch_size=4,
                device="cpu")
    return extract_config(**(base | kw))


def _commands(store, index, source, ckpt):
    """Each command with an output directory, as ``(name, argv for an --out)``."""
    return {
        "import": lambda out: ["import", str(source), "--out", str(out)],
        "extract": lambda out: extract_argv(out, ckpt),
        "index": lambda out: ["index", str(store.path), "--out", str(out)],
        "report": lambda out: ["report", str(store.path), "--out", str(out)],
        "retrieve --export-clips": lambda out: ["retrieve", "--index", str(index.path), "--sample-id",
                                                str(store.meta[C.SAMPLE_ID].iloc[0]), "--export-clips", str(out)],
    }


def _file_commands(store, index):
    """Each command with an output file."""
    return {
        "metrics --out": lambda out: ["metrics", str(store.path), "--out", str(out)],
        "metrics --csv": lambda out: ["metrics", str(store.path), "--csv", str(out)],
        "export": lambda out: ["export", str(store.path), "--layer", "latent", "--out", str(out)],
        "coverage": lambda out: ["coverage", str(store.path), "--out", str(out)],
        "retrieve --eval --out": lambda out: ["retrieve", "--index", str(index.path), "--eval", "--out", str(out)],
    }


DIR_COMMANDS = ["import", "extract", "index", "report", "retrieve --export-clips"]
FILE_COMMANDS = ["metrics --out", "metrics --csv", "export", "coverage", "retrieve --eval --out"]


# -- --overwrite replaces only the toolkit's own output of the same kind ---------------------------------------


@pytest.mark.parametrize("command", DIR_COMMANDS)
def test_overwrite_never_replaces_a_users_folder(command, tmp_path, store, index, source, ckpt, capsys):
    mine = tmp_path / "mine"
    (mine / "thesis").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    argv = _commands(store, index, source, ckpt)[command](mine) + ["--overwrite"]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert f"'{mine}' is not a" in line and "written by this toolkit" in line and "notes.txt" in line
    assert (mine / "notes.txt").read_text() == "mine" and (mine / "thesis").is_dir()
    assert hidden(tmp_path) == [] and hidden(mine) == []


def test_overwrite_replaces_the_toolkits_own_output_of_the_same_kind_only(tmp_path, store, index, source, capsys):
    out = tmp_path / "out"
    assert main(["import", str(source), "--out", str(out)]) == 0
    assert main(["import", str(source), "--out", str(out), "--overwrite"]) == 0  # a store: replaced
    (tmp_path / "empty").mkdir()
    assert main(["import", str(source), "--out", str(tmp_path / "empty"), "--overwrite"]) == 0  # nothing to lose
    assert open_store(tmp_path / "empty").n == store.n
    capsys.readouterr()
    assert main(["import", str(source), "--out", str(index.path), "--overwrite"]) == 2  # an index is no store
    assert "is not a store written by this toolkit" in one_line_error(capsys)
    assert (index.path / "index.json").is_file()
    assert main(["index", str(store.path), "--out", str(out), "--overwrite"]) == 2  # nor a store an index
    assert "is not an index directory written by" in one_line_error(capsys) and open_store(out).n == store.n
    assert hidden(tmp_path) == []


def test_out_that_is_the_working_directory_or_above_or_home_is_refused(tmp_path, source, ckpt, monkeypatch, capsys):
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    (work / "keep.txt").write_text("mine")
    monkeypatch.chdir(work)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for out in (".", "..", str(work), str(home), "/"):
        assert main(["import", str(source), "--out", out, "--overwrite"]) == 2
        line = one_line_error(capsys)
        assert ("is the home directory, one above it or the file-system root" in line if out == str(home)
                else "current directory or one above it" in line), line  # '/' is above the working directory
    assert main(extract_argv(".", ckpt, ckpt.with_name("enc-b.safetensors"), extra=["--overwrite"])) == 2
    assert "current directory" in one_line_error(capsys)
    assert (work / "keep.txt").read_text() == "mine" and sorted(os.listdir(work)) == ["keep.txt"]


def test_several_checkpoints_replace_only_their_own_stores(tmp_path, ckpt, capsys):
    out = tmp_path / "stores"
    (out / "enc-b").mkdir(parents=True)  # a user's folder named like a checkpoint
    (out / "enc-b" / "notes.txt").write_text("mine")
    (out / "README").write_text("mine")
    assert main(extract_argv(out, ckpt, ckpt.with_name("enc-b.safetensors"), extra=["--overwrite"])) == 2
    line = one_line_error(capsys)
    assert f"'{out / 'enc-b'}' is not a store written by this toolkit" in line
    assert (out / "enc-b" / "notes.txt").read_text() == "mine" and (out / "README").read_text() == "mine"
    assert sorted(os.listdir(out)) == ["README", "enc-b"]


# -- one extract at a time per store -------------------------------------------------------------------------


HOLD = ("import sys\nfrom pathlib import Path\nfrom probe.lock import exclusive\n"
        "with exclusive(Path(sys.argv[1]), what='store'):\n    print('held', flush=True)\n    sys.stdin.read()\n")


def test_a_second_extract_into_the_same_out_is_refused_naming_the_first(tmp_path, ckpt, capsys):
    out = tmp_path / "store"
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(lock_path(out))], cwd=ROOT, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert first.stdout.readline().strip() == "held"
        assert main(extract_argv(out, ckpt)) == 2
        line = one_line_error(capsys)
        assert "is being written by another run" in line and f"pid {first.pid} on " in line
        assert not out.exists() and hidden(tmp_path) == [lock_path(out).name]  # the first run's lock only
    finally:
        first.kill()  # dies holding the lock: its file stays, the lock does not
        first.wait()
    assert hidden(tmp_path) == [lock_path(out).name]
    stored = extract(config(ckpt, out))
    assert stored.n == 60 and hidden(tmp_path) == []


# -- --resume continues only the same run ----------------------------------------------------------------------


def _interrupted(ckpt, out, monkeypatch, **kw):
    monkeypatch.setattr(InterruptingImage, "after", 3)
    with pytest.raises(KeyboardInterrupt):
        extract(config(ckpt, out, **kw))
    monkeypatch.setattr(InterruptingImage, "after", None)
    (partial,) = out.parent.glob(f".*{out.name}*.partial")
    assert np.load(partial / "done.npy").sum() == 12
    return partial


def test_resume_with_another_checkpoint_is_refused_and_the_staged_rows_kept(tmp_path, ckpt, monkeypatch):
    other = ckpt.with_name("enc-b.safetensors")
    save_file(tiny_cnn(seed=9).state_dict(), other)
    out = tmp_path / "store"
    partial = _interrupted(ckpt, out, monkeypatch)
    with pytest.raises(ConfigError, match=r"cannot resume: the staged run in .* used checkpoint\.sha256 [0-9a-f]{12}, "
                                          r"this run [0-9a-f]{12}; rerun without --resume"):
        extract(config(other, out, resume=True))
    assert not out.exists() and np.load(partial / "done.npy").sum() == 12  # still resumable as it was
    resumed = extract(config(ckpt, out, resume=True))
    full = extract(config(ckpt, tmp_path / "full"))
    np.testing.assert_array_equal(resumed.matrix("head"), full.matrix("head"))
    assert hidden(tmp_path) == []


def test_resume_with_other_layers_is_refused(tmp_path, ckpt, monkeypatch):
    out = tmp_path / "store"
    _interrupted(ckpt, out, monkeypatch, layers=("stem",))
    with pytest.raises(ConfigError, match=r'used layers \["stem"\], this run \["head", "stem"\]'):
        extract(config(ckpt, out, resume=True, layers=("stem", "head")))
    with pytest.raises(ConfigError, match=r'used adapter\.kwargs\.size null, this run 8'):
        extract(config(ckpt, out, resume=True, layers=("stem",), adapter_kwargs={"size": 8}))
    assert not out.exists()


def test_resume_over_a_complete_store_made_otherwise_is_refused(tmp_path, ckpt):
    other = ckpt.with_name("enc-b.safetensors")
    save_file(tiny_cnn(seed=9).state_dict(), other)
    out = tmp_path / "store"
    made = extract(config(ckpt, out))
    with pytest.raises(ConfigError, match=r"the complete store .* used checkpoint\.sha256 .*pass --overwrite"):
        extract(config(other, out, resume=True))
    with pytest.raises(ConfigError, match=r"used sampling\.stride 1, this run 2"):
        extract(config(ckpt, out, resume=True, stride=2))
    assert open_store(out).fingerprint == made.fingerprint
    assert extract(config(ckpt, out, resume=True)).fingerprint == made.fingerprint  # the same run: kept


def test_a_layer_that_appears_after_rows_were_written_is_refused(tmp_path, meta, latents_matrix):
    writer = StoreWriter(tmp_path / "s", meta)
    writer.write(np.arange(10), {"a": latents_matrix[:10]})
    with pytest.raises(StoreError, match=r"layer 'b' first appears after 10 rows were written without it"):
        writer.write(np.arange(10, 20), {"a": latents_matrix[10:20], "b": latents_matrix[10:20]})


# -- full disks ------------------------------------------------------------------------------------------------


def _cli(argv, **kw) -> subprocess.CompletedProcess:
    """The CLI in a child process: a SIGBUS there fails the test instead of killing the session."""
    code = "import sys\nfrom probe.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *map(str, argv)], cwd=ROOT, capture_output=True, text=True, **kw)


def _big_source(tmp_path, meta) -> Path:
    path = tmp_path / "big.npz"
    X = np.random.default_rng(0).normal(size=(len(meta), 4000)).astype(np.float32)  # 5 MB
    np.savez(path, X=X, embodiment=meta[C.EMBODIMENT].to_numpy(str), episode=meta[C.EPISODE].to_numpy(),
             task=meta[C.TASK].to_numpy(str), stage=meta[C.STAGE].to_numpy(str))
    return path


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_import_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, meta):
    source = _big_source(tmp_path, meta)
    with small_disk(tmp_path / "small", "1M") as disk:
        done = _cli(["import", source, "--out", disk / "store"])
        assert done.returncode == 2, (done.returncode, done.stderr)  # was -7: killed by SIGBUS
        line = _one_line(done.stderr)
        assert f"no space left on the device of '{disk / 'store'}' (it needs 5.1 MB" in line
        assert "the store was not written" in line
        assert os.listdir(disk) == []


EXTRACT_ON = """
import sys
sys.path.insert(0, sys.argv[1])
from extract_models import ArrayDataset
from probe.errors import ProbeError
from probe.extraction.config import ExtractConfig, PassConfig
from probe.extraction.run import extract
from probe.model.config import ModelConfig

data = tuple(ArrayDataset(n, e, seed=s, n_episodes=10, length=100) for n, e, s in (("hands", "human", 1), ("arm", "robot", 2)))
model = ModelConfig(layers=("stem", "head"), model="extract_models:tiny_cnn", model_kwargs={"dim": 256},
                    adapter_kwargs={"size": None}, device="cpu")
try:
    extract(ExtractConfig(checkpoints=(sys.argv[2],), data=data, out=sys.argv[3], model=model,
                          passes=PassConfig(batch_size=64, frame_cache="off", read_workers=0)))
except ProbeError as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def test_extract_on_a_full_disk_is_an_error_not_a_sigbus(tmp_path):
    ckpt = tmp_path / "wide.safetensors"
    save_file(tiny_cnn(dim=256, seed=3).state_dict(), ckpt)
    with small_disk(tmp_path / "small", "1M") as disk:  # 2,000 rows of 'stem' (8) and 'head' (256) need 2.1 MB
        done = subprocess.run([sys.executable, "-c", EXTRACT_ON, str(TESTS), str(ckpt), str(disk / "store")],
                              cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 2, (done.returncode, done.stderr)  # was -7: killed by SIGBUS
        assert "Traceback" not in done.stderr
        *logged, line = done.stderr.strip().splitlines()  # the failed checkpoint is logged, then raised
        assert all("no space left on the device of" in lg for lg in logged)
        assert line.startswith("DiskFullError: no space left on the device of") and "it needs 2.1 MB" in line
        assert "the partial store was removed" in line
        assert os.listdir(disk) == []  # no staging directory filling the disk, no lock file


def test_a_file_size_limit_is_the_same_one_line_error(tmp_path, meta):
    """``ulimit -f`` (EFBIG) exercises the same reservation as a full disk, without root."""
    import resource

    source = _big_source(tmp_path, meta)
    out = tmp_path / "out"
    out.mkdir()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = _cli(["import", source, "--out", out / "store"], preexec_fn=limit)
    assert done.returncode == 2, (done.returncode, done.stderr)
    line = _one_line(done.stderr)
    assert f"no space left on the device of '{out / 'store'}' (it needs 5.1 MB" in line and "file-size limit" in line
    assert os.listdir(out) == []


def test_metrics_json_on_a_full_disk_is_one_line(tmp_path, store, capsys):
    with small_disk(tmp_path / "small", "64k") as disk:
        fill(disk)
        argv = ["metrics", str(store.path), "--families", "mixing", "--bootstrap", "0", "--nulls", "0",
                "--out", str(disk / "m.json")]
        assert main(argv) == 2
        line = one_line_error(capsys)
        assert f"no space left on the device of '{disk / 'm.json'}'" in line and "was not written" in line
        assert os.listdir(disk) == ["filler"]


# -- paths that cannot be written: checked before any work -------------------------------------------------------


@pytest.mark.parametrize("command", DIR_COMMANDS + FILE_COMMANDS)
def test_a_file_in_the_middle_of_the_output_path_is_one_line(command, tmp_path, store, index, source, ckpt, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("mine")
    argv = (_commands(store, index, source, ckpt) | _file_commands(store, index))[command](blocker / "sub" / "out")
    assert main(argv) == 2
    assert f"'{blocker}' is a file, so " in one_line_error(capsys)
    assert blocker.read_text() == "mine" and hidden(tmp_path) == []


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_a_directory_where_an_output_file_goes_is_one_line(command, tmp_path, store, index, capsys):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    assert main(_file_commands(store, index)[command](folder)) == 2
    assert f"'{folder}' is a directory" in one_line_error(capsys)
    assert os.listdir(folder) == ["keep.txt"]


@pytest.mark.parametrize("command", DIR_COMMANDS)
def test_a_file_where_an_output_directory_goes_is_one_line(command, tmp_path, store, index, source, ckpt, capsys):
    file = tmp_path / "afile"
    file.write_text("mine")
    assert main(_commands(store, index, source, ckpt)[command](file) + ["--overwrite"]) == 2
    assert f"'{file}' is a file, but a" in one_line_error(capsys)
    assert file.read_text() == "mine"


@pytest.mark.parametrize("command", DIR_COMMANDS + FILE_COMMANDS)
def test_a_read_only_output_directory_is_one_line(command, tmp_path, store, index, source, ckpt, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        argv = (_commands(store, index, source, ckpt) | _file_commands(store, index))[command](ro / "out")
        assert main(argv) == 2
        line = one_line_error(capsys)
    assert f"directory '{ro}' is not writable" in line and "check the path and permissions" in line
    assert os.listdir(ro) == []


def test_an_os_error_no_check_foresaw_is_one_line_and_debug_shows_it(tmp_path, store, capsys):
    out = tmp_path / ("x" * 300 + ".json")  # a name longer than the file system allows
    argv = ["metrics", str(store.path), "--families", "mixing", "--bootstrap", "0", "--nulls", "0", "--out", str(out)]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert line.startswith("error: File name too long: '") and line.endswith("; check the path and permissions")
    with pytest.raises(OSError):
        main(["--debug"] + argv)
    assert hidden(tmp_path) == []


# -- permissions follow the umask ------------------------------------------------------------------------------


def _modes(root: Path) -> dict[str, int]:
    out = {".": root.stat().st_mode & 0o777}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = path.stat().st_mode & 0o777
    return out


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_follow_the_umask(umask, tmp_path, store, source, capsys):
    before = os.umask(umask)
    try:
        assert main(["import", str(source), "--out", str(tmp_path / "store")]) == 0
        assert main(["index", str(store.path), "--out", str(tmp_path / "index")]) == 0
        assert main(["coverage", str(store.path), "--out", str(tmp_path / "coverage.json")]) == 0
    finally:
        os.umask(before)
    folder, file = 0o777 & ~umask, 0o666 & ~umask
    for root in (tmp_path / "store", tmp_path / "index"):
        modes = _modes(root)
        assert {name: mode for name, mode in modes.items() if mode != ((root / name).is_dir() and folder or file)} == {}
    assert (tmp_path / "coverage.json").stat().st_mode & 0o777 == file
