"""Registries by type string: every registered entry works, and a new task and a new embodiment
come in from new code plus a registry decorator only (no edit anywhere in the package)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest

from robo_reward.embodiments import EMBODIMENTS, Embodiment
from robo_reward.envs import TASKS, make_env
from robo_reward.policies import POLICIES
from robo_reward.registry import Registry
from robo_reward.reward.encoders import ENCODERS
from robo_reward.rl.envs import make_vec_env
from robo_reward.rl.evaluate import evaluate_policy
from robo_reward.rl.observation import RLObservation
from robo_reward.rl.potentials import GroundTruthPotential
from robo_reward.rl.shaping import Shaper


# ---- a toy embodiment and a toy task, defined only here ---------------------------------------
class ToyArm(Embodiment):
    """Two joints in radians and a gripper in 0..1: nothing to scale."""

    name: ClassVar[str] = "toy_arm"
    joint_names: ClassVar[tuple[str, ...]] = ("j0", "j1", "grip")
    joint_units: ClassVar[str] = "radians, gripper 0..1"

    def policy_joints(self, agent_pos: np.ndarray) -> np.ndarray:
        return np.asarray(agent_pos, dtype=np.float64)


@dataclass
class ToyConfig:
    cameras: tuple[str, ...] = ()
    width: int = 64
    height: int = 64
    max_episode_steps: int | None = None


class ToyReach(gym.Env):
    """Move a point (the TCP) to a goal on a plane; success within 2 cm."""

    embodiment: ClassVar[str] = "toy_arm"
    instruction: ClassVar[str] = "Reach the goal."
    stages: ClassVar[tuple[str, ...]] = ("reach",)
    max_steps: ClassVar[int] = 30
    env_state_dim: ClassVar[int] = 3

    def __init__(self, **kwargs: Any):
        self.config = ToyConfig(**kwargs)
        self.horizon = self.config.max_episode_steps or self.max_steps
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.observation_space = gym.spaces.Dict({
            "agent_pos": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "environment_state": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)})
        self.tcp_pos = np.zeros(3)

    def _obs(self) -> dict[str, np.ndarray]:
        return {"agent_pos": np.r_[self.tcp_pos[:2], 0.0].astype(np.float32),
                "environment_state": self.goal.astype(np.float32)}

    def _info(self) -> dict[str, Any]:
        d0 = np.linalg.norm(self.goal[:2] - self.start[:2])
        d = np.linalg.norm(self.goal[:2] - self.tcp_pos[:2])
        success = bool(d < 0.02)
        return {"success": success, "stage": 0, "progress": float(np.clip(1 - d / max(d0, 1e-6), 0, 1))}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.start = np.r_[self.np_random.uniform(-0.1, 0.1, 2), 0.0]
        self.goal = np.r_[self.np_random.uniform(-0.1, 0.1, 2), 0.0]
        self.tcp_pos, self.t = self.start.copy(), 0
        return self._obs(), self._info()

    def step(self, action):
        self.tcp_pos[:2] += 0.02 * np.clip(np.asarray(action, float)[:2], -1, 1)
        self.t += 1
        info = self._info()
        return self._obs(), float(info["success"]), info["success"], self.t >= self.horizon, info


class GoToGoal:
    """A policy that reads the RL state: the goal-minus-TCP vector is its last three entries."""

    task, cameras, needs_state = "toy_reach", (), True

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray], env=None) -> np.ndarray:
        rel = obs["state"][-3:] / 10.0  # dm -> m
        return np.r_[np.clip(rel[:2] / 0.02, -1, 1), 0.0, 0.0].astype(np.float32)


@pytest.fixture
def toy_registered():
    EMBODIMENTS.register("toy_arm")(ToyArm)
    TASKS.register("toy_reach")(ToyReach)
    yield
    TASKS.remove("toy_reach")
    EMBODIMENTS.remove("toy_arm")


def test_a_toy_task_on_a_toy_embodiment_runs_through_rl_and_evaluation(toy_registered):
    env = RLObservation(make_env("toy_reach"))
    assert isinstance(env.unwrapped, ToyReach) and env.embodiment.name == "toy_arm"
    obs, _ = env.reset(seed=0)
    # the toy arm's own joints (3) + TCP (3) + goal (3) + goal - TCP (3): its embodiment built the state
    assert obs["state"].shape == (12,) and obs["proprio"].shape == (6,)
    venv = make_vec_env("toy_reach", 2, GroundTruthPotential(), Shaper("pbrs", 0.9), seed=0)
    venv.reset()
    _, r, _, infos = venv.step(np.tile([1.0, 0.0, 0.0, 0.0], (2, 1)).astype(np.float32))
    assert r.shape == (2,) and all("shaping" in i for i in infos)
    venv.close()
    res = evaluate_policy(GoToGoal(), "toy_reach", episodes=5, progress_bar=False)
    assert res["success_rate"] == 1.0 and res["mean_length"] < ToyReach.max_steps
    assert TASKS.get("toy_reach").name == "toy_reach"  # the decorator names the class


def test_registry_errors_name_the_kind_and_the_choices():
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(ValueError, match=r"widget 'a' is already registered"):
        reg.add("a", 2)
    with pytest.raises(ValueError, match=r"unknown widget 'b'; expected one of \['a'\]"):
        reg.get("b")
    reg.register_prefix("p/", lambda name: len(name))
    assert reg.get("p/xyz") == 5 and "p/q" in reg and "q" not in reg


@pytest.mark.parametrize("task", [t for t in TASKS.names() if t != "toy_reach"])
def test_every_registered_task_resets_seeded(task):
    a = make_env(task, cameras=())
    b = make_env(task, cameras=())
    oa, _ = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    np.testing.assert_array_equal(oa["environment_state"], ob["environment_state"])
    assert a.unwrapped.embodiment in EMBODIMENTS


@pytest.mark.parametrize("name", EMBODIMENTS.names())
def test_every_embodiment_scales_its_joints(name):
    emb = EMBODIMENTS.get(name)
    q = np.zeros((2, len(emb.joint_names)))
    obs = emb.policy_observation(q, np.zeros((2, 3)), np.zeros((2, 3)))
    assert emb.policy_joints(q).shape == q.shape
    assert obs["state"].shape[0] == 2 and obs["proprio"].shape == (2, len(emb.joint_names) + 3)


@pytest.mark.parametrize("name", ["cnn", "resnet18"])
def test_encoders_build_from_the_registry(name):
    import torch

    from robo_reward.reward.config import RewardModelConfig

    enc = ENCODERS.get(name)(RewardModelConfig(dim=16, heads=2, cameras=["front"]))
    out = enc(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 16)
    assert set(ENCODERS.names()) >= {"cnn", "resnet18", "clip", "siglip"}


def test_policy_kinds_are_registered():
    assert set(POLICIES.names()) >= {"bc", "sb3"}
