"""The vector-env side of residual fine-tuning: :class:`ResidualVecEnv` runs one copy of the frozen
base policy per env and turns the agent's action into a bounded correction of the base's."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from robo_reward.policies.registry import load_policy
from robo_reward.policies.residual import compose, residual_input
from robo_reward.rl.observation import index_obs


def check_init_policy(run: str | Path, task: str, obs_space: gym.spaces.Dict, action_dim: int) -> dict:
    """The base policy must fit the task's observation and action layout; returns its ``policy.json``."""
    import json

    path = Path(run) / "policy.json"
    meta = json.loads(path.read_text())
    if meta.get("kind") == "residual":
        raise ValueError(f"--init-policy={run}: already a residual policy; fine-tune its base ({meta.get('base')}) "
                         "or start from a train-bc run")
    if meta.get("task") not in (None, task):
        raise ValueError(f"--init-policy={run}: trained on task {meta['task']!r}, this run is {task!r}")
    if meta.get("kind") == "bc":
        want = meta.get("action_dim", 4)
        if want != action_dim:
            raise ValueError(f"--init-policy={run}: acts {want}-D, task {task!r} takes {action_dim}-D actions")
        key = "state" if meta["obs"] == "state" else "proprio"
        have = obs_space[key].shape[0]
        if meta["state_dim"] != have:
            raise ValueError(f"--init-policy={run}: reads a {meta['state_dim']}-D {key}, task {task!r} gives "
                             f"{have}-D; expected a policy trained on {task} demos of this embodiment")
    return meta


class ResidualVecEnv(VecEnvWrapper):
    """Wrap a VecEnv of :class:`~robo_reward.rl.observation.RLObservation` dict observations.

    ``obs['state']`` becomes ``[state, a_base]`` (the residual actor and critics see what the base
    proposes, as in ResFiT); the env executes ``clip(a_base + scale * action)``. Each env has its
    own copy of the base, so a chunked base keeps its own action queue; it is reset with the
    episode. ``scale`` may be changed between steps (grown as training goes on).
    """

    def __init__(self, venv: VecEnv, base_run: str | Path, scale: float):
        self.bases = [load_policy(base_run) for _ in range(venv.num_envs)]
        self.base_run = Path(base_run)
        spaces = dict(venv.observation_space.spaces)
        state_dim = spaces["state"].shape[0]
        act_dim = venv.action_space.shape[0]
        spaces["state"] = gym.spaces.Box(-np.inf, np.inf, (state_dim + act_dim,), np.float32)
        super().__init__(venv, observation_space=gym.spaces.Dict(spaces))
        self.scale = float(scale)
        self._base = np.zeros((venv.num_envs, act_dim), np.float32)
        self.last_executed = self._base.copy()

    def _base_actions(self, obs: dict, rows) -> None:
        for i in rows:
            self._base[i] = self.bases[i].act(index_obs(obs, i))

    def _augment(self, obs: dict) -> dict:
        return {**obs, "state": residual_input(obs["state"], self._base)}

    def reset(self):
        obs = self.venv.reset()
        for b in self.bases:
            b.reset()
        self._base_actions(obs, range(self.num_envs))
        return self._augment(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self.last_executed = compose(self._base, actions, self.scale)
        self.venv.step_async(self.last_executed)

    def step_wait(self):
        obs, r, dones, infos = self.venv.step_wait()
        for i in range(self.num_envs):
            if dones[i]:  # the terminal state's input carries the base's next proposal there
                term = infos[i]["terminal_observation"]
                a_next = self.bases[i].act(term)
                infos[i]["terminal_observation"] = {**term, "state": residual_input(term["state"], a_next)}
                self.bases[i].reset()
        self._base_actions(obs, range(self.num_envs))
        return self._augment(obs), r, dones, infos
