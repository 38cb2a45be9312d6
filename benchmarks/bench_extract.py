"""Benchmark extraction: end-to-end frames/s versus the bare model forward, and peak memory at 1x and 10x data.

End to end = ``probe.extract.extract`` (open datasets, decode video, adapter, hooks,
pooling, NaN checks, streaming store writes). Bare forward = the same model on the
same batches already decoded and prepared in memory, no hooks. Goal: ratio >= 0.7.

Peak memory is measured in a fresh subprocess per scale (max RSS); 10x lists each
dataset ten times (distinct names), so samples and store size grow 10x while the
working set should not (goal: flat).

Usage::

    .venv/bin/python benchmarks/bench_extract.py                      # generates a small world in a temp dir
    .venv/bin/python benchmarks/bench_extract.py --world world --checkpoint world/checkpoints/cotrained/step-000600
    .venv/bin/python benchmarks/bench_extract.py --size tiny --batch-size 64 --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYERS = ("vision", "trunk.block1", "trunk.block2", "output.embedding")


def make_world(tmp: Path, size: str) -> Path:
    from probe.world.generate import generate_world

    return generate_world(tmp / "world", size=size)


def make_checkpoint(tmp: Path) -> Path:
    import torch

    from probe.world.embodiments import SPECS
    from probe.world.policy import make_policy, save_policy
    from probe.world.tasks import STAGES, TASK_NAMES

    torch.manual_seed(0)
    policy = make_policy({k: {"state_dim": s.state_dim, "action_dim": s.action_dim} for k, s in SPECS.items()},
                         list(TASK_NAMES), list(STAGES), image_size=64)
    return save_policy(policy, tmp / "ckpt" / "step-000000", 0, "cotrained")


def data_specs(world: Path, copies: int) -> tuple[str, ...]:
    return tuple(f"{emb}={world / 'datasets' / emb}" for _ in range(copies) for emb in ("human", "robot"))


def end_to_end(world: Path, ckpt: Path, out: Path, copies: int, batch_size: int, device: str) -> dict:
    from probe.extract import ExtractConfig, extract

    config = ExtractConfig(checkpoints=(str(ckpt),), data=data_specs(world, copies), layers=LAYERS, out=str(out),
                           batch_size=batch_size, device=device, overwrite=Path(out).exists())
    t0 = time.perf_counter()
    store = extract(config)
    seconds = time.perf_counter() - t0
    return {"samples": store.n, "seconds": seconds, "fps": store.n / seconds}


def bare_forward(world: Path, ckpt: Path, batch_size: int, device: str, repeats: int = 1) -> dict:
    """The model alone on the same batches, decoded and prepared beforehand."""
    import torch

    from probe.extract import ExtractConfig, Extractor, batches_of, open_data, read_work
    from probe.checkpoints import load_checkpoint
    from probe.extract import resolve_device

    device = resolve_device(device)
    config = ExtractConfig(checkpoints=(str(ckpt),), data=data_specs(world, 1), layers=LAYERS, out="-",
                           batch_size=batch_size, device=device)
    opened = open_data(config)
    loaded = load_checkpoint(ckpt, device=device)
    ex = Extractor(loaded, config, device)
    todo = torch.ones(len(opened.samples), dtype=torch.bool).numpy()
    prepared = []
    for rows in batches_of(opened.samples, todo, batch_size):
        work = read_work(opened, rows, images=True, size=ex.image_size, skip_bad=False)
        prepared.append(ex.adapter.prepare(work.batch, work.meta, opened.embodiments[work.dataset], ex.device))
    n = sum(len(p) for p in prepared)
    with torch.inference_mode():
        ex.adapter.forward(loaded.model, prepared[0])  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            for inputs in prepared:
                out = ex.adapter.forward(loaded.model, inputs)
                out["embedding"].float().cpu()  # results leave the device, as in extraction
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return {"samples": n * repeats, "seconds": seconds, "fps": n * repeats / seconds}


def peak_memory(world: Path, ckpt: Path, out: Path, copies: int, batch_size: int, device: str) -> dict:
    """Max RSS of a fresh interpreter running one extraction of ``copies`` x the data."""
    code = (
        "import json, resource, sys; sys.path.insert(0, %r)\n"
        "from benchmarks.bench_extract import end_to_end\n"
        "from pathlib import Path\n"
        "r = end_to_end(Path(%r), Path(%r), Path(%r), %d, %d, %r)\n"
        "r['max_rss_mb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(r))\n"
    ) % (str(ROOT), str(world), str(ckpt), str(out), copies, batch_size, device)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, help="a generated world (default: generate one in a temp dir)")
    p.add_argument("--size", default="tiny", help="world size to generate when --world is not given")
    p.add_argument("--checkpoint", type=Path, help="world policy checkpoint (default: a freshly initialised one)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--scale", type=int, default=10, help="the larger data multiple for the memory check")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp_name:
        tmp = Path(tmp_name)
        world = args.world or make_world(tmp, args.size)
        ckpt = args.checkpoint or make_checkpoint(tmp)
        end_to_end(world, ckpt, tmp / "store-e2e", 1, args.batch_size, args.device)  # warm-up (imports, first ops)
        e2e = end_to_end(world, ckpt, tmp / "store-e2e", 1, args.batch_size, args.device)
        bare = bare_forward(world, ckpt, args.batch_size, args.device)
        mem1 = peak_memory(world, ckpt, tmp / "store-1x", 1, args.batch_size, args.device)
        memn = peak_memory(world, ckpt, tmp / f"store-{args.scale}x", args.scale, args.batch_size, args.device)
    result = {
        "device": args.device, "batch_size": args.batch_size, "layers": list(LAYERS),
        "end_to_end_fps": round(e2e["fps"], 1), "bare_forward_fps": round(bare["fps"], 1),
        "ratio": round(e2e["fps"] / bare["fps"], 3), "samples_1x": mem1["samples"],
        "peak_rss_mb_1x": round(mem1["max_rss_mb"], 1), f"samples_{args.scale}x": memn["samples"],
        f"peak_rss_mb_{args.scale}x": round(memn["max_rss_mb"], 1),
        f"fps_{args.scale}x": round(memn["fps"], 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
