"""A ManiSkill task as one batched SB3 ``VecEnv``: ``num_envs`` copies in one sim, stepped together.

On a GPU (``physx_cuda``) this is how ManiSkill is meant to run: one call steps (and renders) every
env, so there is no per-env Python loop around the simulator, and the reward model is called once
per step on the whole batch (see ``robo_reward.rl.shaped_vec_env.ShapedVecEnv``). On the CPU
(``physx_cpu``) ManiSkill runs one env per sim, so ``num_envs`` must be 1 there; that is how the
tests exercise this same code.

Observations are what :class:`robo_reward.rl.observation.RLObservation` gives a single env: ``state``,
``proprio`` and ``pixels.<camera>`` (only the cameras asked for), batched. Rewards are the sparse
task success; episodes end on success or at the time limit (``TimeLimit.truncated``), and finished
envs are reset in place (a partial reset), with their last observation in
``info['terminal_observation']``, as SB3 expects.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from robo_reward.embodiments import PANDA
from sim.maniskill import require_maniskill
from sim.maniskill.tasks import (
    EE_DELTA_NAMES,
    EE_DELTA_YAW_NAMES,
    WRIST_UID,
    MSConfig,
    make_ms_env,
    task_spec,
    to_ms_action,
)


def _t2np(x) -> np.ndarray:
    return x.detach().cpu().numpy()


class ManiSkillVecEnv(VecEnv):
    """``num_envs`` ManiSkill task envs in one batched sim (see the module docstring)."""

    def __init__(self, task: str, num_envs: int, config: MSConfig | None = None, seed: int = 0):
        require_maniskill()
        import torch

        env_id, self.spec_ = task_spec(task)
        self.config = cfg = config or MSConfig()
        self._env, self.sim_backend = make_ms_env(env_id, cfg, num_envs)
        self.u = self._env.unwrapped
        self.device = self.u.device
        self.horizon = cfg.max_episode_steps or self.spec_.max_steps
        self.action_names = EE_DELTA_YAW_NAMES if self.spec_.yaw else EE_DELTA_NAMES
        self._seed = seed
        self._steps = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self._actions: np.ndarray | None = None
        self._ms_obs = self._env.reset(seed=seed)[0]
        first = self._observe(self._ms_obs)
        spaces_: dict[str, gym.Space] = {
            k: gym.spaces.Box(-np.inf, np.inf, v.shape[1:], np.float32) for k, v in first.items() if not k.startswith("pixels.")}
        for c in cfg.cameras:
            spaces_[f"pixels.{c}"] = gym.spaces.Box(0, 255, (cfg.height, cfg.width, 3), np.uint8)
        action_space = gym.spaces.Box(-1.0, 1.0, (len(self.action_names),), np.float32)
        self.render_mode = None
        super().__init__(num_envs, gym.spaces.Dict(spaces_), action_space)

    # ---- observations -----------------------------------------------------------------------
    def _observe(self, ms_obs: dict) -> dict[str, np.ndarray]:
        """The batched policy observation, built by the same function as RLObservation's."""
        q = _t2np(self.u.agent.robot.get_qpos())
        pixels = {c: _t2np(ms_obs["sensor_data"][WRIST_UID if c == "wrist" else c]["rgb"]) for c in self.config.cameras}
        return PANDA.policy_observation(q, _t2np(self.u.agent.tcp.pose.p), _t2np(self.spec_.state(self.u)), pixels)

    # ---- VecEnv API -------------------------------------------------------------------------
    def reset(self):
        self._ms_obs = self._env.reset(seed=self._seed)[0]
        self._steps.zero_()
        return self._observe(self._ms_obs)

    def step_async(self, actions: np.ndarray) -> None:
        a = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        if a.shape[1] != len(self.action_names) or not np.all(np.isfinite(a)):
            raise ValueError(f"actions: shape {a.shape} with finite values expected ({self.num_envs}, "
                             f"{len(self.action_names)}) (ee_delta: {', '.join(self.action_names)})")
        self._actions = np.clip(a, -1.0, 1.0)

    def step_wait(self):
        import torch

        ms_action = to_ms_action(self._actions, self.u.agent.tcp.pose, self.spec_.yaw, self.config.ee_step)
        ms_obs, _, _, _, info = self._env.step(ms_action)
        self._steps += 1
        success = info["success"].to(torch.bool).reshape(-1)
        truncated = (self._steps >= self.horizon) & ~success
        done = success | truncated
        obs = self._observe(ms_obs)
        rewards = _t2np(success.float())
        done_np, succ_np, trunc_np = _t2np(done), _t2np(success), _t2np(truncated)
        infos: list[dict[str, Any]] = [{"is_success": bool(s)} for s in succ_np]
        if done_np.any():
            idx = np.flatnonzero(done_np)
            for i in idx:
                infos[i]["terminal_observation"] = {k: v[i] for k, v in obs.items()}
                infos[i]["TimeLimit.truncated"] = bool(trunc_np[i])
            env_idx = torch.as_tensor(idx, device=self.device)
            ms_obs, _ = self._env.reset(options={"env_idx": env_idx})  # partial reset, in place
            self._steps[env_idx] = 0
            obs = self._observe(ms_obs)
        self._ms_obs = ms_obs
        return obs, rewards, done_np, infos

    def close(self) -> None:
        self._env.close()

    def seed(self, seed: int | None = None):
        self._seed = 0 if seed is None else int(seed)
        return [self._seed + i for i in range(self.num_envs)]

    # SB3's VecEnv bookkeeping: these envs have no per-env wrappers or attributes to reach
    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name, *args, indices=None, **kwargs):
        return [getattr(self, method_name)(*args, **kwargs)] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._indices(indices))

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)
