"""probe serve: the interactive dashboard over one or more stores (one per checkpoint)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import Any

NAME = "serve"
HELP = "interactive dashboard: the joint human/robot map, nearest human clips, selections, metrics"
EXAMPLE = "probe serve probe-demo/stores/cotrained/step-000200 probe-demo/stores/cotrained/step-000400"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stores", nargs="+", metavar="STORE", help="latent store directories, one per checkpoint, "
                   "in training order")
    p.add_argument("--layer", action="append", default=None,
                   help="layer to prepare (repeat for several; default: every layer the stores share)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument("--max-points", type=int, default=200_000,
                   help="at most this many points per map (a fixed subsample by sample id; default 200000)")
    p.add_argument("--cache", default=None, help="projection cache directory (default: the toolkit's cache)")
    p.add_argument("--projection", choices=("umap", "pca"), default="umap",
                   help="map layout: umap (warm-started across checkpoints, cached) or pca (fast)")
    p.add_argument("-k", "--neighbours", type=int, default=8, help="nearest human clips listed per click")
    # --debug (shared with every command) also runs Dash in debug mode here


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


def run(args: argparse.Namespace) -> int:
    check_port(args.host, args.port)
    from probe.cache.directory import default_cache_dir

    launch(args.stores, host=args.host, port=args.port, layers=args.layer,
           debug=bool(getattr(args, "debug", False)), max_points=args.max_points,
           cache=Path(args.cache) if args.cache else default_cache_dir(), k=args.neighbours,
           method=args.projection, progress=True)
    return 0
