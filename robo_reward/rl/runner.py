"""``robo-reward rl``: online RL on the sim tasks with sparse, ground-truth dense or learned
(reward-model) rewards, as one readable loop with the pieces imported.

SAC and PPO come from stable-baselines3 and act on the low-dimensional policy state
(:func:`robo_reward.embodiments.observation.policy_state`); the learned reward is computed from
rendered images of the cameras the reward model reads (and only those). Options:

- ``--demos=DIR``: RLPD-style demo-seeded replay (a fixed share of each SAC batch comes from the
  demonstration dataset, its rewards shaped exactly like the online ones), an optional BC warm
  start of the actor and an optional BC term in every actor update;
- periodic evaluation of the deterministic policy (success rate against env steps and episodes),
  written to ``eval.json`` and wandb (offline);
- atomic checkpoints (model, replay buffer, counters) and resume after a kill;
- ``policy.zip`` + ``policy.json`` at the end: what ``eval-policy`` and the deploy loop load.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from tqdm import tqdm

from robo_reward.policies.sb3 import SB3Policy
from robo_reward.rl.checkpoint import CHECKPOINT, RunState, atomic_json, save_checkpoint, save_policy
from robo_reward.rl.config import RLConfig, ent_coef_value
from robo_reward.rl.demos import DemoMixReplayBuffer, DemoTransitions, bc_warmstart, load_demo_transitions
from robo_reward.rl.envs import make_potential, make_vec_env
from robo_reward.rl.evaluate import evaluate_policy
from robo_reward.rl.potentials import LearnedPotential
from robo_reward.rl.sac import BCRegularizedSAC, LayerNormSACPolicy
from robo_reward.rl.shaping import Shaper
from robo_reward.utils import init_wandb


def run_rl(cfg: RLConfig) -> dict[str, Any]:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    shaper = Shaper(cfg.shaping, cfg.shaping_gamma or cfg.gamma, cfg.shaping_scale, cfg.disagreement_penalty,
                    cfg.value_horizon)
    potential = make_potential(cfg, cfg.num_envs)
    image_size = potential.models[0].config.image_size if isinstance(potential, LearnedPotential) else 64
    venv = make_vec_env(cfg.task, cfg.num_envs, potential, shaper, cfg.seed, cfg.max_episode_steps, image_size,
                        cfg.vectorized)
    (out / "config.json").write_text(json.dumps({k: (str(v) if isinstance(v, Path) else v)
                                                 for k, v in asdict(cfg).items()}, indent=2))
    demo = None
    if cfg.demos is not None:
        demo = load_demo_transitions(cfg.demos, cfg.task, Shaper(cfg.shaping, shaper.gamma, cfg.shaping_scale,
                                                                 value_horizon=cfg.value_horizon),
                                     cfg.reward, cfg.reward_model, cfg.demo_success_only, cfg.progress_bar)
    state = RunState(out)
    model, resumed = load_or_build_model(cfg, venv, demo, state)
    wb = init_wandb(cfg.wandb, out, f"{out.name}-rl", json.loads((out / "config.json").read_text()))
    evaluator = Evaluator(cfg, model, state, wb)
    t_start = time.perf_counter()
    remaining = cfg.steps - int(model.num_timesteps)
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=TrainLoop(cfg, state, evaluator, shaper),
                    reset_num_timesteps=not resumed, progress_bar=False)
    wall = time.perf_counter() - t_start
    if not state.evals or state.evals[-1]["env_steps"] != model.num_timesteps:
        evaluator()
    save_checkpoint(model, state, out)
    save_policy(model, out, cfg)
    summary = summarize(model, venv, shaper, state, demo, wall, remaining, resumed)
    atomic_json(out / "summary.json", summary)
    if wb is not None:
        wb.finish()
    venv.close()
    return summary


def load_or_build_model(cfg: RLConfig, venv, demo: DemoTransitions | None,
                        state: RunState) -> tuple[BaseAlgorithm, bool]:
    """Resume from ``<out>/checkpoint`` when asked and present, else build a fresh SAC or PPO.
    Returns (model, resumed)."""
    algo_cls = BCRegularizedSAC if cfg.algo == "sac" else PPO
    ckpt = Path(cfg.out) / CHECKPOINT
    resumed = False
    if cfg.resume and (ckpt / "model.zip").is_file():
        with warnings.catch_warnings():  # SB3 warns that n_steps is ignored: the saved buffer kwargs carry it
            warnings.filterwarnings("ignore", message=r".*n_steps=\d+` is ignored")
            model = algo_cls.load(ckpt / "model.zip", env=venv, device="cpu")
        if (ckpt / "replay.pkl").is_file():
            model.load_replay_buffer(ckpt / "replay.pkl")
        state.load(json.loads((ckpt / "state.json").read_text()))
        resumed = True
    elif cfg.algo == "sac":
        model = build_sac(cfg, venv, demo)
    else:
        model = PPO("MlpPolicy", venv, learning_rate=cfg.lr, n_steps=max(16, min(1024, cfg.steps) // cfg.num_envs),
                    batch_size=min(cfg.batch_size, 1024), gamma=cfg.gamma, policy_kwargs={"net_arch": cfg.hidden},
                    seed=cfg.seed, device="cpu")
    if cfg.algo == "sac" and demo is not None and cfg.bc_weight > 0:
        model.install_bc(demo, cfg.bc_weight, cfg.q_filter, cfg.rl_alpha if cfg.rl_alpha > 0 else None,
                         warmup=0 if resumed else cfg.actor_warmup)
    return model, resumed


def build_sac(cfg: RLConfig, venv, demo: DemoTransitions | None) -> BCRegularizedSAC:
    """A fresh SAC with LayerNorm critics, n-step targets and (with demos) RLPD's demo-mixing buffer."""
    kwargs: dict[str, Any] = {"n_steps": cfg.n_step}
    if demo is not None and cfg.demo_ratio > 0:
        kwargs = {"replay_buffer_class": DemoMixReplayBuffer,
                  "replay_buffer_kwargs": {"demo": demo, "demo_ratio": cfg.demo_ratio, "n_steps": cfg.n_step,
                                           "gamma": cfg.gamma}}
    model = BCRegularizedSAC(
        env=venv, learning_rate=cfg.lr, buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts,
        batch_size=cfg.batch_size, gamma=cfg.gamma, train_freq=1,
        gradient_steps=max(1, int(round(cfg.utd * cfg.num_envs))),
        policy_kwargs={"net_arch": cfg.hidden, "critic_layer_norm": cfg.critic_layer_norm, "n_critics": cfg.n_critics},
        policy=LayerNormSACPolicy, ent_coef=ent_coef_value(cfg.ent_coef), seed=cfg.seed, device="cpu", **kwargs)
    if demo is not None and cfg.bc_warmstart_steps > 0:
        bc_warmstart(model, demo, cfg.bc_warmstart_steps, progress_bar=cfg.progress_bar)
    return model


class Evaluator:
    """Evaluates the deterministic policy on seeded episodes and appends the record to ``eval.json``."""

    def __init__(self, cfg: RLConfig, model: BaseAlgorithm, state: RunState, wb=None):
        self.cfg, self.model, self.state, self.wb = cfg, model, state, wb

    def __call__(self) -> dict[str, Any]:
        cfg, state = self.cfg, self.state
        r = evaluate_policy(SB3Policy(model=self.model), cfg.task, cfg.eval_episodes,
                            max_episode_steps=cfg.max_episode_steps, progress_bar=False)
        rec = {"env_steps": int(self.model.num_timesteps), "online_episodes": state.episodes,
               "success_rate": r["success_rate"], "mean_length": r["mean_length"],
               "eval_episodes": r["episodes"], "train_success_rate": state.successes / max(state.episodes, 1)}
        state.evals.append(rec)
        atomic_json(Path(cfg.out) / "eval.json", state.evals)
        if self.wb is not None:
            self.wb.log({f"eval/{k}": v for k, v in rec.items()}, step=int(self.model.num_timesteps))
        return rec


class TrainLoop(BaseCallback):
    """Counts online episodes and successes, and evaluates and checkpoints on schedule."""

    def __init__(self, cfg: RLConfig, state: RunState, evaluate: Evaluator, shaper: Shaper | None = None):
        super().__init__()
        self.cfg, self.state, self.evaluate, self.shaper = cfg, state, evaluate, shaper
        n = int(evaluate.model.num_timesteps)
        self.bar = tqdm(total=cfg.steps, initial=n, desc=f"rl {cfg.task} {cfg.reward}", disable=not cfg.progress_bar)
        self.next_eval = (n // cfg.eval_every + 1) * cfg.eval_every
        self.next_ckpt = (n // cfg.checkpoint_every + 1) * cfg.checkpoint_every

    def _on_step(self) -> bool:
        n = self.model.num_timesteps
        self.bar.update(n - self.bar.n)
        self.check_potential()
        for d, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
            if d:
                self.state.episodes += 1
                self.state.successes += int(bool(info.get("success", False)))
        if n >= self.next_eval:
            rec = self.evaluate()
            self.next_eval += self.cfg.eval_every
            self.bar.set_postfix(success=rec["success_rate"], online_episodes=self.state.episodes)
        if n >= self.next_ckpt:
            save_checkpoint(self.model, self.state, Path(self.cfg.out))
            self.next_ckpt += self.cfg.checkpoint_every
        return True

    def _on_training_end(self) -> None:
        self.bar.close()

    def check_potential(self) -> None:
        st = self.shaper.stats if self.shaper is not None else None
        if st is not None and st.steps >= 200 and st.nan_steps > self.cfg.max_nan_share * st.steps:
            self.bar.close()
            raise ValueError(f"--reward-model={self.cfg.reward_model}: the potential was NaN on {st.nan_steps} of "
                             f"{st.steps} steps (more than --max-nan-share={self.cfg.max_nan_share}); the model "
                             "gives no reward signal here (NaN weights, or frames it cannot read)")


def summarize(model: BaseAlgorithm, venv, shaper: Shaper, state: RunState, demo: DemoTransitions | None,
              wall: float, env_steps: int, resumed: bool) -> dict[str, Any]:
    """``summary.json``: the final evaluation, throughput and where the time went."""
    summary = {"final": state.evals[-1], "evals": state.evals, "episodes": state.episodes,
               "wall_s": wall, "env_steps_per_s": env_steps / max(wall, 1e-9),
               "potential_s": getattr(venv, "time_in_potential", 0.0),
               # the batched ManiSkill env renders inside its one sim step: no separate figure
               "render_s": (float(sum(e.unwrapped.render_seconds for e in venv.venv.envs))
                            if hasattr(venv.venv, "envs") else None),
               "nan_shaping_steps": shaper.stats.nan_steps, "resumed": resumed}
    if getattr(model, "bc_stats", None) is not None:
        summary["bc_regulariser"] = dict(model.bc_stats)
    if demo is not None:
        summary["demos"] = {"transitions": len(demo), "episodes": demo.episodes, "successes": demo.successes}
    return summary
