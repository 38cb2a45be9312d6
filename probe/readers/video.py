"""Video decoding with PyAV: frames at given timestamps, decoded lazily and forward.

Works for any codec FFmpeg's PyAV build decodes, including AV1 (``libdav1d``)
and H.264. :func:`decode_at` seeks once to the first wanted time and decodes
forward, picking for each wanted time the decoded frame nearest to it; it seeks
again only across long gaps. Times are file times in seconds (``frame.pts *
time_base``), the convention LeRobot uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.errors import DataError

log = logging.getLogger(__name__)

RESEEK_GAP_S = 4.0  # seek again instead of decoding through a gap longer than this


@dataclass(frozen=True)
class VideoStreamInfo:
    """The first video stream of a file."""

    path: str
    codec: str
    width: int
    height: int
    fps: float
    n_frames: int
    duration: float


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


def video_info(path: str | Path) -> VideoStreamInfo:
    """Codec, size, frame rate, frame count and duration of a video file's first stream."""
    with open_video(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = float(container.duration or 0) / 1e6
        n = int(stream.frames) or int(round(duration * fps))
        return VideoStreamInfo(str(path), stream.codec_context.name, int(stream.codec_context.width),
                               int(stream.codec_context.height), fps, n, duration)


def check_video(path: str | Path) -> None:
    """Raise :class:`DataError` unless ``path`` opens as a video and its first frame decodes."""
    import av

    with open_video(path) as container:
        stream = container.streams.video[0]
        try:
            next(container.decode(stream))
        except (av.error.FFmpegError, StopIteration) as exc:
            raise DataError(f"cannot decode video '{path}': {exc or 'no frames'}") from exc


def decode_at(path: str | Path, timestamps: Sequence[float] | np.ndarray, *,
              size: tuple[int, int] | None = None, tolerance_s: float | None = None) -> np.ndarray:
    """RGB frames of a video nearest to the given file times.

    Parameters
    ----------
    path : video file.
    timestamps : (n,) times in seconds within the file, any order, repeats allowed.
    size : ``(height, width)`` to resize to, or None for the native size.
    tolerance_s : largest allowed distance between a wanted time and the frame
        returned for it; default one frame period.

    Returns
    -------
    uint8 array ``(n, H, W, 3)`` in the order of ``timestamps``.
    """
    import av

    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if size is not None and (len(size) != 2 or min(size) <= 0):
        raise DataError(f"size must be (height, width) with positive values, got {size}")
    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 30.0)
        tol = (1.0 / fps if tolerance_s is None else float(tolerance_s)) + 1e-6
        height, width = size if size is not None else (stream.codec_context.height, stream.codec_context.width)
        out = np.empty((len(ts), int(height), int(width), 3), dtype=np.uint8)
        if len(ts) == 0:
            return out
        order = np.argsort(ts, kind="stable")
        targets = ts[order]

        def fill(j: int, frame, frame_t: float) -> None:
            if abs(frame_t - targets[j]) > tol:
                raise DataError(
                    f"video '{path}' has no frame within {tol:.3g} s of time {targets[j]:.4f} s "
                    f"(nearest decoded frame at {frame_t:.4f} s); the video may be shorter than "
                    "the episode or the timestamps may not match the video"
                )
            out[order[j]] = frame.to_ndarray(format="rgb24", width=int(width), height=int(height))

        j = 0
        last_seek_j = -1
        try:
            while j < len(targets):
                last_seek_j = j
                seek_t = max(targets[j] - 1.0 / fps, 0.0)
                container.seek(int(seek_t / stream.time_base), stream=stream, backward=True, any_frame=False)
                prev = None
                prev_t = -np.inf
                reseek = False
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    frame_t = float(frame.pts * stream.time_base)
                    while j < len(targets) and frame_t >= targets[j]:
                        if prev is not None and abs(prev_t - targets[j]) < abs(frame_t - targets[j]):
                            fill(j, prev, prev_t)
                        else:
                            fill(j, frame, frame_t)
                        j += 1
                    if j == len(targets):
                        break
                    if targets[j] - frame_t > RESEEK_GAP_S and j != last_seek_j:
                        reseek = True
                        break
                    prev, prev_t = frame, frame_t
                if reseek:
                    continue
                if j < len(targets):  # end of stream: times past the last frame
                    if prev is None:
                        raise DataError(f"video '{path}' has no frames at or after {targets[j]:.4f} s")
                    while j < len(targets):
                        fill(j, prev, prev_t)
                        j += 1
        except av.error.FFmpegError as exc:
            raise DataError(f"error decoding video '{path}': {exc}; the file may be corrupt") from exc
    return out


def resize(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize uint8 RGB images ``(n, H, W, 3)`` to ``size=(height, width)`` (bilinear, FFmpeg's swscale)."""
    import av

    images = np.asarray(images)
    if size is None or images.shape[1:3] == tuple(size):
        return images
    height, width = (int(s) for s in size)
    out = np.empty((len(images), height, width, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img, dtype=np.uint8), format="rgb24")
        out[i] = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="BILINEAR")
    return out
