"""What the dashboard shows, computed before the server starts; and the view state in the URL.

``prepare(stores)`` opens every store (one per checkpoint), lays out each layer in
2-D (cached, aligned across checkpoints so a point's move means something), builds a
FAISS index over the human rows for nearest-clip queries, computes the metrics
records and registers the media files. Callbacks only read a :class:`Prepared`.

``ViewState`` is what the URL holds: checkpoint, layer, colour, filters, the selected
point and highlighted clip (by ``sample_id``, stable across checkpoints) and the
checkpoints shown side by side. ``decode_state`` never fails: unknown or stale values
fall back to defaults and come back as notices for the user.

One concept a module: ``viewstate`` (the URL state), ``prepared`` (the data classes),
``loading`` (:func:`prepare`), ``neighbours`` (nearest-clip search), ``metrics_panel``
(metrics records and coverage advice) and ``events`` (events to state); the names
used elsewhere are re-exported here.
"""

from __future__ import annotations

from dashboard.state.events import apply_event, click_row, mark_points, selected_clips
from dashboard.state.loading import PROGRESS_LEVELS, prepare
from dashboard.state.metrics_panel import HEADLINE, STAGE_COLUMNS
from dashboard.state.neighbours import NeighbourSearch
from dashboard.state.prepared import Checkpoint, Clip, Prepared, View
from dashboard.state.viewstate import (FILTERS, MAX_PANELS, Choices, ColorBy, ViewState, decode_state,
                                       encode_state, state_from_dict)

__all__ = [
    "Checkpoint",
    "Choices",
    "Clip",
    "ColorBy",
    "FILTERS",
    "HEADLINE",
    "MAX_PANELS",
    "NeighbourSearch",
    "PROGRESS_LEVELS",
    "Prepared",
    "STAGE_COLUMNS",
    "View",
    "ViewState",
    "apply_event",
    "click_row",
    "decode_state",
    "encode_state",
    "mark_points",
    "prepare",
    "selected_clips",
    "state_from_dict",
]
