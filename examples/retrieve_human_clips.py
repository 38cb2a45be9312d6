"""Walkthrough 2: the nearest human clips for robot states, and where human data is missing.

    .venv/bin/python examples/retrieve_human_clips.py [--out probe-examples] [--size small]

Indexes the human latents of the last co-trained checkpoint with FAISS, retrieves
human clips for a few robot moments (one clip per episode, a 1 s window around the
match), exports them as mp4 files with a contact sheet, scores retrieval in both
directions, and ranks robot stages by how poorly human data covers them.
"""

from __future__ import annotations

import argparse

from _world import world_stores

from probe import columns as C
from probe.retrieval.clips import export_clips
from probe.measure.coverage import coverage
from probe.retrieval.index import IndexConfig, build_index
from probe.retrieval.retriever import Retriever
from probe.retrieval.evaluation import retrieval_scores
from probe.store.media import VideoPaths

LAYER = "trunk.block2"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="probe-examples")
    parser.add_argument("--size", default="small", choices=["tiny", "small", "default"])
    args = parser.parse_args()

    _, stores = world_stores(args.out, args.size)
    store = stores["cotrained"][-1]

    index_dir = f"{args.out}/index/human-{store.name}"
    build_index(store, LAYER, index_dir, embodiment="human", config=IndexConfig(kind="flat", metric="cosine"),
                overwrite=True)
    retriever = Retriever.open(index_dir, store)
    print(retriever)

    robot = store.meta[store.meta[C.EMBODIMENT] == "robot"]
    queries = robot.groupby(C.STAGE, sort=False).nth(0)  # the first frame of each robot stage
    results = retriever.search_samples(queries[C.SAMPLE_ID].tolist(), k=3, per_episode=1, window=1.0)
    print(results[["query_sample_id", "rank", "score", C.EPISODE, C.TASK, C.STAGE, "start", "end"]].to_string())

    clips = export_clips(results, f"{args.out}/clips", overwrite=True, videos=VideoPaths(store))  # query frames too
    print(f"clips: {clips.directory} (contact sheet {clips.sheet})")

    scores = retrieval_scores(retriever, k=5)
    for direction, summary in scores.items():
        print(direction, {k: v for k, v in summary.items() if isinstance(v, float)})

    cov = coverage(store.latents(LAYER), a="human", b="robot")
    print("\n".join(cov.advice()))


if __name__ == "__main__":
    main()
