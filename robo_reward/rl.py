"""Online RL on the sim tasks with sparse, ground-truth dense or learned (reward-model) rewards.

SAC and PPO come from stable-baselines3 and act on the low-dimensional policy state
(:func:`robo_reward.shaping.policy_state`); the learned reward is computed from rendered images of
the cameras the reward model reads (and only those). Options:

- ``--demos=DIR``: RLPD-style demo-seeded replay (a fixed share of each SAC batch comes from the
  demonstration dataset, its rewards shaped exactly like the online ones) and an optional BC
  warm start of the actor;
- periodic evaluation of the deterministic policy (success rate against env steps and episodes),
  written to ``eval.json`` and wandb (offline);
- atomic checkpoints (model, replay buffer, counters) and resume after a kill;
- ``policy.zip`` + ``policy.json`` at the end: what ``eval-policy`` and the deploy loop load.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from robo_reward.eval_policy import evaluate_policy
from robo_reward.shaping import (
    GroundTruthPotential,
    LearnedPotential,
    Potential,
    RLObservation,
    Shaper,
    Shaping,
    make_shaped_vec_env,
)

POLICY_FILE = "policy.zip"
POLICY_META = "policy.json"
CHECKPOINT = "checkpoint"


@dataclass
class RLConfig:
    task: str = "push"
    """Sim task (push, pick_place, stack)."""
    reward: str = "learned"
    """sparse (task success only), dense (ground-truth progress as Phi) or learned (reward model as Phi)."""
    shaping: str = "auto"
    """pbrs, naive, delta or none; auto = pbrs for dense/learned, none for sparse."""
    reward_model: str = ""
    """Run directory of train-reward (comma-separated runs make an ensemble). Needed for --reward=learned."""
    demos: Path | None = None
    """LeRobot dataset of demonstrations for demo-seeded replay (SAC) and BC warm start."""
    demo_ratio: float = 0.5
    """Share of each SAC batch drawn from the demos (RLPD uses 0.5)."""
    demo_success_only: bool = False
    """Seed the replay only with successful demos."""
    bc_warmstart_steps: int = 0
    """Gradient steps of behaviour cloning on the demos before RL (actor only)."""
    bc_weight: float = 0.0
    """SAC: add this times a behaviour-cloning loss on demo batches to every actor update
    (Nair et al. 2018), so RL improves on the demos instead of forgetting them."""
    q_filter: bool = False
    """Apply the BC loss only where the critic rates the demo action above the policy's (Q-filter)."""
    rl_alpha: float = 2.5
    """With --bc-weight: scale SAC's actor gradient by rl_alpha / max(mean|Q|, 1) (TD3+BC's
    normalisation, never amplifying), so the BC and critic terms stay balanced as Q grows."""
    actor_warmup: int = 1000
    """With --bc-weight: critic-only updates first (the actor stays the BC policy while the critic
    learns its value from demos and online data)."""
    algo: str = "sac"
    """sac or ppo."""
    steps: int = 20000
    """Environment steps (summed over the parallel envs)."""
    num_envs: int = 4
    """Parallel envs in one process (the reward model is batched across them)."""
    out: Path = Path("outputs/rl/run")
    """Run directory."""
    seed: int = 0
    gamma: float = 0.98
    """Discount of the RL algorithm; PBRS uses the same gamma unless --shaping-gamma is set."""
    shaping_gamma: float | None = None
    """Override the gamma of the shaping term (default: the algorithm's gamma)."""
    shaping_scale: float = 1.0
    """lambda: weight of the shaping term."""
    disagreement_penalty: float = 0.0
    """Subtract this times the ensemble's std of Phi (needs several --reward-model runs)."""
    value_horizon: float = 0.0
    """0: Phi is the progress itself. H > 0: Phi = gamma^((1 - progress) * H), progress read as the
    discounted value of finishing H steps after the start. Still PBRS, so still policy-invariant.
    A pessimistic H pays: on push at --gamma=0.9, H = 20 lifts learned PBRS from 0.43 to 0.70 eval
    success at 24k steps, where H = 10 (nearer a finished policy's pace) does worse and H = 40 is
    no better (benchmarks/results/rl_sample_efficiency_push_value*.json)."""
    ent_coef: str = "auto"
    """SAC entropy coefficient: auto, auto_<init> (tuned from <init>) or a fixed number. Returns
    here are of order one (a success, a potential in [0, 1]), so use a small init (auto_0.01),
    with or without demos: at 1.0 the entropy bonus outweighs the reward for thousands of updates,
    dragging a cloned policy's mean to zero and keeping a fresh one's mean actions near zero."""
    lr: float = 3e-4
    batch_size: int = 256
    learning_starts: int = 1000
    """Env steps of random actions before updates start (SAC); with --demos, 0 is fine."""
    utd: float = 0.5
    """Gradient updates per env step (SAC)."""
    net: str = "256,256"
    """Hidden sizes of the actor and critic MLPs."""
    critic_layer_norm: bool = True
    """SAC: LayerNorm after every hidden layer of the critics (RLPD, Ball et al. 2023). Without
    it, demo-seeded SAC at a high update-to-data ratio overestimates Q (1.1-1.4 on a push whose
    returns are at most 1) on states the demos never visit."""
    n_critics: int = 2
    """SAC: critics in the ensemble; targets and the actor use the minimum over all of them (more
    critics: more pessimism against overestimation)."""
    n_step: int = 1
    """SAC: n-step TD targets (SB3's n-step replay; truncation and termination end the sum). The
    PBRS terms telescope inside the n-step sum too (``gamma^n Phi(s_n) - Phi(s_0)``), so a shaped
    potential's signal reaches the critic n steps at a time. Demo rows stay one-step."""
    buffer_size: int = 300_000
    max_episode_steps: int | None = None
    """Episode time limit (default: the task's own)."""
    eval_every: int = 2000
    """Evaluate the deterministic policy every this many env steps."""
    eval_episodes: int = 10
    checkpoint_every: int = 5000
    resume: bool = True
    """Continue from <out>/checkpoint when it exists."""
    wandb: bool = True
    """Log to wandb in offline mode (under <out>/wandb)."""
    progress_bar: bool = True
    vectorized: str = "auto"
    """ManiSkill tasks: step all --num-envs envs in one batched sim (no per-env Python loop).
    auto = when CUDA is present (physx_cuda) and the reward is sparse or learned; true = also on
    the CPU, where --num-envs must be 1."""

    def __post_init__(self) -> None:
        if self.reward not in ("sparse", "dense", "learned"):
            raise ValueError(f"--reward: {self.reward!r}; expected sparse, dense or learned")
        if self.shaping == "auto":
            self.shaping = "none" if self.reward == "sparse" else "pbrs"
        if self.shaping not in {s.value for s in Shaping}:
            raise ValueError(f"--shaping: {self.shaping!r}; expected pbrs, naive, delta or none")
        if self.reward == "sparse" and self.shaping != "none":
            raise ValueError(f"--shaping={self.shaping} needs a potential; --reward=sparse has none "
                             "(use --reward=dense or --reward=learned)")
        if self.reward == "learned" and not self.reward_model:
            raise ValueError("--reward=learned needs --reward-model=RUN (a train-reward run directory)")
        self.vectorized = str(self.vectorized).lower()  # the CLI parser may hand over a bool
        if self.vectorized not in ("auto", "true", "false"):
            raise ValueError(f"--vectorized: {self.vectorized!r}; expected auto, true or false")
        if self.n_critics < 1:
            raise ValueError(f"--n-critics: {self.n_critics}; expected >= 1")
        if self.n_step < 1:
            raise ValueError(f"--n-step: {self.n_step}; expected >= 1 (1: one-step TD)")
        if self.algo not in ("sac", "ppo"):
            raise ValueError(f"--algo: {self.algo!r}; expected sac or ppo")
        if self.steps < 1 or self.num_envs < 1:
            raise ValueError(f"--steps/--num-envs: {self.steps}/{self.num_envs}; expected >= 1")
        if (self.bc_weight > 0 or self.bc_warmstart_steps > 0) and self.demos is None:
            raise ValueError("--bc-weight/--bc-warmstart-steps need --demos=DIR")
        if not (0.0 <= self.demo_ratio < 1.0):
            raise ValueError(f"--demo-ratio: {self.demo_ratio}; expected in [0, 1)")
        if not (0.0 < self.gamma <= 1.0):
            raise ValueError(f"--gamma: {self.gamma}; expected in (0, 1]")
        if not (self.value_horizon >= 0):
            raise ValueError(f"--value-horizon: {self.value_horizon}; expected steps >= 0 (0: Phi is the progress)")
        if self.demos is not None and not (Path(self.demos) / "meta" / "info.json").is_file():
            raise ValueError(f"--demos: {self.demos} is not a LeRobot dataset (no meta/info.json)")

    @property
    def hidden(self) -> list[int]:
        return [int(x) for x in self.net.split(",") if x.strip()]


# ---- envs ------------------------------------------------------------------------------------
def make_potential(cfg: RLConfig, num_envs: int) -> Potential | None:
    if cfg.reward == "dense":
        return GroundTruthPotential()
    if cfg.reward == "learned":
        runs = [r.strip() for r in cfg.reward_model.split(",") if r.strip()]
        potential = LearnedPotential.from_runs(runs, num_envs=num_envs)
        if potential.needs_state:
            warnings.warn(f"--reward-model={cfg.reward_model} reads proprioception (use_state: true). The policy sets "
                          "the joints directly and can raise such a Phi without doing the task: on push, Phi with "
                          "the joints held at the reset pose reads about 0.006 (benchmarks/learned_vs_true_phi.py "
                          "--state-ablation). For RL, train the reward model with --model.use_state=false.",
                          UserWarning, stacklevel=2)
        return potential
    return None


class _ZeroPotential(Potential):
    def __call__(self, obs, first, active=None) -> np.ndarray:
        return np.zeros(len(first))


def make_vec_env(task: str, num_envs: int, potential: Potential | None, shaper: Shaper, seed: int,
                 max_episode_steps: int | None = None, image_size: int = 64, vectorized: str = "auto"):
    """SB3 VecEnv of ``task`` that renders only the potential's cameras, shaped by ``shaper``: a
    DummyVecEnv of single envs, or for ManiSkill on a GPU (``vectorized``) one batched sim."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sim.tasks import make_env

    cameras = tuple(potential.cameras) if potential is not None else ()
    progress = potential is not None and potential.needs_progress
    if _use_batched_maniskill(task, vectorized, progress):
        from sim.maniskill.tasks import MSConfig
        from sim.maniskill.vec import ManiSkillVecEnv

        if progress:
            raise ValueError("--reward=dense on the batched ManiSkill env: its ground-truth progress is computed "
                             "per env; use --reward=learned or sparse there, or --vectorized=false")
        cfg = MSConfig(cameras=cameras, width=image_size, height=image_size, max_episode_steps=max_episode_steps)
        return make_shaped_vec_env(ManiSkillVecEnv(task, num_envs, cfg, seed=seed), potential or _ZeroPotential(),
                                   shaper)

    def thunk(i: int):
        def make():
            env = make_env(task, cameras=cameras, width=image_size, height=image_size,
                           max_episode_steps=max_episode_steps)
            return RLObservation(env, include_progress=progress)
        return make

    venv = DummyVecEnv([thunk(i) for i in range(num_envs)])
    venv.seed(seed)
    return make_shaped_vec_env(venv, potential or _ZeroPotential(), shaper)


def _use_batched_maniskill(task: str, vectorized: str, needs_progress: bool = False) -> bool:
    """auto: the batched env for ManiSkill tasks on a GPU, unless the reward needs the per-env
    ground-truth progress (--reward=dense); true: always (dense is then refused)."""
    from sim.maniskill import PREFIX

    if not task.startswith(PREFIX) or vectorized == "false":
        return False
    return vectorized == "true" or (torch.cuda.is_available() and not needs_progress)


def tcp_from_joints(env, agent_pos: np.ndarray) -> np.ndarray:
    """TCP positions (N, 3) for measured joints (N, 6) in LeRobot units, by forward kinematics."""
    import mujoco

    from sim.robot import forward_tcp

    base = env.unwrapped
    data = mujoco.MjData(base.model)
    return np.stack([forward_tcp(base.model, data, q) for q in np.asarray(agent_pos, dtype=np.float64)])


# ---- demonstrations --------------------------------------------------------------------------
@dataclass
class DemoTransitions:
    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    episodes: int = 0
    successes: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.obs)


def load_demo_transitions(root: str | Path, task: str, shaper: Shaper, reward: str, reward_model: str = "",
                          success_only: bool = False, progress_bar: bool = False) -> DemoTransitions:
    """Transitions (s, a, r', s', done) from a collected dataset, with the same reward as online:
    r_env = 1 at the step that reaches success (the episode ends there), plus the shaping term with
    Phi from the ground truth (dense) or the reward model run on the dataset's video (learned)."""
    from robo_reward.bc import load_frame_table, model_progress, state_features
    from robo_reward.data.lerobot_io import DatasetError

    table = load_frame_table(root, task)
    if table.gt_progress is None:
        raise DatasetError(f"{root}: column gt.progress missing; demo-seeded replay needs a dataset written by "
                           "`robo-reward collect` (it marks where the demo succeeds)")
    states = state_features(table, "state")
    phi_all = {"learned": lambda: model_progress(reward_model, root, progress_bar),
               "dense": lambda: table.gt_progress.astype(np.float64),
               "sparse": lambda: np.zeros(len(table.index))}[reward]()
    obs, acts, nxt, rews, dones = [], [], [], [], []
    n_eps = n_succ = 0
    for ep_idx in table.episodes:
        m = table.episode_index == ep_idx
        s, act, gt, phi = states[m], table.action[m], table.gt_progress[m], phi_all[m]
        hit = np.flatnonzero(gt >= 1.0)
        success = hit.size > 0 and hit[0] > 0
        if success_only and not success:
            continue
        end = int(hit[0]) if success else len(s) - 1  # transitions 0..end-1 lead to frame end
        if end < 1:
            continue
        r_env = np.zeros(end)
        term = np.zeros(end, dtype=bool)
        if success:
            r_env[-1] = 1.0
            term[-1] = True
        shaped, _ = shaper(r_env, phi[:end], phi[1:end + 1], term)
        obs.append(s[:end])
        acts.append(act[:end])
        nxt.append(s[1:end + 1])
        rews.append(shaped.astype(np.float32))
        dones.append(term.astype(np.float32))
        n_eps += 1
        n_succ += int(success)
    if not obs:
        raise DatasetError(f"{root}: no usable demo episodes (success_only={success_only})")
    return DemoTransitions(np.concatenate(obs), np.clip(np.concatenate(acts), -1, 1), np.concatenate(nxt),
                           np.concatenate(rews), np.concatenate(dones), n_eps, n_succ)


class DemoMixReplayBuffer(NStepReplayBuffer):
    """RLPD's symmetric sampling: ``demo_ratio`` of every batch comes from fixed demo transitions.
    Online rows use ``n_steps``-step returns (1: plain one-step TD); demo rows stay one-step."""

    def __init__(self, *args, demo: DemoTransitions | None = None, demo_ratio: float = 0.5, n_steps: int = 1,
                 gamma: float = 0.99, **kwargs):
        super().__init__(*args, n_steps=n_steps, gamma=gamma, **kwargs)
        self.demo = demo
        self.demo_ratio = demo_ratio if demo is not None else 0.0

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> ReplayBufferSamples:
        if getattr(self, "n_steps", 1) == 1:  # a checkpoint from before --n-step has no n_steps
            return ReplayBuffer._get_samples(self, batch_inds, env)
        return super()._get_samples(batch_inds, env)

    def sample(self, batch_size: int, env=None) -> ReplayBufferSamples:
        n_demo = int(round(batch_size * self.demo_ratio))
        online = super().sample(batch_size - n_demo, env)
        if n_demo == 0:
            return online
        d = self.demo
        i = np.random.randint(0, len(d), size=n_demo)

        def t(x):
            return torch.as_tensor(x, device=self.device)

        return ReplayBufferSamples(
            torch.cat([online.observations, t(d.obs[i])]),
            torch.cat([online.actions, t(d.actions[i])]),
            torch.cat([online.next_observations, t(d.next_obs[i])]),
            torch.cat([online.dones, t(d.dones[i])[:, None]]),
            torch.cat([online.rewards, t(d.rewards[i])[:, None]]),
            None if online.discounts is None else
            torch.cat([online.discounts, torch.full((n_demo, 1), self.gamma, dtype=online.discounts.dtype,
                                                    device=online.discounts.device)]),
        )


class BCRegularizedAdam(torch.optim.Adam):
    """The SAC actor's optimizer with a behaviour-cloning term: before each step it adds the
    gradient of ``weight * ||pi(s) - a_demo||^2`` on a demo batch (optionally Q-filtered) to the
    actor gradient SB3 just computed. Saved and loaded as a plain Adam state."""

    bc_hook = None

    @classmethod
    def install(cls, model, demo: DemoTransitions, weight: float, q_filter: bool, rl_alpha: float | None = None,
                warmup: int = 0, batch: int = 128) -> None:
        opt = model.actor.optimizer
        opt.__class__ = cls
        obs_all = torch.as_tensor(demo.obs)
        act_all = torch.as_tensor(demo.actions).clamp(-0.999, 0.999)
        stats = {"bc_loss": 0.0, "q_filter_pass": 0.0}

        params = [p for g in opt.param_groups for p in g["params"]]

        def hook() -> None:
            i = torch.randint(0, len(obs_all), (batch,))
            obs, act = obs_all[i], act_all[i]
            pi = model.actor(obs, deterministic=True)
            if rl_alpha is not None:  # TD3+BC: the RL term weighs rl_alpha / mean|Q|
                with torch.no_grad():
                    q_scale = torch.cat(model.critic(obs, pi), dim=1).abs().mean().clamp_min(1.0)
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(rl_alpha / q_scale)
                stats["q_scale"] = float(q_scale)
            err = ((pi - act) ** 2).mean(-1)
            if q_filter:
                with torch.no_grad():
                    q_demo = torch.min(torch.cat(model.critic(obs, act), dim=1), dim=1).values
                    q_pi = torch.min(torch.cat(model.critic(obs, pi.detach()), dim=1), dim=1).values
                    keep = (q_demo > q_pi).float()
                err = err * keep
                stats["q_filter_pass"] = float(keep.mean())
            loss = weight * err.mean()
            loss.backward()
            stats["bc_loss"] = float(loss.detach())

        opt.bc_hook = hook
        opt.bc_stats = stats
        opt.warmup_left = warmup

    warmup_left = 0

    def step(self, closure=None):
        if self.warmup_left > 0:  # critic warm-up: the actor does not move yet
            self.warmup_left -= 1
            return None
        if self.bc_hook is not None:
            self.bc_hook()
        return super().step(closure)


def bc_warmstart(model, demo: DemoTransitions, steps: int, batch: int = 256, progress_bar: bool = False) -> float:
    """Behaviour-clone the SAC actor's mean action onto the demo actions (MSE); returns the last loss."""
    from tqdm import tqdm

    actor = model.actor
    opt = torch.optim.Adam(actor.parameters(), lr=1e-3)
    obs = torch.as_tensor(demo.obs)
    act = torch.as_tensor(demo.actions).clamp(-0.999, 0.999)
    loss = torch.tensor(float("nan"))
    for _ in tqdm(range(steps), desc="bc-warmstart", disable=not progress_bar):
        i = torch.randint(0, len(obs), (batch,))
        pred = actor(obs[i], deterministic=True)
        loss = torch.nn.functional.mse_loss(pred, act[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


# ---- the run ---------------------------------------------------------------------------------
def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


class RunState:
    def __init__(self, out: Path):
        self.out = out
        self.evals: list[dict[str, Any]] = []
        self.episodes = 0
        self.successes = 0

    def as_dict(self) -> dict[str, Any]:
        return {"evals": self.evals, "episodes": self.episodes, "successes": self.successes}

    def load(self, d: dict[str, Any]) -> None:
        self.evals, self.episodes, self.successes = d["evals"], d["episodes"], d["successes"]


def save_checkpoint(model, state: RunState, out: Path) -> None:
    """Write model + replay buffer + counters to a temp dir, then swap it in (a kill mid-write
    leaves the previous checkpoint intact)."""
    tmp = out / (CHECKPOINT + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save(tmp / "model.zip")
    if hasattr(model, "replay_buffer") and model.replay_buffer is not None:
        model.save_replay_buffer(tmp / "replay.pkl")
    _atomic_json(tmp / "state.json", {**state.as_dict(), "num_timesteps": int(model.num_timesteps)})
    final, old = out / CHECKPOINT, out / (CHECKPOINT + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def run_rl(cfg: RLConfig) -> dict[str, Any]:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    algo_cls = SAC if cfg.algo == "sac" else PPO
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
    ckpt = out / CHECKPOINT
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
        kwargs: dict[str, Any] = {"n_steps": cfg.n_step}
        if demo is not None and cfg.demo_ratio > 0:
            kwargs = {"replay_buffer_class": DemoMixReplayBuffer,
                      "replay_buffer_kwargs": {"demo": demo, "demo_ratio": cfg.demo_ratio, "n_steps": cfg.n_step,
                                               "gamma": cfg.gamma}}
        grad_steps = max(1, int(round(cfg.utd * cfg.num_envs)))
        model = SAC(env=venv, learning_rate=cfg.lr, buffer_size=cfg.buffer_size,
                    learning_starts=cfg.learning_starts, batch_size=cfg.batch_size, gamma=cfg.gamma,
                    train_freq=1, gradient_steps=grad_steps,
                    policy_kwargs={"net_arch": cfg.hidden, "critic_layer_norm": cfg.critic_layer_norm,
                                   "n_critics": cfg.n_critics},
                    policy=LayerNormSACPolicy, ent_coef=_ent_coef(cfg.ent_coef), seed=cfg.seed, device="cpu", **kwargs)
        if demo is not None and cfg.bc_warmstart_steps > 0:
            bc_warmstart(model, demo, cfg.bc_warmstart_steps, progress_bar=cfg.progress_bar)
    else:
        model = PPO("MlpPolicy", venv, learning_rate=cfg.lr,
                    n_steps=max(16, min(1024, cfg.steps) // cfg.num_envs),
                    batch_size=min(cfg.batch_size, 1024), gamma=cfg.gamma,
                    policy_kwargs={"net_arch": cfg.hidden}, seed=cfg.seed, device="cpu")

    if cfg.algo == "sac" and demo is not None and cfg.bc_weight > 0:
        BCRegularizedAdam.install(model, demo, cfg.bc_weight, cfg.q_filter, cfg.rl_alpha if cfg.rl_alpha > 0 else None,
                                  warmup=0 if resumed else cfg.actor_warmup)

    wb = None
    if cfg.wandb:
        try:
            import wandb

            os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            wb = wandb.init(project="robo-reward", dir=str(out), name=out.name, id=f"{out.name}-rl",
                            resume="allow", config=json.loads((out / "config.json").read_text()))
        except Exception as e:  # noqa: BLE001  (logging must never break a run)
            print(f"wandb disabled: {e}")

    t_start = time.perf_counter()
    timing = {"env_steps": 0, "wall": 0.0}

    def do_eval() -> None:
        r = evaluate_policy(SB3Policy(model=model), cfg.task, cfg.eval_episodes,
                            max_episode_steps=cfg.max_episode_steps, progress_bar=False)
        rec = {"env_steps": int(model.num_timesteps), "online_episodes": state.episodes,
               "success_rate": r["success_rate"], "mean_length": r["mean_length"],
               "eval_episodes": r["episodes"], "train_success_rate": state.successes / max(state.episodes, 1)}
        state.evals.append(rec)
        _atomic_json(out / "eval.json", state.evals)
        if wb is not None:
            wb.log({f"eval/{k}": v for k, v in rec.items()}, step=int(model.num_timesteps))

    class Loop(BaseCallback):
        def __init__(self):
            super().__init__()
            self.bar = tqdm(total=cfg.steps, initial=int(model.num_timesteps), desc=f"rl {cfg.task} {cfg.reward}",
                            disable=not cfg.progress_bar)
            self.next_eval = (model.num_timesteps // cfg.eval_every + 1) * cfg.eval_every
            self.next_ckpt = (model.num_timesteps // cfg.checkpoint_every + 1) * cfg.checkpoint_every

        def _on_step(self) -> bool:
            n = self.model.num_timesteps
            self.bar.update(n - self.bar.n)
            for d, info in zip(self.locals["dones"], self.locals["infos"], strict=True):
                if d:
                    state.episodes += 1
                    state.successes += int(bool(info.get("success", False)))
            if n >= self.next_eval:
                do_eval()
                self.next_eval += cfg.eval_every
                self.bar.set_postfix(success=state.evals[-1]["success_rate"], online_episodes=state.episodes)
            if n >= self.next_ckpt:
                save_checkpoint(self.model, state, out)
                self.next_ckpt += cfg.checkpoint_every
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    remaining = cfg.steps - int(model.num_timesteps)
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=Loop(), reset_num_timesteps=not resumed,
                    progress_bar=False)
    timing["wall"] = time.perf_counter() - t_start
    timing["env_steps"] = remaining
    if not state.evals or state.evals[-1]["env_steps"] != model.num_timesteps:
        do_eval()
    save_checkpoint(model, state, out)
    save_policy(model, out, cfg)
    summary = {"final": state.evals[-1], "evals": state.evals, "episodes": state.episodes,
               "wall_s": timing["wall"], "env_steps_per_s": timing["env_steps"] / max(timing["wall"], 1e-9),
               "potential_s": getattr(venv, "time_in_potential", 0.0),
               # the batched ManiSkill env renders inside its one sim step: no separate figure
               "render_s": (float(sum(e.unwrapped.render_seconds for e in venv.venv.envs))
                            if hasattr(venv.venv, "envs") else None),
               "nan_shaping_steps": shaper.stats.nan_steps, "resumed": resumed}
    if isinstance(getattr(getattr(model, "actor", None), "optimizer", None), BCRegularizedAdam):
        summary["bc_regulariser"] = dict(getattr(model.actor.optimizer, "bc_stats", {}))
    if demo is not None:
        summary["demos"] = {"transitions": len(demo), "episodes": demo.episodes, "successes": demo.successes}
    _atomic_json(out / "summary.json", summary)
    if wb is not None:
        wb.finish()
    venv.close()
    return summary


def _ent_coef(v: str):
    if v == "auto" or v.startswith("auto_"):
        return v
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"--ent-coef: {v!r}; expected auto, auto_<init> or a number") from None


# ---- policy checkpoints ------------------------------------------------------------------------
def save_policy(model, out: Path, cfg: RLConfig) -> None:
    model.save(out / POLICY_FILE)
    _atomic_json(out / POLICY_META, {"kind": "sb3", "algo": cfg.algo, "task": cfg.task,
                                     "observation": "policy_state", "action_space": "ee_delta",
                                     "reward": cfg.reward, "shaping": cfg.shaping})


class LayerNormSACPolicy(SACPolicy):
    """SB3's SAC MLP policy whose critics can put a LayerNorm after each hidden layer (RLPD)."""

    def __init__(self, *args, critic_layer_norm: bool = False, **kwargs):
        self.critic_layer_norm = critic_layer_norm
        super().__init__(*args, **kwargs)

    def make_critic(self, features_extractor=None) -> ContinuousCritic:
        critic = super().make_critic(features_extractor)
        if self.critic_layer_norm:
            in_dim = critic.features_extractor.features_dim + get_action_dim(self.action_space)
            arch = self.critic_kwargs["net_arch"]
            critic.q_networks = []
            for idx in range(critic.n_critics):
                q_net = nn.Sequential(*create_mlp(in_dim, 1, arch, self.activation_fn,
                                                  post_linear_modules=[nn.LayerNorm]))
                critic.add_module(f"qf{idx}", q_net)  # replaces the plain MLP of that name
                critic.q_networks.append(q_net)
        return critic

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "critic_layer_norm": self.critic_layer_norm}


class SB3Policy:
    """A policy written by ``robo-reward rl``: ``act(obs) -> ee_delta action`` on RLObservation dicts."""

    def __init__(self, run: str | Path | None = None, model=None, deterministic: bool = True):
        """``deterministic=False`` samples actions from the policy instead of taking its mean."""
        from stable_baselines3 import PPO, SAC

        self.cameras: tuple[str, ...] = ()
        self.deterministic = deterministic
        if model is not None:  # a live model (evaluation during training)
            self.model, self.meta, self.task = model, {}, None
            return
        run = Path(run)
        meta_path = run / POLICY_META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: missing; expected a run directory written by `robo-reward rl`")
        self.meta = json.loads(meta_path.read_text())
        cls = {"sac": SAC, "ppo": PPO}[self.meta["algo"]]
        self.model = cls.load(run / POLICY_FILE, device="cpu")
        self.task = self.meta["task"]

    needs_state = True  # the actor reads the low-dimensional ``state``

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, Any], env=None) -> np.ndarray:
        return self.model.predict(obs["state"], deterministic=self.deterministic)[0]
