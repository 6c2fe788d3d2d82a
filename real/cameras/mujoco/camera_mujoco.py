"""A LeRobot ``Camera`` that renders one view of a MuJoCo scene owned by a ``MujocoSO101`` robot."""

from __future__ import annotations

import time
from typing import Any

import mujoco
import numpy as np
from lerobot.cameras.camera import Camera
from lerobot.utils.errors import DeviceAlreadyConnectedError, DeviceNotConnectedError

from real.cameras.mujoco.configuration_mujoco import MujocoCameraConfig
from sim.scene import CAMERAS


class MujocoCamera(Camera):
    """Renders the scene camera ``config.camera`` of a simulation attached with :meth:`attach`.

    A real camera captures on its own clock; here a frame is rendered on demand when the
    simulation has advanced since the last one, and stamped with the wall-clock time, so
    ``read_latest(max_age_ms)`` behaves like LeRobot's OpenCV camera: it returns the newest frame
    and raises ``TimeoutError`` once that frame is too old.
    """

    def __init__(self, config: MujocoCameraConfig):
        super().__init__(config)
        self.config = config
        self._model: mujoco.MjModel | None = None
        self._data: mujoco.MjData | None = None
        self._renderer: mujoco.Renderer | None = None
        self._frame: np.ndarray | None = None
        self._frame_time = 0.0  # wall clock of the newest frame
        self._frame_sim_time = -1.0  # sim time it shows
        self._reads = 0
        self._rng = np.random.default_rng(config.seed)
        self.dropped_frames = 0

    def __str__(self) -> str:
        return f"MujocoCamera({self.config.camera})"

    def invalidate(self) -> None:
        """The scene was reset: the next read renders afresh."""
        self._frame_sim_time = -1.0

    def attach(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Point the camera at a simulation (the robot does this before ``connect``)."""
        self._model, self._data = model, data

    @property
    def is_connected(self) -> bool:
        return self._renderer is not None

    @staticmethod
    def find_cameras() -> list[dict[str, Any]]:
        return [{"name": c, "type": "mujoco", "id": c} for c in CAMERAS]

    def connect(self, warmup: bool = True) -> None:
        if self.is_connected:
            raise DeviceAlreadyConnectedError(f"{self} is already connected.")
        if self._model is None:
            raise ConnectionError(f"{self}: no simulation attached; a MujocoCamera is created and attached by "
                                  "the mujoco_so101 robot (use it through --robot.cameras)")
        self._renderer = mujoco.Renderer(self._model, self.config.height, self.config.width)
        self._reads = 0
        if warmup:
            self._render()

    def _render(self) -> np.ndarray:
        self._renderer.update_scene(self._data, camera=self.config.camera)
        self._frame = self._renderer.render().copy()
        self._frame_time = time.perf_counter()
        self._frame_sim_time = float(self._data.time)
        return self._frame

    def _frozen(self) -> bool:
        return self.config.freeze_after is not None and self._reads > self.config.freeze_after

    def _capture(self) -> None:
        """What the camera's own capture thread would have done by now."""
        self._reads += 1
        if self._frozen():
            return
        if self._frame is not None and self.config.drop_prob and self._rng.random() < self.config.drop_prob:
            self.dropped_frames += 1
            return
        if self._frame is None or self._data.time != self._frame_sim_time:
            self._render()
        else:
            self._frame_time = time.perf_counter()  # the scene is unchanged: a fresh frame looks the same

    def read(self) -> np.ndarray:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected. Run `.connect()` first.")
        return self._render()

    def async_read(self, timeout_ms: float = 200) -> np.ndarray:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected. Run `.connect()` first.")
        before = self._frame_time
        self._capture()
        if self._frame_time == before:
            raise TimeoutError(f"{self}: no new frame within {timeout_ms} ms")
        return self._frame

    def read_latest(self, max_age_ms: int = 500) -> np.ndarray:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected. Run `.connect()` first.")
        self._capture()
        age_ms = (time.perf_counter() - self._frame_time) * 1e3
        if age_ms > max_age_ms:
            raise TimeoutError(f"{self}: the latest frame is {age_ms:.0f} ms old; expected at most {max_age_ms} ms "
                               "(the camera stopped delivering frames)")
        return self._frame

    def disconnect(self) -> None:
        if not self.is_connected:
            raise DeviceNotConnectedError(f"{self} is not connected.")
        self._renderer.close()
        self._renderer = None
