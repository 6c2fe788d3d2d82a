"""Reward-aligned behaviour cloning (RA-BC, SARM paper Eq. 8-9) and the BC policies it trains.

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
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from robo_reward.data.lerobot_io import DatasetError

EPS = 1e-6
BC_WEIGHTS = "policy.safetensors"
POLICY_META = "policy.json"


# ---- weights ---------------------------------------------------------------------------------
def progress_deltas(progress: np.ndarray, episode_index: np.ndarray, chunk: int) -> np.ndarray:
    """r_t = phi[t + D] - phi[t] within each episode, the future frame clamped to the episode's
    last frame. Rows must be in dataset order (episodes contiguous)."""
    progress = np.asarray(progress, dtype=np.float64)
    ep = np.asarray(episode_index)
    n = len(progress)
    if chunk < 1:
        raise ValueError(f"chunk: {chunk}; expected >= 1")
    starts = np.flatnonzero(np.r_[True, ep[1:] != ep[:-1]])
    ends = np.r_[starts[1:], n]
    last = np.repeat(ends - 1, ends - starts)
    future = np.minimum(np.arange(n) + chunk, last)
    return progress[future] - progress


@dataclass
class DeltaStats:
    mean: float
    std: float


def delta_stats(deltas: np.ndarray, eps: float = EPS) -> DeltaStats:
    d = np.asarray(deltas, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return DeltaStats(0.0, eps)
    return DeltaStats(max(float(d.mean()), 0.0), max(float(d.std()), eps))


def rabc_weights(deltas: np.ndarray, kappa: float, stats: DeltaStats, eps: float = EPS,
                 fallback: float = 1.0) -> np.ndarray:
    """Per-sample RA-BC weight (before batch renormalisation). NaN deltas get ``fallback``."""
    if kappa < 0:
        raise ValueError(f"kappa: {kappa}; expected >= 0")
    r = np.asarray(deltas, dtype=np.float64)
    soft = np.clip((r - (stats.mean - 2 * stats.std)) / (4 * stats.std + eps), 0.0, 1.0)
    w = np.zeros_like(r)
    w[r > kappa] = 1.0
    mid = (r >= 0) & (r <= kappa)
    w[mid] = soft[mid]
    w[~np.isfinite(r)] = fallback
    return w.astype(np.float32)


def normalize_batch(w: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Scale a batch's weights to sum to the batch size (LeRobot's convention)."""
    return w * w.shape[0] / (w.sum() + eps)


@dataclass
class FrameTable:
    """The per-frame columns BC needs, in dataset order."""

    root: Path
    index: np.ndarray
    episode_index: np.ndarray
    frame_index: np.ndarray
    state: np.ndarray  # observation.state (joints, LeRobot units)
    env_state: np.ndarray
    action: np.ndarray  # action.ee_delta
    gt_progress: np.ndarray | None
    task: str

    @property
    def episodes(self) -> np.ndarray:
        return np.unique(self.episode_index)


def task_of_dataset(root: Path) -> str:
    """The sim task whose instruction the dataset records."""
    import sim.tasks  # noqa: F401
    from sim.tasks.registry import TASKS

    tasks = pd.read_parquet(root / "meta" / "tasks.parquet")
    names = list(tasks.index) if "task" not in tasks.columns else list(tasks["task"])
    for name, cls in TASKS.items():
        if cls.instruction in names:
            return name
    raise DatasetError(f"{root}/meta/tasks.parquet: instruction(s) {names} match no sim task "
                       f"(known: {sorted(TASKS)}); pass --task")


def load_frame_table(root: str | Path, task: str = "") -> FrameTable:
    root = Path(root)
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(f"{root}/data: no parquet files; expected a LeRobot dataset with episodes")
    df = pd.concat([pd.read_parquet(f) for f in files]).sort_values("index").reset_index(drop=True)
    need = ["observation.state", "observation.environment_state", "action.ee_delta"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DatasetError(f"{root}: column(s) {missing} missing; BC needs a dataset written by `robo-reward collect`")
    if len(df) == 0:
        raise DatasetError(f"{root}: the dataset is empty (0 frames)")
    gt = np.stack(df["gt.progress"].to_numpy()).reshape(-1) if "gt.progress" in df.columns else None
    return FrameTable(root, df["index"].to_numpy(np.int64), df["episode_index"].to_numpy(np.int64),
                      df["frame_index"].to_numpy(np.int64), np.stack(df["observation.state"].to_numpy()),
                      np.stack(df["observation.environment_state"].to_numpy()),
                      np.stack(df["action.ee_delta"].to_numpy()).astype(np.float32), gt,
                      task or task_of_dataset(root))


def read_progress_parquet(path: str | Path, table: FrameTable, column: str = "progress_sparse") -> np.ndarray:
    """Progress per dataset frame from ``sarm_progress.parquet``, checked against the dataset."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no progress file; write one with `robo-reward annotate-progress`")
    df = pd.read_parquet(path)
    for col in ("index", "episode_index", column):
        if col not in df.columns:
            raise DatasetError(f"{path}: column {col!r} missing; has {list(df.columns)}")
    got_eps, want_eps = df["episode_index"].nunique(), len(table.episodes)
    if got_eps != want_eps or len(df) != len(table.index):
        raise DatasetError(f"{path}: {got_eps} episodes / {len(df)} frames, but the dataset {table.root} has "
                           f"{want_eps} episodes / {len(table.index)} frames; re-run annotate-progress on it")
    df = df.set_index("index")
    missing = np.setdiff1d(table.index, df.index.to_numpy())
    if missing.size:
        raise DatasetError(f"{path}: frame index {int(missing[0])} of the dataset is missing from the file")
    eps_file = df.loc[table.index, "episode_index"].to_numpy()
    if not np.array_equal(eps_file, table.episode_index):
        bad = int(np.flatnonzero(eps_file != table.episode_index)[0])
        raise DatasetError(f"{path}: frame {int(table.index[bad])} belongs to episode {int(eps_file[bad])} in the "
                           f"file but to episode {int(table.episode_index[bad])} in the dataset")
    p = df.loc[table.index, column].to_numpy(np.float64)
    return p


def model_progress(run: str | Path, root: str | Path, progress_bar: bool = False) -> np.ndarray:
    """Progress of every dataset frame straight from a reward model, in dataset order. ``run`` may
    list several runs, comma-separated: their mean (an ensemble)."""
    from robo_reward.eval_reward import predict_episode
    from robo_reward.models.data import load_frame_cache
    from robo_reward.models.modeling import ProcessRewardModel

    models = [ProcessRewardModel.load(r.strip()) for r in str(run).split(",") if r.strip()]
    cfg = models[0].config
    cache = load_frame_cache(root, cfg.cameras, cfg.image_size, progress=progress_bar,
                             state=any(m.config.use_state for m in models))
    return np.concatenate([np.mean([predict_episode(m, cache.episode_frames(ep), state=cache.episode_state(ep)).progress
                                    for m in models], axis=0) for ep in cache.episodes])


def state_features(table: FrameTable, obs: str = "state") -> np.ndarray:
    """Per-frame policy input: the low-dimensional state of online RL (``state``), or the
    proprioception an image policy gets (``images``). The TCP comes from forward kinematics."""
    from robo_reward.rl import tcp_from_joints
    from robo_reward.shaping import policy_state, proprio_state
    from sim.tasks import make_env

    env = make_env(table.task, cameras=())
    if obs == "state" and table.env_state.shape[1] != env.unwrapped.env_state_dim:
        raise DatasetError(f"{table.root}: observation.environment_state has {table.env_state.shape[1]} values; "
                           f"task {table.task!r} expects {env.unwrapped.env_state_dim} (a dataset of another task?)")
    tcp = tcp_from_joints(env, table.state)
    if obs == "state":
        return np.stack([policy_state(a, t, e) for a, t, e in zip(table.state, tcp, table.env_state, strict=True)])
    return proprio_state(table.state, tcp)


# ---- policies --------------------------------------------------------------------------------
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


# ---- training --------------------------------------------------------------------------------
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
    obs: str = "state"
    """state (MLP on the low-dimensional state) or images (CNN on --cameras plus proprioception)."""
    cameras: str = "front,wrist"
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
    seed: int = 0
    wandb: bool = True
    """Log to wandb in offline mode."""
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.obs not in ("state", "images"):
            raise ValueError(f"--obs: {self.obs!r}; expected state or images")
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
            phi = model_progress(cfg.reward_model, table.root, cfg.progress_bar)
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


def train_bc(cfg: TrainBCConfig) -> dict[str, Any]:
    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    table = load_frame_table(cfg.dataset, cfg.task)
    states = state_features(table, cfg.obs)
    targets, mask = chunk_targets(table, cfg.chunk)
    weights, wstats = sample_weights(cfg, table)
    cameras = [c for c in cfg.cameras.split(",") if c] if cfg.obs == "images" else []
    images = None
    if cameras:
        from robo_reward.models.data import load_frame_cache

        cache = load_frame_cache(cfg.dataset, cameras, 64, labels="linear", progress=cfg.progress_bar)
        images = np.concatenate([cache.episode_frames(ep) for ep in cache.episodes])  # (N, V, H, W, 3)
        if len(images) != len(states):
            raise DatasetError(f"{cfg.dataset}: {len(images)} decoded frames but {len(states)} table rows")
    valid = np.flatnonzero(weights > 0)
    if valid.size == 0:
        raise ValueError("every sample has weight 0 (kappa too high, or every episode dropped); nothing to learn")
    policy = ChunkPolicy(cfg.obs, states.shape[1], 4, cfg.chunk, cfg.hidden_sizes, cameras)
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
            img = _random_shift(img, rng)
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
                                 "hidden": cfg.hidden_sizes, "state_dim": int(states.shape[1]),
                                 "rabc": cfg.rabc, "oracle": cfg.oracle})
    result = {"weights": wstats, "final_loss": log[-1]["loss"], "frames": len(states),
              "frames_used": int(valid.size), "config": {k: str(v) if isinstance(v, Path) else v
                                                         for k, v in asdict(cfg).items()}}
    (out / "train_log.json").write_text(json.dumps({**result, "log": log}, indent=2))
    if wb is not None:
        wb.finish()
    return result


def _random_shift(x: torch.Tensor, rng: np.random.Generator, pad: int = 4) -> torch.Tensor:
    b, v, c, h, w = x.shape
    p = F.pad(x.flatten(0, 1), (pad,) * 4, mode="replicate")
    dx, dy = rng.integers(0, 2 * pad + 1, size=2)
    return p[..., dy:dy + h, dx:dx + w].view(b, v, c, h, w)


def _wandb(cfg: TrainBCConfig, out: Path, stats: dict[str, float]):
    if not cfg.wandb:
        return None
    try:
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(project="robo-reward", dir=str(out), name=out.name, id=f"{out.name}-bc", resume="allow",
                         config={k: str(v) for k, v in asdict(cfg).items()})
        run.summary.update({f"rabc/{k}": v for k, v in stats.items()})
        return run
    except Exception as e:  # noqa: BLE001  (logging must never break training)
        print(f"wandb disabled: {e}")
        return None


def save_bc_policy(policy: ChunkPolicy, out: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    tmp = out / (BC_WEIGHTS + ".tmp")
    save_file({k: v.contiguous() for k, v in policy.state_dict().items()}, str(tmp))
    os.replace(tmp, out / BC_WEIGHTS)
    tmpm = out / (POLICY_META + ".tmp")
    tmpm.write_text(json.dumps(meta, indent=2))
    os.replace(tmpm, out / POLICY_META)


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
        self.policy = ChunkPolicy(m["obs"], m["state_dim"], 4, m["chunk"], m["hidden"], m["cameras"])
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


def load_policy(run: str | Path):
    """A BC or RL policy run directory -> an object with ``task``, ``cameras``, ``reset()``, ``act()``."""
    run = Path(run)
    meta_path = run / POLICY_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing; expected a run written by `robo-reward train-bc` or `rl`")
    kind = json.loads(meta_path.read_text()).get("kind")
    if kind == "bc":
        return BCPolicy(run)
    if kind == "sb3":
        from robo_reward.rl import SB3Policy

        return SB3Policy(run)
    raise ValueError(f"{meta_path}: kind {kind!r}; expected 'bc' or 'sb3'")
