"""Reward-model losses: stage CE, tau and progress regression, contrastive stage alignment
(InfoNCE against stage prototypes + a triplet term against the adjacent, near-miss stages),
the hop regression and the success BCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robo_reward.reward.config import RewardModelConfig
from robo_reward.reward.modeling import ProcessRewardModel


def stage_alignment_loss(sims: torch.Tensor, stage: torch.Tensor, temperature: float,
                         margin: float) -> torch.Tensor:
    """sims (N, K): cosine similarity of each frame embedding to each stage prototype; stage (N,).

    InfoNCE pulls each frame to its stage's prototype against all others; the triplet term makes
    the adjacent stages (the easiest to confuse: 'lifted' vs 'carrying') hard negatives. Rewound
    frames are in the batch with their own (earlier) stage, so a frame's stage cannot be read
    off the direction of motion.
    """
    nce = F.cross_entropy(sims / temperature, stage)
    k = sims.shape[1]
    if k < 2:
        return nce
    pos = sims.gather(1, stage[:, None]).squeeze(1)
    trip = []
    for off in (-1, 1):
        adj = stage + off
        valid = (adj >= 0) & (adj < k)
        if valid.any():
            neg = sims[valid].gather(1, adj[valid][:, None]).squeeze(1)
            trip.append(F.relu(margin - (pos[valid] - neg)))
    return nce + (torch.cat(trip).mean() if trip else 0.0)


def reward_model_loss(model: ProcessRewardModel | torch.nn.Module, batch: dict[str, torch.Tensor],
                      cfg: RewardModelConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """``model`` may be wrapped (DDP): only its forward is called."""
    out = model(batch.get("frames"), batch["view_mask"], training_outputs=True, features=batch.get("features"),
                state=batch.get("state"))
    terms: dict[str, torch.Tensor] = {}
    stage = batch["stage"]
    terms["progress"] = F.mse_loss(out["progress_stage"], batch["progress"]) * 10.0
    if cfg.stage_head and cfg.num_stages > 1:
        terms["stage"] = F.cross_entropy(out["stage_logits"].flatten(0, 1), stage.flatten())
        terms["tau"] = F.mse_loss(out["tau"], batch["tau"]) * 5.0
    if cfg.contrastive_weight > 0 and cfg.num_stages > 1:
        terms["align"] = cfg.contrastive_weight * stage_alignment_loss(
            out["proto_sims"].flatten(0, 1), stage.flatten(), cfg.temperature, cfg.triplet_margin)
    if cfg.hop_weight > 0:
        pred = torch.cat([out["hop_window"], out["hop_pair"]])
        target = torch.cat([batch["hop_fwd"], batch["hop_bwd"], batch["hop_pair"]])
        terms["hop"] = cfg.hop_weight * F.mse_loss(pred, target) * 5.0
    if cfg.success_weight > 0:
        terms["success"] = cfg.success_weight * F.binary_cross_entropy_with_logits(out["success_logit"], batch["success"])
    total = sum(terms.values())
    return total, {k: float(v.detach()) for k, v in terms.items()}
