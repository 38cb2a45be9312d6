"""How a report is configured: :class:`ReportConfig` and the parsing of ``--fail-under`` thresholds.

A frozen dataclass validated on construction, so the CLI parses its arguments into a
config and hands it to :func:`probe.report.build_report`.
"""

from __future__ import annotations

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
    selected layer). ``fail_under``: ``(metric, threshold)`` pairs, judged on the estimate or, with
    ``gate="bound"``, on the interval's pessimistic bound. ``baseline`` / ``max_drop``: a previous
    report's metrics.json and ``(metric, allowed drop)`` pairs (:mod:`probe.report.gates`). ``data_roots``:
    ``(dataset name, folder)`` pairs for datasets that moved since extraction (``--data-root``;
    the retrieval examples read their frames from there). ``embodiments``: the embodiments the metrics of every
    store measure (``--embodiments``; None: all; checked before any work, :mod:`probe.measure.selection`).
    ``detail``: the store whose every layer is measured and drawn, and whose retrieval examples and coverage gaps
    the report shows (``--detail``; None: the last checkpoint in the report's order, series then step or level).
    """

    layers: tuple[str, ...] | None = None
    headline_layer: str | None = None
    fail_under: tuple[tuple[str, float], ...] = ()
    gate: str = "value"
    baseline: Path | None = None
    max_drop: tuple[tuple[str, float], ...] = ()
    projection: ProjectionConfig = ProjectionConfig(max_points=5000)
    cache_dir: Path | None = None
    retrieval_queries: int = 3
    retrieval_k: int = 4
    overwrite: bool = False
    eval_config: Any = None
    data_roots: tuple[tuple[str, str], ...] = ()
    embodiments: tuple[str, ...] | None = None
    detail: Path | None = None

    def __post_init__(self) -> None:
        if self.retrieval_queries < 0 or self.retrieval_k < 1:
            raise ConfigError("retrieval_queries must be >= 0 and retrieval_k >= 1")
        if self.gate not in ("value", "bound"):
            raise ConfigError(f"--gate must be 'value' or 'bound', got {self.gate!r}")
        if self.max_drop and self.baseline is None:
            raise ConfigError("--max-drop needs --baseline OLD/metrics.json (the report to compare with)")
