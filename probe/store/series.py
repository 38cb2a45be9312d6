"""The checkpoints of a report: stores labelled from their provenance, ordered by series and step.

Also the choice of layers: those every store shares, or the requested ones checked
in every store, and the one rule for the layer a command uses when none is named
(:func:`default_layer`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from probe import columns as C
from probe.errors import ConfigError
from probe.store.store import Store


STEP_AXIS = "training step"
DIVERSITY_AXIS = "pre-training diversity (% of the mixture)"


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A store in the report: its label, series (recipe), training step and, for checkpoints of a
    diversity sweep, their pre-training diversity: ``x`` is where it sits on its series' curve."""

    store: Store
    label: str
    series: str
    step: int | None
    datasets: tuple[str, ...]
    diversity: float | None = None
    seed: int | None = None  # the training seed, where the provenance records one

    @property
    def x(self) -> float | None:
        return self.diversity if self.diversity is not None else self.step

    @property
    def axis(self) -> str:
        return DIVERSITY_AXIS if self.diversity is not None else STEP_AXIS

    def found(self, key: str):
        """A value the checkpoint's provenance records (e.g. ``transfer_gain``), or None."""
        return _find(self.store.provenance, (key,))


def _find(prov: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for scope in (prov, prov.get("checkpoint"), prov.get("config"), prov.get("training")):
        if isinstance(scope, Mapping):
            for key in keys:
                if scope.get(key) is not None:
                    return scope[key]
    return None


def describe(store: Store) -> Checkpoint:
    """Label a store from its provenance: ``<recipe> step <n>`` where known."""
    prov = store.provenance
    step = _find(prov, ("step", "global_step", "train_step"))
    try:
        step = int(step) if step is not None else None
    except (TypeError, ValueError):
        step = None
    series = str(_find(prov, ("recipe", "series", "run")) or "")
    diversity = _find(prov, ("diversity",))
    try:
        diversity = float(diversity) if diversity is not None else None
    except (TypeError, ValueError):
        diversity = None
    where = (f"diversity {diversity:g}%" if diversity is not None else f"step {step}" if step is not None else "")
    label = " ".join(p for p in (series, where) if p) or store.name
    datasets = tuple(sorted(store.meta[C.DATASET].astype(str).unique()))
    seed = _find(prov, ("seed",))
    return Checkpoint(store, label, series, step, datasets, diversity,
                      int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None)


def order_checkpoints(cps: Sequence[Checkpoint]) -> list[Checkpoint]:
    """Series in order of first appearance, each by diversity or training step (stores with neither keep
    their place)."""
    series = list(dict.fromkeys(c.series for c in cps))
    return sorted(cps, key=lambda c: (series.index(c.series), c.x if c.x is not None else -1))


def resolve_layers(stores: Sequence[Store], layers: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Selected layers (each checked in every store) and notes about layers left out."""
    notes = []
    if layers is None:
        common = [l for l in stores[0].layers if all(l in s.layers for s in stores)]
        dropped = sorted({l for s in stores for l in s.layers} - set(common))
        if not common:
            raise ConfigError("the stores share no layer; pick stores extracted from the same layers or use --layer")
        if dropped:
            notes.append(f"layers not in every store were left out: {', '.join(dropped)}")
        return common, notes
    for layer in layers:
        for s in stores:
            s.layer_info(layer)  # raises LayerNotFoundError naming the store, the layer and the available ones
    return list(layers), notes


def default_layer(layers: Sequence[str], *, whose: str = "the store's", option: str = "--layer",
                  what: str = "layer") -> tuple[str, str | None]:
    """The layer used when none is named, and the one line that says so (None when there was no choice).

    The one rule of every command and API that falls back to a layer (``probe report``'s headline layer,
    ``probe index``, ``probe coverage``, ``probe export``, the layer the dashboard opens on): the last of
    ``layers``: the last layer extracted when they are a store's, the last one named when a command was given
    several (``--layer``). ``whose`` and ``option`` word the line:
    ``layer expert.block0 (the store's last of 4: vision, ...; --layer picks another)``.
    """
    if not layers:
        raise ConfigError("no layer to choose from; run 'probe info STORE' to list a store's layers")
    layer = layers[-1]
    if len(layers) == 1:
        return layer, None
    listed = ", ".join(layers[:8]) + (", ..." if len(layers) > 8 else "")
    return layer, f"{what} {layer} ({whose} last of {len(layers)}: {listed}; {option} picks another)"


def store_layer(store: Store, layer: str | None) -> tuple[str, str | None]:
    """``layer`` checked against ``store`` (an error naming close matches), or, when None, the store's
    :func:`default_layer` and the line that says so."""
    if layer is None:
        return default_layer(store.layers)
    store.layer_info(layer)  # raises LayerNotFoundError with close matches
    return layer, None


def unique_labels(cps: Sequence[Checkpoint]) -> list[Checkpoint]:
    """The checkpoints, labels made unique: labels shared by several training seeds name the seed
    (``<label> seed <n>``); a label seen before gets its store's directory name (``<label> (<dir>)``;
    ``<parent>/<dir>`` where directory names repeat too)."""
    names = Counter(c.store.name for c in cps)
    seeds: dict[str, set] = {}
    for c in cps:
        seeds.setdefault(c.label, set()).add(c.seed)
    seen: set[str] = set()
    out = []
    for c in cps:
        label = c.label
        if c.seed is not None and len(seeds[c.label]) > 1:  # the same checkpoint trained with several seeds
            label = f"{c.label} seed {c.seed}"
        if label in seen:
            where = c.store.name if names[c.store.name] == 1 else f"{c.store.path.parent.name}/{c.store.name}"
            label = where if c.label == c.store.name else f"{c.label} ({where})"
            base, n = label, 2
            while label in seen:  # the same directory reached twice
                label, n = f"{base} #{n}", n + 1
        seen.add(label)
        out.append(replace(c, label=label))
    return out


def training_order(stores: Sequence[Store]) -> list[Checkpoint]:
    """The stores as checkpoints in training order (:func:`order_checkpoints`), labels made unique
    (:func:`unique_labels`): the one order of the report's checkpoints and the dashboard's checkpoint menu."""
    return unique_labels(order_checkpoints([describe(s) for s in stores]))
