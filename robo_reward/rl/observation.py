"""The RL observation adapter (:class:`RLObservation`) and the batching helpers the wrappers share."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from robo_reward.embodiments import EMBODIMENTS, Embodiment


class RLObservation(gym.ObservationWrapper):
    """Task env obs -> {'state': flat policy state, 'proprio', 'agent_pos', ['pixels.<camera>' ...],
    ['progress']} (flat, as SB3's vector envs need).

    The observation is built by the env's embodiment (``env.unwrapped.embodiment``, the SO-101 when
    it names none) from the joint positions, the TCP position and the environment state (object and
    goal positions), scaled to order one. ``pixels`` are kept only for the cameras the potential
    needs; ``progress`` (ground truth) only when asked.
    """

    def __init__(self, env: gym.Env, include_progress: bool = False):
        super().__init__(env)
        self.include_progress = include_progress
        base = env.unwrapped
        self.keep_pixels = bool(base.config.cameras)
        self.embodiment = embodiment_of(base)
        q0 = np.zeros(env.observation_space["agent_pos"].shape)
        probe = self.embodiment.policy_observation(q0, np.zeros(3), np.zeros(base.env_state_dim))
        dim, dim_p = probe["state"].shape[0], probe["proprio"].shape[0]
        spaces_: dict[str, gym.Space] = {"state": gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32),
                                         "proprio": gym.spaces.Box(-np.inf, np.inf, (dim_p,), np.float32),
                                         "agent_pos": gym.spaces.Box(-np.inf, np.inf, q0.shape, np.float32)}
        if self.keep_pixels:
            for c, sp in env.observation_space["pixels"].items():
                spaces_[f"pixels.{c}"] = sp
        if include_progress:
            spaces_["progress"] = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces_)
        self.last_progress = 0.0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.last_progress = info["progress"]
        return self.observation(obs), info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self.last_progress = info["progress"]
        return self.observation(obs), r, term, trunc, info

    def observation(self, obs):
        base = self.env.unwrapped
        out = self.embodiment.policy_observation(obs["agent_pos"], base.tcp_pos, obs["environment_state"],
                                                 obs["pixels"] if self.keep_pixels else None)
        if self.include_progress:
            out["progress"] = np.array([self.last_progress], dtype=np.float32)
        return out


def embodiment_of(env: gym.Env) -> Embodiment:
    """The embodiment an env declares (``embodiment``: an instance or a registered name)."""
    emb = getattr(env.unwrapped, "embodiment", "so101")
    return EMBODIMENTS.get(emb) if isinstance(emb, str) else emb


def batch_obs(obs_list: list[dict]) -> dict[str, Any]:
    """Stack per-env observation dicts (nested dicts too) along a new leading env axis."""
    out: dict[str, Any] = {}
    for k, v in obs_list[0].items():
        if isinstance(v, dict):
            out[k] = {c: np.stack([o[k][c] for o in obs_list]) for c in v}
        else:
            out[k] = np.stack([np.asarray(o[k]) for o in obs_list])
    return out


def index_obs(obs: dict[str, Any], i: int) -> dict[str, Any]:
    """Env ``i``'s observation from a batched dict (the inverse of :func:`batch_obs`)."""
    return {k: ({c: x[i] for c, x in v.items()} if isinstance(v, dict) else v[i]) for k, v in obs.items()}
