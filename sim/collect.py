"""Collect scripted demonstrations into a LeRobotDataset v3 with SARM subtask annotations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from robo_reward.data.labels import Segments
from robo_reward.data.lerobot_io import DatasetWriter, EpisodeMeta, deferred_interrupts, features_for
from robo_reward.embodiments import EMBODIMENTS
from robo_reward.embodiments.so101.kinematics import ACTION_KEYS
from sim.experts import make_expert, sample_quality
from sim.experts.base import QualityMix
from sim.tasks import make_env
from sim.tasks.base import SO101TaskEnv

POST_SUCCESS_FRAMES = 4  # frames held after success, so the end state is seen
GIVE_UP_FRAMES = 10  # frames held after a stopping-short expert gives up


@dataclass
class Episode:
    frames: list[dict[str, Any]]
    stage_of_frame: list[int]
    success: bool


def run_episode(env: SO101TaskEnv, seed: int, quality, task: str, record_tcp: bool = False) -> Episode:
    """One expert episode as dataset frames; ``record_tcp`` adds ``observation.tcp`` (for robots
    whose embodiment has no kinematics model to recompute it from the joints)."""
    expert = make_expert(task, quality, seed=seed)
    obs, info = env.reset(seed=seed)
    frames: list[dict[str, Any]] = []
    stages: list[int] = []
    tail = None
    success = False
    for _ in range(env.horizon):
        a = expert.act(env)
        stage = expert.stage
        frame = {f"observation.images.{c}": obs["pixels"][c] for c in env.config.cameras}
        frame["observation.state"] = obs["agent_pos"]
        frame["observation.environment_state"] = obs["environment_state"]
        if record_tcp:
            frame["observation.tcp"] = np.asarray(env.tcp_pos, dtype=np.float32)
        frame["gt.stage"] = np.array([info["stage"]], dtype=np.int64)
        frame["gt.progress"] = np.array([info["progress"]], dtype=np.float32)
        obs, _, terminated, truncated, info = env.step(a)
        frame["action"] = env.joint_targets()
        frame["action.ee_delta"] = a.astype(np.float32)
        frame["task"] = env.instruction
        frames.append(frame)
        success = success or info["success"]
        # once the task is done, the remaining frames belong to the last stage
        stages.append(len(env.stages) - 1 if success else stage)
        if tail is None and (terminated or (expert.done and expert.gave_up)):
            tail = POST_SUCCESS_FRAMES if terminated else GIVE_UP_FRAMES
        elif tail is not None:
            tail -= 1
        if truncated or (tail is not None and tail <= 0):
            break
    return Episode(frames, stages, bool(success))


@dataclass
class CollectResult:
    out: Path
    added: int
    total: int
    interrupted: bool
    success_rate: float
    proportions: dict[str, float] | None


def collect(task: str, episodes: int, quality: str, out: str | Path, seed: int = 0,
            cameras: tuple[str, ...] = ("front", "side", "wrist"), width: int = 64, height: int = 64,
            progress: bool = True) -> CollectResult:
    """Collect until the dataset at ``out`` holds ``episodes`` episodes (appending to an existing
    one). Ctrl-C/SIGTERM stop after the episode in flight is discarded; saved ones stay readable."""
    mix = QualityMix(quality)
    env = make_env(task, cameras=tuple(cameras), width=width, height=height)
    fps = env.metadata["render_fps"]
    ee_names = list(getattr(env, "action_names", ("dx", "dy", "dz", "gripper")))  # ManiSkill peg adds dyaw
    extra = {
        "action.ee_delta": {"dtype": "float32", "shape": (len(ee_names),), "names": ee_names},
        "observation.environment_state": {"dtype": "float32", "shape": (env.env_state_dim,), "names": None},
        "gt.stage": {"dtype": "int64", "shape": (1,), "names": None},
        "gt.progress": {"dtype": "float32", "shape": (1,), "names": None},
    }
    record_tcp = not EMBODIMENTS.get(getattr(env, "embodiment", "so101")).has_kinematics
    if record_tcp:  # BC's state needs the TCP, and ManiSkill's Panda ships no kinematics model here
        extra["observation.tcp"] = {"dtype": "float32", "shape": (3,), "names": ["x", "y", "z"]}
    # SO-101 joints in LeRobot units; a ManiSkill robot names its own joints
    names = list(getattr(env, "state_names", ACTION_KEYS))
    feats = features_for(list(env.config.cameras), height, width, names, names, extra)
    writer = DatasetWriter(out, fps, feats, list(env.stages), robot_type=getattr(env, "robot_type", "so101_follower"))
    start = writer.num_episodes
    todo = max(episodes - start, 0)
    successes: list[bool] = []
    interrupted = False
    try:
        with deferred_interrupts() as caught:
            bar = tqdm(total=todo, desc=f"collect {task} ({quality})", disable=not progress, unit="ep")
            for i in range(start, start + todo):
                ep_seed = seed * 100_003 + i
                q = sample_quality(mix, np.random.default_rng([seed, i]), len(env.stages))
                ep = run_episode(env, ep_seed, q, task, record_tcp)
                if caught:
                    interrupted = True
                    break
                seg = Segments.from_stage_per_frame(env.stages, ep.stage_of_frame)
                label = q.label if ep.success or q.label == "failed" else "failed"
                writer.add_episode(ep.frames, EpisodeMeta(
                    episode_index=i, length=len(ep.frames), subtask_names=list(seg.names),
                    subtask_start_frames=list(seg.starts), subtask_end_frames=list(seg.ends),
                    quality=str(label), success=ep.success, seed=ep_seed))
                successes.append(ep.success)
                bar.update(1)
                bar.set_postfix(success=f"{np.mean(successes):.2f}")
                if caught:
                    interrupted = True
                    break
            bar.close()
    finally:
        props = writer.finalize()
        env.close()
    return CollectResult(Path(out), len(successes), writer.num_episodes, interrupted,
                         float(np.mean(successes)) if successes else float("nan"), props)
