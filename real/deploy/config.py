"""The deploy loop's configuration, stop reasons and per-episode result."""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.robots import RobotConfig

from real.robots import register_lerobot_types
from real.safety import DEFAULT_SAFETY

register_lerobot_types()  # --robot.type: LeRobot's robots and mujoco_so101


class StopReason(enum.StrEnum):
    ESTOP = "estop"
    SIGNAL = "signal"
    OVERRUN = "overrun"
    STALE_FRAME = "stale_frame"
    POLICY_NAN = "policy_nan"
    REWARD_NAN = "reward_nan"
    DRIVER_ERROR = "driver_error"


class OnStop(enum.StrEnum):
    SAVE = "save"
    DISCARD = "discard"


class RobotConnectionError(RuntimeError):
    """The robot could not be reached (wrong port, unplugged, no permission)."""


@dataclass
class DeployConfig:
    robot: RobotConfig
    """LeRobot robot: --robot.type=so101_follower --robot.port=/dev/ttyACM0 --robot.cameras=...,
    or --robot.type=mujoco_so101 for a hardware-free run."""
    policy: Path | None = None
    """Run directory written by `robo-reward train-bc` or `robo-reward rl`."""
    reward_model: Path | None = None
    """Reward-model run: live stage and progress, recorded per frame."""
    camera_map: str = ""
    """For a reward model trained on cameras named otherwise: <robot camera>:<model camera>,..."""
    episodes: int = 1
    fps: int = 20
    """Control rate (Hz); the loop keeps this period and stops when it overruns it."""
    episode_time_s: float | None = None
    """Longest episode (default: the sim task's horizon on mujoco_so101, else 30 s)."""
    record: Path | None = None
    """Record each episode to this LeRobotDataset (created, or appended to if it holds rollouts)."""
    append_to_demos: bool = False
    """Allow --record to append the rollouts to a dataset of demonstrations."""
    dry_run: bool = False
    """Compute and show actions but never send them."""
    safety: Path = DEFAULT_SAFETY
    """Safety limits YAML (joint limits, max step, workspace box, rate limit)."""
    on_stop: OnStop = OnStop.SAVE
    """What to do with the episode in flight when the watchdog stops the run: save or discard."""
    overrun_factor: float = 2.0
    """Stop when one control step takes longer than this many periods."""
    stop_on_success: bool = True
    """End an episode when the robot reports success (mujoco_so101's ground truth)."""
    stop_on_progress: float | None = None
    """End an episode once the reward model's progress reaches this (e.g. 0.95)."""
    reset_time_s: float = 5.0
    """Seconds to reset the scene between episodes on a real robot (a sim robot resets itself)."""
    seed: int = 10_000
    """mujoco_so101: episode k uses scene seed seed+k (eval-policy's seeds)."""
    ask_success: bool = True
    """On a real robot, ask at each episode's end: s (success), f (failure) or Enter (unknown). The
    flag is recorded with the episode; `refit-reward` learns from it."""
    keyboard: bool = True
    """Keys while running (a terminal or X display): Esc/q e-stop, right/n end the episode."""
    display: bool = True
    """Show the live progress bar."""
    out_json: Path | None = None
    """Write the run summary here (default: <record>/deploy_summary.json when recording)."""

    def __post_init__(self) -> None:
        if self.policy is None:
            raise ValueError("--policy: missing; expected a run directory written by `robo-reward train-bc` or `rl`")
        if self.episodes < 1:
            raise ValueError(f"--episodes: {self.episodes}; expected >= 1")
        if not (1 <= self.fps <= 200):
            raise ValueError(f"--fps: {self.fps}; expected 1..200")
        if self.episode_time_s is not None and self.episode_time_s <= 0:
            raise ValueError(f"--episode-time-s: {self.episode_time_s}; expected > 0")
        if self.overrun_factor <= 1.0:
            raise ValueError(f"--overrun-factor: {self.overrun_factor}; expected > 1")
        if self.dry_run and self.record is not None:
            raise ValueError("--record with --dry-run: nothing is executed in a dry run, so there is nothing to "
                             "record; drop one of them")
        if self.stop_on_progress is not None and not (0 < self.stop_on_progress <= 1):
            raise ValueError(f"--stop-on-progress: {self.stop_on_progress}; expected in (0, 1]")
        self.on_stop = OnStop(self.on_stop)


@dataclass
class EpisodeResult:
    index: int
    steps: int
    success: bool | None
    """Ground truth where the robot knows it (mujoco_so101), else None."""
    final_progress: float | None
    stop_reason: StopReason | None
    saved: bool = False
    seed: int | None = None
    step_times: list[float] = field(default_factory=list)
    """Seconds of work per control step (observe, reward model, policy, filter, send, record)."""
    ticks: list[float] = field(default_factory=list)
    """perf_counter() at the start of each step: their differences are the loop's real period."""


class StopFlag:
    """Set by a signal handler, the e-stop key or a test: checked once per control step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: StopReason | None = None

    def set(self, reason: StopReason = StopReason.ESTOP) -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()
