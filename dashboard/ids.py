"""Component ids of the dashboard: the one place they are spelled (layout and callbacks share them)."""

from __future__ import annotations

URL = "url"
STATE = "view-state"          # dcc.Store: the canonical view state (dict, mirrors the URL)
NOTICE = "notice"             # messages about a stale or unknown URL state
PREPARING = "preparing"       # how many (checkpoint, layer) maps are prepared, while the others are being prepared
PREPARING_TICK = "preparing-tick"  # dcc.Interval polling that count until every map is ready

STORE = "ctl-store"           # checkpoint (one store each)
LAYER = "ctl-layer"
COLOR = "ctl-color"
TASK = "flt-task"
STAGE = "flt-stage"
EMBODIMENT = "flt-embodiment"
EPISODE = "flt-episode"
COMPARE = "ctl-compare"       # checkpoints shown as small multiples
CLEAR = "btn-clear"

MAP = "map"
LEGEND = "legend"
MAP_INFO = "map-info"
PANELS = "panels"
PANEL = "panel"               # pattern-matching type of the small-multiple graphs: {"type": PANEL, "index": i}

HOVER = "hover-card"
NEIGHBOURS = "neighbours"
CLIP = "clip"                 # pattern-matching type of a clip's "highlight" button: {"type": CLIP, "index": sample_id}

SELECTION = "selection"       # dcc.Store: compact description of a lasso / box selection
SELECTION_TABLE = "selection-table"
CSV_BUTTON = "btn-csv"
DOWNLOAD = "download"

METRICS = "metrics"
METRIC_STAGE = "metric-stage"  # pattern-matching type of a per-stage row button: {"type": METRIC_STAGE, "index": stage}

DRAWN = "drawn"               # dcc.Store: what the map currently shows (so updates can be patches)
PANELS_DRAWN = "panels-drawn"
METRICS_KEY = "metrics-key"     # dcc.Store: what the metrics panel shows (skip re-sending it)
NEIGHBOURS_KEY = "neighbours-key"
