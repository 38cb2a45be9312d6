"""Reading batches in worker processes, so that decoding scales with the cores and never holds the model's GIL.

One reader thread decodes about 10,000 64x64 H.264 frames/s, or a few hundred
224x224 AV1 frames/s, and reader threads do not scale: PyAV's per-frame work holds
the GIL (on the 2-core machine of ``benchmarks/RESULTS.md`` two reader threads read
slower than one). A GPU forwards far faster than that, so there extraction waits
on decoding. :func:`read_ahead` reads the batches in ``workers`` processes instead,
each with its own open videos, and yields them in order.

On Linux the processes are forked, as PyTorch's ``DataLoader`` forks its workers:
they start at once, inherit the opened datasets and touch neither torch nor CUDA
(a forked child drops its parent's open videos, see :mod:`probe.readers.decoder`).
Elsewhere they start by ``forkserver`` or ``spawn``, which pickle the datasets to
them and re-import the main module, so a script must guard its entry point with
``if __name__ == "__main__":``. The active frame cache (:mod:`probe.cache.frames`)
applies in every process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
import multiprocessing
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from probe import columns as C
from probe.extraction.samples import DATASET_INDEX, OpenedData
from probe.extraction.batches import Work, read_frames, work_of
from probe.errors import IN_MANIFEST, ConfigError, DataError

log = logging.getLogger(__name__)

MAX_READ_WORKERS = 8
DEPTH_PER_WORKER = 2  # batches in flight per reader process


def default_read_workers(device: str, cores: int) -> int:
    """Reader processes for ``device`` on ``cores`` cores (0: read in a thread of this process).

    On a GPU the cores have nothing else to do: all but two read (at most
    :data:`MAX_READ_WORKERS`). On CPU the model needs the cores too: a quarter of
    them read, none below 8 cores (on 2 cores, reader processes measured no faster
    than the thread: ``benchmarks/RESULTS.md``).
    """
    if not str(device).startswith("cpu"):
        return max(0, min(MAX_READ_WORKERS, cores - 2)) if cores >= 4 else 0
    return min(MAX_READ_WORKERS, cores // 4) if cores >= 8 else 0


# -- inside a reader process -----------------------------------------------------------------------

_DATASETS: tuple[Any, ...] = ()
_NAMES: tuple[str, ...] = ()
_PREFIX = SHARE_PREFIX = "probe-read-"  # shared-memory files: SHARE_PREFIX + parent pid + "-"


def _start(datasets: tuple[Any, ...], names: tuple[str, ...], cache: tuple[str, int] | None, prefix: str) -> None:
    """Initialise a reader process: its datasets, frame cache and the name prefix of the frames it hands
    back (the parent's, so that the parent finds leftovers); Ctrl-C is the parent's to handle."""
    global _DATASETS, _NAMES, _PREFIX
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _DATASETS, _NAMES, _PREFIX = datasets, names, prefix
    if cache is not None:
        from probe.cache.frames import FrameCache, activate_frame_cache

        activate_frame_cache(FrameCache(cache[0], cache[1]))


def _read(d: int, episodes: np.ndarray, frames: np.ndarray, images: bool, size: tuple[int, int] | None,
          skip_bad: bool, bad: frozenset[int]) -> tuple[Any, np.ndarray, list[tuple[int, str]]]:
    batch, keep, skipped = read_frames(_DATASETS[d], _NAMES[d], episodes, frames, images=images, size=size,
                                       skip_bad=skip_bad, bad=bad)
    if batch is not None and batch.images:
        batch = dataclasses.replace(batch, images={k: _Shared.put(v) for k, v in batch.images.items()})
    return batch, keep, skipped


@dataclass(frozen=True)
class _Shared:
    """An array handed from a reader process through a file in shared memory (``/dev/shm``), not a pipe.

    Pickling a batch's frames through the pool's pipe cost 12 ms per 256 64x64 frames
    (49 us/frame, about what decoding them costs); a shared-memory file costs one copy
    in the reader, and the parent maps it without copying.
    """

    path: str
    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def put(cls, array: np.ndarray) -> _Shared | np.ndarray:
        """Write ``array`` to a new file in shared memory (small arrays travel as they are)."""
        if array.nbytes < SHARE_MIN_BYTES:
            return array
        try:
            fd, path = tempfile.mkstemp(prefix=_PREFIX, dir=_share_dir())
        except OSError:
            return array  # no shared memory to write to: through the pipe (the parent warns)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(np.ascontiguousarray(array).data)
        except OSError:  # full (a container's /dev/shm is 64 MB by default)
            os.unlink(path)
            return array
        except BaseException:
            os.unlink(path)
            raise
        return cls(path, tuple(array.shape), array.dtype.str)

    def take(self) -> np.ndarray:
        """The array, mapped copy-on-write (writable, private); the file's name is removed at once."""
        try:
            return np.memmap(self.path, dtype=np.dtype(self.dtype), mode="c", shape=self.shape)
        finally:
            os.unlink(self.path)


SHARE_MIN_BYTES = 1 << 16


def _share_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


# -- in the parent -----------------------------------------------------------------------------------


def start_method() -> str:
    """How reader processes start here: ``fork`` on Linux, else ``forkserver`` or ``spawn``."""
    if sys.platform.startswith("linux"):
        return "fork"
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def read_ahead(opened: OpenedData, batches: Iterable[pd.DataFrame], *, workers: int, images: bool,
               size: tuple[int, int] | None, skip_bad: bool, bad: set[tuple[int, int]],
               method: str | None = None) -> Iterator[Work]:
    """The :class:`~probe.extraction.batches.Work` of every batch of sample rows, in order, read by ``workers`` processes
    started by ``method`` (default :func:`start_method`).

    Equals :func:`probe.extraction.batches.read_work` batch by batch. ``bad`` collects the
    ``(dataset, episode)`` pairs skipped so far; an episode is reported skipped
    once, by the first batch that found it bad, even where later batches were
    already being read when it did.
    """
    from probe.cache.frames import active_frame_cache

    method = method or start_method()
    cache = active_frame_cache()
    prefix = f"{SHARE_PREFIX}{os.getpid()}-"
    try:
        pool = ProcessPoolExecutor(
            max_workers=int(workers), mp_context=multiprocessing.get_context(method), initializer=_start,
            initargs=(opened.datasets, opened.names, None if cache is None else (str(cache.root), cache.max_bytes),
                      prefix))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot start {workers} reader process(es) ({exc}); pass --read-workers 0 "
                          "to read in this process") from exc
    pending: deque[tuple[int, pd.DataFrame, Future[Any]]] = deque()
    piped = False  # frames came through the pipe: warned once per call
    try:
        for rows in batches:
            d = int(rows[DATASET_INDEX].iloc[0])
            known = frozenset(e for (b, e) in bad if b == d)
            pending.append((d, rows, pool.submit(_read, d, rows[C.EPISODE].to_numpy(np.int64),
                                                 rows[C.FRAME].to_numpy(np.int64), images, size, skip_bad, known)))
            if len(pending) > DEPTH_PER_WORKER * workers:
                work, through_pipe = _received(pending.popleft(), bad)
                piped = _warn_piped(through_pipe, piped)
                yield work
        while pending:
            work, through_pipe = _received(pending.popleft(), bad)
            piped = _warn_piped(through_pipe, piped)
            yield work
    except BrokenProcessPool as exc:
        guard = ("" if method == "fork" else " If extraction runs from a script, guard it with "
                 "'if __name__ == \"__main__\":'.")
        raise DataError(f"a reader process died ({exc}).{guard} If a video crashes the decoder, find it with "
                        "--read-workers 0") from exc
    finally:
        for *_, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        for path in glob.glob(os.path.join(_share_dir(), f"{prefix}*")):
            with contextlib.suppress(OSError):  # batches read but never received (an error, an interrupt)
                os.unlink(path)


def _received(item: tuple[int, pd.DataFrame, Future[Any]], bad: set[tuple[int, int]]) -> tuple[Work, bool]:
    """The Work of one batch read by a process, and whether its frames came through the pipe."""
    d, rows, fut = item
    batch, keep, skipped = fut.result()
    through_pipe = False
    if batch is not None and batch.images:
        through_pipe = any(not isinstance(v, _Shared) and v.nbytes >= SHARE_MIN_BYTES for v in batch.images.values())
        batch = dataclasses.replace(batch, images={k: v.take() if isinstance(v, _Shared) else v
                                                   for k, v in batch.images.items()})
    skipped = [(episode, msg) for episode, msg in skipped if (d, episode) not in bad]  # reported once, as in a thread
    for episode, msg in skipped:
        log.warning("%s; skipped (--skip-bad-episodes)", msg, extra=IN_MANIFEST)
        bad.add((d, episode))
    return work_of(d, rows, batch, keep, skipped), through_pipe


def _warn_piped(through_pipe: bool, warned: bool) -> bool:
    """Warn, once, that frames came through the pipe; returns whether it has warned."""
    if through_pipe and not warned:
        log.warning("reader processes could not write frames to shared memory ('%s' full or not writable); they "
                    "travel through a pipe instead, which is slower. Give it more room (docker run --shm-size=2g) "
                    "or read in this process (--read-workers 0)", _share_dir())
    return warned or through_pipe
