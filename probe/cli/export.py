"""probe export: latents, 2-D coordinates and metadata of one layer as a parquet file."""

from __future__ import annotations

import argparse

from probe.console import console, outputs

NAME = "export"
HELP = "write one layer's points (latents, x/y from UMAP or PCA, metadata) to parquet for pandas or Embedding Atlas"
EXAMPLE = "probe export probe-demo/stores/cotrained/step-000400 --layer trunk.block3 --out points.parquet"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="latent store directory")
    p.add_argument("--layer", required=True, help="layer to export")
    p.add_argument("--out", required=True, metavar="FILE", help="output parquet file")
    p.add_argument("--projection", choices=["umap", "pca"], default="umap", help="layout method (default umap)")
    p.add_argument("--max-points", type=int, default=None, metavar="N",
                   help="export a stratified sample of N points (default: all)")
    p.add_argument("--no-latents", action="store_true", help="leave the latent vectors out (smaller file)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache directory for layouts (default $PROBE_CACHE_DIR or ~/.cache/embodiment-probe)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from probe.projection.export import export_points
    from probe.projection.layout import ProjectionConfig

    result = export_points(args.store, args.layer, args.out,
                           projection=ProjectionConfig(method=args.projection, max_points=args.max_points),
                           cache_dir=args.cache, include_latents=not args.no_latents, overwrite=args.overwrite,
                           progress=True)
    layout = result.layout
    console.print(f"{result.rows} points, {layout.note}")
    outputs({"points": result.path},
            [f"python -c \"import pandas as pd; print(pd.read_parquet('{result.path}').head())\"",
             f"embedding-atlas {result.path} --x x --y y"])
    return 0
