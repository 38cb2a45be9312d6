"""The test session keeps every file it writes in its temporary directory: caches and the home directory.

``conftest.py`` moves ``$PROBE_CACHE_DIR`` and ``$HOME`` into the session's temp dir and, when the
session ends, fails the run if the toolkit's cache in the real home directory changed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import HOME_CACHE, REAL_HOME
from probe.cache.directory import default_cache_dir


def test_the_session_home_and_cache_are_in_its_temp_dir(tmp_path_factory):
    base = tmp_path_factory.getbasetemp().resolve()
    assert Path.home().resolve().is_relative_to(base) and Path.home() != REAL_HOME
    assert default_cache_dir().resolve().is_relative_to(base)
    assert not default_cache_dir().resolve().is_relative_to(HOME_CACHE)
    # processes the tests start (readers, Ray workers, Chromium, the CLI) see the same
    code = ("from pathlib import Path; from probe.cache.directory import default_cache_dir; "
            "print(Path.home()); print(default_cache_dir())")
    seen = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert [Path(p).resolve().is_relative_to(base) for p in seen] == [True, True]
