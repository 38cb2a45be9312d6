"""`probe demo` end to end on the tiny world: every stage runs and says where its outputs went."""

from __future__ import annotations

import contextlib
import html
import io
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import files_under
from probe.cli import build_parser, main
from probe.console import console

pytest.importorskip("probe.world.build")


@dataclass(frozen=True)
class DemoRun:
    out: Path
    printed: str  # what the first run printed, in a 40-column terminal
    report: dict  # the report's metrics.json right after the first run
    untouched: bool  # nothing was written to $PROBE_CACHE_DIR or the home directory


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> DemoRun:
    """One run of ``probe demo --size tiny`` that the tests of this module read (a run takes about 30 s)."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    elsewhere = [Path(os.environ["PROBE_CACHE_DIR"]), Path.home()]
    before = [files_under(d) for d in elsewhere]
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buffer):
        mp.setattr(console, "width", 40)  # a narrow terminal: printed commands must not wrap
        assert main(["demo", "--out", str(out), "--size", "tiny", "--no-serve"]) == 0
    report = json.loads((out / "report" / "metrics.json").read_text())
    return DemoRun(out, buffer.getvalue(), report, [files_under(d) for d in elsewhere] == before)


@pytest.mark.slow
def test_demo_runs_every_stage_and_reuses_its_outputs(demo_run, capsys):
    out, printed = demo_run.out, demo_run.printed
    for label in ("world", "stores", "metrics", "index", "clips", "report", "cache"):
        assert f"wrote {label}:" in printed
    # every cache stays under --out: nothing in $PROBE_CACHE_DIR or the home directory
    assert demo_run.untouched
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
    # a second run reuses the world, stores, metrics and layouts, and says so
    before = {p: p.stat().st_mtime_ns for p in (out / "stores").rglob("manifest.json")}
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--size", "tiny", "--no-serve"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "stores").rglob("manifest.json")} == before
    again = capsys.readouterr().out
    for label in ("world", "sweep", "stores", "index", "cache"):
        assert f"reused {label}: " in again and f"wrote {label}: " not in again
    for label in ("metrics", "clips", "report"):  # rewritten from cached results
        assert f"wrote {label}: " in again


@pytest.mark.slow
def test_demo_ends_with_the_verdict_of_its_report(demo_run):
    """The closing block restates the report's metrics.json: per level the verdict and mixing ratio of both series
    and the co-trained transfer gain with its interval, a conclusion that follows from those values, and how the
    intervals were made."""
    from probe.measure.suite import interactive_config

    lines = demo_run.printed.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("verdict at trunk.block2"))
    block = [line.strip() for line in lines[start:start + 20]]
    rows = {(r["series"], r["level"]): r for r in demo_run.report["emergence"]}
    levels = sorted({level for _, level in rows})
    assert len(levels) >= 2
    for level in levels:
        (line,) = [b for b in block if b.startswith(f"diversity {level:g}%:")]
        for series in ("cotrained", "robot-only"):
            mixing = rows[(series, level)]["mixing"]
            assert (f"{series} {rows[(series, level)]['verdict']} ({mixing['metric']} {mixing['value']:.0%} of null)"
                    in line)
        gain = rows[("cotrained", level)]["transfer_gain"]
        lo, hi = gain["ci"] or (None, None)
        assert line.endswith(f"transfer gain {gain['value']:+.2f}" + (f" [{lo:+.2f}, {hi:+.2f}]" if lo is not None
                                                                        else ""))
    # the conclusion follows the rule: 'partly shared' reached at some level, mixing rising at every level
    (conclusion,) = [b for b in block if b.startswith("conclusion: ")]
    ratios = [rows[("cotrained", level)]["mixing"]["value"] for level in levels]
    reached = [level for level, r in zip(levels, ratios) if r >= 0.5]
    rising = all(b > a for a, b in zip(ratios, ratios[1:]))
    expected = {(True, True): "a shared space emerges with diversity", (True, False): "no clear emergence",
                (False, True): "no shared space yet", (False, False): "the effect does not emerge on this world"}
    assert conclusion.startswith(f"conclusion: {expected[(bool(reached), rising)]}:")
    assert ", ".join(f"{r:.0%} at {level:g}%" for level, r in zip(levels, ratios)) in conclusion
    above = [level for level in levels if (rows[("cotrained", level)]["transfer_gain"]["ci"] or [-1])[0] > 0]
    assert f"above 0 beyond noise at {', '.join(f'{x:g}%' for x in above) or 'no level'};" in conclusion
    assert conclusion.endswith("see docs/world-diversity.md")
    # how the intervals were made: the demo's configuration, as the report records it
    config = interactive_config()
    assert demo_run.report["intervals"] == {"replicates": config.bootstrap, "mode": config.intervals, "level": 0.95}
    assert any(b.startswith(f"note: Intervals (95%) and p-values of changes: {config.bootstrap} "
                            f"'{config.intervals}' replicates") for b in block)


@pytest.mark.slow
def test_demo_details_the_checkpoint_it_retrieves_with(demo_run):
    """The report's per-layer sections, retrieval examples and coverage describe the co-trained checkpoint at the
    highest diversity, the one the demo's retrieval step uses; comparisons pair checkpoints of one series."""
    report = demo_run.report
    cotrained = [c for c in report["checkpoints"] if c["series"] == "cotrained"]
    top = max(cotrained, key=lambda c: c["diversity"])
    assert report["detail"] == top["label"]
    words = " ".join(demo_run.printed.split())  # as printed, wrapped in a 40-column terminal
    assert f"retrieval: nearest human clips for robot moments (cotrained {Path(top['store']).name})" in words
    assert f"report over all checkpoints, every layer of cotrained {Path(top['store']).name}" in words
    layers = {r["layer"] for r in report["records"] if r["checkpoint"] == top["label"]}
    assert layers == set(report["layers"]) and len(layers) == 4
    assert {r["checkpoint"] for r in report["records"] if r["layer"] != report["headline_layer"]} == {top["label"]}
    page = html.unescape((demo_run.out / "report" / "report.html").read_text())
    for heading in (f"Layers of {top['label']}", f"Metrics across layers ({top['label']})",
                    f"Coverage gaps ({top['label']}", f"Retrieval examples ({top['label']}"):
        assert heading in page
    series = {c["label"]: c["series"] for c in report["checkpoints"]}
    assert report["comparisons"] and all(series[c["from"]] == series[c["to"]] for c in report["comparisons"])


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
