"""The MuJoCo-backed SO-101 behaves like LeRobot's so101_follower at the Robot API."""

from pathlib import Path

import numpy as np
import pytest
from lerobot.utils.errors import DeviceAlreadyConnectedError, DeviceNotConnectedError

from real.cameras.mujoco import MujocoCamera, MujocoCameraConfig
from real.robots import make_robot, register_lerobot_types
from real.robots.mujoco_so101 import MujocoSO101, MujocoSO101Config
from robo_reward.embodiments.so101.kinematics import ACTION_KEYS


def _robot(tmp_path: Path, **kw) -> MujocoSO101:
    return make_robot(MujocoSO101Config(calibration_dir=tmp_path / "calib", **kw))


def test_features_match_so101_follower(tmp_path):
    register_lerobot_types()
    from lerobot.cameras.opencv import OpenCVCameraConfig
    from lerobot.robots.so_follower import SO101FollowerConfig

    cams = {c: OpenCVCameraConfig(index_or_path=i, width=64, height=64, fps=20) for i, c in
            enumerate(("front", "side", "wrist"))}
    real = make_robot(SO101FollowerConfig(port="/dev/null", cameras=cams, calibration_dir=tmp_path / "c"))
    sim = _robot(tmp_path)
    assert isinstance(sim, MujocoSO101) and sim.name == "mujoco_so101"
    assert sim.observation_features == real.observation_features
    assert sim.action_features == real.action_features
    assert list(sim.action_features) == list(ACTION_KEYS)
    priv = _robot(tmp_path, privileged_state=True)
    assert set(priv.observation_features) - set(real.observation_features) == {"environment_state"}


def test_connection_errors_and_round_trip(tmp_path):
    robot = _robot(tmp_path, max_relative_target=5.0)
    with pytest.raises(DeviceNotConnectedError):
        robot.get_observation()
    with pytest.raises(DeviceNotConnectedError):
        robot.send_action({k: 0.0 for k in ACTION_KEYS})
    robot.connect()
    try:
        with pytest.raises(DeviceAlreadyConnectedError):
            robot.connect()
        obs = robot.get_observation()
        assert set(obs) == set(robot.observation_features)
        assert obs["front"].shape == (64, 64, 3) and obs["front"].dtype == np.uint8
        goal = {k: obs[k] for k in ACTION_KEYS}
        goal["shoulder_pan.pos"] += 30.0
        sent = robot.send_action(goal)
        # as so101_follower: the returned action is what was actually commanded (capped at 5 deg)
        assert sent["shoulder_pan.pos"] == pytest.approx(obs["shoulder_pan.pos"] + 5.0, abs=1e-4)
        after = robot.get_observation()
        assert after["shoulder_pan.pos"] > obs["shoulder_pan.pos"] + 0.5  # the arm moved toward it
        with pytest.raises(ValueError, match="missing"):
            robot.send_action({"gripper.pos": 50.0})
        with pytest.raises(ValueError, match="non-finite"):
            robot.send_action({**goal, "elbow_flex.pos": float("nan")})
    finally:
        robot.disconnect()
    with pytest.raises(DeviceNotConnectedError):
        robot.disconnect()


def test_seeded_episode_reset_and_ground_truth(tmp_path):
    robot = _robot(tmp_path, privileged_state=True)
    robot.connect()
    try:
        robot.reset_episode(7)
        a = robot.get_observation()
        robot.send_action({k: a[k] + 3.0 for k in ACTION_KEYS})
        robot.reset_episode(7)
        b = robot.get_observation()
        robot.reset_episode(8)
        c = robot.get_observation()
        np.testing.assert_array_equal(a["environment_state"], b["environment_state"])
        assert np.array_equal(a["front"], b["front"])  # the reset re-renders, not a stale frame
        assert not np.array_equal(a["environment_state"], c["environment_state"])
        gt = robot.ground_truth()
        assert gt["success"] is False and gt["stage"] == 0 and 0.0 <= gt["progress"] < 0.5
    finally:
        robot.disconnect()


def test_camera_faults(tmp_path):
    cams = {"front": MujocoCameraConfig(camera="front", drop_prob=0.5, seed=1),
            "wrist": MujocoCameraConfig(camera="wrist", freeze_after=3)}
    robot = _robot(tmp_path, cameras=cams, max_frame_age_ms=60)
    robot.connect()
    try:
        hold = {k: v for k, v in robot.get_observation().items() if k in ACTION_KEYS}
        for _ in range(3):
            robot.send_action(hold)
            robot.get_observation()
        front: MujocoCamera = robot.cameras["front"]
        assert front.dropped_frames > 0  # a dropped frame is returned again, it does not stop the read
        import time

        time.sleep(0.1)
        robot.send_action(hold)
        with pytest.raises(TimeoutError, match="ms old"):
            robot.get_observation()  # the frozen wrist camera's frame is now too old
    finally:
        robot.disconnect()
    with pytest.raises(ValueError, match="camera"):
        MujocoCameraConfig(camera="top")
    with pytest.raises(ValueError, match="expected type 'mujoco'"):
        from lerobot.cameras.opencv import OpenCVCameraConfig

        MujocoSO101Config(cameras={"front": OpenCVCameraConfig(index_or_path=0, width=64, height=64, fps=20)})


def test_serial_error_and_latency_faults(tmp_path):
    import time

    robot = _robot(tmp_path, serial_error_after=2, latency_s=0.05, latency_after=1)
    robot.connect()
    try:
        t0 = time.perf_counter()
        obs = robot.get_observation()
        assert time.perf_counter() - t0 < 0.05
        hold = {k: obs[k] for k in ACTION_KEYS}
        robot.send_action(hold)
        robot.send_action(hold)
        with pytest.raises(ConnectionError, match="Failed to sync write"):
            robot.send_action(hold)
        t0 = time.perf_counter()
        robot.get_observation()
        assert time.perf_counter() - t0 >= 0.05
    finally:
        robot.disconnect()
