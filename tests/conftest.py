"""Shared fixtures: a tiny push dataset (two cameras), a tiny reward model and BC policies on it."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "ROBO_REWARD_CACHE_DIR" not in os.environ:  # the decoded-frame stores of this session's datasets
    os.environ["ROBO_REWARD_CACHE_DIR"] = tempfile.mkdtemp(prefix="rr-frames-")
    atexit.register(shutil.rmtree, os.environ["ROBO_REWARD_CACHE_DIR"], True)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SVT_LOG", "1")

import pytest  # noqa: E402

from robo_reward.reward.config import RewardModelConfig  # noqa: E402
from robo_reward.reward.train import TrainRewardConfig, train_reward  # noqa: E402
from sim.collect import collect  # noqa: E402

TINY = dict(dim=32, heads=2, temporal_layers=1, window=4, frame_gap=2)


def _tiny_model(cameras=("front", "wrist"), state_dim=0):
    """An untrained tiny reward model (seeded): for tests of the potential, not of training."""
    import torch

    from robo_reward.reward.modeling import ProcessRewardModel

    torch.manual_seed(0)
    cfg = RewardModelConfig(cameras=list(cameras), image_size=32, stage_names=["a", "b"], temporal_proportions=[0.4, 0.6],
                            use_state=state_dim > 0, state_dim=state_dim, **TINY)
    return ProcessRewardModel(cfg).eval()


@pytest.fixture
def tiny_model():
    """Factory of untrained tiny reward models: ``tiny_model(cameras=..., state_dim=...)``."""
    return _tiny_model


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


@pytest.fixture(scope="session")
def state_policy(tiny_dataset, tmp_path_factory):
    """A small state-based BC policy (object positions in its input) on the push demos."""
    from robo_reward.policies.train_bc import TrainBCConfig, train_bc

    out = tmp_path_factory.mktemp("bc") / "state"
    train_bc(TrainBCConfig(dataset=tiny_dataset, out=out, steps=60, batch_size=32, wandb=False, progress_bar=False))
    return out


@pytest.fixture(scope="session")
def image_policy(tiny_dataset, tmp_path_factory):
    """A small image BC policy (front and wrist cameras plus proprioception) on the push demos."""
    from robo_reward.policies.train_bc import TrainBCConfig, train_bc

    out = tmp_path_factory.mktemp("bc") / "images"
    train_bc(TrainBCConfig(dataset=tiny_dataset, out=out, steps=20, batch_size=8, obs="images",
                           cameras="front,wrist", wandb=False, progress_bar=False))
    return out
