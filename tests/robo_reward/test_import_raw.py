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
