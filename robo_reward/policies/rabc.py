"""Reward-aligned behaviour cloning weights (RA-BC, SARM paper Eq. 8-9).

With ``r_i = phi(o_{t+D}) - phi(o_t)`` the progress made over the policy's chunk horizon D (the
future frame is clamped to the episode's last frame), ``mu``/``sigma`` the mean and std of r over
the dataset (as LeRobot's ``RABCWeights``: ``mu = max(mean, 0)``, ``sigma = max(std, eps)``):

- ``w = 1`` if ``r > kappa``;
- ``w = clip((r - (mu - 2 sigma)) / (4 sigma + eps), 0, 1)`` if ``0 <= r <= kappa``;
- ``w = 0`` if ``r < 0``;

renormalised per batch to sum to the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EPS = 1e-6


def progress_deltas(progress: np.ndarray, episode_index: np.ndarray, chunk: int) -> np.ndarray:
    """r_t = phi[t + D] - phi[t] within each episode, the future frame clamped to the episode's
    last frame. Rows must be in dataset order (episodes contiguous)."""
    progress = np.asarray(progress, dtype=np.float64)
    ep = np.asarray(episode_index)
    n = len(progress)
    if chunk < 1:
        raise ValueError(f"chunk: {chunk}; expected >= 1")
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
    ends = np.r_[starts[1:], n]
    last = np.repeat(ends - 1, ends - starts)
    future = np.minimum(np.arange(n) + chunk, last)
    return progress[future] - progress


@dataclass
class DeltaStats:
    mean: float
    std: float


def delta_stats(deltas: np.ndarray, eps: float = EPS) -> DeltaStats:
    d = np.asarray(deltas, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return DeltaStats(0.0, eps)
    return DeltaStats(max(float(d.mean()), 0.0), max(float(d.std()), eps))


def rabc_weights(deltas: np.ndarray, kappa: float, stats: DeltaStats, eps: float = EPS,
                 fallback: float = 1.0) -> np.ndarray:
    """Per-sample RA-BC weight (before batch renormalisation). NaN deltas get ``fallback``."""
    if kappa < 0:
        raise ValueError(f"kappa: {kappa}; expected >= 0")
    r = np.asarray(deltas, dtype=np.float64)
    soft = np.clip((r - (stats.mean - 2 * stats.std)) / (4 * stats.std + eps), 0.0, 1.0)
    w = np.zeros_like(r)
    w[r > kappa] = 1.0
    mid = (r >= 0) & (r <= kappa)
    w[mid] = soft[mid]
    w[~np.isfinite(r)] = fallback
    return w.astype(np.float32)


def normalize_batch(w: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale a batch's weights to sum to the batch size (LeRobot's convention)."""
    return w * w.shape[0] / (w.sum() + eps)
