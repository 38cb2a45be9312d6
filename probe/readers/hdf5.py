"""HDF5 demonstrations in the robomimic / EgoMimic layout.

::

    data/                      attrs: env_args (JSON, robomimic), optional task, fps, robot_type
      demo_0/                  attrs: num_samples, optional task
        obs/<key>              (T, H, W, 3) uint8 images, or (T, k) / (T,) low-dimensional values
        actions                (T, A)
        stage                  optional (T,) per-frame stage strings
      demo_1/ ...

Episodes are the demos sorted by their number (``demo_2`` before ``demo_10``).
``state`` concatenates the low-dimensional observation keys in name order, or
the keys given with ``state_keys``. The file is opened for each read.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import DataError
from probe.readers.base import (Batch, Dataset, DatasetInfo, EpisodeInfo, Format, check_frames, default_embodiment,
                                fingerprint)
from probe.readers.video import resize

log = logging.getLogger(__name__)

SUFFIXES = (".hdf5", ".h5", ".he5")
DEFAULT_FPS = 20.0


def is_hdf5(path: str | Path) -> bool:
    """True for an existing file with an HDF5 suffix or signature."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() in SUFFIXES:
        return True
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _demo_number(name: str) -> int:
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else -1


class HDF5Dataset(Dataset):
    """A robomimic / EgoMimic HDF5 file of demos.

    Parameters
    ----------
    path : the ``.hdf5`` file.
    state_keys : observation keys concatenated into ``state``; default every
        low-dimensional key in name order.
    image_keys : observation keys holding images; default every ``(T, H, W, 3)`` uint8 key.
    action_key : dataset of actions inside each demo (default ``actions``).
    task : task string; default a ``task`` attribute of the demo or of ``data``,
        else ``env_args['env_name']``, else the file stem.
    fps : frame rate; default a ``fps`` attribute, else ``env_args['env_kwargs']['control_freq']``, else 20.
    embodiment : default ``'human'`` if the ``robot_type`` attribute is ``human``, else ``'robot'``.
    """

    def __init__(self, path: str | Path, *, state_keys: list[str] | None = None,
                 image_keys: list[str] | None = None, action_key: str = "actions", task: str | None = None,
                 fps: float | None = None, embodiment: str | None = None, name: str | None = None) -> None:
        import h5py

        self.path = Path(path)
        self.warnings: list[str] = []
        self._action_key = action_key
        try:
            fh = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataError(f"cannot open HDF5 file '{self.path}': {exc}") from exc
        with fh:
            if "data" not in fh:
                raise DataError(f"HDF5 file '{self.path}' has no 'data' group; expected the robomimic layout "
                                "data/demo_0/obs/<key>, data/demo_0/actions")
            data = fh["data"]
            env_args = {}
            if "env_args" in data.attrs:
                try:
                    env_args = json.loads(_text(data.attrs["env_args"]))
                except json.JSONDecodeError:
                    env_args = {}
            demos = sorted((k for k in data.keys() if isinstance(data[k], h5py.Group)), key=_demo_number)
            if not demos:
                raise DataError(f"HDF5 file '{self.path}' has no demos under 'data/'")
            obs0 = data[demos[0]].get("obs")
            if obs0 is None:
                raise DataError(f"'{self.path}': demo '{demos[0]}' has no 'obs' group")
            images_found = [k for k, d in obs0.items()
                            if d.ndim == 4 and d.shape[-1] == 3 and d.dtype == np.uint8]
            low_dim = sorted(k for k, d in obs0.items() if d.ndim <= 2 and k not in images_found)
            self._image_keys = list(image_keys) if image_keys is not None else sorted(images_found)
            self._state_keys = list(state_keys) if state_keys is not None else low_dim
            for key in self._image_keys + self._state_keys:
                if key not in obs0:
                    raise DataError(f"observation key '{key}' not in '{self.path}' demo '{demos[0]}'; "
                                    f"available keys: {sorted(obs0.keys())}")
            default_task = task or _text(data.attrs.get("task", "")) or env_args.get("env_name") or self.path.stem
            rate = float(fps or data.attrs.get("fps", 0) or env_args.get("env_kwargs", {}).get("control_freq", 0)
                         or DEFAULT_FPS)
            robot_type = _text(data.attrs.get("robot_type", env_args.get("env_name", "unknown")))
            self._demos = demos
            self._episodes = []
            for i, demo in enumerate(demos):
                group = data[demo]
                obs = group["obs"]
                first = next(iter(obs.values()), None)
                length = int(group.attrs.get("num_samples", len(first) if first is not None else 0))
                ep_task = task or _text(group.attrs.get("task", "")) or default_task
                self._episodes.append(EpisodeInfo(index=i, length=length, task=ep_task, fps=rate))
            features = {f"obs/{k}": tuple(int(s) for s in obs0[k].shape[1:]) for k in obs0.keys()}
            if action_key in data[demos[0]]:
                features[action_key] = tuple(int(s) for s in data[demos[0]][action_key].shape[1:])
        self.info = DatasetInfo(
            name=name or self.path.stem,
            path=str(self.path),
            format=Format.HDF5,
            fps=rate,
            embodiment=embodiment or default_embodiment(robot_type),
            robot_type=robot_type,
            features=features,
            video_keys=tuple(self._image_keys),
            fingerprint=fingerprint(self.path.parent, [], [self.path]),
        )

    def episodes(self) -> list[EpisodeInfo]:
        return list(self._episodes)

    def _group(self, fh, ep: EpisodeInfo):
        return fh["data"][self._demos[ep.index]]

    def frame_table(self, episode: EpisodeInfo | int) -> pd.DataFrame:
        import h5py

        ep = self.episode(episode)
        n = ep.length
        df = pd.DataFrame({C.EPISODE: np.full(n, ep.index, dtype=np.int64), C.FRAME: np.arange(n, dtype=np.int64),
                           C.TIMESTAMP: np.arange(n, dtype=np.float64) / ep.fps, C.TASK: [ep.task] * n})
        with h5py.File(self.path, "r") as fh:
            group = self._group(fh, ep)
            if "stage" in group:
                df[C.STAGE] = [_text(s) for s in group["stage"][:n]]
        return df

    def read(self, episode: EpisodeInfo | int, frames: np.ndarray, *, images: bool = True,
             size: tuple[int, int] | None = None) -> Batch:
        import h5py

        ep = self.episode(episode)
        frames = check_frames(frames, ep.length, ep.index)
        uniq, inverse = np.unique(frames, return_inverse=True)  # h5py needs increasing indices

        def take(dataset) -> np.ndarray:
            return np.asarray(dataset[uniq] if len(uniq) else dataset[:0])[inverse]

        with h5py.File(self.path, "r") as fh:
            group = self._group(fh, ep)
            obs = group["obs"]
            parts = [take(obs[k]).reshape(len(frames), -1).astype(np.float32) for k in self._state_keys]
            state = np.concatenate(parts, axis=1) if parts else None
            action = (take(group[self._action_key]).reshape(len(frames), -1).astype(np.float32)
                      if self._action_key in group else None)
            decoded = {k: resize(take(obs[k]), size) for k in self._image_keys} if images else {}
        return Batch(frames=frames, timestamps=frames.astype(np.float64) / ep.fps, images=decoded, state=state,
                     action=action)
