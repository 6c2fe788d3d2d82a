"""Import raw multi-view recordings (``episode_*/cam_<name>.mp4`` + ``annotated_keyframes.json``
+ ``task_instruction.json``) into the LeRobotDataset layout with SARM annotations.

Everything is checked before anything is written, so a bad episode never leaves a half-written
dataset: differing frame counts across cameras, keyframes out of range or overlapping, and
unreadable videos are refused with the file and the problem named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robo_reward.data.labels import AnnotationError, Segments
from robo_reward.data.lerobot_io import DatasetError, DatasetWriter, EpisodeMeta, features_for
from robo_reward.data.video import read_video


@dataclass
class RawEpisode:
    path: Path
    videos: dict[str, np.ndarray]  # cam -> (T, H, W, 3) uint8
    fps: int
    instruction: str
    segments: Segments


def read_raw_episode(ep_dir: Path, cameras: list[str] | None = None) -> RawEpisode:
    vids = sorted(ep_dir.glob("cam_*.mp4"))
    if not vids:
        raise DatasetError(f"{ep_dir}: no cam_<name>.mp4 files; expected at least one camera video")
    videos, fpss = {}, {}
    for v in vids:
        cam = v.stem.removeprefix("cam_")
        if cameras and cam not in cameras:
            continue
        videos[cam], fpss[cam] = read_video(v)
    if cameras:
        missing = [c for c in cameras if c not in videos]
        if missing:
            raise DatasetError(f"{ep_dir}: camera(s) {missing} missing; found {sorted(videos)}")
    counts = {c: len(v) for c, v in videos.items()}
    if len(set(counts.values())) != 1:
        raise DatasetError(f"{ep_dir}: frame counts differ across cameras {counts}; expected equal counts")
    if len(set(fpss.values())) != 1:
        raise DatasetError(f"{ep_dir}: fps differ across cameras {fpss}; expected one fps")
    shapes = {c: v.shape[1:] for c, v in videos.items()}
    if len(set(shapes.values())) != 1:
        raise DatasetError(f"{ep_dir}: frame sizes differ across cameras {shapes}; expected one size")
    length = next(iter(counts.values()))
    kf_path = ep_dir / "annotated_keyframes.json"
    try:
        kf = json.loads(kf_path.read_text())
        items = sorted(kf, key=lambda x: int(x["start_frame_id"]))
        seg = Segments(tuple(str(x["annotation"]) for x in items),
                       tuple(int(x["start_frame_id"]) for x in items),
                       tuple(int(x["end_frame_id"]) for x in items))
    except FileNotFoundError as e:
        raise DatasetError(f"{kf_path}: missing; expected a list of {{annotation, start_frame_id, "
                           "end_frame_id}}") from e
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{kf_path}: malformed ({type(e).__name__}: {e}); expected a list of "
                           "{annotation, start_frame_id, end_frame_id}") from e
    repeated = [n for i, n in enumerate(seg.names) if n in seg.names[:i]]
    if repeated:
        raise DatasetError(f"{kf_path}: subtask {repeated[0]!r} appears more than once in {list(seg.names)}; "
                           "expected each subtask once, in order (a repeat makes the progress labels run backwards)")
    try:
        seg.validate(length, where=str(kf_path))
    except AnnotationError as e:
        raise DatasetError(str(e)) from e
    ti_path = ep_dir / "task_instruction.json"
    try:
        ti = json.loads(ti_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise DatasetError(f"{ti_path}: missing or malformed ({e}); expected a JSON string or "
                           '{"task_instruction": "..."}') from e
    instruction = ti if isinstance(ti, str) else ti.get("task_instruction") or ti.get("instruction") if isinstance(
        ti, dict) else ti[0] if isinstance(ti, list) and ti else None
    if not isinstance(instruction, str) or not instruction:
        raise DatasetError(f"{ti_path}: no instruction text found; expected a JSON string or "
                           '{"task_instruction": "..."}')
    return RawEpisode(ep_dir, videos, next(iter(fpss.values())), instruction, seg)


def import_raw(src: str | Path, out: str | Path, stages: list[str] | None = None,
               cameras: list[str] | None = None, progress: bool = True) -> int:
    """Convert every ``episode_*`` under ``src``; returns the number of episodes written."""
    src = Path(src)
    ep_dirs = sorted(p for p in src.glob("episode_*") if p.is_dir())
    if not ep_dirs:
        raise DatasetError(f"{src}: no episode_* directories; expected episode_*/cam_<name>.mp4")
    # validate everything first: nothing is written if any episode is bad
    episodes = [read_raw_episode(d, cameras) for d in tqdm(ep_dirs, desc="read raw", disable=not progress)]
    cams = sorted(episodes[0].videos)
    for ep in episodes[1:]:
        if sorted(ep.videos) != cams:
            raise DatasetError(f"{ep.path}: cameras {sorted(ep.videos)} differ from {ep_dirs[0]}'s {cams}")
        if ep.fps != episodes[0].fps:
            raise DatasetError(f"{ep.path}: fps {ep.fps} differs from {ep_dirs[0]}'s {episodes[0].fps}")
    if stages is None:  # stage order: by first appearance across episodes
        stages = []
        for ep in episodes:
            for n in ep.segments.names:
                if n not in stages:
                    stages.append(n)
    h, w = episodes[0].videos[cams[0]].shape[1:3]
    feats = features_for(cams, h, w, [], [])  # raw recordings carry video only
    writer = DatasetWriter(out, episodes[0].fps, feats, list(stages), robot_type="unknown")
    try:
        for ep in tqdm(episodes, desc="write", disable=not progress):
            n = len(next(iter(ep.videos.values())))
            frames = [{**{f"observation.images.{c}": ep.videos[c][t] for c in cams}, "task": ep.instruction}
                      for t in range(n)]
            writer.add_episode(frames, EpisodeMeta(0, n, list(ep.segments.names), list(ep.segments.starts),
                                                   list(ep.segments.ends), quality="unknown", success=True))
    finally:
        writer.finalize()
    return len(episodes)
