"""``create_app(prepared)`` builds the Dash app; ``serve(stores, ...)`` prepares and runs it.

Everything heavy (layouts, indexes, metrics) is in ``prepared`` before the app exists,
so the first page load is fast. The server binds to 127.0.0.1 unless told otherwise,
answers only requests that name this machine in their ``Host`` header
(:func:`dashboard.media.restrict_hosts`) and runs on waitress, a production WSGI server.
``serve(debug=True)`` (Python API only; the CLI's ``--debug`` never sets it) runs Dash's debug mode on
Werkzeug's development server instead, which includes Werkzeug's interactive debugger: a PIN-protected
console that runs Python code in the server process. Never use it on a shared host; it is refused
together with a host other than a loopback address.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dash import Dash

from dashboard import callbacks, layout
from dashboard.media import WILDCARD, Thumbnails, add_media_routes, restrict_hosts, restrict_paths
from dashboard.state.prepared import Prepared
from dashboard.state.loading import prepare

log = logging.getLogger(__name__)

THREADS = 8  # waitress worker threads: callbacks, media ranges and thumbnails in parallel


def create_app(prepared: Prepared, *, title: str = "embodiment probe", host: str = "127.0.0.1",
               port: int | None = None, allow_hosts: Sequence[str] = ()) -> Dash:
    """The Dash app over prepared data (layout, media routes and callbacks).

    ``host``, ``port`` and ``allow_hosts``: where the app is served, and further names its
    requests may carry in their ``Host`` header (see :func:`dashboard.media.restrict_hosts`).
    """
    app = Dash(__name__, title=title, update_title=None, suppress_callback_exceptions=False)
    app.layout = layout.page(prepared)
    restrict_hosts(app.server, host, port, allow_hosts)
    add_media_routes(app.server, prepared.media, Thumbnails(prepared.frame_location))
    restrict_paths(app.server)
    one_line_errors(app.server)
    callbacks.register(app, prepared)
    return app


def one_line_errors(server) -> None:
    """A request that makes the app raise (e.g. a malformed callback POST) is logged in one line and answered
    with a 500, not a traceback on the console; ``probe serve --debug`` (Flask's debug mode) keeps tracebacks."""
    import logging

    from flask import current_app, request
    from werkzeug.exceptions import HTTPException

    log = logging.getLogger("dashboard")

    @server.errorhandler(Exception)
    def _one_line(exc: Exception):  # noqa: ANN202 (Flask error handler)
        if isinstance(exc, HTTPException):  # 404, 400 ...: Flask's own answer
            return exc
        if current_app.debug:
            raise exc
        first = (str(exc).strip().splitlines() or [""])[0]
        log.error("%s %s failed: %s%s (probe serve --debug shows the traceback)", request.method, request.path,
                  type(exc).__name__, f": {first}" if first else "")
        return "internal error", 500, {"Content-Type": "text/plain"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost`` or a loopback address)."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def served_urls(host: str, port: int) -> tuple[str, str | None]:
    """The URL to open on this machine, and a warning line when ``host`` is not a loopback address (the
    dashboard, the datasets' videos included, is then reachable from the network), else None."""
    import socket

    shown = "127.0.0.1" if host in WILDCARD else f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    if is_loopback(host):
        return url, None
    network = f"http://{socket.gethostname()}:{port}/" if host in WILDCARD else url
    return url, (f"warning: bound to {host or 'every interface'}, so the dashboard and the datasets' videos it "
                 f"serves are reachable from the network ({network} from other machines); --host 127.0.0.1 "
                 "keeps them on this machine")


def make_server(app: Dash, host: str = "127.0.0.1", port: int = 8050, threads: int = THREADS, **options: Any):
    """A waitress server of the app, bound; ``run()`` serves until Ctrl+C.

    ``options`` are further waitress settings (e.g. ``map``: the dict of its sockets, which
    ``waitress.wasyncore.close_all`` closes to stop a server run in a thread).
    """
    from waitress import create_server

    return create_server(app.server, host=host, port=port, threads=threads, ident="embodiment-probe", **options)


def serve(stores: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8050, *,
          layers: str | Sequence[str] | None = None, debug: bool = False, max_points: int = 200_000,
          cache: str | Path | None = None, k: int = 8, method: str = "umap", progress: bool = True,
          data_roots: Mapping[str, str | Path] | None = None, allow_hosts: Sequence[str] = (),
          threads: int = THREADS, start: str | None = None) -> None:
    """Prepare the stores (before the server starts), print the URL and serve until interrupted (Ctrl+C).

    ``layers``: the layers shown (default: all the stores share); ``start``: the one the page opens on
    (default: the last of them, said in one line; see :func:`dashboard.state.loading.prepare`).

    ``debug=True`` serves with Dash's debug mode on Werkzeug's development server, whose debugger is an
    interactive Python console in the page (``/console``, PIN-protected): for debugging the app on your own
    machine only, never on a shared host. It is refused unless ``host`` is a loopback address.
    """
    if debug and not is_loopback(host):
        from probe.errors import ConfigError

        raise ConfigError(f"debug=True runs Werkzeug's debugger (a code console) and is refused with host {host!r}; "
                          "serve on 127.0.0.1 or drop debug=True")
    # the first store's map of the start layer before the server starts; the others in the background once it answers
    prepared = prepare(stores, layers=layers, max_points=max_points, cache=cache, k=k, method=method,
                       progress=progress, data_roots=data_roots, lazy=True, start=start)
    with prepared:  # closed when the server stops: removes the temporary index folder of a run without a cache
        _serve_prepared(prepared, host, port, debug=debug, allow_hosts=allow_hosts, threads=threads)


def _serve_prepared(prepared: Prepared, host: str, port: int, *, debug: bool, allow_hosts: Sequence[str],
                    threads: int) -> None:
    """Serve prepared data until interrupted (the part of :func:`serve` after preparing)."""
    app = create_app(prepared, host=host, port=port, allow_hosts=allow_hosts)
    from metrics.knn import set_threads

    set_threads(1)  # the server runs single-vector searches only: one thread answers fastest
    url, exposed = served_urls(host, port)
    log.info("serving %d checkpoint(s) at %s", len(prepared.checkpoints), url)
    from rich.markup import escape

    from probe.console import console
    if prepared.start_note:  # the layer the page opens on was chosen by the default rule among several
        console.print(prepared.start_note, soft_wrap=True, markup=False)
    if prepared.video_roots and prepared.media:  # say which folders the server reads videos from
        console.print(f"videos served only from inside: {', '.join(prepared.video_roots)}", soft_wrap=True,
                      markup=False)
    if exposed:
        console.print(exposed, soft_wrap=True, markup=False, style="yellow")
    more = len(prepared.views) - prepared.views.ready()
    later = f"; {more} more maps are prepared in the background (progress in the page)" if more else ""
    if debug:  # Dash's debug mode (tracebacks in the page) needs Werkzeug's development server
        prepared.views.start()
        console.print(f"[bold green]dashboard ready[/]: {escape(url)}  (Ctrl+C to stop; debug mode, development "
                      f"server{later})")
        app.run(host=host, port=port, debug=True, use_reloader=False)
        return
    server = make_server(app, host, port, threads)
    prepared.views.start()
    here = " on this machine" if exposed else ""
    console.print(f"[bold green]dashboard ready[/]: {escape(url)}{here}  (Ctrl+C to stop{later})")
    try:
        server.run()  # returns on Ctrl+C (waitress closes its sockets)
    finally:
        server.close()
