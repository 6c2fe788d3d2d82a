"""``robo-reward rl``'s configuration: :class:`RLConfig` (its field docstrings are ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robo_reward.rl.shaping import Shaping
from robo_reward.utils import Choice, WandbMode, as_enum


class RewardKind(Choice):
    """The task reward: success only, plus shaping by the ground-truth progress or by a reward model."""

    SPARSE = "sparse"
    DENSE = "dense"
    LEARNED = "learned"


class Algo(Choice):
    SAC = "sac"
    PPO = "ppo"


@dataclass
class RLConfig:
    task: str = "push"
    """Sim task (push, pick_place, stack)."""
    reward: RewardKind = RewardKind.LEARNED
    """sparse (task success only), dense (ground-truth progress as Phi) or learned (reward model as Phi)."""
    shaping: str = "auto"
    """pbrs, naive, delta or none; auto = pbrs for dense/learned, none for sparse."""
    reward_model: str = ""
    """Run directory of train-reward (comma-separated runs make an ensemble). Needed for --reward=learned."""
    camera_map: str = ""
    """For a reward model trained on cameras named otherwise: <env camera>:<model camera>,..."""
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
    init_policy: Path | None = None
    """Fine-tune this policy (a train-bc run: state or image, chunked) instead of learning from
    scratch: it stays frozen and SAC learns a bounded residual on top (ResFiT), so the run starts
    at the policy's own actions."""
    residual_scale: float = 0.3
    """With --init-policy: the largest residual, in action units ([-1, 1] per axis)."""
    residual_scale_start: float = 0.1
    """With --init-policy: the residual's bound at the start, grown linearly to --residual-scale."""
    residual_grow_episodes: int = 50
    """With --init-policy: online episodes over which the residual's bound grows."""
    residual_penalty: float = 1.0
    """With --init-policy: add this times the mean squared residual (on replayed states) to every
    actor update, so the residual leaves zero only where the critic pays for it. Without it, on
    pick_place with a sparse reward the residual drifted and took a 0.40 base to 0.00 in 20
    online episodes (critics still flat)."""
    refit_every: int = 0
    """Refit the reward model on the policy's own rollouts every this many online episodes,
    labelled only by each episode's success flag (0: never; the model stays frozen)."""
    refit_steps: int = 300
    """Gradient steps of each refit."""
    refit_failure_tail: float = 0.25
    """Share of each failed episode's last frames the refit takes as failure states."""
    algo: Algo = Algo.SAC
    """sac or ppo."""
    steps: int = 20000
    """Environment steps (summed over the parallel envs)."""
    max_episodes: int = 0
    """Stop after this many online episodes (0: run all --steps); the budget fine-tuning is measured in."""
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
    max_nan_share: float = 0.05
    """Stop with an error when the potential is NaN on more than this share of steps (after the
    first 200): a reward model that gives no signal makes the run meaningless."""
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
    eval_every_episodes: int = 0
    """Evaluate every this many online episodes instead (and before the first), if > 0."""
    eval_seed: int = 10_000
    """Evaluation episodes use seeds eval_seed, eval_seed+1, ... (the same for every run)."""
    phi_corr_episodes: int = 0
    """At each evaluation, roll out this many rendered episodes and log the Pearson correlation of
    the learned Phi with the true progress along them (--reward=learned; 0: off)."""
    checkpoint_every: int = 5000
    resume: bool = True
    """Continue from <out>/checkpoint when it exists."""
    wandb: WandbMode = WandbMode.OFFLINE
    """offline (under <out>/wandb; the default), online or disabled (true/false: offline/disabled)."""
    progress_bar: bool = True
    vectorized: str = "auto"
    """ManiSkill tasks: step all --num-envs envs in one batched sim (no per-env Python loop).
    auto = when CUDA is present (physx_cuda) and the reward is sparse or learned; true = also on
    the CPU, where --num-envs must be 1."""

    def __post_init__(self) -> None:
        self.reward = as_enum(RewardKind, self.reward, "--reward")
        self.algo = as_enum(Algo, self.algo, "--algo")
        self.wandb = as_enum(WandbMode, self.wandb, "--wandb")
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
        if self.steps < 1 or self.num_envs < 1:
            raise ValueError(f"--steps/--num-envs: {self.steps}/{self.num_envs}; expected >= 1")
        if (self.bc_weight > 0 or self.bc_warmstart_steps > 0) and self.demos is None:
            raise ValueError("--bc-weight/--bc-warmstart-steps need --demos=DIR")
        if not (0.0 <= self.demo_ratio < 1.0):
            raise ValueError(f"--demo-ratio: {self.demo_ratio}; expected in [0, 1)")
        if not (0.0 <= self.max_nan_share <= 1.0):
            raise ValueError(f"--max-nan-share: {self.max_nan_share}; expected in [0, 1]")
        if not (0.0 < self.gamma <= 1.0):
            raise ValueError(f"--gamma: {self.gamma}; expected in (0, 1]")
        if not (self.value_horizon >= 0):
            raise ValueError(f"--value-horizon: {self.value_horizon}; expected steps >= 0 (0: Phi is the progress)")
        if self.init_policy is not None:
            if self.algo != "sac":
                raise ValueError("--init-policy: fine-tuning is residual SAC; use --algo=sac")
            if not (Path(self.init_policy) / "policy.json").is_file():
                raise FileNotFoundError(f"--init-policy: {self.init_policy}/policy.json missing; expected a run "
                                        "written by `robo-reward train-bc`")
            if not (0 < self.residual_scale_start <= self.residual_scale <= 2):
                raise ValueError(f"--residual-scale-start/--residual-scale: {self.residual_scale_start}/"
                                 f"{self.residual_scale}; expected 0 < start <= scale <= 2")
        if self.refit_every < 0 or (self.refit_every > 0 and self.reward != "learned"):
            raise ValueError(f"--refit-every: {self.refit_every}; expected >= 0, and > 0 only with --reward=learned")
        if self.demos is not None and not (Path(self.demos) / "meta" / "info.json").is_file():
            raise ValueError(f"--demos: {self.demos} is not a LeRobot dataset (no meta/info.json)")

    @property
    def hidden(self) -> list[int]:
        return [int(x) for x in self.net.split(",") if x.strip()]



def ent_coef_value(v: str):
    if v == "auto" or v.startswith("auto_"):
        return v
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"--ent-coef: {v!r}; expected auto, auto_<init> or a number") from None
