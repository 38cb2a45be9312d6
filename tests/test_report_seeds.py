"""A diversity sweep trained with several seeds: the emergence view gives each level the mean over seeds
with a t interval across them, and labels name the seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from conftest import clustered_latents, synthetic_meta
from metrics.spec import MetricsConfig
from probe.projection.layout import ProjectionConfig
from probe.report.build import build_report
from probe.report.config import ReportConfig
from probe.report.verdicts import verdict

SEEDS = (0, 1, 2)
# level -> distance between the embodiments (mixing rises with diversity) and the transfer gain per seed
LEVELS = {0: (6.0, (-0.10, -0.02, 0.04)), 100: (0.2, (0.05, 0.12, 0.16))}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    meta = synthetic_meta(n_episodes=4, frames=12)
    paths = []
    from probe.store.writer import write_store

    for level, (shift, gains) in LEVELS.items():
        for seed, gain in zip(SEEDS, gains):
            X = clustered_latents(meta, shift=shift, seed=10 * seed + level)
            checkpoint = {"recipe": "cotrained", "diversity": level, "seed": seed, "step": 50,
                          "transfer_gain": {"value": gain, "ci": [gain - 0.05, gain + 0.05]}}
            paths.append(write_store(root / f"seed{seed}" / f"level-{level:03d}", meta, {"trunk": X},
                                     provenance={"checkpoint": checkpoint}).path)
    config = ReportConfig(projection=ProjectionConfig(method="pca"), retrieval_queries=0,
                          eval_config=MetricsConfig(bootstrap=0, null_repeats=2, k=20, permutations=0,
                                                    metrics=("ilisi", "stage_transfer_acc_robot_to_human")))
    return build_report(paths, root / "report", config)


def test_each_level_is_one_row_with_the_mean_and_a_t_interval_across_seeds(report):
    rows = json.loads((report.out / "metrics.json").read_text())["emergence"]
    assert [(r["series"], r["level"]) for r in rows] == [("cotrained", 0), ("cotrained", 100)]
    data = report.data
    for row in rows:
        assert row["seeds"] == list(SEEDS)
        # the mean of what each seed's own verdict reads, with Student's t interval over the three values
        ratios = [verdict(data.record(cp, data.headline)).ratio for cp in data.checkpoints
                  if cp.diversity == row["level"]]
        assert len(ratios) == 3 and row["mixing"]["seeds"] == pytest.approx(ratios)
        assert row["mixing"]["value"] == pytest.approx(np.mean(ratios))
        lo, hi = stats.t.interval(0.95, 2, loc=np.mean(ratios), scale=stats.sem(ratios))
        # clipped to the ratio's range [0, inf), never past the mean itself (a ratio of -1e-9 from rounding)
        assert row["mixing"]["ci"] == pytest.approx([max(lo, min(0.0, np.mean(ratios))), hi], abs=1e-12)
        gains = LEVELS[int(row["level"])][1]
        assert row["transfer_gain"]["value"] == pytest.approx(np.mean(gains))
        lo, hi = stats.t.interval(0.95, 2, loc=np.mean(gains), scale=stats.sem(gains))
        assert row["transfer_gain"]["ci"] == pytest.approx([lo, min(hi, 1.0)])
        assert "3 training seeds" in row["verdict_sentence"] and "seeds" in row["mixing"]["interval"]
    low, high = rows
    assert high["mixing"]["value"] > low["mixing"]["value"] and low["verdict"] == "separate"


def test_labels_name_the_seed_and_the_page_says_how_levels_are_pooled(report):
    labels = [cp.label for cp in report.data.checkpoints]
    assert "cotrained diversity 100% seed 2" in labels and len(set(labels)) == len(labels)
    page = (report.out / "report.html").read_text()
    assert "means over seeds with intervals across them" in page
