"""probe index: build a FAISS index over one embodiment's latents of a store layer."""

from __future__ import annotations

import argparse
import shlex

from probe.console import console, outputs

NAME = "index"
HELP = "build a retrieval index (FAISS: exact flat, hnsw, ivf, ivfpq) over one embodiment's latents"
EXAMPLE = ("probe index probe-demo/stores/cotrained/level-100 --layer trunk.block2 --embodiment human "
           "--out indexes/human")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="latent store directory")
    p.add_argument("--layer", help="layer to index (default: the store's last layer, said in one line)")
    p.add_argument("--embodiment", default="human", help="embodiment whose samples are indexed (default: human)")
    p.add_argument("--kind", default="flat", choices=["flat", "hnsw", "ivf", "ivfpq"],
                   help="flat: exact (default); hnsw/ivf/ivfpq: approximate, for large stores")
    p.add_argument("--metric", default="cosine", choices=["cosine", "l2"], help="distance (default: cosine)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="index directory to create (e.g. indexes/human; not beside the store, where a store glob "
                        "would take it for a store)")
    p.add_argument("--nlist", type=int, help="ivf/ivfpq: number of lists (default ~4 sqrt(n))")
    p.add_argument("--pq-m", type=int, help="ivfpq: sub-vectors, must divide the dimension (default ~dim/4)")
    p.add_argument("--pq-nbits", type=int, help="ivfpq: bits per code (default 8)")
    p.add_argument("--hnsw-m", type=int, default=32, help="hnsw: neighbours per node (default 32)")
    p.add_argument("--ef-construction", type=int, default=80, help="hnsw: build depth (default 80)")
    p.add_argument("--nprobe", type=int, help="ivf/ivfpq: lists searched per query (default max(16, nlist/40))")
    p.add_argument("--ef-search", type=int, help="hnsw: search depth (default 128)")
    p.add_argument("--rerank", type=int, help="re-rank this many candidates exactly (default 0; ivfpq 100)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index directory")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from probe.retrieval.index import IndexConfig, build_index
    from probe.store.series import store_layer
    from probe.store.store import open_store

    store = open_store(args.store)
    layer, note = store_layer(store, args.layer)
    if note:
        console.print(note, soft_wrap=True, markup=False)
    config = IndexConfig(kind=args.kind, metric=args.metric, nlist=args.nlist, pq_m=args.pq_m,
                         pq_nbits=args.pq_nbits, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                         nprobe=args.nprobe, ef_search=args.ef_search, rerank=args.rerank)
    out = Path(args.out)
    index = build_index(store, layer, out, embodiment=args.embodiment, config=config, overwrite=args.overwrite,
                        progress=True)
    m = index.manifest
    params = ", ".join(f"{k}={v}" for k, v in m.params.items())
    console.print(f"indexed {m.n} {m.embodiment} samples of layer '{m.layer}' (dim {m.dim}) as {m.kind.value} "
                  f"({m.metric.value}; {params}) in {m.build_seconds:.2f}s", markup=False)
    outputs({"index": out}, [shlex.join(["probe", "retrieve", "--index", str(out)]) + " --episode E --frame F -k 5",
                             shlex.join(["probe", "retrieve", "--index", str(out), "--eval"])])
    return 0
