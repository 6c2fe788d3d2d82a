"""Run state, atomic checkpoints (model, replay buffer, counters) and the final policy files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from robo_reward.policies.sb3 import POLICY_FILE, POLICY_META
from robo_reward.rl.config import RLConfig

CHECKPOINT = "checkpoint"


def atomic_json(path: Path, obj: Any) -> None:
    """Write JSON to a temp file, then rename it over ``path`` (a kill leaves the old file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


class RunState:
    """What a resumed run needs besides the model: the evaluations so far and the online episode counts."""

    def __init__(self, out: Path):
        self.out = out
        self.evals: list[dict[str, Any]] = []
        self.episodes = 0
        self.successes = 0

    def as_dict(self) -> dict[str, Any]:
        return {"evals": self.evals, "episodes": self.episodes, "successes": self.successes}

    def load(self, d: dict[str, Any]) -> None:
        self.evals, self.episodes, self.successes = d["evals"], d["episodes"], d["successes"]


def save_checkpoint(model, state: RunState, out: Path, extra: dict[str, Any] | None = None) -> None:
    """Write model + replay buffer + counters (+ ``extra`` objects, each to ``<name>.pt``) to a temp
    dir, then swap it in (a kill mid-write leaves the previous checkpoint intact)."""
    import torch

    tmp = out / (CHECKPOINT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    for name, obj in (extra or {}).items():
        torch.save(obj, tmp / f"{name}.pt")
    if hasattr(model, "replay_buffer") and model.replay_buffer is not None:
        model.save_replay_buffer(tmp / "replay.pkl")
    atomic_json(tmp / "state.json", {**state.as_dict(), "num_timesteps": int(model.num_timesteps)})
    final, old = out / CHECKPOINT, out / (CHECKPOINT + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def save_policy(model, out: Path, cfg: RLConfig, residual_scale: float | None = None) -> None:
    """``policy.zip`` + ``policy.json``: what ``eval-policy`` and the deploy loop load (kind
    ``residual`` with its base policy when the run fine-tuned one)."""
    model.save(out / POLICY_FILE)
    meta = {"kind": "sb3", "algo": cfg.algo, "task": cfg.task, "observation": "policy_state",
            "action_space": "ee_delta", "reward": cfg.reward, "shaping": cfg.shaping}
    if cfg.init_policy is not None:
        meta.update(kind="residual", base=str(Path(cfg.init_policy).resolve()), scale=residual_scale)
    atomic_json(out / POLICY_META, meta)


def residual_scale_at(cfg: RLConfig, episodes: int) -> float:
    """The residual's bound after ``episodes`` online episodes: grown linearly from the start value."""
    frac = min(1.0, episodes / max(cfg.residual_grow_episodes, 1))
    return float(cfg.residual_scale_start + frac * (cfg.residual_scale - cfg.residual_scale_start))
