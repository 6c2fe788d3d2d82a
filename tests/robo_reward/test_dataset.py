import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from robo_reward.data import DatasetError, load_episode_meta, open_dataset, read_dataset_summary
from robo_reward.data.labels import Segments, temporal_proportions
from sim.collect import collect, run_episode
from sim.experts import ExpertQuality
from sim.tasks import make_env


@pytest.fixture(scope="module")
def push_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "push"
    r = collect("push", 3, "clean", out, seed=0, progress=False)
    assert r.total == 3 and not r.interrupted
    return out


def test_dataset_round_trip_with_lerobot(push_dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("local/push", root=push_dataset)
    assert ds.num_episodes == 3
    assert set(ds.meta.video_keys) == {f"observation.images.{c}" for c in ("front", "side", "wrist")}
    assert ds.fps == 20
    # re-render episode 0 from its seed and compare decoded frames (codec tolerance)
    meta = load_episode_meta(push_dataset)[0]
    env = make_env("push")
    ep = run_episode(env, meta.seed, ExpertQuality(), "push")
    assert len(ep.frames) == meta.length == ds.meta.episodes[0]["length"]
    for t in (0, meta.length // 2, meta.length - 1):
        item = ds[t]
        for cam in ("front", "side", "wrist"):
            decoded = (item[f"observation.images.{cam}"].permute(1, 2, 0).numpy() * 255).astype(np.float32)
            raw = ep.frames[t][f"observation.images.{cam}"].astype(np.float32)
            assert np.abs(decoded - raw).mean() < 12, f"{cam} frame {t} differs beyond codec tolerance"
        np.testing.assert_allclose(item["observation.state"].numpy(), ep.frames[t]["observation.state"], atol=1e-4)
    env.close()


def test_annotations_and_proportions_on_disk(push_dataset):
    files = sorted((push_dataset / "meta" / "episodes").glob("*/*.parquet"))
    df = pd.concat([pd.read_parquet(f) for f in files])
    for col in ("sparse_subtask_names", "sparse_subtask_start_frames", "sparse_subtask_end_frames", "quality", "success"):
        assert col in df.columns
    segs = []
    for _, row in df.iterrows():
        seg = Segments(tuple(row.sparse_subtask_names), tuple(row.sparse_subtask_start_frames),
                       tuple(row.sparse_subtask_end_frames)).validate(int(row.length))
        assert seg.names == ("reach", "push")
        assert seg.starts[0] == 0 and seg.ends[-1] == row.length - 1
        segs.append(seg)
        assert row.quality == "clean" and row.success
    props = json.loads((push_dataset / "meta" / "temporal_proportions_sparse.json").read_text())
    assert props == pytest.approx(temporal_proportions(segs, ("reach", "push")))


def test_lerobot_sarm_processor_accepts_annotations(push_dataset):
    from lerobot.rewards.sarm.processor_sarm import SARMEncodingProcessorStep

    ds = open_dataset(push_dataset)
    df = ds.meta.episodes.to_pandas()
    usable = SARMEncodingProcessorStep._annotations_are_usable(
        df.loc[0, "sparse_subtask_names"], df.loc[0, "sparse_subtask_start_frames"], df.loc[0, "sparse_subtask_end_frames"])
    assert usable


def test_summary(push_dataset):
    s = read_dataset_summary(push_dataset)
    assert s["episodes"] == 3 and s["cameras"] == ["front", "side", "wrist"] and s["quality"] == {"clean": 3}


def test_rerun_appends_and_mismatched_fps_is_refused(tmp_path):
    out = tmp_path / "pp"
    collect("push", 1, "mixed", out, seed=1, cameras=("front",), progress=False)
    r = collect("push", 2, "mixed", out, seed=1, cameras=("front",), progress=False)
    assert r.added == 1 and r.total == 2
    assert open_dataset(out).num_episodes == 2
    assert sorted(load_episode_meta(out)) == [0, 1]
    with pytest.raises(DatasetError, match="features"):
        collect("push", 3, "mixed", out, seed=1, cameras=("front", "side"), progress=False)
    assert open_dataset(out).num_episodes == 2, "a refused run must not damage the dataset"


def test_open_missing_and_non_dataset_dirs(tmp_path):
    with pytest.raises(DatasetError, match="not a LeRobot dataset"):
        open_dataset(tmp_path)
    (tmp_path / "junk.txt").write_text("x")
    with pytest.raises(DatasetError, match="exists and is not a LeRobot dataset"):
        collect("push", 1, "clean", tmp_path, progress=False)


def test_interrupted_collect_keeps_saved_episodes_and_resumes(tmp_path):
    out = tmp_path / "int"
    cmd = [sys.executable, "-m", "robo_reward.cli", "collect", "--task=push", "--episodes=30", f"--out={out}",
           "--cameras=front"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sidecar = out / "meta" / "robo_reward_episodes.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline:
        if sidecar.exists() and len(sidecar.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "interrupted" in output
    n = open_dataset(out).num_episodes
    assert 2 <= n < 30
    ds = open_dataset(out)
    _ = ds[len(ds) - 1]  # the last saved frame decodes
    r = collect("push", n + 1, "mixed", out, seed=0, cameras=("front",), progress=False)
    assert r.total == n + 1
    assert open_dataset(out).num_episodes == n + 1


def test_split_is_stratified_by_success_when_both_kinds_exist():
    from robo_reward.data.frames import split_episodes

    success = [True] * 12 + [False] * 4
    tr, ho = split_episodes(16, 0.25, seed=0, success=success)
    assert sorted(tr + ho) == list(range(16)) and not set(tr) & set(ho)
    assert sum(success[i] for i in ho) == 3 and sum(not success[i] for i in ho) == 1
    assert split_episodes(6, 0.34, 0) == split_episodes(6, 0.34, 0, [True] * 6)  # one kind: the plain split
    assert split_episodes(5, 0.0, 0) == ([0, 1, 2, 3, 4], []) == split_episodes(5, 0.0, 0, [True, False] * 2 + [True])


def test_success_comes_from_lerobots_per_frame_next_success_without_our_column(tiny_dataset, tmp_path):
    import shutil

    import pandas as pd

    from robo_reward.data.frames import load_frame_cache

    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset, ds)
    for f in sorted((ds / "meta" / "episodes").glob("chunk-*/file-*.parquet")):  # a plain LeRobot dataset
        pd.read_parquet(f).drop(columns=["success"]).to_parquet(f)
    with pytest.warns(UserWarning, match="no success flag per episode"):
        cache = load_frame_cache(ds, ["front"], 16, progress=False)
    assert not cache.success_known
    # LeRobot's recorders write a per-frame next.success: add it as they would (here: the sim's truth)
    info = json.loads((ds / "meta" / "info.json").read_text())
    info["features"]["next.success"] = dict(info["features"]["gt.progress"])
    (ds / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    (ds / "meta" / "robo_reward_commit.json").unlink()  # a hand edit of a finished dataset, not a recording
    for f in sorted((ds / "data").glob("chunk-*/file-*.parquet")):
        df = pd.read_parquet(f)
        df["next.success"] = (np.stack(df["gt.progress"].to_numpy()).reshape(-1) > 0.999).astype(np.float32)
        df.loc[df["episode_index"] == 0, "next.success"] = 0.0  # episode 0 is recorded as a failure
        df.to_parquet(f)
    cache = load_frame_cache(ds, ["front"], 16, progress=False)
    truth = {i: m.success and i != 0 for i, m in load_episode_meta(tiny_dataset).items()}
    assert cache.success_known and [e.success for e in cache.episodes] == [truth[e.index] for e in cache.episodes]


def test_frame_store_matches_a_full_decode_is_reused_and_rebuilt_when_the_dataset_changes(push_dataset, tmp_path,
                                                                                         monkeypatch):
    import shutil

    from robo_reward.data import frame_store
    from robo_reward.data.frames import load_frame_cache
    from robo_reward.data.lerobot_io import open_metadata
    from robo_reward.data.video import iter_video, to_square

    monkeypatch.setenv("ROBO_REWARD_CACHE_DIR", str(tmp_path / "cache"))
    ds = tmp_path / "push"
    shutil.copytree(push_dataset, ds)
    cache = load_frame_cache(ds, ["front", "wrist"], 32, labels="linear", progress=False)
    assert isinstance(cache.frames, frame_store.FrameStore)
    # the same pixels as decoding each whole video into memory
    meta = open_metadata(ds)
    for rec, ep in zip(meta.episodes.with_format(None).to_pandas().to_dict("records"), cache.episodes, strict=True):
        for v, cam in enumerate(["front", "wrist"]):
            key = f"observation.images.{cam}"
            path = ds / meta.video_path.format(video_key=key, chunk_index=rec[f"videos/{key}/chunk_index"],
                                               file_index=rec[f"videos/{key}/file_index"])
            first = int(round(rec[f"videos/{key}/from_timestamp"] * meta.fps))
            full = to_square(np.stack(list(iter_video(path))), 32)[first: first + ep.length]  # whole file, at once
            np.testing.assert_array_equal(cache.episode_frames(ep)[:, v], full)
    # array-style reads: (B, T) rows, an episode's slice, one row; np.load of the file agrees
    on_disk = np.load(cache.frames.path, mmap_mode="r")
    rows = np.array([[0, 1, 2], [5, 5, 4]])
    np.testing.assert_array_equal(cache.frames[rows], on_disk[rows])
    ep = cache.episodes[1]
    np.testing.assert_array_equal(cache.episode_frames(ep), on_disk[ep.start: ep.start + ep.length])
    np.testing.assert_array_equal(cache.frames[3], on_disk[3])
    # reused as it is: no second decode
    monkeypatch.setattr("robo_reward.data.frames.iter_video", lambda *a: pytest.fail("decoded again"))
    again = load_frame_cache(ds, ["front", "wrist"], 32, labels="linear", progress=False)
    assert again.frames.path == cache.frames.path
    monkeypatch.undo()
    monkeypatch.setenv("ROBO_REWARD_CACHE_DIR", str(tmp_path / "cache"))
    # another resolution is another store; a changed dataset replaces its store
    other = load_frame_cache(ds, ["front", "wrist"], 16, labels="linear", progress=False)
    assert other.frames.path != cache.frames.path and other.frames.shape[2:4] == (16, 16)
    collect("push", 4, "clean", ds, seed=0, progress=False)  # one more episode
    grown = load_frame_cache(ds, ["front", "wrist"], 32, labels="linear", progress=False)
    assert grown.frames.path != cache.frames.path and not cache.frames.path.exists()
    assert len(grown.frames) == len(cache.frames) + grown.episodes[-1].length
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2  # the 16px store and the new 32px one


def test_a_failed_frame_store_build_leaves_nothing_to_be_read(push_dataset, tmp_path, monkeypatch):
    from robo_reward.data.frames import load_frame_cache
    from robo_reward.data.video import iter_video

    monkeypatch.setenv("ROBO_REWARD_CACHE_DIR", str(tmp_path / "cache"))

    def dies(path):
        for i, f in enumerate(iter_video(path)):
            if i == 5:
                raise KeyboardInterrupt
            yield f

    monkeypatch.setattr("robo_reward.data.frames.iter_video", dies)
    with pytest.raises(KeyboardInterrupt):
        load_frame_cache(push_dataset, ["front"], 16, labels="linear", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []
    monkeypatch.undo()
    monkeypatch.setenv("ROBO_REWARD_CACHE_DIR", str(tmp_path / "cache"))
    cache = load_frame_cache(push_dataset, ["front"], 16, labels="linear", progress=False)
    assert cache.frames.path.exists() and cache.frames[-1].any()
