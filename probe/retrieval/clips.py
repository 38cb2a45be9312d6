"""Clip export: retrieved clips as short H.264 mp4 files and a contact sheet PNG.

Clips are cut from the episode videos named in the store (``video``,
``video_timestamp``), in that file's time, which may hold several episodes (as
LeRobot v3 does). Frames are decoded with PyAV forward from one seek and re-encoded
with libx264; the contact sheet (one row per query: the query frame, then its clips)
is drawn and written with OpenCV (``cv2.resize``, ``cv2.putText``, ``cv2.imencode``).
Captions go into ``clips.json`` and an ``index.html`` that plays the clips; the
sheet itself carries short labels ("query", "#1 0.93").
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from probe import columns as C
from probe.atomic import atomic_dir, json_text
from probe.errors import DataError
from probe.images import fit_height, write_image
from probe.validate import OutputKind
from probe.readers.decoder import open_video
from probe.store.media import VideoPaths

log = logging.getLogger(__name__)

# what --overwrite may replace: a directory holding nothing but an export's files
CLIPS_KIND = OutputKind("clip directory", "clips.json", files=("clips.json", "index.html", "contact_sheet.png", "*.mp4"))

THUMB_HEIGHT = 128
_PAD = 6
_QUERY_COLOR = (230, 120, 20)
_CLIP_COLOR = (40, 110, 200)
_BACKGROUND = (245, 245, 245)


# --------------------------------------------------------------------------- decoding


def read_frames(path: str | Path, start: float, end: float) -> tuple[list[np.ndarray], float]:
    """RGB frames of ``path`` whose time lies in ``[start, end]`` seconds, and the stream's frame rate.

    Seeks once to the key frame before ``start`` and decodes forward. A window
    shorter than one frame returns the frame nearest to its middle.
    """
    import av

    with open_video(path, missing_hint=f" (the store's '{C.VIDEO}' column points to it); move the videos "
                                        "back or re-create the store") as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 30.0)
        tb = float(stream.time_base)
        half = 0.5 / fps
        container.seek(max(int((start - 1.0 / fps) / tb), 0), stream=stream, backward=True, any_frame=False)
        frames: list[np.ndarray] = []
        mid = 0.5 * (start + end)
        best = None  # (|t - mid|, frame) over every decoded frame: the fallback for short windows
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = frame.pts * tb
                if best is None or abs(t - mid) < best[0]:
                    best = (abs(t - mid), frame)
                if t > end + half:
                    break
                if t >= start - half:
                    frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as exc:
            raise DataError(f"cannot decode video '{path}' around {start:.2f}s: {exc}") from exc
    if not frames and best is not None:
        frames = [best[1].to_ndarray(format="rgb24")]
    if not frames:
        raise DataError(f"video '{path}' has no frame near {start:.2f}..{end:.2f}s (is video_timestamp in "
                        "the file's time?)")
    return frames, fps


def read_frame(path: str | Path, t: float) -> np.ndarray:
    """The RGB frame of ``path`` nearest to ``t`` seconds."""
    frames, fps = read_frames(path, t - 0.49 / 30.0, t + 0.49 / 30.0)
    return frames[len(frames) // 2]


# --------------------------------------------------------------------------- encoding


def write_mp4(path: str | Path, frames: list[np.ndarray], fps: float) -> Path:
    """Encode RGB frames as H.264 (yuv420p) mp4; odd sizes are cropped by one pixel."""
    import av
    from fractions import Fraction

    if not frames:
        raise DataError(f"no frames to write to '{path}'")
    h, w = frames[0].shape[:2]
    h2, w2 = h - h % 2, w - w % 2
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h2, :w2, :3]), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return Path(path)


# --------------------------------------------------------------------------- the contact sheet

_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX, OpenCV's sans-serif vector font
_FONT_SCALE = 0.5
_LABEL_H = 20  # the strip under each thumbnail that carries its label


def draw_label(img: np.ndarray, text: str, x: int, y: int, color=(255, 255, 255)) -> None:
    """Draw ``text`` in place with its top left at ``(x, y)``, in OpenCV's Hershey sans font (anti-aliased)."""
    import cv2

    (_, h), _ = cv2.getTextSize(text, _FONT, _FONT_SCALE, 1)
    cv2.putText(img, text, (x, y + h), _FONT, _FONT_SCALE, color, 1, cv2.LINE_AA)


def thumbnail(img: np.ndarray, height: int = THUMB_HEIGHT) -> np.ndarray:
    """An RGB image (HWC or CHW, uint8 or 0..1 floats) resized to ``height`` rows, aspect kept."""
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[2] not in (1, 3):
        img = np.transpose(img, (1, 2, 0))  # CHW -> HWC
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.dtype != np.uint8:
        scale = 255.0 if float(np.nanmax(img)) <= 1.0 else 1.0
        img = np.clip(img * scale, 0, 255).astype(np.uint8)
    return fit_height(img[:, :, :3], height)


def contact_sheet(rows: list[list[np.ndarray | None]], labels: list[list[str]], height: int = THUMB_HEIGHT
                  ) -> tuple[np.ndarray, list[list[tuple[int, int, int, int]]]]:
    """A grid image: one row per query, first cell the query (orange frame), then clips (blue).

    Each cell is the thumbnail with its label in a strip below it; ``None`` cells (no
    video) are drawn grey. Returns the image and each cell's ``(x, y, w, h)`` box (the
    thumbnail is at ``(x + 3, y + 3)``), for captions kept outside the image.
    """
    thumbs = [[thumbnail(c, height) if c is not None else None for c in row] for row in rows]
    cell_w = max([t.shape[1] for row in thumbs for t in row if t is not None] or [height * 4 // 3])
    n_cols = max((len(r) for r in rows), default=1)
    box_w, box_h = cell_w + 6, height + 6 + _LABEL_H  # a 3-pixel coloured frame, the label strip below
    W = _PAD + n_cols * (box_w + _PAD)
    H = _PAD + len(rows) * (box_h + _PAD)
    sheet = np.empty((H, W, 3), np.uint8)
    sheet[:] = _BACKGROUND
    boxes: list[list[tuple[int, int, int, int]]] = []
    for r, row in enumerate(thumbs):
        boxes.append([])
        for c, thumb in enumerate(row):
            x0, y0 = _PAD + c * (box_w + _PAD), _PAD + r * (box_h + _PAD)
            sheet[y0 : y0 + box_h, x0 : x0 + box_w] = _QUERY_COLOR if c == 0 else _CLIP_COLOR
            inner = sheet[y0 + 3 : y0 + 3 + height, x0 + 3 : x0 + 3 + cell_w]
            inner[:] = (160, 160, 160)
            if thumb is not None:
                inner[:, : min(cell_w, thumb.shape[1])] = thumb[:, :cell_w]
            if labels[r][c]:
                draw_label(sheet, labels[r][c], x0 + 5, y0 + 3 + height + 4)
            boxes[-1].append((x0, y0, box_w, box_h))
    return sheet, boxes


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class ClipExport:
    """Where exported clips went: the directory, clip files, sheet, captions and notes."""

    directory: Path
    clips: list[Path] = field(default_factory=list)
    sheet: Path | None = None
    captions: Path | None = None
    html: Path | None = None
    notes: list[str] = field(default_factory=list)


def _caption(row: pd.Series) -> str:
    return (f"#{int(row['rank'])} {row[C.TASK]} / {row[C.STAGE]} ({row[C.STAGE_PROGRESS]:.0%}) "
            f"{row[C.DATASET]} ep {row[C.EPISODE]} {row['start']:.2f}-{row['end']:.2f}s score {row['score']:.3f}")


def export_clips(results: pd.DataFrame, out_dir: str | Path, *, queries: list[dict] | None = None,
                 overwrite: bool = False, progress: bool = False, videos: VideoPaths | None = None) -> ClipExport:
    """Write each result clip as an mp4, plus ``contact_sheet.png``, ``clips.json`` and ``index.html``.

    Parameters
    ----------
    results : a :meth:`probe.retrieval.retriever.Retriever.search` frame
    out_dir : directory to create (atomically; refused if it exists unless ``overwrite``)
    queries : per query (by ``results.query``), an optional dict with ``image`` (an
        RGB array shown first in its row) and ``caption``; without an image, a stored
        query's own frame (``query_sample_id``) is read through ``videos``
    videos : the searched store's videos (``VideoPaths(store, data_roots)``): each clip's file
        is resolved, and confined to the store's dataset roots, through it. None: the
        ``video`` values are absolute paths of files you trust (as in a frame you built).

    Raises
    ------
    DataError
        A clip's video is missing, outside its dataset's root or not a video file.
    """
    from probe.progress import track

    queries = queries or []
    notes: list[str] = []
    has_video = C.VIDEO in results.columns and results[C.VIDEO].notna().any()
    if not has_video:
        notes.append("the store has no video columns (video, video_timestamp): no clip files written, "
                     "only captions")
    out_dir = Path(out_dir)
    q_ids = sorted(set(results["query"].tolist()) | set(range(len(queries))))
    sheet_rows: list[list[np.ndarray | None]] = []
    sheet_labels: list[list[str]] = []
    records: list[dict] = []
    with atomic_dir(out_dir, overwrite=overwrite, kind=CLIPS_KIND) as tmp:
        written: list[Path] = []
        for qi in q_ids:
            qinfo = queries[qi] if qi < len(queries) else {}
            image = qinfo.get("image")
            row_imgs: list[np.ndarray | None] = [image if image is not None else query_frame(results, qi, videos)]
            row_labels = ["query"]
            rec = {"query": int(qi), "caption": qinfo.get("caption", f"query {qi}"), "clips": []}
            sub = results[results["query"] == qi]
            for _, hit in track(sub.iterrows(), total=len(sub), desc=f"clips of query {qi}", enabled=progress):
                name = f"q{qi:02d}_r{int(hit['rank']):02d}_{hit[C.DATASET]}_ep{hit[C.EPISODE]}.mp4"
                name = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
                image = None
                clip_file = None
                video = _video_file(hit, videos)
                if video is not None:
                    frames, fps = read_frames(video, float(hit["video_start"]), float(hit["video_end"]))
                    write_mp4(tmp / name, frames, fps)
                    clip_file = name
                    written.append(out_dir / name)
                    offset = float(hit[C.TIMESTAMP]) - float(hit["start"])
                    image = frames[min(len(frames) - 1, max(0, int(round(offset * fps))))]
                row_imgs.append(image)
                row_labels.append(f"#{int(hit['rank'])}  {float(hit['score']):.2f}")
                rec["clips"].append({"rank": int(hit["rank"]), "file": clip_file, "caption": _caption(hit),
                                     **{k: _plain(hit[k]) for k in results.columns if k not in ("query",)}})
            sheet_rows.append(row_imgs)
            sheet_labels.append(row_labels)
            records.append(rec)
        sheet, boxes = contact_sheet(sheet_rows, sheet_labels)
        for rec, row_boxes in zip(records, boxes):
            rec["query_box"] = row_boxes[0]
            for clip, box in zip(rec["clips"], row_boxes[1:]):
                clip["box"] = box
        write_image(tmp / "contact_sheet.png", sheet)
        (tmp / "clips.json").write_text(json_text({"queries": records, "notes": notes}) + "\n",
                                        encoding="utf-8")  # strict JSON: nan as null
        (tmp / "index.html").write_text(_html(records, notes), encoding="utf-8")
    return ClipExport(out_dir, written, out_dir / "contact_sheet.png", out_dir / "clips.json",
                      out_dir / "index.html", notes)


def _video_file(hit: pd.Series, videos: VideoPaths | None) -> Path | None:
    """The file of a hit's clip, through the store's :class:`VideoPaths` when given."""
    value = hit.get(C.VIDEO)
    if not isinstance(value, str) or not value:
        return None
    if videos is not None:
        return videos.path(value, hit[C.DATASET])
    if not Path(value).is_absolute():
        raise DataError(f"clip video '{value}' is relative to its dataset's root; pass "
                        "videos=VideoPaths(store) to export_clips to resolve it")
    return Path(value)


def query_frame(results: pd.DataFrame, query: int, videos: VideoPaths | None) -> np.ndarray | None:
    """The frame of stored query ``query`` of ``results`` (by its ``query_sample_id``), read from its video
    through ``videos``; None when the query is not a stored sample, or its row has no video."""
    if videos is None or "query_sample_id" not in results.columns:
        return None
    ids = results.loc[results["query"] == query, "query_sample_id"]
    meta = videos.store.meta
    if not len(ids) or C.VIDEO not in meta.columns or C.VIDEO_TIMESTAMP not in meta.columns:
        return None
    rows = np.flatnonzero(meta[C.SAMPLE_ID].astype(str).to_numpy() == str(ids.iloc[0]))
    if not len(rows):
        return None
    row = meta.iloc[int(rows[0])]
    path = videos.path(row[C.VIDEO], row[C.DATASET])
    return None if path is None else read_frame(path, float(row[C.VIDEO_TIMESTAMP]))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _html(records: list[dict], notes: list[str]) -> str:
    parts = ["<!doctype html><meta charset='utf-8'><title>Retrieved clips</title>",
             "<style>body{font-family:sans-serif}figure{display:inline-block;margin:6px;width:260px;"
             "vertical-align:top}figcaption{font-size:12px}video{width:256px}</style>",
             "<h1>Retrieved clips</h1><p><img src='contact_sheet.png' alt='contact sheet'></p>"]
    parts += [f"<p><em>{html.escape(n)}</em></p>" for n in notes]
    for rec in records:
        parts.append(f"<h2>Query {rec['query']}: {html.escape(str(rec['caption']))}</h2>")
        for clip in rec["clips"]:
            media = (f"<video src='{html.escape(clip['file'])}' controls loop muted></video>"
                     if clip["file"] else "<div>(no video)</div>")
            parts.append(f"<figure>{media}<figcaption>{html.escape(clip['caption'])}</figcaption></figure>")
    return "\n".join(parts) + "\n"
