"""`probe demo` end to end on the tiny world: every stage runs and says where its outputs went."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import numpy as np
import pytest

from conftest import files_under
from probe.cli import build_parser, main
from probe.console import console

pytest.importorskip("probe.world.build")


@pytest.mark.slow
def test_demo_runs_every_stage_and_reuses_its_outputs(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    monkeypatch.setattr(console, "width", 40)  # a narrow terminal: printed commands must not wrap
    elsewhere = [Path(os.environ["PROBE_CACHE_DIR"]), Path.home()]
    before = [files_under(d) for d in elsewhere]
    assert main(["demo", "--out", str(out), "--size", "tiny", "--no-serve"]) == 0
    printed = capsys.readouterr().out
    for label in ("world", "stores", "metrics", "index", "clips", "report", "cache"):
        assert f"wrote {label}:" in printed
    # every cache stays under --out: nothing in $PROBE_CACHE_DIR or the home directory
    assert [files_under(d) for d in elsewhere] == before
    assert any((out / "cache" / "frames").rglob("*.npy"))
    # the serve command is one line that splits back into the demo's stores and cache
    serve = [line.strip() for line in printed.splitlines() if line.strip().startswith("probe serve")]
    assert len(serve) == 1
    argv = shlex.split(serve[0])
    # the dashboard opens on the demo's headline layer, the other layers in its menu
    assert argv[:6] == ["probe", "serve", "--cache", str(out / "cache"), "--start-layer", "trunk.block2"]
    assert len(argv) > 6 and all((Path(s) / "manifest.json").is_file() for s in argv[6:])
    # ... and the dashboard it opens finds everything the demo prepared: nothing is computed again
    from dashboard.state.loading import prepare

    args = build_parser().parse_args(argv[1:])
    cached = set(files_under(out / "cache"))
    prepared = prepare(args.stores, layers=args.layer, max_points=args.max_points, cache=args.cache,
                       k=args.neighbours, method=args.projection, lazy=True,
                       start=args.start_layer)  # as 'probe serve' does
    assert set(files_under(out / "cache")) == cached and len(prepared.views) == 4 * (len(argv) - 6)
    assert prepared.views.ready() == 1 and prepared.default_state().layer == "trunk.block2"
    _query_tiles_show_the_query_frames(out / "clips", sorted((out / "stores" / "cotrained").iterdir())[-1])
    records = json.loads((out / "metrics.json").read_text())
    recipes = {r["store"].split("/")[-2] for r in records}
    assert recipes == {"cotrained", "robot-only"}
    assert all("stage_transfer_acc_robot_to_human" in r["metrics"] for r in records)
    assert (out / "report" / "report.html").stat().st_size > 100_000
    # the emergence view: every (series, level) of the sweep, with its verdict and the co-trained transfer gain
    report = json.loads((out / "report" / "metrics.json").read_text())
    sweep = json.loads((out / "world" / "sweep" / "sweep.json").read_text())
    levels = [r["level"] for r in sweep["levels"]]
    rows = report["emergence"]
    assert [(r["series"], r["level"]) for r in rows] == [(s, l) for s in ("cotrained", "robot-only") for l in levels]
    assert all(r["verdict"] in ("shared", "partly shared", "separate", "mixed, stages not established") for r in rows)
    gains = {r["level"]: r["transfer_gain"]["value"] for r in rows if r["series"] == "cotrained"}
    assert gains == pytest.approx({r["level"]: r["transfer_gain"]["value"] for r in sweep["levels"]})
    assert "Emergence across pre-training diversity" in (out / "report" / "report.html").read_text()
    assert "human-only" in printed and f"stores/cotrained/level-{max(levels):03d}" in serve[0]
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


def _query_tiles_show_the_query_frames(clips: Path, store_path: Path) -> None:
    """The first cell of each contact-sheet row is the robot query's own frame, not a flat tile."""
    import cv2

    from probe.retrieval.clips import read_frame, thumbnail
    from probe.store.media import VideoPaths
    from probe.store.store import open_store

    store = open_store(store_path)  # the last co-trained checkpoint: the one the demo retrieves with
    sheet = cv2.cvtColor(cv2.imread(str(clips / "contact_sheet.png")), cv2.COLOR_BGR2RGB)
    queries = json.loads((clips / "clips.json").read_text())["queries"]
    assert len(queries) >= 2
    meta = store.meta.set_index("sample_id")
    for q in queries:
        row = meta.loc[q["clips"][0]["query_sample_id"]]
        frame = read_frame(VideoPaths(store).path(row["video"], row["dataset"]), float(row["video_timestamp"]))
        expected = thumbnail(frame)
        x, y, _, _ = q["query_box"]
        tile = sheet[y + 3 : y + 3 + expected.shape[0], x + 3 : x + 3 + expected.shape[1]].astype(int)
        assert tile.std() > 10  # an image, not a flat grey cell
        assert np.abs(tile - expected).mean() < 2
