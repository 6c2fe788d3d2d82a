"""The Franka Panda as ManiSkill 3 drives it (``panda_wristcam``): 7 arm joints in radians and two
fingers in metres. ManiSkill supplies the TCP, so no kinematics model ships here."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from robo_reward.embodiments.base import EMBODIMENTS, Embodiment


@EMBODIMENTS.register("panda")
class PandaEmbodiment(Embodiment):
    name: ClassVar[str] = "panda"
    joint_names: ClassVar[tuple[str, ...]] = (*(f"panda_joint{i}" for i in range(1, 8)),
                                              "panda_finger_joint1", "panda_finger_joint2")
    joint_units: ClassVar[str] = "arm joints in radians, fingers in metres"

    def policy_joints(self, agent_pos: np.ndarray) -> np.ndarray:
        """The arm in radians, the fingers (m) x 10."""
        q = np.asarray(agent_pos, dtype=np.float64)
        return np.concatenate([q[..., :-2], q[..., -2:] * 10.0], -1)


PANDA = EMBODIMENTS.get("panda")

__all__ = ["PANDA", "PandaEmbodiment"]
