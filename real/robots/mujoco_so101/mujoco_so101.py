"""``MujocoSO101``: a LeRobot ``Robot`` whose arm, cameras and scene are a MuJoCo simulation."""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

import numpy as np
from lerobot.robots.robot import Robot
from lerobot.robots.utils import ensure_safe_goal_position
from lerobot.utils.decorators import check_if_already_connected, check_if_not_connected

from real.cameras.mujoco import MujocoCamera
from real.robots.mujoco_so101.config_mujoco_so101 import MujocoSO101Config
from robo_reward.embodiments.so101.kinematics import ACTION_KEYS


class MujocoSO101(Robot):
    """Same ``observation_features``, ``action_features`` and ``<joint>.pos`` units (degrees, gripper
    0..100) as LeRobot's ``so101_follower``, and the same connection errors.

    Beyond the Robot API it offers what only a simulation can: :meth:`reset_episode` (a seeded
    scene) and :meth:`ground_truth` (success, stage, progress) for evaluating deployments.
    """

    config_class = MujocoSO101Config
    name = "mujoco_so101"

    def __init__(self, config: MujocoSO101Config):
        super().__init__(config)
        self.config = config
        self.cameras = {key: MujocoCamera(cam) for key, cam in config.cameras.items()}
        self.env = None
        self.actions_sent = 0
        self.observations_read = 0

    @cached_property
    def _task_cls(self):
        from sim.tasks import TASKS

        return TASKS[self.config.task]

    @cached_property
    def observation_features(self) -> dict[str, type | tuple]:
        feats: dict[str, type | tuple] = {k: float for k in ACTION_KEYS}
        for key, cam in self.config.cameras.items():
            feats[key] = (cam.height, cam.width, 3)
        if self.config.privileged_state:
            feats["environment_state"] = (self._task_cls.env_state_dim,)
        return feats

    @cached_property
    def action_features(self) -> dict[str, type]:
        return {k: float for k in ACTION_KEYS}

    @property
    def is_connected(self) -> bool:
        return self.env is not None and all(c.is_connected for c in self.cameras.values())

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        """Nothing to calibrate: simulated encoders are exact."""

    def configure(self) -> None:
        """Nothing to configure: the simulated servos are position-controlled already."""

    @check_if_already_connected
    def connect(self, calibrate: bool = True) -> None:
        from sim.tasks import make_env

        self.env = make_env(self.config.task, cameras=(), control_dt=self.config.control_dt,
                            max_episode_steps=10**9)
        self.env.reset(seed=self.config.seed)
        for cam in self.cameras.values():
            cam.attach(self.env.model, self.env.data)
            cam.connect()
        self.actions_sent = self.observations_read = 0

    # ---- sim-only extras ---------------------------------------------------------------------
    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(self._task_cls.stages)

    @property
    def instruction(self) -> str:
        return self._task_cls.instruction

    @property
    def horizon(self) -> int:
        return int(self._task_cls.max_steps)

    @check_if_not_connected
    def reset_episode(self, seed: int) -> None:
        """A new seeded scene with the arm at home, as the sim task's ``reset(seed=...)``."""
        self.env.reset(seed=seed)
        for cam in self.cameras.values():
            cam.invalidate()

    @check_if_not_connected
    def ground_truth(self) -> dict[str, Any]:
        """Success, stage and progress of the task right now (the sim task's ``evaluate()``)."""
        return self.env.task_info(self.env.evaluate())

    # ---- Robot API ---------------------------------------------------------------------------
    @check_if_not_connected
    def get_observation(self) -> dict[str, Any]:
        self.observations_read += 1
        if self.config.latency_s and self.observations_read > self.config.latency_after:
            time.sleep(self.config.latency_s)
        q = self.env.joint_positions()
        obs: dict[str, Any] = {k: float(v) for k, v in zip(ACTION_KEYS, q, strict=True)}
        for key, cam in self.cameras.items():
            obs[key] = cam.read_latest(max_age_ms=self.config.max_frame_age_ms)
        if self.config.privileged_state:
            obs["environment_state"] = self.env.environment_state_now().astype(np.float32)
        return obs

    @check_if_not_connected
    def send_action(self, action: dict[str, Any]) -> dict[str, float]:
        """Move to the ``<joint>.pos`` targets for ``control_dt`` of simulated time; returns the
        targets actually commanded (after ``max_relative_target`` and the servos' range)."""
        missing = [k for k in ACTION_KEYS if k not in action]
        if missing:
            raise ValueError(f"action: missing {missing}; expected keys {list(ACTION_KEYS)}")
        goal = {k.removesuffix(".pos"): float(action[k]) for k in ACTION_KEYS}
        bad = {k: v for k, v in goal.items() if not np.isfinite(v)}
        if bad:
            raise ValueError(f"action: non-finite targets {bad}; expected finite joint positions")
        self.actions_sent += 1
        if self.config.serial_error_after is not None and self.actions_sent > self.config.serial_error_after:
            # what lerobot's FeetechMotorsBus.sync_write raises when the servos stop answering
            raise ConnectionError("Failed to sync write 'Goal_Position' on ids=[1, 2, 3, 4, 5, 6] after 1 tries. "
                                  "[TxRxResult] There is no status packet!")
        if self.config.max_relative_target is not None:
            present = dict(zip((k.removesuffix(".pos") for k in ACTION_KEYS), self.env.joint_positions(), strict=True))
            goal = ensure_safe_goal_position({k: (g, float(present[k])) for k, g in goal.items()},
                                             float(self.config.max_relative_target))
        self.env.command_joints(np.array([goal[k.removesuffix(".pos")] for k in ACTION_KEYS]), clip=True)
        self.env.advance()
        return dict(zip(ACTION_KEYS, self.env.joint_targets().tolist(), strict=True))

    @check_if_not_connected
    def disconnect(self) -> None:
        for cam in self.cameras.values():
            if cam.is_connected:
                cam.disconnect()
        self.env.close()
        self.env = None
