"""Benchmark ``probe extract`` on a LeRobot ACT checkpoint against the loop a user would write by hand.

The hand-written loop: LeRobot's own ``LeRobotDataset`` on the world's robot dataset (a LeRobot v3
dataset, decoded by LeRobot's video backend), a ``DataLoader``, the checkpoint's own preprocessor, the
same policy and the same forward hooks (``model.backbone.layer4`` and ``model.encoder``, mean-pooled), the
pooled vectors kept in memory. It is timed with ``num_workers`` 0 and 2 and the faster counts.
``probe extract`` runs the same checkpoint and layers over the same frames (decoding with PyAV,
``--frame-cache off``) and writes a store. Both are timed from opening the data and the checkpoint to the
last vector, each in a fresh subprocess, in ``--repeats`` interleaved rounds (the machine may be shared);
the ratio is taken within a round and its median reported. Goal: ratio >= 1.0.

Peak memory (max RSS of the subprocess) at 1x and ``--scale`` x the data (the dataset listed that many
times): goal flat for ``probe extract``.

Usage::

    python benchmarks/bench_extract.py --lerobot                     # ACT (LeRobot's defaults), a tiny world
    python benchmarks/bench_lerobot.py --size small --checkpoint outputs/train/RUN --json out.json

Needs LeRobot (``make setup-lerobot``, or the ``lerobot`` extra) and torchcodec with FFmpeg for LeRobot's
own decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYERS = ("model.backbone.layer4", "model.encoder")


def make_checkpoint(out: Path, robot: Path) -> Path:
    """A random ACT policy with LeRobot's default sizes for the world's robot features, saved as lerobot-train does."""
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    meta = LeRobotDatasetMetadata("local/robot", root=robot)
    kinds = {"video": FeatureType.VISUAL, "float32": FeatureType.STATE}
    inputs = {k: PolicyFeature(type=kinds[f["dtype"]], shape=tuple(f["shape"][::-1] if f["dtype"] == "video"
                                                                    else f["shape"]))
              for k, f in meta.features.items() if k.startswith("observation.") and f["dtype"] in kinds}
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=tuple(meta.features["action"]["shape"]))}
    cfg = ACTConfig(input_features=inputs, output_features=outputs, device="cpu", pretrained_backbone_weights=None)
    torch.manual_seed(0)
    policy = ACTPolicy(cfg)
    policy.save_pretrained(out)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


def run_probe(ckpt: Path, robot: Path, copies: int, batch_size: int, out: Path) -> dict:
    from probe.extraction.config import ExtractConfig, PassConfig
    from probe.extraction.run import extract
    from probe.model.config import ModelConfig

    data = tuple(f"robot={robot}" for _ in range(copies))  # listed `copies` times: distinct names, 10x samples
    t0 = time.perf_counter()
    store = extract(ExtractConfig(checkpoints=(str(ckpt),), data=data, out=str(out), overwrite=True,
                                  model=ModelConfig(layers=LAYERS, device="cpu"),
                                  passes=PassConfig(batch_size=batch_size, frame_cache="off")))
    return {"frames": int(store.n), "seconds": time.perf_counter() - t0}


def run_loop(ckpt: Path, robot: Path, copies: int, batch_size: int, workers: int) -> dict:
    import numpy as np
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.act.modeling_act import ACTPolicy
    from lerobot.policies.factory import make_pre_post_processors

    t0 = time.perf_counter()
    policy = ACTPolicy.from_pretrained(str(ckpt)).eval()
    pre, _ = make_pre_post_processors(policy.config, pretrained_path=str(ckpt))
    dataset = torch.utils.data.ConcatDataset([LeRobotDataset("local/robot", root=robot) for _ in range(copies)])
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    modules = dict(policy.named_modules())
    seen: dict[str, torch.Tensor] = {}
    handles = [modules[LAYERS[0]].register_forward_hook(lambda m, a, o: seen.__setitem__(LAYERS[0], o.flatten(2).mean(-1))),
               modules[LAYERS[1]].register_forward_hook(lambda m, a, o: seen.__setitem__(LAYERS[1], o.mean(0)))]
    vectors: dict[str, list] = {k: [] for k in LAYERS}
    frames = 0
    with torch.inference_mode():
        for batch in loader:
            policy.predict_action_chunk(pre(batch))
            for k in LAYERS:
                vectors[k].append(seen[k].float().cpu().numpy())
            frames += len(batch["index"])
    for h in handles:
        h.remove()
    _ = {k: np.concatenate(v) for k, v in vectors.items()}
    return {"frames": frames, "seconds": time.perf_counter() - t0}


def child(args: argparse.Namespace) -> int:
    import resource

    if args.child == "probe":
        result = run_probe(args.checkpoint, args.robot, args.copies, args.batch_size, args.out)
    else:
        result = run_loop(args.checkpoint, args.robot, args.copies, args.batch_size, args.workers)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))
    return 0


def measure(kind: str, ckpt: Path, robot: Path, copies: int, batch_size: int, tmp: Path, workers: int = 0) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf"), HF_LEROBOT_HOME=str(tmp / "lerobot"),
               PROBE_CACHE_DIR=str(tmp / "cache"))
    done = subprocess.run([sys.executable, __file__, "--child", kind, "--checkpoint", str(ckpt), "--robot", str(robot),
                           "--copies", str(copies), "--batch-size", str(batch_size), "--workers", str(workers),
                           "--out", str(tmp / f"store-{kind}")], capture_output=True, text=True, env=env)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{kind} run failed:\n{done.stderr[-3000:]}")
    out = json.loads(line[len("RESULT "):])
    out["fps"] = out["frames"] / out["seconds"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, help="a generated world (default: generate one in a temp dir)")
    p.add_argument("--size", default="tiny", help="world size to generate when --world is not given")
    p.add_argument("--checkpoint", type=Path, help="a LeRobot ACT checkpoint (default: LeRobot's default ACT, random)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--scale", type=int, default=10, help="the larger data multiple for the memory check")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds (medians reported)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--child", choices=["probe", "loop"], help=argparse.SUPPRESS)
    p.add_argument("--robot", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--copies", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory(prefix="bench-lerobot-") as tmp_name:
        tmp = Path(tmp_name)
        world = args.world
        if world is None:
            from probe.world.generate import generate_world

            world = generate_world(tmp / "world", size=args.size)
        robot = Path(world) / json.loads((Path(world) / "world.json").read_text())["datasets"]["robot"]["path"]
        from probe.model.checkpoints import resolve_checkpoint_dir

        ckpt = resolve_checkpoint_dir(args.checkpoint) if args.checkpoint else make_checkpoint(tmp / "act", robot)
        rounds = []
        for r in range(args.repeats):
            loops = [measure("loop", ckpt, robot, 1, args.batch_size, tmp, workers=w) for w in (0, 2)]
            probe = measure("probe", ckpt, robot, 1, args.batch_size, tmp)
            best = max(loops, key=lambda x: x["fps"])
            rounds.append({"probe_fps": probe["fps"], "loop_fps": best["fps"], "loop_fps_workers": [x["fps"] for x in loops],
                           "ratio": probe["fps"] / best["fps"], "frames": probe["frames"]})
            print(f"round {r + 1}: probe extract {probe['fps']:.1f} frames/s, hand loop {best['fps']:.1f} frames/s "
                  f"(num_workers 0: {loops[0]['fps']:.1f}, 2: {loops[1]['fps']:.1f}), ratio {rounds[-1]['ratio']:.2f}",
                  flush=True)
        memory = {}
        for kind in ("probe", "loop"):
            for copies in (1, args.scale):
                memory[f"{kind}_{copies}x_mb"] = measure(kind, ckpt, robot, copies, args.batch_size, tmp)["peak_rss_mb"]
        ratios = sorted(x["ratio"] for x in rounds)
        result = {"checkpoint": str(args.checkpoint or "LeRobot default ACT (random)"), "frames": rounds[0]["frames"],
                  "batch_size": args.batch_size, "rounds": rounds, "median_ratio": ratios[len(ratios) // 2],
                  "memory": memory, "layers": list(LAYERS)}
        print(f"median ratio probe extract / hand loop: {result['median_ratio']:.2f}")
        print("peak RSS (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
