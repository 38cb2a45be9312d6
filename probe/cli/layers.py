"""probe layers: list a model's modules with output shapes, to choose --layer for extraction."""

from __future__ import annotations

import argparse
import shlex

from probe.console import console, outputs

NAME = "layers"
HELP = "list a checkpoint's layers (module names, types, output shapes) to choose --layer"
EXAMPLE = "probe layers probe-demo/world/sweep/cotrained/level-100"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="world policy or LeRobot policy directory (or LeRobot run directory), Hugging "
                                      "Face model directory, weight file (with --model) or TorchScript archive")
    p.add_argument("--model", default=None, metavar="MODULE:FACTORY", help="callable building your nn.Module")
    p.add_argument("--model-kwargs", default=None, metavar="JSON", help="keyword arguments of the --model factory")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow full unpickling (trusted files only)")
    p.add_argument("--adapter", default=None, help="world, image, state or MODULE:CALLABLE")
    p.add_argument("--adapter-kwargs", default=None, metavar="JSON", help="adapter options")
    p.add_argument("--rename", action="append", default=[], metavar="DATASET_KEY=POLICY_KEY",
                   help="LeRobot policies: a dataset feature (camera) that stands for one the policy expects")
    p.add_argument("--data", default=None, metavar="[EMBODIMENT=]PATH",
                   help="run the dummy forward on two real frames of this dataset")
    p.add_argument("--skip-bad-episodes", action="store_true",
                   help="with --data: skip episodes whose frames cannot be read (e.g. a video the dataset declares "
                        "but does not ship) and take the first that reads")
    p.add_argument("--input-shape", default=None, metavar="C,H,W",
                   help="shape of one input without the batch dimension (e.g. 3,224,224 or 10 for a state)")
    p.add_argument("--embodiment", default=None, help="embodiment for the example batch (world policies)")
    p.add_argument("--all", action="store_true", help="also list modules the forward pass did not call")


def run(args: argparse.Namespace) -> int:
    from probe.extraction.config import parse_json_kwargs, with_rename
    from probe.extraction.layers import layer_table

    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(s) for s in args.input_shape.replace("x", ",").split(",") if s.strip())
        except ValueError:
            from probe.errors import ConfigError

            raise ConfigError(f"--input-shape: expected integers like 3,224,224, got {args.input_shape!r}") from None
    infos, provenance = layer_table(
        args.checkpoint, model=args.model, model_kwargs=parse_json_kwargs(args.model_kwargs, "--model-kwargs"),
        trust=args.trust_checkpoint, adapter=args.adapter,
        adapter_kwargs=with_rename(parse_json_kwargs(args.adapter_kwargs, "--adapter-kwargs"), args.rename),
        data=args.data, skip_bad_episodes=args.skip_bad_episodes,
        input_shape=shape, embodiment=args.embodiment)
    rows = [(i.name, i.type, "x".join(map(str, i.shape)) if i.shape else "not called", f"{i.parameters:,}")
            for i in infos if i.shape is not None or args.all]
    header = ("layer", "type", "output shape", "params")
    widths = [max(len(r[k]) for r in [header, *rows]) for k in range(3)]
    console.print(f"{provenance['path']} ({provenance['kind']}, step {provenance['step']})", markup=False,
                  soft_wrap=True)
    for row in [header, *rows]:  # plain lines: names must stay whole to be copied into --layer
        console.print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3], markup=False,
                      soft_wrap=True)
    suggested = provenance.get("suggested_layers") or []
    if suggested:
        console.print(f"suggested layers ({provenance['kind']}): {', '.join(suggested)}", markup=False, soft_wrap=True)
    layers = " ".join(f"--layer {shlex.quote(x)}" for x in suggested) or "--layer NAME"
    outputs({}, [shlex.join(["probe", "extract", "--checkpoint", str(args.checkpoint), *model_options(args)])
                 + f" --data human=PATH --data robot=PATH {layers} --out STORE"])
    return 0


def model_options(args: argparse.Namespace) -> list[str]:
    """The options of this command that pick the model and its inputs, as ``probe extract`` takes them again."""
    out = [*(["--model", args.model] if args.model else []),
           *(["--model-kwargs", args.model_kwargs] if args.model_kwargs else []),
           *(["--trust-checkpoint"] if args.trust_checkpoint else []),
           *(["--adapter", args.adapter] if args.adapter else []),
           *(["--adapter-kwargs", args.adapter_kwargs] if args.adapter_kwargs else []),
           *(["--skip-bad-episodes"] if args.skip_bad_episodes else [])]
    for rename in args.rename:
        out += ["--rename", rename]
    return out
