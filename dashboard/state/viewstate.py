"""The view state the URL holds, and its round trip through a query string.

:class:`ViewState` is checkpoint, layer, colour, filters, the selected point and
highlighted clip (by ``sample_id``) and the checkpoints compared side by side;
:func:`encode_state` writes it, :func:`decode_state` reads it back and never fails
(unknown or stale values fall back to defaults and come back as notices).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, urlencode

MAX_PANELS = 4  # a page holds only a handful of WebGL contexts


class ColorBy(str, Enum):
    """What colours the points of the map."""

    EMBODIMENT = "embodiment"
    TASK = "task"
    STAGE = "stage"
    PROGRESS = "progress"
    EPISODE = "episode"
    CHECKPOINT = "checkpoint"


FILTERS: tuple[str, ...] = ("task", "stage", "embodiment", "episode")


@dataclass(frozen=True)
class ViewState:
    """Everything that defines a view; all values are plain strings so it round-trips through a URL."""

    store: str
    layer: str
    color: ColorBy = ColorBy.EMBODIMENT
    task: tuple[str, ...] = ()
    stage: tuple[str, ...] = ()
    embodiment: tuple[str, ...] = ()
    episode: tuple[str, ...] = ()
    point: str | None = None
    clip: str | None = None
    compare: tuple[str, ...] = field(default=())

    def filters(self) -> dict[str, tuple[str, ...]]:
        """The active filters: column -> allowed values (empty tuple = no filter)."""
        return {name: getattr(self, name) for name in FILTERS}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["color"] = self.color.value
        for key in (*FILTERS, "compare"):
            d[key] = list(d[key])
        return d

    def with_(self, **changes: Any) -> ViewState:
        """A copy with some fields changed (sequences become tuples)."""
        for key in (*FILTERS, "compare"):
            if key in changes:
                changes[key] = tuple(changes[key] or ())
        if "color" in changes:
            changes["color"] = ColorBy(changes["color"])
        return replace(self, **changes)


@dataclass(frozen=True)
class Choices:
    """The values a view state may take (from the prepared data)."""

    stores: Sequence[str]
    layers: Sequence[str]
    categories: Mapping[str, Sequence[str]]  # filter name -> allowed values
    points: Mapping[str, Any] | None = None  # store name -> container of its sample ids (``in`` is enough)


def encode_state(state: ViewState, default: ViewState | None = None) -> str:
    """The query string (with leading ``?``) of a state; fields equal to ``default`` are left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in state.to_dict().items():
        if default is not None and value == default.to_dict()[key] and key not in ("store", "layer"):
            continue
        if value is None or value == []:
            continue
        if isinstance(value, list):
            pairs.extend((key, str(v)) for v in value)
        else:
            pairs.append((key, str(value)))
    return "?" + urlencode(pairs)


def decode_state(search: str | None, choices: Choices, default: ViewState) -> tuple[ViewState, list[str]]:
    """Parse a query string into a valid state; returns the state and notices about dropped values."""
    notices: list[str] = []
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl((search or "").lstrip("?"), keep_blank_values=False):
        values.setdefault(key, []).append(value)
    unknown = sorted(set(values) - set(default.to_dict()))
    if unknown:
        notices.append(f"ignored unknown URL parameter(s): {', '.join(unknown)}")

    def one(key: str, allowed: Sequence[str], fallback: str) -> str:
        got = values.get(key)
        if not got:
            return fallback
        if got[0] in allowed:
            return got[0]
        notices.append(f"{key} '{got[0]}' is not available (choose from: {', '.join(list(allowed)[:8])}); "
                       f"showing '{fallback}'")
        return fallback

    store = one("store", choices.stores, default.store)
    layer = one("layer", choices.layers, default.layer)
    color = one("color", [c.value for c in ColorBy], default.color.value)
    filters: dict[str, tuple[str, ...]] = {}
    for name in FILTERS:
        allowed = set(choices.categories.get(name, ()))
        got = values.get(name, [])
        kept = tuple(dict.fromkeys(v for v in got if v in allowed))
        dropped = [v for v in got if v not in allowed]
        if dropped:
            notices.append(f"ignored unknown {name} value(s): {', '.join(dropped[:5])}")
        filters[name] = kept
    compare_got = values.get("compare", [])
    compare = tuple(dict.fromkeys(v for v in compare_got if v in choices.stores))[:MAX_PANELS]
    if len(compare) < len(set(compare_got)):
        notices.append(f"compare holds at most {MAX_PANELS} known checkpoints; ignored the rest")
    points = {}
    for key in ("point", "clip"):
        got = values.get(key)
        sid = got[0] if got else None
        if sid is not None and choices.points is not None and sid not in choices.points.get(store, ()):
            notices.append(f"{key} '{sid}' is not a point of checkpoint '{store}'; nothing selected")
            sid = None
        points[key] = sid
    state = ViewState(store=store, layer=layer, color=ColorBy(color), compare=compare, **filters, **points)
    return state, notices


def state_from_dict(d: Mapping[str, Any] | None, default: ViewState, choices: Choices | None = None) -> ViewState:
    """The state held in the page's ``dcc.Store`` (a dict); ``default`` when empty or malformed.

    With ``choices``, values that are not available (a crafted or stale request) are
    replaced as :func:`decode_state` would.
    """
    if not d or not isinstance(d, Mapping):
        return default
    try:
        state = default.with_(**{k: d[k] for k in default.to_dict() if k in d})
    except (TypeError, ValueError):
        return default
    if choices is None:
        return state
    state, _ = decode_state(encode_state(state), choices, default)
    return state
