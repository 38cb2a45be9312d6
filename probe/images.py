"""Images as files and bytes: RGB arrays resized and encoded with OpenCV (PNG, JPEG).

One place for what the contact sheet of exported clips, the report's frames and the
thumbnails of ``probe export`` need: ``cv2.resize`` and ``cv2.imencode`` (OpenCV works
in BGR order; these functions take and give RGB).
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

from probe.errors import DataError

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def encode_image(rgb: np.ndarray, ext: str = ".png", quality: int = 90) -> bytes:
    """An ``(h, w, 3)`` uint8 RGB image as PNG (lossless) or JPEG (``quality``) bytes; ``ext`` names the format."""
    import cv2

    ext = ext.lower()
    if ext not in MIME:
        raise ValueError(f"image format {ext!r} is not one of {', '.join(MIME)}")
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"encode_image expects an (h, w, 3) uint8 RGB image, got shape {img.shape}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if MIME[ext] == "image/jpeg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DataError(f"OpenCV could not encode a {img.shape[1]}x{img.shape[0]} image as {ext}")
    return buf.tobytes()


def write_image(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an ``(h, w, 3)`` uint8 RGB image; the format follows the suffix (``.png``, ``.jpg``)."""
    Path(path).write_bytes(encode_image(rgb, Path(path).suffix or ".png"))
    return Path(path)


def data_uri(rgb: np.ndarray, ext: str = ".png") -> str:
    """A ``data:`` URI of an RGB image, for a self-contained page."""
    return f"data:{MIME[ext.lower()]};base64," + base64.b64encode(encode_image(rgb, ext)).decode("ascii")


def fit_height(rgb: np.ndarray, height: int) -> np.ndarray:
    """An RGB image resized to ``height`` rows, aspect kept: averaged areas going down, whole pixels going up."""
    import cv2

    h, w = rgb.shape[:2]
    width = max(1, int(round(w * height / h)))
    if (h, w) == (height, width):
        return np.ascontiguousarray(rgb)
    interp = cv2.INTER_AREA if height < h else cv2.INTER_NEAREST
    return cv2.resize(np.ascontiguousarray(rgb), (width, height), interpolation=interp)
