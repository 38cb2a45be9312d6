"""The alignment report: one self-contained HTML page, ``metrics.json`` and ``summary.md``.

``build_report(stores, out, config)`` opens the stores (checkpoints), computes the
metrics suite per store and layer (``probe.measure.suite``), lays out every checkpoint
with UMAP (warm-started along the series so panels are comparable), picks
retrieval examples and coverage gaps, derives a verdict from the numbers, and
writes the three files atomically. ``--fail-under`` thresholds are checked after
writing; the CLI exits non-zero when one fails so a training pipeline can gate on it.

Verdict rules (documented in :data:`VERDICT_RULES`):

* mixing ratio = value / null of the first available of ``ilisi``,
  ``knn_embodiment_mixing``, ``kbet`` (the null is the value with embodiment labels
  shuffled, i.e. perfect mixing): **shared** when >= 0.8, **partly shared** when
  >= 0.5, **separate** below; below 0.8 the verdict says whether the permutation test
  (99 shuffles) finds the space less mixed than chance (p < 0.05) or cannot tell;
* stage structure is **conserved** only when the permutation test of ``clisi`` finds
  stages kept beyond shuffled stages (p < 0.05; its interval above the null where it has
  one) and ``stage_transfer_acc_robot_to_human`` is above its null; otherwise "stage
  conservation not established" (never "lost"); a mixed space is **shared** only with
  conserved stages, otherwise "mixed, stages not established";
* stages whose per-stage mixing ratio is below 0.5 are listed as where the space
  is not shared; alignment "emerges" at the first training step whose verdict is
  shared.

The package holds one concept a module: ``config`` (:class:`ReportConfig`), ``suite``
(the metrics-suite adapter), ``checkpoints``, ``records`` (reading metric records),
``verdicts``, ``examples`` (retrieval examples, frames, coverage gaps), ``assembly``
(:func:`collect`), ``summary`` (``metrics.json``, ``summary.md``), ``page`` (the HTML)
and ``build`` (:func:`build_report`).
"""
