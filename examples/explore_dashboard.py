"""Walkthrough 3: interactive exploration of the shared space in the browser.

    .venv/bin/python examples/explore_dashboard.py [--out probe-examples] [--size small] [--port 8050]

Prepares every co-trained checkpoint and the last robot-only one (layouts warm-started
across checkpoints, the human FAISS index, metrics, coverage: all before the server
starts) and serves the Dash app on http://127.0.0.1:PORT/. Click a robot point to see
its nearest human clips; lasso to count a region; share the URL to share the view.
"""

from __future__ import annotations

import argparse

from _world import world_stores

from dashboard.app import create_app
from dashboard.state.loading import prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="probe-examples")
    parser.add_argument("--size", default="small", choices=["tiny", "small", "default"])
    parser.add_argument("--port", type=int, default=8050)
    args = parser.parse_args()

    _, stores = world_stores(args.out, args.size)
    shown = stores["cotrained"] + stores["robot-only"][-1:]
    prepared = prepare(shown, layers="trunk.block2", cache=f"{args.out}/cache", progress=True)
    app = create_app(prepared)
    print(f"open http://127.0.0.1:{args.port}/  (Ctrl+C to stop)")
    app.run(host="127.0.0.1", port=args.port, debug=False)


if __name__ == "__main__":
    main()
