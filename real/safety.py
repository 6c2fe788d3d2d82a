"""Safety filter applied to every joint-target action before ``robot.send_action``.

Four limits, in this order: the joint position limits, the largest change from the measured
position per step, an end-effector (TCP) workspace box checked by forward kinematics, and a
command-rate limit. Each clip is counted and logged (the first time, then every 100th), so a
deploy run ends with a report of how often the policy pushed against a limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import draccus
import mujoco
import numpy as np

from robo_reward.embodiments.so101.kinematics import JOINT_NAMES, forward_tcp

logger = logging.getLogger(__name__)

DEFAULT_SAFETY = Path(__file__).resolve().parents[1] / "configs" / "robots" / "so101.yaml"


class SafetyError(ValueError):
    """An action the filter cannot make safe (non-finite values)."""


@dataclass
class SafetyConfig:
    joint_limits: dict[str, list[float]] = field(default_factory=dict)
    """Joint -> [low, high] in LeRobot units (degrees; gripper 0..100)."""
    max_step: dict[str, float] = field(default_factory=dict)
    """Joint -> largest target change from the measured position per step."""
    workspace_low: list[float] = field(default_factory=lambda: [0.05, -0.22, 0.0])
    workspace_high: list[float] = field(default_factory=lambda: [0.38, 0.22, 0.25])
    """TCP box (m, base frame)."""
    max_rate_hz: float = 60.0
    """Most actions per second."""

    def __post_init__(self) -> None:
        for name, table in (("joint_limits", self.joint_limits), ("max_step", self.max_step)):
            missing = [j for j in JOINT_NAMES if j not in table]
            extra = [j for j in table if j not in JOINT_NAMES]
            if missing or extra:
                raise ValueError(f"{name}: missing {missing}, unknown {extra}; expected exactly {list(JOINT_NAMES)}")
        for j, lim in self.joint_limits.items():
            if len(lim) != 2 or not np.all(np.isfinite(lim)) or not lim[0] < lim[1]:
                raise ValueError(f"joint_limits.{j}: {lim}; expected [low, high] with low < high")
        for j, s in self.max_step.items():
            if not (np.isfinite(s) and s > 0):
                raise ValueError(f"max_step.{j}: {s}; expected > 0")
        lo, hi = np.asarray(self.workspace_low, float), np.asarray(self.workspace_high, float)
        if lo.shape != (3,) or hi.shape != (3,) or not np.all(lo < hi):
            raise ValueError(f"workspace_low/high: {self.workspace_low}/{self.workspace_high}; expected two "
                             "[x, y, z] corners with low < high")
        if not (self.max_rate_hz > 0):
            raise ValueError(f"max_rate_hz: {self.max_rate_hz}; expected > 0")

    @classmethod
    def load(cls, path: str | Path) -> SafetyConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: safety config not found; expected a YAML like {DEFAULT_SAFETY}")
        try:
            with open(path) as f:
                return draccus.load(cls, f)
        except (draccus.utils.ParsingError, ValueError, TypeError) as e:
            cause = e.__cause__ if isinstance(e, draccus.utils.ParsingError) and e.__cause__ else e
            raise ValueError(f"{path}: {cause}") from None


class SafetyFilter:
    """Clips joint targets (LeRobot units, ``JOINT_NAMES`` order) to the configured limits.

    ``filter(target, measured)`` returns the safe target; the TCP check needs an arm model with
    the ``tcp`` site (``TopDownIK.from_assets().model``), the same kinematics sim uses.
    """

    def __init__(self, config: SafetyConfig, model: mujoco.MjModel):
        self.config = config
        self.model, self.data = model, mujoco.MjData(model)
        self.low = np.array([config.joint_limits[j][0] for j in JOINT_NAMES], float)
        self.high = np.array([config.joint_limits[j][1] for j in JOINT_NAMES], float)
        self.step = np.array([config.max_step[j] for j in JOINT_NAMES], float)
        self.ws_low = np.asarray(config.workspace_low, float)
        self.ws_high = np.asarray(config.workspace_high, float)
        self.counts: dict[str, int] = {"joint_limit": 0, "max_step": 0, "workspace": 0, "rate_limit": 0}
        self.actions = 0
        self._last_send: float | None = None

    def _count(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        n = self.counts[kind]
        if n == 1 or n % 100 == 0:
            logger.warning("safety: %s clip #%d (%s)", kind, n, detail)

    def tcp(self, joints: np.ndarray) -> np.ndarray:
        return forward_tcp(self.model, self.data, joints)

    def _outside(self, p: np.ndarray) -> float:
        """Distance (m) from the workspace box (0 inside)."""
        return float(np.linalg.norm(np.maximum(self.ws_low - p, 0) + np.maximum(p - self.ws_high, 0)))

    def filter(self, target: np.ndarray, measured: np.ndarray) -> np.ndarray:
        target = np.asarray(target, float).copy()
        measured = np.asarray(measured, float)
        if target.shape != (len(JOINT_NAMES),) or not np.all(np.isfinite(target)):
            raise SafetyError(f"action: {target.tolist()}; expected {len(JOINT_NAMES)} finite joint targets")
        self.actions += 1
        out = np.clip(target, self.low, self.high)
        if np.any(out != target):
            bad = [JOINT_NAMES[i] for i in np.flatnonzero(out != target)]
            self._count("joint_limit", f"{bad}")
        # the allowed band around the measured position, intersected with the limits; if the
        # arm sits outside its limits, the nearest in-limit position
        lo = np.clip(np.maximum(measured - self.step, self.low), self.low, self.high)
        hi = np.clip(np.minimum(measured + self.step, self.high), self.low, self.high)
        hi = np.maximum(hi, lo)
        stepped = np.clip(out, lo, hi)
        if np.any(stepped != out):
            bad = [JOINT_NAMES[i] for i in np.flatnonzero(stepped != out)]
            self._count("max_step", f"{bad}")
        out = stepped
        d_out = self._outside(self.tcp(out))
        if d_out > 0:
            start = np.clip(measured, lo, hi)  # the in-band point nearest the measured position
            d_start = self._outside(self.tcp(start))
            if d_start > 0:
                # already outside (a collision pushed it, or limits changed): only moves back in pass
                if d_out >= d_start:
                    out = np.append(start[:5], out[5])
            else:  # the largest fraction of the move that keeps the TCP inside (bisection)
                a_lo, a_hi = 0.0, 1.0
                for _ in range(12):
                    mid = 0.5 * (a_lo + a_hi)
                    if self._outside(self.tcp(start + mid * (out - start))) > 0:
                        a_hi = mid
                    else:
                        a_lo = mid
                out = np.append((start + a_lo * (out - start))[:5], out[5])
            self._count("workspace", f"TCP {np.round(self.tcp(np.append(out[:5], 0)), 3).tolist()}")
        return out

    def throttle(self) -> float:
        """Sleep until the next action is allowed by ``max_rate_hz``; returns the seconds slept."""
        now = time.perf_counter()
        slept = 0.0
        if self._last_send is not None:
            wait = self._last_send + 1.0 / self.config.max_rate_hz - now
            if wait > 0:
                self._count("rate_limit", f"{wait * 1e3:.1f} ms early")
                time.sleep(wait)
                slept = wait
        self._last_send = time.perf_counter()
        return slept

    def report(self) -> dict[str, int]:
        return {"actions": self.actions, **self.counts}
