"""Inputs that used to pass silently now fail (or warn) with a message that names the flag or
file, the value and what was expected; nothing already saved changes."""

from __future__ import annotations

import shutil

import pytest

from robo_reward.cli import main
from robo_reward.data.lerobot_io import DatasetError
from robo_reward.reward.evaluate import evaluate
from sim.collect import collect


def test_eval_reward_refuses_cameras_the_model_does_not_have(tiny_run, tiny_dataset):
    with pytest.raises(ValueError, match=r"--cameras_present: \['bogus'\] are not cameras of the model"):
        evaluate(tiny_run, tiny_dataset, plots=False, progress_bar=False, cameras_present=["bogus"])


def test_an_empty_held_out_split_is_refused_and_one_episode_training_warns(tmp_path, capsys):
    from robo_reward.reward.config import RewardModelConfig
    from robo_reward.reward.train import TrainRewardConfig, train_reward

    one = tmp_path / "one"
    collect("push", 1, "clean", one, seed=0, cameras=("front",), progress=False)
    cfg = RewardModelConfig(cameras=["front"], dim=32, heads=2, temporal_layers=1, window=4, frame_gap=2)
    with pytest.warns(UserWarning, match="1 episode.*none is held out"):
        train_reward(TrainRewardConfig(dataset=one, out=tmp_path / "r", steps=2, batch_size=2, wandb="disabled",
                                       model=cfg), progress=False)
    with pytest.raises(DatasetError, match=r"split.json: the run held out no episodes"):
        evaluate(tmp_path / "r", one, plots=False, progress_bar=False)


def test_missing_paths_are_one_line_errors(tmp_path, tiny_dataset, capsys):
    assert main(["eval-reward", f"--model={tmp_path / 'nope'}", f"--dataset={tiny_dataset}"]) == 2
    err = capsys.readouterr().err
    assert "nope/model.safetensors: missing" in err and "Traceback" not in err
    assert main(["train-bc", f"--dataset={tiny_dataset}", f"--out={tmp_path / 'b'}", "--rabc=true",
                 f"--progress={tmp_path / 'none.parquet'}", "--steps=1", "--wandb=false"]) == 2
    assert "none.parquet: no progress file" in capsys.readouterr().err


def test_collect_refuses_no_cameras(tmp_path, capsys):
    assert main(["collect", "--task=push", "--episodes=1", f"--out={tmp_path / 'c'}", "--cameras="]) == 2
    assert "--cameras: empty" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_bad_values_name_the_flag(tmp_path, capsys):
    assert main(["train-bc", "--obs=pixels", f"--out={tmp_path / 'b'}"]) == 2
    assert "--obs: 'pixels'; expected one of ['state', 'images']" in capsys.readouterr().err
    assert main(["train-reward", "--labels=dense", f"--out={tmp_path / 'r'}"]) == 2
    assert "--labels: 'dense'; expected one of ['auto', 'sparse', 'linear']" in capsys.readouterr().err


def test_repair_of_a_directory_that_is_not_a_dataset(tmp_path, capsys):
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
    (tmp_path / "x").mkdir()
    assert main(["repair", str(tmp_path / "x")]) == 2
    assert "not a LeRobot dataset" in capsys.readouterr().err


def test_resuming_with_another_size_or_task_names_the_field(tmp_path, capsys):
    out = tmp_path / "d"
    collect("push", 1, "clean", out, seed=0, cameras=("front",), progress=False)
    before = sorted(p.name for p in (out / "data" / "chunk-000").iterdir())
    assert main(["collect", "--task=push", "--episodes=2", f"--out={out}", "--cameras=front", "--width=96",
                 "--height=96"]) == 2
    assert "observation.images.front is 64x64 (height x width), this run records 96x96" in capsys.readouterr().err
    assert main(["collect", "--task=pick_place", "--episodes=2", f"--out={out}", "--cameras=front"]) == 2
    assert "(a dataset of another task?)" in capsys.readouterr().err
    assert main(["collect", "--task=push", "--episodes=abc", f"--out={out}"]) == 2
    assert "--episodes: invalid literal" in capsys.readouterr().err
    assert main(["collect", "--task=push", "--seed=-1", f"--out={out}"]) == 2
    assert "--seed: -1; expected >= 0" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "data" / "chunk-000").iterdir()) == before  # nothing saved changed


def test_a_malformed_info_json_is_named_and_repair_restores_it(tiny_dataset, tmp_path, capsys):
    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset, ds)
    info = ds / "meta" / "info.json"
    good = info.read_bytes()
    info.write_bytes(good[:-40])  # truncated, as by a full disk or a hand edit
    # without a commit record to restore from, every command names the file
    (ds / "meta" / "robo_reward_commit.json").rename(tmp_path / "commit.json")
    info.write_bytes(good[:-40])
    capsys.readouterr()
    for cmd in (["dataset-info", str(ds)], ["repair", str(ds)],
                ["train-bc", f"--dataset={ds}", f"--out={tmp_path / 'b'}", "--steps=1", "--wandb=false"]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert f"{info}: malformed (JSONDecodeError" in err and "Traceback" not in err, (cmd, err)
    # with it, `repair` puts the committed info.json back and says so
    (tmp_path / "commit.json").rename(ds / "meta" / "robo_reward_commit.json")
    assert main(["repair", str(ds)]) == 0
    assert "restored damaged meta/info.json" in capsys.readouterr().out
    assert info.read_bytes() == good
