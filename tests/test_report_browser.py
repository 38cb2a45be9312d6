"""The report in headless Chromium: no console errors, no network requests, the expected traces."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from probe.projection.layout import ProjectionConfig
from probe.report.config import ReportConfig
from probe.report.build import build_report
from test_report import eval_config, make_stores

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                       reason="system Chromium not found at /usr/bin/chromium (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    stores = make_stores(root / "stores")
    config = ReportConfig(projection=ProjectionConfig(n_epochs=40, n_neighbors=10, max_points=80),
                          cache_dir=root / "cache", eval_config=eval_config())
    return build_report(stores, root / "report", config).out / "report.html"


def test_report_loads_offline_with_expected_traces(report_html):
    sync_api = pytest.importorskip("playwright.sync_api")
    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            url = report_html.resolve().as_uri()
            page.goto(url, wait_until="load")
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=30000)
            plots = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => ({
                id: d.id,
                traces: d.data.map(t => ({name: t.name, type: t.type, n: (t.x || []).length,
                                          custom: Array.isArray(t.customdata) ? t.customdata.slice(0, 3) : null}))
            }))""")
        finally:
            browser.close()
    assert errors == []
    assert requests == [url], f"unexpected requests: {[r for r in requests if r != url]}"
    by_id = {p["id"]: p["traces"] for p in plots}
    emb = next(t for i, t in by_id.items() if "umap-embodiment" in i)
    # one panel per checkpoint (3), a trace per embodiment in each
    assert sorted({t["name"] for t in emb}) == ["human", "robot"]
    assert len(emb) == 6 and all(t["type"] == "scattergl" and t["n"] > 0 for t in emb)
    assert all(isinstance(v, int) for t in emb for v in t["custom"])  # clicks map to store rows
    stage = next(t for i, t in by_id.items() if "umap-stage" in i)
    assert {t["name"] for t in stage} == {"reach", "grasp", "lift"}
    assert any("umap-layers" in i for i in by_id)
    assert not any("retrieval" in i for i in by_id)  # the examples are an HTML grid (captions that wrap)


# every caption of the retrieval grid at a page width: its box, the widths of its content and of its box,
# the page's width, and the cells' boxes
_GRID = """() => {
    const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    const caps = Array.from(document.querySelectorAll('#retrieval-examples figcaption'));
    return {page: document.documentElement.clientWidth,
            captions: caps.map(c => ({box: box(c), scroll: c.scrollWidth, client: c.clientWidth,
                                      text: c.innerText})),
            cells: Array.from(document.querySelectorAll('#retrieval-examples figure')).map(box),
            heading: (document.querySelector('h2#retrieval') || {}).innerText || ''};
}"""


def _overlap(a, b) -> bool:
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


def _check_grid(grid: dict, n: int) -> None:
    caps = grid["captions"]
    assert len(caps) == len(grid["cells"]) == n
    for c in caps:
        left, top, right, bottom = c["box"]
        assert left >= 0 and right <= grid["page"] + 0.5, c  # inside the page: nothing cut at either side
        assert c["scroll"] <= c["client"] + 1, c  # the text wraps inside its box rather than running out of it
        assert bottom > top
    for i, a in enumerate(caps):
        for b in caps[i + 1:]:
            assert not _overlap(a["box"], b["box"]), (a["text"], b["text"])
    for i, a in enumerate(grid["cells"]):
        assert not any(_overlap(a, b) for b in grid["cells"][i + 1:])


def _long_examples():
    import numpy as np

    from probe import figures as F
    from probe.images import data_uri

    png = data_uri(np.full((120, 160, 3), 200, np.uint8))  # a frame as the report embeds it
    task = "pick the cup and place it on the plate (dataset task pick_cup_and_place_it_on_the_plate_v2)"
    return [F.RetrievalExample(F.Thumb(f"robot | {task} | reach | ep {q} f 6", png if q else None, q),
                               [F.Thumb(f"human | {task} | retreat | ep {17 + j} f 212 | sim 0.85", png, 100 + j)
                                for j in range(4)]) for q in range(3)]


def test_retrieval_captions_never_overlap_or_clip(report_html):
    """At common widths every caption of the retrieval grid stays inside the page and its own cell, clear of
    the others: in the report (label cells) and in a grid of frames with long task names; the section's
    heading names the checkpoint it shows."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from probe.report.examples import examples_html

    stress = ("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body style='margin:0 auto;max-width:1400px;"
              f"padding:16px 24px;font-family:sans-serif'>{examples_html(_long_examples())}</body></html>")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(report_html.resolve().as_uri(), wait_until="load")
            reports, stressed = {}, {}
            for width in (1000, 1280, 1400, 1600):
                page.set_viewport_size({"width": width, "height": 900})
                reports[width] = page.evaluate(_GRID)
            stores = page.evaluate("() => Array.from(Array.from(document.querySelectorAll('table')).pop()"
                                   ".querySelectorAll('tbody tr td:first-child')).map(td => td.innerText)")
            for width in (1000, 1280, 1400, 1600):
                page.set_viewport_size({"width": width, "height": 900})
                page.set_content(stress)
                stressed[width] = page.evaluate(_GRID)
        finally:
            browser.close()
    assert len(stores) == 3  # the checkpoints of the Stores table
    for width, grid in reports.items():
        _check_grid(grid, 3 * (1 + 4))  # three robot queries, four human matches each
        assert grid["captions"][0]["text"].startswith("query: robot"), grid["captions"][0]
        assert grid["captions"][1]["text"].startswith("#1: human"), grid["captions"][1]
    shown = re.match(r"Retrieval examples \((.+?), layer ", reports[1400]["heading"])
    assert shown and shown.group(1) in stores, reports[1400]["heading"]
    for width, grid in stressed.items():
        _check_grid(grid, 3 * (1 + 4))
        assert all(len(c["text"].splitlines()) >= 4 for c in grid["captions"]), width  # wrapped, not cut
