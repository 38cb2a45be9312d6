"""probe import: precomputed latents (.parquet / .npz) -> store."""

from __future__ import annotations

import argparse
import shlex

from probe.console import console, outputs

NAME = "import"
HELP = "turn precomputed latents (.parquet or .npz, e.g. from JAX models) into a latent store"
EXAMPLE = "probe import octo_latents.parquet --out stores/octo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="a .parquet (vector columns = layers), an .npz (X + label arrays) or a parquet file "
                                "'probe export' wrote (its latents become the exported layer)")
    p.add_argument("--out", required=True, help="store directory to create")
    p.add_argument("--fps", type=float, default=30.0,
                   help="frame rate used to derive timestamps if absent (default 30)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")


def run(args: argparse.Namespace) -> int:
    from probe.store.importer import import_latents

    store = import_latents(args.src, args.out, overwrite=args.overwrite, fps=args.fps)
    exported = store.provenance.get("probe_export")
    if exported is not None:
        console.print(_export_line(exported, store.n), markup=False, soft_wrap=True)
    console.print(f"imported {store.n} samples, layers: {', '.join(store.layers)}", markup=False)
    outputs({"store": store.path}, [shlex.join(["probe", "info", str(store.path)]),
                                    shlex.join(["probe", "metrics", str(store.path)])])
    return 0


def _export_line(exported: dict, n: int) -> str:
    """The one line that says the source was a ``probe export`` file and what of it was left out."""
    total = f" of {exported['n_total']}" if exported.get("n_total") else ""
    sample = f" (a sample of {n}{total} points)" if exported.get("sampled") else ""
    dropped = exported.get("dropped") or []
    return f"a probe export file{sample}" + (f": dropped its layout columns {', '.join(dropped)}" if dropped else "")
