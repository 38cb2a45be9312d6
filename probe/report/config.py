"""How a report is configured: :class:`ReportConfig` and the parsing of ``--fail-under`` thresholds.

A frozen dataclass validated on construction, so the CLI parses its arguments into a
config and hands it to :func:`probe.report.build_report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.projection.layout import ProjectionConfig


@dataclass(frozen=True)
class ReportConfig:
    """What ``build_report`` does.

    ``layers``: layer names, or None for every layer all stores share. ``headline_layer``:
    the layer drawn per checkpoint and gated by ``fail_under`` (default: the last
    selected layer). ``fail_under``: ``(metric, threshold)`` pairs.
    """

    layers: tuple[str, ...] | None = None
    headline_layer: str | None = None
    fail_under: tuple[tuple[str, float], ...] = ()
    projection: ProjectionConfig = ProjectionConfig(max_points=5000)
    cache_dir: Path | None = None
    retrieval_queries: int = 3
    retrieval_k: int = 4
    overwrite: bool = False
    eval_config: Any = None

    def __post_init__(self) -> None:
        if self.retrieval_queries < 0 or self.retrieval_k < 1:
            raise ConfigError("retrieval_queries must be >= 0 and retrieval_k >= 1")


def parse_fail_under(items: Sequence[str]) -> tuple[tuple[str, float], ...]:
    """Parse ``METRIC=VALUE`` strings."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            threshold = float(value)
        except ValueError:
            threshold = math.nan
        if not sep or not name.strip() or not math.isfinite(threshold):
            raise ConfigError(f"--fail-under expects METRIC=VALUE with a number, e.g. ilisi=1.5; got {item!r}")
        out.append((name.strip(), threshold))
    return tuple(out)
