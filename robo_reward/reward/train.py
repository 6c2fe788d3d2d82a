"""train-reward: fit the process reward model on a LeRobot dataset.

The loop is explicit, top to bottom: decode the dataset once, split episodes (fixed and
recorded), then sample windows, step, log, checkpoint. Checkpoints are swapped in atomically
and a killed run resumes from the last one. It runs unchanged under ``accelerate launch``
(DDP): each process samples its own windows, the main one logs and saves.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robo_reward.data.frames import (
    FrameCache,
    Labels,
    WindowSampler,
    feature_cache,
    load_frame_cache,
    split_episodes,
)
from robo_reward.reward.config import RewardModelConfig
from robo_reward.reward.losses import reward_model_loss
from robo_reward.reward.modeling import ProcessRewardModel
from robo_reward.utils import NameList, WandbMode, as_enum, init_wandb

CKPT, CKPT_OLD, STATE, SPLIT = "checkpoint", "checkpoint.old", "train_state.pt", "split.json"


@dataclass
class TrainRewardConfig:
    dataset: Path = Path("datasets/so101_pick_place")
    """LeRobot dataset to train on."""
    out: Path = Path("outputs/reward/run")
    """Run directory: model, checkpoints, split, logs."""
    cameras: NameList = field(default_factory=NameList)
    """Cameras to train on, front,wrist or [front,wrist] (default: the model config's, else every camera of the
    dataset, sorted)."""
    steps: int = 2500
    """Optimizer steps."""
    batch_size: int = 16
    """Windows per step (per process under DDP)."""
    lr: float = 3e-4
    """AdamW learning rate (cosine decay)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    held_out: float = 0.2
    """Fraction of episodes held out for evaluation (fixed by --seed and recorded in split.json)."""
    seed: int = 0
    """Seed for the split, the sampler and the weights."""
    labels: Labels = Labels.AUTO
    """auto: SARM stages when annotated, else one stage; sparse: require annotations; linear: ignore them."""
    checkpoint_every: int = 250
    """Steps between checkpoints."""
    log_every: int = 50
    """Steps between log lines."""
    wandb: WandbMode = WandbMode.OFFLINE
    """offline (default, syncable later), online, or disabled."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""
    model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """Model configuration (see configs/reward/*.yaml)."""
    init: Path | None = None
    """A train-reward run to start from (fine-tune it on this dataset, e.g. a few demos of a new task with its
    own stages): its architecture and cameras are kept, --model.* is ignored."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"--steps/--batch_size: {self.steps}/{self.batch_size}; expected >= 1")
        if not (0.0 <= self.held_out < 1.0):
            raise ValueError(f"--held_out: {self.held_out}; expected in [0, 1)")
        self.labels = as_enum(Labels, self.labels, "--labels")
        self.cameras = NameList.parse(self.cameras)
        self.wandb = as_enum(WandbMode, self.wandb, "--wandb")


def _warmup_cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """100 warm-up steps, then cosine decay to 0 at ``steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))


def _save_checkpoint(out: Path, model: ProcessRewardModel, opt, sched, step: int, rng: np.random.Generator) -> None:
    """Write the new checkpoint beside the old one, then swap: a kill at any point leaves one
    complete checkpoint."""
    new = out / "checkpoint.new"
    shutil.rmtree(new, ignore_errors=True)
    model.save(new)
    torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}, new / STATE)
    if (out / CKPT).exists():
        shutil.rmtree(out / CKPT_OLD, ignore_errors=True)
        os.replace(out / CKPT, out / CKPT_OLD)
    os.replace(new, out / CKPT)
    shutil.rmtree(out / CKPT_OLD, ignore_errors=True)


def _latest_checkpoint(out: Path) -> Path | None:
    for name in (CKPT, CKPT_OLD):
        if (out / name / STATE).is_file():
            return out / name
    return None


def train_reward(cfg: TrainRewardConfig, progress: bool = True) -> Path:
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # progress_head (or the stage heads) sit unused in one of the two modes
    acc = Accelerator(cpu=not torch.cuda.is_available(),
                      kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    mcfg = cfg.model
    show = progress and acc.is_main_process
    init = None
    if cfg.init is not None:
        init = ProcessRewardModel.load(cfg.init)
        if cfg.model != RewardModelConfig():
            warnings.warn(f"--init={cfg.init}: its architecture is kept; the --model.* settings given are ignored",
                          UserWarning, stacklevel=2)
        if cfg.cameras and list(cfg.cameras) != list(init.config.cameras):
            raise ValueError(f"--cameras: {list(cfg.cameras)}, but the model at --init={cfg.init} reads "
                             f"{list(init.config.cameras)}; expected those (in that order) or no --cameras")
        mcfg = dataclasses.replace(init.config, refit_head=False)
    if cfg.cameras and init is None:
        mcfg = dataclasses.replace(mcfg, cameras=NameList(cfg.cameras))
    elif not mcfg.cameras:
        mcfg = dataclasses.replace(mcfg, cameras=NameList(dataset_cameras(cfg.dataset)))
        if show:
            print(f"train-reward: cameras {', '.join(mcfg.cameras)} (every camera of {cfg.dataset}; --cameras to "
                  "choose)")
    cache = load_frame_cache(cfg.dataset, mcfg.cameras, mcfg.image_size, cfg.labels, progress=show,
                             state=mcfg.use_state, resize=mcfg.resize)
    mcfg = dataclasses.replace(mcfg, stage_names=cache.stage_names, temporal_proportions=cache.proportions,
                               state_dim=cache.state.shape[1] if cache.state is not None else 0)
    train_eps, _ = resolve_split(cfg, cache, out, acc.is_main_process)
    pos = {e.index: i for i, e in enumerate(cache.episodes)}
    train_rows = [pos[i] for i in train_eps]
    rng = np.random.default_rng([cfg.seed, acc.process_index])
    model, opt, sched, start = build_or_resume(cfg, mcfg, cache, train_rows, out, rng, acc.is_main_process, init)
    feats = None
    if mcfg.cache_features:
        model.eval()
        feats = feature_cache(model, cache, out / f"features_{mcfg.encoder}_{mcfg.image_size}.npy", progress=show)
    sampler = WindowSampler(cache, train_rows, mcfg.window, mcfg.frame_gap, mcfg.rewind_prob,
                            mcfg.view_dropout, features=feats, pause_prob=mcfg.pause_prob)
    sampler.rng = rng
    model.train()
    model, opt = acc.prepare(model, opt)
    raw = acc.unwrap_model(model)
    run = None
    if acc.is_main_process and start < cfg.steps:
        run = init_wandb(cfg.wandb, out, f"{out.name}-{hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:8]}",
                         draccus_dump(cfg))
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="train-reward", disable=not show)
    t0, seen = time.time(), 0
    for step in bar:
        loss, terms = train_step(acc, model, opt, sched, sampler, cfg, mcfg, step, out)
        seen += cfg.batch_size
        if acc.is_main_process and ((step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps):
            rate = seen / (time.time() - t0)
            bar.set_postfix(loss=f"{loss:.3f}", win_s=f"{rate:.0f}")
            if run is not None:
                run.log({"loss": loss, **{f"loss/{k}": v for k, v in terms.items()},
                         "lr": sched.get_last_lr()[0], "windows_per_s": rate}, step=step + 1)
        if acc.is_main_process and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            _save_checkpoint(out, raw, opt, sched, step + 1, rng)
        acc.wait_for_everyone()
    if acc.is_main_process:
        raw.eval()
        set_goal_anchor(raw, cache, train_rows)
        raw.save(out)
        if run is not None:
            run.finish()
    acc.wait_for_everyone()
    return out


def train_step(acc, model, opt, sched, sampler: WindowSampler, cfg: TrainRewardConfig, mcfg: RewardModelConfig,
               step: int, out: Path) -> tuple[float, dict[str, float]]:
    """One optimiser step on a sampled batch; returns (loss, its terms). A non-finite loss stops
    the run before it can corrupt the checkpoint."""
    batch = {k: v.to(acc.device) for k, v in sampler.sample(cfg.batch_size).items()}
    loss, terms = reward_model_loss(model, batch, mcfg)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"step {step}: loss is {float(loss)} ({terms}); stopping before it "
                                 f"corrupts the checkpoint in {out / CKPT}")
    opt.zero_grad(set_to_none=True)
    acc.backward(loss)
    acc.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return float(loss.detach()), terms


def dataset_cameras(root: str | Path) -> list[str]:
    """The dataset's camera names (its ``observation.images.*`` features), sorted."""
    from robo_reward.data.lerobot_io import open_metadata

    cams = sorted(k.removeprefix("observation.images.") for k in open_metadata(root).video_keys)
    if not cams:
        raise ValueError(f"{root}/meta/info.json: no observation.images.* video features; the reward model reads "
                         "camera views")
    return cams


def resolve_split(cfg: TrainRewardConfig, cache: FrameCache, out: Path, is_main: bool) -> tuple[list[int], list[int]]:
    """(train, held-out) episode indices: the run's saved split, or a new seeded one written to it."""
    split_path = out / SPLIT
    if split_path.exists():
        split = json.loads(split_path.read_text())
        if split["dataset"] != str(Path(cfg.dataset).resolve()):
            raise ValueError(f"{split_path}: this run was trained on {split['dataset']}, not {cfg.dataset}; "
                             "use another --out")
        return split["train"], split["held_out"]
    success = [e.success for e in cache.episodes]
    tr, ho = split_episodes(len(cache.episodes), cfg.held_out, cfg.seed, success)
    if not ho:
        warnings.warn(f"{cfg.dataset}: {len(cache.episodes)} episode(s), so none is held out; eval-reward on this "
                      "dataset will refuse, so evaluate on another one", UserWarning, stacklevel=2)
    elif len({success[i] for i in ho}) < 2:
        kind = "failures" if success[ho[0]] else "successes"
        warnings.warn(f"{cfg.dataset}: the held-out split has no {kind} (the dataset has "
                      f"{sum(success)} successful and {len(success) - sum(success)} failed episodes), so eval-reward "
                      f"leaves {'AUROC' if kind == 'failures' else 'VOC+ and AUROC'} out", UserWarning, stacklevel=2)
    train_eps = [cache.episodes[i].index for i in tr]
    held_eps = [cache.episodes[i].index for i in ho]
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        split_path.write_text(json.dumps({"dataset": str(Path(cfg.dataset).resolve()), "seed": cfg.seed,
                                          "train": train_eps, "held_out": held_eps}, indent=2))
        (out / "train_config.json").write_text(json.dumps(draccus_dump(cfg), indent=2))
    return train_eps, held_eps


def build_or_resume(cfg: TrainRewardConfig, mcfg: RewardModelConfig, cache: FrameCache, train_rows: list[int],
                    out: Path, rng: np.random.Generator, is_main: bool, init: ProcessRewardModel | None = None):
    """(model, optimizer, scheduler, first step): fresh (from ``init``'s weights when given), or
    from the latest checkpoint in ``out``."""
    torch.manual_seed(cfg.seed)
    model = ProcessRewardModel(mcfg)
    if mcfg.use_state:  # normalise proprioception with the training episodes' statistics
        train_state = np.concatenate([cache.episode_state(cache.episodes[i]) for i in train_rows])
        model.state_mean.copy_(torch.from_numpy(train_state.mean(0)))
        model.state_std.copy_(torch.from_numpy(train_state.std(0) + 1e-3))
    if init is not None and _latest_checkpoint(out) is None:
        report = model.init_from(init)  # the same robot: its state statistics come along too
        if is_main:
            (out / "init.json").write_text(json.dumps({"init": str(Path(cfg.init).resolve()), **report}, indent=2))
            new = f"; new stages {', '.join(report['stages_new'])}" if report["stages_new"] else ""
            print(f"train-reward: starting from {cfg.init} ({len(report['kept'])} tensors kept; stages "
                  f"{', '.join(report['stages_matched']) or 'none'} carried over{new})")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = _warmup_cosine(opt, cfg.steps)
    ckpt = _latest_checkpoint(out)
    if ckpt is None:
        return model, opt, sched, 0
    model = ProcessRewardModel.load(ckpt)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = torch.load(ckpt / STATE, weights_only=False)
    opt.load_state_dict(state["optimizer"])
    sched = _warmup_cosine(opt, cfg.steps)
    sched.load_state_dict(state["scheduler"])
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    if is_main:
        print(f"resuming {out} from step {int(state['step'])}")
    return model, opt, sched, int(state["step"])


@torch.no_grad()
def set_goal_anchor(model: ProcessRewardModel, cache, episodes: list[int]) -> None:
    """goal_h := mean hidden state at the last frame of the successful training episodes (the
    anchor of backward-anchored progress)."""
    from robo_reward.reward.inference import window_rows

    hs = []
    for i in episodes:
        ep = cache.episodes[i]
        if not ep.success:
            continue
        rows = ep.start + window_rows(ep.length, model.config.window, model.config.frame_gap)[-1:]
        state = None if cache.state is None else torch.from_numpy(cache.state[rows])
        hs.append(model(model.prep(cache.frames[rows]), state=state)["h"][:, -1])
    if hs:
        model.goal_h.copy_(torch.cat(hs).mean(0))


def draccus_dump(cfg) -> dict:
    def conv(x):
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, Path):
            return str(x)
        if isinstance(x, list | tuple):
            return [conv(v) for v in x]
        return x

    return conv(cfg)
