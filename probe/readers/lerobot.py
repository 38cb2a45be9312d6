"""LeRobot datasets: v2.0 / v2.1 (one parquet and one mp4 per episode) and v3.0 (many episodes per file).

Layouts (paths from ``meta/info.json``'s ``data_path`` / ``video_path`` templates):

- v2.x: ``meta/episodes.jsonl``, ``meta/tasks.jsonl``,
  ``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet``,
  ``videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4``.
  Each episode has its own video starting at time 0; parquet timestamps are
  re-based to the episode's first timestamp (GR00T-flavoured data start at 1/fps).
- v3.0: ``meta/tasks.parquet``, ``meta/episodes/chunk-XXX/file-XXX.parquet`` (one
  row per episode with its data file, its video files and ``from_timestamp``
  offsets), ``data/chunk-XXX/file-XXX.parquet`` and
  ``videos/{video_key}/chunk-XXX/file-XXX.mp4`` shared by several episodes: the
  episode's frame at time ``t`` is at file time ``from_timestamp + t``.

Optional stage annotations: a per-frame string column ``stage`` in the data and
per-episode list columns ``subtask_names``, ``subtask_start_frames`` (inclusive),
``subtask_end_frames`` (exclusive) in the episodes metadata.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from probe import columns as C
from probe.errors import IN_MANIFEST, DataError
from probe.readers.base import (Batch, Dataset, DatasetInfo, EpisodeInfo, Format, VideoRef, check_frames,
                                default_embodiment, fingerprint)
from probe.readers.lerobot_meta import lerobot_version, read_json, read_jsonl, subtask_segments
from probe.readers.video import check_video, decode_at

log = logging.getLogger(__name__)

STATE = "observation.state"
ACTION = "action"
STAGE_COLUMN = "stage"
_BOOKKEEPING = ("index", "episode_index", "frame_index", "timestamp", "task_index")
_CACHE_FILES = 4  # data files kept in memory (v3 files hold many episodes)


def _matrix(table: pa.Table, name: str) -> np.ndarray | None:
    """A list-valued (or scalar) column as a float32 matrix ``(n, k)``."""
    if name not in table.column_names:
        return None
    col = table.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        values = col.flatten().to_numpy(zero_copy_only=False)
        return values.reshape(len(col), -1).astype(np.float32, copy=False)
    return col.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(col), 1)


@dataclass(frozen=True)
class _EpisodeArrays:
    """One episode's rows (frame order) and the columns every read takes from them."""

    table: pa.Table
    timestamps: np.ndarray
    state: np.ndarray | None
    action: np.ndarray | None


class LeRobotDataset(Dataset):
    """A LeRobot v2.x or v3.0 dataset read in place.

    Parameters
    ----------
    path : dataset root (holds ``meta/info.json``).
    embodiment : embodiment label; default ``'human'`` if robot_type is ``human`` else ``'robot'``.
    video_keys : camera streams to decode; default every declared video key with
        at least one file present (keys with no files are dropped with a warning).
    skip_bad_episodes : leave out, with a warning, episodes whose video is
        missing or does not decode; otherwise reading their images raises :class:`DataError`.
    name : dataset name; default the folder name.
    """

    def __init__(self, path: str | Path, *, embodiment: str | None = None,
                 video_keys: list[str] | tuple[str, ...] | None = None,
                 skip_bad_episodes: bool = False, name: str | None = None) -> None:
        self.root = Path(path)
        fmt = lerobot_version(self.root)
        if fmt is None:
            raise DataError(f"'{path}' is not a LeRobot dataset: meta/info.json not found")
        self.warnings: list[str] = []
        self._meta = read_json(self.root / "meta" / "info.json")
        self._format = fmt
        self._skip = skip_bad_episodes
        self._cache: OrderedDict[Path, pa.Table] = OrderedDict()
        self._episodes_read: OrderedDict[int, _EpisodeArrays] = OrderedDict()
        features = self._meta.get("features", {})
        declared = [k for k, v in features.items() if v.get("dtype") == "video"]
        if "fps" not in self._meta:
            raise DataError(f"'{self.root / 'meta' / 'info.json'}' has no 'fps'")
        fps = float(self._meta["fps"])
        robot_type = str(self._meta.get("robot_type") or "unknown")
        self._tasks = self._load_tasks()
        self._episode_rows = self._load_episode_rows()
        self._row_of: dict[int, dict[str, Any]] | None = None
        if video_keys is None:
            keys = []
            for key in declared:
                if any(self._video_path(key, row) is not None for row in self._episode_rows):
                    keys.append(key)
                else:
                    self._warn(f"video key '{key}' is declared in meta/info.json but has no video files; "
                               "it is left out")
        else:
            unknown = [k for k in video_keys if k not in declared]
            if unknown:
                raise DataError(f"video key(s) {unknown} not in dataset '{self.root}'; declared video keys: "
                                f"{declared}")
            keys = list(video_keys)
        stat_files = [p for sub in ("data", "videos") for p in (self.root / sub).rglob("*") if p.is_file()]
        content = [p for p in (self.root / "meta").rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl")]
        stat_files += [p for p in (self.root / "meta").rglob("*.parquet")]
        self.info = DatasetInfo(
            name=name or self.root.resolve().name,
            path=str(self.root),
            format=fmt,
            fps=fps,
            embodiment=embodiment or default_embodiment(robot_type),
            robot_type=robot_type,
            features={k: tuple(int(s) for s in v.get("shape", ())) for k, v in features.items()},
            video_keys=tuple(keys),
            fingerprint=fingerprint(self.root, content, stat_files),
        )
        self._episodes = self._build_episodes()

    # ---- metadata ---------------------------------------------------------------------------
    def _warn(self, message: str) -> None:
        log.warning("%s", message, extra=IN_MANIFEST)
        self.warnings.append(message)

    def _load_tasks(self) -> dict[int, str]:
        meta = self.root / "meta"
        if self._format is Format.LEROBOT_V2:
            return {int(r["task_index"]): str(r["task"]) for r in read_jsonl(meta / "tasks.jsonl")}
        path = meta / "tasks.parquet"
        if not path.is_file():
            raise DataError(f"LeRobot v3 dataset is missing '{path}'")
        df = pd.read_parquet(path)
        if "task" in df.columns:
            return {int(i): str(t) for i, t in zip(df["task_index"], df["task"])}
        return {int(i): str(t) for t, i in zip(df.index, df["task_index"])}

    def _load_episode_rows(self) -> list[dict[str, Any]]:
        meta = self.root / "meta"
        if self._format is Format.LEROBOT_V2:
            rows = read_jsonl(meta / "episodes.jsonl")
        else:
            files = sorted((meta / "episodes").rglob("*.parquet"))
            if not files:
                raise DataError(f"LeRobot v3 dataset '{self.root}' has no meta/episodes/*/*.parquet files")
            rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).to_dict("records")
        for row in rows:
            if "episode_index" not in row or "length" not in row:
                raise DataError(f"episode metadata of '{self.root}' needs 'episode_index' and 'length', "
                                f"got keys {sorted(row)}")
        return sorted(rows, key=lambda r: int(r["episode_index"]))

    def _chunk(self, row: dict[str, Any]) -> int:
        return int(row["episode_index"]) // int(self._meta.get("chunks_size", 1000))

    def _data_path(self, row: dict[str, Any]) -> Path:
        template = self._meta.get("data_path")
        if not template:
            raise DataError(f"'{self.root / 'meta' / 'info.json'}' has no 'data_path' template")
        if self._format is Format.LEROBOT_V2:
            rel = template.format(episode_chunk=self._chunk(row), episode_index=int(row["episode_index"]))
        else:
            rel = template.format(chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"]))
        return self.root / rel

    def _video_path(self, key: str, row: dict[str, Any]) -> Path | None:
        template = self._meta.get("video_path")
        if not template:
            return None
        if self._format is Format.LEROBOT_V2:
            rel = template.format(episode_chunk=self._chunk(row), video_key=key,
                                  episode_index=int(row["episode_index"]))
        else:
            ci, fi = row.get(f"videos/{key}/chunk_index"), row.get(f"videos/{key}/file_index")
            if ci is None or fi is None or pd.isna(ci) or pd.isna(fi):
                return None
            rel = template.format(video_key=key, chunk_index=int(ci), file_index=int(fi))
        path = self.root / rel
        return path if path.is_file() else None

    def _build_episodes(self) -> list[EpisodeInfo]:
        episodes = []
        skipped: list[tuple[int, str]] = []
        checked: dict[Path, str | None] = {}
        for row in self._episode_rows:
            index = int(row["episode_index"])
            tasks = row.get("tasks")
            tasks = list(tasks) if tasks is not None and not isinstance(tasks, str) else [tasks] if tasks else []
            task = str(tasks[0]) if tasks else self._tasks.get(0, "")
            video = {}
            bad = None
            for key in self.info.video_keys:
                path = self._video_path(key, row)
                start = row.get(f"videos/{key}/from_timestamp")
                start = 0.0 if start is None or pd.isna(start) else float(start)
                end = row.get(f"videos/{key}/to_timestamp")
                end = None if end is None or pd.isna(end) else float(end)
                video[key] = VideoRef(str(path) if path else None, start, end)
                if path is None:
                    bad = bad or f"video '{key}' is missing"
                elif self._skip:
                    if path not in checked:
                        try:
                            check_video(path)
                            checked[path] = None
                        except DataError as exc:
                            checked[path] = str(exc)
                    bad = bad or checked[path]
            if bad and self._skip:
                skipped.append((index, bad))
                continue
            episodes.append(EpisodeInfo(index=index, length=int(row["length"]), task=task, fps=self.info.fps,
                                        video=video, stage_segments=subtask_segments(row, index)))
        if skipped:
            shown = ", ".join(str(i) for i, _ in skipped[:20]) + (" ..." if len(skipped) > 20 else "")
            self._warn(f"dataset '{self.info.name}': skipped {len(skipped)} of {len(self._episode_rows)} episodes "
                       f"with a missing or undecodable video ({shown}); first reason: {skipped[0][1]}")
        if not episodes:
            raise DataError(f"dataset '{self.root}' has no usable episodes"
                            + (" (all were skipped as bad)" if self._skip else ""))
        return episodes

    # ---- public API -------------------------------------------------------------------------
    def episodes(self) -> list[EpisodeInfo]:
        return list(self._episodes)

    def all_episode_indices(self) -> list[int]:
        return [int(r["episode_index"]) for r in self._episode_rows]

    def _video_times(self, ref: VideoRef, ts: np.ndarray, all_ts: np.ndarray) -> np.ndarray:
        # v2: one video per episode starting at 0; v3: the episode starts at from_timestamp in a shared file
        base = all_ts[0] if (self._format is Format.LEROBOT_V2 and len(all_ts)) else 0.0
        return ref.from_timestamp + (ts - base)

    def _table(self, ep: EpisodeInfo) -> pa.Table:
        """The episode's rows in frame order (checked against its length)."""
        return self._arrays(ep).table

    def _arrays(self, ep: EpisodeInfo) -> _EpisodeArrays:
        """The episode's rows with its timestamps, state and action as arrays; the last few episodes are kept."""
        arrays = self._episodes_read.get(ep.index)
        if arrays is None:
            table = self._episode_table(ep)
            arrays = _EpisodeArrays(table, self._timestamps(table, ep), _matrix(table, STATE), _matrix(table, ACTION))
            self._episodes_read[ep.index] = arrays
            while len(self._episodes_read) > _CACHE_FILES:
                self._episodes_read.popitem(last=False)
        self._episodes_read.move_to_end(ep.index)
        return arrays

    def _episode_table(self, ep: EpisodeInfo) -> pa.Table:
        if self._row_of is None:
            self._row_of = {int(r["episode_index"]): r for r in self._episode_rows}
        row = self._row_of[ep.index]
        path = self._data_path(row)
        table = self._cache.get(path)
        if table is None:
            if not path.is_file():
                raise DataError(f"dataset '{self.info.name}': data file '{path}' of episode {ep.index} is missing")
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowException) as exc:
                raise DataError(f"cannot read data file '{path}' of episode {ep.index}: {exc}") from exc
            self._cache[path] = table
            while len(self._cache) > _CACHE_FILES:
                self._cache.popitem(last=False)
        self._cache.move_to_end(path)
        if "episode_index" in table.column_names:
            bounds = pc.min_max(table.column("episode_index"))
            if bounds["min"].as_py() != ep.index or bounds["max"].as_py() != ep.index:
                table = table.filter(pc.equal(table.column("episode_index"), ep.index))
        if "frame_index" in table.column_names:
            order = np.argsort(table.column("frame_index").to_numpy(), kind="stable")
            if not np.array_equal(order, np.arange(len(order))):
                table = table.take(order)
        if table.num_rows != ep.length:
            raise DataError(f"dataset '{self.info.name}': episode {ep.index} has {table.num_rows} rows in "
                            f"'{path}' but its metadata says length {ep.length}")
        return table

    def frame_table(self, episode: EpisodeInfo | int) -> pd.DataFrame:
        return pd.DataFrame(self.frame_columns(episode), copy=False)

    def frame_columns(self, episode: EpisodeInfo | int) -> dict[str, np.ndarray]:
        """The columns of :meth:`frame_table` as arrays (no DataFrame built: cheaper per episode)."""
        ep = self.episode(episode)
        arrays = self._arrays(ep)
        table, ts = arrays.table, arrays.timestamps
        n = table.num_rows
        cols: dict[str, Any] = {C.EPISODE: np.full(n, ep.index, dtype=np.int64),
                                C.FRAME: np.arange(n, dtype=np.int64), C.TIMESTAMP: ts}
        if "task_index" in table.column_names:
            codes, inverse = np.unique(table.column("task_index").to_numpy(), return_inverse=True)
            names = np.array([self._tasks.get(int(i), ep.task) for i in codes], dtype=object)
            cols[C.TASK] = names[inverse.reshape(-1)]
        else:
            cols[C.TASK] = np.full(n, ep.task, dtype=object)
        for name, col in zip(table.column_names, table.columns):
            if name in _BOOKKEEPING or name in (STATE, ACTION) or name in cols:
                continue
            t = col.type
            if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_string(t) \
                    or pa.types.is_large_string(t):
                cols[name] = col.to_numpy(zero_copy_only=False)
        if self.info.video_keys:
            ref = ep.video[self.info.video_keys[0]]
            cols[C.VIDEO] = np.full(n, ref.path or "", dtype=object)
            cols[C.VIDEO_TIMESTAMP] = self._video_times(ref, ts, ts)
        return cols

    def _timestamps(self, table: pa.Table, ep: EpisodeInfo) -> np.ndarray:
        if "timestamp" in table.column_names:
            return table.column("timestamp").to_numpy().astype(np.float64)
        return np.arange(table.num_rows, dtype=np.float64) / ep.fps

    def read(self, episode: EpisodeInfo | int, frames: np.ndarray, *, images: bool = True,
             size: tuple[int, int] | None = None) -> Batch:
        ep = self.episode(episode)
        frames = check_frames(frames, ep.length, ep.index)
        arrays = self._arrays(ep)
        all_ts = arrays.timestamps
        ts = all_ts[frames]
        video_paths, video_ts, decoded = {}, {}, {}
        for key, ref in ep.video.items():
            vt = self._video_times(ref, ts, all_ts)
            video_ts[key] = vt
            if ref.path is None:
                if images:
                    raise DataError(
                        f"dataset '{self.info.name}': episode {ep.index} has no video file for '{key}' "
                        f"(expected under '{self.root / 'videos'}'); open the dataset with "
                        "skip_bad_episodes=True to leave such episodes out, or video_keys=[] to read without images"
                    )
                continue
            video_paths[key] = ref.path
            if images:
                try:
                    decoded[key] = decode_at(ref.path, vt, size=size)
                except DataError as exc:
                    raise DataError(f"dataset '{self.info.name}', episode {ep.index}, video '{key}': {exc}") from exc
        return Batch(frames=frames, timestamps=ts, images=decoded,
                     state=None if arrays.state is None else arrays.state[frames],
                     action=None if arrays.action is None else arrays.action[frames],
                     video_paths=video_paths, video_timestamps=video_ts)
