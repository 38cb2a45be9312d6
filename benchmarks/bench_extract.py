"""Benchmark extraction: end-to-end frames/s versus the bare model forward, one pass over several checkpoints,
and peak memory at 1x and 10x data.

End to end = ``probe.extraction.run.extract`` (open datasets, decode video, adapter, hooks,
pooling, NaN checks, streaming store writes), measured cold (every frame decoded:
``--frame-cache off``) and warm (frames served by the frame cache a previous run
filled, as for every checkpoint after the first). Bare forward = the same model on the
same batches already decoded and prepared in memory, no hooks, timed three ways: a
plain loop at torch's default thread count, the same at one thread fewer than cores,
and (CPU) several batches at once from as many threads, one intra-op thread each, as
extraction runs them. The peer of every ratio is the fastest of the three in that
round. Goal: ratio >= 0.7.

One pass: ``N`` checkpoints extracted together (each batch read and decoded once and
run through every model); its per-checkpoint throughput is ``N x samples / seconds``,
compared with the bare forward of one model. By default ``N`` is every checkpoint of
the recipe ``--checkpoint`` belongs to (its ``step-*`` siblings), topped up with
fresh initialisations when ``--checkpoints`` asks for more.

Reading alone: every batch of ``--scale`` x the data read and decoded with no model and no frame cache, in
one thread of this process (how extraction reads below 8 cores) and in ``P``
reader processes (``--read-processes``, default the cores, at most 8; see
:mod:`probe.extraction.readpool`). Their ratio is how far reading scales with the cores, which
is what a GPU machine needs: there the forward is fast and reading sets the pace.
``--read-workers`` sets the reader processes of every extraction measured.

Peak memory is measured in a fresh subprocess per scale (max RSS); 10x lists each
dataset ten times (distinct names), so samples and store size grow 10x while the
working set should not (goal: flat). The one pass gets its own peak RSS.

The machine may be shared: the measurements run in ``--repeats`` interleaved rounds
(peer, cold, warm, one pass), each ratio is taken within a round, and the median
over rounds is reported, with every round's numbers.

Usage::

    .venv/bin/python benchmarks/bench_extract.py                      # generates a small world in a temp dir
    .venv/bin/python benchmarks/bench_extract.py --world world --checkpoint world/checkpoints/cotrained/step-000600
    .venv/bin/python benchmarks/bench_extract.py --world world --checkpoint world/checkpoints/cotrained/step-000600 \\
        --checkpoints 6 --scale 3
    .venv/bin/python benchmarks/bench_extract.py --size tiny --batch-size 64 --device cuda --json out.json
    .venv/bin/python benchmarks/bench_extract.py --lerobot      # a LeRobot ACT checkpoint: see bench_lerobot.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYERS = ("vision", "trunk.block1", "trunk.block2", "output.embedding")


def make_world(tmp: Path, size: str) -> Path:
    from probe.world.generate import generate_world

    return generate_world(tmp / "world", size=size)


def make_checkpoint(tmp: Path, seed: int = 0) -> Path:
    import torch

    from probe.world.embodiments import SPECS
    from probe.world.policy import make_policy, save_policy
    from probe.world.tasks import STAGES, TASK_NAMES

    torch.manual_seed(seed)
    policy = make_policy({k: {"state_dim": s.state_dim, "action_dim": s.action_dim} for k, s in SPECS.items()},
                         list(TASK_NAMES), list(STAGES), image_size=64)
    return save_policy(policy, tmp / "ckpt" / f"init-{seed:02d}" / "step-000000", 0, "init")


def checkpoint_set(ckpt: Path | None, n: int | None, tmp: Path) -> list[Path]:
    """``ckpt`` and its ``step-*`` siblings (all, or the first ``n``), topped up with fresh initialisations."""
    found: list[Path] = []
    if ckpt is not None:
        siblings = sorted(p for p in ckpt.parent.glob("step-*") if (p / "config.json").exists())
        found = [ckpt] + [p for p in siblings if p.resolve() != ckpt.resolve()]
    want = len(found) if n is None and found else (n or 6)
    found = found[:want]
    seed = 1
    while len(found) < want:
        found.append(make_checkpoint(tmp, seed))
        seed += 1
    return found


def data_specs(world: Path, copies: int) -> tuple[str, ...]:
    return tuple(f"{emb}={world / 'datasets' / emb}" for _ in range(copies) for emb in ("human", "robot"))


def end_to_end(world: Path, ckpts: list[Path] | Path, out: Path, copies: int, batch_size: int, device: str,
               pass_memory: int | str | None = None, frame_cache: str | None = None,
               read_workers: int | None = None) -> dict:
    """One ``extract`` call over ``ckpts`` (one pass, unless ``pass_memory`` splits it).

    ``frame_cache`` None decodes every frame (cold); a directory serves frames a previous run decoded (warm).
    """
    from probe.extraction.config import ExtractConfig, PassConfig
    from probe.model.config import ModelConfig
    from probe.extraction.run import extract

    ckpts = [ckpts] if isinstance(ckpts, (str, Path)) else list(ckpts)
    config = ExtractConfig(checkpoints=tuple(str(c) for c in ckpts),
                           data=data_specs(world, copies),
                           out=str(out),
                           overwrite=Path(out).exists(),
                           model=ModelConfig(layers=LAYERS, device=device),
                           passes=PassConfig(batch_size=batch_size, pass_memory=pass_memory, frame_cache=frame_cache or "off", read_workers=read_workers))
    with timed_phases() as phases:
        t0 = time.perf_counter()
        result = extract(config)
        seconds = time.perf_counter() - t0
    n = (result[0] if isinstance(result, list) else result).n
    streaming = phases.get("stream", seconds)
    return {"samples": n, "checkpoints": len(ckpts), "seconds": seconds, "fps": n / seconds,
            "fps_per_checkpoint": n * len(ckpts) / seconds, "phases": phases,
            "streaming_fps_per_checkpoint": n * len(ckpts) / streaming}


@contextlib.contextmanager
def timed_phases():
    """Seconds spent opening the data (``open``), streaming batches through the models (``stream``)
    and committing stores (``commit``) during the block, by wrapping those functions."""
    import probe.extraction.run
    import probe.extraction.passes

    phases: dict[str, float] = {}
    targets = [(probe.extraction.run, "open_data", "open"), (probe.extraction.passes, "_run_local", "stream"),
               (probe.extraction.passes, "_finish", "commit")]
    originals = [getattr(module, name) for module, name, _ in targets]

    def timed(fn, phase):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[phase] = phases.get(phase, 0.0) + time.perf_counter() - t0
        return wrapper

    for (module, name, phase), fn in zip(targets, originals):
        setattr(module, name, timed(fn, phase))
    try:
        yield phases
    finally:
        for (module, name, _), fn in zip(targets, originals):
            setattr(module, name, fn)


def read_alone(world: Path, copies: int, batch_size: int, processes: int) -> dict:
    """Frames/s of reading and decoding every batch of ``copies`` x the data (no model, no frame cache): in one
    thread of this process (``processes`` 0, as extraction reads on small machines) or in reader processes
    (their start included)."""
    from probe.extraction.batches import batches_of, read_work
    from probe.extraction.samples import open_data
    from probe.cache.frames import use_frame_cache
    from probe.extraction.config import data_spec
    from probe.extraction.readpool import read_ahead

    opened = open_data([data_spec(d) for d in data_specs(world, copies)])
    todo = np.ones(len(opened.samples), dtype=bool)
    with use_frame_cache(None):
        t0 = time.perf_counter()
        if processes:
            works = read_ahead(opened, batches_of(opened.samples, todo, batch_size), workers=processes,
                               images=True, size=(64, 64), skip_bad=False, bad=set())
            n = sum(len(w.rows) for w in works)
        else:
            n = sum(len(read_work(opened, rows, images=True, size=(64, 64), skip_bad=False).rows)
                    for rows in batches_of(opened.samples, todo, batch_size))
        seconds = time.perf_counter() - t0
    return {"samples": n, "seconds": seconds, "fps": n / seconds, "processes": processes}


class BareForward:
    """The model alone on the same batches, decoded and prepared once, beforehand (the peer)."""

    def __init__(self, world: Path, ckpt: Path, batch_size: int, device: str) -> None:
        import torch

        from probe.extraction.batches import batches_of, read_work
        from probe.extraction.samples import open_data
        from probe.model.checkpoints import load_checkpoint
        from probe.extraction.config import data_spec
        from probe.model.config import ModelConfig, resolve_device
        from probe.model.extractor import Extractor

        self.device = resolve_device(device)
        opened = open_data([data_spec(d) for d in data_specs(world, 1)])
        self.loaded = load_checkpoint(ckpt, device=self.device)
        self.ex = Extractor(self.loaded, ModelConfig(layers=LAYERS, device=self.device), self.device)
        todo = torch.ones(len(opened.samples), dtype=torch.bool).numpy()
        self.prepared = []
        for rows in batches_of(opened.samples, todo, batch_size):
            work = read_work(opened, rows, images=True, size=self.ex.image_size, skip_bad=False)
            self.prepared.append(self.ex.adapter.prepare(work.batch, work.meta, opened.embodiments[work.dataset],
                                                         self.ex.device))
        self.n = sum(len(p) for p in self.prepared)
        self._run(self.prepared[:1])  # warm-up

    def _run(self, part: list) -> None:
        import torch

        with torch.inference_mode():
            for inputs in part:
                out = self.ex.adapter.forward(self.loaded.model, inputs)
                out["embedding"].float().cpu()  # results leave the device, as in extraction

    def __call__(self, threads: int | None = None, concurrent: int = 1) -> dict:
        """One timed pass over every batch: a plain loop on ``threads`` intra-op threads, or ``concurrent``
        batches at once from as many threads (as extraction runs them on CPU), a stricter peer."""
        from concurrent.futures import ThreadPoolExecutor

        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            with ThreadPoolExecutor(max(1, concurrent)) as pool:
                if self.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                if concurrent > 1:
                    list(pool.map(self._run, [[p] for p in self.prepared]))
                else:
                    self._run(self.prepared)
                if self.device.startswith("cuda"):
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - t0
        finally:
            torch.set_num_threads(before)
        return {"samples": self.n, "seconds": seconds, "fps": self.n / seconds, "threads": threads or before,
                "concurrent": concurrent}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB.

    ``VmHWM`` belongs to the address space, so unlike ``ru_maxrss`` (which Linux keeps
    across ``exec``) it does not report the benchmark process that spawned this one.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(world: Path, ckpts: list[Path] | Path, out: Path, copies: int, batch_size: int, device: str) -> dict:
    """Max RSS of a fresh interpreter running one extraction of ``copies`` x the data over ``ckpts``."""
    ckpts = [ckpts] if isinstance(ckpts, (str, Path)) else list(ckpts)
    code = (
        "import json, sys; sys.path.insert(0, %r)\n"
        "from benchmarks.bench_extract import end_to_end, peak_rss_mb\n"
        "from pathlib import Path\n"
        "r = end_to_end(Path(%r), [Path(c) for c in %r], Path(%r), %d, %d, %r)\n"
        "r['max_rss_mb'] = peak_rss_mb()\n"
        "print(json.dumps(r))\n"
    ) % (str(ROOT), str(world), [str(c) for c in ckpts], str(out), copies, batch_size, device)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--lerobot" in argv:  # probe extract on a LeRobot ACT checkpoint vs. the hand-written LeRobot loop
        from benchmarks.bench_lerobot import main as lerobot_main

        return lerobot_main([a for a in argv if a != "--lerobot"])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=Path, help="a generated world (default: generate one in a temp dir)")
    p.add_argument("--size", default="tiny", help="world size to generate when --world is not given")
    p.add_argument("--checkpoint", type=Path, help="world policy checkpoint (default: a freshly initialised one)")
    p.add_argument("--checkpoints", type=int, default=None, metavar="N",
                   help="checkpoints in the one-pass measurement (default: every step-* sibling of --checkpoint, "
                        "else 6 fresh initialisations; 1 skips it)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--scale", type=int, default=10, help="the larger data multiple for the memory check")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every measurement (medians reported)")
    p.add_argument("--read-workers", type=int, default=None, metavar="N",
                   help="reader processes of every extraction (default: extraction's automatic choice)")
    p.add_argument("--read-processes", type=int, default=None, metavar="P",
                   help="reader processes of the reading-alone measurement (default: cores, at most 8)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--lerobot", action="store_true",
                   help="instead: probe extract on a LeRobot ACT checkpoint vs. the hand-written LeRobot loop "
                        "(benchmarks/bench_lerobot.py, which takes the remaining options)")
    args = p.parse_args(argv)
    from probe.extraction.passes import MAX_MODEL_WORKERS, cpu_cores

    cores = cpu_cores()
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp_name:
        tmp = Path(tmp_name)
        world = args.world or make_world(tmp, args.size)
        ckpts = checkpoint_set(args.checkpoint, args.checkpoints, tmp)
        ckpt = ckpts[0]
        frames = str(tmp / "frame-cache")
        rw = args.read_workers
        readers = args.read_processes or min(cores, 8)
        end_to_end(world, ckpt, tmp / "store-e2e", 1, args.batch_size, args.device, frame_cache=frames,
                   read_workers=rw)  # warm-up
        bare = BareForward(world, ckpt, args.batch_size, args.device)
        workers = min(cores, MAX_MODEL_WORKERS) if args.device == "cpu" else 1
        threads = list(dict.fromkeys([None, max(1, cores - 1)]))
        rounds = []
        for _ in range(max(1, args.repeats)):  # interleaved, so that each ratio compares like conditions
            r: dict = {"bare_loop": max((bare(t) for t in threads), key=lambda x: x["fps"])}
            if workers > 1:
                r["bare_batches_at_once"] = bare(max(1, cores // workers), concurrent=workers)
            r["bare"] = max((v for k, v in r.items() if k.startswith("bare_")), key=lambda x: x["fps"])
            r["cold"] = end_to_end(world, ckpt, tmp / "store-e2e", 1, args.batch_size, args.device,
                                   read_workers=rw)
            r["warm"] = end_to_end(world, ckpt, tmp / "store-e2e", 1, args.batch_size, args.device,
                                   frame_cache=frames, read_workers=rw)
            if len(ckpts) > 1:
                for kind, cache in (("cold", None), ("warm", frames)):
                    r[f"pass_{kind}"] = end_to_end(world, ckpts, tmp / "stores-pass", 1, args.batch_size,
                                                   args.device, frame_cache=cache, read_workers=rw)
            r["read_thread"] = read_alone(world, args.scale, args.batch_size, 0)
            r["read_processes"] = read_alone(world, args.scale, args.batch_size, readers)
            rounds.append(r)

        def median(values: list[float]) -> float:
            return float(np.median(values))

        def ratio(key: str, peer: str = "bare", per_checkpoint: bool = False) -> float:
            field = "fps_per_checkpoint" if per_checkpoint else "fps"
            return round(median([r[key][field] / r[peer]["fps"] for r in rounds]), 3)

        result = {
            "device": args.device, "batch_size": args.batch_size, "layers": list(LAYERS), "cores": cores,
            "samples": bare.n, "rounds": len(rounds),
            "bare_forward_fps": round(median([r["bare"]["fps"] for r in rounds]), 1),
            "bare_forward_fps_loop": round(median([r["bare_loop"]["fps"] for r in rounds]), 1),
            "end_to_end_fps_cold": round(median([r["cold"]["fps"] for r in rounds]), 1),
            "end_to_end_fps_warm": round(median([r["warm"]["fps"] for r in rounds]), 1),
            "ratio_cold": ratio("cold"), "ratio_warm": ratio("warm"), "read_workers": rw,
            "read_alone_fps_thread": round(median([r["read_thread"]["fps"] for r in rounds]), 1),
            f"read_alone_fps_{readers}_processes": round(median([r["read_processes"]["fps"] for r in rounds]), 1),
            "read_alone_speedup": round(median([r["read_processes"]["fps"] / r["read_thread"]["fps"]
                                                for r in rounds]), 3),
        }
        if workers > 1:
            result |= {f"bare_forward_fps_{workers}_batches_at_once":
                       round(median([r["bare_batches_at_once"]["fps"] for r in rounds]), 1),
                       "ratio_cold_vs_loop": ratio("cold", "bare_loop")}
        if len(ckpts) > 1:
            result["one_pass_checkpoints"] = len(ckpts)
            for kind in ("cold", "warm"):
                result |= {
                    f"one_pass_fps_per_checkpoint_{kind}":
                        round(median([r[f"pass_{kind}"]["fps_per_checkpoint"] for r in rounds]), 1),
                    f"one_pass_ratio_{kind}": ratio(f"pass_{kind}", per_checkpoint=True),
                }
        for key in ("warm", "pass_warm"):  # the streaming part alone: without opening datasets and committing
            if key in rounds[0]:
                result[f"streaming_ratio_{key}"] = round(median(
                    [r[key]["streaming_fps_per_checkpoint"] / r["bare"]["fps"] for r in rounds]), 3)
                result[f"phases_{key}_seconds"] = {p: round(median([r[key]["phases"].get(p, 0.0) for r in rounds]), 3)
                                                   for p in ("open", "stream", "commit")}
        result["per_round"] = [{k: round(v["fps_per_checkpoint" if k.startswith("pass") else "fps"], 1)
                                for k, v in r.items() if k != "bare"} for r in rounds]
        mem1 = peak_memory(world, ckpt, tmp / "store-1x", 1, args.batch_size, args.device)
        memn = peak_memory(world, ckpt, tmp / f"store-{args.scale}x", args.scale, args.batch_size, args.device)
        result |= {
            "samples_1x": mem1["samples"], "peak_rss_mb_1x": round(mem1["max_rss_mb"], 1),
            f"samples_{args.scale}x": memn["samples"], f"peak_rss_mb_{args.scale}x": round(memn["max_rss_mb"], 1),
            f"fps_{args.scale}x": round(memn["fps"], 1),
        }
        if len(ckpts) > 1:
            memp = peak_memory(world, ckpts, tmp / "stores-pass-mem", 1, args.batch_size, args.device)
            result[f"peak_rss_mb_one_pass_{len(ckpts)}"] = round(memp["max_rss_mb"], 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
