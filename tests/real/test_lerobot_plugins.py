"""Our robot and cameras as LeRobot plugins: LeRobot's own discovery finds them (by distribution
name), its own factory builds the twin, and its own `lerobot-replay` drives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.collect import collect

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    out = tmp_path_factory.mktemp("plug") / "push"
    collect("push", 2, "mixed", out, seed=0, cameras=("front",), progress=False)
    return out


def test_lerobot_discovers_our_robot_and_camera_types():
    code = ("import sys; from lerobot.utils.import_utils import register_third_party_plugins; "
            "register_third_party_plugins(); from lerobot.robots.config import RobotConfig; "
            "from lerobot.cameras import CameraConfig; import json; "
            "print(json.dumps([sorted(RobotConfig.get_known_choices()), sorted(CameraConfig.get_known_choices())]))")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True)
    robots, cameras = json.loads(out.stdout.strip().splitlines()[-1])
    assert "mujoco_so101" in robots and "mujoco" in cameras


def test_lerobots_factory_builds_the_twin_and_a_replay_reproduces_each_demo(demos):
    from lerobot.robots.config import RobotConfig
    from lerobot.robots.utils import make_robot_from_config
    from lerobot.utils.import_utils import register_third_party_plugins

    from robo_reward.data import load_episode_meta, open_dataset

    register_third_party_plugins()
    ds = open_dataset(demos)
    names = ds.meta.features["action"]["names"]
    metas = load_episode_meta(demos)
    for ep, m in metas.items():
        robot = make_robot_from_config(RobotConfig.get_choice_class("mujoco_so101")(task="push", seed=int(m.seed)))
        assert type(robot).__name__ == "MujocoSO101"
        robot.connect()
        try:
            lo, hi = ds.meta.episodes["dataset_from_index"][ep], ds.meta.episodes["dataset_to_index"][ep]
            for i in range(lo, hi):
                robot.send_action(dict(zip(names, (float(x) for x in ds.hf_dataset[i]["action"]), strict=True)))
            assert robot.ground_truth()["success"] == m.success, ep  # lockstep physics: the same outcome
        finally:
            robot.disconnect()


def test_lerobot_replay_drives_the_twin(demos):
    exe = Path(sys.executable).with_name("lerobot-replay")
    r = subprocess.run([str(exe), "--robot.type=mujoco_so101", "--robot.task=push", "--robot.seed=0",
                        "--robot.cameras={}", f"--dataset.repo_id=local/{demos.name}", f"--dataset.root={demos}",
                        "--dataset.episode=0", "--play_sounds=false"], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Replaying episode" in r.stdout + r.stderr
