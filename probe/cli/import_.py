"""probe import: precomputed latents (.parquet / .npz) -> store."""

from __future__ import annotations

import argparse
import shlex

from probe.console import console, outputs

NAME = "import"
HELP = "turn precomputed latents (.parquet or .npz, e.g. from JAX models) into a latent store"
EXAMPLE = "probe import octo_latents.parquet --out stores/octo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="a .parquet (vector columns = layers) or .npz (X + label arrays)")
    p.add_argument("--out", required=True, help="store directory to create")
    p.add_argument("--fps", type=float, default=30.0,
                   help="frame rate used to derive timestamps if absent (default 30)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")


def run(args: argparse.Namespace) -> int:
    from probe.store.importer import import_latents

    store = import_latents(args.src, args.out, overwrite=args.overwrite, fps=args.fps)
    console.print(f"imported {store.n} samples, layers: {', '.join(store.layers)}")
    outputs({"store": store.path}, [shlex.join(["probe", "info", str(store.path)]),
                                    shlex.join(["probe", "metrics", str(store.path)])])
    return 0
