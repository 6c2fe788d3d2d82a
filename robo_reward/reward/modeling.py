"""Multi-view stage-aware process reward model.

    per-view CNN -> view fusion (attention over view tokens + view embeddings, missing views
    masked) -> causal transformer over T frames -> heads: stage logits + tau (SARM), success,
    a projection for contrastive stage alignment, and a pairwise hop head (Robo-Dopamine GRM).

Progress is ``Phi = sum_k p_k (P_{k-1} + a_k tau)``: the expectation of SARM's
``P_{k-1} + a_k tau`` under the predicted stage distribution, which is smooth where the stage
is uncertain. The one function the rest of the stack calls is :meth:`progress`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robo_reward.reward.config import RewardModelConfig
from robo_reward.reward.encoders import make_encoder

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def make_refit_head(d: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, 64), nn.SiLU(), nn.Linear(64, 1))


class ProcessRewardModel(nn.Module):
    def __init__(self, config: RewardModelConfig):
        super().__init__()
        if not config.cameras:
            raise ValueError("cameras: empty; expected at least one camera name (train-reward fills them in "
                             "from the dataset)")
        self.config = config
        d, k = config.dim, config.num_stages
        self.encoder = make_encoder(config)
        if config.freeze_encoder:
            for p in self.encoder.net.parameters():
                p.requires_grad_(False)
        self.view_embed = nn.Parameter(torch.randn(len(config.cameras), d) * 0.02)
        self.fuse_query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.fuse = nn.MultiheadAttention(d, config.heads, batch_first=True)
        self.time_embed = nn.Parameter(torch.randn(config.window, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, config.heads, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.temporal = nn.TransformerEncoder(layer, config.temporal_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.stage_head = nn.Linear(d, k)
        self.tau_head = nn.Linear(d, 1)
        self.progress_head = nn.Linear(d, 1)  # used when stage_head=False (plain regression)
        self.success_head = nn.Linear(d, 1)
        self.proj = nn.Linear(d, 64)
        self.prototypes = nn.Parameter(F.normalize(torch.randn(k, 64), dim=-1))
        self.hop_head = nn.Sequential(nn.Linear(3 * d, d), nn.SiLU(), nn.Linear(d, 1))
        props = torch.tensor(config.temporal_proportions, dtype=torch.float32)
        self.register_buffer("proportions", props)
        self.register_buffer("cum_proportions", torch.cat([torch.zeros(1), props.cumsum(0)[:-1]]))
        if config.use_state:
            if config.state_dim < 1:
                raise ValueError("state_dim: 0 with use_state=true; expected the width of observation.state "
                                 "(train-reward fills it in from the dataset)")
            self.state_embed = nn.Sequential(nn.Linear(config.state_dim, d), nn.SiLU(), nn.Linear(d, d))
            # the training set's statistics (set by train-reward, saved with the weights)
            self.register_buffer("state_mean", torch.zeros(config.state_dim))
            self.register_buffer("state_std", torch.ones(config.state_dim))
        if config.refit_head:
            self.refit = make_refit_head(d)
        # hidden state of "task done" (mean over the last frames of successful training demos): the
        # anchor of the backward-anchored progress estimate
        self.register_buffer("goal_h", torch.zeros(d))

    # ---- core ---------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> ProcessRewardModel:
        super().train(mode)
        if self.config.freeze_encoder:
            self.encoder.net.eval()  # frozen BatchNorm statistics
        return self

    def encode(self, frames: torch.Tensor | None, view_mask: torch.Tensor | None = None,
               features: torch.Tensor | None = None, state: torch.Tensor | None = None) -> torch.Tensor:
        """frames (B, T, V, 3, H, W) float in [0, 1], or cached trunk ``features`` (B, T, V, F) of a
        frozen pretrained encoder; view_mask (B, T, V) bool, True = present; state (B, T, S), raw
        observation.state (only for a ``use_state`` model).
        Returns per-time hidden states (B, T, D), causal in T."""
        src = frames if frames is not None else features
        b, t, v = src.shape[:3]
        if v != len(self.config.cameras):
            raise ValueError(f"frames: {v} views, the model was trained on {len(self.config.cameras)} "
                             f"({self.config.cameras})")
        if t > self.config.window:
            raise ValueError(f"frames: window of {t} frames, the model takes at most {self.config.window}")
        fused = self.frame_tokens(frames.flatten(0, 2) if frames is not None else None,
                                  None if view_mask is None else view_mask.reshape(b * t, v),
                                  None if features is None else features.flatten(0, 2), n_views=v,
                                  state=None if state is None else state.flatten(0, 1))
        return self.temporal_from_tokens(fused.view(b, t, -1))

    def frame_tokens(self, frames: torch.Tensor | None, view_mask: torch.Tensor | None = None,
                     features: torch.Tensor | None = None, n_views: int | None = None,
                     state: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame part of :meth:`encode`: encode each view and fuse the views into one token.
        frames (N*V, 3, H, W) (or cached trunk ``features`` (N*V, F)); view_mask (N, V), True =
        present. Returns (N, D). The token of a frame does not depend on other frames, so online
        users (the shaping wrapper) can cache it and encode only the newest frame each step."""
        v = n_views or len(self.config.cameras)
        src = frames if frames is not None else features
        n = src.shape[0] // v
        enc = self.encoder(frames) if features is None else self.encoder.out(features)
        tok = enc.view(n, v, -1) + self.view_embed
        mask = None
        if view_mask is not None:
            mask = ~view_mask.reshape(n, v)
            mask[mask.all(dim=1)] = False  # a frame with no views attends to all (zeros) rather than NaN
        fused, _ = self.fuse(self.fuse_query.expand(n, -1, -1), tok, tok, key_padding_mask=mask)
        fused = fused.squeeze(1)
        if self.config.use_state:
            fused = fused + self.state_embed((self.check_state(state, n) - self.state_mean) / self.state_std)
        return fused

    def check_state(self, state: torch.Tensor | np.ndarray | None, n: int) -> torch.Tensor:
        """state (N, S) as a float tensor on the model's device, or a clear error."""
        s_dim = self.config.state_dim
        if state is None:
            raise ValueError(f"state: missing; this model was trained with use_state (observation.state of "
                             f"width {s_dim}) and needs it with every frame")
        x = torch.as_tensor(state, dtype=torch.float32, device=self.state_mean.device)
        if x.shape != (n, s_dim):
            raise ValueError(f"state: shape {tuple(x.shape)}; expected ({n}, {s_dim}), one observation.state "
                             "per frame")
        if not torch.isfinite(x).all():
            raise ValueError("state: contains NaN or inf values; expected finite joint positions")
        return x

    def temporal_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Temporal part of :meth:`encode`: fused frame tokens (B, T, D) -> hidden states (B, T, D)."""
        t = tokens.shape[1]
        x = tokens + self.time_embed[:t]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)
        return self.norm(self.temporal(x, mask=causal, is_causal=True))

    def heads(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        stage_logits = self.stage_head(h)
        tau = torch.sigmoid(self.tau_head(h)).squeeze(-1)
        if self.config.stage_head:
            probs = stage_logits.softmax(-1)
            progress = (probs * (self.cum_proportions + self.proportions * tau.unsqueeze(-1))).sum(-1)
        else:
            progress = torch.sigmoid(self.progress_head(h)).squeeze(-1)
        out = {"stage_logits": stage_logits, "tau": tau, "progress": progress, "progress_stage": progress,
               "success_logit": self.success_head(h).squeeze(-1), "z": F.normalize(self.proj(h), dim=-1)}
        if self.config.refit_head:  # refit on rollouts: states of failed rollouts are scaled down
            out["refit_logit"] = self.refit(h.detach()).squeeze(-1)
            out["progress"] = progress * torch.sigmoid(out["refit_logit"])
        return out

    def add_refit_head(self) -> None:
        """Give the model its success discriminator (before its first refit)."""
        if not self.config.refit_head:
            self.config.refit_head = True
            self.refit = make_refit_head(self.config.dim).to(self.goal_h.device)

    def hop(self, h_before: torch.Tensor, h_after: torch.Tensor) -> torch.Tensor:
        """Progress from BEFORE to AFTER normalised by the distance left (or, for regress, by the
        progress made), in [-1, 1]."""
        return torch.tanh(self.hop_head(torch.cat([h_before, h_after, h_after - h_before], -1))).squeeze(-1)

    def forward(self, frames: torch.Tensor | None, view_mask: torch.Tensor | None = None,
                training_outputs: bool = False, features: torch.Tensor | None = None,
                state: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``training_outputs`` adds what the losses need (hops over each window and between the
        paired windows 2k/2k+1, and the similarities to the stage prototypes), so that every
        parameter is used inside forward, as DDP requires."""
        h = self.encode(frames, view_mask, features, state)
        out = {"h": h, **self.heads(h)}
        if training_outputs:
            m = h.shape[0] // 2
            out["hop_window"] = torch.cat([self.hop(h[:, 0], h[:, -1]), self.hop(h[:, -1], h[:, 0])])
            out["hop_pair"] = self.hop(h[0:2 * m:2, -1], h[1:2 * m:2, -1])
            out["proto_sims"] = out["z"] @ F.normalize(self.prototypes, dim=-1).T
        return out

    # ---- public inference API (batched; the last frame of each window is "now") --------------
    @torch.no_grad()
    def progress(self, frames: torch.Tensor | np.ndarray, view_mask: torch.Tensor | None = None,
                 state: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Phi in [0, 1] for the last frame of each window. frames: (B, T, V, H, W, 3) uint8 or
        (B, T, V, 3, H, W) float; state (B, T, S) for a ``use_state`` model."""
        return self.forward(self.prep(frames), view_mask, state=self._state(state))["progress"][:, -1].clamp(0.0, 1.0)

    @torch.no_grad()
    def stage_probs(self, frames, view_mask=None, state=None) -> torch.Tensor:
        return self.forward(self.prep(frames), view_mask, state=self._state(state))["stage_logits"][:, -1].softmax(-1)

    @torch.no_grad()
    def success_prob(self, frames, view_mask=None, state=None) -> torch.Tensor:
        return torch.sigmoid(self.forward(self.prep(frames), view_mask, state=self._state(state))["success_logit"][:, -1])

    def _state(self, state) -> torch.Tensor | None:
        return None if state is None or not self.config.use_state else torch.as_tensor(state, dtype=torch.float32)

    def prep(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(frames)
        if x.dtype == torch.uint8:
            x = x.permute(0, 1, 2, 5, 3, 4).float() / 255.0
        if x.ndim != 6:
            raise ValueError(f"frames: shape {tuple(x.shape)}; expected (B, T, V, H, W, 3) uint8 or (B, T, V, 3, H, W)")
        if not torch.isfinite(x).all():
            raise ValueError("frames: contain NaN or inf values; expected finite pixels")
        s = self.config.image_size
        h, w = x.shape[-2:]
        if h != w and self.config.resize == "crop":  # the centred square, as the frame cache makes it
            m = min(h, w)
            x = x[..., (h - m) // 2: (h - m) // 2 + m, (w - m) // 2: (w - m) // 2 + m]
        elif h != w:  # letterbox: black bars on the shorter side
            m = max(h, w)
            x = F.pad(x, ((m - w) // 2, m - w - (m - w) // 2, (m - h) // 2, m - h - (m - h) // 2))
        if x.shape[-2:] != (s, s):
            b, t, v = x.shape[:3]
            x = F.interpolate(x.flatten(0, 2), size=(s, s), mode="bilinear", align_corners=False).view(b, t, v, 3, s, s)
        return x.to(next(self.parameters()).device)

    # ---- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """``model.safetensors`` + ``config.json``, each written to a temp file and renamed."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.state_dict().items()}
        tmp = directory / (WEIGHTS + ".tmp")
        save_file(state, str(tmp))
        os.replace(tmp, directory / WEIGHTS)
        tmpc = directory / (CONFIG + ".tmp")
        tmpc.write_text(json.dumps(dataclasses.asdict(self.config), indent=2))
        os.replace(tmpc, directory / CONFIG)

    @torch.no_grad()
    def init_from(self, other: ProcessRewardModel) -> dict[str, list[str]]:
        """Start from ``other``'s weights (``train-reward --init``): every tensor of the same shape
        is copied; the per-stage rows of the stage head and the prototypes are copied by stage name
        (a new task's stages that the other model knew start where it left them, new ones fresh);
        the temporal proportions stay this model's (the new task's). Returns what was kept, matched
        by stage and left fresh."""
        mine, theirs = self.state_dict(), other.state_dict()
        kept, fresh = [], []
        skip = {"proportions", "cum_proportions", "goal_h"}
        for k, v in mine.items():
            if k in skip:
                continue
            if k in theirs and theirs[k].shape == v.shape and k not in ("stage_head.weight", "stage_head.bias",
                                                                        "prototypes"):
                v.copy_(theirs[k])
                kept.append(k)
            elif k not in ("stage_head.weight", "stage_head.bias", "prototypes"):
                fresh.append(k)
        names = list(self.config.stage_names)
        old = {n: i for i, n in enumerate(other.config.stage_names)}
        matched = [n for n in names if n in old]
        for key in ("stage_head.weight", "stage_head.bias", "prototypes"):
            for i, n in enumerate(names):
                if n in old:
                    mine[key][i].copy_(theirs[key][old[n]])
        return {"kept": kept, "stages_matched": matched, "stages_new": [n for n in names if n not in old],
                "fresh": fresh}

    @classmethod
    def load(cls, directory: str | Path, map_location: str = "cpu") -> ProcessRewardModel:
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in (WEIGHTS, CONFIG):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name}: missing; expected a run written by train-reward")
        cfg = RewardModelConfig(**json.loads((directory / CONFIG).read_text()))
        model = cls(cfg)
        state = load_file(str(directory / WEIGHTS), device=map_location)
        state.setdefault("goal_h", torch.zeros(cfg.dim))  # runs saved before the goal anchor existed
        model.load_state_dict(state)
        model.eval()
        return model
