"""Human hand recordings: per-frame 3-D hand keypoints ``(T, 21, 3)`` in a ``.npy`` and the video beside it.

One recording is one episode, embodiment ``human``. Keypoints follow MediaPipe's
21-joint order (0 wrist, 4 thumb tip, 8 index tip ...). ``state`` is either the
flattened keypoints (63 values) or the wrist position and the hand aperture
(thumb-tip to index-tip distance, 4 values).
"""

from __future__ import annotations

import logging
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from probe import columns as C
from probe.errors import IN_MANIFEST, DataError
from probe.readers.base import Batch, Dataset, DatasetInfo, EpisodeInfo, Format, VideoRef, check_frames, fingerprint
from probe.readers.video import decode_at, video_info

log = logging.getLogger(__name__)

VIDEO_KEY = "video"
APERTURE = "hand_aperture"
WRIST, THUMB_TIP, INDEX_TIP = 0, 4, 8
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")


class KeypointState(str, Enum):
    """What ``Batch.state`` holds for a keypoint recording."""

    FLAT = "flat"  # (n, 63) flattened keypoints
    WRIST_APERTURE = "wrist_aperture"  # (n, 4) wrist xyz + thumb-index aperture


def is_keypoints(path: str | Path) -> bool:
    """True for a ``.npy`` file or a folder holding a ``.npy`` and a video."""
    path = Path(path)
    if path.is_file():
        return path.suffix == ".npy"
    return path.is_dir() and any(path.glob("*.npy")) and any(p.suffix in VIDEO_SUFFIXES for p in path.iterdir())


def hand_aperture(keypoints: np.ndarray) -> np.ndarray:
    """Thumb-tip to index-tip distance per frame of ``(T, 21, 3)`` keypoints."""
    return np.linalg.norm(keypoints[:, THUMB_TIP] - keypoints[:, INDEX_TIP], axis=-1).astype(np.float32)


class KeypointsDataset(Dataset):
    """A hand keypoint recording (``.npy`` of shape ``(T, 21, 3)``) and its video.

    Parameters
    ----------
    path : the ``.npy`` file, or a folder holding it (when the folder has several
        ``.npy`` files, the first by name is used unless ``keypoints`` names one).
    keypoints : file name of the ``.npy`` inside the folder.
    video : video file; default the video with the ``.npy``'s stem, else the only video in the folder.
    fps : frame rate; default the video's (30 without a video).
    task : task string of the recording; default the folder name.
    embodiment : default ``'human'``.
    state : :class:`KeypointState` (``'flat'`` or ``'wrist_aperture'``).
    """

    def __init__(self, path: str | Path, *, keypoints: str | None = None, video: str | Path | None = None,
                 fps: float | None = None, task: str | None = None, embodiment: str | None = None,
                 state: KeypointState | str = KeypointState.FLAT, name: str | None = None) -> None:
        path = Path(path)
        self.warnings: list[str] = []
        try:
            self._state = KeypointState(state)
        except ValueError as exc:
            raise DataError(f"state must be one of {[s.value for s in KeypointState]}, got {state!r}") from exc
        if path.is_dir():
            folder = path
            if keypoints is not None:
                npy = folder / keypoints
            else:
                found = sorted(folder.glob("*.npy"))
                if not found:
                    raise DataError(f"no .npy keypoint file in '{folder}'; expected a (T, 21, 3) array")
                npy = found[0]
                if len(found) > 1:
                    others = ", ".join(p.name for p in found[1:])
                    self._warn(f"'{folder}' holds {len(found)} .npy files; using '{npy.name}' (others: {others}); "
                               f"to choose, give the file itself: --data EMBODIMENT={folder / found[-1].name} "
                               "(in Python: keypoints=NAME)")
        else:
            npy, folder = path, path.parent
        if not npy.is_file():
            raise DataError(f"keypoint file '{npy}' does not exist")
        try:
            kp = np.load(npy, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot load keypoints '{npy}': {exc}; expected a .npy array of shape (T, 21, 3)") from exc
        if kp.ndim != 3 or kp.shape[1:] != (21, 3):
            raise DataError(f"keypoints '{npy}' must have shape (T, 21, 3), got {kp.shape}")
        self._kp = kp
        self._video = self._find_video(folder, npy, video)
        vfps = None
        if self._video is not None:
            vinfo = video_info(self._video)
            vfps = vinfo.fps
            if abs(vinfo.n_frames - len(kp)) > 1:
                self._warn(f"video '{self._video.name}' has {vinfo.n_frames} frames but '{npy.name}' has "
                           f"{len(kp)} keypoint frames; frames are matched by time")
        rate = float(fps or vfps or 30.0)
        self._task = task if task is not None else folder.resolve().name
        self.info = DatasetInfo(
            name=name or folder.resolve().name,
            path=str(npy),
            format=Format.KEYPOINTS,
            fps=rate,
            embodiment=embodiment or C.HUMAN,
            robot_type=C.HUMAN,
            features={"keypoints": (21, 3), "observation.state": (63 if self._state is KeypointState.FLAT else 4,)},
            video_keys=(VIDEO_KEY,) if self._video is not None else (),
            fingerprint=fingerprint(folder, [], [npy] + ([self._video] if self._video else []),
                                    extra=self._state.value),
        )
        ref = {VIDEO_KEY: VideoRef(str(self._video), 0.0)} if self._video is not None else {}
        self._episodes = [EpisodeInfo(index=0, length=int(len(kp)), task=self._task, fps=rate, video=ref)]

    def _warn(self, message: str) -> None:
        log.warning("%s", message, extra=IN_MANIFEST)
        self.warnings.append(message)

    @staticmethod
    def _find_video(folder: Path, npy: Path, video: str | Path | None) -> Path | None:
        if video is not None:
            video = Path(video)
            video = video if video.is_absolute() or video.exists() else folder / video
            if not video.is_file():
                raise DataError(f"video file '{video}' does not exist")
            return video
        for suffix in VIDEO_SUFFIXES:
            if (folder / (npy.stem + suffix)).is_file():
                return folder / (npy.stem + suffix)
        videos = sorted(p for p in folder.iterdir() if p.suffix in VIDEO_SUFFIXES)
        if len(videos) > 1:
            raise DataError(f"'{folder}' holds several videos {[p.name for p in videos]}; choose one with video=PATH")
        return videos[0] if videos else None

    def episodes(self) -> list[EpisodeInfo]:
        return list(self._episodes)

    def frame_table(self, episode: EpisodeInfo | int) -> pd.DataFrame:
        ep = self.episode(episode)
        n = ep.length
        return pd.DataFrame({C.EPISODE: np.zeros(n, dtype=np.int64), C.FRAME: np.arange(n, dtype=np.int64),
                             C.TIMESTAMP: np.arange(n, dtype=np.float64) / ep.fps, C.TASK: [ep.task] * n,
                             APERTURE: hand_aperture(np.asarray(self._kp)),
                             **({C.VIDEO: str(self._video), C.VIDEO_TIMESTAMP: np.arange(n) / ep.fps}
                                if self._video is not None else {})})

    def read(self, episode: EpisodeInfo | int, frames: np.ndarray, *, images: bool = True,
             size: tuple[int, int] | None = None) -> Batch:
        ep = self.episode(episode)
        frames = check_frames(frames, ep.length, ep.index)
        kp = np.asarray(self._kp[frames], dtype=np.float32)
        ts = frames.astype(np.float64) / ep.fps
        if self._state is KeypointState.FLAT:
            state = kp.reshape(len(kp), -1)
        else:
            state = np.concatenate([kp[:, WRIST], hand_aperture(kp)[:, None]], axis=1)
        decoded, paths, vts = {}, {}, {}
        if self._video is not None:
            paths[VIDEO_KEY], vts[VIDEO_KEY] = str(self._video), ts
            if images:
                decoded[VIDEO_KEY] = decode_at(self._video, ts, size=size)
        return Batch(frames=frames, timestamps=ts, images=decoded, state=state, keypoints=kp,
                     video_paths=paths, video_timestamps=vts)
