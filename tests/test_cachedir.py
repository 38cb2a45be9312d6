"""probe.cachedir and `probe cache`: what the cache holds, its size, clearing parts of it."""

from __future__ import annotations

import numpy as np

from probe.cachedir import cache_usage, clear_cache, default_cache_dir
from probe.cli import main
from probe.framecache import FrameCache


def _fill(root):
    FrameCache(root / "frames").put("ab" * 32, np.zeros((4, 8, 8, 3), np.uint8))
    (root / "graphs").mkdir(parents=True)
    (root / "graphs" / "g.npz").write_bytes(b"x" * 1000)
    (root / "stale-part").mkdir()
    (root / "stale-part" / "old.bin").write_bytes(b"y" * 10)


def test_usage_counts_files_and_bytes_per_part(tmp_path):
    _fill(tmp_path)
    usage = {u.kind: u for u in cache_usage(tmp_path)}
    assert usage["frames"].files == 1 and usage["frames"].bytes == 4 * 8 * 8 * 3 + 128
    assert usage["graphs"].bytes == 1000 and usage["projections"].files == 0
    assert usage["stale-part"].bytes == 10 and "not written" in usage["stale-part"].what


def test_clear_one_part_keeps_the_others(tmp_path):
    _fill(tmp_path)
    assert clear_cache(["frames"], tmp_path) == 4 * 8 * 8 * 3 + 128
    assert not (tmp_path / "frames").exists() and (tmp_path / "graphs" / "g.npz").exists()
    assert clear_cache(None, tmp_path) == 1010
    assert sum(u.bytes for u in cache_usage(tmp_path)) == 0


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
