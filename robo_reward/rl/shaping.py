"""Potential-based reward shaping (Ng, Harada & Russell 1999) with a learned progress potential.

The shaped reward is ``r' = r_env + lambda * (gamma * Phi(s') - Phi(s))`` with ``Phi(terminal) = 0``.
Truncation by a time limit is *not* termination: the episode could have gone on, so ``Phi(s')``
stays. Summed over an episode the shaping terms telescope to ``gamma^T Phi(s_T) - Phi(s_0)``, which
is why PBRS leaves the optimal policy unchanged.

Potentials are in :mod:`robo_reward.rl.potentials`; the wrappers that apply the shaping are
:class:`~robo_reward.rl.shaped_env.ShapedRewardWrapper` (gymnasium, one env) and
:class:`~robo_reward.rl.shaped_vec_env.ShapedVecEnv` (stable-baselines3 ``VecEnv``).

Two non-invariant baselines are kept for comparison: ``naive`` (``r_env + lambda * Phi(s')``) and
``delta`` (``r_env + lambda * (Phi(s') - Phi(s))``, no gamma and no terminal handling). A NaN
potential gives zero shaping for that step and a counted warning; it never crashes the run.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass

import numpy as np


class Shaping(enum.StrEnum):
    PBRS = "pbrs"
    NAIVE = "naive"
    DELTA = "delta"
    NONE = "none"


def shaping_term(phi: np.ndarray, phi_next: np.ndarray, terminated: np.ndarray, gamma: float,
                 mode: Shaping | str) -> np.ndarray:
    """The shaping term F(s, s') per env (without lambda). ``terminated`` is true termination
    only (never truncation)."""
    mode = Shaping(mode)
    phi = np.asarray(phi, dtype=np.float64)
    phi_next = np.asarray(phi_next, dtype=np.float64)
    if mode is Shaping.PBRS:
        return gamma * np.where(np.asarray(terminated, dtype=bool), 0.0, phi_next) - phi
    if mode is Shaping.NAIVE:
        return phi_next.copy()
    if mode is Shaping.DELTA:
        return phi_next - phi
    return np.zeros(np.broadcast(phi, phi_next).shape)


@dataclass
class ShapingStats:
    """Counters a wrapper keeps (logged by the RL loop)."""

    steps: int = 0
    nan_steps: int = 0
    shaping_sum: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"shaping/steps": self.steps, "shaping/nan_steps": self.nan_steps,
                "shaping/mean_term": self.shaping_sum / max(self.steps, 1)}


class Shaper:
    """Turns (r_env, Phi(s), Phi(s'), terminated) into the shaped reward, with NaN handling."""

    def __init__(self, mode: Shaping | str = Shaping.PBRS, gamma: float = 0.99, scale: float = 1.0,
                 disagreement_penalty: float = 0.0, value_horizon: float = 0.0):
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"gamma: {gamma}; expected in (0, 1]")
        if not np.isfinite(scale):
            raise ValueError(f"scale (lambda): {scale}; expected a finite number")
        if not (np.isfinite(value_horizon) and value_horizon >= 0):
            raise ValueError(f"value_horizon: {value_horizon}; expected a number of steps >= 0 (0: off)")
        self.mode = Shaping(mode)
        self.gamma = float(gamma)
        self.scale = float(scale)
        self.disagreement_penalty = float(disagreement_penalty)
        self.value_horizon = float(value_horizon)
        self.stats = ShapingStats()

    def potential_of(self, progress: np.ndarray) -> np.ndarray:
        """Phi from progress. With ``value_horizon`` H > 0, progress p is read as the discounted
        value of finishing H steps after the start, ``gamma ** ((1 - p) * H)``. With a critic that
        starts near zero, Phi acts as the initial Q (Wiewiora 2003): a large H keeps that start
        below what a learning policy achieves (no optimism for the actor to park on) and damps
        the early, least reliable part of a learned progress. Monotone in p, so the ordering of
        states is the model's; NaN stays NaN."""
        p = np.asarray(progress, dtype=np.float64)
        if self.value_horizon <= 0:
            return p
        return self.gamma ** ((1.0 - np.clip(p, 0.0, 1.0)) * self.value_horizon)

    def __call__(self, r_env: np.ndarray, phi: np.ndarray, phi_next: np.ndarray, terminated: np.ndarray,
                 disagreement: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns (shaped reward, shaping term) per env; ``phi`` and ``phi_next`` are progress,
        turned into the potential by :meth:`potential_of`."""
        term = shaping_term(self.potential_of(phi), self.potential_of(phi_next), terminated, self.gamma, self.mode)
        bad = ~np.isfinite(term)
        if self.mode is not Shaping.NONE and bad.any():
            self.stats.nan_steps += int(bad.sum())
            warnings.warn(f"shaping: reward model gave a non-finite potential in {int(bad.sum())} env(s) "
                          f"(total {self.stats.nan_steps}); using zero shaping for that step",
                          RuntimeWarning, stacklevel=2)
            term = np.where(bad, 0.0, term)
        elif self.mode is Shaping.NONE:
            term = np.zeros_like(term)
        if disagreement is not None and self.disagreement_penalty > 0:
            term = term - self.disagreement_penalty * np.nan_to_num(np.asarray(disagreement), nan=0.0)
        self.stats.steps += term.size
        self.stats.shaping_sum += float(term.sum())
        return np.asarray(r_env, dtype=np.float64) + self.scale * term, term


