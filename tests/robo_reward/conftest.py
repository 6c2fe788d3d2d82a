"""Shared fixtures: a tiny push dataset (two cameras) and a tiny reward model trained on it."""

import pytest

from robo_reward.models.config import RewardModelConfig
from robo_reward.train_reward import TrainRewardConfig, train_reward
from sim.collect import collect

TINY = dict(dim=32, heads=2, temporal_layers=1, window=4, frame_gap=2)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "push"
    collect("push", 6, "clean", out, seed=3, cameras=("front", "wrist"), progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    cfg = TrainRewardConfig(dataset=tiny_dataset, out=out, steps=220, batch_size=8, lr=1e-3, wandb="disabled",
                            held_out=0.34, checkpoint_every=100, log_every=50,
                            model=RewardModelConfig(cameras=["front", "wrist"], **TINY))
    train_reward(cfg, progress=False)
    return out
