"""Action-chunking BC policies: an MLP on the low-dimensional state, or a small CNN on one or more
camera views plus proprioception; both predict a chunk of D actions and execute the first
``n_action_steps`` of each chunk. :class:`BCPolicy` runs a saved one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robo_reward.policies.registry import POLICIES, POLICY_META

BC_WEIGHTS = "policy.safetensors"


class ChunkPolicy(nn.Module):
    """state MLP, or per-view CNN + proprioception, -> (chunk, action_dim) actions in [-1, 1]."""

    def __init__(self, obs: str, state_dim: int, action_dim: int, chunk: int, hidden: list[int],
                 cameras: list[str], image_size: int = 64):
        super().__init__()
        self.obs, self.chunk, self.action_dim = obs, chunk, action_dim
        self.cameras = list(cameras)
        feat = state_dim
        if obs == "images":
            self.cnn = nn.Sequential(
                nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.SiLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(),
                nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(),
                nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(256, 128), nn.LayerNorm(128))
            feat = state_dim + 128 * len(self.cameras)
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(feat, h), nn.SiLU()]
            feat = h
        layers.append(nn.Linear(feat, chunk * action_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, state: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        """state (B, S); images (B, V, 3, H, W) float in [0, 1] for obs=images."""
        x = state
        if self.obs == "images":
            b, v = images.shape[:2]
            f = self.cnn(images.flatten(0, 1)).view(b, -1)
            x = torch.cat([state, f], -1)
        return torch.tanh(self.mlp(x)).view(-1, self.chunk, self.action_dim)


def save_bc_policy(policy: ChunkPolicy, out: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tmp = out / (BC_WEIGHTS + ".tmp")
    save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(tmp))
    os.replace(tmp, out / BC_WEIGHTS)
    tmpm = out / (POLICY_META + ".tmp")
    tmpm.write_text(json.dumps(meta, indent=2))
    os.replace(tmpm, out / POLICY_META)


@POLICIES.register("bc")
class BCPolicy:
    """A policy written by ``train-bc``: ``act(obs)`` on RLObservation dicts, executing
    ``n_action_steps`` of each predicted chunk."""

    def __init__(self, run: str | Path):
        from safetensors.torch import load_file

        run = Path(run)
        self.meta = json.loads((run / POLICY_META).read_text())
        m = self.meta
        self.task = m["task"]
        self.cameras = tuple(m["cameras"])
        self.policy = ChunkPolicy(m["obs"], m["state_dim"], m.get("action_dim", 4), m["chunk"], m["hidden"], m["cameras"])
        self.policy.load_state_dict(load_file(str(run / BC_WEIGHTS)))
        self.policy.eval()
        self._queue: list[np.ndarray] = []

    @property
    def needs_state(self) -> bool:
        """Reads object and goal positions (``state``), which only sim or a tracker provides."""
        return self.meta["obs"] == "state"

    def reset(self) -> None:
        self._queue = []

    @torch.no_grad()
    def act(self, obs: dict[str, Any], env=None) -> np.ndarray:
        if not self._queue:
            if self.meta["obs"] == "state":
                s = torch.as_tensor(obs["state"])[None]
                img = None
            else:
                s = torch.as_tensor(obs["proprio"])[None]
                img = torch.as_tensor(np.stack([obs[f"pixels.{c}"] for c in self.cameras]))[None]
                img = img.permute(0, 1, 4, 2, 3).float() / 255.0
            chunk = self.policy(s, img)[0].numpy()
            self._queue = list(chunk[: self.meta["n_action_steps"]])
        return self._queue.pop(0)
