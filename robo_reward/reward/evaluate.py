"""eval-reward and annotate-progress: score a trained reward model on episodes and export its
per-frame progress in LeRobot's ``sarm_progress.parquet`` layout.

Metrics (Robo-Dopamine / SARM):
- VOC+: Spearman correlation of predicted progress with frame index on successful episodes;
- VOC-: the same on the time-reversed videos (should be near -1);
- stage accuracy against the annotations;
- success-vs-failure AUROC of the final progress;
- hop MAE against hop targets made from the label progress.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm import tqdm

from robo_reward.data.frames import FrameCache, hop_target
from robo_reward.data.lerobot_io import DatasetError
from robo_reward.data.video import progress_frame, write_mp4
from robo_reward.reward.inference import (  # noqa: F401
    EpisodePrediction,
    model_frame_cache,
    predict_episode,
    window_rows,
)
from robo_reward.reward.modeling import ProcessRewardModel
from robo_reward.stats import auroc


def _apply_hop(p_before: np.ndarray, hop: np.ndarray) -> np.ndarray:
    """Invert the hop normalisation: progress after a hop from ``p_before``."""
    return np.clip(np.where(hop >= 0, p_before + hop * (1 - p_before), p_before + hop * p_before), 0.0, 1.0)


@torch.no_grad()
def fused_progress(model: ProcessRewardModel, pred: EpisodePrediction) -> dict[str, np.ndarray]:
    """Robo-Dopamine's multi-perspective fusion of global progress:

    - ``stage``: SARM stage + tau;
    - ``incremental``: hops chained every ``frame_gap`` frames from the first frame;
    - ``forward``: one hop from the first frame (anchored at the start);
    - ``backward``: one (regress) hop from the goal anchor ``goal_h`` (anchored at the end);
    - ``fused``: their mean.
    """
    h = torch.as_tensor(pred.hidden)
    n, gap = len(h), model.config.frame_gap
    p0 = float(pred.progress[0])
    fwd = _apply_hop(np.full(n, p0), model.hop(h[:1].expand(n, -1), h).numpy())
    bwd = np.clip(1.0 + np.minimum(model.hop(model.goal_h.expand(n, -1), h).numpy(), 0.0), 0.0, 1.0)
    inc = np.empty(n)
    src = np.maximum(np.arange(n) - gap, 0)
    hops = model.hop(h[src], h).numpy()
    for t in range(n):
        inc[t] = _apply_hop(np.array(p0 if t < gap else inc[t - gap]), hops[t:t + 1])[0]
    stage = pred.progress
    return {"stage": stage, "incremental": inc, "forward": fwd, "backward": bwd,
            "fused": (stage + inc + fwd + bwd) / 4.0}


def _spearman(x: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0:
        return 0.0
    return float(spearmanr(x, np.arange(len(x))).statistic)


@torch.no_grad()
def hop_mae(model: ProcessRewardModel, pred: EpisodePrediction, progress: np.ndarray, rng: np.random.Generator,
            pairs: int = 64) -> float:
    n = len(progress)
    i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    h = torch.as_tensor(pred.hidden)
    p = model.hop(h[i], h[j]).numpy()
    return float(np.abs(p - hop_target(progress[i], progress[j])).mean())


def resolve_episodes(run: Path, cache: FrameCache) -> tuple[list[int], str]:
    """The run's held-out split when evaluating on its training dataset, else every episode."""
    split_path = run / "split.json"
    if split_path.exists():
        split = json.loads(split_path.read_text())
        if Path(split["dataset"]) == Path(cache.root).resolve():
            if not split["held_out"]:
                raise DatasetError(f"{split_path}: the run held out no episodes of {cache.root} (it was trained on "
                                   f"{len(split['train'])}); evaluate it on another dataset")
            return list(split["held_out"]), "held_out"
    return [e.index for e in cache.episodes], "all"


def evaluate(run: str | Path, dataset: str | Path, out_json: str | Path | None = None, plots: bool = True,
             video: bool = False, max_plots: int = 12, progress_bar: bool = True,
             cameras_present: list[str] | None = None, fusion: bool = False,
             occlude: dict[str, float] | None = None, camera_map: dict[str, str] | None = None) -> dict:
    run = Path(run)
    model = ProcessRewardModel.load(run)
    cfg = model.config
    try:
        cache = model_frame_cache(cfg, dataset, camera_map, labels="auto", progress=progress_bar)
    except DatasetError as e:
        raise DatasetError(f"model/dataset mismatch: the model at {run} reads cameras {cfg.cameras}; {e}") from e
    view_mask, unknown = None, [c for c in cameras_present or () if c not in cfg.cameras]
    if unknown:
        raise ValueError(f"--cameras_present: {unknown} are not cameras of the model at {run}; expected some of "
                         f"{list(cfg.cameras)}")
    if cameras_present is not None:  # simulate missing cameras
        view_mask = np.array([c in cameras_present for c in cfg.cameras])[None, None, :]
    eps_idx, which = resolve_episodes(run, cache)
    by_index = {e.index: e for e in cache.episodes}
    rng = np.random.default_rng(0)
    correct = total = 0
    per_episode = []
    out_dir = Path(out_json).parent if out_json else run / "eval"
    for idx in tqdm(eps_idx, desc="eval-reward", disable=not progress_bar):
        ep = by_index[idx]
        rec, pred, frames, hits = score_episode(model, cache, ep, view_mask, occlude, fusion, rng)
        correct, total = correct + int(hits.sum()), total + len(hits)
        per_episode.append(rec)
        if plots and len(per_episode) <= max_plots:
            plot_episode(out_dir / "plots" / f"episode_{idx:04d}.png", pred, ep, cache.stage_names,
                         title=f"episode {idx} ({ep.quality}, {'success' if ep.success else 'failure'})")
        if video and len(per_episode) <= 3:
            write_progress_video(out_dir / "videos" / f"episode_{idx:04d}.mp4", frames, pred, cache.stage_names, cache.fps)
    voc_pos = [r["voc_pos"] for r in per_episode if "voc_pos" in r]
    voc_neg = [r["voc_neg"] for r in per_episode if "voc_neg" in r]
    hops = [r["hop_mae"] for r in per_episode]
    finals = [r["final_progress"] for r in per_episode]
    succ = [r["success"] for r in per_episode]
    result = {
        "run": str(run), "dataset": str(dataset), "episodes": which, "n_episodes": len(eps_idx),
        "voc_pos": float(np.mean(voc_pos)) if voc_pos else None,
        "voc_neg": float(np.mean(voc_neg)) if voc_neg else None,
        "stage_accuracy": correct / total if total else None,
        "auroc": auroc(np.array(finals), np.array(succ, dtype=bool)) if cache.success_known else None,
        "hop_mae": float(np.mean(hops)) if hops else None,
        "cameras_present": cameras_present or cfg.cameras,
        "occlude": occlude or {},
        "per_episode": per_episode,
    }
    if fusion:
        keys = ("stage", "incremental", "forward", "backward", "fused")
        vocs = [r["fusion_voc_pos"] for r in per_episode if r.get("fusion_voc_pos")]
        result["fusion"] = {k: {"voc_pos": float(np.mean([v[k] for v in vocs])) if vocs else None,
                                "mae_vs_labels": float(np.mean([r["fusion_mae"][k] for r in per_episode]))}
                            for k in keys}
    if out_json:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        Path(out_json).write_text(json.dumps(result, indent=2))
    return result


def score_episode(model: ProcessRewardModel, cache: FrameCache, ep, view_mask: np.ndarray | None,
                  occlude: dict[str, float] | None, fusion: bool, rng: np.random.Generator):
    """One episode's record (final progress, VOC+/- on a success, stage accuracy, hop MAE, fusion),
    its prediction, the frames scored and the per-frame stage hits."""
    cfg = model.config
    frames = cache.episode_frames(ep)
    if occlude:
        frames = occluded(frames, cfg.cameras, occlude)
    state = cache.episode_state(ep)
    pred = predict_episode(model, frames, view_mask=view_mask, state=state)
    rec = {"episode_index": ep.index, "success": ep.success, "quality": ep.quality,
           "final_progress": float(pred.progress[-3:].mean())}
    if fusion:
        fp = fused_progress(model, pred)
        rec["fusion_voc_pos"] = {k: _spearman(v) for k, v in fp.items()} if ep.success else None
        rec["fusion_mae"] = {k: float(np.abs(v - ep.progress).mean()) for k, v in fp.items()}
    if ep.success:
        rec["voc_pos"] = _spearman(pred.progress)
        rev = predict_episode(model, frames[::-1].copy(), view_mask=view_mask,
                              state=None if state is None else state[::-1].copy())
        rec["voc_neg"] = _spearman(rev.progress)
    hits = np.zeros(0, dtype=bool)
    if cache.has_annotations and cfg.stage_head:
        hits = pred.stage_probs.argmax(-1) == ep.stage
        rec["stage_accuracy"] = float(hits.mean())
    rec["hop_mae"] = hop_mae(model, pred, ep.progress, rng)
    return rec, pred, frames, hits


def occluded(frames: np.ndarray, cameras: list[str], occlude: dict[str, float]) -> np.ndarray:
    """Black out a centred square covering ``fraction`` of each named view's area (a held-out
    perturbation: a person or object blocking that camera)."""
    out = frames.copy()
    h, w = frames.shape[2:4]
    for cam, frac in occlude.items():
        if cam not in cameras:
            raise ValueError(f"occlude: camera {cam!r} is not one of the model's {cameras}")
        side_h, side_w = int(round(h * np.sqrt(frac))), int(round(w * np.sqrt(frac)))
        y0, x0 = (h - side_h) // 2, (w - side_w) // 2
        out[:, cameras.index(cam), y0:y0 + side_h, x0:x0 + side_w] = 0
    return out


def plot_episode(path: Path, pred: EpisodePrediction, ep, stage_names: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    t = np.arange(len(pred.progress))
    a1.plot(t, ep.progress, "k--", lw=1.2, label="label (annotations)")
    a1.plot(t, pred.progress, "C0", lw=1.8, label="predicted Phi")
    a1.plot(t, pred.success_prob, "C2", lw=0.8, alpha=0.7, label="success prob")
    a1.set_ylim(-0.02, 1.05)
    a1.set_ylabel("progress")
    a1.legend(loc="upper left", fontsize=7)
    a1.set_title(title, fontsize=9)
    a2.stackplot(t, pred.stage_probs.T, labels=stage_names, alpha=0.85)
    a2.plot(t, (ep.stage + 0.5) / len(stage_names), "k.", ms=2, label="label stage")
    a2.set_ylim(0, 1)
    a2.set_ylabel("stage probs")
    a2.set_xlabel("frame")
    a2.legend(loc="upper left", fontsize=6, ncol=len(stage_names) + 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_progress_video(path: Path, frames: np.ndarray, pred: EpisodePrediction, stage_names: list[str],
                         fps: int, scale: int = 3) -> None:
    """The views side by side with the predicted progress bar and stage drawn over them."""
    def draw(t: int) -> np.ndarray:
        p = float(pred.progress[t])
        stage = stage_names[int(pred.stage_probs[t].argmax())]
        return progress_frame(np.concatenate(list(frames[t]), axis=1), p, f"{p:.2f} {stage}", scale)

    write_mp4(path, (draw(t) for t in range(len(frames))), fps)


def annotate_progress(run: str | Path, dataset: str | Path, out: str | Path | None = None,
                      progress_bar: bool = True, camera_map: dict[str, str] | None = None) -> Path:
    """Write ``sarm_progress.parquet`` (index, episode_index, frame_index, progress_sparse) for every
    frame, in LeRobot's layout, so LeRobot's RA-BC (``RABCWeights``) can consume our model."""
    import pandas as pd

    model = ProcessRewardModel.load(run)
    cache = model_frame_cache(model.config, dataset, camera_map, progress=progress_bar)
    rows = []
    for ep in tqdm(cache.episodes, desc="annotate-progress", disable=not progress_bar):
        pred = predict_episode(model, cache.episode_frames(ep), state=cache.episode_state(ep))
        if not np.all(np.isfinite(pred.progress)):
            raise FloatingPointError(f"episode {ep.index}: the model produced non-finite progress")
        rows.append(pd.DataFrame({"index": np.arange(ep.start, ep.start + ep.length, dtype=np.int64),
                                  "episode_index": np.full(ep.length, ep.index, dtype=np.int64),
                                  "frame_index": np.arange(ep.length, dtype=np.int64),
                                  "progress_sparse": pred.progress.astype(np.float32)}))
    out = Path(out) if out else Path(dataset) / "sarm_progress.parquet"
    tmp = out.with_suffix(".parquet.tmp")
    pd.concat(rows).to_parquet(tmp, index=False)
    tmp.replace(out)
    return out
