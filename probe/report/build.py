"""Building a report: :func:`build_report` collects, renders and writes the three files atomically.

The output directory is checked before any work; ``--fail-under`` failures do not
raise but come back in the :class:`ReportResult` for the caller (the CLI) to act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.atomic import atomic_dir, json_text
from probe.report.assembly import ReportData, collect
from probe.report.config import ReportConfig
from probe.report.page import render_html
from probe.report.summary import metrics_json, summary_markdown
from probe.validate import OutputKind, check_output_path

# what --overwrite may replace: a directory holding nothing but a report's files
REPORT_KIND = OutputKind("report directory", "report.html", files=("report.html", "metrics.json", "summary.md"))


@dataclass(frozen=True)
class ReportResult:
    """Where the report went and whether a ``--fail-under`` gate failed."""

    out: Path
    failures: tuple[dict[str, Any], ...]
    data: ReportData

    @property
    def failed(self) -> bool:
        return bool(self.failures)


def build_report(store_paths: Sequence[str | Path], out: str | Path, config: ReportConfig = ReportConfig(), *,
                 progress: bool = False) -> ReportResult:
    """Compute and write ``report.html``, ``metrics.json`` and ``summary.md`` into ``out`` atomically.

    Raises before any work on an existing ``out`` (unless ``config.overwrite``), an
    unknown ``--fail-under`` metric or a layer missing from a store. Threshold failures
    do not raise: they are in the result (and the files) for the caller to act on.
    """
    check_output_path(out, config.overwrite, kind=REPORT_KIND)
    data = collect(store_paths, config, progress=progress)
    page = render_html(data)
    with atomic_dir(out, overwrite=config.overwrite, kind=REPORT_KIND) as tmp:
        (tmp / "report.html").write_text(page, encoding="utf-8")
        (tmp / "metrics.json").write_text(json_text(metrics_json(data)) + "\n", encoding="utf-8")
        (tmp / "summary.md").write_text(summary_markdown(data), encoding="utf-8")
    return ReportResult(Path(out), tuple(data.failures), data)
