"""``robo-reward eval-policy``: success rate and episode length of a BC or RL policy over seeded sim
episodes, with optional mp4s of rollouts that show the reward model's live progress."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robo_reward.data.video import progress_frame, write_mp4
from robo_reward.envs import make_env
from robo_reward.policies.registry import load_policy
from robo_reward.rl.observation import RLObservation, batch_obs
from robo_reward.rl.potentials import LearnedPotential


@dataclass
class EvalPolicyConfig:
    policy: Path = Path("outputs/bc/run")
    """Run directory written by `robo-reward train-bc` or `robo-reward rl`."""
    task: str = ""
    """Sim task (default: the one the policy was trained on)."""
    episodes: int = 50
    """Seeded evaluation episodes (seeds seed, seed+1, ...)."""
    seed: int = 10_000
    out_json: Path = Path("outputs/eval_policy.json")
    video: int = 0
    """Write mp4s of the first N rollouts (front, side, wrist views) beside --out-json."""
    reward_model: Path | None = None
    """Draw this reward model's live progress on the videos (and report its final progress)."""
    max_episode_steps: int | None = None

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"--episodes: {self.episodes}; expected >= 1")
        if self.video < 0:
            raise ValueError(f"--video: {self.video}; expected >= 0")


def evaluate_policy(policy, task: str, episodes: int, seed: int = 10_000, max_episode_steps: int | None = None,
                    video: int = 0, video_dir: Path | None = None, reward_model: str | Path | None = None,
                    progress_bar: bool = True) -> dict[str, Any]:
    """Roll ``policy`` (``reset()``, ``act(obs, env)``, ``cameras``) out for ``episodes`` seeded episodes."""
    potential = LearnedPotential.from_runs(str(reward_model)) if reward_model else None
    video_cams = ("front", "side", "wrist") if video else ()
    cams = tuple(dict.fromkeys([*policy.cameras, *(potential.cameras if potential else ()), *video_cams]))
    size = potential.models[0].config.image_size if potential else 64
    env = RLObservation(make_env(task, cameras=cams, width=size, height=size, max_episode_steps=max_episode_steps))
    succ, lengths, finals = [], [], []
    for k in tqdm(range(episodes), desc=f"eval-policy {task}", disable=not progress_bar):
        obs, info = env.reset(seed=seed + k)
        policy.reset()
        frames, phis = [], []
        phi = potential(batch_obs([obs]), np.array([True]))[0] if potential else np.nan
        done, n, success = False, 0, False
        while not done:
            if k < video:
                frames.append(np.concatenate([obs[f"pixels.{c}"] for c in video_cams], axis=1))
                phis.append(phi)
            a = np.clip(policy.act(obs, env), env.action_space.low, env.action_space.high)
            obs, _, term, trunc, info = env.step(a)
            if potential:
                phi = potential(batch_obs([obs]), np.array([False]))[0]
            n += 1
            success = success or info["success"]
            done = term or trunc
        succ.append(success)
        lengths.append(n)
        finals.append(phi)
        if k < video and video_dir is not None:
            write_rollout_video(Path(video_dir) / f"rollout_{k:03d}.mp4", frames, phis, success)
    env.close()
    out = {"task": task, "episodes": episodes, "successes": int(np.sum(succ)),
           "success_rate": float(np.mean(succ)), "mean_length": float(np.mean(lengths)),
           "per_episode": [{"seed": seed + k, "success": bool(s), "length": int(n)}
                           for k, (s, n) in enumerate(zip(succ, lengths, strict=True))]}
    if potential:
        out["final_progress_mean"] = float(np.nanmean(finals))
        for rec, f in zip(out["per_episode"], finals, strict=True):
            rec["final_progress"] = float(f)
    return out


def phi_truth_correlation(policy, task: str, episodes: int, potentials: dict[str, LearnedPotential],
                          seed: int = 20_000, max_episode_steps: int | None = None) -> dict[str, Any]:
    """Roll ``policy`` out for ``episodes`` rendered episodes and report, for each named potential,
    the Pearson correlation of its Phi with the sim's true progress over all their frames (the
    hacking monitor: a potential the policy exploits reads high where the truth is low)."""
    first = next(iter(potentials.values()))
    cams = tuple(dict.fromkeys([*policy.cameras, *first.cameras]))
    size = first.models[0].config.image_size
    env = RLObservation(make_env(task, cameras=cams, width=size, height=size, max_episode_steps=max_episode_steps))
    phis: dict[str, list[float]] = {k: [] for k in potentials}
    truth: list[float] = []
    for k in range(episodes):
        obs, info = env.reset(seed=seed + k)
        policy.reset()
        first_step, done = True, False
        while True:
            for name, pot in potentials.items():
                phis[name].append(float(pot(batch_obs([obs]), np.array([first_step]))[0]))
            truth.append(float(info["progress"]))
            if done:
                break
            first_step = False
            a = np.clip(policy.act(obs, env), env.action_space.low, env.action_space.high)
            obs, _, term, trunc, info = env.step(a)
            done = term or trunc
    env.close()
    t = np.asarray(truth)
    out: dict[str, Any] = {}
    for name, v in phis.items():
        p = np.asarray(v)
        ok = np.isfinite(p)
        out[name] = float(np.corrcoef(p[ok], t[ok])[0, 1]) if ok.sum() > 2 and p[ok].std() > 0 and t.std() > 0 \
            else None
    return out


def write_rollout_video(path: Path, frames: list[np.ndarray], phis: list[float], success: bool,
                        fps: int = 20, scale: int = 3) -> None:
    """Views side by side, the live progress as a bar and a number (when a reward model is given)."""
    def label(t: int, p: float) -> str:
        text = f"t={t}" + (f"  progress {p:.2f}" if np.isfinite(p) else "")
        if t == len(frames) - 1:
            text += "  SUCCESS" if success else "  fail"
        return text

    write_mp4(path, (progress_frame(img, p, label(t, p), scale)
                     for t, (img, p) in enumerate(zip(frames, phis, strict=True))), fps)


def run_eval_policy(cfg: EvalPolicyConfig) -> dict[str, Any]:
    policy = load_policy(cfg.policy)
    task = cfg.task or policy.task
    if not task:
        raise ValueError(f"--task: not given and {cfg.policy} does not record its task")
    out_json = Path(cfg.out_json)
    r = evaluate_policy(policy, task, cfg.episodes, cfg.seed, cfg.max_episode_steps, cfg.video,
                        out_json.parent / "videos", cfg.reward_model)
    r["policy"] = str(cfg.policy)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(r, indent=2))
    return r
