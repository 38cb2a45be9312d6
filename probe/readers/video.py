"""Video decoding with PyAV: frames at given timestamps, decoded lazily and forward.

Works for any codec FFmpeg's PyAV build decodes, including AV1 (``libdav1d``)
and H.264. :func:`decode_at` seeks once to the first wanted time and decodes
forward, picking for each wanted time the decoded frame nearest to it; it seeks
again only across long gaps. A thread keeps its last few videos open where its last
read ended (:mod:`probe.readers.decoder`), so reading the episodes of a file in order
decodes each frame once. Times are file times in seconds (``frame.pts *
time_base``), the convention LeRobot uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe.errors import DataError
from probe.cache.frames import active_frame_cache
from probe.readers.decoder import RESEEK_GAP_S, open_video, prepare_stream, using_decoder

log = logging.getLogger(__name__)

YUV420_FULL_RANGE = {"yuv420p": False, "yuvj420p": True}  # 8-bit 4:2:0 formats: full range?


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
              size: tuple[int, int] | None = None, tolerance_s: float | None = None,
              _fast: bool = True) -> np.ndarray:
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

    While a :class:`~probe.cache.frames.FrameCache` is active (``use_frame_cache``),
    the result is looked up there first and kept there after decoding.
    """
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if size is not None and (len(size) != 2 or min(size) <= 0):
        raise DataError(f"size must be (height, width) with positive values, got {size}")
    cache = active_frame_cache()
    if cache is None or not len(ts):
        return _decode_at(path, ts, size, tolerance_s, _fast)
    return cache.fetch(path, ts, size, tolerance_s, lambda: _decode_at(path, ts, size, tolerance_s, _fast))


def _decode_at(path: str | Path, ts: np.ndarray, size: tuple[int, int] | None, tolerance_s: float | None,
               _fast: bool) -> np.ndarray:
    import av

    order = np.argsort(ts, kind="stable")
    targets = ts[order]
    try:
        with using_decoder(path) as dec:
            tol = (1.0 / dec.fps if tolerance_s is None else float(tolerance_s)) + 1e-6
            height, width = (int(s) for s in size) if size is not None else dec.native
            convert = _FrameConverter(dec.stream, (height, width), _fast)
            out = np.empty((len(ts), *convert.shape), dtype=np.uint8)

            def fill(j: int, frame, frame_t: float) -> None:
                if abs(frame_t - targets[j]) > tol:
                    raise DataError(
                        f"video '{path}' has no frame within {tol:.3g} s of time {targets[j]:.4f} s "
                        f"(nearest decoded frame at {frame_t:.4f} s); the video may be shorter than "
                        "the episode or the timestamps may not match the video"
                    )
                convert(frame, out[order[j]])

            j = 0
            while j < len(targets):
                if not dec.reaches(targets[j]):
                    dec.seek(targets[j])
                first_j, reseek = j, False
                for frame in dec.frames:
                    if frame.pts is None:
                        continue
                    frame_t = float(frame.pts * dec.time_base)
                    while j < len(targets) and frame_t >= targets[j]:  # the nearer of this frame and the last
                        nearer_prev = dec.prev is not None and abs(dec.prev_t - targets[j]) < abs(frame_t - targets[j])
                        fill(j, *((dec.prev, dec.prev_t) if nearer_prev else (frame, frame_t)))
                        j += 1
                    dec.prev, dec.prev_t = frame, frame_t
                    if j == len(targets):
                        break
                    if targets[j] - frame_t > RESEEK_GAP_S and j != first_j:
                        reseek = True
                        break
                if reseek or j == len(targets):
                    continue
                if dec.prev is None:  # end of stream: times past the last frame get the last frame
                    raise DataError(f"video '{path}' has no frames at or after {targets[j]:.4f} s")
                while j < len(targets):
                    fill(j, dec.prev, dec.prev_t)
                    j += 1
    except av.error.FFmpegError as exc:
        raise DataError(f"error decoding video '{path}': {exc}; the file may be corrupt") from exc
    except _FormatChanged:  # the pixel format or size changes mid-stream: convert frame by frame
        return _decode_at(path, ts, size, tolerance_s, False)
    return convert.finish(out)


def decode_all(path: str | Path, *, _fast: bool = True) -> np.ndarray:
    """Every frame of a video's first stream, RGB uint8 ``(n, H, W, 3)``, converted as :func:`decode_at` does."""
    import av

    with open_video(path) as container:
        stream = container.streams.video[0]
        native = prepare_stream(stream)
        convert = _FrameConverter(stream, native, _fast)
        try:
            planes = []
            for frame in container.decode(stream):
                planes.append(np.empty(convert.shape, dtype=np.uint8))
                convert(frame, planes[-1])
        except av.error.FFmpegError as exc:
            raise DataError(f"error decoding video '{path}': {exc}; the file may be corrupt") from exc
        except _FormatChanged:
            return decode_all(path, _fast=False)
    if not planes:
        raise DataError(f"video '{path}' has no frames")
    return convert.finish(np.stack(planes))


class _FrameConverter:
    """Per-frame arrays of a stream at ``size`` and the final RGB conversion of all of them.

    Three paths, cheapest first:

    - limited-range 8-bit 4:2:0 at native size: OpenCV's ``cvtColor`` per frame (about
      5 us for a 64x64 frame, against 30-70 us for the numpy conversion);
    - full-range 4:2:0 (``yuvj420p``) at native size: keep the planes and convert them
      together with :func:`yuv420_to_rgb`;
    - any other format or a resize: one reused swscale context (a new context per frame,
      as ``to_ndarray(format=...)`` makes, costs about 2 ms even for tiny frames).
    """

    def __init__(self, stream, size: tuple[int, int], fast: bool) -> None:
        self.pix_fmt = stream.codec_context.pix_fmt
        self.native = (int(stream.codec_context.height), int(stream.codec_context.width))
        height, width = size
        planar = fast and self.pix_fmt in YUV420_FULL_RANGE and self.native == (height, width) \
            and height % 2 == 0 and width % 2 == 0
        self.mode = ("opencv" if not YUV420_FULL_RANGE[self.pix_fmt] else "planes") if planar else "swscale"
        self.shape = (height * 3 // 2, width) if self.mode == "planes" else (height, width, 3)
        if self.mode == "opencv":
            self.cv2 = _opencv()
            self.i420 = np.empty((height * 3 // 2, width), dtype=np.uint8)
        if self.mode == "swscale":
            from av.video.reformatter import Interpolation, VideoReformatter

            self.size = size
            self.reformatter = VideoReformatter()
            self.interpolation = Interpolation.BILINEAR

    def __call__(self, frame, dst: np.ndarray) -> None:
        """Convert ``frame`` into ``dst`` (an array of ``self.shape``)."""
        if self.mode == "swscale":
            dst[...] = self.reformatter.reformat(frame, format="rgb24", width=self.size[1], height=self.size[0],
                                                 interpolation=self.interpolation).to_ndarray()
            return
        if frame.format.name != self.pix_fmt or (frame.height, frame.width) != self.native:
            raise _FormatChanged
        if self.mode == "planes":
            _i420(frame, dst)
            return
        _i420(frame, self.i420)
        self.cv2.cvtColor(self.i420, self.cv2.COLOR_YUV2RGB_I420, dst=dst)

    def finish(self, arrays: np.ndarray) -> np.ndarray:
        return yuv420_to_rgb(arrays, full_range=True) if self.mode == "planes" else arrays


def _i420(frame, dst: np.ndarray) -> None:
    """Copy a 4:2:0 frame's planes, without their row padding, into ``dst`` ``(3H/2, W)`` (the I420 layout
    of ``frame.to_ndarray()``, at a third of its cost)."""
    height, width = frame.height, frame.width
    for plane, target in zip(frame.planes, _i420_planes(dst, height, width)):
        rows, cols = target.shape
        target[...] = np.frombuffer(plane, np.uint8, count=plane.line_size * rows).reshape(rows, -1)[:, :cols]


def _i420_planes(buffer: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y ``(H, W)``, U and V ``(H/2, W/2)`` planes of an I420 buffer ``(..., 3H/2, W)``, by byte
    offset: when ``H`` is not a multiple of 4 a chroma plane does not start on a row of the buffer."""
    flat = buffer.reshape(*buffer.shape[:-2], -1)
    if not np.may_share_memory(flat, buffer):
        raise ValueError("an I420 buffer must be contiguous")
    luma, chroma = height * width, (height // 2) * (width // 2)
    lead = buffer.shape[:-2]
    return (flat[..., :luma].reshape(*lead, height, width),
            flat[..., luma : luma + chroma].reshape(*lead, height // 2, width // 2),
            flat[..., luma + chroma : luma + 2 * chroma].reshape(*lead, height // 2, width // 2))


def _opencv():
    """OpenCV, on one thread: the reader shares the cores with the model."""
    import cv2

    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(1)
    return cv2




class _FormatChanged(Exception):
    """A frame whose pixel format or size differs from the stream's (the fast path does not apply)."""


def yuv420_to_rgb(planes: np.ndarray, *, full_range: bool = False, chunk: int = 256) -> np.ndarray:
    """RGB uint8 ``(n, H, W, 3)`` from 8-bit 4:2:0 planes ``(n, 3H/2, W)`` as PyAV's ``to_ndarray()`` gives them.

    BT.601 coefficients, limited range unless ``full_range`` (``yuvj420p``), chroma
    repeated over each 2x2 block: what FFmpeg's swscale does by default, to within
    3 levels (mean difference about 1 level). Vectorised over frames in chunks,
    several times faster than converting each frame through swscale from Python.
    """
    planes = np.asarray(planes)
    n, h3, width = planes.shape
    height = h3 * 2 // 3
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    if full_range:
        y_scale, y_offset, c_scale = 1.0, 0.0, 1.0
    else:
        y_scale, y_offset, c_scale = 255.0 / 219.0, 16.0, 255.0 / 224.0
    kr, kgu, kgv, kb = (np.float32(k * c_scale) for k in (1.402, 0.344136, 0.714136, 1.772))
    for s in range(0, n, chunk):
        p = np.ascontiguousarray(planes[s : s + chunk])
        m = len(p)
        y_plane, u_plane, v_plane = _i420_planes(p, height, width)
        y = y_plane.astype(np.float32)
        y -= y_offset
        y *= y_scale
        u = u_plane.astype(np.float32) - 128.0
        v = v_plane.astype(np.float32) - 128.0
        rgb = np.empty((m, height, width, 3), dtype=np.float32)
        for c, chroma in enumerate((kr * v, -kgu * u - kgv * v, kb * u)):
            rgb[..., c] = y + chroma.repeat(2, axis=1).repeat(2, axis=2)
        np.rint(rgb, out=rgb)
        np.clip(rgb, 0, 255, out=rgb)
        out[s : s + m] = rgb
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
