"""End-to-end: the real dashboard server driven in headless Chromium (Playwright)."""

from __future__ import annotations

import shutil
import socket
import threading
import urllib.error
import urllib.request
from urllib.parse import urlencode
from pathlib import Path

import numpy as np
import pytest

from probe import columns as C
from test_dashboard_data import light_metrics, make_stores

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
K = 4
MAP = "#map .js-plotly-plot"
WAIT = 30000  # ms: Playwright's own default for every wait (a fixed 10 s ones timed out in a fresh-clone run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from waitress.wasyncore import close_all

    from dashboard.app import create_app, make_server
    from dashboard.state.loading import prepare

    root = tmp_path_factory.mktemp("dash-browser")
    stores = make_stores(root)
    prepared = prepare([s.path for s in stores], k=K, method="pca", metrics_config=light_metrics())
    port = _free_port()
    app = create_app(prepared, port=port)
    sockets: dict = {}
    httpd = make_server(app, "127.0.0.1", port, map=sockets)  # the production server of 'probe serve'
    thread = threading.Thread(target=httpd.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", prepared
    httpd.trigger.pull_trigger(lambda: close_all(sockets))  # stopped from its own loop
    thread.join(5)
    httpd.task_dispatcher.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium not found (install it with 'apt-get install -y chromium' or 'make browser')")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        except Exception as exc:  # a broken or sandboxed Chromium: skip, saying why
            pytest.skip(f"Chromium cannot start here: {exc}")
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 950})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.errors = errors
    yield pg
    context.close()


def _wait_map(page, n: int | None = None) -> None:
    cond = "g._fullData[0].x.length > 0" if n is None else f"g._fullData[0].x.length === {n}"
    page.wait_for_function(f"() => {{ const g = document.querySelector('{MAP}'); "
                           f"return g && g._fullData && g._fullData.length === 4 && {cond}; }}", timeout=WAIT)


def _point_xy(page, i: int) -> tuple[float, float]:
    return page.evaluate("""([sel, i]) => { const g = document.querySelector(sel); const fl = g._fullLayout;
        const r = g.getBoundingClientRect();
        return [r.left + fl._size.l + fl.xaxis.l2p(g._fullData[0].x[i]),
                r.top + fl._size.t + fl.yaxis.l2p(g._fullData[0].y[i])]; }""", [MAP, i])


def test_map_renders_every_point_and_colour_switch_patches_it(server, page):
    url, prepared = server
    _, ck = prepared.checkpoint(prepared.default_state().store)
    page.goto(url)
    _wait_map(page, len(ck.rows))
    assert page.evaluate(f"() => document.querySelector('{MAP}')._fullData[0].type") == "scattergl"
    legend = page.inner_text("#legend")
    assert "human" in legend and "robot" in legend
    x_before = page.evaluate(f"() => Array.from(document.querySelector('{MAP}')._fullData[0].x.slice(0, 5))")
    page.get_by_label("stage", exact=True).check()
    page.wait_for_function("() => document.querySelector('#legend').innerText.includes('grasp')", timeout=WAIT)
    assert "color=stage" in page.url
    n_stage = len(prepared.categories["stage"])
    assert page.evaluate(f"() => document.querySelector('{MAP}')._fullData[0].marker.cmax") == 2 * n_stage - 0.5
    # the geometry is untouched by the colour patch
    assert page.evaluate(f"() => Array.from(document.querySelector('{MAP}')._fullData[0].x.slice(0, 5))") == x_before
    assert not page.errors


def test_filter_dims_points_and_checkpoint_switch_redraws(server, page):
    url, prepared = server
    page.goto(url + "/?stage=grasp")
    _wait_map(page)
    _, ck = prepared.checkpoint(prepared.default_state().store)
    expected = int((ck.points[C.STAGE] == "grasp").sum())
    page.wait_for_function(f"() => document.querySelector('#map-info').innerText.includes('{expected} match')")
    codes = page.evaluate(f"() => Array.from(document.querySelector('{MAP}')._fullData[0].marker.color)")
    n = page.evaluate(f"() => (document.querySelector('{MAP}')._fullData[0].marker.cmax + 0.5) / 2")
    dimmed = np.asarray(codes) >= n
    assert dimmed.sum() == len(ck.rows) - expected  # dimmed, never hidden
    assert len(codes) == len(ck.rows)
    other = next(name for name in prepared.names if name != prepared.default_state().store)
    x_before = page.evaluate(f"() => document.querySelector('{MAP}')._fullData[0].x[0]")
    page.click(f"#{'ctl-store'}")
    page.get_by_role("option", name=other).click()
    page.wait_for_function(f"() => document.querySelector('#map-info').innerText.startsWith('{other}')")
    assert urlencode({"store": other}) in page.url
    assert page.evaluate(f"() => document.querySelector('{MAP}')._fullData[0].x[0]") != x_before
    assert not page.errors


def test_click_robot_point_shows_trajectory_and_playable_human_clips(server, page):
    url, prepared = server
    page.goto(url)
    _wait_map(page)
    _, ck = prepared.checkpoint(prepared.default_state().store)
    robot_points = np.flatnonzero(ck.points[C.EMBODIMENT].to_numpy() == "robot")
    p = int(robot_points[len(robot_points) // 2])
    x, y = _point_xy(page, p)
    page.mouse.move(x, y)
    page.wait_for_selector("#hover-card table")
    page.mouse.click(x, y)
    page.wait_for_selector(".clip", timeout=WAIT)
    clicked = page.inner_text("#selected-point")
    assert clicked.startswith("robot ")
    assert page.locator(".clip").count() == K
    page.wait_for_function("() => { const v = document.querySelector('video.clip-video'); "
                           "return v && v.readyState >= 1; }", timeout=WAIT)
    src = page.evaluate("() => document.querySelector('video.clip-video').getAttribute('src')")
    assert src.startswith("/media/") and "#t=" in src
    sid = clicked.split()[1]
    row = ck.row_of(sid)
    n_traj = len(ck.trajectory(row))
    page.wait_for_function(f"() => document.querySelector('{MAP}')._fullData[1].x.length === {n_traj}")
    assert "point=" in page.url
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    # highlight a human clip: its episode is drawn too. A click that lands while the clip cards are re-rendered
    # goes to a button being replaced (its n_clicks starts again at 0, read as a re-render): click again, as a
    # user would; two fresh-clone runs of the whole suite lost the first click this way (session 12).
    for _ in range(3):
        page.locator(".clip button").first.click()
        try:
            page.wait_for_function("() => window.location.search.includes('clip=')", timeout=WAIT // 3)
            break
        except PlaywrightTimeout:
            continue
    page.wait_for_function(f"() => document.querySelector('{MAP}')._fullData[2].x.length > 0", timeout=WAIT)
    assert "clip=" in page.url
    assert not page.errors


def test_lasso_selection_fills_the_table(server, page):
    url, prepared = server
    page.goto(url)
    _wait_map(page)
    _, ck = prepared.checkpoint(prepared.default_state().store)
    coords = prepared.view(ck.name, prepared.default_state().layer).coords  # the map the page opens on
    cx, cy = coords.mean(0)
    xs = [float(coords[:, 0].min()) - 1, float(cx), float(cx), float(coords[:, 0].min()) - 1]
    ys = [float(coords[:, 1].min()) - 1, float(coords[:, 1].min()) - 1, float(cy), float(cy)]
    inside = int(((coords[:, 0] < cx) & (coords[:, 1] < cy)).sum())
    assert inside > 0
    page.evaluate("""([sel, xs, ys]) => { const g = document.querySelector(sel);
        g.emit('plotly_selected', {points: [], lassoPoints: {x: xs, y: ys}}); }""", [MAP, xs, ys])
    page.wait_for_selector("#selection-counts", timeout=WAIT)
    assert page.inner_text("#selection-count").startswith(f"{inside} points")
    assert "total" in page.inner_text("#selection-counts")
    with page.expect_download() as download:
        page.click("#btn-csv")
    text = Path(download.value.path()).read_text()
    assert len(text.strip().splitlines()) == inside + 1 and text.startswith(C.SAMPLE_ID)


def test_metrics_panel_stage_click_highlights_the_stage(server, page):
    url, prepared = server
    page.goto(url)
    _wait_map(page)
    page.wait_for_selector("#metrics-headline")
    page.locator("#metrics-stages button", has_text="lift").click()
    page.wait_for_function("() => location.search.includes('stage=lift')")
    _, ck = prepared.checkpoint(prepared.default_state().store)
    n = int((ck.points[C.STAGE] == "lift").sum())
    page.wait_for_function(f"() => document.querySelector('#map-info').innerText.includes('{n} match')")


def test_shared_url_restores_the_view_and_stale_urls_give_a_notice(server, page):
    url, prepared = server
    _, ck = prepared.checkpoint(prepared.names[0])
    sid = ck.points[C.SAMPLE_ID][ck.points[C.EMBODIMENT] == "robot"].iloc[3]
    page.goto(f"{url}/?" + urlencode({"store": prepared.names[0], "color": "task", "point": sid,
                                      "compare": prepared.names[1]}))
    _wait_map(page)
    page.wait_for_selector(".clip", timeout=WAIT)
    assert sid in page.inner_text("#selected-point")
    assert page.get_by_label("task", exact=True).is_checked()
    page.wait_for_function("() => { const g = document.querySelector('#panel-0 .js-plotly-plot'); "
                           "return g && g._fullData && g._fullData[0].x.length > 0; }", timeout=WAIT)
    page.goto(f"{url}/?store=nope&point=robot/none&color=rainbow")
    _wait_map(page)
    page.wait_for_function("() => document.querySelector('#notice').innerText.includes('not available')")
    assert not page.errors


def test_media_traversal_attempts_are_404(server):
    url, prepared = server
    token = next(iter(prepared.media))
    with urllib.request.urlopen(f"{url}/media/{token}") as r:
        assert r.status == 200
    req = urllib.request.Request(f"{url}/media/{token}", headers={"Range": "bytes=0-9"})
    with urllib.request.urlopen(req) as r:
        assert r.status == 206 and len(r.read()) == 10
    for path in ("/media/..%2f..%2fetc%2fpasswd", "/media/%2e%2e%2fmanifest.json", "/media/%252e%252e%252f",
                 "/media/0123456789abcdef0123", "/etc/passwd", "/media//etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + path)
        assert err.value.code == 404, path
