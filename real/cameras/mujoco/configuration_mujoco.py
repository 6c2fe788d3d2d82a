"""Config of a MuJoCo-rendered camera, registered with LeRobot as camera type ``mujoco``."""

from __future__ import annotations

from dataclasses import dataclass

from lerobot.cameras.configs import CameraConfig

from sim.scene import CAMERAS


@CameraConfig.register_subclass("mujoco")
@dataclass(kw_only=True)
class MujocoCameraConfig(CameraConfig):
    """One of the scene's cameras (``front``, ``side``, ``wrist``), rendered offscreen.

    The fault fields make it misbehave the way USB cameras do, for testing the deploy loop.
    """

    fps: int | None = 20
    width: int | None = 64
    height: int | None = 64
    camera: str = "front"
    """Scene camera to render: one of front, side, wrist."""
    drop_prob: float = 0.0
    """Fault: chance that a read finds no new frame (the previous one is returned, older)."""
    freeze_after: int | None = None
    """Fault: after this many reads the camera stops delivering frames (a hung driver); reads
    then return the last frame until it is older than ``max_age_ms``, then raise TimeoutError."""
    seed: int = 0
    """Seed of the dropped-frame draws."""

    def __post_init__(self) -> None:
        if self.camera not in CAMERAS:
            raise ValueError(f"camera: {self.camera!r}; expected one of {list(CAMERAS)}")
        for name in ("fps", "width", "height"):
            v = getattr(self, name)
            if v is None or v <= 0:
                raise ValueError(f"{name}: {v}; expected a positive integer")
        if not (0.0 <= self.drop_prob < 1.0):
            raise ValueError(f"drop_prob: {self.drop_prob}; expected in [0, 1)")
        if self.freeze_after is not None and self.freeze_after < 0:
            raise ValueError(f"freeze_after: {self.freeze_after}; expected >= 0 or None")
