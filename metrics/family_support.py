"""What the metric families share: a :class:`MetricSpec` with its calibration verdict and range, the
``requires`` checks (a human embodiment; something seen by both embodiments), the (human, other) pair that
paired metrics compare, and the thread limit of small fits."""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics.calibration import NO_INTERVAL
from metrics.ranges import BOUNDS
from metrics.spec import By, Context, Labels, MetricSpec

STAGE_TASK = frozenset({By.STAGE, By.TASK})
TASK = frozenset({By.TASK})


def spec(name: str, *args: Any, **kwargs: Any) -> MetricSpec:
    """A :class:`MetricSpec` carrying its calibration verdict (:data:`metrics.calibration.NO_INTERVAL`) and its
    range (:data:`metrics.ranges.BOUNDS`)."""
    return MetricSpec(name, *args, uncalibrated=NO_INTERVAL.get(name, ""), bounds=BOUNDS.get(name), **kwargs)


def n_labels(values: np.ndarray) -> int:
    return len(np.unique(values))


def few_threads(n_rows: int):
    """One BLAS/OpenMP thread for small fits: on a busy machine thread spin-waits cost more than they save."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1) if n_rows < 50_000 else threadpool_limits(limits=None)


def requires_human(ctx: Context, labels: Labels) -> str | None:
    human = ctx.config.human
    embs = set(np.unique(labels.embodiment).tolist())
    if human not in embs:
        return (f"no embodiment named '{human}' (embodiments: {sorted(embs)}); set MetricsConfig.human "
                "(--human) to the human embodiment's name")
    return None


def requires_shared(what: str, first_other: bool):
    """A ``requires`` for metrics comparing the embodiments on what both have seen (``what``: "task" or "(task,
    stage)"), the human against the first other embodiment (as :func:`two_sides`) or all of them: skipped with one
    note when nothing is shared, instead of failing once per scope, replicate and null."""
    def requires(ctx: Context, labels: Labels) -> str | None:
        key = ("shared", what, first_other)
        if key not in ctx.cache and not requires_human(ctx, labels):
            human, emb = ctx.config.human, labels.embodiment
            rest = sorted(set(np.unique(emb).tolist()) - {human})[: 1 if first_other else None]
            keys = labels.task.astype(str)
            if what != "task":
                keys = np.char.add(np.char.add(keys, "\x1f"), labels.stage.astype(str))
            shared = np.intersect1d(keys[emb == human], keys[np.isin(emb, rest)]).size
            ctx.cache[key] = None if shared else (f"no {what} is seen by both '{human}' and "
                                                  f"{', '.join(map(repr, rest))}{_unshared_fix(labels, human, rest)}")
        return requires_human(ctx, labels) or ctx.cache[key]
    return requires


def _unshared_fix(labels: Labels, human: str, rest: list[str]) -> str:
    """How to share what :func:`requires_shared` found unshared: one task name (``probe extract --task``) when
    no task is shared, else the stage labels (``probe extract --stages``), since a task is shared."""
    emb, task = labels.embodiment, labels.task.astype(str)
    if np.intersect1d(task[emb == human], task[np.isin(emb, rest)]).size == 0:
        return ("; their task names differ: give both embodiments one task name with probe extract --task "
                "EMBODIMENT=TEXT")
    return "; they share a task but no stage name in it: label both embodiments' stages alike (probe extract --stages)"


def two_sides(ctx: Context, embodiment: np.ndarray) -> tuple[str, str]:
    """(human, other): the pair the paired and distribution metrics compare (first other embodiment, in sorted
    order; the caller keeps another pair by selecting the rows of two embodiments, ``--embodiments``)."""
    human = ctx.config.human
    others = sorted(set(np.unique(embodiment).tolist()) - {human})
    if len(others) > 1:
        ctx.note(f"paired and distribution metrics compare '{human}' with '{others[0]}' only "
                 f"(also present: {', '.join(others[1:])}); to compare '{human}' with another, keep the two "
                 f"with --embodiments (e.g. --embodiments {human},{others[1]})")
    return human, others[0]


def prep_fit(ctx: Context, labels: Labels, rows: np.ndarray) -> dict[str, Any]:
    """Fitted metrics refit on each replicate's rows; ``cache`` keeps what several metrics share."""
    return {"rows": rows, "cache": {}}
