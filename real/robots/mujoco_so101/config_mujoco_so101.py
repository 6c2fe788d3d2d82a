"""Config of the MuJoCo-backed SO-101, registered with LeRobot as robot type ``mujoco_so101``."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.cameras import CameraConfig
from lerobot.robots.config import RobotConfig

from real.cameras.mujoco import MujocoCameraConfig


def _default_cameras() -> dict[str, CameraConfig]:
    return {c: MujocoCameraConfig(camera=c) for c in ("front", "side", "wrist")}


@RobotConfig.register_subclass("mujoco_so101")
@dataclass(kw_only=True)
class MujocoSO101Config(RobotConfig):
    """An SO-101 follower simulated in one of the sim tasks' scenes, behind LeRobot's Robot API.

    Physics runs in lockstep: each ``send_action`` advances the scene by ``control_dt``, so a
    deploy run on it is as deterministic as a sim rollout. The fault fields reproduce what goes
    wrong on hardware (a slow bus, a serial error) so the deploy loop's stops can be tested.
    """

    task: str = "pick_place"
    """Sim task whose scene (table, objects, goal) the arm works in."""
    seed: int = 0
    """Seed of the first scene; ``reset_episode(seed)`` re-seeds it."""
    cameras: dict[str, CameraConfig] = field(default_factory=_default_cameras)
    """Camera key -> MujocoCameraConfig (type mujoco); default front, side and wrist at 64x64, 20 fps."""
    control_dt: float = 0.05
    """Simulated seconds per send_action (the datasets' 20 Hz)."""
    privileged_state: bool = False
    """Also report ``environment_state`` (object and goal positions), as a motion-capture or
    object tracker would; state-based policies need it. Off: exactly so101_follower's features."""
    max_relative_target: float | None = None
    """As so101_follower: cap each joint's target to this far from the present position."""
    max_frame_age_ms: int = 500
    """get_observation raises TimeoutError for a camera frame older than this (as LeRobot's cameras)."""
    latency_s: float = 0.0
    """Fault: seconds added to every get_observation after ``latency_after`` observations."""
    latency_after: int = 0
    serial_error_after: int | None = None
    """Fault: send_action raises the Feetech bus's ConnectionError after this many actions."""

    def __post_init__(self) -> None:
        super().__post_init__()
        from sim.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"robot.task: {self.task!r}; expected one of {sorted(TASKS)}")
        for key, cam in self.cameras.items():
            if not isinstance(cam, MujocoCameraConfig):
                raise ValueError(f"robot.cameras.{key}: type {cam.type!r}; the mujoco_so101 robot renders its "
                                 "own views, expected type 'mujoco'")
        if self.control_dt <= 0:
            raise ValueError(f"robot.control_dt: {self.control_dt}; expected > 0")
        if self.latency_s < 0 or self.latency_after < 0:
            raise ValueError(f"robot.latency_s/latency_after: {self.latency_s}/{self.latency_after}; expected >= 0")
        if self.serial_error_after is not None and self.serial_error_after < 0:
            raise ValueError(f"robot.serial_error_after: {self.serial_error_after}; expected >= 0 or None")
