"""``create_app(prepared)`` builds the Dash app; ``serve(stores, ...)`` prepares and runs it.

Everything heavy (layouts, indexes, metrics) is in ``prepared`` before the app exists,
so the first page load is fast. The server binds to 127.0.0.1 unless told otherwise
and never runs in debug mode unless asked.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from dash import Dash

from dashboard import callbacks, layout
from dashboard.media import Thumbnails, add_media_routes, restrict_paths
from dashboard.state.prepared import Prepared
from dashboard.state.loading import prepare

log = logging.getLogger(__name__)


def create_app(prepared: Prepared, *, title: str = "embodiment probe") -> Dash:
    """The Dash app over prepared data (layout, media routes and callbacks)."""
    app = Dash(__name__, title=title, update_title=None, suppress_callback_exceptions=False)
    app.layout = layout.page(prepared)
    add_media_routes(app.server, prepared.media, Thumbnails(prepared.frame_location))
    restrict_paths(app.server)
    callbacks.register(app, prepared)
    return app


def serve(stores: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8050, *,
          layers: str | Sequence[str] | None = None, debug: bool = False, max_points: int = 200_000,
          cache: str | Path | None = None, k: int = 8, method: str = "umap", progress: bool = True) -> None:
    """Prepare the stores (before the server starts), print the URL and serve until interrupted."""
    prepared = prepare(stores, layers=layers, max_points=max_points, cache=cache, k=k, method=method,
                       progress=progress)
    app = create_app(prepared)
    from metrics.knn import set_threads

    set_threads(1)  # the server runs single-vector searches only: one thread answers fastest
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
    log.info("serving %d checkpoint(s) at %s", len(prepared.checkpoints), url)
    from probe.console import console

    console.print(f"[bold green]dashboard ready[/]: {url}  (Ctrl+C to stop)")
    app.run(host=host, port=port, debug=debug, use_reloader=False)
