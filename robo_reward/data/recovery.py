"""Crash safety for recorded datasets: a commit record per saved episode, and repair.

LeRobot writes the footers of a dataset's parquet files only when its writers close, and it
rewrites ``meta/info.json``, ``meta/stats.json`` and ``meta/tasks.parquet`` in place, so a
kill -9 mid-recording leaves files no reader can open. :class:`~robo_reward.data.lerobot_io.DatasetWriter`
therefore closes LeRobot's writers after every episode (finalize, then resume into new files:
LeRobot never reopens a closed file) and then commits the episode by writing, atomically, one
record (``meta/robo_reward_commit.json``) of

- how many episodes are complete and their per-episode annotations,
- the bytes of the small metadata files LeRobot rewrites,
- every file under ``data/``, ``meta/episodes/`` and ``videos/`` at that moment,
- whether the run has finished (its annotations written into the episodes table).

A save that returned is in that record; anything else on disk belongs to the episode in flight.
A writing session opens with an unfinished commit and closes with a finished one, so an
interrupted session is known without looking at the files. :func:`repair` puts such a dataset
back to its last commit: it restores the metadata files, deletes
the files the commit does not list (and LeRobot's temporary frames), and rewrites the episode
sidecar. A file the commit lists that is missing or unreadable is refused with its name: a
repair never guesses.
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMMIT = "meta/robo_reward_commit.json"
META_FILES = ("meta/info.json", "meta/stats.json", "meta/tasks.parquet")
DATA_DIRS = ("data", "meta/episodes", "videos")
TEMP_DIRS = ("images",)


class RepairRefused(RuntimeError):
    """A dataset cannot be repaired without losing a complete episode (a committed file is damaged)."""


@dataclass
class RepairReport:
    root: Path
    episodes: int
    interrupted: bool
    finalized: bool = True
    removed: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if not self.interrupted and self.restored:
            return f"{self.root}: complete, {self.episodes} episode(s); restored damaged {', '.join(self.restored)}"
        if not self.interrupted:
            return f"{self.root}: complete, {self.episodes} episode(s); nothing to repair"
        parts = [f"{self.root}: interrupted recording; kept the {self.episodes} complete episode(s)"]
        if self.removed:
            parts.append(f"removed {len(self.removed)} file(s) of the episode in flight ({', '.join(self.removed[:4])}"
                         + (", ..." if len(self.removed) > 4 else "") + ")")
        if self.restored:
            parts.append(f"restored {', '.join(self.restored)}")
        return "; ".join(parts)


def dataset_files(root: Path) -> list[str]:
    """Every file under the dataset's data, episode-metadata and video folders, relative and sorted."""
    out = []
    for d in DATA_DIRS:
        base = root / d
        if base.is_dir():
            out += [p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file()]
    return sorted(out)


def write_commit(root: Path, records: list[dict[str, Any]], atomic_write, finalized: bool = False) -> None:
    """Commit the dataset as it is now (every writer closed): ``records`` are the complete episodes'
    annotations, in order; ``finalized`` once the run has also written its annotations."""
    meta = {}
    for rel in META_FILES:
        p = root / rel
        if p.is_file():
            meta[rel] = base64.b64encode(p.read_bytes()).decode()
    commit = {"version": 1, "episodes": len(records), "records": records, "meta": meta,
              "files": dataset_files(root), "finalized": finalized}
    atomic_write(root / COMMIT, json.dumps(commit).encode())


def commit_without(root: Path, removed: list[str], atomic_write) -> None:
    """Rewrite the last commit with ``removed`` files dropped from its list (they are about to be
    deleted, their content kept elsewhere), so a repair after a kill deletes rather than misses them."""
    commit = read_commit(root)
    if commit is None:
        return
    gone = set(removed)
    commit["files"] = [f for f in commit["files"] if f not in gone]
    atomic_write(root / COMMIT, json.dumps(commit).encode())


def read_commit(root: Path) -> dict[str, Any] | None:
    path = root / COMMIT
    if not path.is_file():
        return None
    try:
        commit = json.loads(path.read_text())
        int(commit["episodes"]), list(commit["files"]), dict(commit["meta"]), list(commit["records"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        # written atomically, so a damaged one was damaged by something else: refuse
        raise RepairRefused(f"{path}: unreadable commit record ({e}); the dataset cannot be checked") from e
    return commit


def is_interrupted(root: Path, commit: dict[str, Any] | None = None) -> bool:
    """Whether a recording session on the dataset did not finish: a writer opens a session by
    writing an unfinished commit before it touches LeRobot's files, and closes it at finalize. A
    finished dataset is never repaired, so edits made to it afterwards are the user's own."""
    commit = commit if commit is not None else read_commit(root)
    return commit is not None and not commit.get("finalized", True)


def _check_committed_file(root: Path, rel: str) -> None:
    p = root / rel
    if not p.is_file():
        raise RepairRefused(f"{p}: missing, but it holds a complete episode; restore it from a backup")
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            pq.ParquetFile(p).metadata  # noqa: B018  (reads the footer)
        except Exception as e:  # noqa: BLE001  (any reader error means the same: damaged)
            raise RepairRefused(f"{p}: unreadable ({type(e).__name__}: {e}), but it holds a complete episode; "
                                "restore it from a backup") from e


def _restore_damaged_json(root: Path, commit: dict[str, Any], atomic_write, report: RepairReport) -> RepairReport:
    """A finished dataset is left as it is, except a JSON metadata file no reader can parse
    (a truncated ``meta/info.json``): that one is put back from the commit."""
    for rel, b64 in commit["meta"].items():
        p = root / rel
        if p.suffix != ".json" or not p.is_file():
            continue
        try:
            json.loads(p.read_bytes())
        except (json.JSONDecodeError, UnicodeDecodeError):
            atomic_write(p, base64.b64decode(b64))
            report.restored.append(rel)
    return report


def repair(root: str | Path, atomic_write, sidecar: str) -> RepairReport:
    """Put ``root`` back to its last commit (see the module docstring). Datasets written before
    commits existed (no commit record) are left as they are."""
    root = Path(root)
    commit = read_commit(root)
    if commit is None:
        return RepairReport(root, -1, False)
    n = int(commit["episodes"])
    if not is_interrupted(root, commit):
        return _restore_damaged_json(root, commit, atomic_write, RepairReport(root, n, False))
    for rel in commit["files"]:
        _check_committed_file(root, rel)
    report = RepairReport(root, n, True, finalized=bool(commit.get("finalized", True)))
    keep = set(commit["files"])
    for rel in dataset_files(root):
        if rel not in keep:
            (root / rel).unlink()
            report.removed.append(rel)
    for d in TEMP_DIRS:
        if (root / d).is_dir():
            shutil.rmtree(root / d)
    for d in sorted(root.glob("tmp*")):  # LeRobot encodes each episode's video in tempfile.mkdtemp(dir=root)
        if d.is_dir():
            shutil.rmtree(d)
            report.removed.append(d.name + "/")
    for rel, b64 in commit["meta"].items():
        data = base64.b64decode(b64)
        p = root / rel
        if not p.is_file() or p.read_bytes() != data:
            atomic_write(p, data)
            report.restored.append(rel)
    for rel in META_FILES:  # a metadata file the commit did not have (the first episode in flight)
        if rel not in commit["meta"] and (root / rel).is_file() and rel != "meta/info.json":
            (root / rel).unlink()
            report.removed.append(rel)
    atomic_write(root / sidecar, "".join(json.dumps(r) + "\n" for r in commit["records"]).encode())
    return report
