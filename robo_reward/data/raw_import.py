"""Import raw multi-view recordings (``episode_*/cam_<name>.mp4`` + ``annotated_keyframes.json``
+ ``task_instruction.json``) into the LeRobotDataset layout with SARM annotations.

All or nothing: every episode is read and checked (videos decode, frame counts, sizes and fps
agree within and across episodes, keyframes are in range, ordered and cover the stages) before
anything is written; the dataset is then written in a staging directory beside ``out`` and moved
into place only once complete. A failure at any point leaves ``out`` exactly as it was.

An existing dataset is appended to only with ``append=True``; each imported episode's source
path and content hash are recorded (``meta/robo_reward_imports.json``), and an episode already
imported from the same path with the same content is refused, so a re-run never duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from robo_reward.data.labels import AnnotationError, Segments, temporal_proportions
from robo_reward.data.lerobot_io import (
    STAGES_FILE,
    DatasetError,
    DatasetWriter,
    EpisodeMeta,
    WriterLock,
    features_for,
    is_dataset,
    repair_dataset,
)
from robo_reward.data.video import iter_video, probe_video

IMPORTS_FILE = "meta/robo_reward_imports.json"
INSTRUCTIONS_FILE = "meta/robo_reward_instructions.json"  # task -> every paraphrase the recordings give


@dataclass
class RawEpisode:
    path: Path
    cameras: list[str]
    length: int
    size: tuple[int, int]  # (height, width)
    fps: int
    instructions: list[str]  # the first is the episode's task; the rest are paraphrases
    segments: Segments
    sha256: str

    @property
    def instruction(self) -> str:
        return self.instructions[0]

    def frames(self):
        """The episode's frames as LeRobot frames, decoded again as they are written: one frame of
        each camera in memory at a time."""
        streams = [iter_video(self.path / f"cam_{c}.mp4") for c in self.cameras]
        for views in zip(*streams, strict=True):
            yield {**{f"observation.images.{c}": v for c, v in zip(self.cameras, views, strict=True)},
                   "task": self.instruction}


def content_hash(ep_dir: Path) -> str:
    """SHA-256 over the episode's files (names and bytes, in name order)."""
    h = hashlib.sha256()
    for p in sorted(ep_dir.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0")
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


KEYFRAME_KEYS = ("annotation", "anotation")  # Robo-Dopamine's released data spells it "anotation"


def _read_keyframes(kf_path: Path, length: int, detected: set[str]) -> Segments:
    try:
        kf = json.loads(kf_path.read_text())
        items = sorted(kf, key=lambda x: int(x["start_frame_id"]))
        names = []
        for x in items:
            key = next((k for k in KEYFRAME_KEYS if k in x), None)
            if key is None:
                raise KeyError(f"'annotation' (or 'anotation') in {x}")
            if key != "annotation":
                detected.add(f"keyframe key {key!r}")
            names.append(str(x[key]))
        seg = Segments(tuple(names), tuple(int(x["start_frame_id"]) for x in items),
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
    if seg.shares_boundaries:
        detected.add("shared subtask boundaries (an end equal to the next start is exclusive)")
    seg = seg.normalized(length)
    if seg.starts[0] > 0 or seg.ends[-1] < length - 1:
        detected.add("frames outside every subtask (before: stage 0 at progress 0; after: the last stage at 1)")
    try:
        seg.validate(length, where=str(kf_path))
    except AnnotationError as e:
        raise DatasetError(str(e)) from e
    return seg


def read_instructions(path: Path) -> list[str]:
    """``task_instruction.json``: a string, ``{"task_instruction": ...}`` (or ``instruction``), or a
    list of paraphrases; returns them all (the first is the episode's task)."""
    expected = 'expected a JSON string, {"task_instruction": "..."} or a list of paraphrases'
    try:
        ti = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: missing or malformed ({e}); {expected}") from e
    if isinstance(ti, dict):
        ti = ti.get("task_instruction") or ti.get("instruction")
    texts = ti if isinstance(ti, list) else [ti]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise DatasetError(f"{path}: no instruction text found (got {str(ti)[:80]!r}); {expected}")
    return [t.strip() for t in texts]


def read_raw_episode(ep_dir: Path, cameras: list[str] | None = None,
                     detected: set[str] | None = None) -> RawEpisode:
    """Read and check one episode directory (every video is decoded once; frames are not kept). Its
    instruction comes from ``task_instruction.json`` in the episode, else from the one beside the
    ``episode_*`` directories (Robo-Dopamine's layout)."""
    detected = detected if detected is not None else set()
    vids = sorted(ep_dir.glob("cam_*.mp4"))
    if not vids:
        raise DatasetError(f"{ep_dir}: no cam_<name>.mp4 files; expected at least one camera video")
    counts, fpss, shapes = {}, {}, {}
    for v in vids:
        cam = v.stem.removeprefix("cam_")
        if cameras and cam not in cameras:
            continue
        counts[cam], shapes[cam], fpss[cam] = probe_video(v)
    if cameras:
        missing = [c for c in cameras if c not in counts]
        if missing:
            raise DatasetError(f"{ep_dir}: camera(s) {missing} missing; found {sorted(counts)}")
    if len(set(counts.values())) != 1:
        raise DatasetError(f"{ep_dir}: frame counts differ across cameras {counts}; expected equal counts")
    if len(set(fpss.values())) != 1:
        raise DatasetError(f"{ep_dir}: fps differ across cameras {fpss}; expected one fps")
    if len(set(shapes.values())) != 1:
        raise DatasetError(f"{ep_dir}: frame sizes differ across cameras {shapes}; expected one size")
    length = next(iter(counts.values()))
    seg = _read_keyframes(ep_dir / "annotated_keyframes.json", length, detected)
    ti = ep_dir / "task_instruction.json"
    if not ti.is_file() and (ep_dir.parent / "task_instruction.json").is_file():
        ti = ep_dir.parent / "task_instruction.json"
        detected.add("instruction beside the episodes (shared by all)")
    instructions = read_instructions(ti)
    if len(instructions) > 1:
        detected.add(f"{len(instructions)} paraphrases of the instruction (the first is the task)")
    return RawEpisode(ep_dir, sorted(counts), length, next(iter(shapes.values())), next(iter(fpss.values())),
                      instructions, seg, content_hash(ep_dir))


def check_episodes(episodes: list[RawEpisode], stages: list[str] | None) -> list[str]:
    """Cameras, sizes and fps agree across episodes, and the stages fit every annotation; returns
    the stage order (given, or by first appearance)."""
    first = episodes[0]
    for ep in episodes[1:]:
        for what, mine, theirs in (("cameras", ep.cameras, first.cameras), ("fps", ep.fps, first.fps),
                                   ("frame size (height, width)", ep.size, first.size)):
            if mine != theirs:
                raise DatasetError(f"{ep.path}: {what} {mine} differ from {first.path.name}'s {theirs}; "
                                   f"expected every episode alike")
    if not stages:
        stages = []
        for ep in episodes:
            stages += [n for n in ep.segments.names if n not in stages]
    dup = [s for i, s in enumerate(stages) if s in stages[:i]]
    if dup:
        raise DatasetError(f"--stages: {dup[0]!r} given more than once in {stages}; expected each stage once")
    for ep in episodes:
        unknown = [n for n in ep.segments.names if n not in stages]
        if unknown:
            raise DatasetError(f"{ep.path / 'annotated_keyframes.json'}: subtask(s) {unknown} are not in "
                               f"--stages={','.join(stages)}; expected every annotated subtask among the stages")
    props = temporal_proportions([ep.segments for ep in episodes], stages)
    empty = [s for s, p in props.items() if p <= 0]
    if empty:
        raise DatasetError(f"--stages: stage(s) {empty} have zero duration in every episode; expected each stage "
                           "annotated in at least one episode (drop it from --stages or annotate it)")
    return list(stages)


def read_imports(root: Path) -> list[dict]:
    path = root / IMPORTS_FILE
    if not path.is_file():
        return []
    try:
        return list(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise DatasetError(f"{path}: malformed ({e}); expected a JSON list of imported episodes") from e


def _stage_existing(out: Path, staging: Path) -> None:
    """Copy ``out`` into ``staging``: metadata copied, data and video files hard-linked (LeRobot's
    writer adds new files on resume and never writes into a closed one)."""
    def link_or_copy(src: str, dst: str) -> None:
        rel = Path(src).relative_to(out).parts[0]
        if rel in ("data", "videos"):
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        shutil.copy2(src, dst)

    shutil.copytree(out, staging, copy_function=link_or_copy)


def import_raw(src: str | Path, out: str | Path, stages: list[str] | None = None,
               cameras: list[str] | None = None, append: bool = False, progress: bool = True,
               detected: set[str] | None = None) -> int:
    """Convert every ``episode_*`` under ``src`` into ``out``, all or nothing; returns the number of
    episodes written. ``detected`` collects the layout conventions found (printed by the CLI)."""
    detected = detected if detected is not None else set()
    src, out = Path(src), Path(out)
    _finish_interrupted_swap(out)
    ep_dirs = sorted(p for p in src.glob("episode_*") if p.is_dir())
    if not ep_dirs:
        raise DatasetError(f"{src}: no episode_* directories; expected episode_*/cam_<name>.mp4")
    exists = is_dataset(out)
    if out.exists() and any(out.iterdir()) and not exists:
        raise DatasetError(f"{out}: exists and is not a LeRobot dataset; expected an empty or new directory")
    if exists and not append:
        raise DatasetError(f"{out}: a dataset already exists here; pass --append to add these episodes to it, "
                           "or choose another --out")
    episodes = [read_raw_episode(d, cameras, detected) for d in tqdm(ep_dirs, desc="check raw",
                                                                     disable=not progress)]
    lock = WriterLock(out)
    try:
        if exists:
            repair_dataset(out)  # an interrupted recording is restored before it is appended to
            stages = stages or json.loads((out / STAGES_FILE).read_text())["stages"]
            done = {(r["source"], r["sha256"]) for r in read_imports(out)}
            again = [ep.path for ep in episodes if (str(ep.path.resolve()), ep.sha256) in done]
            if again:
                raise DatasetError(f"{out}: {len(again)} of these {len(episodes)} episodes were already imported "
                                   f"from the same files ({', '.join(p.name for p in again[:3])}"
                                   f"{', ...' if len(again) > 3 else ''}); nothing written")
        stages = check_episodes(episodes, stages)
        staging = out.parent / f".{out.name}.staging"
        if staging.exists():
            shutil.rmtree(staging)  # left by an import that was killed: never part of the dataset
        if exists:
            _stage_existing(out, staging)
        try:
            _write(episodes, staging, stages, progress)
            _swap_into_place(staging, out)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
            (out.parent / f".{staging.name}.lock").unlink(missing_ok=True)
    finally:
        lock.release()
        if not out.exists():  # nothing was imported into a new directory: leave no trace
            lock.path.unlink(missing_ok=True)
    return len(episodes)


def _write(episodes: list[RawEpisode], root: Path, stages: list[str], progress: bool) -> None:
    first = episodes[0]
    feats = features_for(first.cameras, *first.size, [], [])  # raw recordings carry video only
    writer = DatasetWriter(root, first.fps, feats, stages, robot_type="unknown")
    imports = read_imports(root)
    try:
        for ep in tqdm(episodes, desc="write", disable=not progress):
            s = ep.segments
            writer.add_episode(ep.frames(), EpisodeMeta(0, ep.length, list(s.names), list(s.starts), list(s.ends),
                                                        quality="unknown", success=True))
            imports.append({"episode_index": writer.num_episodes - 1, "source": str(ep.path.resolve()),
                            "sha256": ep.sha256})
    finally:
        writer.finalize()
    (root / IMPORTS_FILE).write_text(json.dumps(imports, indent=1))
    path = root / INSTRUCTIONS_FILE
    para = json.loads(path.read_text()) if path.is_file() else {}
    for ep in episodes:
        para[ep.instruction] = list(dict.fromkeys([*para.get(ep.instruction, []), *ep.instructions]))
    path.write_text(json.dumps(para, indent=1))


def _replaced(out: Path) -> Path:
    return out.parent / f".{out.name}.replaced"


def _finish_interrupted_swap(out: Path) -> None:
    """A kill between the two renames of :func:`_swap_into_place` leaves the old dataset aside:
    put it back (the import it was replaced by never finished)."""
    old = _replaced(out)
    if old.exists() and not out.exists():
        os.replace(old, out)
    elif old.exists():
        shutil.rmtree(old)


def _swap_into_place(staging: Path, out: Path) -> None:
    """Move the finished staging directory to ``out``; the old ``out`` is set aside until the move is done."""
    old = _replaced(out)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    if old.exists():
        shutil.rmtree(old)
