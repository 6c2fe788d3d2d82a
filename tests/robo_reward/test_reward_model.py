import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from robo_reward.data import DatasetError
from robo_reward.data.frames import WindowSampler, hop_target, load_frame_cache
from robo_reward.data.labels import AnnotationError
from robo_reward.reward.config import RewardModelConfig
from robo_reward.reward.evaluate import annotate_progress, evaluate
from robo_reward.reward.inference import predict_episode
from robo_reward.reward.modeling import ProcessRewardModel
from robo_reward.reward.train import TrainRewardConfig, train_reward

TINY = dict(dim=32, heads=2, temporal_layers=1, window=4, frame_gap=2)  # as the conftest fixtures


@given(st.floats(0, 1), st.floats(0, 1))
def test_hop_normalisation_stays_in_unit_interval(a, b):
    h = float(hop_target(np.array([a]), np.array([b]))[0])
    assert -1.0 <= h <= 1.0
    if b >= a and a < 1 - 1e-3:
        assert h == pytest.approx((b - a) / (1 - a), abs=1e-6)
    if b < a and a > 1e-3:
        assert h == pytest.approx((b - a) / a, abs=1e-6)


def test_pause_augmentation_repeats_a_frame_with_its_own_labels(tiny_dataset):
    cache = load_frame_cache(tiny_dataset, ["front"], 32, progress=False)
    eps = list(range(len(cache.episodes)))
    paused = WindowSampler(cache, eps, window=6, gap=2, rewind_prob=0.0, view_dropout=0.0, seed=0, pause_prob=1.0)
    plain = WindowSampler(cache, eps, window=6, gap=2, rewind_prob=0.0, view_dropout=0.0, seed=0, pause_prob=0.0)
    b, ref = paused.sample(64), plain.sample(64)
    # every paused window ends in >= 2 identical frames, and its labels freeze with them
    tail_still = (b["frames"][:, -1] == b["frames"][:, -2]).flatten(1).all(1)
    assert bool(tail_still.all())
    assert bool((b["progress"][:, -1] == b["progress"][:, -2]).all())
    assert bool((b["stage"][:, -1] == b["stage"][:, -2]).all())
    # ...which plain windows (away from the clipped episode start) do not
    moving = (ref["progress"][:, -1] != ref["progress"][:, -2])
    assert moving.float().mean() > 0.5
    with pytest.raises(ValueError, match="pause_prob"):
        RewardModelConfig(pause_prob=1.5)


def test_trained_model_beats_random_on_voc(tiny_run, tiny_dataset):
    trained = evaluate(tiny_run, tiny_dataset, plots=False, progress_bar=False)
    rand = ProcessRewardModel(ProcessRewardModel.load(tiny_run).config)
    rand_dir = tiny_run.parent / "random"
    rand.save(rand_dir)
    (rand_dir / "split.json").write_text((tiny_run / "split.json").read_text())
    baseline = evaluate(rand_dir, tiny_dataset, plots=False, progress_bar=False)
    assert trained["episodes"] == "held_out" and trained["n_episodes"] == 2
    assert trained["voc_pos"] > baseline["voc_pos"] + 0.2, (trained["voc_pos"], baseline["voc_pos"])
    assert trained["voc_pos"] > 0.5
    assert trained["stage_accuracy"] > baseline["stage_accuracy"]


def test_save_load_round_trip_gives_same_outputs(tiny_run, tiny_dataset):
    a = ProcessRewardModel.load(tiny_run)
    cache = load_frame_cache(tiny_dataset, a.config.cameras, 64, progress=False)
    frames = cache.episode_frames(cache.episodes[0])
    a.save(tiny_run.parent / "copy")
    b = ProcessRewardModel.load(tiny_run.parent / "copy")
    np.testing.assert_allclose(predict_episode(a, frames).progress, predict_episode(b, frames).progress, atol=1e-6)
    phi = a.progress(frames[None, :4])  # the batched public API, uint8 (B, T, V, H, W, 3)
    assert phi.shape == (1,) and 0.0 <= float(phi) <= 1.0
    assert a.stage_probs(frames[None, :4]).sum().item() == pytest.approx(1.0, abs=1e-5)


def test_missing_camera_degrades_rather_than_breaks(tiny_run, tiny_dataset):
    r = evaluate(tiny_run, tiny_dataset, plots=False, progress_bar=False, cameras_present=["front"])
    assert r["voc_pos"] is not None and np.isfinite(r["voc_pos"])


def test_resume_continues_from_checkpoint(tiny_dataset, tmp_path):
    base = dict(dataset=tiny_dataset, out=tmp_path / "r", batch_size=4, wandb="disabled", checkpoint_every=5,
                model=RewardModelConfig(cameras=["front"], **TINY))
    train_reward(TrainRewardConfig(steps=10, **base), progress=False)
    state = torch.load(tmp_path / "r" / "checkpoint" / "train_state.pt", weights_only=False)
    assert state["step"] == 10
    split = json.loads((tmp_path / "r" / "split.json").read_text())
    train_reward(TrainRewardConfig(steps=15, **base), progress=False)
    assert torch.load(tmp_path / "r" / "checkpoint" / "train_state.pt", weights_only=False)["step"] == 15
    assert json.loads((tmp_path / "r" / "split.json").read_text()) == split, "the held-out split must not change"


def test_proprioceptive_model_trains_saves_and_evaluates(tiny_dataset, tmp_path):
    """use_state: observation.state joins every frame token; its normalisation comes from the
    training episodes and is saved with the weights."""
    cfg = TrainRewardConfig(dataset=tiny_dataset, out=tmp_path / "s", steps=30, batch_size=4, wandb="disabled",
                            held_out=0.34, model=RewardModelConfig(cameras=["front"], use_state=True, **TINY))
    train_reward(cfg, progress=False)
    model = ProcessRewardModel.load(tmp_path / "s")
    cache = load_frame_cache(tiny_dataset, ["front"], 64, progress=False, state=True)
    assert model.config.state_dim == cache.state.shape[1] == 6
    np.testing.assert_allclose(model.state_mean.numpy(), cache.state.mean(0), atol=15)  # train split only
    assert float(model.state_std.min()) > 0
    r = evaluate(tmp_path / "s", tiny_dataset, plots=False, progress_bar=False)
    assert np.isfinite(r["voc_pos"]) and 0.0 <= r["stage_accuracy"] <= 1.0
    out = annotate_progress(tmp_path / "s", tiny_dataset, out=tmp_path / "p.parquet", progress_bar=False)
    assert len(pd.read_parquet(out)) == len(cache.state)
    with pytest.raises(ValueError, match="state_dim: 0 with use_state"):
        ProcessRewardModel(RewardModelConfig(cameras=["front"], use_state=True, **TINY))
    import shutil

    bare = tmp_path / "no_state"
    shutil.copytree(tiny_dataset, bare)
    info = json.loads((bare / "meta" / "info.json").read_text())
    del info["features"]["observation.state"]
    (bare / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="observation.state missing"):
        load_frame_cache(bare, ["front"], progress=False, state=True)


def test_bad_inputs_raise_clear_errors(tiny_run, tiny_dataset, tmp_path):
    with pytest.raises(DatasetError, match=r"camera\(s\) \['side'\] requested but the dataset has"):
        load_frame_cache(tiny_dataset, ["front", "side"], progress=False)
    model = ProcessRewardModel.load(tiny_run)
    frames = torch.zeros(1, 4, 3, 3, 64, 64)
    with pytest.raises(ValueError, match=r"3 views, the model was trained on 2"):
        model(frames)
    nan = torch.full((1, 4, 2, 3, 64, 64), float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        model.progress(nan)
    # a dataset without annotations, with stage labels required
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_dataset, bare)
    (bare / "meta" / "temporal_proportions_sparse.json").unlink()
    with pytest.raises(AnnotationError, match="labels=sparse"):
        load_frame_cache(bare, ["front"], labels="sparse", progress=False)
    cache = load_frame_cache(bare, ["front"], labels="auto", progress=False)
    assert cache.stage_names == ["task"] and cache.episodes[0].progress[-1] == pytest.approx(1.0)


def test_annotate_progress_parquet_is_read_by_lerobot_rabc(tiny_run, tiny_dataset):
    from lerobot.rewards.sarm.rabc import RABCWeights

    path = annotate_progress(tiny_run, tiny_dataset, progress_bar=False)
    df = pd.read_parquet(path)
    assert list(df.columns) == ["index", "episode_index", "frame_index", "progress_sparse"]
    assert df["progress_sparse"].between(0, 1).all()
    w = RABCWeights(progress_path=path, chunk_size=4, device=torch.device("cpu"))
    assert len(w.progress_lookup) == len(df)
    weights, stats = w.compute_batch_weights({"index": torch.arange(8)})
    assert weights.shape == (8,) and torch.isfinite(weights).all()


def test_training_runs_under_accelerate_ddp_on_cpu(tiny_dataset, tmp_path):
    """`accelerate launch --num_processes 2 --cpu` runs the unchanged training entry point."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "robo_reward.cli", "train-reward",
           f"--dataset={tiny_dataset}", f"--out={out}", "--steps=6", "--batch_size=4", "--wandb=disabled",
           "--checkpoint_every=3", "--model.cameras=[front]", "--model.dim=32", "--model.heads=2",
           "--model.temporal_layers=1", "--model.window=4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    state = torch.load(out / "checkpoint" / "train_state.pt", weights_only=False)
    assert state["step"] == 6
    model = ProcessRewardModel.load(out)
    assert model.config.cameras == ["front"] and model.config.stage_names == ["reach", "push"]


def test_resnet_encoder_loads_local_weights_only(tmp_path):
    import torchvision

    from robo_reward.reward.encoders import ResNetEncoder

    ref = torchvision.models.resnet18()
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    enc = ResNetEncoder(16, str(path))
    assert torch.equal(enc.net.conv1.weight, ref.conv1.weight)
    assert enc(torch.rand(2, 3, 64, 64)).shape == (2, 16)
    with pytest.raises(FileNotFoundError, match="encoder_weights: .*missing.pth does not exist"):
        ResNetEncoder(16, str(tmp_path / "missing.pth"))


def test_frozen_pretrained_encoder_trains_from_cached_features(tiny_dataset, tmp_path):
    import torchvision

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    cfg = RewardModelConfig(cameras=["front"], encoder="resnet18", encoder_weights=str(weights), freeze_encoder=True,
                            cache_features=True, **TINY)
    out = tmp_path / "feat"
    train_reward(TrainRewardConfig(dataset=tiny_dataset, out=out, steps=5, batch_size=4, wandb="disabled", model=cfg),
                 progress=False)
    cached = np.load(out / "features_resnet18_64.npy")
    assert cached.shape[1:] == (1, 512) and np.isfinite(cached).all()
    model = ProcessRewardModel.load(out)
    ref = torchvision.models.resnet18()
    ref.load_state_dict(torch.load(weights, weights_only=True))
    assert torch.equal(model.encoder.net.conv1.weight, ref.conv1.weight), "the frozen trunk must not change"
    with pytest.raises(ValueError, match="cache_features: needs a pretrained encoder"):
        RewardModelConfig(cache_features=True)


def _tiny_tower(kind: str, path):
    """A small random CLIP/SigLIP vision tower saved like a downloaded one (no hub access here)."""
    import transformers

    arch = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                patch_size=8)
    if kind == "clip":
        net = transformers.CLIPVisionModel(transformers.CLIPVisionConfig(**arch))
    else:
        net = transformers.SiglipVisionModel(transformers.SiglipVisionConfig(**arch))
    net.save_pretrained(path)
    return net


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_clip_and_siglip_towers_load_locally_and_train(kind, tiny_dataset, tmp_path):
    import shutil

    from robo_reward.reward.encoders import HFVisionEncoder

    tower = _tiny_tower(kind, tmp_path / kind)
    enc = HFVisionEncoder(16, kind, str(tmp_path / kind))
    first = next(iter(tower.state_dict()))
    assert torch.equal(enc.net.state_dict()[first], tower.state_dict()[first])
    assert enc(torch.rand(2, 3, 64, 64)).shape == (2, 16)  # 64x64 frames resized to the tower's 32
    with pytest.raises(FileNotFoundError, match=f"encoder_weights: .*nowhere has no config.json; expected a local {kind}"):
        HFVisionEncoder(16, kind, str(tmp_path / "nowhere"))
    # a frozen tower trains the rest of the model from cached features ...
    cfg = RewardModelConfig(cameras=["front"], encoder=kind, encoder_weights=str(tmp_path / kind), freeze_encoder=True,
                            cache_features=True, **TINY)
    out = tmp_path / "run"
    train_reward(TrainRewardConfig(dataset=tiny_dataset, out=out, steps=4, batch_size=4, wandb="disabled", model=cfg),
                 progress=False)
    assert np.load(out / f"features_{kind}_64.npy").shape[1:] == (1, 32)
    # ... and the saved run loads without the weights directory, with the tower unchanged
    shutil.rmtree(tmp_path / kind)
    model = ProcessRewardModel.load(out)
    assert torch.equal(model.encoder.net.state_dict()[first], tower.state_dict()[first])
    cache = load_frame_cache(tiny_dataset, ["front"], 64, progress=False)
    pred = predict_episode(model, cache.episode_frames(cache.episodes[0]))
    assert np.isfinite(pred.progress).all() and ((pred.progress >= 0) & (pred.progress <= 1)).all()


def test_rl_potential_preset_is_the_default_with_its_three_overrides():
    """configs/reward/rl_potential.yaml says it is default.yaml with --model.use_state=false
    --model.window=1 --batch_size=64 (the README's recipe for learned potentials): keep it so."""
    from pathlib import Path

    import draccus

    from robo_reward.reward.train import TrainRewardConfig

    root = Path(__file__).resolve().parents[2] / "configs" / "reward"
    base = ["--dataset=d", "--out=o"]
    preset = draccus.parse(TrainRewardConfig, args=[f"--config_path={root / 'rl_potential.yaml'}", *base])
    recipe = draccus.parse(TrainRewardConfig, args=[f"--config_path={root / 'default.yaml'}", *base,
                                                    "--model.use_state=false", "--model.window=1", "--batch_size=64"])
    assert preset == recipe
    assert not preset.model.use_state and preset.model.window == 1


def test_train_reward_defaults_to_every_camera_of_the_dataset(tiny_dataset, tmp_path, capsys):
    from robo_reward.reward.modeling import ProcessRewardModel
    from robo_reward.reward.train import TrainRewardConfig, train_reward

    out = tmp_path / "r"
    train_reward(TrainRewardConfig(dataset=tiny_dataset, out=out, steps=2, batch_size=4, wandb="disabled",
                                   held_out=0.34, model=RewardModelConfig(**TINY)))
    assert "train-reward: cameras front, wrist (every camera of" in capsys.readouterr().out
    assert ProcessRewardModel.load(out).config.cameras == ["front", "wrist"]
    with pytest.raises(ValueError, match="cameras: empty"):
        ProcessRewardModel(RewardModelConfig(**TINY))


@pytest.mark.parametrize("masked", [False, True])
def test_progress_computed_once_per_frame_equals_the_per_window_path(tiny_run, tiny_dataset, tiny_model, masked):
    from robo_reward.reward.inference import predict_episode, predict_windows
    from robo_reward.reward.modeling import ProcessRewardModel

    model = ProcessRewardModel.load(tiny_run)
    cache = load_frame_cache(tiny_dataset, model.config.cameras, model.config.image_size, progress=False)
    frames = cache.episode_frames(cache.episodes[0])
    mask = np.array([True, False])[None, None] if masked else None
    fast, ref = predict_episode(model, frames, batch=7, view_mask=mask), predict_windows(model, frames, view_mask=mask)
    for k in ("progress", "stage_probs", "success_prob", "hidden"):
        np.testing.assert_allclose(getattr(fast, k), getattr(ref, k), atol=1e-5, err_msg=k)
    stateful = tiny_model(cameras=("front",), state_dim=6)  # the state path too
    st = np.random.default_rng(0).normal(size=(len(frames), 6)).astype(np.float32)
    np.testing.assert_allclose(predict_episode(stateful, frames[:, :1], state=st).progress,
                               predict_windows(stateful, frames[:, :1], state=st).progress, atol=1e-5)


@pytest.mark.parametrize("mode", ["crop", "letterbox"])
def test_non_square_frames_keep_their_aspect_the_same_way_offline_and_online(tiny_model, mode):
    import dataclasses

    from robo_reward.data.video import to_square

    frames = np.zeros((2, 1, 48, 64, 3), np.uint8)  # 4:3, a bright square in the middle
    frames[:, :, 16:32, 24:40] = 255
    sq = to_square(frames[:, 0], 32, mode)
    if mode == "crop":  # the centred 48x48, resized: the square stays square
        ys, xs = np.nonzero(sq[0, :, :, 0] > 127)
        assert (ys.max() - ys.min()) == pytest.approx(xs.max() - xs.min(), abs=1)
    else:  # black bars above and below
        assert sq[0, :4].max() == 0 and sq[0, -4:].max() == 0
    model = tiny_model(cameras=("front",))
    model.config = dataclasses.replace(model.config, resize=mode)
    online = model.prep(frames[None, :, :])  # what RL / deploy hand the model
    offline = model.prep(to_square(frames[:, 0], 32, mode)[None, :, None])  # what the frame cache stores
    assert online.shape == offline.shape == (1, 2, 1, 3, 32, 32)
    assert float((online - offline).abs().mean()) < 0.05
    with pytest.raises(ValueError, match="resize: 'stretch'"):
        RewardModelConfig(cameras=["front"], resize="stretch")


def test_init_from_copies_every_shared_tensor_and_the_stage_rows_by_name(tiny_model):
    base = tiny_model()  # stages a, b
    torch.manual_seed(1)
    new = ProcessRewardModel(RewardModelConfig(cameras=["front", "wrist"], image_size=32, stage_names=["b", "c", "a"],
                                               temporal_proportions=[0.2, 0.5, 0.3], dim=32, heads=2,
                                               temporal_layers=1, window=4, frame_gap=2))
    report = new.init_from(base)
    assert report["stages_matched"] == ["b", "a"] and report["stages_new"] == ["c"] and not report["fresh"]
    theirs, mine = base.state_dict(), new.state_dict()
    assert torch.equal(mine["encoder.net.0.weight"], theirs["encoder.net.0.weight"])
    for key in ("stage_head.weight", "stage_head.bias", "prototypes"):
        assert torch.equal(mine[key][0], theirs[key][1]) and torch.equal(mine[key][2], theirs[key][0])
        assert not torch.equal(mine[key][1], theirs[key][0]) and not torch.equal(mine[key][1], theirs[key][1])
    assert torch.allclose(new.proportions, torch.tensor([0.2, 0.5, 0.3]))  # the new task's, not the base's


def test_train_reward_init_fine_tunes_a_trained_run(tiny_run, tiny_dataset, tmp_path, capsys):
    from robo_reward.cli import main

    out = tmp_path / "adapted"
    args = ["train-reward", f"--dataset={tiny_dataset}", f"--out={out}", f"--init={tiny_run}", "--steps=2",
            "--lr=1e-9", "--wandb=disabled", "--batch_size=4"]
    assert main(args) == 0
    assert f"starting from {tiny_run}" in capsys.readouterr().out
    base, adapted = ProcessRewardModel.load(tiny_run), ProcessRewardModel.load(out)
    assert adapted.config.cameras == base.config.cameras and adapted.config.dim == base.config.dim
    for k, v in base.state_dict().items():  # at lr 1e-9 the weights are the base's
        if k != "goal_h":
            assert torch.allclose(adapted.state_dict()[k], v, atol=1e-5), k
    assert json.loads((out / "init.json").read_text())["stages_matched"] == base.config.stage_names
    assert main(["train-reward", f"--dataset={tiny_dataset}", f"--out={tmp_path / 'x'}", f"--init={tiny_run}",
                 "--cameras=front", "--steps=1"]) == 2
    assert "--init" in capsys.readouterr().err
