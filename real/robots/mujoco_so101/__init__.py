"""The MuJoCo-backed SO-101 (LeRobot robot type ``mujoco_so101``)."""

from real.robots.mujoco_so101.config_mujoco_so101 import MujocoSO101Config
from real.robots.mujoco_so101.mujoco_so101 import MujocoSO101

__all__ = ["MujocoSO101", "MujocoSO101Config"]
