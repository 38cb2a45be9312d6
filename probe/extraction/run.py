"""Extraction: run models over datasets and stream pooled layer outputs into latent stores.

``extract(ExtractConfig(...))`` opens the datasets and builds the sample table once
(:mod:`probe.extraction.batches`), loads the checkpoints (:mod:`probe.model.extractor`), and runs
them in passes (:mod:`probe.extraction.passes`): each batch is read and decoded once and given
to every checkpoint of the pass, each streaming into its own
:class:`~probe.store.store.StoreWriter`. Memory stays bounded by the batch size and the
pass's models, an interrupted run continues with ``resume=True``, and a store
appears whole or not at all.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe import columns as C
from probe.extraction.samples import OpenedData, open_data
from probe.errors import ConfigError, OutputExistsError, OutputPathError, ProbeError
from probe.cache.frames import frame_cache_for, use_frame_cache
from probe.extraction.config import ExtractConfig
from probe.model.config import resolve_device
from probe.lock import exclusive
from probe.store.store import STORE_KIND, Store, open_store
from probe.validate import check_output_location, check_output_path, check_outside_datasets, check_same_options

log = logging.getLogger(__name__)





















# -- orchestration -------------------------------------------------------------------------------


def store_paths(config: ExtractConfig, names: Sequence[str]) -> list[Path]:
    """Where each checkpoint's store goes: ``out`` itself for one, ``out/<checkpoint name>`` for several
    (a name given twice: ``<name>-2`` ...)."""
    out = Path(config.out)
    if len(names) == 1:
        return [out]
    paths, seen = [], set()
    for name in names:
        unique, k = name, 2
        while unique in seen:
            unique, k = f"{name}-{k}", k + 1
        seen.add(unique)
        paths.append(out / unique)
    return paths


def _checkpoint_names(checkpoints: Sequence[str]) -> list[str]:
    """Each checkpoint's :func:`~probe.model.checkpoints.checkpoint_name`; checkpoints of the same name are told
    apart by the folders above them where their paths differ (``A/cotrained/level-100`` and
    ``B/robot-only/level-100``: ``cotrained-level-100`` and ``robot-only-level-100``)."""
    from probe.model.checkpoints import checkpoint_name

    names = [checkpoint_name(c) for c in checkpoints]
    for name in {n for n in names if names.count(n) > 1}:
        group = [i for i, n in enumerate(names) if n == name]
        chains = [_folders_above(checkpoints[i]) for i in group]
        parts: list[list[str]] = [[] for _ in group]
        for depth in range(max(map(len, chains))):
            labels = [chain[depth] if depth < len(chain) else "" for chain in chains]
            if len(set(labels)) > 1:  # a folder where they differ: it tells them apart
                for part, label in zip(parts, labels):
                    part[:0] = [label] if label else []
                if len({tuple(part) for part in parts}) == len(parts):
                    break
        for i, part in zip(group, parts):
            names[i] = "-".join([*part, name])
    return names


def _folders_above(checkpoint: str) -> list[str]:
    """The names of the folders above a checkpoint (of a LeRobot ``pretrained_model``: above its step), nearest
    first."""
    path = Path(os.path.abspath(checkpoint))
    if path.name == "pretrained_model":
        path = path.parent
    return [folder.name for folder in path.parents if folder.name]




def lock_path(path: Path) -> Path:
    """The lock file a run holds while it stages and publishes the store at ``path`` (beside its staging)."""
    return path.with_name(f".{path.name}.lock")


def _complete_store(config: ExtractConfig, checkpoint: str, path: Path, opened: OpenedData) -> Store | None:
    """With ``resume``, a finished store of the same checkpoint, options, data and samples (kept); else None."""
    if not (config.resume and (path / "manifest.json").exists()):
        return None
    from probe.model.checkpoints import checkpoint_sha256

    store = open_store(path)
    fix = "pass --overwrite (without --resume) to replace it, or choose another --out"
    check_same_options(store.provenance.get("resume_key"),
                       config.resume_key(checkpoint_sha256(checkpoint, model=config.model.model), opened),
                       what=f"the complete store '{path}'", fix=fix)
    if store.meta[C.SAMPLE_ID].tolist() != opened.meta[C.SAMPLE_ID].tolist():
        raise ConfigError(f"cannot resume: the complete store '{path}' holds other samples; {fix}")
    log.info("store '%s' is already complete; nothing to resume", path)
    return store


def _staged(path: Path) -> Path:
    """Where an interrupted run left the rows of the store at ``path``: the ``StoreWriter`` partial directory of
    its staging (see :func:`probe.extraction.passes.run_pass`)."""
    from probe.extraction.passes import staging_dir
    from probe.store.writer import partial_dir

    return partial_dir(staging_dir(path))


def _refuse_unfinished(paths: Sequence[Path]) -> None:
    """Without --resume or --overwrite: stores an interrupted run left (some complete, others staged or not
    begun) are refused with a line saying that --resume continues the run."""
    existing = [p for p in paths if os.path.lexists(p)]
    staged = [p for p in paths if (_staged(p) / "state.json").is_file()]
    missing = [p for p in paths if p not in existing]
    if staged and not existing:  # one store (or none published yet): its interrupted rows wait for --resume
        raise OutputExistsError(f"an interrupted run of store '{staged[0]}' left its rows staged in "
                                f"'{_staged(staged[0])}'; pass --resume to continue it, or --overwrite to start over")
    if not existing or not all(STORE_KIND.holds(p) for p in existing) or not (staged or missing):
        return
    detail = (f"the rows of '{staged[0].name}' are staged in '{_staged(staged[0])}'" if staged else
              f"no store '{missing[0].name}' yet")
    raise OutputExistsError(f"store '{existing[0]}' already exists, from an unfinished run ({detail}); pass --resume "
                            "to continue it (complete stores are kept), or --overwrite to start over")


def _refuse_out_in_data(config: ExtractConfig, paths: Sequence[Path]) -> None:
    """An --out that is or lies inside a dataset (:func:`probe.validate.check_outside_datasets`) or a --data folder
    (whatever its format), or is a --data file, is refused."""
    check_outside_datasets(config.out, "--out")

    def real(path: Path | str) -> Path:
        try:
            return Path(path).expanduser().resolve()
        except (OSError, RuntimeError):  # a symbolic link loop
            return Path(os.path.abspath(Path(path).expanduser()))

    outs = {real(p) for p in (config.out, *paths)}
    for spec in config.data:
        data = real(spec.path)
        if os.path.isdir(data) and any(out == data or data in out.parents for out in outs):
            where = "is the" if real(config.out) == data else "is inside the"
            what = "folder"
        elif os.path.isfile(data) and data in outs:
            where, what = "is the", "file"
        else:
            continue
        raise OutputPathError(f"--out '{config.out}' {where} --data {what} '{spec.path}'; datasets are read in place "
                              "and never written: choose a path outside it")


def _check_outputs(config: ExtractConfig, paths: Sequence[Path]) -> None:
    """Every store path checked before any work (not in a dataset, writable, not a user's folder, not a file)."""
    _refuse_out_in_data(config, paths)
    out = Path(config.out)
    if len(paths) > 1:
        check_output_location(out, "directory of stores")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out '{config.out}' is a file; with several checkpoints it must be a directory")
        if STORE_KIND.holds(out):
            raise ConfigError(f"--out '{config.out}' is a store; with several checkpoints it is a directory "
                              "holding one store per checkpoint: choose another --out")
    if not (config.overwrite or config.resume):
        for path in paths:
            check_output_location(path, STORE_KIND.what)
        _refuse_unfinished(paths)
    for path in paths:  # with --resume an existing store is compared, later; anything else there is refused
        check_output_path(path, config.overwrite or config.resume, kind=STORE_KIND)


def extract(config: ExtractConfig, progress: bool = False) -> Store | list[Store]:
    """Extract pooled layer outputs of each checkpoint over the datasets into latent stores.

    The data is opened once; checkpoints run in passes (see ``ExtractConfig.pass_memory``):
    each batch is read and decoded once per pass and given to every checkpoint of it.
    A checkpoint that fails during its pass (NaN latents, a layer that never fires) is
    dropped and the others are finished and published before its error is raised;
    a checkpoint that cannot be loaded fails before its pass starts.

    Returns
    -------
    The one store, or a list (one per checkpoint, under ``config.out``, in the order
    of ``config.checkpoints``) when several checkpoints are given.
    """
    with use_frame_cache(frame_cache_for(config.passes.frame_cache, int(config.passes.frame_cache_max))):
        return _extract(config, progress)




def _extract(config: ExtractConfig, progress: bool) -> Store | list[Store]:
    names = _checkpoint_names(config.checkpoints)
    paths = store_paths(config, names)
    _check_outputs(config, paths)
    from probe.model.checkpoints import check_checkpoint

    for checkpoint in config.checkpoints:  # a broken one among many fails now, not passes later
        check_checkpoint(checkpoint, model=config.model.model)
    with contextlib.ExitStack() as locks:  # one run at a time stages and publishes each store
        for path in paths:
            locks.enter_context(exclusive(lock_path(path), what=f"store '{path}'"))
        return _extract_locked(config, paths, progress)


def _extract_locked(config: ExtractConfig, paths: Sequence[Path], progress: bool) -> Store | list[Store]:
    from probe.extraction.budget import pass_budget
    from probe.extraction.passes import plan_passes, run_pass

    opened = open_data(config.data, config.sampling, skip_bad_episodes=config.skip_bad_episodes,
                       progress=progress)
    stores: dict[int, Store] = {}
    todo = []
    for i, (checkpoint, path) in enumerate(zip(config.checkpoints, paths)):
        done = _complete_store(config, checkpoint, Path(path), opened)
        if done is not None:
            stores[i] = done
        else:
            todo.append((i, checkpoint, Path(path)))
    failed = []
    if todo:
        device = resolve_device(config.model.device)
        budget = pass_budget(config.passes.pass_memory, device)
        for runs in plan_passes(config, todo, device, budget):
            _check_inputs(runs, opened)
            log.info("one pass over the data for %s", ", ".join(r.path.name for r in runs))
            run_pass(config, opened, runs, progress=progress)
            stores.update({r.index: r.store for r in runs if r.store is not None})
            failed += [r for r in runs if r.error is not None]
            if device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
    if failed:
        raise _failure(failed, [stores[i] for i in sorted(stores)], len(paths))
    result = [stores[i] for i in range(len(paths))]
    return result[0] if len(result) == 1 else result


def _check_inputs(runs: Sequence[Any], opened: OpenedData) -> None:
    """Adapters that can tell from a dataset's description whether it has their model's inputs
    (``check_dataset(info, embodiment)``, e.g. LeRobot policies) refuse it before the pass starts; adapters that
    read more frames than a batch holds (``use_datasets({name: dataset})``, e.g. observation history) get the
    opened datasets."""
    for run in runs:
        check = getattr(run.extractor.adapter, "check_dataset", None)
        if callable(check):
            for dataset, embodiment in zip(opened.datasets, opened.embodiments):
                check(dataset.info, embodiment)
        use = getattr(run.extractor.adapter, "use_datasets", None)
        if callable(use):
            use(dict(zip(opened.names, opened.datasets)))


def _failure(failed: Sequence[Any], written: Sequence[Store], n_checkpoints: int) -> ProbeError:
    """The first failed checkpoint's error, naming it and the stores that were written nonetheless."""
    first = failed[0].error
    if n_checkpoints == 1:
        return first
    message = f"checkpoint '{failed[0].checkpoint}' failed: {first}"
    if len(failed) > 1:
        message += f"; {len(failed) - 1} more failed too ({', '.join(repr(r.checkpoint) for r in failed[1:])})"
    message += (f"; the stores of the other checkpoints were written: {', '.join(str(s.path) for s in written)}"
                if written else "; no store was written")
    try:
        error = type(first)(message)
    except TypeError:  # an error class with another constructor
        error = ProbeError(message)
    error.__cause__ = first
    return error
