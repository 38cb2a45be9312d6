"""What the metrics panel shows: its headline rows and per-stage columns, and each layer's metrics record and
coverage advice.

The rows and columns derive from the one headline list (:func:`metrics.spec.headline_metrics`).
Records come from :func:`probe.measure.suite.evaluate` and its cache; coverage advice is
cached beside it. Computed at prepare time, never in a callback.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from probe.store.store import Store

log = logging.getLogger(__name__)

STAGE_FAMILIES = 3  # the per-stage table shows the first headline metric of this many families


def headline_order() -> tuple[str, ...]:
    """Every headline metric, in headline order (:func:`metrics.spec.headline_metrics`)."""
    from metrics import suite  # noqa: F401  (importing the suite registers every metric)
    from metrics.spec import headline_metrics

    return headline_metrics()


def stage_columns(names: Collection[str], headline: Sequence[str], families: int = STAGE_FAMILIES) -> list[str]:
    """Columns of the per-stage table among ``names``: the first headline metric of each family, in
    headline order, for at most ``families`` families."""
    from metrics.spec import REGISTRY

    out: list[str] = []
    seen: set[Any] = set()
    for name in headline:
        spec = REGISTRY.get(name)
        if name in names and spec is not None and spec.family not in seen:
            seen.add(spec.family)
            out.append(name)
    return out[:families]


def layer_metrics(store: Store, layer: str, config: Any, cache: Path | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The layer's metrics record and coverage gaps.

    The record comes from :func:`probe.measure.suite.evaluate` with its cache (shared with
    ``probe metrics``, the report and the demo); coverage advice is cached beside it
    under ``cache/dashboard-coverage``. A layer on which the metrics cannot be computed
    (one embodiment ...) gets an ``error`` record instead of failing.
    """
    import json

    from probe.cache.directory import keep_within, touch
    from probe.errors import ProbeError
    from probe.measure.suite import evaluate

    try:
        record = evaluate(store, layer, config, cache_dir=cache)[0]
    except ProbeError as exc:
        log.warning("no metrics for %s layer %s: %s", store.path, layer, exc)
        record = {"error": str(exc)}
    key = hashlib.sha256(json.dumps([store.fingerprint, layer]).encode()).hexdigest()[:24]
    file = cache / "dashboard-coverage" / f"{key}.json" if cache is not None else None
    if file is not None and file.is_file():
        try:
            gaps = json.loads(file.read_text(encoding="utf-8"))["gaps"]
            touch(file)
            return record, gaps
        except (ValueError, KeyError):
            log.info("ignoring unreadable coverage cache %s", file)
    gaps = _coverage_gaps(store.latents(layer))
    if file is not None:
        from probe.atomic import write_json

        file.parent.mkdir(parents=True, exist_ok=True)
        write_json(file, {"gaps": gaps})
        keep_within(file.parent, keep=file)
    return record, gaps


def _coverage_gaps(latents: Any) -> list[str]:
    """Plain sentences on which robot stages human data covers poorly (:mod:`probe.measure.coverage`)."""
    from probe.measure.coverage import coverage
    from probe.errors import ProbeError

    try:
        return coverage(latents).advice()
    except ProbeError as exc:
        return [f"coverage not computed: {exc}"]
