"""Which stored frame a retrieval query names: ``(dataset, episode, frame)`` of another embodiment than the
index's, with an error that says why when it names none (an unknown episode, one only the indexed embodiment holds,
a dataset of that embodiment, a frame the episode does not hold)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import ConfigError, DataError


def locate_row(meta: pd.DataFrame, store: str | Path, embodiment: str, episode: int, frame: int,
               dataset: str | None = None) -> int:
    """Store row of ``(dataset, episode, frame)`` in the metadata ``meta`` of store ``store`` whose index holds
    ``embodiment``; clear errors when it is not there.

    A query comes from an embodiment the index does not hold (an index of human clips is queried with robot
    frames): episode ``episode`` is looked for among the other embodiments only, and an episode that only the
    indexed embodiment holds is a :class:`DataError` listing the other embodiments' episodes. ``dataset`` chooses
    among their datasets (a :class:`ConfigError` asks for it when several hold the episode) under the same rule: a
    dataset of the indexed embodiment only is a :class:`DataError` naming the embodiments. A sample of the indexed
    embodiment is queried by id (``Retriever.search_samples``, ``--sample-id``).
    """
    in_episode = meta[C.EPISODE].to_numpy() == int(episode)
    # a query comes from the embodiment the index does not hold (robot frames against human clips)
    other = meta[C.EMBODIMENT].astype(str).to_numpy() != embodiment
    if dataset is not None:
        names = meta[C.DATASET].astype(str).to_numpy()
        datasets = sorted(set(names.tolist()))
        if dataset not in datasets:
            raise DataError(f"dataset '{dataset}' is not in store '{store}'; its datasets are: "
                            f"{', '.join(datasets)}")
        if not (other & (names == dataset)).any():
            raise DataError(_own_dataset(meta, store, embodiment, dataset, other))
        in_episode &= names == dataset
    if not in_episode.any():
        raise DataError(f"episode {episode}{f' of dataset {dataset!r}' if dataset else ''} is not in store "
                        f"'{store}'; {_episode_summary(meta, dataset)} (run 'probe info "
                        f"{store}')")
    if not (in_episode & other).any():
        raise DataError(_own_episode(meta, store, embodiment, int(episode), in_episode, other))
    in_episode &= other
    found = meta.loc[in_episode, C.DATASET].astype(str).unique()
    if len(found) > 1:
        raise ConfigError(f"episode {episode} exists in several datasets ({', '.join(sorted(found))}); "
                          "choose one with --dataset")
    rows = np.flatnonzero(in_episode)
    frames = meta[C.FRAME].to_numpy()[rows]
    hit = rows[frames == int(frame)]
    if not len(hit):
        near = int(frames[np.argmin(np.abs(frames - int(frame)))])
        raise DataError(f"frame {frame} is not in episode {episode} of dataset '{found[0]}': it holds "
                        f"{len(frames)} samples with frames {int(frames.min())}..{int(frames.max())} "
                        f"(nearest stored frame: {near})")
    return int(hit[0])


def _own_dataset(meta: pd.DataFrame, store: str | Path, embodiment: str, dataset: str,
                 other: np.ndarray) -> str:
    """Why dataset ``dataset`` (of the indexed embodiment only) is no query, with the datasets that are."""
    if not other.any():
        return (f"dataset '{dataset}' is {embodiment} data and store '{store}' holds no other "
                f"embodiment to query the {embodiment} index with; query a {embodiment} sample by "
                "id with --sample-id (its own episode is skipped)")
    listed = "; ".join(f"{emb}: {', '.join(sorted(group[C.DATASET].astype(str).unique()))}"
                       for emb, group in meta[other].groupby(C.EMBODIMENT, sort=True))
    return (f"dataset '{dataset}' is {embodiment} data, the embodiment the index holds; --dataset names "
            f"the query's dataset, which comes from another embodiment ({listed}); query a "
            f"{embodiment} sample by id with --sample-id")

def _own_episode(meta: pd.DataFrame, store: str | Path, embodiment: str, episode: int, in_episode: np.ndarray,
                 other: np.ndarray) -> str:
    """Why episode ``episode`` (held only by the indexed embodiment) is no query, with the episodes that are."""
    own = ", ".join(sorted(meta.loc[in_episode, C.DATASET].astype(str).unique()))
    if not other.any():
        return (f"episode {episode} is a {embodiment} episode and store '{store}' holds no other "
                f"embodiment to query the {embodiment} index with; query a {embodiment} sample of "
                f"{own} by id with --sample-id (its own episode is skipped)")
    listed = "; ".join(f"{emb} {_few(group[C.EPISODE].to_numpy())}"
                       for emb, group in meta[other].groupby(C.EMBODIMENT, sort=True))
    return (f"episode {episode} is only in the {embodiment} data ({own}), the embodiment the index holds; "
            f"a query comes from another embodiment: {listed} (or query a {embodiment} sample by id "
            "with --sample-id)")


def _few(episodes: np.ndarray, shown: int = 5) -> str:
    """Episode numbers, the first ``shown`` then '...', and how many there are."""
    eps = np.unique(episodes)
    head = ", ".join(str(int(e)) for e in eps[:shown])
    return f"episodes {head}{', ...' if len(eps) > shown else ''} ({len(eps)} in all)" if len(eps) > shown \
        else f"episode{'s' if len(eps) > 1 else ''} {head}"


def _episode_summary(meta: pd.DataFrame, dataset: str | None) -> str:
    if dataset is not None:
        meta = meta[meta[C.DATASET].astype(str) == dataset]
    parts = []
    for emb, group in meta.groupby(C.EMBODIMENT, sort=True):
        eps = np.unique(group[C.EPISODE].to_numpy())
        shown = f"{eps.min()}..{eps.max()}" if len(eps) > 6 else ", ".join(map(str, eps))
        parts.append(f"{emb}: {len(eps)} episodes ({shown})")
    return "its episodes are " + "; ".join(parts)
