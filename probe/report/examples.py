"""What the report shows of the data itself: retrieval examples with their video frames, and coverage gaps.

Frames are decoded with PyAV and embedded as PNG data URIs (a missing video degrades
to a caption) in an HTML grid (:func:`examples_html`); coverage gaps come from
:mod:`probe.measure.coverage` when it is installed.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe import figures as F
from probe.errors import ProbeError
from probe.images import data_uri
from probe.store.media import VideoPaths
from probe.store.store import Store

log = logging.getLogger(__name__)


def frame_image(store: Store, row: int, width: int = 160, videos: VideoPaths | None = None) -> str | None:
    """The video frame of a store row as a PNG data URI, or None when the store has no video for it.

    The file comes from ``videos`` (default ``VideoPaths(store)``): only video files inside the
    store's dataset roots are read; a refused or missing one degrades to a caption (logged).
    """
    meta = store.meta
    if C.VIDEO not in meta.columns or C.VIDEO_TIMESTAMP not in meta.columns:
        return None
    ts = meta.at[row, C.VIDEO_TIMESTAMP]
    found = (videos or VideoPaths(store)).find(meta.at[row, C.VIDEO], meta.at[row, C.DATASET])
    if found.problem is not None:
        log.warning("no frame for row %d of store '%s': %s", row, store.path, found.problem)
    if found.path is None:
        return None
    path = found.path
    try:
        import av

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            container.seek(max(int((float(ts) - 0.5) / stream.time_base), 0), stream=stream, backward=True)
            chosen = None
            for frame in container.decode(stream):
                chosen = frame
                if frame.pts is not None and float(frame.pts * stream.time_base) >= float(ts) - 1e-3:
                    break
            if chosen is None:
                return None
            height = max(int(round(chosen.height * width / chosen.width)) // 2 * 2, 2)
            return data_uri(chosen.to_ndarray(format="rgb24", width=width, height=height))
    except Exception as exc:  # a missing or broken video degrades to a caption, and says so in the log
        log.warning("cannot read frame of row %d from '%s': %s", row, path, exc)
        return None


# The examples are an HTML grid, not a figure: captions wrap inside their own cell, so at any page width they
# neither overlap their neighbours nor run off the page (a plotly subplot title cannot wrap). Scoped to .rx.
EXAMPLES_CSS = (".rx{display:grid;gap:14px 12px;margin:8px 0 16px}.rx figure{margin:0;min-width:0}"
                ".rx img{display:block;max-width:100%;height:auto;border-radius:3px}"
                ".rx .noframe{background:#f3f3f3;color:#888;font-size:11px;padding:24px 6px;text-align:center}"
                ".rx figcaption{font-size:11px;line-height:1.35;color:#444;margin-top:4px;overflow-wrap:anywhere}"
                ".rx figcaption b{color:#222}.rx figure{padding-left:6px;border-left:4px solid "
                f"{F.EMBODIMENT_COLORS[C.HUMAN]}}}.rx .query{{border-left-color:{F.EMBODIMENT_COLORS[C.ROBOT]}}}")


def _cell(thumb: F.Thumb, title: str, kind: str) -> str:
    """One frame of the grid: the image (or a placeholder) and its caption, one label per line."""
    parts = thumb.caption.split(" | ")
    score = parts.pop() if len(parts) > 1 and parts[-1].startswith(("sim ", "d ")) else None
    head = f"{title}: {parts[0]}" + (f" · {score}" if score else "")
    image = (f"<img src='{html.escape(thumb.image, quote=True)}' alt='{html.escape(thumb.caption, quote=True)}'>"
             if thumb.image else "<div class='noframe'>no video frame</div>")
    lines = "<br>".join(html.escape(p) for p in parts[1:])
    return (f"<figure class='{kind}' data-row='{thumb.row}' title='{html.escape(thumb.caption, quote=True)}'>"
            f"{image}<figcaption><b>{html.escape(head)}</b>{'<br>' if lines else ''}{lines}</figcaption></figure>")


def examples_html(examples: Sequence[F.RetrievalExample]) -> str:
    """The report's retrieval examples: one grid row per robot query frame, then its matches, best first.

    Each cell is a ``<figure>`` (``data-row``: the store row) with the frame and a wrapping caption;
    a note when there are no examples.
    """
    if not examples:
        return "<div class='note'>no retrieval examples</div>"
    k = max(len(e.matches) for e in examples)
    cells = []
    for e in examples:
        cells.append(_cell(e.query, "query", "query"))
        cells += [_cell(m, f"#{j + 1}", "match") for j, m in enumerate(e.matches)]
        cells += ["<div></div>"] * (k - len(e.matches))
    return (f"<style>{EXAMPLES_CSS}</style><div class='rx' id='retrieval-examples' "
            f"style='grid-template-columns:repeat({k + 1},minmax(0,1fr))'>{''.join(cells)}</div>")


def _caption(meta: pd.DataFrame, row: int) -> str:
    r = meta.iloc[row]
    return f"{r[C.EMBODIMENT]} | {r[C.TASK]} | {r[C.STAGE]} | ep {r[C.EPISODE]} f {r[C.FRAME]}"


def retrieval_examples(store: Store, layer: str, n_queries: int = 3, k: int = 4, metric: str = "cosine", *,
                       data_roots: Mapping[str, str | Path] | None = None
                       ) -> tuple[list[F.RetrievalExample], list[str]]:
    """Robot query frames (one per stage, mid-stage) and their top-k human clips in ``layer``.

    Frames are read through :class:`probe.store.media.VideoPaths` (``data_roots``: folders of
    datasets that moved since extraction).

    The clips are chosen as the dashboard chooses them for a clicked frame
    (:func:`probe.retrieval.retriever.select_clips`: one per episode, the query's own
    episode excluded), by exact search over the other embodiment's rows.
    """
    from metrics.knn import Metric, knn
    from probe.retrieval.retriever import ClipReference, score_of, select_clips

    meta = store.meta
    emb = meta[C.EMBODIMENT].astype(str)
    kinds = sorted(emb.unique())
    if len(kinds) < 2:
        return [], ["retrieval examples need two embodiments; this store has one"]
    query_kind = C.ROBOT if C.ROBOT in kinds else kinds[-1]
    q_rows = np.flatnonzero((emb == query_kind).to_numpy())
    r_rows = np.flatnonzero((emb != query_kind).to_numpy())
    qmeta = meta.iloc[q_rows]
    chosen: list[int] = []
    for stage in list(dict.fromkeys(qmeta[C.STAGE].astype(str)))[:n_queries]:
        sub = qmeta[qmeta[C.STAGE].astype(str) == stage]
        first_ep = sub[C.EPISODE].iloc[0]
        sub = sub[sub[C.EPISODE] == first_ep]
        chosen.append(int(sub.index[np.argmin(np.abs(sub[C.STAGE_PROGRESS].to_numpy() - 0.5))]))
    X = store.matrix(layer)
    reference = np.asarray(X[r_rows])

    def search(queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        nb = knn(queries, reference, k=depth, metric=metric)
        return nb.distances, nb.indices

    own = C.episode_keys(meta.iloc[chosen])
    clips = select_clips(search, np.asarray(X[chosen]), min(k, len(r_rows)), ClipReference.of(meta.iloc[r_rows]),
                         per_episode=1, window=1.0, exclude_episodes=[{e} for e in own])
    videos = VideoPaths(store, data_roots)
    for warning in videos.warnings:
        log.warning(warning)
    examples = []
    for row, found in zip(chosen, clips):
        matches = []
        for j, dist in found:
            ref = int(r_rows[j])
            sim = f" | sim {score_of(dist, metric):.2f}" if Metric(metric) is Metric.COSINE else f" | d {dist:.2f}"
            matches.append(F.Thumb(_caption(meta, ref) + sim, frame_image(store, ref, videos=videos), ref))
        examples.append(F.RetrievalExample(F.Thumb(_caption(meta, row), frame_image(store, row, videos=videos), row),
                                           matches))
    notes = []
    if not any(e.query.image for e in examples):
        notes.append("the store has no video columns: retrieval examples are shown as labels")
    return examples, notes


def coverage_gaps(store: Store, layer: str, metric: str = "cosine"
                  ) -> tuple[pd.DataFrame | None, dict[str, Any] | None, list[str]]:
    """Robot (task, stage) groups worst covered by human data, from ``probe.measure.coverage`` when installed.

    Returns a ``label`` / ``gap`` table (gap = share of the group's robot states beyond
    the calibrated threshold), the coverage summary for ``metrics.json`` and notes.
    """
    from probe.measure.coverage import coverage

    try:
        result = coverage(store.latents(layer), metric=metric)
    except ProbeError as exc:
        return None, None, [f"coverage not computed: {exc}"]
    stages = result.stages
    frame = pd.DataFrame({"label": (stages[C.TASK].astype(str) + " / " + stages[C.STAGE].astype(str)).to_numpy(),
                          "gap": stages["share_beyond"].astype(float).to_numpy()})
    summary = result.to_dict()
    summary = {k: summary[k] for k in ("a", "b", "layer", "threshold", "share_beyond", "advice", "stages")}
    return frame, summary, [f"coverage: {line}" for line in result.advice()]
