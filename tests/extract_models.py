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
