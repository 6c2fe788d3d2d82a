"""Per-frame progress from a trained :class:`ProcessRewardModel`: the one inference module.

- :func:`predict_episode`: a stored episode, every causal window, each frame encoded once (eval,
  annotate, RA-BC, refit); :func:`predict_windows` is the per-window reference it is tested against;
- :func:`dataset_progress`: every frame of a dataset, in dataset order (RA-BC, demo replay);
- :class:`ProgressStream`: live streams (RL envs, a robot), batched across streams. It keeps each
  stream's fused per-frame tokens, so a step encodes only the newest frame and runs the causal
  transformer over the cached window (the same clamped-at-start windows as the stored path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robo_reward.data.frames import load_frame_cache
from robo_reward.reward.modeling import ProcessRewardModel


@dataclass
class EpisodePrediction:
    progress: np.ndarray  # (L,)
    stage_probs: np.ndarray  # (L, K)
    success_prob: np.ndarray  # (L,)
    hidden: np.ndarray  # (L, D): state at the last window position


def window_rows(length: int, window: int, gap: int) -> np.ndarray:
    """(L, T) frame indices: the causal window ending at each frame (clamped at the start)."""
    ends = np.arange(length)[:, None]
    return np.clip(ends - gap * np.arange(window - 1, -1, -1)[None, :], 0, length - 1)


@torch.no_grad()
def predict_episode(model: ProcessRewardModel, frames: np.ndarray, batch: int = 256,
                    view_mask: np.ndarray | None = None, state: np.ndarray | None = None) -> EpisodePrediction:
    """The model on every causal window of one episode, each frame encoded once: per-frame tokens
    first (batched), then the temporal model over each window of cached tokens, the path
    :class:`ProgressStream` takes online. frames: (L, V, H, W, 3) uint8; state: (L, S)
    observation.state (a ``use_state`` model needs it)."""
    cfg = model.config
    n, v = len(frames), len(cfg.cameras)
    if cfg.use_state:
        if state is None:
            raise ValueError(f"state: missing; this model was trained with use_state and reads "
                             f"observation.state (width {cfg.state_dim}) with every frame")
        if len(state) != n:
            raise ValueError(f"state: {len(state)} rows for {n} frames; expected one per frame")
    vm = None if view_mask is None else torch.as_tensor(view_mask, dtype=torch.bool).reshape(-1)[-v:]
    tokens = []
    for i in range(0, n, batch):
        x = model.prep(frames[None, i: i + batch])[0]  # (B, V, 3, s, s)
        m = None
        if vm is not None:
            m = vm.expand(x.shape[0], -1)
            x = x * m[..., None, None, None]
        st = torch.as_tensor(state[i: i + batch], dtype=torch.float32) if cfg.use_state else None
        tokens.append(model.frame_tokens(x.flatten(0, 1), m, n_views=v, state=st))
    tok = torch.cat(tokens)  # (L, D)
    rows = torch.as_tensor(window_rows(n, cfg.window, cfg.frame_gap))
    outs = []
    for i in range(0, n, batch):
        h = model.temporal_from_tokens(tok[rows[i: i + batch]])[:, -1:]
        hd = model.heads(h)
        outs.append({"progress": hd["progress"][:, -1], "stage_logits": hd["stage_logits"][:, -1],
                     "success_logit": hd["success_logit"][:, -1], "h": h[:, -1]})
    cat = {k: torch.cat([o[k] for o in outs]).cpu() for k in outs[0]}
    return EpisodePrediction(cat["progress"].clamp(0, 1).numpy(), cat["stage_logits"].softmax(-1).numpy(),
                             torch.sigmoid(cat["success_logit"]).numpy(), cat["h"].numpy())


@torch.no_grad()
def predict_windows(model: ProcessRewardModel, frames: np.ndarray, batch: int = 128,
                    view_mask: np.ndarray | None = None, state: np.ndarray | None = None) -> EpisodePrediction:
    """The reference path of :func:`predict_episode`: the model's forward on every causal window,
    so each frame is encoded ``window`` times. Kept for the equality test."""
    cfg = model.config
    rows = window_rows(len(frames), cfg.window, cfg.frame_gap)
    outs = []
    for i in range(0, len(rows), batch):
        x = model.prep(frames[rows[i: i + batch]])
        vm = None
        if view_mask is not None:
            vm = torch.as_tensor(view_mask, dtype=torch.bool).expand(x.shape[0], x.shape[1], -1)
            x = x * vm[..., None, None, None]
        st = None
        if cfg.use_state:
            if state is None:
                raise ValueError(f"state: missing; this model was trained with use_state and reads "
                                 f"observation.state (width {cfg.state_dim}) with every frame")
            if len(state) != len(frames):
                raise ValueError(f"state: {len(state)} rows for {len(frames)} frames; expected one per frame")
            st = torch.as_tensor(state[rows[i: i + batch]], dtype=torch.float32)
        out = model(x, vm, state=st)
        outs.append({k: out[k][:, -1].cpu() for k in ("progress", "stage_logits", "success_logit", "h")})
    cat = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return EpisodePrediction(cat["progress"].clamp(0, 1).numpy(), cat["stage_logits"].softmax(-1).numpy(),
                             torch.sigmoid(cat["success_logit"]).numpy(), cat["h"].numpy())


def model_frame_cache(cfg, root: str | Path, camera_map: dict[str, str] | None = None, **kw):
    """The frame cache a model reads on a dataset: its cameras (through ``camera_map``, dataset
    camera -> model camera, for a dataset that names them otherwise), resolution and resize mode."""
    inverse = {m: d for d, m in (camera_map or {}).items()}
    unknown = [m for m in inverse if m not in cfg.cameras]
    if unknown:
        raise ValueError(f"--camera-map: {unknown} are not cameras of the model; it reads {list(cfg.cameras)}")
    cams = [inverse.get(c, c) for c in cfg.cameras]
    return load_frame_cache(root, cams, cfg.image_size, state=cfg.use_state, resize=cfg.resize, **kw)


def load_models(runs: str | Path | Sequence[str | Path]) -> list[ProcessRewardModel]:
    """One model per run; ``runs`` may be a comma-separated string (an ensemble)."""
    if isinstance(runs, str | Path):
        runs = [r.strip() for r in str(runs).split(",") if r.strip()]
    return [ProcessRewardModel.load(r) for r in runs]


def dataset_progress(runs: str | Path | Sequence[str | Path], root: str | Path,
                     progress_bar: bool = False) -> np.ndarray:
    """Progress of every dataset frame, in dataset order; several runs give their mean (an ensemble)."""
    models = load_models(runs)
    cache = model_frame_cache(models[0].config, root, progress=progress_bar)
    return np.concatenate([np.mean([predict_episode(m, cache.episode_frames(ep), state=cache.episode_state(ep)).progress
                                    for m in models], axis=0) for ep in cache.episodes])


@dataclass
class StreamOutput:
    """One step of a :class:`ProgressStream` for the active rows, per ensemble member."""

    progress: np.ndarray  # (M, R) in [0, 1]
    stage_probs: np.ndarray  # (M, R, K)
    success_prob: np.ndarray  # (M, R)
    progress_stage: np.ndarray  # (M, R): the stage-and-tau progress, before a refit head's scaling
    hidden: np.ndarray  # (M, R, D): the hidden state the heads read (what a refit trains on)


class ProgressStream:
    """Causal progress for ``num_streams`` live frame streams with cached per-frame tokens.

    ``models`` is one model or an ensemble whose members share cameras, window, frame gap,
    image size and state input."""

    def __init__(self, models: ProcessRewardModel | Sequence[ProcessRewardModel], num_streams: int = 1,
                 device: str = "cpu"):
        if isinstance(models, ProcessRewardModel):
            models = [models]
        if not models:
            raise ValueError("models: empty; expected at least one reward model")
        cams = [tuple(m.config.cameras) for m in models]
        if len(set(cams)) != 1 or len({(m.config.window, m.config.frame_gap, m.config.image_size) for m in models}) != 1:
            raise ValueError(f"ensemble: members differ in cameras/window/frame_gap/image_size: {cams}")
        if len({(m.config.use_state, m.config.state_dim) for m in models}) != 1:
            raise ValueError("ensemble: members differ in use_state/state_dim")
        self.models = [m.to(device).eval() for m in models]
        cfg = self.models[0].config
        self.config = cfg
        self.cameras: tuple[str, ...] = cams[0]
        self.window, self.gap = cfg.window, cfg.frame_gap
        self.span = (cfg.window - 1) * cfg.frame_gap + 1
        self.device = device
        self.num_streams = num_streams
        # history[m]: (num_streams, span, D) tokens; count[i]: frames seen this episode by stream i
        self.history = [torch.zeros(num_streams, self.span, cfg.dim, device=device) for _ in self.models]
        self.count = np.zeros(num_streams, dtype=np.int64)

    @torch.no_grad()
    def step(self, frames: np.ndarray, rows: np.ndarray, first: np.ndarray,
             state: np.ndarray | None = None) -> StreamOutput:
        """Push one frame to each of ``rows``: frames (R, V, H, W, 3), ``first`` (R,) restarts a
        stream's episode, state (R, S) for a ``use_state`` model."""
        self.count[rows[first]] = 0
        x = self.models[0].prep(frames[:, None])[:, 0].flatten(0, 1)  # (R*V, 3, s, s)
        offs = self.gap * np.arange(self.window - 1, -1, -1)
        back = np.minimum(offs[None, :], self.count[rows][:, None])  # (R, T), newest frame at span-1
        idx = torch.as_tensor(self.span - 1 - back, device=self.device)
        r_t = torch.as_tensor(rows, device=self.device)
        outs, stage_p, succ_p, raw, hid = [], [], [], [], []
        for m, hist in zip(self.models, self.history, strict=True):
            tok = m.frame_tokens(x, n_views=len(self.cameras), state=state)  # (R, D)
            h_rows = torch.roll(hist[r_t], shifts=-1, dims=1)
            h_rows[:, -1] = tok
            hist[r_t] = h_rows
            seq = torch.gather(h_rows, 1, idx[..., None].expand(-1, -1, h_rows.shape[-1]))
            h = m.temporal_from_tokens(seq)[:, -1:]
            hd = m.heads(h)
            outs.append(hd["progress"][:, -1].clamp(0.0, 1.0).cpu().numpy())
            raw.append(hd["progress_stage"][:, -1].clamp(0.0, 1.0).cpu().numpy())
            hid.append(h[:, -1].cpu().numpy())
            stage_p.append(hd["stage_logits"][:, -1].softmax(-1).cpu().numpy())
            succ_p.append(torch.sigmoid(hd["success_logit"][:, -1]).cpu().numpy())
        self.count[rows] += 1
        return StreamOutput(np.stack(outs), np.stack(stage_p), np.stack(succ_p), np.stack(raw), np.stack(hid))
