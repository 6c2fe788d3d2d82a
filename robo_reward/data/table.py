"""The per-frame table BC, RA-BC and demo replay read from a dataset written by ``collect``, and
the ``sarm_progress.parquet`` progress file checked against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from robo_reward.data.lerobot_io import DatasetError, open_metadata, read_frame_columns
from robo_reward.envs import task_instructions


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
    tcp: np.ndarray | None = None  # observation.tcp, where the robot's kinematics are not shipped

    @property
    def episodes(self) -> np.ndarray:
        return np.unique(self.episode_index)


def task_of_dataset(root: Path) -> str:
    """The sim task whose instruction the dataset records."""
    tasks = open_metadata(root).tasks
    names = list(tasks.index) if "task" not in tasks.columns else list(tasks["task"])
    known = task_instructions()
    for name, instruction in known.items():
        if instruction in names:
            return name
    raise DatasetError(f"{root}/meta/tasks.parquet: instruction(s) {names} match no sim task "
                       f"(known: {sorted(known)}); pass --task")


def load_frame_table(root: str | Path, task: str = "") -> FrameTable:
    root = Path(root)
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(f"{root}/data: no parquet files; expected a LeRobot dataset with episodes")
    need = ["observation.state", "observation.environment_state", "action.ee_delta"]
    have = open_metadata(root).features
    missing = [c for c in need if c not in have]
    if missing:
        raise DatasetError(f"{root}: column(s) {missing} missing; BC needs a dataset written by `robo-reward collect`")
    optional = [c for c in ("gt.progress", "observation.tcp") if c in have]
    df = read_frame_columns(root, ["index", "episode_index", "frame_index", *need, *optional])
    if len(df) == 0:
        raise DatasetError(f"{root}: the dataset is empty (0 frames)")
    gt = np.stack(df["gt.progress"].to_numpy()).reshape(-1) if "gt.progress" in df.columns else None
    return FrameTable(root, df["index"].to_numpy(np.int64), df["episode_index"].to_numpy(np.int64),
                      df["frame_index"].to_numpy(np.int64), np.stack(df["observation.state"].to_numpy()),
                      np.stack(df["observation.environment_state"].to_numpy()),
                      np.stack(df["action.ee_delta"].to_numpy()).astype(np.float32), gt,
                      task or task_of_dataset(root),
                      np.stack(df["observation.tcp"].to_numpy()) if "observation.tcp" in df.columns else None)


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
