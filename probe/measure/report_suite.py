"""The report's adapter to the metrics suite (:mod:`probe.measure.suite`, :mod:`metrics.suite`).

The suite is optional in a build: every function here degrades to "no metrics" when it
is not installed, and unknown metric names in ``--metrics`` or ``--fail-under`` are
refused before any work, listing the known ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.store.store import Store
from probe.validate import close_matches

log = logging.getLogger(__name__)

NOT_AVAILABLE = "metrics not available: the metrics suite (probe.measure.suite) is not installed in this build"


def _evaluate_module() -> Any | None:
    try:
        from probe.measure import suite as evaluate
    except ImportError as exc:
        log.info("metrics suite unavailable: %s", exc)
        return None
    return evaluate


def known_metric_names() -> list[str]:
    """Metric names the suite computes (empty when the suite is not installed)."""
    if _evaluate_module() is None:
        return []
    from metrics.suite import available

    return list(available())


def default_eval_config(bootstrap: int | None = None, metrics: Sequence[str] | None = None) -> Any:
    """The suite's configuration for reports: per-stage values on; ``bootstrap`` replicates and a
    subset of ``metrics`` if given (unknown names are refused, listing the known ones)."""
    from metrics.spec import MetricsConfig

    kwargs: dict[str, Any] = {"by": "stage"}
    if bootstrap is not None:
        kwargs["bootstrap"] = bootstrap
    if metrics:
        known = known_metric_names()
        for name in metrics:
            if name not in known:
                raise ConfigError(f"--metrics names unknown metric '{name}'; known metrics: {', '.join(known)}")
        kwargs["metrics"] = tuple(dict.fromkeys(metrics))
    return MetricsConfig(**kwargs)


def check_fail_under(fail_under: Sequence[tuple[str, float]]) -> None:
    """Refuse unknown metric names before any work, listing the known ones."""
    if not fail_under:
        return
    known = known_metric_names()
    if not known:
        raise ConfigError(f"--fail-under {fail_under[0][0]}: {NOT_AVAILABLE}; cannot gate on metrics")
    for name, _ in fail_under:
        if name not in known:
            near = close_matches(name, known, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise ConfigError(f"--fail-under names unknown metric '{name}'{hint}; known metrics: {', '.join(known)}")


def compute_metrics(store: Store, layers: Sequence[str], eval_config: Any = None,
                    cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """The suite's records for one store (empty when the suite is not installed), cached in ``cache_dir``."""
    ev = _evaluate_module()
    if ev is None:
        return []
    config = eval_config if eval_config is not None else default_eval_config()
    return list(ev.evaluate(store, list(layers), config, cache_dir=cache_dir))
