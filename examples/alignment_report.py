"""Walkthrough 1: scripted alignment report, as a training pipeline would run it after every run.

    .venv/bin/python examples/alignment_report.py [--out probe-examples] [--size small]

Builds the built-in world (human and robot LeRobot datasets, co-trained and robot-only
checkpoint series), extracts latents for every checkpoint, prints the headline metrics
per checkpoint as a long-form table, writes the HTML report and gates on a threshold.
"""

from __future__ import annotations

import argparse
import sys

from _world import world_stores

from metrics.spec import MetricsConfig
from probe.measure.suite import evaluate, metrics_frame
from probe.report.config import ReportConfig
from probe.report.build import build_report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="probe-examples")
    parser.add_argument("--size", default="small", choices=["tiny", "small", "default"])
    args = parser.parse_args()

    _, stores = world_stores(args.out, args.size)
    every = [s for series in stores.values() for s in series]

    # 1. numbers: one row per (store, layer, metric), with 95% intervals and null baselines
    records = evaluate(every, layers="trunk.block2",
                       config=MetricsConfig(bootstrap=10, families=("mixing", "conservation")))
    frame = metrics_frame(records)
    headline = frame[(frame.scope == "overall") & frame.metric.isin(["knn_embodiment_mixing", "ilisi",
                                                                     "stage_transfer_acc_robot_to_human"])]
    print(headline.pivot_table(index=["store"], columns="metric", values="value").round(3).to_string())

    # 2. the report: HTML (offline), metrics.json, summary.md; a gate a CI job can act on
    result = build_report([s.path for s in every], f"{args.out}/report",
                          ReportConfig(overwrite=True, headline_layer="trunk.block2",
                                       fail_under=(("stage_transfer_acc_robot_to_human", 0.3),),
                                       cache_dir=f"{args.out}/cache"), progress=True)
    print(f"report: {result.out / 'report.html'}")
    print(f"gate {'FAILED' if result.failed else 'passed'}: {list(result.failures)}")
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
