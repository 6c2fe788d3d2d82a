"""Potentials Phi over a batch of observation dicts (leading axis = env), for shaping.

- :class:`GroundTruthPotential`: the sim's privileged progress (``obs["progress"]``), a baseline;
- :class:`LearnedPotential`: a reward model (or an ensemble) over the rendered views, through
  :class:`~robo_reward.reward.inference.ProgressStream`;
- :class:`ZeroPotential`: no shaping (sparse reward through the same wrappers).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from robo_reward.reward.inference import ProgressStream, load_models
from robo_reward.reward.modeling import ProcessRewardModel


class Potential(abc.ABC):
    """Phi over a batch of observation dicts. ``first[i]`` marks env i's first frame of an episode
    (stateful potentials reset their history there)."""

    cameras: tuple[str, ...] = ()
    needs_progress: bool = False
    needs_state: bool = False  # reads obs["agent_pos"] (proprioception) besides the cameras

    @abc.abstractmethod
    def __call__(self, obs: dict[str, Any], first: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """Phi per env, shape (N,). Only ``active`` envs (default all) advance their history; the
        others' entries are undefined."""

    def disagreement(self) -> np.ndarray | None:
        """Ensemble spread of the last call (None for single models)."""
        return None


class ZeroPotential(Potential):
    """Phi = 0 everywhere: the sparse reward, through the same wrappers."""

    def __call__(self, obs: dict[str, Any], first: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        return np.zeros(len(first))


class GroundTruthPotential(Potential):
    """The simulator's privileged dense progress (``obs['progress']``): the oracle baseline."""

    needs_progress = True

    def __call__(self, obs: dict[str, Any], first: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        if "progress" not in obs:
            raise KeyError("obs: no 'progress' key; wrap the env with RLObservation(include_progress=True)")
        return np.asarray(obs["progress"], dtype=np.float64).reshape(-1)


class LearnedPotential(Potential):
    """Phi from a trained :class:`ProcessRewardModel` (or an ensemble of them), batched across envs.

    A frame with non-finite pixels or state gives NaN for its env (the shaper turns that into zero
    shaping and a counted warning). ``last_stage`` and ``last_success`` hold the ensemble's mean
    stage and success probability of the last call, for live displays."""

    def __init__(self, models: ProcessRewardModel | Sequence[ProcessRewardModel], num_envs: int = 1,
                 device: str = "cpu", camera_map: dict[str, str] | None = None):
        """``camera_map``: {env or robot camera: model camera}, for cameras named otherwise than in
        the model's training data; :attr:`cameras` are then the env's names, in the model's order."""
        self.stream = ProgressStream(models, num_streams=num_envs, device=device)
        self.models = self.stream.models
        cfg = self.stream.config
        inverse = {m: src for src, m in (camera_map or {}).items()}
        unknown = [m for m in inverse if m not in self.stream.cameras]
        if unknown:
            raise ValueError(f"--camera-map: {unknown} are not cameras of the reward model; it reads "
                             f"{list(self.stream.cameras)}")
        self.cameras = tuple(inverse.get(c, c) for c in self.stream.cameras)
        self.num_envs = num_envs
        self.needs_state = cfg.use_state
        self.stage_names: tuple[str, ...] = tuple(cfg.stage_names)
        self.last_stage = np.full(num_envs, -1, dtype=np.int64)
        self.last_success = np.full(num_envs, np.nan)
        self.spread: np.ndarray | None = None
        # per env and model: [progress_stage, hidden...] of the last call (what a refit relabels from)
        self.last_features = np.full((num_envs, len(self.models), 1 + cfg.dim), np.nan, np.float32)

    @classmethod
    def from_runs(cls, runs: str | Sequence[str], num_envs: int = 1, device: str = "cpu",
                  camera_map: dict[str, str] | None = None) -> LearnedPotential:
        return cls(load_models([runs] if isinstance(runs, str) else list(runs)), num_envs=num_envs, device=device,
                   camera_map=camera_map)

    def frames_of(self, obs: dict[str, Any]) -> np.ndarray:
        """(N, V, H, W, 3) views in the model's camera order, from nested ``{'pixels': {cam: ...}}``
        or flat ``{'pixels.<cam>': ...}`` observations (what SB3 vec envs carry)."""
        pix = obs.get("pixels") or {k.removeprefix("pixels."): v for k, v in obs.items() if k.startswith("pixels.")}
        if not pix:
            raise KeyError(f"obs: no 'pixels'; the reward model needs cameras {list(self.cameras)}")
        missing = [c for c in self.cameras if c not in pix]
        if missing:
            raise KeyError(f"obs['pixels']: camera(s) {missing} missing; the reward model reads "
                           f"{list(self.cameras)}, the env renders {sorted(pix)}")
        return np.stack([np.asarray(pix[c]) for c in self.cameras], axis=1)

    def state_of(self, obs: dict[str, Any], n: int, rows: np.ndarray) -> np.ndarray:
        if "agent_pos" not in obs:
            raise KeyError(f"obs: no 'agent_pos'; the reward model reads proprioception (observation.state, "
                           f"width {self.stream.config.state_dim}) with its cameras")
        return np.asarray(obs["agent_pos"], dtype=np.float32).reshape(n, -1)[rows]

    def __call__(self, obs: dict[str, Any], first: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        frames = self.frames_of(obs)
        n = frames.shape[0]
        if n != self.num_envs:
            raise ValueError(f"obs: batch of {n} envs; this potential was built for num_envs={self.num_envs}")
        first = np.asarray(first, dtype=bool).reshape(n)
        rows = np.arange(n) if active is None else np.flatnonzero(np.asarray(active, dtype=bool).reshape(n))
        phi = np.zeros(n)
        if rows.size == 0:
            return phi
        frames = frames[rows]
        finite = np.isfinite(frames.reshape(len(rows), -1)).all(axis=1) if frames.dtype.kind == "f" \
            else np.ones(len(rows), bool)
        frames = np.where(finite[:, None, None, None, None], frames, 0)
        state = None
        if self.needs_state:
            state = self.state_of(obs, n, rows)
            ok = np.isfinite(state).all(axis=1)
            finite &= ok
            state = np.where(ok[:, None], state, 0.0)
        out = self.stream.step(frames, rows, first[rows], state)
        self.last_stage = np.full(n, -1, dtype=np.int64)
        self.last_stage[rows] = out.stage_probs.mean(axis=0).argmax(-1)
        self.last_success = np.full(n, np.nan)
        self.last_success[rows] = out.success_prob.mean(axis=0)
        self.spread = np.zeros(n)
        if len(self.models) > 1:
            self.spread[rows] = out.progress.std(axis=0)
        vals = out.progress.mean(axis=0).astype(np.float64)
        vals[~finite] = np.nan
        phi[rows] = vals
        self.last_features[rows] = np.concatenate([out.progress_stage[..., None], out.hidden], -1).transpose(1, 0, 2)
        self.last_features[rows[~finite]] = np.nan
        return phi

    @torch.no_grad()
    def phi_from_features(self, feats: np.ndarray) -> np.ndarray:
        """Phi again from saved :attr:`last_features` rows (..., M, 1 + D) with the models' current
        heads: after a refit, the replay buffer's shaped rewards are recomputed with this."""
        feats = np.asarray(feats, np.float32)
        vals = []
        for m, model in enumerate(self.models):
            p = torch.as_tensor(feats[..., m, 0])
            if model.config.refit_head:
                h = torch.as_tensor(np.nan_to_num(feats[..., m, 1:]))
                p = p * torch.sigmoid(model.refit(h).squeeze(-1))
            vals.append(p.clamp(0.0, 1.0).numpy())
        return np.mean(vals, axis=0).astype(np.float64)

    def disagreement(self) -> np.ndarray | None:
        return self.spread if len(self.models) > 1 else None
