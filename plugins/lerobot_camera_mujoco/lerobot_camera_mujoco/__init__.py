"""robo-reward's MuJoCo scene cameras for LeRobot: importing this package registers camera type
``mujoco`` with LeRobot's ``CameraConfig`` (a view rendered from the twin's scene; it is attached
to a scene by the ``mujoco_so101`` robot, which is where it is used)."""

from real.cameras.mujoco import MujocoCamera, MujocoCameraConfig

__all__ = ["MujocoCamera", "MujocoCameraConfig"]
