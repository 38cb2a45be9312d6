"""Report time for C checkpoints x L layers at N points each, cold (empty layout cache) and cached.

    .venv/bin/python benchmarks/bench_report.py --n 20000 --checkpoints 3 --layers 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000, help="points per store")
    p.add_argument("--checkpoints", type=int, default=3)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--max-points", type=int, default=20_000)
    p.add_argument("--bootstrap", type=int, default=None, help="suite bootstrap replicates (default: the suite's)")
    p.add_argument("--workdir", default=None)
    args = p.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import clustered_latents, synthetic_meta

    from probe.projection.layout import ProjectionConfig
    from probe.report.config import ReportConfig
    from probe.report.build import build_report
    from probe.measure.suite import default_eval_config, known_metric_names
    from probe.store.writer import write_store

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-report-"))
    frames = 50
    episodes = max(1, args.n // (2 * 2 * frames))  # 2 embodiments x 2 tasks
    meta = synthetic_meta(n_episodes=episodes, frames=frames)
    stores = []
    for c in range(args.checkpoints):
        shift = 6.0 * (1 - c / max(args.checkpoints - 1, 1)) + 0.3
        layers = {f"block{l}": clustered_latents(meta, dim=args.dim, shift=shift, seed=l) for l in range(args.layers)}
        stores.append(write_store(root / f"step-{(c + 1) * 100}", meta, layers,
                                  provenance={"step": (c + 1) * 100, "recipe": "co-trained"}, overwrite=True).path)
    config = ReportConfig(projection=ProjectionConfig(max_points=args.max_points), cache_dir=root / "cache",
                          overwrite=True,
                          eval_config=default_eval_config(args.bootstrap) if known_metric_names() else None)
    timings = {}
    for run in ("cold", "cached"):
        t0 = time.perf_counter()
        result = build_report(stores, root / "report", config)
        timings[run] = round(time.perf_counter() - t0, 2)
    layouts = result.data.layouts.values()
    print(json.dumps({"n_per_store": len(meta), "checkpoints": args.checkpoints, "layers": args.layers,
                      "report_s": timings, "layouts": len(layouts),
                      "trustworthiness": [round(l.trustworthiness, 3) for l in layouts],
                      "html_mb": round((root / "report" / "report.html").stat().st_size / 1e6, 2),
                      "workdir": str(root)}, indent=2))


if __name__ == "__main__":
    main()
