"""The demo pipeline on the built-in world: generate -> train -> extract -> metrics -> retrieval -> report.

``run_demo(DemoConfig(out=...))`` runs it and returns where each stage wrote its
outputs, including the stores the dashboard should open (``probe demo`` then serves
them). Every stage reuses what an earlier run left (the world and checkpoints by config
hash, stores and indexes by path), so a second run is fast; ``overwrite`` redoes it.

Everything the demo writes stays under ``out``, caches included: decoded frames, kNN
graphs, layouts and metric results go to ``out/cache`` (:func:`demo_cache`), never to
``$PROBE_CACHE_DIR`` or the home directory; ``probe serve --cache out/cache ...`` reads them.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from probe.console import console, print_table

log = logging.getLogger(__name__)

# the image encoder, the vision-language prefix every embodiment shares (where a VLA analysis looks:
# before embodiment-specific state enters) and the action expert after it
DEMO_LAYERS = ("vision", "trunk.block0", "expert.block0", "trunk.block2")  # the headline last: the default layer
HEADLINE_LAYER = "trunk.block2"
SHOWN_METRICS = 7  # columns of the printed table: the first headline metrics the records hold
# short column labels for the printed table (others are shown by name)
LABELS = {"knn_embodiment_mixing": "kNN mixing", "ilisi": "iLISI", "embodiment_probe_acc": "emb. probe",
          "silhouette_embodiment": "sil. emb.", "clisi": "cLISI", "silhouette_stage": "sil. stage",
          "stage_transfer_acc_robot_to_human": "stage r->h", "retrieval_precision_at_1_robot_to_human": "P@1 r->h",
          "retrieval_map_at_r_robot_to_human": "MAP@R r->h", "cka_linear": "CKA", "kbet": "kBET"}


@dataclass(frozen=True)
class DemoConfig:
    """What the demo runs: its output directory, the world's size and whether cached outputs are redone."""

    out: Path = Path("probe-demo")
    size: str = "default"
    overwrite: bool = False

    def __post_init__(self) -> None:
        from probe.errors import ConfigError
        from probe.world.config import Size

        object.__setattr__(self, "out", Path(self.out))
        if self.size not in [s.value for s in Size]:
            raise ConfigError(f"demo size must be one of {[s.value for s in Size]}, got {self.size!r}")


@dataclass
class DemoOutputs:
    """Where each stage of the demo wrote its outputs, and the stores the dashboard opens (first first)."""

    world: Path | None = None
    sweep: Path | None = None
    stores: dict[str, list[Path]] = field(default_factory=dict)
    metrics: Path | None = None
    index: Path | None = None
    clips: Path | None = None
    report: Path | None = None
    dashboard: list[Path] = field(default_factory=list)
    cache: Path | None = None
    reused: set[str] = field(default_factory=set)  # outputs found from an earlier run and left as they were
    detail: Path | None = None  # the checkpoint the retrieval step and the report's per-layer sections describe
    verdict: list[str] = field(default_factory=list)  # the closing block, from the report's metrics.json


def demo_cache(out: str | Path) -> Path:
    """The demo's cache directory, ``out/cache`` (a toolkit cache directory: see :mod:`probe.cache.directory`)."""
    return Path(out) / "cache"


def _stamp(path: Path) -> int | None:
    """A file's modification time (None when missing): unchanged across a stage means the stage reused it."""
    return path.stat().st_mtime_ns if path.exists() else None


def _extract_recipe(world, recipe: str, out: Path, cache: Path, overwrite: bool,
                    progress: bool) -> tuple[list[Path], bool]:
    """The stores of ``recipe``'s checkpoints, and whether they were all reused from an earlier run."""
    from probe.extraction.config import ExtractConfig, PassConfig
    from probe.model.config import ModelConfig
    from probe.extraction.run import extract
    from probe.store.store import open_store

    checkpoints = world.checkpoints[recipe]
    paths = [out / c.name for c in checkpoints]
    if not overwrite and all((p / "manifest.json").exists() for p in paths):
        for p in paths:
            open_store(p)  # a cached store must still be whole
        log.info("reusing stores of %s", recipe)
        return paths, True
    config = ExtractConfig(checkpoints=tuple(str(c) for c in checkpoints),
                           data=tuple(f"{emb}={path}" for emb, path in world.datasets.items()),
                           out=str(out),
                           overwrite=True,
                           model=ModelConfig(layers=DEMO_LAYERS),
                           passes=PassConfig(batch_size=256, frame_cache=str(cache / "frames")))
    stores = extract(config, progress=progress)
    stores = stores if isinstance(stores, list) else [stores]
    return [s.path for s in stores], False


def _print_metrics(records: list[dict]) -> None:
    from rich.table import Table

    from metrics.spec import headline_metrics
    from probe.measure.suite import better_arrow

    held = {m for rec in records for m in rec["metrics"]}
    shown = [m for m in headline_metrics() if m in held][:SHOWN_METRICS]
    table = Table("checkpoint", *[f"{LABELS.get(m, m)} {better_arrow(m)}" for m in shown],
                  title=f"headline metrics at {HEADLINE_LAYER}: value [null baseline]")  # print_table: as written
    for rec in records:
        cells = []
        for m in shown:
            e = rec["metrics"].get(m)
            if not e or e.get("value") is None:
                cells.append("-")
            else:
                null = e.get("null")
                cells.append(f"{e['value']:.2f}" + (f" [{null:.2f}]" if null is not None else ""))
        path = Path(rec["store"])
        table.add_row(f"{path.parent.name} {path.name}", *cells)  # two words: two lines in a narrow terminal
    print_table(table)


def run_demo(config: DemoConfig = DemoConfig()) -> DemoOutputs:
    """Run every stage of the pipeline into ``config.out``; returns where the outputs went."""
    from rich.markup import escape

    from probe.cache.directory import use_numba_cache
    from probe.world.build import build_sweep

    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    done = DemoOutputs(cache=demo_cache(out))
    if "numba" not in sys.modules:  # numba's compiled code (LISI, UMAP) in the cache, not beside the sources
        use_numba_cache(done.cache)
    console.print(f"[bold]probe demo[/] -> {escape(str(out.resolve()))}  (size {config.size})")

    console.print("[bold]1/6[/] world: generate human and robot datasets; diversity sweep: pre-train on robot "
                  "mixtures of rising diversity, fine-tune with and without human data")
    before = {"world": _stamp(out / "world" / "world.json"), "sweep": _stamp(out / "world" / "sweep" / "sweep.json")}
    world, sweep = build_sweep(out / "world", size=config.size, overwrite=config.overwrite, progress=True)
    done.world, done.sweep = world.path, sweep.path / "sweep.json"
    after = {"world": _stamp(world.path / "world.json"), "sweep": _stamp(done.sweep)}
    done.reused |= {k for k, stamp in before.items() if stamp is not None and stamp == after[k]}
    for emb, path in world.datasets.items():
        console.print(f"  dataset {emb}: {path}", markup=False)
    for recipe, dirs in world.checkpoints.items():
        console.print(f"  checkpoints {recipe}: {len(dirs)} ({', '.join(d.name for d in dirs)}) in {dirs[0].parent}",
                      markup=False)
    from probe.world.sweep import transfer_table

    print_table(transfer_table(sweep.result))

    console.print(f"[bold]2/6[/] extract latents of {', '.join(DEMO_LAYERS)} for every checkpoint")
    reused = []
    for recipe in world.checkpoints:
        done.stores[recipe], was_reused = _extract_recipe(world, recipe, out / "stores" / recipe, done.cache,
                                                          config.overwrite, True)
        reused.append(was_reused)
        console.print(f"  stores {recipe}: {out / 'stores' / recipe}", markup=False)

    if all(reused):
        done.reused.add("stores")
    console.print(f"[bold]3/6[/] alignment metrics of every checkpoint ({HEADLINE_LAYER})")
    from probe.measure.suite import evaluate, interactive_config, write_metrics_json

    all_stores = [p for paths in done.stores.values() for p in paths]
    records = evaluate(all_stores, layers=HEADLINE_LAYER, config=interactive_config(), cache_dir=done.cache,
                       progress=True)
    done.metrics = write_metrics_json(out / "metrics.json", records)
    _print_metrics(records)

    # one checkpoint in detail: the co-trained one at the highest diversity (the last of its series), for the
    # retrieval step here and the report's per-layer sections, retrieval examples and coverage gaps (--detail)
    done.detail = done.stores["cotrained"][-1]
    console.print(f"[bold]4/6[/] retrieval: nearest human clips for robot moments ({escape(_name(done.detail))})")
    done.index, done.clips, index_reused = _retrieval(done.detail, out, config.overwrite)
    if index_reused:
        done.reused.add("index")

    console.print(f"[bold]5/6[/] report over all checkpoints, every layer of {escape(_name(done.detail))}")
    from probe.demo.verdict import verdict_lines
    from probe.report.build import build_report
    from probe.report.config import ReportConfig

    report = build_report(all_stores, out / "report",
                          ReportConfig(overwrite=True, headline_layer=HEADLINE_LAYER, cache_dir=done.cache,
                                       eval_config=interactive_config(), detail=done.detail), progress=True)
    done.report = report.out / "report.html"
    done.verdict = verdict_lines(json.loads((report.out / "metrics.json").read_text(encoding="utf-8")))
    for line in done.verdict:  # soft-wrapped: one line each, whatever the terminal's width
        console.print(line, markup=False, soft_wrap=True, style="bold" if line == done.verdict[0] else None)
    cotrained = done.stores["cotrained"]  # the highest level first (the dashboard opens on it), then the lowest
    done.dashboard = list(dict.fromkeys([cotrained[-1], cotrained[0], done.stores["robot-only"][-1]]))
    return done


def _name(store_path: Path) -> str:
    """``cotrained level-100``: a demo store by its recipe and checkpoint, as the metrics table names it."""
    return f"{store_path.parent.name} {store_path.name}"


def _retrieval(store_path: Path, out: Path, overwrite: bool) -> tuple[Path, Path, bool]:
    import numpy as np

    from probe import columns as C
    from probe.retrieval.clips import export_clips
    from probe.retrieval.index import build_index
    from probe.retrieval.retriever import Retriever
    from probe.store.media import VideoPaths
    from probe.store.store import open_store

    store = open_store(store_path)
    index_dir = out / "index" / f"{store_path.parent.name}-{store_path.name}"
    reused = not overwrite and (index_dir / "index.json").exists()
    if not reused:
        build_index(store, HEADLINE_LAYER, index_dir, overwrite=True)
    retriever = Retriever.open(index_dir, store)
    robot = store.meta[store.meta[C.EMBODIMENT] == "robot"]
    rng = np.random.default_rng(0)
    picks = []
    for stage in ("grasp", "lift", "place"):
        rows = robot[robot[C.STAGE] == stage]
        if len(rows):
            picks.append(rows.iloc[int(rng.integers(len(rows)))])
    results = retriever.search_samples([str(p[C.SAMPLE_ID]) for p in picks], k=3, per_episode=1)
    for i, pick in enumerate(picks):
        console.print(f"  robot {pick[C.TASK]} / {pick[C.STAGE]} (episode {pick[C.EPISODE]}, frame {pick[C.FRAME]}):",
                      markup=False)
        for _, r in results[results["query"] == i].iterrows():
            console.print(f"    human episode {r['episode']} {r['start']:.1f}-{r['end']:.1f}s  "
                          f"{r['task']} / {r['stage']}  score {r['score']:.3f}", markup=False)
    captions = [{"caption": f"robot {p[C.TASK]} / {p[C.STAGE]} (episode {p[C.EPISODE]}, frame {p[C.FRAME]})"}
                for p in picks]
    # the query tiles show each robot frame, read from the store's videos
    clips = export_clips(results, out / "clips", queries=captions, overwrite=True, videos=VideoPaths(store))
    return index_dir, clips.sheet or clips.directory, reused
