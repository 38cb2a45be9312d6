"""probe extract: checkpoints x datasets -> latent stores (one per checkpoint)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
from collections.abc import Iterator

from rich.text import Text

from probe.console import console, outputs

NAME = "extract"
HELP = "run checkpoints over human and robot datasets and store pooled layer outputs (latent stores)"
EXAMPLE = ("probe extract --checkpoint probe-demo/world/sweep/cotrained/level-100 "
           "--data human=probe-demo/world/datasets/human --data robot=probe-demo/world/datasets/robot "
           "--layer trunk.block2 --layer vision --out stores/cotrained-100")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", action="extend", nargs="+", required=True, metavar="CKPT",
                   help="world policy or LeRobot policy directory (or LeRobot run directory), Hugging Face model directory, "
                        "weight file (with --model) or TorchScript archive; "
                        "several (--checkpoint A B, a glob, or repeated) to compare checkpoints (one store each under --out)")
    p.add_argument("--data", action="append", required=True, metavar="[EMBODIMENT=]PATH",
                   help="a dataset (LeRobot v2/v3, HDF5, keypoints+video); repeat for each embodiment")
    p.add_argument("--layer", action="append", default=[], metavar="NAME",
                   help="module to hook (repeatable); 'output' is the model's return value, 'output.KEY' an "
                        "entry of a returned dict (run 'probe layers CHECKPOINT' to list them)")
    p.add_argument("--pool", default="mean", choices=["mean", "first", "last", "max", "flatten"],
                   help="how token / spatial outputs become one vector per sample (default: mean)")
    p.add_argument("--stages", action="append", default=[], metavar="[EMBODIMENT=]SPEC",
                   help="stage labels: auto (default), column:NAME, subtasks, file:PATH, progress:N; "
                        "EMBODIMENT=SPEC for one embodiment's datasets (repeat: e.g. --stages robot=file:g1.csv "
                        "--stages human=progress:5)")
    p.add_argument("--task", action="append", default=[], metavar="EMBODIMENT=TEXT",
                   help="every sample of the --data labelled EMBODIMENT gets task TEXT (stored, and the prompt "
                        "policies read) instead of its dataset's own, so that human and robot data recorded under "
                        "different task names are matched by the metrics; repeat per embodiment")
    p.add_argument("--stride", type=int, default=1, help="take every N-th frame (default 1: every frame)")
    p.add_argument("--fps", type=float, default=None, help="resample episodes to this frame rate")
    p.add_argument("--max-frames", type=int, default=None, help="at most N frames per episode")
    p.add_argument("--max-episodes", type=int, default=None, help="at most N episodes per dataset")
    p.add_argument("--model", default=None, metavar="MODULE:FACTORY",
                   help="callable building your nn.Module, whose weights --checkpoint holds")
    p.add_argument("--model-kwargs", default=None, metavar="JSON", help="keyword arguments of the --model factory")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow full unpickling of .pt files (runs code from the file: only for files you trust)")
    p.add_argument("--adapter", default=None,
                   help="how batches become model inputs: world, image, state or MODULE:CALLABLE "
                        "(default: world for world policies, image otherwise)")
    p.add_argument("--adapter-kwargs", default=None, metavar="JSON",
                   help='adapter options, e.g. \'{"size": 224, "mean": [0.485, 0.456, 0.406], '
                        '"std": [0.229, 0.224, 0.225]}\'')
    p.add_argument("--rename", action="append", default=[], metavar="DATASET_KEY=POLICY_KEY",
                   help="LeRobot policies: a dataset feature (camera) that stands for one the policy expects, e.g. "
                        "observation.images.egocentric=observation.images.front (repeatable)")
    p.add_argument("--embed", default=None, metavar="MODULE:FN",
                   help="function (model, inputs, batch) -> {name: tensor} for representations hooks cannot reach")
    p.add_argument("--batch-size", type=int, default=64, help="frames per forward (default: 64)")
    p.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda or cuda:N")
    p.add_argument("--model-workers", type=int, default=None, metavar="N",
                   help="on CPU, batches run through the models at once, each on its share of the cores "
                        "(default: min(cores, 4)); 1 if your adapter, model or --embed keeps state between calls")
    p.add_argument("--read-workers", type=int, default=None, metavar="N",
                   help="processes that read and decode video (0: a thread of this process; default: all cores "
                        "but two with a GPU, a quarter of them on CPU, 0 below 8 cores)")
    p.add_argument("--autocast", default="none", choices=["none", "bf16", "fp16"],
                   help="mixed precision forward (default: none)")
    p.add_argument("--out", required=True, help="store directory (a directory of stores for several checkpoints)")
    p.add_argument("--overwrite", action="store_true", help="replace existing stores")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--skip-bad-episodes", action="store_true",
                   help="skip episodes whose frames cannot be read (with a warning) instead of stopping")
    passes = p.add_mutually_exclusive_group()
    passes.add_argument("--pass-memory", default=None, metavar="SIZE",
                        help="with several checkpoints, each batch is read and decoded once and run through every "
                             "checkpoint of a pass; checkpoints are loaded one by one and join the pass while their "
                             "summed parameter and buffer size stays within SIZE (e.g. 4GB, 512MiB). "
                             "Default: a quarter of the available RAM (CPU) or free GPU memory (CUDA)")
    passes.add_argument("--one-checkpoint-per-pass", action="store_true",
                        help="read the data again for every checkpoint (same as --pass-memory 0)")
    p.add_argument("--frame-cache", default="auto", metavar="DIR|auto|off",
                   help="keep decoded frames so that the next extraction over the same videos (another checkpoint, "
                        "other layers, --resume) skips decoding; auto: $PROBE_CACHE_DIR/frames "
                        "(default ~/.cache/embodiment-probe/frames)")
    p.add_argument("--frame-cache-max", default="10GB", metavar="SIZE",
                   help="size limit of the frame cache; least recently used frames are evicted (default 10GB)")
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="run batches here (local, default) or on Ray Data")
    p.add_argument("--ray-actors", type=int, default=1, help="Ray Data actor pool size (--engine ray; default 1)")
    p.add_argument("--ray-gpus-per-actor", type=float, default=0.0,
                   help="GPUs per Ray actor (default 0: CPU actors)")


def run(args: argparse.Namespace) -> int:
    from probe.extraction.config import ExtractConfig, PassConfig, parse_json_kwargs, with_rename
    from probe.extraction.samples import relabel_notes, unshared_task_note
    from probe.extraction.sampling import SamplingConfig, parse_stages, parse_tasks
    from probe.model.config import ModelConfig
    from probe.extraction.run import extract

    model = ModelConfig(
        layers=tuple(args.layer), pool=args.pool, model=args.model,
        model_kwargs=parse_json_kwargs(args.model_kwargs, "--model-kwargs"), trust_checkpoint=args.trust_checkpoint,
        adapter=args.adapter,
        adapter_kwargs=with_rename(parse_json_kwargs(args.adapter_kwargs, "--adapter-kwargs"), args.rename),
        embed=args.embed, device=args.device, autocast=args.autocast,
    )
    stages, embodiment_stages = parse_stages(args.stages)
    sampling = SamplingConfig(stages=stages, embodiment_stages=embodiment_stages, stride=args.stride, fps=args.fps,
                              max_frames=args.max_frames,
                              max_episodes=args.max_episodes, tasks=parse_tasks(args.task))
    passes = PassConfig(
        batch_size=args.batch_size, pass_memory=0 if args.one_checkpoint_per_pass else args.pass_memory,
        frame_cache=args.frame_cache, frame_cache_max=args.frame_cache_max, model_workers=args.model_workers,
        read_workers=args.read_workers, engine=args.engine, ray_actors=args.ray_actors,
        ray_gpus_per_actor=args.ray_gpus_per_actor,
    )
    config = ExtractConfig(checkpoints=tuple(args.checkpoint), data=tuple(args.data), out=args.out, model=model,
                           sampling=sampling, passes=passes, overwrite=args.overwrite, resume=args.resume,
                           skip_bad_episodes=args.skip_bad_episodes)
    with manifest_warnings_held():
        result = extract(config, progress=True)
    stores = result if isinstance(result, list) else [result]
    warnings: dict[str, list[str]] = {}  # each once, though every store of the run keeps it
    for store in stores:
        counts = ", ".join(f"{k}={v}" for k, v in store.meta["embodiment"].value_counts().items())
        dims = ", ".join(f"{x} ({store.layer_info(x)['dim']}-d)" for x in store.layers)
        console.print(f"{store.name}: {store.n} samples ({counts}), layers: {dims}", markup=False)
        for warning in store.manifest.get("warnings", []):
            warnings.setdefault(warning, []).append(store.name)
    for warning, names in warnings.items():
        where = f" ({', '.join(names)})" if len(names) < len(stores) else ""
        console.print(Text.assemble(("warning:", "yellow"), f" {warning}{where}"), soft_wrap=True)
    datasets = stores[0].provenance.get("datasets", [])
    for note in [*relabel_notes(datasets), unshared_task_note(stores[0].meta, datasets)]:
        if note:
            console.print(f"note: {note}", markup=False, soft_wrap=True)
    outputs({f"store {s.name}": s.path for s in stores},
            [shlex.join(["probe", "metrics", str(stores[0].path)]),
             shlex.join(["probe", "report", *(str(s.path) for s in stores), "--out", "REPORT_DIR"])])
    return 0


@contextlib.contextmanager
def manifest_warnings_held() -> Iterator[None]:
    """Warnings the stores' manifests keep (logged with ``extra=IN_MANIFEST``) are shown once, after the run,
    from the manifests: while it runs their log records are held back from the console; should it fail, they
    are printed before its error."""
    from probe.errors import IN_MANIFEST

    held: list[str] = []
    flag = next(iter(IN_MANIFEST))

    def keep(record: logging.LogRecord) -> bool:
        if getattr(record, flag, False):
            held.append(record.getMessage())
            return False
        return True

    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(keep)
    try:
        yield
    except BaseException:
        for message in dict.fromkeys(held):
            console.print(Text.assemble(("warning:", "yellow"), f" {message}"), soft_wrap=True)
        raise
    finally:
        for handler in handlers:
            handler.removeFilter(keep)
