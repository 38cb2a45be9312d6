"""Tiny real torch models for the checkpoint, hook and extraction tests.

Importable as ``--model extract_models:tiny_cnn`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """A small image encoder: two strided convolutions, global pooling, a linear head."""

    def __init__(self, channels: int = 8, dim: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, dim)
        self.unused = nn.Linear(dim, dim)  # never called by forward

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.block(self.stem(images))
        return self.head(self.pool(x).flatten(1))


def tiny_cnn(channels: int = 8, dim: int = 16, seed: int = 0) -> TinyCNN:
    """A :class:`TinyCNN` with fixed random weights."""
    torch.manual_seed(seed)
    return TinyCNN(channels, dim)


def tiny_cnn_checkpoint(path, seed: int = 3, **kw):
    """Write a :func:`tiny_cnn`'s weights to ``path`` (a ``.safetensors`` file; its folder is made) and return it."""
    from pathlib import Path

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tiny_cnn(seed=seed, **kw).state_dict(), path)
    return path


class StateMLP(nn.Module):
    """State vectors -> a hidden layer -> an embedding."""

    def __init__(self, state_dim: int = 10, dim: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(state_dim, 32)
        self.act = nn.Tanh()
        self.fc2 = nn.Linear(32, dim)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(state)))


def state_mlp(state_dim: int = 10, dim: int = 8) -> StateMLP:
    torch.manual_seed(1)
    return StateMLP(state_dim, dim)


class NaNCNN(TinyCNN):
    """A TinyCNN whose head returns NaN for images brighter than ``threshold`` on average."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = super().forward(images)
        bright = images.mean(dim=(1, 2, 3)) > self.threshold
        return torch.where(bright[:, None], torch.full_like(out, float("nan")), out)


def nan_cnn(threshold: float = 0.5) -> NaNCNN:
    torch.manual_seed(0)
    return NaNCNN(threshold)


class TwoInputs(TinyCNN):
    """A TinyCNN whose forward also wants a state: given images alone (the image adapter), it raises TypeError."""

    def forward(self, images: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(images) + state.sum()


def two_inputs() -> TwoInputs:
    torch.manual_seed(0)
    return TwoInputs()


class FailingCNN(TinyCNN):
    """A TinyCNN whose forward raises RuntimeError for images brighter than ``threshold`` on average (a model that
    fails on a later batch, after others were written)."""

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if bool((images.mean(dim=(1, 2, 3)) > self.threshold).any()):
            raise RuntimeError("too bright\nsecond line of the model's message")
        return super().forward(images)


def failing_cnn(threshold: float = 0.5) -> FailingCNN:
    torch.manual_seed(0)
    return FailingCNN(threshold)


class Tokens(nn.Module):
    """Embeds a sequence of ids into tokens and runs one transformer layer with a padding mask."""

    def __init__(self, vocab: int = 20, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.encoder = nn.TransformerEncoderLayer(dim, 2, 16, dropout=0.0, batch_first=True)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(ids), src_key_padding_mask=~mask.bool())


def tokens(vocab: int = 20, dim: int = 8) -> Tokens:
    torch.manual_seed(2)
    return Tokens(vocab, dim)


# -- an in-memory dataset that follows the reader contract (probe.readers.base) -------------------

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from probe.model.adapters import ImageAdapter  # noqa: E402
from probe.errors import DataError  # noqa: E402
from probe.readers.base import Batch, Dataset, DatasetInfo, EpisodeInfo, Format, VideoRef  # noqa: E402


class ArrayDataset(Dataset):
    """Episodes of random images and states held in memory; ``bad`` episodes fail to decode."""

    def __init__(self, name: str, embodiment: str, n_episodes: int = 3, length: int = 10, size: int = 16,
                 state_dim: int = 10, stages: tuple[str, ...] = ("reach", "grasp"), bad: tuple[int, ...] = (),
                 seed: int = 0, task: str = "pick", bright: tuple[int, ...] = ()) -> None:
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 120, size=(n_episodes, length, size, size, 3), dtype=np.uint8)
        for ep in bright:
            self.images[ep] = 250
        self.states = rng.normal(size=(n_episodes, length, state_dim)).astype(np.float32)
        self.stages, self.bad, self.task, self.length = stages, set(bad), task, length
        self.info = DatasetInfo(name=name, path=f"/memory/{name}", format=Format.LEROBOT_V3, fps=10.0,
                                embodiment=embodiment, robot_type=embodiment,
                                features={"observation.state": (state_dim,)},
                                video_keys=("observation.images.cam",), fingerprint=f"fp-{name}-{seed}")
        self.warnings = []
        self.reads = 0
        self.frames_read = 0

    def episodes(self) -> list[EpisodeInfo]:
        k = len(self.stages)
        return [EpisodeInfo(i, self.length, self.task, 10.0,
                            {"observation.images.cam": VideoRef(f"/memory/{self.info.name}/ep{i}.mp4", 2.0 * i)},
                            tuple((s, j * self.length // k, (j + 1) * self.length // k) for j, s in enumerate(self.stages)))
                for i in range(self.images.shape[0])]

    def frame_table(self, episode) -> pd.DataFrame:
        ep = self.episode(episode)
        f = np.arange(ep.length)
        return pd.DataFrame({"episode": ep.index, "frame": f, "timestamp": f / 10.0, "task": self.task})

    def read(self, episode, frames, *, images=True, size=None) -> Batch:
        ep = self.episode(episode)
        if ep.index in self.bad:
            raise DataError(f"video of episode {ep.index} is undecodable (invalid data found when processing input)")
        self.reads += 1
        frames = np.asarray(frames, np.int64)
        self.frames_read += len(frames)
        return Batch(frames=frames, timestamps=frames / 10.0,
                     images={"observation.images.cam": self.images[ep.index, frames]} if images else {},
                     state=self.states[ep.index, frames])


class InterruptingImage(ImageAdapter):
    """An image adapter that raises KeyboardInterrupt after ``InterruptingImage.after`` batches (simulates
    Ctrl-C; None: never). A switch on the class, not an adapter option: ``--resume`` refuses a run whose
    adapter options differ, so the resumed run names this adapter with the same options, switched off."""

    after: int | None = None

    def __init__(self, model=None, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.calls = 0

    def prepare(self, batch, meta, embodiment, device):
        self.calls += 1
        if self.after is not None and self.calls > self.after:
            raise KeyboardInterrupt
        return super().prepare(batch, meta, embodiment, device)


def two_layers(model, inputs, batch):
    """An --embed function: representations computed by hand (like a VLA unrolling its layers)."""
    images = inputs.args[0]
    stem = model.stem(images)
    return {"manual.stem_tokens": stem.flatten(2).transpose(1, 2), "manual.logits": model(images)}
