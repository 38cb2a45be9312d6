"""Small H.264 test videos whose frames say which frame they are (for tests that decode them back)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

FPS = 10


def write_h264(path: str | Path, n_frames: int, paint: Callable[[int], np.ndarray], *, fps: int = FPS,
               crf: str = "10", gop: int = 8) -> Path:
    """Encode ``paint(i)`` (a 24x32x3 uint8 image) for i < ``n_frames`` as a 32x24 yuv420p H.264 file."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        stream.options = {"crf": crf, "g": str(gop)}
        for i in range(n_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(paint(i), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)
