"""One pass over the data for several checkpoints: read and decode each batch once, run every model on it.

:func:`plan_passes` loads checkpoints one by one and groups them into passes whose
models fit a memory budget (:func:`probe.extraction.budget.pass_budget`: by default a quarter of the
available RAM, or of the free GPU memory). :func:`run_pass` then reads each batch
once (video decode, parquet reads) and hands it to every checkpoint of the pass.
Each checkpoint keeps its own :class:`~probe.store.store.StoreWriter` (staging directory
and resume mask): a batch is read when any of them still needs its rows, and each
writes only the rows it has not written yet. A checkpoint that fails with a
:class:`~probe.errors.ProbeError` (NaN latents, a layer that never fires) is
aborted and dropped from the pass; the others finish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probe import columns as C
from probe.extraction.samples import DATASET_INDEX, ROW, OpenedData, dataset_provenance
from probe.extraction.batches import batches_of, prefetch, read_work
from probe.sizes import format_bytes
from probe.errors import DataError, ProbeError
from probe.model.extractor import Extractor
from probe.extraction.readpool import default_read_workers, read_ahead
from probe.store.store import STORE_KIND, Store
from probe.store.writer import StoreWriter
from probe.validate import check_output_path

if TYPE_CHECKING:
    from probe.extraction.config import ExtractConfig

log = logging.getLogger(__name__)

PREFETCH_DEPTH = 4  # batches read ahead of the model (4 read ~7% faster than 2 with one checkpoint)


# -- checkpoints of a pass -------------------------------------------------------------------------


@dataclass(eq=False)
class CheckpointRun:
    """One checkpoint in a pass: its model, staging writer, skipped episodes, and its store or error."""

    index: int
    checkpoint: str
    path: Path
    extractor: Extractor | None
    writer: StoreWriter | None = None
    skipped: dict[tuple[int, int], str] = field(default_factory=dict)
    error: ProbeError | None = None
    store: Store | None = None

    @property
    def live(self) -> bool:
        return self.error is None and self.store is None

    def fail(self, error: ProbeError) -> None:
        """Record ``error`` and drop everything this checkpoint wrote (nothing half-written)."""
        log.info("checkpoint '%s' failed: %s", self.checkpoint, error)  # the final error names every failure
        self.error = error
        if self.writer is not None:
            self.writer.abort()
        shutil.rmtree(staging_dir(self.path), ignore_errors=True)

    def release(self) -> None:
        """Let go of the model and writer once the pass is over."""
        self.extractor = None
        self.writer = None


def plan_passes(config: ExtractConfig, items: Sequence[tuple[int, str, Path]], device: str,
                budget: int) -> Iterator[list[CheckpointRun]]:
    """Load the checkpoints ``(index, checkpoint, store path)`` one by one and yield them in passes.

    A pass grows while the summed parameter and buffer bytes of its models stay within
    ``budget`` (its first model always fits, so ``budget=0`` gives one checkpoint per
    pass), all its models want the same decoded input (image size, images or not), and
    the engine is local (Ray runs one checkpoint per pass). Every checkpoint of a pass is
    loaded and validated (weights, layer names) before the pass is yielded, so a broken
    checkpoint fails before that pass extracts anything.
    """
    from probe.model.checkpoints import load_checkpoint

    group: list[CheckpointRun] = []
    used = 0
    for index, checkpoint, path in items:
        loaded = load_checkpoint(checkpoint, model=config.model.model, model_kwargs=config.model.model_kwargs,
                                 trust=config.model.trust_checkpoint, device=device)
        extractor = Extractor(loaded, config.model, device)
        size = extractor.model_bytes
        if group and (used + size > budget or extractor.read_key != group[0].extractor.read_key
                      or config.passes.engine == "ray"):
            log.info("pass of %d checkpoint(s): %s of weights (budget %s)", len(group), format_bytes(used), format_bytes(budget))
            yield group
            group, used = [], 0
        group.append(CheckpointRun(index, checkpoint, Path(path), extractor))
        used += size
    if group:
        log.info("pass of %d checkpoint(s): %s of weights (budget %s)", len(group), format_bytes(used), format_bytes(budget))
        yield group


# -- running a pass --------------------------------------------------------------------------------


def provenance(config: ExtractConfig, opened: OpenedData, extractor: Extractor, engine: str) -> dict[str, Any]:
    """The manifest's ``provenance``: checkpoint, datasets, adapter, layers, sampling, engine."""
    from probe.model.adapters import adapter_name

    options = extractor.adapter.options() if callable(getattr(extractor.adapter, "options", None)) else {}
    return {
        "tool": "probe extract",
        "checkpoint": extractor.loaded.provenance() | ({"model_kwargs": dict(config.model.model_kwargs)}
                                                       if config.model.model_kwargs else {}),
        "datasets": [dataset_provenance(opened, i) for i in range(len(opened.datasets))],
        "adapter": {"name": adapter_name(config.model.adapter, extractor.adapter), "options": options},
        "embed": config.model.embed,
        "layers": extractor.pooling(),
        "sampling": {"stride": config.sampling.stride, "fps": config.sampling.fps,
                     "max_frames": config.sampling.max_frames, "max_episodes": config.sampling.max_episodes},
        "stages": config.sampling.stages,
        **({"embodiment_stages": dict(config.sampling.embodiment_stages)} if config.sampling.embodiment_stages else {}),
        "engine": engine,
        "batch_size": config.passes.batch_size,
        "device": str(extractor.device),
        "autocast": config.model.autocast,
    }


def staging_dir(path: Path) -> Path:
    """Where the rows of the store at ``path`` are staged while a run writes them (kept for ``--resume``)."""
    return path.with_name(f".{path.name}.staging")


def run_pass(config: ExtractConfig, opened: OpenedData, runs: Sequence[CheckpointRun], *,
             progress: bool = False) -> None:
    """Extract every checkpoint of ``runs`` in one pass over the data and publish their stores.

    Afterwards each run holds its ``store``, or the ``error`` it failed with (its
    writer aborted). An error of the data itself (an unreadable episode) aborts every
    writer and is raised; an interrupt (Ctrl-C, any non-toolkit exception) syncs every
    writer so that ``resume`` continues where it stopped.
    """
    engine = str(config.passes.engine)
    try:  # a resume refused (other options) or a full disk: drop the staging just begun, keep resumable ones
        for run in runs:
            run.writer = StoreWriter(staging_dir(run.path), opened.meta,
                                     provenance=provenance(config, opened, run.extractor, engine),
                                     overwrite=True, resume=config.resume,
                                     resume_key=config.resume_key(run.extractor.loaded.sha256, opened))
            run.writer.warnings.extend(w for w in opened.warnings if w not in run.writer.warnings)
    except BaseException:
        for run in runs:
            if run.writer is not None and not run.writer.resumed:
                run.writer.abort()
        raise
    try:
        if engine == "ray":
            from probe.extraction.ray_engine import run_ray

            (run,) = runs
            run_ray(config, run.checkpoint, opened, run.writer, run.extractor, run.skipped, progress=progress)
        else:
            _run_local(config, opened, runs, progress=progress)
        for run in runs:
            if run.live:
                try:
                    run.store = _finish(run, opened, config.overwrite)
                except ProbeError as exc:
                    run.fail(exc)
    except ProbeError:
        for run in runs:
            if run.live:
                run.writer.abort()  # a deterministic error: nothing to resume, nothing half-written
        raise
    except BaseException:
        for run in runs:
            if run.live:
                try:
                    run.writer.sync()  # interrupted: record what was written, for --resume
                except OSError as exc:  # e.g. interrupted while committing: the interrupt matters more
                    log.warning("could not record the progress of '%s' for --resume: %s", run.path, exc)
        raise
    finally:
        for run in runs:
            run.release()


MAX_MODEL_WORKERS = 4  # concurrent forwards on CPU (each on cores // workers intra-op threads)


def cpu_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def model_workers(device: str, requested: int | None = None) -> Iterator[int]:
    """How many batches run through the models at once; on CPU, torch's intra-op threads are split among them.

    A forward of a small model on one batch parallelises poorly over cores (its ops are
    too small to split well): on the 2-core machine of ``benchmarks/RESULTS.md`` the
    world policy forwards 11,500 frames/s on one thread and 19,000 on two. Two batches
    at once, one thread each, run prepare + forward + hooks + pooling at about 15,000
    frames/s where one batch on two threads managed 9,000, and no forward waits on a
    sibling thread that another process descheduled. CPU: ``requested`` or ``min(cores, 4)``
    workers with ``cores // workers`` threads each (torch's setting restored after); CUDA: one.
    """
    import torch

    if not str(device).startswith("cpu"):
        yield 1
        return
    before = torch.get_num_threads()
    cores = max(1, min(cpu_cores(), before))
    workers = max(1, min(cores, MAX_MODEL_WORKERS) if requested is None else int(requested))
    torch.set_num_threads(max(1, cores // workers))
    try:
        yield workers
    finally:
        torch.set_num_threads(before)


Outcome = dict[int, "dict[str, np.ndarray] | ProbeError"]


def _run_local(config: ExtractConfig, opened: OpenedData, runs: Sequence[CheckpointRun], *, progress: bool) -> None:
    """Read each batch once (ahead, in a thread or in reader processes, see :mod:`probe.extraction.readpool`), run every
    live checkpoint of the pass on it (several batches at once on CPU, see :func:`model_workers`) and write
    the results in order."""
    from probe.progress import bar

    first = runs[0].extractor
    todo = np.zeros(len(opened.samples), dtype=bool)
    for run in runs:
        todo |= ~run.writer.done
    live = [run for run in runs if run.live]

    def wanted() -> Iterator[Any]:  # rows some live checkpoint still needs; none once all failed
        for rows in batches_of(opened.samples, todo, config.passes.batch_size):
            if not live:
                return
            positions = rows[ROW].to_numpy(np.int64)
            if any(not run.writer.done[positions].all() for run in live):
                yield rows

    bad: set[tuple[int, int]] = set()

    def read(rows: Any) -> Any:
        return read_work(opened, rows, images=first.needs_images, size=first.image_size,
                         skip_bad=config.skip_bad_episodes, bad=bad)

    def compute(work: Any, todo_runs: list[tuple[CheckpointRun, np.ndarray]]) -> Outcome:
        """Each run's pooled arrays for its rows still to do, or the toolkit error it failed with."""
        outcome: Outcome = {}
        shared: dict[Any, Any] = {}  # one prepare per input key (see Extractor.input_key)
        embodiment = opened.embodiments[work.dataset]
        for run, need in todo_runs:
            try:
                key = run.extractor.input_key
                if key is None:
                    inputs = run.extractor.prepare(work.batch, work.meta, embodiment)
                else:
                    if key not in shared:
                        try:
                            shared[key] = run.extractor.prepare(work.batch, work.meta, embodiment)
                        except ProbeError as exc:
                            shared[key] = exc
                    if isinstance(shared[key], ProbeError):
                        raise shared[key]
                    inputs = shared[key]
                values = run.extractor.run(inputs, work.batch, work.meta)
                outcome[run.index] = values if need.all() else {name: x[need] for name, x in values.items()}
            except ProbeError as exc:  # this checkpoint's own failure: dropped, the others go on
                outcome[run.index] = exc
        return outcome

    def write(work: Any, todo_runs: list[tuple[CheckpointRun, np.ndarray]], outcome: Future[Outcome]) -> None:
        result = outcome.result()
        for run, need in todo_runs:
            value = result[run.index]
            if not run.live or run not in live:
                continue
            if isinstance(value, ProbeError):
                run.fail(value)
                live.remove(run)
                continue
            try:
                run.writer.write(work.rows[need], value, pooling=run.extractor.pooling())
            except ProbeError as exc:
                run.fail(exc)
                live.remove(run)

    readers = (default_read_workers(str(first.device), cpu_cores()) if config.passes.read_workers is None
               else int(config.passes.read_workers))
    if readers:
        log.info("reading in %d process(es)", readers)
        works = read_ahead(opened, wanted(), workers=readers, images=first.needs_images, size=first.image_size,
                           skip_bad=config.skip_bad_episodes, bad=bad)
    else:
        works = prefetch(wanted(), read, depth=PREFETCH_DEPTH)
    desc = f"extract {first.loaded.name}" if len(runs) == 1 else f"extract {len(runs)} checkpoints"
    with bar(int(todo.sum()), desc=desc, enabled=progress, unit="frame") as pbar, \
            model_workers(str(first.device), config.passes.model_workers) as workers, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe-model") as pool, \
            contextlib.closing(works):
        pending: deque[tuple[Any, list[tuple[CheckpointRun, np.ndarray]], Future[Outcome]]] = deque()
        try:
            for work in works:
                todo_runs = []
                for run in live:
                    for episode, msg in work.skipped:
                        run.skipped[(work.dataset, episode)] = msg
                    if len(work.rows):
                        need = ~run.writer.done[work.rows]
                        if need.any():
                            todo_runs.append((run, need))
                pending.append((work, todo_runs, pool.submit(compute, work, todo_runs)))
                while len(pending) > workers or (pending and pending[0][2].done()):
                    done = pending.popleft()
                    write(*done)
                    pbar.update(done[0].n_asked)
            while pending:
                done = pending.popleft()
                write(*done)
                pbar.update(done[0].n_asked)
        finally:
            for _, _, fut in pending:
                fut.cancel()


def _finish(run: CheckpointRun, opened: OpenedData, overwrite: bool) -> Store:
    """Fill skipped rows, commit the staging store and publish it at the run's path."""
    writer, extractor = run.writer, run.extractor
    writer.provenance["layers"] = extractor.pooling()  # embed names are known once batches ran
    if not writer.done.any() and run.skipped:
        raise DataError(f"every episode was skipped as unreadable ({len(run.skipped)}); nothing to write")
    for msg in run.skipped.values():
        line = f"{msg}; skipped (--skip-bad-episodes)"
        if line not in writer.warnings:  # a resumed run's staged warnings hold the same lines
            writer.warnings.append(line)
    if run.skipped:
        _fill_skipped(writer, extractor)
    staged = writer.commit()
    return _publish(staged, run.path, opened, run.skipped, overwrite)


def _fill_skipped(writer: StoreWriter, extractor: Extractor) -> None:
    """Zero rows for skipped samples so the staging store can commit; :func:`_publish` drops them."""
    rows = np.flatnonzero(~writer.done)
    if not len(rows):
        return
    dims = extractor.dims
    for start in range(0, len(rows), 4096):
        chunk = rows[start : start + 4096]
        writer.write(chunk, {name: np.zeros((len(chunk), d), np.float32) for name, d in dims.items()})


def _publish(staged: Store, path: Path, opened: OpenedData, skipped: Mapping[tuple[int, int], str],
             overwrite: bool) -> Store:
    """Move the staging store into place, dropping the samples of skipped episodes."""
    from probe.atomic import replace_dir

    if not skipped:
        check_output_path(path, overwrite, kind=STORE_KIND)
        replace_dir(staged.path, path)
        return dataclasses.replace(staged, path=path)  # opened and checked by commit() a moment ago
    samples = opened.samples
    drop = np.zeros(len(samples), dtype=bool)
    for (d, episode) in skipped:
        drop |= ((samples[DATASET_INDEX] == d) & (samples[C.EPISODE] == episode)).to_numpy()
    keep = np.flatnonzero(~drop)
    writer = StoreWriter(path, staged.meta.iloc[keep].reset_index(drop=True), provenance=staged.provenance,
                         overwrite=overwrite)
    writer.warnings.extend(staged.manifest.get("warnings", []))
    pooling = {name: info["pooling"] for name, info in staged.manifest["layers"].items()}
    try:
        for start in range(0, len(keep), 8192):
            chunk = keep[start : start + 8192]
            writer.write(np.arange(start, start + len(chunk)),
                         {name: np.asarray(staged.matrix(name)[chunk]) for name in staged.layers}, pooling=pooling)
        store = writer.commit()
    except BaseException:
        writer.abort()
        raise
    shutil.rmtree(staged.path, ignore_errors=True)
    return store
