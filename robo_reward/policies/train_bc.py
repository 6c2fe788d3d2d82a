"""``robo-reward train-bc``: behaviour cloning of chunk policies, optionally reward-aligned (RA-BC).

Weights. With ``r_i = phi(o_{t+D}) - phi(o_t)`` the progress made over the policy's chunk horizon
D (the future frame is clamped to the episode's last frame), ``mu``/``sigma`` the mean and std of
r over the dataset (as LeRobot's ``RABCWeights``: ``mu = max(mean, 0)``, ``sigma = max(std, eps)``):

- ``w = 1`` if ``r > kappa``;
- ``w = clip((r - (mu - 2 sigma)) / (4 sigma + eps), 0, 1)`` if ``0 <= r <= kappa``;
- ``w = 0`` if ``r < 0``;

renormalised per batch to sum to the batch size. Phi comes from ``sarm_progress.parquet``
(``annotate-progress``), straight from a reward model, or from the sim's ground truth (oracle).

Policies. An MLP on the low-dimensional state, or a small CNN on one or more camera views plus
proprioception; both predict a chunk of D ee_delta actions (action chunking) and execute the
first ``n_action_steps`` of each chunk.
"""


from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from robo_reward.data.frames import load_frame_cache, random_shift
from robo_reward.data.lerobot_io import DatasetError, load_episode_meta
from robo_reward.data.table import FrameTable, load_frame_table, read_progress_parquet
from robo_reward.policies.chunk import ChunkPolicy, save_bc_policy
from robo_reward.policies.features import state_features
from robo_reward.policies.rabc import delta_stats, normalize_batch, progress_deltas, rabc_weights
from robo_reward.reward.inference import dataset_progress
from robo_reward.utils import Choice, NameList, WandbMode, as_enum, init_wandb


class PolicyObs(Choice):
    """What a BC policy reads: the low-dimensional state (sim), or cameras plus proprioception."""

    STATE = "state"
    IMAGES = "images"


@dataclass
class TrainBCConfig:
    dataset: Path = Path("datasets/so101_pick_place")
    """LeRobot dataset written by `robo-reward collect` (ee_delta actions)."""
    out: Path = Path("outputs/bc/run")
    """Run directory (policy.safetensors + policy.json + train_log.json)."""
    task: str = ""
    """Sim task (default: inferred from the dataset's instruction)."""
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    chunk: int = 10
    """Action chunk size D; also the horizon of the RA-BC progress delta."""
    n_action_steps: int = 5
    """Actions executed from each predicted chunk before predicting again."""
    obs: PolicyObs = PolicyObs.STATE
    """state (MLP on the low-dimensional state) or images (CNN on --cameras plus proprioception)."""
    cameras: NameList = field(default_factory=lambda: NameList(["front", "wrist"]))
    """Views an images policy reads."""
    hidden: str = "256,256"
    rabc: bool = False
    """Weight samples by reward-aligned progress (needs --progress, --reward-model or --oracle)."""
    progress: Path | None = None
    """sarm_progress.parquet from annotate-progress (default: <dataset>/sarm_progress.parquet)."""
    reward_model: Path | None = None
    """Compute progress straight from this train-reward run instead of a parquet."""
    oracle: bool = False
    """Use the sim's ground-truth progress as phi (separates the reward model's quality from the method)."""
    kappa: float = 0.01
    """Progress gain over the chunk above which a sample gets full weight."""
    min_final_progress: float | None = None
    """Drop whole episodes whose final progress is below this."""
    frame_weights: bool = True
    """With --rabc: weight frames by progress gain. False keeps only the episode filter
    (--min-final-progress) with uniform weights: 'filtered BC', a baseline."""
    add_successes: NameList = field(default_factory=NameList)
    """Recordings (e.g. `deploy --record` rollouts) whose successful episodes join the training data:
    Filtered BC (state policies)."""
    seed: int = 0
    wandb: WandbMode = WandbMode.OFFLINE
    """offline (the default), online or disabled (true/false: offline/disabled)."""
    progress_bar: bool = True

    def __post_init__(self) -> None:
        self.obs = as_enum(PolicyObs, self.obs, "--obs")
        self.wandb = as_enum(WandbMode, self.wandb, "--wandb")
        self.cameras = NameList.parse(self.cameras)
        self.add_successes = NameList.parse(self.add_successes)
        if self.add_successes and (self.obs == "images" or self.rabc):
            raise ValueError("--add-successes: Filtered BC is for plain BC of a state policy; drop --obs=images/--rabc")
        if self.kappa < 0:
            raise ValueError(f"--kappa: {self.kappa}; expected >= 0")
        if self.chunk < 1 or not (1 <= self.n_action_steps <= self.chunk):
            raise ValueError(f"--chunk/--n-action-steps: {self.chunk}/{self.n_action_steps}; expected "
                             "chunk >= 1 and 1 <= n_action_steps <= chunk")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"--steps/--batch-size: {self.steps}/{self.batch_size}; expected >= 1")
        if (self.oracle or self.reward_model is not None) and not self.rabc:
            self.rabc = True

    @property
    def hidden_sizes(self) -> list[int]:
        return [int(x) for x in self.hidden.split(",") if x.strip()]


def sample_weights(cfg: TrainBCConfig, table: FrameTable) -> tuple[np.ndarray, dict[str, float]]:
    """Per-frame RA-BC weights (1 everywhere for plain BC) and the statistics to log."""
    n = len(table.index)
    stats: dict[str, float] = {}
    keep = np.ones(n, dtype=bool)
    phi = None
    if cfg.rabc:
        if cfg.oracle:
            if table.gt_progress is None:
                raise DatasetError(f"{table.root}: --oracle needs the gt.progress column (a sim dataset)")
            phi = table.gt_progress.astype(np.float64)
        elif cfg.reward_model is not None:
            phi = dataset_progress(cfg.reward_model, table.root, cfg.progress_bar)
        else:
            phi = read_progress_parquet(cfg.progress or table.root / "sarm_progress.parquet", table)
    if phi is not None and cfg.min_final_progress is not None:
        for e in table.episodes:
            m = table.episode_index == e
            if phi[m][-1] < cfg.min_final_progress:
                keep[m] = False
        stats["episodes_dropped"] = int(len(table.episodes) - len(np.unique(table.episode_index[keep])))
    if phi is None:
        return keep.astype(np.float32), {"mean_weight": float(keep.mean())}
    deltas = progress_deltas(phi, table.episode_index, cfg.chunk)
    ds = delta_stats(deltas)
    w = (rabc_weights(deltas, cfg.kappa, ds) if cfg.frame_weights else np.ones(n, np.float32)) * keep
    stats.update({"mean_weight": float(w.mean()), "delta_mean": ds.mean, "delta_std": ds.std,
                  "frac_zero_weight": float((w == 0).mean()), "frac_full_weight": float((w == 1).mean())})
    return w.astype(np.float32), stats


def chunk_targets(table: FrameTable, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, D, A) action chunks starting at each frame (padded with the episode's last action) and
    the (N, D) mask of real (unpadded) steps."""
    n = len(table.index)
    ep = table.episode_index
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
    ends = np.r_[starts[1:], n]
    last = np.repeat(ends - 1, ends - starts)
    lengths = (ends - starts).min()
    if chunk > lengths:
        raise ValueError(f"--chunk: {chunk} is longer than the shortest episode ({lengths} frames) of {table.root}")
    idx = np.arange(n)[:, None] + np.arange(chunk)[None, :]
    mask = idx <= last[:, None]
    idx = np.minimum(idx, last[:, None])
    return table.action[idx], mask.astype(np.float32)


def weighted_chunk_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Masked MSE per sample, averaged with batch-renormalised weights (None = plain BC)."""
    per = ((pred - target) ** 2).mean(-1)  # (B, D)
    per = (per * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
    if weights is None:
        return per.mean()
    return (normalize_batch(weights) * per).mean()


def add_successful_episodes(table: FrameTable, root: Path) -> FrameTable:
    """``table`` with the successful episodes of the recording at ``root`` appended (their episode
    and frame indices moved past the table's own)."""
    more = load_frame_table(root, table.task)
    metas = load_episode_meta(root)
    keep = np.isin(more.episode_index, [e for e, m in metas.items() if m.success])

    def cat(a, b):
        return None if a is None or b is None else np.concatenate([a, b[keep]])

    return FrameTable(table.root, np.concatenate([table.index, more.index[keep] + table.index.max() + 1]),
                      np.concatenate([table.episode_index, more.episode_index[keep] + table.episode_index.max() + 1]),
                      cat(table.frame_index, more.frame_index), cat(table.state, more.state),
                      cat(table.env_state, more.env_state), cat(table.action, more.action),
                      cat(table.gt_progress, more.gt_progress), table.task, cat(table.tcp, more.tcp))


def train_bc(cfg: TrainBCConfig) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    table = load_frame_table(cfg.dataset, cfg.task)
    for extra in cfg.add_successes:
        table = add_successful_episodes(table, Path(extra))
    states = state_features(table, cfg.obs)
    targets, mask = chunk_targets(table, cfg.chunk)
    weights, wstats = sample_weights(cfg, table)
    cameras = list(cfg.cameras) if cfg.obs == "images" else []
    images = None
    if cameras:
        cache = load_frame_cache(cfg.dataset, cameras, 64, labels="linear", progress=cfg.progress_bar)
        images = np.concatenate([cache.episode_frames(ep) for ep in cache.episodes])  # (N, V, H, W, 3)
        if len(images) != len(states):
            raise DatasetError(f"{cfg.dataset}: {len(images)} decoded frames but {len(states)} table rows")
    valid = np.flatnonzero(weights > 0)
    if valid.size == 0:
        raise ValueError("every sample has weight 0 (kappa too high, or every episode dropped); nothing to learn")
    action_dim = int(table.action.shape[1])  # the dataset's action layout (4: SO-101 ee_delta, 5: with dyaw)
    policy = ChunkPolicy(cfg.obs, states.shape[1], action_dim, cfg.chunk, cfg.hidden_sizes, cameras)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    S, T, M, W = (torch.as_tensor(x) for x in (states, targets, mask, weights))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    wb = _wandb(cfg, out, wstats)
    log = []
    bar = tqdm(range(cfg.steps), desc=f"train-bc{' rabc' if cfg.rabc else ''}", disable=not cfg.progress_bar)
    for step in bar:
        # sample among frames with positive weight; the weights themselves scale the loss
        i = torch.as_tensor(rng.choice(valid, size=cfg.batch_size))
        img = None
        if images is not None:
            img = torch.as_tensor(images[i.numpy()]).permute(0, 1, 4, 2, 3).float() / 255.0
            img = random_shift(img[:, None], rng)[:, 0]  # the reward model's augmentation, T = 1
        pred = policy(S[i], img)
        loss = weighted_chunk_loss(pred, T[i], M[i], W[i] if cfg.rabc else None)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            log.append({"step": step, "loss": float(loss.detach())})
            bar.set_postfix(loss=f"{log[-1]['loss']:.4f}")
            if wb is not None:
                wb.log({"train/loss": log[-1]["loss"]}, step=step)
    save_bc_policy(policy, out, {"kind": "bc", "task": table.task, "obs": cfg.obs, "cameras": cameras,
                                 "chunk": cfg.chunk, "n_action_steps": cfg.n_action_steps,
                                 "hidden": cfg.hidden_sizes, "state_dim": int(states.shape[1]), "action_dim": action_dim,
                                 "rabc": cfg.rabc, "oracle": cfg.oracle})
    result = {"weights": wstats, "final_loss": log[-1]["loss"], "frames": len(states),
              "frames_used": int(valid.size), "config": {k: str(v) if isinstance(v, Path) else v
                                                         for k, v in asdict(cfg).items()}}
    (out / "train_log.json").write_text(json.dumps({**result, "log": log}, indent=2))
    if wb is not None:
        wb.finish()
    return result


def _wandb(cfg: TrainBCConfig, out: Path, stats: dict[str, float]):
    run = init_wandb(cfg.wandb, out, f"{out.name}-bc", {k: str(v) for k, v in asdict(cfg).items()})
    if run is not None:
        run.summary.update({f"rabc/{k}": v for k, v in stats.items()})
    return run
