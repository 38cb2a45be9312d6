"""Shared fixtures: small synthetic stores built from labelled clusters."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probe import columns as C

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The user's home and the toolkit's cache in it, as they were when the session started: the
# session works in a temporary home (below) and must leave this cache as it found it.
REAL_HOME = Path.home()
HOME_CACHE = REAL_HOME / ".cache" / "embodiment-probe"
# variables that say where programs write under the home directory: moved for the session
HOME_VARIABLES = {"HOME": "", "XDG_CACHE_HOME": ".cache", "XDG_CONFIG_HOME": ".config", "XDG_DATA_HOME": ".local/share"}


def assert_refused(capsys, argv: list[str], *needles: str) -> str:
    """Run the CLI on ``argv`` and check it refused in one readable line (exit 2, no traceback) naming
    every needle; returns that line."""
    from probe.cli import main

    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def assert_argument_error(capsys, argv: list[str]) -> str:
    """Run the CLI on ``argv`` whose arguments argparse refuses: exit 2 and one line, no usage block; returns it."""
    import pytest

    from probe.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1 and "usage:" not in err, err
    return err


def files_under(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (relative path -> (size, mtime in ns)); empty when ``root`` does not exist."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except OSError:  # removed meanwhile
                continue
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_HOME_CACHE_BEFORE] = files_under(HOME_CACHE)
    # numba's compiled code (metrics/lisi.py, UMAP) in a temporary folder, not beside the sources or in the
    # venv: set before collection imports metrics (numba reads it when a cached function is defined)
    if not os.environ.get("NUMBA_CACHE_DIR"):
        import tempfile

        config.stash[_NUMBA_CACHE] = os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="probe-tests-numba-")


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_NUMBA_CACHE, None)
    if folder is not None:
        import shutil

        os.environ.pop("NUMBA_CACHE_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if it wrote to the toolkit's cache in the real home directory (all of a test session's
    caches belong in its temporary directory: see ``_private_home_and_cache``)."""
    before = session.config.stash.get(_HOME_CACHE_BEFORE, None)
    if before is None:
        return
    after = files_under(HOME_CACHE)
    changed = sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (f"the test session wrote to {HOME_CACHE} ({len(changed)} files added, changed or removed, e.g. "
                   f"{', '.join(changed[:3])}): a test or a process it started escaped the session's cache directory")
        if reporter is not None:
            reporter.write_line(f"ERROR: {message}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_HOME_CACHE_BEFORE = pytest.StashKey[dict]()
_NUMBA_CACHE = pytest.StashKey[str]()


@pytest.fixture(autouse=True, scope="session")
def _private_home_and_cache(tmp_path_factory: pytest.TempPathFactory):
    """Caches (frames, graphs, layouts) of this test session live in its temp dir, and so does its home
    directory: what anything writes under ``~`` (Ray's ``~/.ray``, Chromium's ``~/.config``, a cache
    that ignores ``$PROBE_CACHE_DIR``) lands there, in this process and in every process it starts."""
    before = {name: os.environ.get(name) for name in ("PROBE_CACHE_DIR", *HOME_VARIABLES)}
    home = tmp_path_factory.mktemp("home")
    os.environ["PROBE_CACHE_DIR"] = str(tmp_path_factory.mktemp("probe-cache"))
    for name, sub in HOME_VARIABLES.items():
        os.environ[name] = str(home / sub) if sub else str(home)
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def synthetic_meta(n_episodes: int = 4, frames: int = 20, tasks=("pick", "push"),
                   stages=("reach", "grasp", "lift"), embodiments=("human", "robot")) -> pd.DataFrame:
    """Episodes of every task for every embodiment, stages in equal consecutive runs."""
    rows = []
    for emb in embodiments:
        for task in tasks:
            for ep in range(n_episodes):
                episode_id = len(rows) // frames  # unique per (embodiment, task, episode)
                for f in range(frames):
                    s = min(f * len(stages) // frames, len(stages) - 1)
                    s_start = s * frames / len(stages)
                    s_len = frames / len(stages)
                    rows.append({
                        C.SAMPLE_ID: f"{emb}/{task}/{ep}/{f}",
                        C.EMBODIMENT: emb,
                        C.DATASET: f"{emb}-data",
                        C.EPISODE: episode_id,
                        C.FRAME: f,
                        C.TIMESTAMP: f / 10.0,
                        C.TASK: task,
                        C.STAGE: stages[s],
                        C.PROGRESS: f / (frames - 1),
                        C.STAGE_PROGRESS: min(max((f - s_start) / max(s_len - 1, 1), 0.0), 1.0),
                    })
    meta = pd.DataFrame(rows)
    meta[C.EPISODE] = meta[C.EPISODE].astype(np.int64)
    return meta


def clustered_latents(meta: pd.DataFrame, dim: int = 16, shift: float = 0.0, noise: float = 0.3,
                      seed: int = 0) -> np.ndarray:
    """Latents clustered by (task, stage); ``shift`` moves the second embodiment away."""
    rng = np.random.default_rng(seed)
    keys = sorted(set(zip(meta[C.TASK], meta[C.STAGE])))
    centers = {k: rng.normal(size=dim) * 3 for k in keys}
    X = np.stack([centers[(t, s)] for t, s in zip(meta[C.TASK], meta[C.STAGE])])
    X = X + noise * rng.normal(size=X.shape)
    second = (meta[C.EMBODIMENT] != meta[C.EMBODIMENT].iloc[0]).to_numpy()
    X[second, 0] += shift
    return X.astype(np.float32)


@pytest.fixture
def meta() -> pd.DataFrame:
    return synthetic_meta()


@pytest.fixture
def latents_matrix(meta: pd.DataFrame) -> np.ndarray:
    return clustered_latents(meta)


def extract_config(**options):
    """An :class:`ExtractConfig` from the flat option names of ``probe extract`` (``layers=``, ``stride=``,
    ``batch_size=`` ...), each given to the part that owns it."""
    import dataclasses

    from probe.extraction.config import ExtractConfig, PassConfig
    from probe.extraction.sampling import SamplingConfig
    from probe.model.config import ModelConfig

    parts = {}
    for name, kind in (("model", ModelConfig), ("sampling", SamplingConfig), ("passes", PassConfig)):
        own = {f.name for f in dataclasses.fields(kind)}
        parts[name] = kind(**{k: options.pop(k) for k in list(options) if k in own})
    return ExtractConfig(**options, **parts)
