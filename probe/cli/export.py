"""probe export: latents, 2-D coordinates, neighbours and metadata of one layer as a parquet file."""

from __future__ import annotations

import argparse
import json
import shlex

from probe.console import console, outputs

NAME = "export"
HELP = ("write one layer's points (latents, x/y from UMAP or PCA, neighbours, metadata, optional thumbnails) to "
        "parquet for pandas or Embedding Atlas")
EXAMPLE = "probe export probe-demo/stores/cotrained/level-100 --layer trunk.block2 --out points.parquet --thumbnails"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="latent store directory")
    p.add_argument("--layer", default=None, help="layer to export (default: the store's last layer, said in one line)")
    p.add_argument("--out", required=True, metavar="FILE", help="output parquet file (its name ends in .parquet)")
    p.add_argument("--projection", choices=["umap", "pca"], default="umap", help="layout method (default umap)")
    p.add_argument("--max-points", type=int, default=None, metavar="N",
                   help="export a stratified sample of N points (default: all)")
    p.add_argument("--no-latents", action="store_true", help="leave the latent vectors out (smaller file)")
    p.add_argument("--neighbors", type=int, default=15, metavar="K",
                   help="nearest other points listed per point (column 'neighbors', default 15)")
    p.add_argument("--thumbnails", action="store_true",
                   help="add each point's video frame as JPEG bytes (column 'thumbnail'; decodes every frame)")
    p.add_argument("--data-root", action="append", default=[], metavar="NAME=PATH",
                   help="dataset NAME (a value of the store's 'dataset' column) now lives in PATH (repeatable): "
                        "--thumbnails reads its videos there and the file records that root for 'probe import'; "
                        "videos are read only from inside the datasets' roots")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="cache directory for layouts (default $PROBE_CACHE_DIR or ~/.cache/embodiment-probe)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output file (only one probe export wrote)")


def run(args: argparse.Namespace) -> int:
    from probe.projection.export import export_points
    from probe.projection.layout import ProjectionConfig
    from probe.store.media import parse_data_roots

    # export_points checks the output (its path, then its name), the store and the layer before any work
    result = export_points(args.store, args.layer, args.out,
                           projection=ProjectionConfig(method=args.projection, max_points=args.max_points),
                           cache_dir=args.cache, include_latents=not args.no_latents, neighbors=args.neighbors,
                           thumbnails=args.thumbnails, overwrite=args.overwrite, progress=True,
                           data_roots=parse_data_roots(args.data_root))
    if result.layer_note:
        console.print(result.layer_note, markup=False, soft_wrap=True)
    layout = result.layout
    console.print(f"{result.rows} points, {layout.note}", markup=False)
    if args.thumbnails:
        console.print(_thumbnail_line(result.thumbnails, result.with_video, result.rows), markup=False,
                      soft_wrap=True)
    path = str(result.path)
    atlas = ["embedding-atlas", path, "--x", "x", "--y", "y", "--neighbors", "neighbors", "--text", "text"]
    outputs({"points": result.path},
            [shlex.join(["python", "-c", f"import pandas as pd; print(pd.read_parquet({json.dumps(path)}).head())"]),
             shlex.join(atlas + (["--image", "thumbnail"] if result.thumbnails else []))
             + "   (after: pip install embedding-atlas)"])
    console.print("Embedding Atlas draws its map with WebGPU: open it in a browser that has WebGPU with the "
                  "shader-f16 feature (e.g. a recent Chrome or Edge)")
    return 0


def _thumbnail_line(written: int, with_video: int, rows: int) -> str:
    """How many rows got a thumbnail, and what to do when rows with a video did not."""
    if not with_video:
        return "thumbnails: none (no exported row names a video; column 'thumbnail' is all null)"
    others = f" (the other {rows - with_video} have no video)" if with_video < rows else ""
    if written == with_video:
        return f"thumbnails: {written} of {rows} rows{others}"
    return (f"thumbnails: {written} of the {with_video} rows with a video{others}: the videos of "
            f"{with_video - written} rows were not found or refused (warnings above); pass --data-root NAME=PATH "
            "where a dataset moved ('probe info STORE' lists the datasets and their roots)")
