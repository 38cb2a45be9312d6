"""The Ray Data engine: the same extraction, with batches read and run on a pool of actors.

The driver builds the sample table and owns the :class:`~probe.store.store.StoreWriter`
(so resume and atomic commits work as in the local engine); each actor opens the
datasets, loads the checkpoint once and turns batches of sample rows into pooled
arrays (``map_batches`` with an actor pool, CPU or GPU actors). Requires the
``ray`` extra: ``pip install 'embodiment-probe[ray]'``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from probe.cache.frames import frame_cache_for
from probe.errors import ConfigError, ProbeError

log = logging.getLogger(__name__)


def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--engine ray needs Ray Data: pip install 'ray[data]' (the 'ray' extra of this "
                          f"package), or use --engine local ({exc})") from exc
    return ray


class _Worker:
    """A Ray actor: datasets opened and the model loaded once, then one call per batch of rows."""

    def __init__(self, config: Any, checkpoint: str, opened: Any, device: str) -> None:
        from probe.model.checkpoints import load_checkpoint
        from probe.model.extractor import Extractor

        self.config, self.opened = config, opened
        loaded = load_checkpoint(checkpoint, model=config.model.model, model_kwargs=config.model.model_kwargs,
                                 trust=config.model.trust_checkpoint, device=device)
        self.extractor = Extractor(loaded, config.model, device)
        use = getattr(self.extractor.adapter, "use_datasets", None)
        if callable(use):  # adapters that read beyond a batch (observation history) read the actor's datasets
            use(dict(zip(opened.names, opened.datasets)))
        # on a cluster: each node's own cache directory
        self.frames = frame_cache_for(config.passes.frame_cache, int(config.passes.frame_cache_max))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from probe.extraction.samples import ROW
        from probe.extraction.batches import read_work
        from probe.cache.frames import use_frame_cache

        samples = self.opened.samples
        out: dict[str, list[Any]] = {"rows": [], "values": [], "skipped": [], "error": []}
        for rows in batch["rows"]:
            meta = samples.iloc[np.asarray(rows, dtype=np.int64)]
            try:
                with use_frame_cache(self.frames):
                    work = read_work(self.opened, meta, images=self.extractor.needs_images,
                                     size=self.extractor.image_size, skip_bad=self.config.skip_bad_episodes)
                values = (self.extractor(work.batch, work.meta, self.opened.embodiments[work.dataset])
                          if len(work.rows) else {})
            except ProbeError as exc:  # returned: the driver raises it as the local engine would (raised here, Ray
                # would wrap it in its own error and a traceback); its message quotes the model's own error
                out["rows"].append(np.empty(0, np.int64))
                out["values"].append({})
                out["skipped"].append([])
                out["error"].append(exc)
                continue
            out["rows"].append(work.meta[ROW].to_numpy(np.int64) if len(work.rows) else np.empty(0, np.int64))
            out["values"].append(values)
            out["skipped"].append([(work.dataset, e, m) for e, m in work.skipped])
            out["error"].append(None)
        return {k: np.array(v + [None], dtype=object)[:-1] for k, v in out.items()}


def run_ray(config: Any, checkpoint: str, opened: Any, writer: Any, extractor: Any,
            skipped: dict[tuple[int, int], str], *, progress: bool = False) -> None:
    """Run the batches still to do on Ray Data actors and stream the results into ``writer``."""
    from probe.extraction.samples import ROW
    from probe.extraction.batches import batches_of
    from probe.progress import bar

    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        started = True
    try:
        todo = ~writer.done
        items = [{"rows": rows[ROW].to_numpy(np.int64)} for rows in batches_of(opened.samples, todo, config.passes.batch_size)]
        if not items:
            return
        gpus = float(config.passes.ray_gpus_per_actor or 0.0)
        device = "cuda" if gpus > 0 else "cpu"
        ds = ray.data.from_items(items)
        mapped = ds.map_batches(_Worker, fn_constructor_args=(config, checkpoint, opened, device), batch_size=1,
                                concurrency=max(1, int(config.passes.ray_actors)), num_gpus=gpus or None,
                                batch_format="numpy")
        pooling = extractor.pooling()
        done_layers: dict[str, int] = {}
        with bar(int(todo.sum()), desc=f"extract {extractor.loaded.name} (ray)", enabled=progress,
                 unit="frame") as pbar:
            for result in mapped.iter_rows():
                if result["error"] is not None:
                    raise result["error"]
                for d, episode, msg in result["skipped"]:
                    skipped[(int(d), int(episode))] = msg
                rows = np.asarray(result["rows"], dtype=np.int64)
                if len(rows):
                    values = result["values"]
                    writer.write(rows, values, pooling=pooling)
                    done_layers.update({k: int(v.shape[1]) for k, v in values.items()})
                pbar.update(len(rows))
        extractor.dims.update(done_layers)
        # the driver's extractor never ran: take the layer order and embed names from the results
        extractor.embed_layers = [x for x in done_layers if x not in extractor.hooked]
    finally:
        if started:
            ray.shutdown()
