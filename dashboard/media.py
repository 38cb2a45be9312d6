"""Frames and clips, served only from video files registered when the app starts.

``/media/<token>`` serves a registered file (a dict token -> absolute path, built by
:func:`dashboard.state.prepare`) with HTTP Range support so ``<video>`` can seek;
``/thumb/<checkpoint>/<row>.jpg`` decodes one frame of a registered video with PyAV
into a small JPEG (cached). Any other path, an unknown token or a row without video
is a 404: request paths never reach the file system.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path

log = logging.getLogger(__name__)

TOKEN = re.compile(r"^[0-9a-f]{20}$")
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
    """Answer 404 for every path the app does not serve (Dash would return its page for any path)."""
    from flask import abort, request

    @server.before_request
    def only_app_paths():  # noqa: ANN202
        path = request.path
        if path == "/":
            return
        # Dash's catch-all ("/<path:path>") would answer any other path with the page
        if request.url_rule is None or request.url_rule.rule == "/<path:path>" or not path.startswith(APP_PATHS):
            abort(404)
