"""The layers of a checkpoint and their output shapes, from one forward on real or dummy inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from probe.errors import ConfigError
from probe.extraction.batches import read_work
from probe.extraction.config import data_spec
from probe.extraction.samples import open_data
from probe.extraction.sampling import SamplingConfig


def layer_table(checkpoint: str, *, model: str | None = None, model_kwargs: Mapping[str, Any] | None = None,
                trust: bool = False, adapter: str | None = None, adapter_kwargs: Mapping[str, Any] | None = None,
                data: str | None = None, input_shape: Sequence[int] | None = None, embodiment: str | None = None,
                device: str = "cpu", skip_bad_episodes: bool = False) -> tuple[list[Any], dict[str, Any]]:
    """Every module of a checkpoint's model with its output shape from one forward of two samples.

    The inputs come from two frames of ``data`` when given, else from the adapter's
    example batch (``input_shape`` without the batch dimension); ``skip_bad_episodes`` takes ``data``'s first
    episode that reads (see :func:`probe.extraction.samples.open_data`). Shapes are batch first, as extraction
    sees them (the adapter's ``batch_first_view``: e.g. ACT's sequence-first transformer outputs).

    Returns
    -------
    ``(list of LayerInfo, checkpoint provenance)``; the provenance's ``suggested_layers`` lists the layers the
    adapter suggests (LeRobot policies: per policy type), resolved among the layers that ran.
    """
    import torch

    from probe.model.adapters import CHOOSE_ADAPTER, adapter_name, call_model, make_adapter
    from probe.model.checkpoints import load_checkpoint
    from probe.model.hooks import list_layers

    loaded = load_checkpoint(checkpoint, model=model, model_kwargs=model_kwargs, trust=trust, device=device)
    ad = make_adapter(adapter, loaded.model, adapter_kwargs, default=loaded.default_adapter)
    dev = torch.device(device)
    if data:
        opened = open_data([data_spec(data)], SamplingConfig(max_frames=2, max_episodes=1),
                           skip_bad_episodes=skip_bad_episodes)
        rows = opened.samples.iloc[:2]
        work = read_work(opened, rows, images=bool(getattr(ad, "needs_images", True)),
                         size=getattr(ad, "image_size", None), skip_bad=False,
                         fix="pass --skip-bad-episodes to take the first episode that reads, repair that "
                             "episode, or use --input-shape instead of --data")
        inputs = ad.prepare(work.batch, work.meta, opened.embodiments[0], dev)
        where, fix = f"2 frames of {opened.embodiments[0]} dataset '{opened.names[0]}'", ""
    else:
        example = getattr(ad, "example", None)
        if example is None:
            raise ConfigError("the adapter has no example(); pass --data PATH to list layers")
        inputs = example(embodiment or "robot", dev, input_shape)
        where = (f"example inputs of --input-shape {','.join(map(str, input_shape))}" if input_shape
                 else "the adapter's example inputs") + f" (embodiment '{embodiment or 'robot'}')"
        fix = ("check --input-shape: one input without the batch dimension (e.g. 3,224,224 for images, P for a "
               "state vector), or pass --data PATH to run real frames; else " if input_shape else "")
    if isinstance(adapter, str) and adapter != loaded.default_adapter:
        fix += f"this checkpoint's default adapter is '{loaded.default_adapter}': leave --adapter out; else "
    infos = list_layers(loaded.model, lambda: call_model(
        lambda: ad.forward(loaded.model, inputs), checkpoint=str(loaded.path), adapter=adapter_name(adapter, ad),
        inputs=inputs, data=where, fix=fix + CHOOSE_ADAPTER))
    view = getattr(ad, "batch_first_view", None)
    if callable(view):  # shapes as extraction sees them: batch first (ACT's transformer runs sequence-first)
        infos = [replace(i, shape=_batch_first(view(i.name), i.shape)) for i in infos]
    provenance = loaded.provenance()
    suggest = getattr(ad, "suggested_layers", None)
    if callable(suggest):
        provenance["suggested_layers"] = suggest([i.name for i in infos if i.shape is not None])
    return infos, provenance


def _batch_first(view: Any, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """``shape`` after the adapter's batch-first view of that layer (none: unchanged), on a meta tensor."""
    import torch

    if view is None or shape is None:
        return shape
    return tuple(int(s) for s in view(torch.empty(shape, device="meta")).shape)
