"""Nothing recorded is lost: every episode whose save returned survives a kill -9, a re-run
continues after it, and a damaged dataset is refused with the damaged file's name."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from robo_reward.cli import main
from robo_reward.data.lerobot_io import (
    DatasetError,
    DatasetWriter,
    load_episode_meta,
    open_dataset,
    repo_id_for,
)
from robo_reward.data.recovery import COMMIT, is_interrupted, read_commit
from sim.collect import collect

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "crash_safety.py"


@pytest.fixture(scope="module")
def two_episodes(tmp_path_factory):
    out = tmp_path_factory.mktemp("cs") / "two"
    collect("push", 2, "clean", out, seed=0, cameras=("front",), progress=False)
    return out


def copy(src: Path, tmp_path: Path, session_open: bool = False) -> Path:
    """A copy of ``src``; with ``session_open``, as a writer leaves it when it is killed mid-run."""
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    if session_open:
        commit = read_commit(dst)
        commit["finalized"] = False
        (dst / COMMIT).write_text(json.dumps(commit))
    return dst


def test_every_saved_episode_is_committed_and_a_finished_run_is_complete(two_episodes):
    commit = read_commit(two_episodes)
    assert commit["episodes"] == 2 and commit["finalized"]
    assert not is_interrupted(two_episodes)
    # one file per episode and camera: LeRobot never reopens a closed file
    assert sum(f.startswith("data/") for f in commit["files"]) == 2
    assert [r["episode_index"] for r in commit["records"]] == [0, 1]


def test_the_episode_in_flight_is_removed_and_the_metadata_restored(two_episodes, tmp_path):
    ds_dir = copy(two_episodes, tmp_path, session_open=True)
    info_before = (ds_dir / "meta" / "info.json").read_bytes()
    # what a kill during the third save leaves: a data file with no footer, a video, frames not yet
    # encoded, a half-written info.json and a commit that is not finalized
    (ds_dir / "data" / "chunk-000" / "file-002.parquet").write_bytes(b"PAR1 no footer")
    (ds_dir / "videos" / "observation.images.front" / "chunk-000" / "file-002.mp4").write_bytes(b"\0" * 64)
    (ds_dir / "images" / "observation.images.front" / "episode-000002").mkdir(parents=True)
    (ds_dir / "images" / "observation.images.front" / "episode-000002" / "frame-000000.png").write_bytes(b"x")
    (ds_dir / "tmpab12cd").mkdir()  # where LeRobot encodes the episode's video
    (ds_dir / "tmpab12cd" / "observation.images.front_002.mp4").write_bytes(b"\0" * 64)
    (ds_dir / "meta" / "info.json").write_text('{"codebase_version": "v3.0", "fps": 2')
    assert is_interrupted(ds_dir)
    assert main(["repair", str(ds_dir)]) == 0
    assert not is_interrupted(ds_dir)
    assert (ds_dir / "meta" / "info.json").read_bytes() == info_before
    assert not (ds_dir / "data" / "chunk-000" / "file-002.parquet").exists() and not (ds_dir / "images").exists()
    assert not (ds_dir / "tmpab12cd").exists()
    ds = LeRobotDataset(repo_id_for(ds_dir), root=ds_dir, video_backend="pyav")  # LeRobot's own reader
    assert ds.meta.total_episodes == 2 and ds[len(ds) - 1]["observation.images.front"].shape == (3, 64, 64)
    r = collect("push", 3, "clean", ds_dir, seed=0, cameras=("front",), progress=False)
    assert r.total == 3 and sorted(load_episode_meta(ds_dir)) == [0, 1, 2]
    assert sorted(int(i) for i in open_dataset(ds_dir).meta.episodes["episode_index"]) == [0, 1, 2]


def test_a_finished_dataset_is_never_repaired(two_episodes, tmp_path):
    """Edits made to a finished dataset are the user's: opening it changes nothing."""
    ds_dir = copy(two_episodes, tmp_path)
    (ds_dir / "data" / "chunk-000" / "extra.txt").write_text("mine")
    open_dataset(ds_dir)
    assert (ds_dir / "data" / "chunk-000" / "extra.txt").read_text() == "mine"


def test_a_damaged_complete_episode_is_refused_by_name(two_episodes, tmp_path, capsys):
    ds_dir = copy(two_episodes, tmp_path, session_open=True)
    bad = ds_dir / "data" / "chunk-000" / "file-000.parquet"
    bad.write_bytes(bad.read_bytes()[:100])
    (ds_dir / "data" / "chunk-000" / "file-009.parquet").write_bytes(b"in flight")
    before = sorted(p.name for p in (ds_dir / "data" / "chunk-000").iterdir())
    assert main(["repair", str(ds_dir)]) == 2
    assert f"{bad}: unreadable" in capsys.readouterr().err
    assert sorted(p.name for p in (ds_dir / "data" / "chunk-000").iterdir()) == before  # nothing touched


def test_a_run_killed_before_its_first_episode_starts_again(tmp_path):
    out = tmp_path / "early"
    DatasetWriter(out, 20, {"observation.state": {"dtype": "float32", "shape": (6,), "names": None}}, ["task"])
    assert (out / COMMIT).is_file()  # the writer is dropped with no episode saved, as after a kill
    (out / "tmpxyz").mkdir()  # killed while LeRobot encoded the first episode's video
    (out / "data" / "chunk-000").mkdir(parents=True)
    (out / "data" / "chunk-000" / "file-000.parquet").write_bytes(b"PAR1")
    r = collect("push", 1, "clean", out, seed=0, cameras=("front",), progress=False)
    assert r.total == 1 and open_dataset(out).meta.total_episodes == 1


def test_a_second_writer_is_refused_while_one_is_recording(tmp_path):
    feats = {"observation.state": {"dtype": "float32", "shape": (6,), "names": None}}
    w = DatasetWriter(tmp_path / "busy", 20, feats, ["task"])
    with pytest.raises(DatasetError, match="(another process|this process is already) writing"):
        DatasetWriter(tmp_path / "busy", 20, feats, ["task"])
    w.finalize()


@pytest.mark.slow
def test_kill_9_at_random_moments_collect_and_deploy(tmp_path, state_policy):
    """The benchmark's kill trials on a small case: collect fresh and appending, deploy appending."""
    spec = importlib.util.spec_from_file_location("crash_safety", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = np.random.default_rng(1)
    base_collect = bench.make_base(tmp_path, "collect", None)
    base_deploy = bench.make_base(tmp_path, "deploy", state_policy)
    trials = [bench.trial("collect", False, tmp_path, rng, None),
              bench.trial("collect", True, tmp_path, rng, base_collect),
              bench.trial("deploy", True, tmp_path, rng, base_deploy, policy=state_policy)]
    assert all(t["survived"] for t in trials), json.dumps(trials, indent=1)


@pytest.mark.parametrize("cut", ["before_commit", "before_delete"])
def test_a_finalize_killed_while_compacting_the_episodes_table_is_completed_by_repair(tmp_path, monkeypatch, cut):
    """At finalize the per-episode metadata files become one table; a kill between its steps
    loses no episode and leaves no episode twice."""
    from robo_reward.data import lerobot_io, recovery

    real = recovery.commit_without

    def killed(root, removed, atomic_write):
        if cut == "before_delete":
            real(root, removed, atomic_write)
        raise KeyboardInterrupt

    monkeypatch.setattr(recovery, "commit_without", killed)
    out = tmp_path / "three"
    with pytest.raises(KeyboardInterrupt):
        collect("push", 3, "clean", out, seed=0, cameras=("front",), progress=False)
    assert is_interrupted(out)
    monkeypatch.setattr(recovery, "commit_without", real)
    report = lerobot_io.ensure_complete(out)
    assert report is not None and report.episodes == 3 and not is_interrupted(out)
    assert [p.relative_to(out).as_posix() for p in (out / "meta" / "episodes").rglob("*.parquet")] == [
        "meta/episodes/chunk-000/file-000.parquet"]
    ds = LeRobotDataset(repo_id_for(out), root=out)
    assert ds.num_episodes == 3 and list(ds.meta.episodes["episode_index"]) == [0, 1, 2]
    assert len(ds) == sum(m.length for m in load_episode_meta(out).values())
    _ = ds[len(ds) - 1]
