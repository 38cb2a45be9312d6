"""Frames and clips, served only from video files registered when the app starts; who may ask.

``/media/<token>`` serves a registered file (a dict token -> absolute path, built by
:func:`dashboard.state.prepare` from the video files inside the stores' dataset roots, under
tokens drawn at random per server process) with HTTP Range support so ``<video>`` can seek;
``/thumb/<checkpoint>/<row>.jpg`` decodes one frame of a registered video with PyAV
into a small JPEG (cached). Any other path, an unknown token or a row without video
is a 404: request paths never reach the file system.

:func:`restrict_hosts` answers 400 to a request whose ``Host`` header names another
machine, so a web page whose domain was re-pointed at this machine (DNS rebinding)
cannot read the app.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN = re.compile(r"^[0-9a-f]{20}$")  # secrets.token_hex(10), drawn per file when the app is prepared
THUMB_WIDTH = 192
CACHE_SIZE = 4096


def frame_jpeg(path: str | Path, seconds: float, width: int = THUMB_WIDTH) -> bytes:
    """The frame of a video at ``seconds`` (the first frame at or after it) as JPEG bytes."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.time_base is not None:
            container.seek(max(int(seconds / stream.time_base), 0), stream=stream, backward=True)
        frame = None
        for frame in container.decode(stream):
            if frame.time is None or frame.time >= seconds - 1e-3:
                break
        if frame is None:
            raise ValueError(f"no frame at {seconds:.3f}s in '{path}'")
        height = max(2, int(round(frame.height * width / frame.width / 2)) * 2)
        small = frame.reformat(width=width, height=height, format="yuvj420p")
        codec = av.CodecContext.create("mjpeg", "w")
        codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
        codec.time_base = Fraction(1, 25)
        packets = list(codec.encode(small)) + list(codec.encode(None))
        return b"".join(bytes(p) for p in packets)


class Thumbnails:
    """JPEG thumbnails of store rows, decoded lazily from registered videos and kept in an LRU cache.

    ``locate(checkpoint, row)`` returns ``(path, seconds)`` of a row's frame, or None.
    """

    def __init__(self, locate: Callable[[int, int], tuple[Path, float] | None], size: int = CACHE_SIZE) -> None:
        self.locate = locate
        self.size = size
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, checkpoint: int, row: int) -> bytes | None:
        key = (checkpoint, row)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        where = self.locate(checkpoint, row)
        if where is None:
            return None
        try:
            data = frame_jpeg(*where)
        except Exception as exc:  # a corrupt or truncated video: no thumbnail, never a 500
            log.warning("no thumbnail for checkpoint %d row %d (%s)", checkpoint, row, exc)
            return None
        with self._lock:
            self._cache[key] = data
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return data


def media_url(token: str | None, start: float | None = None, end: float | None = None) -> str | None:
    """URL of a registered file, with a ``#t=start,end`` media fragment for clips."""
    if token is None:
        return None
    url = f"/media/{token}"
    if start is not None:
        url += f"#t={start:.3f}" + (f",{end:.3f}" if end is not None else "")
    return url


def thumb_url(checkpoint: int, row: int) -> str:
    return f"/thumb/{checkpoint}/{row}.jpg"


def add_media_routes(server, media: Mapping[str, Path], thumbnails: Thumbnails | None = None) -> None:
    """Register ``/media/<token>`` (Range-aware) and ``/thumb/<checkpoint>/<row>.jpg`` on a Flask server."""
    from flask import Response, abort, send_file

    registry = {token: Path(path).resolve() for token, path in media.items()}

    @server.route("/media/<token>")
    def media_file(token: str):  # noqa: ANN202 (Flask view)
        if not TOKEN.fullmatch(token) or token not in registry:
            abort(404)
        path = registry[token]
        if not path.is_file():
            abort(404)
        response = send_file(path, conditional=True, max_age=3600)
        response.headers["Accept-Ranges"] = "bytes"
        return response

    @server.route("/thumb/<int:checkpoint>/<int:row>.jpg")
    def thumbnail(checkpoint: int, row: int):  # noqa: ANN202
        data = thumbnails.get(checkpoint, row) if thumbnails is not None else None
        if data is None:
            abort(404)
        return Response(data, mimetype="image/jpeg", headers={"Cache-Control": "max-age=3600"})


APP_PATHS = ("/_dash-", "/_favicon.ico", "/assets/", "/media/", "/thumb/", "/_reload-hash", "/_alive_")


def restrict_paths(server) -> None:
    """Answer 404 for every path the app does not serve (Dash would return its page for any path).

    A bad path under ``/_dash-component-suites/`` is a 404 too (Dash raises, which Flask
    would log with a traceback and answer with a 500).
    """
    from dash.exceptions import DependencyException
    from flask import abort, request

    server.register_error_handler(DependencyException, lambda exc: ("not found", 404, {"Content-Type": "text/plain"}))

    @server.before_request
    def only_app_paths():  # noqa: ANN202
        path = request.path
        if path == "/":
            return
        # Dash's catch-all ("/<path:path>") would answer any other path with the page
        if request.url_rule is None or request.url_rule.rule == "/<path:path>" or not path.startswith(APP_PATHS):
            abort(404)


LOOPBACK = ("localhost", "127.0.0.1", "::1")
WILDCARD = ("0.0.0.0", "::", "")


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a request may name when the app is bound to ``host``.

    Always ``localhost``, ``127.0.0.1`` and ``::1``, the bound address and the ``extra``
    names (``--allow-host``). Bound to every interface (``0.0.0.0`` or ``::``), also this
    machine's host names; any IP address is accepted then as well (see :func:`restrict_hosts`).
    """
    names = {*LOOPBACK, host.strip("[]").lower(), *(h.strip().strip("[]").lower() for h in extra if h.strip())}
    if host in WILDCARD:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(names - {""})


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def restrict_hosts(server, host: str, port: int | None = None, extra: Iterable[str] = ()) -> None:
    """Answer 400 to requests whose ``Host`` header names a machine other than this one.

    Accepted: the names of :func:`allowed_hosts`; when bound to every interface, also any IP
    address (a rebinding page always uses a domain name, never an address). When ``port``
    is known, a port in the header must be it (except for ``extra`` names: a reverse proxy
    may use another).
    """
    from flask import request

    names = allowed_hosts(host, extra)
    proxied = {h.strip().strip("[]").lower() for h in extra}
    any_ip = host in WILDCARD

    @server.before_request
    def only_this_machine():  # noqa: ANN202
        header = (request.host or "").lower()
        match = re.fullmatch(r"\[([0-9a-f:.]+)\](?::(\d+))?|([^:\[\]]*)(?::(\d+))?|([0-9a-f:]+)", header)
        if match is None:
            return _refuse()
        name = match.group(1) or match.group(3) or match.group(5) or ""
        given = match.group(2) or match.group(4)
        if not (name in names or (any_ip and _is_ip(name))):
            return _refuse()
        if port is not None and given is not None and int(given) != port and name not in proxied:
            return _refuse()
        return None


def _refuse():
    return ("request refused: its Host header names another machine (a DNS-rebinding page?); open the "
            "dashboard by the address 'probe serve' printed, or start it with --allow-host NAME", 400,
            {"Content-Type": "text/plain"})
