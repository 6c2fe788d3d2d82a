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

from robo_reward.policies.registry import load_policy
from robo_reward.policies.residual import ResidualPolicy
from robo_reward.policies.sb3 import SB3Policy
from robo_reward.rl.checkpoint import (
    CHECKPOINT,
    RunState,
    atomic_json,
    residual_scale_at,
    save_checkpoint,
    save_policy,
)
from robo_reward.rl.config import RLConfig, ent_coef_value
from robo_reward.rl.demos import DemoMixReplayBuffer, DemoTransitions, bc_warmstart, load_demo_transitions
from robo_reward.rl.envs import make_potential, make_vec_env
from robo_reward.rl.evaluate import evaluate_policy, phi_truth_correlation
from robo_reward.rl.potentials import LearnedPotential
from robo_reward.rl.refit import RolloutRefitter
from robo_reward.rl.residual_env import ResidualVecEnv
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
                        cfg.vectorized, cfg.init_policy, cfg.residual_scale_start)
    (out / "config.json").write_text(json.dumps({k: (str(v) if isinstance(v, Path) else v)
                                                 for k, v in asdict(cfg).items()}, indent=2))
    demo = None
    if cfg.demos is not None:
        demo = load_demo_transitions(cfg.demos, cfg.task, Shaper(cfg.shaping, shaper.gamma, cfg.shaping_scale,
                                                                 value_horizon=cfg.value_horizon),
                                     cfg.reward, cfg.reward_model, cfg.demo_success_only, cfg.progress_bar)
    state = RunState(out)
    model, resumed = load_or_build_model(cfg, venv, demo, state)
    residual = venv.venv if isinstance(venv.venv, ResidualVecEnv) else None
    refitter = None
    if cfg.refit_every > 0:
        refitter = RolloutRefitter(potential, shaper, [r.strip() for r in cfg.reward_model.split(",") if r.strip()],
                                   cfg.num_envs, cfg.steps // cfg.num_envs + 2, cfg.refit_steps, cfg.seed,
                                   cfg.progress_bar, cfg.refit_failure_tail)
        venv.record_features = True  # the features each Phi came from, for the replay relabel
        if resumed and (out / CHECKPOINT / "refit.pt").is_file():
            refitter.load_state_dict(torch.load(out / CHECKPOINT / "refit.pt", weights_only=False))
    if residual is not None:
        residual.scale = residual_scale_at(cfg, state.episodes)
    wb = init_wandb(cfg.wandb, out, f"{out.name}-rl", json.loads((out / "config.json").read_text()))
    evaluator = Evaluator(cfg, model, state, wb, residual, potential, refitter)
    loop = TrainLoop(cfg, state, evaluator, shaper, residual, refitter)
    t_start = time.perf_counter()
    remaining = cfg.steps - int(model.num_timesteps)
    if cfg.eval_every_episodes > 0 and not state.evals:
        evaluator()  # where fine-tuning starts: the base policy's own level
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=loop, reset_num_timesteps=not resumed, progress_bar=False)
    wall = time.perf_counter() - t_start
    if not state.evals or state.evals[-1]["env_steps"] != model.num_timesteps:
        evaluator()
    loop.save()
    save_policy(model, out, cfg, residual.scale if residual is not None else None)
    if refitter is not None and refitter.history:
        save_refit_models(potential, cfg, out)
    summary = summarize(model, venv, shaper, state, demo, wall, remaining, resumed)
    summary["time_s"] = {**loop.timing, "evaluation": evaluator.seconds, "total": wall}
    if refitter is not None:
        summary["refits"] = refitter.history
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
    if cfg.init_policy is not None and not resumed:
        start_residual_at_zero(model)
        model.actor.optimizer.warmup_left = cfg.actor_warmup  # the critic learns the base's value first
    if cfg.init_policy is not None and cfg.residual_penalty > 0:
        model.install_residual_penalty(cfg.residual_penalty)
    return model, resumed


def start_residual_at_zero(model: BCRegularizedSAC, init_std: float = 0.3) -> None:
    """The residual actor's mean starts at exactly zero (so the deterministic policy is the base
    policy) and its exploration noise small (std ``init_std`` before the tanh)."""
    with torch.no_grad():
        model.actor.mu.weight.zero_()
        model.actor.mu.bias.zero_()
        model.actor.log_std.weight.zero_()
        model.actor.log_std.bias.fill_(float(np.log(init_std)))


def build_sac(cfg: RLConfig, venv, demo: DemoTransitions | None) -> BCRegularizedSAC:
    """A fresh SAC with LayerNorm critics, n-step targets and (with demos) RLPD's demo-mixing buffer."""
    kwargs: dict[str, Any] = {"n_steps": cfg.n_step}
    if demo is not None and cfg.demo_ratio > 0:
        kwargs = {"replay_buffer_class": DemoMixReplayBuffer,
                  "replay_buffer_kwargs": {"demo": demo, "demo_ratio": cfg.demo_ratio, "n_steps": cfg.n_step,
                                           "gamma": cfg.gamma}}
    with warnings.catch_warnings():  # SB3 picks its NStepReplayBuffer for n_steps, then warns it ignores n_steps
        warnings.filterwarnings("ignore", message=r".*n_steps=\d+` is ignored")
        model = BCRegularizedSAC(
            env=venv, learning_rate=cfg.lr, buffer_size=cfg.buffer_size, learning_starts=cfg.learning_starts,
            batch_size=cfg.batch_size, gamma=cfg.gamma, train_freq=1,
            gradient_steps=max(1, int(round(cfg.utd * cfg.num_envs))),
            policy_kwargs={"net_arch": cfg.hidden, "critic_layer_norm": cfg.critic_layer_norm,
                           "n_critics": cfg.n_critics},
            policy=LayerNormSACPolicy, ent_coef=ent_coef_value(cfg.ent_coef), seed=cfg.seed, device="cpu", **kwargs)
    if demo is not None and cfg.bc_warmstart_steps > 0:
        bc_warmstart(model, demo, cfg.bc_warmstart_steps, progress_bar=cfg.progress_bar)
    return model


def save_refit_models(potential: LearnedPotential, cfg: RLConfig, out: Path) -> None:
    """The refit reward model(s) as runs of their own (``<out>/reward_refit[_<m>]``): a copy of each
    given run with the refit weights, usable as ``--reward-model`` anywhere."""
    import shutil

    runs = [r.strip() for r in cfg.reward_model.split(",") if r.strip()]
    for m, (model, run) in enumerate(zip(potential.models, runs, strict=True)):
        dst = out / ("reward_refit" if len(runs) == 1 else f"reward_refit_{m}")
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(run, dst, ignore=shutil.ignore_patterns("checkpoint*", "wandb", "eval"))
        model.save(dst)


class Evaluator:
    """Evaluates the deterministic policy on seeded episodes and appends the record to ``eval.json``;
    with ``--phi-corr-episodes``, also how well the learned Phi (refit and as given) follows the
    true progress along the current policy's rollouts."""

    def __init__(self, cfg: RLConfig, model: BaseAlgorithm, state: RunState, wb=None,
                 residual: ResidualVecEnv | None = None, potential=None, refitter: RolloutRefitter | None = None):
        self.cfg, self.model, self.state, self.wb = cfg, model, state, wb
        self.residual, self.potential, self.refitter = residual, potential, refitter
        self.base = load_policy(cfg.init_policy) if cfg.init_policy is not None else None
        self.seconds = 0.0

    def policy(self):
        if self.residual is not None:
            return ResidualPolicy(base=self.base, model=self.model, scale=self.residual.scale)
        return SB3Policy(model=self.model)

    def phi_correlation(self) -> dict[str, Any]:
        if self.cfg.phi_corr_episodes <= 0 or not isinstance(self.potential, LearnedPotential):
            return {}
        pots = {"phi_true_corr": LearnedPotential(self.potential.models)}
        if self.refitter is not None:
            pots["phi_true_corr_frozen"] = LearnedPotential(self.refitter.frozen)
        return phi_truth_correlation(self.policy(), self.cfg.task, self.cfg.phi_corr_episodes, pots,
                                     seed=self.cfg.eval_seed + 100_000, max_episode_steps=self.cfg.max_episode_steps)

    def __call__(self) -> dict[str, Any]:
        cfg, state = self.cfg, self.state
        t0 = time.perf_counter()
        r = evaluate_policy(self.policy(), cfg.task, cfg.eval_episodes, seed=cfg.eval_seed,
                            max_episode_steps=cfg.max_episode_steps, progress_bar=False)
        rec = {"env_steps": int(self.model.num_timesteps), "online_episodes": state.episodes,
               "success_rate": r["success_rate"], "mean_length": r["mean_length"],
               "eval_episodes": r["episodes"], "train_success_rate": state.successes / max(state.episodes, 1),
               "successes": [e["success"] for e in r["per_episode"]]}
        if self.residual is not None:
            rec["residual_scale"] = self.residual.scale
        rec.update(self.phi_correlation())
        self.seconds += time.perf_counter() - t0
        state.evals.append(rec)
        atomic_json(Path(cfg.out) / "eval.json", state.evals)
        if self.wb is not None:
            self.wb.log({f"eval/{k}": v for k, v in rec.items() if not isinstance(v, list)},
                        step=int(self.model.num_timesteps))
        return rec


class TrainLoop(BaseCallback):
    """Counts online episodes and successes, and evaluates and checkpoints on schedule."""

    def __init__(self, cfg: RLConfig, state: RunState, evaluate: Evaluator, shaper: Shaper | None = None,
                 residual: ResidualVecEnv | None = None, refitter: RolloutRefitter | None = None):
        super().__init__()
        self.cfg, self.state, self.evaluate, self.shaper = cfg, state, evaluate, shaper
        self.residual, self.refitter = residual, refitter
        n = int(evaluate.model.num_timesteps)
        self.bar = tqdm(total=cfg.steps, initial=n, desc=f"rl {cfg.task} {cfg.reward}", disable=not cfg.progress_bar)
        self.next_eval = (n // cfg.eval_every + 1) * cfg.eval_every
        ev_ep, rf = cfg.eval_every_episodes, cfg.refit_every
        self.next_eval_ep = (state.episodes // ev_ep + 1) * ev_ep if ev_ep > 0 else None
        self.next_refit = (state.episodes // rf + 1) * rf if rf > 0 else None
        self.next_ckpt = (n // cfg.checkpoint_every + 1) * cfg.checkpoint_every
        self.timing = {"refit": 0.0}

    def _on_step(self) -> bool:
        n = self.model.num_timesteps
        self.bar.update(n - self.bar.n)
        self.check_potential()
        dones, infos = self.locals["dones"], self.locals["infos"]
        if self.refitter is not None:
            self.refitter.observe(infos, dones, self.model.replay_buffer.pos)
        for d, info in zip(dones, infos, strict=True):
            if d:
                self.state.episodes += 1
                self.state.successes += int(bool(info.get("success", False)))
        if self.residual is not None:
            self.residual.scale = residual_scale_at(self.cfg, self.state.episodes)
        if self.next_refit is not None and self.state.episodes >= self.next_refit:
            t0 = time.perf_counter()
            rec = self.refitter.refit(self.model.replay_buffer)
            rec["online_episodes"] = self.state.episodes
            self.timing["refit"] += time.perf_counter() - t0
            self.next_refit += self.cfg.refit_every
        if self.next_eval_ep is not None:
            if self.state.episodes >= self.next_eval_ep:
                rec = self.evaluate()
                self.next_eval_ep += self.cfg.eval_every_episodes
                self.bar.set_postfix(success=rec["success_rate"], online_episodes=self.state.episodes)
        elif n >= self.next_eval:
            rec = self.evaluate()
            self.next_eval += self.cfg.eval_every
            self.bar.set_postfix(success=rec["success_rate"], online_episodes=self.state.episodes)
        if n >= self.next_ckpt:
            self.save()
            self.next_ckpt += self.cfg.checkpoint_every
        return not (self.cfg.max_episodes > 0 and self.state.episodes >= self.cfg.max_episodes)

    def save(self) -> None:
        extra = {"refit": self.refitter.state_dict()} if self.refitter is not None else None
        save_checkpoint(self.evaluate.model, self.state, Path(self.cfg.out), extra)

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
