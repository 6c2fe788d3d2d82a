"""The shaped vector env and the potential a run uses, built from an :class:`RLConfig`."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from robo_reward.envs import TASKS, VEC_ENVS, make_env
from robo_reward.rl.config import RLConfig
from robo_reward.rl.observation import RLObservation
from robo_reward.rl.potentials import GroundTruthPotential, LearnedPotential, Potential, ZeroPotential
from robo_reward.rl.residual_env import ResidualVecEnv, check_init_policy
from robo_reward.rl.shaped_vec_env import ShapedVecEnv
from robo_reward.rl.shaping import Shaper


def make_potential(cfg: RLConfig, num_envs: int) -> Potential | None:
    """Phi for ``--reward``: the ground truth (dense), the reward model(s) (learned) or none (sparse)."""
    if cfg.reward == "dense":
        return GroundTruthPotential()
    if cfg.reward == "learned":
        runs = [r.strip() for r in cfg.reward_model.split(",") if r.strip()]
        for r in runs:
            if not (Path(r) / "config.json").is_file() or not (Path(r) / "model.safetensors").is_file():
                raise FileNotFoundError(f"--reward-model: {r} is not a train-reward run (expected config.json and "
                                        "model.safetensors in it)")
        from robo_reward.utils import parse_camera_map

        potential = LearnedPotential.from_runs(runs, num_envs=num_envs, camera_map=parse_camera_map(cfg.camera_map))
        check_stages(cfg.task, potential.stage_names, cfg.reward_model)
        if potential.needs_state:
            warnings.warn(f"--reward-model={cfg.reward_model} reads proprioception (use_state: true). The policy sets "
                          "the joints directly and can raise such a Phi without doing the task: on push, Phi with "
                          "the joints held at the reset pose reads about 0.006 (benchmarks/learned_vs_true_phi.py "
                          "--state-ablation). For RL, train the reward model with --model.use_state=false.",
                          UserWarning, stacklevel=2)
        return potential
    return None


def check_stages(task: str, stage_names: tuple[str, ...], run: str) -> None:
    """A reward model trained on another task's demos reads progress through the wrong stages:
    refuse it (a one-stage model, trained with linear labels, fits any task)."""
    entry = TASKS.get(task)
    stages = tuple(getattr(entry, "stages", ()) or ())
    if stages and tuple(stage_names) != stages and tuple(stage_names) != ("task",):
        raise ValueError(f"--reward-model={run}: its stages {list(stage_names)} are not task {task!r}'s "
                         f"{list(stages)}; train it on {task} demos")


def make_vec_env(task: str, num_envs: int, potential: Potential | None, shaper: Shaper, seed: int,
                 max_episode_steps: int | None = None, image_size: int = 64, vectorized: str = "auto",
                 init_policy: str | Path | None = None, residual_scale: float = 0.0) -> ShapedVecEnv:
    """SB3 VecEnv of ``task`` that renders only the cameras the potential (and a base policy) read,
    shaped by ``shaper``: a DummyVecEnv of single envs, or for a task with a batched env (ManiSkill
    on a GPU) one batched sim. With ``init_policy``, the agent acts as a residual on that frozen
    policy (:class:`~robo_reward.rl.residual_env.ResidualVecEnv`)."""
    cameras = tuple(potential.cameras) if potential is not None else ()
    if init_policy is not None:
        cameras = tuple(dict.fromkeys([*cameras, *base_cameras(init_policy)]))
    progress = potential is not None and potential.needs_progress
    if use_batched_env(task, vectorized, progress) and init_policy is None:
        if progress:
            raise ValueError("--reward=dense on the batched ManiSkill env: its ground-truth progress is computed "
                             "per env; use --reward=learned or sparse there, or --vectorized=false")
        venv = VEC_ENVS.get(task)(num_envs, cameras, image_size, max_episode_steps, seed)
        return ShapedVecEnv(venv, potential or ZeroPotential(), shaper)

    def thunk(i: int):
        def make():
            env = make_env(task, cameras=cameras, width=image_size, height=image_size,
                           max_episode_steps=max_episode_steps)
            return RLObservation(env, include_progress=progress)
        return make

    venv = DummyVecEnv([thunk(i) for i in range(num_envs)])
    venv.seed(seed)
    if init_policy is not None:
        check_init_policy(init_policy, task, venv.observation_space, venv.action_space.shape[0])
        venv = ResidualVecEnv(venv, init_policy, residual_scale)
    return ShapedVecEnv(venv, potential or ZeroPotential(), shaper)


def base_cameras(run: str | Path) -> tuple[str, ...]:
    import json

    return tuple(json.loads((Path(run) / "policy.json").read_text()).get("cameras") or ())


def use_batched_env(task: str, vectorized: str, needs_progress: bool = False) -> bool:
    """auto: the batched env for tasks that have one (ManiSkill) on a GPU, unless the reward needs the
    per-env ground-truth progress (--reward=dense); true: always (dense is then refused)."""
    if vectorized == "false" or task not in VEC_ENVS:
        return False
    return vectorized == "true" or (torch.cuda.is_available() and not needs_progress)
