"""Dataset I/O: LeRobotDataset v3 on disk (``lerobot_io``), SARM subtask annotations (``labels``),
raw multi-view import (``raw_import``), dataset summaries (``info``), decoded frames at model
resolution (``frames``) and the per-frame table BC reads (``table``).

May import: ``robo_reward.embodiments`` and the rank-0 modules (``registry``, ``envs``, ``stats``).
"""

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
