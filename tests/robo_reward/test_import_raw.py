import json

import av
import numpy as np
import pytest

from robo_reward.cli import main
from robo_reward.data import DatasetError, load_episode_meta, open_dataset
from robo_reward.data.raw_import import import_raw


def write_video(path, n, h=32, w=32, fps=10, seed=0):
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for t in range(n):
            img = np.full((h, w, 3), (t * 8) % 255, np.uint8)
            img[:4, :4] = rng.integers(0, 255, 3)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def make_raw(root, n_eps=2, n=20, keyframes=None, counts=None):
    for e in range(n_eps):
        d = root / f"episode_{e:03d}"
        d.mkdir(parents=True)
        for i, cam in enumerate(("front", "side", "wrist")):
            write_video(d / f"cam_{cam}.mp4", (counts or {}).get(cam, n), seed=i)
        kf = keyframes or [{"annotation": "reach", "start_frame_id": 0, "end_frame_id": 9},
                           {"annotation": "grasp", "start_frame_id": 10, "end_frame_id": n - 1}]
        (d / "annotated_keyframes.json").write_text(json.dumps(kf))
        (d / "task_instruction.json").write_text(json.dumps({"task_instruction": "grab it"}))
    return root


def test_import_raw_round_trip(tmp_path):
    src = make_raw(tmp_path / "raw")
    out = tmp_path / "ds"
    assert main(["import-raw", f"--src={src}", f"--out={out}"]) == 0
    ds = open_dataset(out)
    assert ds.num_episodes == 2 and ds.num_frames == 40 and ds.fps == 10
    assert len(ds.meta.video_keys) == 3
    assert load_episode_meta(out)[1].subtask_start_frames == [0, 10]
    assert (out / "meta" / "temporal_proportions_sparse.json").exists()
    assert ds[5]["task"] == "grab it"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"counts": {"side": 18}}, r"frame counts differ across cameras \{'front': 20, 'side': 18, 'wrist': 20\}"),
    ({"keyframes": [{"annotation": "a", "start_frame_id": 0, "end_frame_id": 25}]},
     r"annotated_keyframes.json: segment 0 'a' spans frames \[0, 25\]; expected .* <= 19"),
    ({"keyframes": [{"annotation": "a", "start_frame_id": 0, "end_frame_id": 10},
                    {"annotation": "b", "start_frame_id": 8, "end_frame_id": 19}]}, "overlapping segment 0 'a'"),
    ({"keyframes": [{"annotation": "reach", "start_frame_id": 0, "end_frame_id": 5},
                    {"annotation": "grasp", "start_frame_id": 6, "end_frame_id": 12},
                    {"annotation": "reach", "start_frame_id": 13, "end_frame_id": 19}]},
     r"subtask 'reach' appears more than once in \['reach', 'grasp', 'reach'\]"),
])
def test_import_raw_refuses_bad_episodes(tmp_path, kwargs, match):
    src = make_raw(tmp_path / "raw", n_eps=1, **kwargs)
    with pytest.raises(DatasetError, match=match):
        import_raw(src, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists(), "nothing may be written when an episode is refused"


def test_import_raw_refuses_unreadable_video(tmp_path):
    src = make_raw(tmp_path / "raw", n_eps=1)
    (src / "episode_000" / "cam_side.mp4").write_bytes(b"not a video at all")
    with pytest.raises(DatasetError, match=r"cam_side.mp4: unreadable video"):
        import_raw(src, tmp_path / "ds", progress=False)


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert main(["dataset-info", str(tmp_path)]) == 2
    assert "not a LeRobot dataset" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["collect", "import-raw", "dataset-info", "quickstart"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "--out" in capsys.readouterr().out or command == "dataset-info"


def test_dataset_info_cli_prints_summary_and_writes_contact_sheet(tmp_path, capsys):
    src = make_raw(tmp_path / "raw", n_eps=1)
    import_raw(src, tmp_path / "ds", progress=False)
    assert main(["dataset-info", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "episodes     1" in out and "cameras      front, side, wrist" in out and "reach=" in out
    png = tmp_path / "ds" / "contact_sheet.png"
    assert png.stat().st_size > 10_000


def _tree_state(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_import_raw_refuses_a_frame_size_that_differs_between_episodes_before_writing(tmp_path):
    src = make_raw(tmp_path / "raw", n_eps=2)
    for cam in ("front", "side", "wrist"):  # the second episode is filmed at another size
        write_video(src / "episode_001" / f"cam_{cam}.mp4", 20, h=48, w=48)
    with pytest.raises(DatasetError, match=r"episode_001: frame size \(height, width\) \(48, 48\) differ from "
                                           r"episode_000's \(32, 32\)"):
        import_raw(src, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()
    assert not list(tmp_path.glob(".ds*")), "no staging directory is left behind"


@pytest.mark.parametrize(("stages", "match"), [
    (["reach", "grasp", "lift"], r"--stages: stage\(s\) \['lift'\] have zero duration in every episode"),
    (["reach"], r"annotated_keyframes.json: subtask\(s\) \['grasp'\] are not in --stages=reach"),
    (["reach", "grasp", "reach"], r"--stages: 'reach' given more than once"),
])
def test_import_raw_refuses_stages_that_do_not_fit_before_writing(tmp_path, stages, match):
    src = make_raw(tmp_path / "raw", n_eps=2)
    with pytest.raises(DatasetError, match=match):
        import_raw(src, tmp_path / "ds", stages=stages, progress=False)
    assert not (tmp_path / "ds").exists()


def test_import_raw_into_an_existing_dataset_needs_append_and_never_imports_an_episode_twice(tmp_path, capsys):
    src = make_raw(tmp_path / "raw", n_eps=2)
    out = tmp_path / "ds"
    import_raw(src, out, progress=False)
    before = _tree_state(out)
    assert main(["import-raw", f"--src={src}", f"--out={out}"]) == 2
    assert "a dataset already exists here; pass --append" in capsys.readouterr().err
    assert main(["import-raw", f"--src={src}", f"--out={out}", "--append"]) == 2
    assert "2 of these 2 episodes were already imported from the same files (episode_000, episode_001)" in \
        capsys.readouterr().err
    assert _tree_state(out) == before, "a refused import changes nothing"
    more = make_raw(tmp_path / "raw2", n_eps=1)
    (more / "episode_000" / "task_instruction.json").write_text(json.dumps("grab it again"))
    assert main(["import-raw", f"--src={more}", f"--out={out}", "--append"]) == 0
    ds = open_dataset(out)
    assert ds.num_episodes == 3 and ds.num_frames == 60
    for rel, data in before.items():  # staged by hard link: LeRobot adds files and never writes into one
        if rel.startswith(("data/", "videos/")):
            assert (out / rel).read_bytes() == data, rel
    assert ds[45]["task"] == "grab it again" and ds[5]["task"] == "grab it"
    imports = json.loads((out / "meta" / "robo_reward_imports.json").read_text())
    assert [r["episode_index"] for r in imports] == [0, 1, 2]
    assert imports[2]["source"] == str((more / "episode_000").resolve())
    assert sorted(p.name for p in tmp_path.glob(".*")) == [".ds.lock"], "no staging or set-aside copy is left"


def test_a_failed_append_leaves_the_dataset_as_it_was(tmp_path):
    src = make_raw(tmp_path / "raw", n_eps=1)
    out = tmp_path / "ds"
    import_raw(src, out, progress=False)
    before = _tree_state(out)
    bad = make_raw(tmp_path / "bad", n_eps=2)
    for cam in ("front", "side", "wrist"):  # frames of another size than the dataset's
        write_video(bad / "episode_000" / f"cam_{cam}.mp4", 20, h=48, w=48)
        write_video(bad / "episode_001" / f"cam_{cam}.mp4", 20, h=48, w=48)
    with pytest.raises(DatasetError, match=r"observation.images.front is 32x32"):
        import_raw(bad, out, append=True, progress=False)
    assert _tree_state(out) == before
    assert open_dataset(out).num_episodes == 1


def test_an_import_killed_between_its_two_renames_gets_the_old_dataset_back(tmp_path):
    src = make_raw(tmp_path / "raw", n_eps=1)
    out = tmp_path / "ds"
    import_raw(src, out, progress=False)
    before = _tree_state(out)
    out.rename(tmp_path / ".ds.replaced")  # the state a kill -9 between the renames leaves
    with pytest.raises(DatasetError, match="1 of these 1 episodes were already imported"):
        import_raw(src, out, append=True, progress=False)
    assert _tree_state(out) == before and not (tmp_path / ".ds.replaced").exists()


def make_released_layout(root, n_eps=2, n=30):
    """Robo-Dopamine's released example layout, reproduced: cam_high / cam_left_wrist /
    cam_right_wrist videos (4:3), one task_instruction.json beside the episodes holding a list of
    paraphrases, keyframes spelled 'anotation' whose subtasks share their boundary frames, with
    frames before the first subtask and after the last."""
    root.mkdir(parents=True)
    paraphrases = ["clean the table", "wipe the table clean", "tidy up the table", "clear the table",
                   "make the table clean"]
    (root / "task_instruction.json").write_text(json.dumps(paraphrases))
    for e in range(n_eps):
        d = root / f"episode_{e:03d}"
        d.mkdir()
        for i, cam in enumerate(("high", "left_wrist", "right_wrist")):
            write_video(d / f"cam_{cam}.mp4", n, h=24, w=32, seed=i)
        kf = [{"anotation": "grasp the cloth", "start_frame_id": 3, "end_frame_id": 12},
              {"anotation": "wipe", "start_frame_id": 12, "end_frame_id": 20},
              {"anotation": "put the cloth back", "start_frame_id": 20, "end_frame_id": 26}]
        (d / "annotated_keyframes.json").write_text(json.dumps(kf))
    return root, paraphrases


def test_import_raw_accepts_the_released_robo_dopamine_layout(tmp_path, capsys):
    src, paraphrases = make_released_layout(tmp_path / "raw")
    out = tmp_path / "ds"
    assert main(["import-raw", f"--src={src}", f"--out={out}"]) == 0
    printed = capsys.readouterr().out
    for what in ("keyframe key 'anotation'", "shared subtask boundaries", "frames outside every subtask",
                 "instruction beside the episodes", "5 paraphrases"):
        assert f"detected: {what}" in printed, what
    ds = open_dataset(out)
    assert ds.num_episodes == 2 and sorted(k.removeprefix("observation.images.") for k in ds.meta.video_keys) == [
        "high", "left_wrist", "right_wrist"]
    m = load_episode_meta(out)[0]
    assert m.subtask_names == ["grasp the cloth", "wipe", "put the cloth back"]
    assert m.subtask_start_frames == [3, 12, 20] and m.subtask_end_frames == [11, 19, 26]
    assert ds[0]["task"] == "clean the table"
    assert json.loads((out / "meta" / "robo_reward_instructions.json").read_text()) == {"clean the table": paraphrases}
    from robo_reward.data.frames import load_frame_cache

    cache = load_frame_cache(out, ["high", "left_wrist", "right_wrist"], 32, progress=False)
    ep = cache.episodes[0]
    assert ep.progress[0] == 0 and ep.progress[-1] == pytest.approx(1.0) and np.all(np.diff(ep.progress) >= -1e-6)


@pytest.mark.parametrize(("kf", "match"), [
    ([{"anotation": "a", "start_frame_id": 0, "end_frame_id": 12}, {"anotation": "b", "start_frame_id": 10,
                                                                     "end_frame_id": 20}], "overlapping segment 0 'a'"),
    ([{"anotation": "a", "start_frame_id": 5, "end_frame_id": 2}], r"segment 0 'a' spans frames \[5, 2\]"),
    ([{"label": "a", "start_frame_id": 0, "end_frame_id": 5}], r"'annotation' \(or 'anotation'\)"),
])
def test_the_released_layout_still_refuses_real_errors(tmp_path, kf, match):
    src, _ = make_released_layout(tmp_path / "raw", n_eps=1)
    (src / "episode_000" / "annotated_keyframes.json").write_text(json.dumps(kf))
    with pytest.raises(DatasetError, match=match):
        import_raw(src, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_lerobots_annotation_convention_reads_as_inclusive_segments():
    """LeRobot's annotator writes frames as int(seconds * fps): each subtask ends on the frame where
    the next starts, and the last may end at the episode length."""
    from robo_reward.data.labels import AnnotationError, Segments

    seg = Segments(("reach", "grasp", "lift"), (0, 10, 30), (10, 30, 50)).normalized(50)
    assert seg.ends == (9, 29, 49) and seg.validate(50) is seg
    with pytest.raises(AnnotationError, match="overlapping segment 0 'reach'"):
        Segments(("reach", "grasp"), (0, 10), (12, 30)).normalized(50).validate(50)
    with pytest.raises(AnnotationError, match=r"spans frames \[0, 51\]"):
        Segments(("reach",), (0,), (51,)).normalized(50).validate(50)


def test_a_model_reads_a_dataset_whose_cameras_are_named_otherwise_through_camera_map(tmp_path, tiny_model, capsys):
    import pandas as pd

    src, _ = make_released_layout(tmp_path / "raw", n_eps=1)
    ds = tmp_path / "ds"
    import_raw(src, ds, progress=False)
    run = tmp_path / "model"
    tiny_model(cameras=("front", "side", "wrist")).save(run)
    args = ["annotate-progress", f"--model={run}", f"--dataset={ds}"]
    assert main(args) == 2
    assert "map them with --camera-map=<dataset camera>:<model camera>" in capsys.readouterr().err
    assert main([*args, "--camera-map=high:front,left_wrist:side,right_wrist:wrist"]) == 0
    p = pd.read_parquet(ds / "sarm_progress.parquet")
    assert len(p) == 30 and p["progress_sparse"].between(0, 1).all()
    assert main([*args, "--camera-map=high:top"]) == 2
    assert "--camera-map: ['top'] are not cameras of the model" in capsys.readouterr().err


def test_a_dataset_annotated_by_lerobots_own_annotator_trains_as_it_is(tiny_dataset, tmp_path):
    """LeRobot's SARM annotator (``save_annotations_to_dataset``) indexes the episodes table by
    episode, so it needs the table in one file, as a finished dataset of ours has it; its
    whole-second, shared-boundary subtasks (and the frames after the last) then train as they are."""
    import shutil

    from lerobot.data_processing.sarm_annotations.subtask_annotation import (
        Subtask,
        SubtaskAnnotation,
        Timestamp,
        compute_temporal_proportions,
        save_annotations_to_dataset,
    )

    from robo_reward.data import open_dataset
    from robo_reward.data.frames import load_frame_cache
    from robo_reward.reward.config import RewardModelConfig
    from robo_reward.reward.train import TrainRewardConfig, train_reward

    ds = tmp_path / "push"
    shutil.copytree(tiny_dataset, ds)
    assert [p.name for p in (ds / "meta" / "episodes").rglob("*.parquet")] == ["file-000.parquet"]
    fps = json.loads((ds / "meta" / "info.json").read_text())["fps"]
    n_eps = open_dataset(ds).num_episodes
    ann = {i: SubtaskAnnotation(subtasks=[Subtask(name="approach", timestamps=Timestamp(start="00:00", end="00:01")),
                                          Subtask(name="push", timestamps=Timestamp(start="00:01", end="00:02"))])
           for i in range(n_eps)}
    save_annotations_to_dataset(ds, ann, fps, prefix="sparse")
    (ds / "meta" / "temporal_proportions_sparse.json").write_text(
        json.dumps(compute_temporal_proportions(ann, fps, ["approach", "push"]), indent=2))  # as its main() does
    assert open_dataset(ds).num_episodes == n_eps  # still a LeRobot dataset, no episode lost or added

    cache = load_frame_cache(ds, ["front"], 16, labels="sparse", progress=False)
    assert cache.stage_names == ["approach", "push"]
    # a short episode's second subtask ends (00:02) past its end; a long one has frames after it
    assert {ep.length < 2 * fps for ep in cache.episodes} == {True, False}
    for ep in cache.episodes:
        assert (ep.stage[:fps] == 0).all() and (ep.stage[fps:] == 1).all()
        assert ep.progress[fps - 1] < 0.8 and np.allclose(ep.progress[min(ep.length - 1, 2 * fps):], 1.0)
    out = train_reward(TrainRewardConfig(dataset=ds, out=tmp_path / "run", steps=3, batch_size=4, wandb="disabled",
                                         labels="sparse", model=RewardModelConfig(image_size=16, dim=32, heads=2, temporal_layers=1,
                                                                                 window=4, frame_gap=2)),
                       progress=False)
    assert json.loads((out / "config.json").read_text())["stage_names"] == ["approach", "push"]
