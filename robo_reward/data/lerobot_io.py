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
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robo_reward.data.labels import Segments, temporal_proportions
from robo_reward.data.recovery import RepairRefused, RepairReport, read_commit, repair, write_commit

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


@contextmanager
def _progress_bars_kept() -> Iterator[None]:
    """LeRobot's loaders switch ``datasets``' progress bars back on when they finish
    (``SuppressProgressBars``); keep them the way the caller had them."""
    from datasets.utils.logging import disable_progress_bar, is_progress_bar_enabled

    was = is_progress_bar_enabled()
    try:
        yield
    finally:
        if not was:
            disable_progress_bar()


def repo_id_for(root: Path) -> str:
    return f"local/{Path(root).name}"


def is_dataset(root: Path) -> bool:
    return (root / "meta" / "info.json").is_file()


def read_info(root: str | Path) -> dict[str, Any]:
    """``meta/info.json``, parsed; a missing or malformed file is an error that names it."""
    path = Path(root) / "meta" / "info.json"
    if not path.is_file():
        raise DatasetError(f"{root}: not a LeRobot dataset (no meta/info.json); expected a directory "
                           "written by `robo-reward collect` or `import-raw`")
    try:
        info = json.loads(path.read_text())
        int(info["fps"]), dict(info["features"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{path}: malformed ({type(e).__name__}: {e}); expected LeRobot's info.json with fps and "
                           f"features (`robo-reward repair {root}` restores it if the dataset was recorded here)") from e
    return info


def open_dataset(root: str | Path, video_backend: str | None = None, **kwargs: Any):
    """Open a dataset with LeRobot's own reader (offline)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = Path(root)
    ensure_complete(root)
    read_info(root)
    with _progress_bars_kept():
        return LeRobotDataset(repo_id_for(root), root=root, video_backend=video_backend, **kwargs)


def open_metadata(root: str | Path):
    """A dataset's metadata (info, episodes, tasks) with LeRobot's own reader (offline)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    root = Path(root)
    ensure_complete(root)
    read_info(root)
    try:
        with _progress_bars_kept():
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
    proportions JSON, from the sidecar, and compact the episodes table into one file (see
    :func:`compact_episodes`). Idempotent; each file is replaced atomically."""
    root = Path(root)
    metas = load_episode_meta(root)
    if stage_names is None:
        stage_names = json.loads((root / STAGES_FILE).read_text())["stages"]
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise DatasetError(f"{root}/meta/episodes: no episode files; the dataset is empty")
    fps = read_info(root)["fps"]
    df = episodes_table(files)
    cols: dict[str, list] = {k: [] for k in (
        "sparse_subtask_names", "sparse_subtask_start_frames", "sparse_subtask_end_frames",
        "sparse_subtask_start_times", "sparse_subtask_end_times", "quality", "success")}
    for ep in df["episode_index"]:
        m = metas.get(int(ep))
        if m is None:
            raise DatasetError(f"{root / SIDECAR}: no record for episode {int(ep)} found in {root}/meta/episodes")
        cols["sparse_subtask_names"].append(list(m.subtask_names))
        cols["sparse_subtask_start_frames"].append([int(x) for x in m.subtask_start_frames])
        cols["sparse_subtask_end_frames"].append([int(x) for x in m.subtask_end_frames])
        cols["sparse_subtask_start_times"].append([x / fps for x in m.subtask_start_frames])
        cols["sparse_subtask_end_times"].append([x / fps for x in m.subtask_end_frames])
        cols["quality"].append(m.quality)
        cols["success"].append(bool(m.success))
    for k, v in cols.items():
        df[k] = v
    compact_episodes(root, df, files)
    props = temporal_proportions([m.segments() for m in metas.values()], stage_names)
    atomic_write_bytes(root / PROPORTIONS, json.dumps(props, indent=2).encode())
    return props


def episodes_table(files: list[Path]) -> pd.DataFrame:
    """Every episode's row of ``meta/episodes``, once each (a compaction cut short leaves the
    compacted file beside the per-episode files it replaces), in episode order."""
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.drop_duplicates("episode_index", keep="first").sort_values("episode_index").reset_index(drop=True)


def compact_episodes(root: Path, df: pd.DataFrame, files: list[Path]) -> None:
    """Make ``df`` the whole episodes table, in ``meta/episodes/chunk-000/file-000.parquet``.

    The writer saves each episode's metadata in a file of its own (closed files are what make
    it crash-safe); a finished dataset has them in one file, as LeRobot's own recorder leaves
    them, so LeRobot's tools that index the table by episode (its SARM annotator's
    ``save_annotations_to_dataset``) work on it. Crash-safe: the compacted file is written
    first (over episode 0's, atomically), then the commit stops listing the others, then they
    are deleted; a kill at any point leaves a dataset that repair and a re-run complete."""
    from robo_reward.data.recovery import commit_without

    df = df.copy()
    df["meta/episodes/chunk_index"] = 0
    df["meta/episodes/file_index"] = 0
    target = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, df.to_parquet(index=False))
    others = [f for f in files if f.resolve() != target.resolve()]
    if others:
        commit_without(root, [f.relative_to(root).as_posix() for f in others], atomic_write_bytes)
        for f in others:
            f.unlink(missing_ok=True)
        for d in sorted((root / "meta" / "episodes").glob("chunk-*")):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()


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
    """Create or resume a dataset at ``root`` and append whole episodes, crash-safely.

    Re-opening an existing dataset appends to it (LeRobot's ``resume``), after repairing an
    interrupted recording and checking that its fps, cameras and features match. After every
    episode LeRobot's writers are closed and the episode is committed (see
    :mod:`robo_reward.data.recovery`): whatever kills the process afterwards, every episode
    whose ``add_episode`` returned stays readable, and a re-run continues after it.
    """

    def __init__(self, root: str | Path, fps: int, features: dict[str, dict], stage_names: list[str],
                 robot_type: str = "so101_follower"):
        self.root = Path(root)
        self.stage_names = list(stage_names)
        self.fps, self.features, self.robot_type = fps, features, robot_type
        self.ds = None
        self.repair_report = None
        self.lock = WriterLock(self.root)
        if is_dataset(self.root):
            self.repair_report = repair_dataset(self.root)
            if self._count_episodes() == 0:  # interrupted before its first episode: start again
                self._wipe()
        if is_dataset(self.root):
            self._check_compatible(fps, features)
            self.records = [asdict(m) for _, m in sorted(load_episode_meta(self.root).items())]
            self.records = self.records[: self._count_episodes()]
            if read_commit(self.root) is None:  # written before commits existed: take it as it is
                atomic_write_bytes(self.root / SIDECAR, "".join(json.dumps(r) + "\n" for r in self.records).encode())
            write_commit(self.root, self.records, atomic_write_bytes)  # opens the session: unfinished
        else:
            self._create()
        self._finalized = False

    def _create(self) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        if self.root.exists() and any(self.root.iterdir()):
            raise DatasetError(f"{self.root}: exists and is not a LeRobot dataset; expected an empty or "
                               "new directory")
        if self.root.exists():
            self.root.rmdir()
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.ds = LeRobotDataset.create(repo_id_for(self.root), fps=self.fps, features=self.features,
                                        root=self.root, robot_type=self.robot_type, use_videos=True,
                                        metadata_buffer_size=1)
        atomic_write_bytes(self.root / STAGES_FILE, json.dumps({"stages": self.stage_names}).encode())
        self.records: list[dict[str, Any]] = []
        write_commit(self.root, self.records, atomic_write_bytes)

    def _wipe(self) -> None:
        """Remove a dataset that holds no complete episode (only LeRobot's and our own files)."""
        for d in ("meta", "data", "videos", "images"):
            if (self.root / d).exists():
                shutil.rmtree(self.root / d)

    def _count_episodes(self) -> int:
        return int(read_info(self.root).get("total_episodes", 0))

    def _check_compatible(self, fps: int, features: dict[str, dict]) -> None:
        info = read_info(self.root)
        if info["fps"] != fps:
            raise DatasetError(f"{self.root}/meta/info.json: fps is {info['fps']}, this run records at "
                               f"{fps}; use another --out or the same fps")
        have = {k for k in info["features"] if k not in ("timestamp", "frame_index", "episode_index",
                                                            "index", "task_index")}
        if have != set(features):
            raise DatasetError(f"{self.root}/meta/info.json: features differ from this run's (only in the dataset: "
                               f"{sorted(have - set(features))}, only in this run: {sorted(set(features) - have)}); "
                               "write to another directory")
        for k, f in features.items():
            old = tuple(info["features"][k]["shape"])
            if f["dtype"] == "video" and old != tuple(f["shape"]):
                raise DatasetError(f"{self.root}/meta/info.json: {k} is {old[0]}x{old[1]} (height x width), this run "
                                   f"records {f['shape'][0]}x{f['shape'][1]}; pass --height={old[0]} --width={old[1]} "
                                   "or use another --out")
        stages = json.loads((self.root / STAGES_FILE).read_text())["stages"]
        if stages != self.stage_names:
            raise DatasetError(f"{self.root / STAGES_FILE}: stages {stages}, this run's task has {self.stage_names} "
                               "(a dataset of another task?); use another --out")

    def _open(self):
        """LeRobot's writer, resumed into new files after the last committed episode."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        if self.ds is None:
            with _progress_bars_kept():
                self.ds = LeRobotDataset.resume(repo_id_for(self.root), root=self.root)
        return self.ds

    @property
    def num_episodes(self) -> int:
        return len(self.records)

    def add_episode(self, frames: list[dict[str, Any]] | Iterator[dict[str, Any]], meta: EpisodeMeta) -> None:
        """Save one episode and commit it; when this returns, the episode survives any crash.
        ``frames`` may be a stream (an iterator, with ``meta.length`` set): LeRobot's writer takes one
        frame at a time, so memory does not grow with the episode."""
        if isinstance(frames, list):
            if not frames:
                raise DatasetError("episode: no frames; expected at least one")
            meta.length = len(frames)
        elif meta.length < 1:
            raise DatasetError("episode: a stream of frames needs meta.length (its frame count)")
        meta.episode_index = self.num_episodes
        meta.segments().validate(meta.length, where=f"episode {meta.episode_index} annotations")
        t0 = time.perf_counter()
        ds = self._open()
        t1 = time.perf_counter()
        n = 0
        for fr in frames:
            ds.add_frame(fr)
            n += 1
        if n != meta.length:
            ds.clear_episode_buffer()
            raise DatasetError(f"episode {meta.episode_index}: {n} frames streamed, {meta.length} expected")
        ds.save_episode()
        t2 = time.perf_counter()
        ds.finalize()  # closes the parquet writers: the episode's files are complete on disk
        self.ds = None  # the next episode resumes into new files; closed ones are never reopened
        self.records.append(asdict(meta))
        write_commit(self.root, self.records, atomic_write_bytes)  # the commit point
        with open(self.root / SIDECAR, "a") as f:
            f.write(json.dumps(asdict(meta)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.last_timing = {"save_s": t2 - t1, "safety_s": (t1 - t0) + (time.perf_counter() - t2)}

    def finalize(self) -> dict[str, float] | None:
        if self._finalized:
            return None
        self._finalized = True
        if self.ds is not None:
            self.ds.finalize()
            self.ds = None
        try:
            if self.num_episodes == 0:
                return None
            props = materialize_annotations(self.root, self.stage_names)
            write_commit(self.root, self.records, atomic_write_bytes, finalized=True)
            return props
        finally:
            self.lock.release()


_LOCKS_HELD: set[str] = set()  # datasets this process is writing (POSIX locks do not conflict within one)


class WriterLock:
    """An exclusive lock beside a dataset (``.<name>.lock``) while one process writes it, so a
    reader never repairs a recording that is still going on. A POSIX record lock: the OS drops it
    when the writer dies, and the processes it forked (LeRobot's video encoders) do not inherit it."""

    def __init__(self, root: Path):
        import fcntl

        root.parent.mkdir(parents=True, exist_ok=True)
        self.path = root.parent / f".{root.name}.lock"
        self.key = str(self.path.resolve())
        self.fd = None
        if self.key in _LOCKS_HELD:
            raise DatasetError(f"{root}: this process is already writing this dataset (lock {self.path})")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DatasetError(f"{root}: another process is writing this dataset (lock {self.path}); wait for "
                               "it to finish or stop it") from None
        self.fd = fd
        _LOCKS_HELD.add(self.key)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file drops the POSIX lock
            self.fd = None
            _LOCKS_HELD.discard(self.key)

    def __del__(self) -> None:
        self.release()


def ensure_complete(root: str | Path) -> RepairReport | None:
    """Repair an interrupted recording before reading it, unless a live writer holds it."""
    root = Path(root)
    if read_commit(root) is None:
        return None
    try:
        lock = WriterLock(root)
    except DatasetError:
        return None  # being written right now: leave it alone
    try:
        return repair_dataset(root)
    finally:
        lock.release()


def repair_dataset(root: str | Path, log: bool = True) -> RepairReport:
    """Restore an interrupted recording to its last complete episode (see
    :mod:`robo_reward.data.recovery`), saying what was found; a no-op on a complete dataset."""
    try:
        report = repair(root, atomic_write_bytes, SIDECAR)
    except RepairRefused as e:
        raise DatasetError(str(e)) from e
    if (report.interrupted or report.restored) and log:
        logging.getLogger(__name__).warning("%s", report.describe())
    if report.interrupted and report.episodes > 0:  # the run never finished: write its annotations now
        materialize_annotations(root)
        commit = read_commit(Path(root))
        write_commit(Path(root), commit["records"], atomic_write_bytes, finalized=True)
    return report


def read_dataset_summary(root: str | Path) -> dict[str, Any]:
    """Episodes, frames, cameras, fps, stages, temporal proportions and quality split."""
    root = Path(root)
    if read_info(root).get("total_episodes", 0) == 0:
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
