"""Transfer in behaviour: how well a policy acts on robot episodes of the human-only setting.

The sweep fine-tunes every pre-training level twice, with and without human data.
Both policies are scored on the same held-out target-robot episodes whose task
objects stand where no robot stood in training (only people did, see
:data:`probe.world.tasks.REGIONS`): the error of the predicted effector trajectory
(mean distance over the horizon, table units; 1 unit is about 60 cm) and the share of
frames whose stage is predicted right. The **transfer gain** is the relative error
reduction that human data brings, ``1 - error(with) / error(without)``, with a paired
BCa bootstrap interval over episodes (scipy.stats.bootstrap).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.world.train import TRAJECTORY_SCALE, EmbodimentData


def episode_scores(policy, data: EmbodimentData, batch: int = 256) -> dict[str, np.ndarray]:
    """Per-episode effector-trajectory error and stage accuracy of ``policy`` on ``data``."""
    import torch

    errors, correct = [], []
    policy.eval()
    with torch.no_grad():
        for start in range(0, len(data), batch):
            rows = np.arange(start, min(start + batch, len(data)))
            image = torch.from_numpy(data.images[rows]).permute(0, 3, 1, 2).float() / 255.0
            out = policy(image, torch.from_numpy(data.state[rows]), data.embodiment, torch.from_numpy(data.task[rows]))
            predicted = out["ee_trajectory"].numpy() * TRAJECTORY_SCALE
            errors.append(np.linalg.norm(predicted - data.ee_future[rows], axis=-1).mean(axis=1))
            correct.append(out["stage_logits"].argmax(1).numpy() == data.stage[rows])
    error, hit = np.concatenate(errors), np.concatenate(correct)
    episodes = np.unique(data.episode)
    return {"ee_error": np.array([error[data.episode == e].mean() for e in episodes]),
            "stage_acc": np.array([hit[data.episode == e].mean() for e in episodes])}


def summary(scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """Mean effector error and stage accuracy over episodes."""
    return {"ee_error": float(scores["ee_error"].mean()), "stage_acc": float(scores["stage_acc"].mean()),
            "episodes": int(len(scores["ee_error"]))}


def transfer_gain(with_human: np.ndarray, without: np.ndarray, *, seed: int = 0,
                  n_resamples: int = 2000) -> dict[str, Any]:
    """``1 - mean(with_human) / mean(without)`` over paired per-episode errors, with a 95% BCa interval."""
    from scipy.stats import bootstrap

    with_human, without = np.asarray(with_human, float), np.asarray(without, float)

    def gain(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return 1.0 - a.mean(axis=axis) / b.mean(axis=axis)

    value = float(gain(with_human, without))
    ci: list[float | None] = [None, None]
    if len(with_human) >= 3:
        res = bootstrap((with_human, without), gain, paired=True, vectorized=True, n_resamples=n_resamples,
                        confidence_level=0.95, method="BCa", random_state=np.random.default_rng(seed))
        ci = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
        if not all(np.isfinite(c) for c in ci):
            ci = [None, None]
    return {"value": value, "ci": ci, "interval": "paired BCa bootstrap over held-out episodes (scipy)"}
