"""probe serve: the interactive dashboard over one or more stores (one per checkpoint)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

NAME = "serve"
HELP = "interactive dashboard: the joint human/robot map, nearest human clips, selections, metrics"
EXAMPLE = "probe serve probe-demo/stores/cotrained/level-000 probe-demo/stores/cotrained/level-100"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", metavar="STORE", help="latent store directories, one per checkpoint, in any "
                   "order: the checkpoint menu lists them in training order (series, then step or diversity, from "
                   "each store's provenance, as in the report)")
    p.add_argument("--layer", action="append", default=None,
                   help="layer to prepare (repeat for several; default: every layer the stores share)")
    p.add_argument("--start-layer", default=None, metavar="LAYER",
                   help="layer the page opens on; the others stay in its layer menu (default: the last of the "
                        "layers shown, said in one line)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1: this machine only). Requests must name this machine "
                        "in their Host header: localhost, 127.0.0.1, ::1 or the bound address; with 0.0.0.0 also "
                        "this machine's host name and any IP address. Other names are refused (400), so a web page "
                        "cannot reach the dashboard by DNS rebinding")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also accept requests naming NAME in their Host header, on any port (e.g. the name a "
                        "reverse proxy or your LAN uses for this machine; repeatable)")
    p.add_argument("--data-root", action="append", default=[], metavar="NAME=PATH",
                   help="dataset NAME (a value of the store's 'dataset' column) now lives in PATH: its videos are read "
                        "from there (repeatable). Videos are served only from inside the datasets' roots")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument("--max-points", type=int, default=200_000,
                   help="at most this many points per map (a fixed subsample by sample id; default 200000)")
    p.add_argument("--cache", default=None, help="projection cache directory (default: the toolkit's cache)")
    p.add_argument("--projection", choices=("umap", "pca"), default="umap",
                   help="map layout: umap (default; warm-started across checkpoints, cached) or pca (fast)")
    p.add_argument("-k", "--neighbours", type=int, default=8,
                   help="nearest human clips listed per click (default 8)")
    # --debug (shared with every command) shows tracebacks in this terminal only: it never turns on Dash's
    # debug mode or Werkzeug's debugger (an interactive code console) on the server


def check_port(host: str, port: int) -> None:
    """Fail early, before any heavy work, when the port cannot be bound."""
    from probe.errors import ConfigError

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port "
                              "or stop the program using it") from exc


def launch(stores: list[str], **options: Any) -> None:
    """Start the dashboard on ``stores`` (blocks). The CLI is the one place that loads ``dashboard``."""
    from dashboard.app import serve

    serve(stores, **options)


def warm(stores: list[str], **options: Any) -> None:
    """Compute what the dashboard shows for ``stores`` into its cache (``cache=``), without serving: a later
    ``probe serve`` with the same stores and options reads it back (``probe demo`` does this). With
    ``lazy=True`` only what the dashboard needs before it answers (the first store's map of the start layer)."""
    from dashboard.state.loading import prepare

    prepare(stores, **options)


def run(args: argparse.Namespace) -> int:
    check_port(args.host, args.port)
    from probe.cache.directory import default_cache_dir
    from probe.store.media import parse_data_roots

    launch(args.stores, host=args.host, port=args.port, layers=args.layer,
           data_roots=parse_data_roots(args.data_root), allow_hosts=tuple(args.allow_host),
           max_points=args.max_points,
           cache=Path(args.cache) if args.cache else default_cache_dir(), k=args.neighbours,
           method=args.projection, progress=True, start=args.start_layer)
    return 0
