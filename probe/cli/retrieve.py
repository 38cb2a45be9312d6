"""probe retrieve: human clips for a robot state (or any sample), and retrieval evaluation."""

from __future__ import annotations

import argparse
import math
import shlex
import sys

from probe.console import console, outputs, print_table

NAME = "retrieve"
HELP = "find the clips of the indexed embodiment that show the same moment as a robot state; --eval scores it"
EXAMPLE = "probe retrieve --index indexes/human --episode 12 --frame 40 -k 5 --export-clips clips/"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory built by 'probe index'")
    p.add_argument("--store", help="latent store (default: the one recorded in the index)")
    q = p.add_argument_group("query (one of)")
    q.add_argument("--episode", type=int, help="episode of the query frame (with --frame)")
    q.add_argument("--frame", type=int, help="frame of the query within --episode")
    q.add_argument("--dataset", help="dataset of --episode, where episode numbers repeat across datasets (of an "
                   "embodiment the index does not hold, as --episode is)")
    q.add_argument("--sample-id", action="append", help="query by sample id (repeatable)")
    q.add_argument("--query-file", help="raw observation .npz (image/state arrays) embedded by the store's model")
    q.add_argument("--checkpoint", help="with --query-file: checkpoint to embed it (default: the store's provenance)")
    q.add_argument("--trust-checkpoint", action="store_true",
                   help="with --query-file: allow full unpickling of a .pt checkpoint (runs code from the file: "
                        "only for files you trust)")
    q.add_argument("--eval", action="store_true",
                   help="score stage-match retrieval of every sample, both directions, instead of one query")
    p.add_argument("-k", type=int, default=5, help="clips per query (default 5)")
    p.add_argument("--task", help="only clips of this task")
    p.add_argument("--per-episode", type=int, default=1, help="at most this many clips per episode (default 1)")
    p.add_argument("--window", type=float, default=1.0,
                   help="seconds of context before and after the matched frame (default 1.0)")
    p.add_argument("--nprobe", type=int, help="ivf/ivfpq: lists searched (default: the index's)")
    p.add_argument("--ef-search", type=int, help="hnsw: search depth (default: the index's)")
    p.add_argument("--rerank", type=int, help="re-rank this many candidates exactly (default: the index's)")
    p.add_argument("--r-cap", type=int, default=1000, help="--eval: cap on R for MAP@R on large stores (default 1000)")
    p.add_argument("--export-clips", metavar="DIR", help="write the clips (mp4), a contact sheet PNG and captions")
    p.add_argument("--out", help="--eval: also write the scores to this JSON file")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --export-clips directory or --out file (only ones probe wrote)")
    p.add_argument("--data-root", action="append", default=[], metavar="NAME=PATH",
                   help="--export-clips: dataset NAME (a value of the store's 'dataset' column) now lives in PATH "
                        "(repeatable); videos are read only from inside the datasets' roots")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")


def _query(args: argparse.Namespace, retriever):
    """(query latents, sample ids or None, query descriptions) for the chosen query kind."""
    import numpy as np

    from probe import columns as C
    from probe.errors import ConfigError

    given = [args.episode is not None or args.frame is not None, bool(args.sample_id), bool(args.query_file)]
    if (args.checkpoint or args.trust_checkpoint) and not args.query_file:
        raise ConfigError("--checkpoint and --trust-checkpoint only apply to --query-file (stored samples already "
                          "have latents)")
    if sum(given) != 1:
        raise ConfigError("give exactly one query: --episode E --frame F, --sample-id S, --query-file obs.npz "
                          "or --eval")
    if given[0]:
        if args.episode is None or args.frame is None:
            raise ConfigError("--episode and --frame go together; give both")
        row = retriever.locate(args.episode, args.frame, args.dataset)
        ids = [str(retriever.store.meta[C.SAMPLE_ID].iloc[row])]
    elif given[1]:
        ids = list(args.sample_id)
    else:
        from probe.extraction.observation import embed_observation

        X, obs = embed_observation(retriever.store, retriever.layer, args.query_file, checkpoint=args.checkpoint,
                                    trust=args.trust_checkpoint)
        images = obs.pop("images")
        n = int(obs.pop("frames"))
        info = [{**obs, **({"frame": i} if n > 1 else {}),
                 **({"image": images[i]} if images is not None else {})} for i in range(n)]
        return np.asarray(X, dtype=np.float32), None, info
    rows = retriever.rows_of(ids)
    meta = retriever.store.meta.iloc[rows]
    info = [{"sample_id": r[C.SAMPLE_ID], "embodiment": r[C.EMBODIMENT], "dataset": r[C.DATASET],
             "episode": int(r[C.EPISODE]), "frame": int(r[C.FRAME]), "task": r[C.TASK], "stage": r[C.STAGE],
             "stage_progress": float(r[C.STAGE_PROGRESS]), "store_row": int(row)}
            for row, (_, r) in zip(rows, meta.iterrows())]
    return None, ids, info


def _query_image(retriever, info: dict, videos):
    """The query's frame for the contact sheet: from the store's video (``videos``: its VideoPaths), or the
    observation's image."""
    from probe import columns as C

    if "image" in info:
        return info["image"]
    meta = retriever.store.meta
    if "store_row" not in info or C.VIDEO not in meta.columns or C.VIDEO_TIMESTAMP not in meta.columns:
        return None
    row = meta.iloc[info["store_row"]]
    path = videos.path(row[C.VIDEO], row[C.DATASET])
    if path is None:
        return None
    from probe.retrieval.clips import read_frame

    return read_frame(path, float(row[C.VIDEO_TIMESTAMP]))


def _records(df) -> list[dict]:
    """Result rows as JSON-ready dicts (nan as None)."""
    from probe.atomic import plain_json

    return plain_json(df.to_dict(orient="records"), str)


def _score(value: float) -> str:
    """A score for the table: '-' where it is undefined (nan)."""
    return f"{value:.3f}" if value is not None and math.isfinite(value) else "-"


def _run_eval(args: argparse.Namespace, retriever) -> int:
    from rich.table import Table

    from probe.atomic import json_text, write_json
    from probe.retrieval.evaluation import SCORES_JSON, retrieval_scores

    scores = retrieval_scores(retriever, k=args.k, r_cap=args.r_cap)
    if args.out:
        write_json(args.out, {"index": str(retriever.index.path), "layer": retriever.layer, "scores": scores},
                   overwrite=args.overwrite, kind=SCORES_JSON)
    notes = list(dict.fromkeys(s["note"] for s in scores.values() if s.get("note")))
    if args.json:
        print(json_text(scores, default=str))
        for note in notes:  # stdout stays JSON (each direction's "note" says it too); the reason on stderr
            print(f"note: {note}", file=sys.stderr)
        return 0
    table = Table(title=f"stage-match retrieval, label = (task, stage), layer '{retriever.layer}'")
    for name in ("direction", "P@1", f"P@{args.k}", "MAP@R", "MRR", "queries", "search"):
        table.add_column(name)
    for direction, s in scores.items():
        table.add_row(direction.replace("_to_", " -> "), _score(s["precision_at_1"]),
                      _score(s[f"precision_at_{args.k}"]), _score(s["map_at_r"]), _score(s["mrr"]),
                      f"{s['n_evaluated']}/{s['n_queries']}", s["search"])
    print_table(table)
    for note in notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    capped = {d: s["n_r_capped"] for d, s in scores.items() if s["n_r_capped"]}
    if capped:
        console.print(f"note: R capped at {args.r_cap} for {capped} queries (MAP@R at a truncated R; --r-cap)")
    outputs({"scores": args.out} if args.out else {},
            [shlex.join(["probe", "retrieve", "--index", str(retriever.index.path)])
             + f" --episode E --frame F -k {args.k}   (the nearest clips of one moment)"])
    return 0


def run(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from probe import columns as C
    from probe.atomic import json_text
    from probe.errors import ConfigError
    from probe.retrieval.retriever import Retriever

    if args.data_root and not args.export_clips:
        raise ConfigError("--data-root only applies to --export-clips (where clip videos are read); drop it or add "
                          "--export-clips DIR")
    if args.eval and args.export_clips:
        raise ConfigError("--export-clips writes the nearest clips of a query; --eval scores every sample and exports "
                          "none: drop one of them")
    if args.out and not args.eval:
        raise ConfigError("--out writes the scores of --eval; for the nearest clips of a query use --json (stdout) or "
                          "--export-clips DIR")
    from probe.validate import check_output_path

    if args.out:  # every output checked before any work
        from probe.retrieval.evaluation import SCORES_JSON

        check_output_path(args.out, args.overwrite, kind=SCORES_JSON)
    if args.export_clips:
        from probe.retrieval.clips import CLIPS_KIND

        check_output_path(args.export_clips, args.overwrite, kind=CLIPS_KIND)
    retriever = Retriever.open(args.index, args.store)
    if args.eval:
        if args.episode is not None or args.sample_id or args.query_file:
            raise ConfigError("--eval scores every sample; drop the query options (--episode/--sample-id/--query-file)")
        return _run_eval(args, retriever)
    X, ids, info = _query(args, retriever)
    kwargs = dict(k=args.k, task=args.task, per_episode=args.per_episode, window=args.window, nprobe=args.nprobe,
                  ef_search=args.ef_search, rerank=args.rerank)
    results = retriever.search_samples(ids, **kwargs) if ids is not None else retriever.search(X, **kwargs)
    exported = None
    if args.export_clips:
        from probe.retrieval.clips import export_clips
        from probe.store.media import VideoPaths, check_data_roots, parse_data_roots

        roots = parse_data_roots(args.data_root)
        check_data_roots(roots, [retriever.store])
        videos = VideoPaths(retriever.store, roots)
        queries = [{"image": _query_image(retriever, q, videos),
                    "caption": " ".join(f"{k}={v}" for k, v in q.items() if k != "image")} for q in info]
        exported = export_clips(results, args.export_clips, queries=queries, overwrite=args.overwrite,
                                progress=not args.json, videos=videos)
    if args.json:
        payload = {"index": str(retriever.index.path), "layer": retriever.layer,
                   "queries": [{k: v for k, v in q.items() if k != "image"} for q in info],
                   "results": _records(results)}
        if exported:
            payload["exported"] = {"directory": str(exported.directory), "clips": [str(c) for c in exported.clips],
                                   "contact_sheet": str(exported.sheet), "captions": str(exported.captions),
                                   "html": str(exported.html), "notes": exported.notes}
        print(json_text(payload, default=str))
        return 0
    for qi, q in enumerate(info):
        desc = ", ".join(f"{k} {q[k]}" for k in ("sample_id", "source", "frame", "embodiment", "task", "stage")
                         if q.get(k) is not None)
        console.print(f"[bold]query {qi}[/]: {escape(str(desc or q.get('source', '')))}")
        sub = results[results["query"] == qi]
        with_video = sub["video"].map(lambda v: isinstance(v, str)).any()
        wide = console.width >= 120
        table = Table()
        for name in ("#", "score", "task / stage", "stage %", "episode", "clip (s)"):
            table.add_column(name)
        if with_video:
            table.add_column("video (file @ s)", overflow="fold")
        if wide:
            table.add_column("sample", overflow="fold")
        for _, r in sub.iterrows():
            cells = [str(r["rank"]), f"{r['score']:.3f}", f"{r['task']} / {r['stage']}", f"{r['stage_progress']:.0%}",
                     C.episode_key(r[C.DATASET], r[C.EPISODE]), f"{r['start']:.2f}-{r['end']:.2f}"]
            if with_video:
                cells.append(f"{str(r['video']).rsplit('/', 1)[-1]} @ {r['video_start']:.2f}-{r['video_end']:.2f}"
                             if isinstance(r["video"], str) else "-")
            if wide:
                cells.append(str(r["sample_id"]))
            table.add_row(*cells)
        print_table(table)
        n = int((results["query"] == qi).sum())
        if n < args.k:
            console.print(f"note: only {n} clip{'' if n == 1 else 's'} under --per-episode {args.per_episode} (fewer distinct "
                          "episodes than -k); raise --per-episode for more")
    if exported:
        for note in exported.notes:
            console.print(f"note: {note}", markup=False)
    elif not retriever.has_video:
        console.print("note: the store has no video columns; clips are time windows only (no files to export)")
    index = ["probe", "retrieve", "--index", str(retriever.index.path)]
    steps = [shlex.join(["open", str(exported.html)]) + "   (the clips side by side)"] if exported and exported.html \
        else []
    if not exported and retriever.has_video and ids is not None:
        query = (["--episode", str(args.episode), "--frame", str(args.frame),
                  *(["--dataset", args.dataset] if args.dataset else [])] if args.episode is not None
                 else [a for sid in ids for a in ("--sample-id", sid)])
        steps.append(shlex.join([*index, *query, "-k", str(args.k), "--export-clips", "clips"])
                     + "   (write these clips as mp4 with a contact sheet)")
    steps.append(shlex.join([*index, "--eval"]) + "   (score retrieval over every sample)")
    outputs({"clips": f"{exported.directory} ({len(exported.clips)} mp4)", "contact sheet": exported.sheet,
             "captions": exported.captions, "page": exported.html} if exported else {}, steps)
    return 0
