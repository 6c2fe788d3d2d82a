"""Write and read robo-reward datasets as LeRobotDataset v3 (parquet + mp4).

Layout on top of LeRobot's own:
- cameras ``observation.images.<cam>`` (video), ``observation.state``, ``action``, ``task``;
- per-episode SARM columns in ``meta/episodes/*.parquet``: ``sparse_subtask_names``,
  ``sparse_subtask_start_frames``, ``sparse_subtask_end_frames`` (inclusive frame indices),
  plus the start/end times LeRobot's annotator also writes; and ``quality`` / ``success``;
- ``meta/temporal_proportions_sparse.json``.

Per-episode facts are first appended (fsync'd) to ``meta/robo_reward_episodes.jsonl`` as each
episode is saved, then materialised into the episodes parquet at finalize, atomically, file by
file. So an interrupted run loses at most the episode in flight, and re-materialising is
idempotent.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robo_reward.data.labels import Segments, temporal_proportions

SIDECAR = "meta/robo_reward_episodes.jsonl"
PROPORTIONS = "meta/temporal_proportions_sparse.json"
STAGES_FILE = "meta/robo_reward_stages.json"


class DatasetError(ValueError):
    """A dataset on disk that is missing, empty or inconsistent."""


@dataclass
class EpisodeMeta:
    episode_index: int
    length: int
    subtask_names: list[str]
    subtask_start_frames: list[int]
    subtask_end_frames: list[int]
    quality: str
    success: bool
    seed: int | None = None

    def segments(self) -> Segments:
        return Segments(tuple(self.subtask_names), tuple(self.subtask_start_frames), tuple(self.subtask_end_frames))


def repo_id_for(root: Path) -> str:
    return f"local/{Path(root).name}"


def _is_dataset(root: Path) -> bool:
    return (root / "meta" / "info.json").is_file()


def open_dataset(root: str | Path, video_backend: str | None = None, **kwargs: Any):
    """Open a dataset with LeRobot's own reader (offline)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    if not _is_dataset(root):
        raise DatasetError(f"{root}: not a LeRobot dataset (no meta/info.json); expected a directory "
                           "written by `robo-reward collect` or `import-raw`")
    return LeRobotDataset(repo_id_for(root), root=root, video_backend=video_backend, **kwargs)


def open_metadata(root: str | Path):
    """A dataset's metadata (info, episodes, tasks) with LeRobot's own reader (offline)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    root = Path(root)
    if not _is_dataset(root):
        raise DatasetError(f"{root}: not a LeRobot dataset (no meta/info.json); expected a directory "
                           "written by `robo-reward collect` or `import-raw`")
    try:
        return LeRobotDatasetMetadata(repo_id_for(root), root=root)
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{root}/meta: unreadable dataset metadata ({type(e).__name__}: {e})") from e


def read_frame_columns(root: str | Path, columns: list[str]) -> pd.DataFrame:
    """The per-frame ``columns`` of every episode (no video), in dataset order, read through
    LeRobot's dataset (its ``hf_dataset``). Missing columns are an error that names them."""
    ds = open_dataset(root)
    have = ds.hf_dataset.column_names
    missing = [c for c in columns if c not in have]
    if missing:
        raise DatasetError(f"{root}/data: column(s) {missing} missing; the dataset has {have}")
    df = ds.hf_dataset.with_format(None).select_columns(columns).to_pandas()
    return df.sort_values("index").reset_index(drop=True) if "index" in df.columns else df


def load_episode_meta(root: str | Path) -> dict[int, EpisodeMeta]:
    path = Path(root) / SIDECAR
    out: dict[int, EpisodeMeta] = {}
    if not path.exists():
        return out
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = EpisodeMeta(**json.loads(line))
        except (json.JSONDecodeError, TypeError) as e:
            # a line cut short by a kill mid-write: ignore it, the episode it describes was not finalized
            if lineno == len(path.read_text().splitlines()):
                continue
            raise DatasetError(f"{path}:{lineno}: unreadable episode record ({e})") from e
        out[rec.episode_index] = rec
    return out


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def materialize_annotations(root: str | Path, stage_names: list[str] | None = None) -> dict[str, float]:
    """Write the SARM columns and quality labels into ``meta/episodes`` and the temporal
    proportions JSON, from the sidecar. Idempotent; each file is replaced atomically."""
    root = Path(root)
    metas = load_episode_meta(root)
    if stage_names is None:
        stage_names = json.loads((root / STAGES_FILE).read_text())["stages"]
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(f"{root}/meta/episodes: no episode files; the dataset is empty")
    fps = json.loads((root / "meta" / "info.json").read_text())["fps"]
    for f in files:
        df = pd.read_parquet(f)
        cols: dict[str, list] = {k: [] for k in (
            "sparse_subtask_names", "sparse_subtask_start_frames", "sparse_subtask_end_frames",
            "sparse_subtask_start_times", "sparse_subtask_end_times", "quality", "success")}
        for ep in df["episode_index"]:
            m = metas.get(int(ep))
            if m is None:
                raise DatasetError(f"{root / SIDECAR}: no record for episode {int(ep)} found in {f}")
            cols["sparse_subtask_names"].append(list(m.subtask_names))
            cols["sparse_subtask_start_frames"].append([int(x) for x in m.subtask_start_frames])
            cols["sparse_subtask_end_frames"].append([int(x) for x in m.subtask_end_frames])
            cols["sparse_subtask_start_times"].append([x / fps for x in m.subtask_start_frames])
            cols["sparse_subtask_end_times"].append([x / fps for x in m.subtask_end_frames])
            cols["quality"].append(m.quality)
            cols["success"].append(bool(m.success))
        for k, v in cols.items():
            df[k] = v
        atomic_write_bytes(f, df.to_parquet(index=False))
    props = temporal_proportions([m.segments() for m in metas.values()], stage_names)
    atomic_write_bytes(root / PROPORTIONS, json.dumps(props, indent=2).encode())
    return props


@contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a flag while an episode is being saved, so a save is never cut
    in half; the caller checks the flag and stops cleanly."""
    caught: list[int] = []
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):  # noqa: ARG001
        caught.append(signum)

    for s in old:
        signal.signal(s, handler)
    try:
        yield caught
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def features_for(cameras: list[str], height: int, width: int, state_names: list[str],
                 action_names: list[str], extra: dict[str, dict] | None = None) -> dict[str, dict]:
    feats: dict[str, dict] = {
        f"observation.images.{c}": {"dtype": "video", "shape": (height, width, 3),
                                     "names": ["height", "width", "channels"]} for c in cameras
    }
    if state_names:
        feats["observation.state"] = {"dtype": "float32", "shape": (len(state_names),), "names": state_names}
    if action_names:
        feats["action"] = {"dtype": "float32", "shape": (len(action_names),), "names": action_names}
    feats.update(extra or {})
    return feats


class DatasetWriter:
    """Create or resume a dataset at ``root`` and append whole episodes.

    Re-opening an existing dataset appends to it (LeRobot's ``resume``), after checking that
    its fps, cameras and features match.
    """

    def __init__(self, root: str | Path, fps: int, features: dict[str, dict], stage_names: list[str],
                 robot_type: str = "so101_follower"):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self.root = Path(root)
        self.stage_names = list(stage_names)
        if _is_dataset(self.root):
            info = json.loads((self.root / "meta" / "info.json").read_text())
            if info["fps"] != fps:
                raise DatasetError(f"{self.root}/meta/info.json: fps is {info['fps']}, this run records at "
                                   f"{fps}; use another --out or the same fps")
            have = {k for k in info["features"] if k not in ("timestamp", "frame_index", "episode_index",
                                                                "index", "task_index")}
            if have != set(features):
                raise DatasetError(f"{self.root}/meta/info.json: features {sorted(have)} differ from this run's "
                                   f"{sorted(features)}; use another --out")
            stages = json.loads((self.root / STAGES_FILE).read_text())["stages"]
            if stages != self.stage_names:
                raise DatasetError(f"{self.root / STAGES_FILE}: stages {stages}, expected {self.stage_names}")
            self._drop_orphan_records(info["total_episodes"])
            self.ds = LeRobotDataset.resume(repo_id_for(self.root), root=self.root)
        else:
            if self.root.exists() and any(self.root.iterdir()):
                raise DatasetError(f"{self.root}: exists and is not a LeRobot dataset; expected an empty or "
                                   "new directory")
            if self.root.exists():
                self.root.rmdir()
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.ds = LeRobotDataset.create(repo_id_for(self.root), fps=fps, features=features, root=self.root,
                                            robot_type=robot_type, use_videos=True, metadata_buffer_size=1)
            atomic_write_bytes(self.root / STAGES_FILE, json.dumps({"stages": self.stage_names}).encode())
        self._finalized = False

    def _drop_orphan_records(self, total_episodes: int) -> None:
        """Keep only sidecar records of episodes LeRobot actually holds."""
        metas = load_episode_meta(self.root)
        keep = [m for i, m in sorted(metas.items()) if i < total_episodes]
        atomic_write_bytes(self.root / SIDECAR, "".join(json.dumps(asdict(m)) + "\n" for m in keep).encode())

    @property
    def num_episodes(self) -> int:
        return int(self.ds.meta.total_episodes)

    def add_episode(self, frames: list[dict[str, Any]], meta: EpisodeMeta) -> None:
        if not frames:
            raise DatasetError("episode: no frames; expected at least one")
        meta.episode_index = self.num_episodes
        meta.length = len(frames)
        meta.segments().validate(len(frames), where=f"episode {meta.episode_index} annotations")
        for fr in frames:
            self.ds.add_frame(fr)
        self.ds.save_episode()
        with open(self.root / SIDECAR, "a") as f:
            f.write(json.dumps(asdict(meta)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def finalize(self) -> dict[str, float] | None:
        if self._finalized:
            return None
        self._finalized = True
        self.ds.finalize()
        if self.num_episodes == 0:
            return None
        return materialize_annotations(self.root, self.stage_names)


def read_dataset_summary(root: str | Path) -> dict[str, Any]:
    """Episodes, frames, cameras, fps, stages, temporal proportions and quality split."""
    root = Path(root)
    if not _is_dataset(root):
        raise DatasetError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    if json.loads((root / "meta" / "info.json").read_text()).get("total_episodes", 0) == 0:
        raise DatasetError(f"{root}: the dataset is empty (0 episodes); expected at least one")
    meta = open_metadata(root)
    metas = load_episode_meta(root)
    props_path = root / PROPORTIONS
    props = json.loads(props_path.read_text()) if props_path.exists() else None
    quality: dict[str, int] = {}
    for m in metas.values():
        quality[m.quality] = quality.get(m.quality, 0) + 1
    return {
        "root": str(root),
        "episodes": meta.total_episodes,
        "frames": meta.total_frames,
        "fps": meta.fps,
        "cameras": sorted(k.removeprefix("observation.images.") for k in meta.video_keys),
        "stages": list(props) if props else None,
        "temporal_proportions": props,
        "quality": quality,
        "success_rate": float(np.mean([m.success for m in metas.values()])) if metas else None,
        "mean_length": float(np.mean([m.length for m in metas.values()])) if metas else None,
    }
