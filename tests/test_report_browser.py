"""The report in headless Chromium: no console errors, no network requests, the expected traces."""

from __future__ import annotations

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
    retrieval = next(t for i, t in by_id.items() if "retrieval" in i)
    assert len(retrieval) == 3 * (1 + 4)  # three robot queries, four human matches each
