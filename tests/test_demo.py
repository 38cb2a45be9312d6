"""`probe demo` end to end on the tiny world: every stage runs and says where its outputs went."""

from __future__ import annotations

import json

import pytest

from probe.cli import main

pytest.importorskip("probe.world.build")


@pytest.mark.slow
def test_demo_runs_every_stage_and_reuses_its_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--size", "tiny", "--no-serve"]) == 0
    printed = capsys.readouterr().out
    for label in ("world", "stores", "metrics", "index", "clips", "report"):
        assert f"wrote {label}:" in printed
    records = json.loads((out / "metrics.json").read_text())
    recipes = {r["store"].split("/")[-2] for r in records}
    assert recipes == {"cotrained", "robot-only"}
    assert all("stage_transfer_acc_robot_to_human" in r["metrics"] for r in records)
    assert (out / "report" / "report.html").stat().st_size > 100_000
    assert (out / "clips" / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run reuses the world, stores, metrics and layouts
    before = {p: p.stat().st_mtime_ns for p in (out / "stores").rglob("manifest.json")}
    assert main(["demo", "--out", str(out), "--size", "tiny", "--no-serve"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "stores").rglob("manifest.json")} == before


def test_demo_refuses_a_busy_port_before_any_work(tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["demo", "--out", str(tmp_path / "demo"), "--size", "tiny", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
