"""Recording deploy episodes to a LeRobotDataset, with the reward model's progress per frame."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from real.deploy.config import EpisodeResult
from real.deploy.loop import Deployment

PROGRESS_FILE = "sarm_progress.parquet"
logger = logging.getLogger(__name__)


def is_rollout(quality: str) -> bool:
    """Episodes ``deploy --record`` writes are labelled ``rollout`` (``rollout_unlabelled`` when the
    success is unknown) or ``stopped:<reason>``."""
    return quality.startswith("rollout") or quality.startswith("stopped:")


def check_rollout_dataset(root: Path, append_to_demos: bool) -> None:
    """Refuse to mix rollouts into a dataset of demonstrations, unless asked to."""
    from robo_reward.data.lerobot_io import DatasetError, is_dataset, load_episode_meta

    if append_to_demos or not is_dataset(root):
        return
    demos = {m.quality for m in load_episode_meta(root).values() if not is_rollout(m.quality)}
    if demos:
        raise DatasetError(f"--record={root}: holds demonstrations (quality {', '.join(sorted(demos))}), not rollouts; "
                           "record into another directory, or pass --append-to-demos to add the rollouts to them")


class EpisodeRecorder:
    """Appends deploy episodes to a LeRobotDataset (robo-reward's layout: SARM stage columns from
    the ground truth where the robot knows it, else from the reward model's stages) and keeps
    ``sarm_progress.parquet`` (the reward model's per-frame progress) beside it for RA-BC."""

    def __init__(self, root: Path, fps: int, deployment: Deployment, stage_names: tuple[str, ...],
                 append_to_demos: bool = False):
        from robo_reward.data.lerobot_io import DatasetWriter

        check_rollout_dataset(Path(root), append_to_demos)
        from robo_reward.embodiments.so101.kinematics import ACTION_KEYS

        feats = deployment.robot.observation_features
        features: dict[str, dict] = {
            f"observation.images.{c}": {"dtype": "video", "shape": tuple(feats[c]),
                                        "names": ["height", "width", "channels"]} for c in deployment.robot_cameras}
        features["observation.state"] = {"dtype": "float32", "shape": (6,), "names": list(ACTION_KEYS)}
        features["action"] = {"dtype": "float32", "shape": (6,), "names": list(ACTION_KEYS)}
        features["action.ee_delta"] = {"dtype": "float32", "shape": (4,), "names": ["dx", "dy", "dz", "gripper"]}
        if deployment.has_env_state:
            features["observation.environment_state"] = {"dtype": "float32",
                                                         "shape": tuple(feats["environment_state"]), "names": None}
        if deployment.potential is not None:
            features["reward.progress"] = {"dtype": "float32", "shape": (1,), "names": None}
            features["reward.stage"] = {"dtype": "int64", "shape": (1,), "names": None}
        if deployment.sim:
            features["gt.progress"] = {"dtype": "float32", "shape": (1,), "names": None}
            features["gt.stage"] = {"dtype": "int64", "shape": (1,), "names": None}
        self.root = Path(root)
        self.stage_names = tuple(stage_names)
        self.writer = DatasetWriter(self.root, fps, features, list(self.stage_names),
                                    robot_type=getattr(deployment.robot, "name", "so101_follower"))
        self.has_progress = deployment.potential is not None
        self.saved = 0

    def save(self, frames: list[dict[str, Any]], res: EpisodeResult, instruction: str) -> int:
        from robo_reward.data.labels import Segments
        from robo_reward.data.lerobot_io import EpisodeMeta

        if "gt.stage" in frames[0]:
            stage = [int(f["gt.stage"][0]) for f in frames]
            if res.success:  # as in collect: once the task is done the rest is the last stage
                stage[-1] = len(self.stage_names) - 1
        elif "reward.stage" in frames[0]:
            stage = [max(int(f["reward.stage"][0]), 0) for f in frames]
        else:
            stage = [0] * len(frames)
        seg = Segments.from_stage_per_frame(self.stage_names, stage)
        quality = "rollout" if res.stop_reason is None else f"stopped:{res.stop_reason}"
        if res.success is None:  # a real robot's episode the operator did not label
            quality = "rollout_unlabelled" if res.stop_reason is None else quality
        for f in frames:
            f["task"] = instruction
        meta = EpisodeMeta(episode_index=0, length=len(frames), subtask_names=list(seg.names),
                           subtask_start_frames=list(seg.starts), subtask_end_frames=list(seg.ends),
                           quality=quality, success=bool(res.success), seed=res.seed)
        self.writer.add_episode(frames, meta)
        self.saved += 1
        return meta.episode_index

    def finalize(self) -> None:
        self.writer.finalize()
        if self.has_progress and self.writer.num_episodes:
            self._write_progress()
        elif self.saved and (self.root / PROGRESS_FILE).is_file():
            stale = self.root / f"{PROGRESS_FILE}.stale"
            (self.root / PROGRESS_FILE).replace(stale)  # kept, but never read as if it covered the new episodes
            logger.warning("%s: covered the episodes before this run only (this run has no --reward-model); moved "
                           "to %s. Re-run `robo-reward annotate-progress --dataset=%s` before RA-BC",
                           self.root / PROGRESS_FILE, stale.name, self.root)

    def _write_progress(self) -> None:
        from robo_reward.data.lerobot_io import atomic_write_bytes, read_frame_columns

        df = read_frame_columns(self.root, ["index", "episode_index", "frame_index", "reward.progress"])
        df["progress_sparse"] = [float(np.asarray(v).reshape(-1)[0]) for v in df.pop("reward.progress")]
        atomic_write_bytes(self.root / PROGRESS_FILE, df.sort_values("index").to_parquet(index=False))
