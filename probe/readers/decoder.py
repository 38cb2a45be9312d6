"""Open videos kept positioned where the last read ended, so that sequential reads neither reopen nor reseek.

Extraction reads the frames of one episode after another, and the episodes of a
LeRobot v3 file follow each other in it. Opening the file (about 0.5 ms) and seeking
to the keyframe before each read (decoding up to a GOP of frames again) then cost as
much as the frames themselves. :func:`using_decoder` hands out a :class:`Decoder` per
thread and file, least recently used first out; a read that starts at or after the
last decoded frame just decodes forward.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from probe.errors import DataError

OPEN_PER_THREAD = 8  # decoders kept open per thread (a dataset may interleave several cameras)
RESEEK_GAP_S = 4.0  # seek instead of decoding through a gap longer than this

_local = threading.local()


_inherited: list[object] = []  # a forked child's copy of its parent's decoders, never used nor freed
_every: weakref.WeakSet = weakref.WeakSet()  # every thread's open decoders (a thread's own are in _local)
_held: list[Decoder] = []  # strong references from just before a fork to just after it



SMALL_FRAME_PIXELS = 256 * 256  # decode smaller frames on one thread


def open_video(path: str | Path, *, missing_hint: str = ""):
    """Open ``path`` with PyAV; :class:`DataError` if it is missing, unreadable or has no video stream.

    ``missing_hint`` is appended to the message for a missing file (where the path came from, the fix).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise DataError(f"video file '{path}' does not exist{missing_hint}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(f"cannot open video '{path}': {exc}; the file may be truncated or not a video") from exc
    if not container.streams.video:
        container.close()
        raise DataError(f"'{path}' has no video stream")
    return container


def prepare_stream(stream) -> tuple[int, int]:
    """The stream's native ``(height, width)``; decoding threads only for large frames.

    Frame threads pay off for large frames; for small ones they add latency and
    contend with the model for cores.
    """
    native = (int(stream.codec_context.height), int(stream.codec_context.width))
    stream.codec_context.thread_type = "AUTO" if native[0] * native[1] > SMALL_FRAME_PIXELS else "NONE"
    return native


def _hold() -> None:
    """Before a fork: hold every thread's open decoders, so that the child gets them referenced."""
    _held[:] = list(_every)


def _release() -> None:
    _held.clear()


def _forget_in_child() -> None:
    """A forked child must not read through its parent's open videos (the file offsets are shared): it
    starts with none. The inherited ones, every thread's, are kept, neither used nor freed: freeing a
    decoder that ran with frame threads waits on threads a forked child does not have, and hangs."""
    global _local, _every
    for decoder in _held:
        decoder.inherited = True
    _inherited.append((_local, list(_held)))
    _held.clear()
    _local, _every = threading.local(), weakref.WeakSet()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_hold, after_in_parent=_release, after_in_child=_forget_in_child)


class Decoder:
    """An open video's first stream and the last frame decoded from it (``prev``, at ``prev_t`` seconds)."""

    def __init__(self, path: Path) -> None:
        self.inherited = False  # a forked child's copy: never closed there (its decoding threads are gone)
        self.container = open_video(path)
        self.stream = self.container.streams.video[0]
        self.native = prepare_stream(self.stream)
        self.fps = float(self.stream.average_rate or self.stream.guessed_rate or 30.0)
        self.time_base = self.stream.time_base
        self.frames: Iterator | None = None  # the decode iterator since the last seek
        self.prev = None
        self.prev_t = -np.inf
        _every.add(self)

    def reaches(self, t: float) -> bool:
        """Whether decoding forward from here finds the frame nearest ``t`` without a seek."""
        return self.frames is not None and self.prev is not None and self.prev_t <= t <= self.prev_t + RESEEK_GAP_S

    def seek(self, t: float) -> None:
        """Position at the keyframe before ``t`` (minus a frame, so that the frame before ``t`` is seen)."""
        seek_t = max(t - 1.0 / self.fps, 0.0)
        self.container.seek(int(seek_t / self.time_base), stream=self.stream, backward=True, any_frame=False)
        self.frames = self.container.decode(self.stream)
        self.prev, self.prev_t = None, -np.inf

    def close(self) -> None:
        self.frames = self.prev = None
        self.container.close()

    def __del__(self) -> None:
        # closed here, in the process and thread state that decoded with it: a decoder dropped with its thread
        # (or left in a reference cycle) is not freed later by a forked child's garbage collection
        if not getattr(self, "inherited", True) and getattr(self, "container", None) is not None:
            with contextlib.suppress(Exception):
                self.close()


def _key(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns


@contextlib.contextmanager
def using_decoder(path: str | Path) -> Iterator[Decoder]:
    """This thread's open :class:`Decoder` of ``path`` (opened if needed, or reopened if the file changed).

    A read that raises leaves the decoder in an unknown state, so it is closed and dropped.
    """
    open_: OrderedDict = getattr(_local, "decoders", None) or OrderedDict()
    _local.decoders = open_
    key = _key(Path(path))
    decoder = open_.pop(key, None) if key is not None else None
    if decoder is None:
        decoder = Decoder(Path(path))  # raises DataError for a missing or unreadable file
    try:
        yield decoder
    except BaseException:
        decoder.close()
        raise
    if key is None:
        decoder.close()
        return
    open_[key] = decoder
    while len(open_) > OPEN_PER_THREAD:
        open_.popitem(last=False)[1].close()


def close_decoders() -> None:
    """Close the videos this thread keeps open."""
    open_: OrderedDict | None = getattr(_local, "decoders", None)
    while open_:
        open_.popitem()[1].close()
