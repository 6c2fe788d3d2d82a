"""MuJoCo-rendered cameras (LeRobot camera type ``mujoco``)."""

from real.cameras.mujoco.camera_mujoco import MujocoCamera
from real.cameras.mujoco.configuration_mujoco import MujocoCameraConfig

__all__ = ["MujocoCamera", "MujocoCameraConfig"]
