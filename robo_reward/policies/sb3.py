"""Policies trained by ``robo-reward rl`` (stable-baselines3 SAC or PPO), as :class:`SB3Policy`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from robo_reward.policies.registry import POLICIES

POLICY_FILE = "policy.zip"
POLICY_META = "policy.json"


@POLICIES.register("sb3")
class SB3Policy:
    """A policy written by ``robo-reward rl``: ``act(obs) -> ee_delta action`` on RLObservation dicts."""

    needs_state = True  # the actor reads the low-dimensional ``state``

    def __init__(self, run: str | Path | None = None, model=None, deterministic: bool = True):
        """``deterministic=False`` samples actions from the policy instead of taking its mean."""
        from stable_baselines3 import PPO, SAC

        self.cameras: tuple[str, ...] = ()
        self.deterministic = deterministic
        if model is not None:  # a live model (evaluation during training)
            self.model, self.meta, self.task = model, {}, None
            return
        run = Path(run)
        meta_path = run / POLICY_META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing; expected a run directory written by `robo-reward rl`")
        self.meta = json.loads(meta_path.read_text())
        cls = {"sac": SAC, "ppo": PPO}[self.meta["algo"]]
        self.model = cls.load(run / POLICY_FILE, device="cpu")
        self.task = self.meta["task"]

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, Any], env=None) -> np.ndarray:
        return self.model.predict(obs["state"], deterministic=self.deterministic)[0]
