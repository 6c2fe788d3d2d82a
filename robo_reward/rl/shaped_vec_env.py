"""PBRS for a stable-baselines3 ``VecEnv``: :class:`ShapedVecEnv`, one batched potential call per step."""

from __future__ import annotations

import time

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from robo_reward.rl.observation import batch_obs, index_obs
from robo_reward.rl.potentials import Potential
from robo_reward.rl.shaping import Shaper


class ShapedVecEnv(VecEnvWrapper):
    """Wrap an SB3 VecEnv of :class:`~robo_reward.rl.observation.RLObservation` envs: shape rewards
    with ``potential`` (one batched call per step across envs) and hand the policy only
    ``obs['state']``. Phi(s') of a finished env comes from its terminal observation, and the new
    episode's first frame restarts the potential's history. ``time_in_potential`` (s) is logged."""

    def __init__(self, venv: VecEnv, potential: Potential, shaper: Shaper):
        super().__init__(venv, observation_space=venv.observation_space["state"])
        self.potential = potential
        self.shaper = shaper
        self._phi = np.zeros(venv.num_envs)
        self._feat: np.ndarray | None = None
        self.time_in_potential = 0.0
        self.record_features = False  # set by a run that refits the reward (it relabels from them)

    def _features(self) -> np.ndarray | None:
        f = getattr(self.potential, "last_features", None) if self.record_features else None
        return None if f is None else f.copy()

    def _call_potential(self, obs, first, active=None) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.potential(obs, first, active)
        self.time_in_potential += time.perf_counter() - t0
        return out

    def reset(self):
        obs = self.venv.reset()
        self._phi = self._call_potential(obs, np.ones(self.num_envs, bool))
        self._feat = self._features()
        return obs["state"]

    def step_wait(self):
        obs, r, dones, infos = self.venv.step_wait()
        n = self.num_envs
        term = np.array([bool(d and not info.get("TimeLimit.truncated", False)) for d, info in zip(dones, infos, strict=True)])
        next_obs = obs  # for done envs obs holds the reset observation: use the terminal one
        if dones.any():
            next_obs = batch_obs([infos[i]["terminal_observation"] if dones[i] else index_obs(obs, i) for i in range(n)])
        phi_next = self._call_potential(next_obs, np.zeros(n, bool))
        feat_next = self._features()
        shaped, f = self.shaper(r, self._phi, phi_next, term, self.potential.disagreement())
        for i in range(n):
            infos[i].update(env_reward=float(r[i]), shaping=float(f[i]), phi=float(phi_next[i]), terminal=bool(term[i]))
            if feat_next is not None:  # what Phi(s) and Phi(s') were computed from (a refit recomputes them)
                infos[i]["phi_features"] = (self._feat[i], feat_next[i])
            if dones[i]:
                infos[i]["terminal_observation"] = infos[i]["terminal_observation"]["state"]
        self._phi = phi_next.copy()
        self._feat = feat_next
        if dones.any():  # the new episodes' first frames
            phi_reset = self._call_potential(obs, dones.astype(bool), active=dones.astype(bool))
            self._phi[dones] = phi_reset[dones]
            if self._feat is not None:
                self._feat[dones] = self.potential.last_features[dones]
        return obs["state"], shaped.astype(np.float32), dones, infos

    @property
    def phi(self) -> np.ndarray:
        """Phi(s) of each env's current state (progress, before the shaper's transform)."""
        return self._phi


def make_shaped_vec_env(venv: VecEnv, potential: Potential, shaper: Shaper) -> ShapedVecEnv:
    return ShapedVecEnv(venv, potential, shaper)
