"""Residual fine-tuning of a cloned policy (ResFiT, Ankile et al. 2025): a frozen base policy
(any ``train-bc`` run: state or image, chunked) proposes an action, and an off-policy RL actor
adds a bounded per-step correction, ``a = clip(a_base + scale * r(s, a_base))``.

:class:`ResidualPolicy` runs a saved one (``policy.json`` kind ``residual``); the RL side
(``robo_reward.rl``) builds the same composition around its vector env.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from robo_reward.policies.registry import POLICIES, POLICY_META, load_policy

RESIDUAL_FILE = "policy.zip"


def residual_input(state: np.ndarray, base_action: np.ndarray) -> np.ndarray:
    """What the residual actor and its critics read: the policy state and the base's action."""
    return np.concatenate([np.asarray(state, np.float32), np.asarray(base_action, np.float32)], axis=-1)


def compose(base_action: np.ndarray, residual: np.ndarray, scale: float) -> np.ndarray:
    return np.clip(np.asarray(base_action) + scale * np.asarray(residual), -1.0, 1.0).astype(np.float32)


@POLICIES.register("residual")
class ResidualPolicy:
    """A base policy plus an SB3 residual actor, as written by ``robo-reward rl --init-policy``."""

    needs_state = True  # the residual actor reads the low-dimensional ``state``

    def __init__(self, run: str | Path | None = None, base=None, model=None, scale: float | None = None):
        from stable_baselines3 import SAC

        if model is not None:  # a live model (evaluation during training)
            self.base, self.model, self.scale, self.task = base, model, float(scale), getattr(base, "task", None)
        else:
            run = Path(run)
            meta = json.loads((run / POLICY_META).read_text())
            base_run = Path(meta["base"])
            if not base_run.is_absolute() and not base_run.exists():
                base_run = run / base_run
            self.base = load_policy(base_run)
            self.model = SAC.load(run / RESIDUAL_FILE, device="cpu")
            self.scale, self.task = float(meta["scale"]), meta["task"]
        self.cameras: tuple[str, ...] = tuple(getattr(self.base, "cameras", ()))

    def reset(self) -> None:
        self.base.reset()

    def act(self, obs: dict[str, Any], env=None) -> np.ndarray:
        a_base = np.asarray(self.base.act(obs, env), np.float32)
        r = self.model.predict(residual_input(obs["state"], a_base), deterministic=True)[0]
        return compose(a_base, r, self.scale)
