"""probe.cache.directory and `probe cache`: what the cache holds, its size, clearing parts of it."""

from __future__ import annotations

import numpy as np

from probe.cache.directory import cache_usage, clear_cache, default_cache_dir
from probe.cli import main
from probe.cache.frames import FrameCache


def _fill(root):
    FrameCache(root / "frames", tag=root).put("ab" * 32, np.zeros((4, 8, 8, 3), np.uint8))  # tags the cache root
    (root / "graphs").mkdir(parents=True)
    (root / "graphs" / "g.npz").write_bytes(b"x" * 1000)
    (root / "Documents").mkdir()  # not the toolkit's: a --cache-dir pointing at a home directory
    (root / "Documents" / "thesis.tex").write_bytes(b"y" * 10)


def test_usage_counts_files_and_bytes_per_part(tmp_path):
    _fill(tmp_path)
    usage = {u.kind: u for u in cache_usage(tmp_path)}
    assert usage["frames"].files == 1 and usage["frames"].bytes == 4 * 8 * 8 * 3 + 128
    assert usage["graphs"].bytes == 1000 and usage["projections"].files == 0
    assert "Documents" not in usage


def test_clear_one_part_keeps_the_others(tmp_path):
    _fill(tmp_path)
    assert clear_cache(["frames"], tmp_path) == 4 * 8 * 8 * 3 + 128
    assert not (tmp_path / "frames").exists() and (tmp_path / "graphs" / "g.npz").exists()
    assert clear_cache(None, tmp_path) == 1000
    assert sum(u.bytes for u in cache_usage(tmp_path)) == 0
    assert (tmp_path / "Documents" / "thesis.tex").read_bytes() == b"y" * 10  # clearing everything keeps it


def test_default_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBE_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PROBE_CACHE_DIR")
    assert default_cache_dir().name == "embodiment-probe"


def test_cli_shows_and_clears(tmp_path, capsys):
    _fill(tmp_path)
    assert main(["cache", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "frames" in out and "1.0 kB" in out and "graphs" in out
    assert main(["cache", "--cache-dir", str(tmp_path), "--clear", "graphs"]) == 0
    assert "cleared graphs" in capsys.readouterr().out and not (tmp_path / "graphs").exists()
    assert main(["cache", "--cache-dir", str(tmp_path), "--clear", "nonsense"]) == 2
    assert "unknown cache part" in capsys.readouterr().err
    assert (tmp_path / "frames").exists()  # nothing cleared on a bad request


def _entry(path, size, age):
    import os

    if path.suffix:
        path.write_bytes(b"x" * size)
    else:  # a directory entry, like a dashboard FAISS index
        path.mkdir()
        (path / "index.faiss").write_bytes(b"x" * size)
    os.utime(path, (1_000_000 + age, 1_000_000 + age))
    return path


def test_keep_within_removes_least_recently_used_entries_down_to_the_prune_fraction(tmp_path):
    from probe.cache.directory import PRUNE_TO, keep_within, touch

    part = tmp_path / "graphs"
    part.mkdir()
    a, b, c, d = (_entry(part / n, 1000, age) for n, age in (("a.npz", 1), ("b", 2), ("c.npz", 3), ("d.npz", 4)))
    assert keep_within(part, 4000) == 0 and len(list(part.iterdir())) == 4  # at the limit: nothing removed
    touch(a)  # just used: now the most recent
    assert keep_within(part, 3000, keep=b) == 2000  # down to 0.8 * 3000: two oldest go, but never `keep`
    assert sorted(p.name for p in part.iterdir()) == ["a.npz", "b"] and PRUNE_TO == 0.8
    assert not c.exists() and not d.exists()
    assert keep_within(tmp_path / "missing", 10) == 0


def test_keep_within_removes_what_a_killed_write_left_but_not_a_write_in_progress(tmp_path):
    from probe.cache.directory import STALE_S, keep_within

    part = tmp_path / "graphs"
    part.mkdir()
    killed = _entry(part / ".g.npz.tmp-1", 10, 0)  # written long ago
    running = part / ".h.npz.tmp-2"
    running.write_bytes(b"x")  # written now
    keep_within(part, 10**9)
    assert not killed.exists() and running.exists() and STALE_S >= 3600


def test_cache_limit_comes_from_the_environment_and_bounds_the_graph_cache(tmp_path, monkeypatch):
    import pytest

    from probe.cache.directory import DEFAULT_PART_MAX, part_limit
    from probe.errors import ConfigError
    from probe.cache.graphs import graph_file, shared_graph

    monkeypatch.delenv("PROBE_CACHE_MAX", raising=False)
    assert part_limit() == DEFAULT_PART_MAX
    monkeypatch.setenv("PROBE_CACHE_MAX", "auto")
    assert part_limit() == DEFAULT_PART_MAX
    monkeypatch.setenv("PROBE_CACHE_MAX", "lots")
    with pytest.raises(ConfigError, match="PROBE_CACHE_MAX"):
        part_limit()
    X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    monkeypatch.setenv("PROBE_CACHE_MAX", "50kB")  # room for two graphs of 300 x 10 neighbours (about 25 kB each)
    for layer in ("one", "two"):
        shared_graph(X, fingerprint="f", layer=layer, k=10, cache_dir=tmp_path)
    assert len(list((tmp_path / "graphs").iterdir())) == 2
    shared_graph(X, fingerprint="f", layer="three", k=10, cache_dir=tmp_path)  # past 50 kB: down to 40 kB
    files = list((tmp_path / "graphs").iterdir())
    assert files == [graph_file(tmp_path, "f", "three", "cosine", "exact")]


# -- clearing only what is the toolkit's cache ---------------------------------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_clear_refuses_a_directory_that_is_not_a_probe_cache(tmp_path, capsys):
    (tmp_path / "metrics").mkdir()  # a project folder: its 'metrics' is the user's, not the cache's
    (tmp_path / "metrics" / "results.csv").write_text("mine")
    assert main(["cache", "--cache-dir", str(tmp_path), "--clear"]) == 2
    line = _one_line_error(capsys)
    assert f"'{tmp_path}' is not a probe cache directory" in line and "'metrics/results.csv'" in line
    assert "nothing was deleted" in line and (tmp_path / "metrics" / "results.csv").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["metrics", "results.csv"]  # not even tagged


def test_an_untagged_cache_of_an_older_version_is_cleared_and_tagged(tmp_path, capsys):
    from probe.cache.directory import CACHEDIR_TAG, TAG_SIGNATURE

    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / ("ab" * 12 + ".npz")).write_bytes(b"x" * 100)
    (tmp_path / "graphs" / ".cd.npz.tmp-1").write_bytes(b"x")  # a killed write's temporary
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / ("0f" * 12 + ".json")).write_text("{}")
    (tmp_path / "frames" / "ab").mkdir(parents=True)
    (tmp_path / "frames" / "ab" / ("ab" * 32 + ".npy")).write_bytes(b"x" * 10)
    assert main(["cache", "--cache-dir", str(tmp_path), "--clear"]) == 0
    assert "113 B freed" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [CACHEDIR_TAG]
    assert (tmp_path / CACHEDIR_TAG).read_text().startswith(TAG_SIGNATURE)


def test_writing_into_the_cache_tags_its_root(tmp_path, monkeypatch):
    from probe.cache.directory import CACHEDIR_TAG, TAG_SIGNATURE
    from probe.cache.frames import default_frame_cache
    from probe.cache.graphs import shared_graph

    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    shared_graph(X, fingerprint="f", layer="l", k=5, cache_dir=tmp_path / "a")
    monkeypatch.setenv("PROBE_CACHE_DIR", str(tmp_path / "b"))
    default_frame_cache().put("ab" * 32, np.zeros((1, 2, 2, 3), np.uint8))
    for root in (tmp_path / "a", tmp_path / "b"):
        tag = (root / CACHEDIR_TAG).read_text()
        assert tag.startswith(TAG_SIGNATURE + "\n") and "embodiment-probe" in tag


def test_a_file_given_as_cache_dir_is_an_error(tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    for extra in ([], ["--clear"]):
        assert main(["cache", "--cache-dir", str(file), *extra]) == 2
        assert f"cache directory '{file}' is a file" in _one_line_error(capsys)
    assert file.read_text() == "mine"


def test_clearing_a_read_only_cache_fails_instead_of_reporting_space_freed(tmp_path, capsys):
    from fs_helpers import read_only

    _fill(tmp_path)
    with read_only(tmp_path / "graphs"):
        assert main(["cache", "--cache-dir", str(tmp_path), "--clear", "graphs"]) == 2
        captured = capsys.readouterr()
    assert "freed" not in captured.out and "Traceback" not in captured.err
    assert f"could not delete anything under '{tmp_path}'" in captured.err.strip().splitlines()[-1]
    assert (tmp_path / "graphs" / "g.npz").read_bytes() == b"x" * 1000


def test_commands_keep_numbas_compiled_code_in_the_cache_directory(tmp_path, meta, latents_matrix):
    """`probe metrics` compiles the LISI kernels (numba, ``cache=True``): their cache goes to the cache directory's
    ``numba/`` folder, never beside the sources (``metrics/__pycache__``), and `probe cache` counts it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import metrics
    from conftest import files_under
    from probe.store.writer import write_store

    store = write_store(tmp_path / "store", meta, {"latent": latents_matrix})
    sources = Path(metrics.__file__).parent / "__pycache__"
    compiled = lambda: {k: v for k, v in files_under(sources).items() if k.endswith((".nbc", ".nbi"))}  # noqa: E731
    before = compiled()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}  # as a user runs it
    env["PROBE_CACHE_DIR"] = str(tmp_path / "cache")
    subprocess.run([sys.executable, "-m", "probe", "metrics", str(store.path), "--metrics", "ilisi", "--bootstrap", "0",
                    "--nulls", "0", "--permutations", "0"], check=True, env=env, capture_output=True, timeout=300)
    assert list((tmp_path / "cache" / "numba").rglob("lisi.*.nbc"))
    assert compiled() == before
    usage = {u.kind: u for u in cache_usage(tmp_path / "cache")}
    assert usage["numba"].files > 0


def test_a_numba_cache_dir_the_user_set_is_kept(tmp_path, monkeypatch):
    import os

    from probe.cache.directory import use_numba_cache

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert use_numba_cache(tmp_path / "cache") == tmp_path / "mine"
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert use_numba_cache(tmp_path / "cache") == tmp_path / "cache" / "numba"
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "cache" / "numba")
