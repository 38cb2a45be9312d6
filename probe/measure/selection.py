"""Which embodiments the metrics measure (``--embodiments``): parsed, checked against the stores before any
work, and applied to a layer's rows before anything is computed (kNN graph, subsamples, nulls, intervals).

A store with a human and several robots is measured on all of them by the mixing metrics, while the paired,
distribution and temporal metrics compare the human with the first other embodiment only
(:func:`metrics.family_support.two_sides`); keeping ``human`` and one robot asks how aligned those two are.

    >>> names = check_selection(("human", "robot_b"), MetricsConfig())
    >>> check_present(names, store)  # a name the store does not hold: ConfigError listing those it holds
    >>> kept = select(store.latents("trunk.block2"), names)
"""

from __future__ import annotations

from collections.abc import Sequence

from metrics.spec import MetricInputError, MetricsConfig
from probe import columns as C
from probe.errors import ConfigError
from probe.latents import Latents
from probe.store.store import Store
from probe.validate import close_matches

FLAG = "--embodiments"


def parse_embodiments(text: str | None) -> tuple[str, ...] | None:
    """``--embodiments human,robot_b``: the names in the order given, repeats dropped; None without the flag
    (every embodiment)."""
    if text is None:
        return None
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def check_selection(names: Sequence[str], config: MetricsConfig | None) -> tuple[str, ...]:
    """``names`` as a tuple, refused when fewer than two, or when it leaves out the human embodiment
    (``config.human``) that a selected metric compares the others with."""
    from metrics.suite import human_metrics

    names = tuple(dict.fromkeys(str(n) for n in names))
    config = config or MetricsConfig()
    human = config.human
    if len(names) < 2:
        got = f"'{names[0]}' only" if names else "none"
        raise ConfigError(f"{FLAG} needs at least two embodiments to compare, got {got}; name them separated by "
                          f"commas, e.g. {FLAG} {human},ROBOT")
    if human in names:
        return names
    try:
        needing = human_metrics(config)
    except MetricInputError as exc:
        raise ConfigError(f"invalid metrics option: {exc}") from None
    if needing:
        more = f" and {len(needing) - 3} more" if len(needing) > 3 else ""
        raise ConfigError(f"{FLAG} {','.join(names)} leaves out the human embodiment '{human}', which "
                          f"{', '.join(needing[:3])}{more} compare the others with; add it ({FLAG} "
                          f"{human},{','.join(names)}), name the human with --human, or compute only metrics "
                          "that need no human (--families mixing)")
    return names


def embodiments_of(source: Store | Latents) -> list[str]:
    """The embodiments a store (from its metadata, no layer read) or a :class:`Latents` holds, sorted."""
    meta = source.meta
    return sorted(meta[C.EMBODIMENT].astype(str).unique().tolist())


def check_present(names: Sequence[str], source: Store | Latents) -> None:
    """Refuse a selected name that ``source`` does not hold, listing the embodiments it holds."""
    present = embodiments_of(source)
    for name in names:
        if name not in present:
            near = close_matches(name, present, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            where = f"store '{source.path}'" if isinstance(source, Store) else f"layer '{source.layer}'"
            raise ConfigError(f"{FLAG} names embodiment '{name}'{hint}, which {where} does not hold; its "
                              f"embodiments: {', '.join(present)}")


def check_stores(names: Sequence[str], sources: Sequence[Store | Latents],
                 config: MetricsConfig | None) -> tuple[str, ...]:
    """:func:`check_selection`, then :func:`check_present` on every source: the same selection for all."""
    names = check_selection(names, config)
    for source in sources:
        check_present(names, source)
    return names


def selected_rows(source: Store | Latents, names: Sequence[str] | None) -> int:
    """How many rows of ``source`` the selection keeps (all without one)."""
    n = len(source) if isinstance(source, Latents) else source.n
    return n if names is None else int(source.meta[C.EMBODIMENT].astype(str).isin(list(names)).sum())


def select(latents: Latents, names: Sequence[str]) -> Latents:
    """The rows of the ``names`` embodiments, in store order."""
    return latents.take(latents.mask(**{C.EMBODIMENT: list(names)}))


def selection_note(latents: Latents, names: Sequence[str]) -> str:
    """What the selection left out of ``latents`` (before selection), or "" when it kept every embodiment."""
    left_out = [e for e in embodiments_of(latents) if e not in names]
    if not left_out:
        return ""
    return (f"metrics measure embodiments {', '.join(names)} only ({FLAG}); left out: {', '.join(left_out)}")
