"""robo-reward's MuJoCo SO-101 twin for LeRobot's own commands: importing this package (LeRobot's
``register_third_party_plugins()`` does, by its distribution name) registers robot type
``mujoco_so101``, so ``lerobot-record``, ``lerobot-replay`` and ``lerobot-rollout`` accept
``--robot.type=mujoco_so101``. LeRobot's factory finds the robot class beside its config."""

from real.robots.mujoco_so101 import MujocoSO101, MujocoSO101Config

__all__ = ["MujocoSO101", "MujocoSO101Config"]
