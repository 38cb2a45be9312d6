"""Dashboard at scale: time to a rendered map, server time of a click, bytes per interaction.

    .venv/bin/python benchmarks/bench_dashboard.py --n 100000            # PCA layout (fast prepare)
    .venv/bin/python benchmarks/bench_dashboard.py --n 100000 --method umap --cache /tmp/probe-cache

Builds a synthetic store of ``n`` samples (half human, half robot), prepares it,
starts the real server on 127.0.0.1 and drives headless Chromium. Reports:

* ``map_render_s``: from the page request to the WebGL map holding every point
  (goal < 3 s);
* ``click_server_ms``: server time of the callbacks a click triggers (state update,
  map patch with the trajectory, nearest human clips) (goal < 100 ms);
* bytes sent (response bodies) and received (request bodies) per interaction: the
  first load, a colour switch, a filter, a click, a lasso selection (no interaction
  after the first load may send the point set again).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probe import columns as C  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def synthetic_store(path: Path, n: int, dim: int, seed: int = 0):
    """A store of ``n`` samples: episodes of 50 frames, 2 tasks, 4 stages, latents clustered by stage."""
    from probe.store.writer import write_store

    rng = np.random.default_rng(seed)
    frames = 50
    n_eps = max(2, n // frames)
    ep = np.repeat(np.arange(n_eps), frames)[:n]
    f = np.tile(np.arange(frames), n_eps)[:n]
    emb = np.where(ep % 2 == 0, "human", "robot")
    task = np.where((ep // 2) % 2 == 0, "pick", "push")
    stages = np.array(["reach", "grasp", "lift", "place"])
    st = stages[np.minimum(f * 4 // frames, 3)]
    meta = pd.DataFrame({
        C.SAMPLE_ID: [f"s{i}" for i in range(n)], C.EMBODIMENT: emb, C.DATASET: np.char.add(emb, "-data"),
        C.EPISODE: ep.astype(np.int64), C.FRAME: f.astype(np.int64), C.TIMESTAMP: f / 10.0, C.TASK: task,
        C.STAGE: st, C.PROGRESS: f / (frames - 1), C.STAGE_PROGRESS: (f % (frames // 4)) / (frames // 4),
    })
    centers = rng.normal(size=(8, dim)).astype(np.float32) * 3
    key = (task == "push") * 4 + np.searchsorted(["grasp", "lift", "place", "reach"], st)
    X = centers[key] + rng.normal(size=(n, dim)).astype(np.float32)
    X[emb == "robot", 0] += 1.5
    return write_store(path, meta, {"trunk": X.astype(np.float32)}, overwrite=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--method", choices=("pca", "umap"), default="pca")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright
    from dashboard.app import create_app, make_server
    from dashboard.state.loading import prepare
    from metrics.spec import MetricsConfig

    work = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    try:
        t0 = time.perf_counter()
        store = synthetic_store(work / "store", args.n, args.dim)
        t_store = time.perf_counter() - t0
        t0 = time.perf_counter()
        # the metrics panel's cost belongs to the metrics benchmark: keep it small here
        config = MetricsConfig(by="stage", bootstrap=0, null_repeats=0, max_samples=5000,
                               metrics=("knn_embodiment_mixing", "retrieval_precision_at_1_robot_to_human"))
        prepared = prepare([store.path], max_points=args.n, cache=args.cache, method=args.method,
                           metrics_config=config, progress=True)
        t_prepare = time.perf_counter() - t0
        port = free_port()
        app = create_app(prepared, host="127.0.0.1", port=port)
        from metrics.knn import set_threads

        set_threads(1)  # as dashboard.app.serve does
        timings: dict[str, list[float]] = defaultdict(list)

        @app.server.before_request
        def _start():  # noqa: ANN202
            from flask import g
            g.t0 = time.perf_counter()

        @app.server.after_request
        def _stop(response):  # noqa: ANN202
            from flask import g, request
            if request.path == "/_dash-update-component":
                body = request.get_json(silent=True) or {}
                timings[str(body.get("output", "?"))[:60]].append(time.perf_counter() - g.t0)
            return response

        server = make_server(app, "127.0.0.1", port)  # waitress, as 'probe serve' runs it
        threading.Thread(target=server.run, daemon=True).start()
        url = f"http://127.0.0.1:{port}/"
        traffic: list[tuple[str, int, int]] = []  # (path, request bytes, response bytes)
        results: dict[str, object] = {"n": args.n, "dim": args.dim, "method": args.method,
                                      "store_s": round(t_store, 2), "prepare_s": round(t_prepare, 2)}
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 950})

            def on_response(response):
                try:
                    body = response.body()
                except Exception:
                    body = b""
                req = response.request.post_data_buffer or b""
                traffic.append((response.url.replace(url, "/"), len(req), len(body)))

            page.on("response", on_response)

            def measure(label: str, action) -> None:
                start = len(traffic)
                for v in timings.values():
                    v.clear()
                action()
                page.wait_for_timeout(800)
                chunk = traffic[start:]
                results[f"{label}_bytes_down"] = sum(r for _, _, r in chunk)
                results[f"{label}_bytes_up"] = sum(q for _, q, _ in chunk)
                results[f"{label}_server_ms"] = {k: round(1000 * max(v), 1) for k, v in timings.items() if v}

            sel = "#map .js-plotly-plot"

            def load():
                t = time.perf_counter()
                page.goto(url)
                page.wait_for_function(f"() => {{ const g = document.querySelector('{sel}'); return g && "
                                       f"g._fullData && g._fullData[0] && g._fullData[0].x.length === {args.n}; }}",
                                       timeout=120_000)
                results["map_render_s"] = round(time.perf_counter() - t, 3)

            measure("load", load)
            measure("colour", lambda: (page.get_by_label("stage", exact=True).check(),
                                       page.wait_for_function("() => document.querySelector('#legend')"
                                                              ".innerText.includes('grasp')")))
            measure("filter", lambda: (page.click("#flt-embodiment"),
                                       page.get_by_role("option", name="robot").click(),
                                       page.wait_for_function("() => location.search.includes('embodiment=robot')")))
            ck = prepared.checkpoints[0]
            robots = np.flatnonzero(ck.points[C.EMBODIMENT].to_numpy() == "robot")
            click_ms = []
            for i in range(args.clicks):
                p_idx = int(robots[(i * 7919) % len(robots)])

                def click(p_idx=p_idx):
                    page.evaluate("([s, i]) => document.querySelector(s).emit('plotly_click', "
                                  "{points: [{curveNumber: 0, pointNumber: i, pointIndex: i}]})", [sel, p_idx])
                    page.wait_for_function(f"() => location.search.includes('point=s{ck.rows[p_idx]}')",
                                           timeout=20_000)
                    page.wait_for_selector(".clip")

                measure(f"click{i}", click)
                click_ms.append(sum(results[f"click{i}_server_ms"].values()))
            results["click_server_ms_total_median"] = round(float(np.median(click_ms)), 1)
            coords = prepared.views[(0, "trunk")].coords
            cx, cy = (float(v) for v in coords.mean(0))
            lo = coords.min(0) - 1
            measure("lasso", lambda: (page.evaluate(
                "([s, xs, ys]) => document.querySelector(s).emit('plotly_selected', "
                "{points: [], lassoPoints: {x: xs, y: ys}})",
                [sel, [float(lo[0]), cx, cx, float(lo[0])], [float(lo[1]), float(lo[1]), cy, cy]]),
                page.wait_for_selector("#selection-counts")))
            browser.close()
        server.close()
        geometry = args.n * 2 * 4 * 4 / 3  # x and y float32 as base64
        results["geometry_bytes"] = int(geometry)
        print(json.dumps(results, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
