"""The points file ``probe export`` writes: its column names and how such a file is recognised.

Spelled here, on the store's floor, so that :mod:`probe.projection.export` writes these names and
:mod:`probe.store.importer` (``probe import``) recognises the file and takes it back as a store: the
latents become the exported layer and the layout columns, derived from the store, are dropped.

A points file holds the store's metadata columns, ``x`` / ``y`` / ``neighbors`` / ``text``,
optionally ``thumbnail`` and, unless exported with ``--no-latents``, ``vector`` (the latents); its
parquet schema metadata under :data:`METADATA_KEY` records the store, its fingerprint, the layer,
the projection and, under :data:`DATASETS`, the store's dataset roots (where its relative ``video``
values lie), which an imported store takes over. A file that lost that metadata (rewritten by another tool) is still
recognised by its four layout columns, which no import source may otherwise hold.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

X_COORD = "x"  # the projection, with Y_COORD
Y_COORD = "y"
NEIGHBORS = "neighbors"
TEXT = "text"
THUMBNAIL = "thumbnail"
VECTOR = "vector"  # the latents, one list<float32> per row
METADATA_KEY = b"embodiment_probe"  # the file-level metadata (JSON) export writes
DATASETS = "datasets"  # its key of the dataset roots: [{"name", "root"[, "media_roots"]}], as a store's provenance

#: the columns export always adds beside the store's metadata
MARK_COLUMNS: tuple[str, ...] = (X_COORD, Y_COORD, NEIGHBORS, TEXT)
#: every column export derives from the store and its layout: dropped when the file is imported
LAYOUT_COLUMNS: tuple[str, ...] = (*MARK_COLUMNS, THUMBNAIL)


def export_info(metadata: Mapping[bytes, bytes] | None) -> dict[str, Any]:
    """Export's file-level metadata from a parquet schema's metadata ({} when absent or unreadable)."""
    raw = (metadata or {}).get(METADATA_KEY)
    try:
        info = json.loads(raw) if raw is not None else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


@dataclass(frozen=True)
class PointsFile:
    """A parquet file ``probe export`` wrote, as its schema (the footer) tells."""

    columns: tuple[str, ...]  # every column of the file, in order
    info: dict[str, Any] = field(default_factory=dict)  # export's metadata; {} when the file lost it

    @property
    def layer(self) -> str | None:
        """The exported layer, or None when the file no longer says."""
        layer = self.info.get("layer")
        return str(layer) if layer else None

    @property
    def has_latents(self) -> bool:
        """False for a file exported with ``--no-latents``."""
        return VECTOR in self.columns

    @property
    def dropped(self) -> tuple[str, ...]:
        """The layout columns the file holds, in file order."""
        return tuple(c for c in self.columns if c in LAYOUT_COLUMNS)

    @property
    def datasets(self) -> list[dict[str, Any]] | None:
        """The dataset roots export recorded, as a store's provenance holds them (``name``, absolute
        ``root``, optional ``media_roots``); None for a file that records none (exported before roots
        were recorded, or rewritten by another tool). Malformed entries and a root that is a file
        system's root (which would confine nothing) are left out."""
        entries = self.info.get(DATASETS)
        if not isinstance(entries, list):
            return None
        out = []
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                continue
            root = entry.get("root")
            if not _confining(root):
                continue
            extra = [m for m in entry.get("media_roots") or [] if _confining(m)]
            out.append({"name": entry["name"], "root": root, **({"media_roots": extra} if extra else {})})
        return out

    @property
    def meta_columns(self) -> list[str]:
        """The store's metadata columns the file carries."""
        return [c for c in self.columns if c not in LAYOUT_COLUMNS and c != VECTOR]


def _confining(root: Any) -> bool:
    """An absolute folder other than a file system's root."""
    return isinstance(root, str) and os.path.isabs(root) and os.path.dirname(os.path.normpath(root)) != \
        os.path.normpath(root)


def points_file(schema: Any) -> PointsFile | None:
    """``schema`` (a ``pyarrow.Schema``) read as a points file, or None when ``probe export`` did not write it:
    recognised by export's metadata (with a layer) or, where that was lost, by its layout columns."""
    names = tuple(schema.names)
    info = export_info(schema.metadata)
    if info.get("layer") or set(MARK_COLUMNS) <= set(names):
        return PointsFile(names, info)
    return None
