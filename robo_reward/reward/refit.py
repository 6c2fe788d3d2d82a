"""Refit a reward model on a policy's own rollouts, labelled only by each episode's success flag
(what a real robot gives: an operator's key or a success detector; never the sim's ground truth).

The model's trunk and stage heads stay as trained on the demos. A small discriminator ``D`` on
the hidden state the heads read learns states of successful episodes (successful demos and
rollouts) against the states failed episodes **end** in (the last ``failure_tail`` of each failed
demo or rollout: where a policy parks, jams or gives up), with balanced batches, in the spirit of
DrS (Mu et al., ICLR 2024); the model's progress becomes ``progress_stage * sigmoid(D(h))``. A
state failures end in and successes do not pass through (a policy parked where the frozen model
reads 0.3) is scaled down; the states on the way, which failed episodes share with successful
ones, keep their progress. (Taking every frame of a failed episode as a negative scaled down the
real progress a failed episode makes on its way: on pick_place, Phi's correlation with the true
progress along the policy's rollouts fell from 0.96 to 0.58 after the first refit.) Phi stays a
function of the model's window, so PBRS on it stays policy-invariant.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from robo_reward.reward.modeling import ProcessRewardModel


@dataclass
class LabelledFeatures:
    """Hidden states of one model along episodes (each (T, D)) and each episode's success flag."""

    hidden: list[np.ndarray] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)

    def add(self, h: np.ndarray, success: bool) -> None:
        if len(h):
            self.hidden.append(np.asarray(h, np.float32))
            self.success.append(bool(success))

    def split(self, failure_tail: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
        """(states of successful episodes, the last ``failure_tail`` of each failed episode's states)."""
        d = self.hidden[0].shape[1] if self.hidden else 0
        pos = [h for h, s in zip(self.hidden, self.success, strict=True) if s]
        neg = [h[-max(1, int(np.ceil(failure_tail * len(h)))):]
               for h, s in zip(self.hidden, self.success, strict=True) if not s]
        return (np.concatenate(pos) if pos else np.zeros((0, d), np.float32),
                np.concatenate(neg) if neg else np.zeros((0, d), np.float32))

    def __len__(self) -> int:
        return len(self.hidden)


def fit_refit_head(model: ProcessRewardModel, data: LabelledFeatures, steps: int = 300, lr: float = 1e-3,
                   batch: int = 256, seed: int = 0, failure_tail: float = 0.25) -> dict[str, Any]:
    """Train the model's success discriminator on ``data`` (added on the first refit); returns what
    it learned (loss, mean sigmoid on success and failure states, counts)."""
    if not 0 < failure_tail <= 1:
        raise ValueError(f"--failure-tail: {failure_tail}; expected a share of a failed episode in (0, 1]")
    pos, neg = data.split(failure_tail)
    stats: dict[str, Any] = {"success_frames": len(pos), "failure_frames": len(neg),
                             "episodes": len(data), "failed_episodes": int(sum(not s for s in data.success))}
    if len(pos) == 0 or len(neg) == 0:
        stats["skipped"] = "needs both successful and failed episodes"
        return stats
    model.add_refit_head()
    head = model.refit
    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    p_t, n_t = torch.as_tensor(pos), torch.as_tensor(neg)
    half = batch // 2
    target = torch.cat([torch.ones(half), torch.zeros(half)])
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        x = torch.cat([p_t[torch.randint(len(p_t), (half,), generator=g)],
                       n_t[torch.randint(len(n_t), (half,), generator=g)]])
        loss = F.binary_cross_entropy_with_logits(head(x).squeeze(-1), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    with torch.no_grad():
        stats.update(loss=float(loss), sigmoid_success=float(torch.sigmoid(head(p_t)).mean()),
                     sigmoid_failure=float(torch.sigmoid(head(n_t)).mean()))
    return stats


def dataset_features(model: ProcessRewardModel, root: str | Path, episodes: list[int] | None = None,
                     progress_bar: bool = False) -> tuple[LabelledFeatures, list[np.ndarray]]:
    """Hidden states and progress of ``model`` along every episode (or ``episodes``) of a dataset,
    with the episodes' success flags (``meta/episodes``' ``success``)."""
    from robo_reward.reward.inference import model_frame_cache, predict_episode

    cache = model_frame_cache(model.config, root, progress=progress_bar)
    feats, progress = LabelledFeatures(), []
    for ep in cache.episodes:
        if (episodes is not None and ep.index not in episodes) or ep.quality == "rollout_unlabelled":
            continue  # an episode whose success nobody knows teaches the discriminator nothing
        pred = predict_episode(model, cache.episode_frames(ep), state=cache.episode_state(ep))
        feats.add(pred.hidden, ep.success)
        progress.append(pred.progress)
    return feats, progress


def demo_features(model: ProcessRewardModel, run: str | Path, progress_bar: bool = False) -> LabelledFeatures:
    """The model's training demos (from its ``split.json``), as labelled hidden states."""
    split = Path(run) / "split.json"
    if not split.is_file():
        raise FileNotFoundError(f"{split}: missing; expected a run written by `robo-reward train-reward`")
    s = json.loads(split.read_text())
    return dataset_features(model, s["dataset"], list(s["train"]), progress_bar)[0]


def refit_from_recordings(run: str | Path, rollouts: str | Path, out: str | Path, steps: int = 300,
                          seed: int = 0, progress_bar: bool = True, failure_tail: float = 0.25) -> dict[str, Any]:
    """``robo-reward refit-reward``: refit ``run`` on the recorded episodes of ``rollouts`` (each with
    its success flag, as ``deploy --record`` writes them) and the model's own demos; the refit
    model is written to ``out`` (a copy of the run with the new weights). Returns a report with
    the rollouts' mean final progress before and after."""
    run, out = Path(run), Path(out)
    if out.resolve() == run.resolve():
        raise ValueError(f"--out={out}: the same directory as --model; write the refit model to a new one")
    model = ProcessRewardModel.load(run)
    roll, before = dataset_features(model, rollouts, progress_bar=progress_bar)
    if not len(roll):
        raise ValueError(f"--rollouts={rollouts}: no episodes")
    data = demo_features(model, run, progress_bar)
    for h, s in zip(roll.hidden, roll.success, strict=True):
        data.add(h, s)
    stats = fit_refit_head(model, data, steps=steps, seed=seed, failure_tail=failure_tail)
    if "skipped" in stats:
        raise ValueError(f"--rollouts={rollouts}: {stats['skipped']} (demos and rollouts together have "
                         f"{stats['episodes'] - stats['failed_episodes']} successful and {stats['failed_episodes']} "
                         "failed); record episodes with their success flag")
    after = dataset_features(model, rollouts)[1]
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("checkpoint*", "wandb", "eval"))
    model.save(out)

    def final(ps, want):
        v = [float(p[-1]) for p, s in zip(ps, roll.success, strict=True) if s == want]
        return float(np.mean(v)) if v else None

    report = {"model": str(run), "rollouts": str(rollouts), "out": str(out), **stats,
              "rollout_episodes": len(roll), "rollout_successes": int(sum(roll.success)),
              "final_progress_failed_before": final(before, False), "final_progress_failed_after": final(after, False),
              "final_progress_success_before": final(before, True), "final_progress_success_after": final(after, True)}
    (out / "refit.json").write_text(json.dumps(report, indent=2))
    return report
