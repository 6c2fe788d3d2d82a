"""LeRobot robots robo-reward adds, and the factory the deploy loop uses for every robot."""

from __future__ import annotations

from lerobot.robots import Robot, RobotConfig


def make_robot(config: RobotConfig) -> Robot:
    """Any LeRobot robot (``so101_follower`` ...) or ours (``mujoco_so101``), through LeRobot's
    own factory: nothing is hand-written for a driver LeRobot already has."""
    from lerobot.robots.utils import make_robot_from_config

    import real.robots.mujoco_so101  # noqa: F401  (registers the config type)

    return make_robot_from_config(config)
