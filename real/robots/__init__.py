"""LeRobot robots robo-reward adds, and the factory the deploy loop uses for every robot."""

from __future__ import annotations

import importlib
import logging
import pkgutil

from lerobot.robots import Robot, RobotConfig

logger = logging.getLogger(__name__)


def register_lerobot_types() -> None:
    """Import LeRobot's robot and camera packages (their config types register on import, as in
    ``lerobot-record``) and ours, so ``--robot.type`` and ``--robot.cameras`` accept them all."""
    import lerobot.cameras
    import lerobot.robots

    for pkg in (lerobot.robots, lerobot.cameras):
        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.ispkg:
                try:
                    importlib.import_module(f"{pkg.__name__}.{mod.name}")
                except ImportError as e:  # an optional SDK missing: that type is simply not offered
                    logger.debug("skipping %s.%s: %s", pkg.__name__, mod.name, e)
    import real.cameras.mujoco  # noqa: F401
    import real.robots.mujoco_so101  # noqa: F401


def make_robot(config: RobotConfig) -> Robot:
    """Any LeRobot robot (``so101_follower`` ...) or ours (``mujoco_so101``), through LeRobot's
    own factory: nothing is hand-written for a driver LeRobot already has."""
    from lerobot.robots.utils import make_robot_from_config

    register_lerobot_types()
    return make_robot_from_config(config)
