"""Dataset I/O: LeRobotDataset v3 on disk, SARM subtask annotations, per-episode quality."""

from robo_reward.data.lerobot_io import (
    DatasetError,
    DatasetWriter,
    EpisodeMeta,
    load_episode_meta,
    materialize_annotations,
    open_dataset,
    read_dataset_summary,
)

__all__ = [
    "DatasetError",
    "DatasetWriter",
    "EpisodeMeta",
    "load_episode_meta",
    "materialize_annotations",
    "open_dataset",
    "read_dataset_summary",
]
