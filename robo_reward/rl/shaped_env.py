"""PBRS for one gymnasium env: :class:`ShapedRewardWrapper`."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from robo_reward.rl.observation import batch_obs
from robo_reward.rl.potentials import Potential
from robo_reward.rl.shaping import Shaper


class ShapedRewardWrapper(gym.Wrapper):
    """Shapes one env's reward with ``potential`` (called with a batch of one). Wrap an env whose
    observations carry what the potential reads (see :class:`~robo_reward.rl.observation.RLObservation`).
    Adds ``info['phi']``, ``info['shaping']`` and ``info['env_reward']``."""

    def __init__(self, env: gym.Env, potential: Potential | Callable, shaper: Shaper):
        super().__init__(env)
        self.potential = potential
        self.shaper = shaper
        self._phi = 0.0

    def _phi_of(self, obs, first: bool) -> float:
        return float(self.potential(batch_obs([obs]), np.array([first]))[0])

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._phi = self._phi_of(obs, True)
        info["phi"] = self._phi
        return obs, info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        phi_next = self._phi_of(obs, False)
        spread = self.potential.disagreement() if isinstance(self.potential, Potential) else None
        shaped, f = self.shaper(np.array([r]), np.array([self._phi]), np.array([phi_next]), np.array([term]), spread)
        info.update(phi=phi_next, shaping=float(f[0]), env_reward=float(r))
        self._phi = phi_next
        return obs, float(shaped[0]), term, trunc, info
