"""``run_deploy``: connect, run the episodes, record, and always finalize and disconnect."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from real.deploy.config import DeployConfig, EpisodeResult, OnStop, RobotConnectionError, StopFlag, StopReason
from real.deploy.loop import Deployment
from real.deploy.recorder import EpisodeRecorder, check_rollout_dataset
from real.safety import SafetyConfig
from robo_reward.envs import TASKS

logger = logging.getLogger(__name__)


@dataclass
class DeployResult:
    episodes: list[EpisodeResult]
    stop_reason: StopReason | None
    safety: dict[str, int]
    record: Path | None
    sent_actions: int

    @property
    def success_rate(self) -> float | None:
        known = [e.success for e in self.episodes if e.success is not None]
        return float(np.mean(known)) if known else None

    def summary(self) -> dict[str, Any]:
        work = np.concatenate([e.step_times for e in self.episodes] or [np.zeros(0)])
        periods = np.concatenate([np.diff(e.ticks) for e in self.episodes if len(e.ticks) > 1] or [np.zeros(0)])
        return {
            "episodes": len(self.episodes),
            "success_rate": self.success_rate,
            "stop_reason": self.stop_reason,
            "sent_actions": self.sent_actions,
            "safety": self.safety,
            "record": str(self.record) if self.record else None,
            "step_time_ms": _percentiles(work),
            "period_ms": _percentiles(periods),
            "per_episode": [{"index": e.index, "seed": e.seed, "steps": e.steps, "success": e.success,
                             "final_progress": e.final_progress, "stop_reason": e.stop_reason, "saved": e.saved}
                            for e in self.episodes],
        }


def _connection_help(robot, detail: str) -> RobotConnectionError:
    port = getattr(getattr(robot, "config", None), "port", None)
    where = f" on port {port!r}" if port else ""
    return RobotConnectionError(
        f"could not connect to robot {getattr(robot, 'name', type(robot).__name__)}{where} ({detail}). "
        "Find the arm's port with `lerobot-find-port` (it lists the serial ports, then asks you to unplug the "
        "USB cable to see which one disappears), pass it as --robot.port, and check you may open it "
        "(e.g. `sudo chmod 666 /dev/ttyACM0` or add yourself to the dialout group)."
    )


def check_port(robot) -> None:
    """Fail fast, before anything else, when a serial port path does not exist."""
    port = getattr(getattr(robot, "config", None), "port", None)
    if isinstance(port, str) and port.startswith("/dev/") and not Path(port).exists():
        raise _connection_help(robot, f"{port} does not exist")


def connect_robot(robot) -> None:
    """``robot.connect()``, turning the driver's connection errors into one message that says
    what to check (the port, the cable, the permissions)."""
    try:
        robot.connect()
    except ConnectionError as e:
        raise _connection_help(robot, " ".join(str(e).split())) from None


def run_deploy(cfg: DeployConfig, policy=None, potential=None, stop: StopFlag | None = None,
               on_step: Callable[[int, dict[str, Any]], None] | None = None, install_signals: bool = True,
               robot=None) -> DeployResult:
    """Run ``cfg.episodes`` episodes on ``cfg.robot``. ``policy``/``potential``/``robot`` default to
    what ``cfg`` names; ``stop`` and ``on_step`` let callers (tests, benchmarks) stop and watch it."""
    from real.robots import make_robot
    from robo_reward.policies.registry import load_policy
    from robo_reward.rl.potentials import LearnedPotential

    if policy is None:
        policy = load_policy(cfg.policy)
    if potential is None and cfg.reward_model is not None:
        from robo_reward.utils import parse_camera_map

        potential = LearnedPotential.from_runs(str(cfg.reward_model), num_envs=1,
                                               camera_map=parse_camera_map(cfg.camera_map))
    SafetyConfig.load(cfg.safety)  # a bad safety file fails before the robot moves
    if cfg.record is not None:  # and so does a --record into a dataset of demonstrations
        check_rollout_dataset(Path(cfg.record), cfg.append_to_demos)
    if robot is None:
        robot = make_robot(cfg.robot)
    check_port(robot)
    stop = stop or StopFlag()
    dep = Deployment(cfg, robot, policy, potential, stop, on_step)
    connect_robot(robot)
    old_handlers = install_stop_signals(stop) if install_signals else {}
    listener, events = start_keyboard(cfg)
    recorder = None
    try:
        if cfg.record is not None:
            recorder = EpisodeRecorder(cfg.record, cfg.fps, dep, stage_names_of(dep, robot, potential),
                                       cfg.append_to_demos)
        instruction = getattr(robot, "instruction", None) or _instruction_of(policy)
        results, stop_reason = run_episodes(cfg, dep, recorder, events, instruction, stop)
    finally:
        try:
            if recorder is not None:
                recorder.finalize()
        finally:
            if listener is not None:
                listener.stop()
            for s, h in old_handlers.items():
                signal.signal(s, h)
            disconnect_quietly(robot)
    out = DeployResult(results, stop_reason, dep.safety.report(), cfg.record, dep.sent_actions)
    summary_path = cfg.out_json or (Path(cfg.record) / "deploy_summary.json" if cfg.record else None)
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(out.summary(), indent=2))
    return out


def run_episodes(cfg: DeployConfig, dep: Deployment, recorder: EpisodeRecorder | None, events, instruction: str,
                 stop: StopFlag) -> tuple[list[EpisodeResult], StopReason | None]:
    """The episodes, each recorded when it ends (a stopped one only with ``--on-stop=save``)."""
    from robo_reward.data.lerobot_io import deferred_interrupts

    results: list[EpisodeResult] = []
    stop_reason = None
    for k in range(cfg.episodes):
        if k > 0 and not dep.sim and cfg.reset_time_s > 0 and not stop.is_set():
            dep.hold()
            logger.warning("reset the scene: next episode in %.0f s", cfg.reset_time_s)
            _sleep_unless(stop, cfg.reset_time_s)
        res, frames = dep.run_episode(k, events)
        if res.success is None and cfg.ask_success and res.stop_reason is None:
            res.success = ask_success(k)
        results.append(res)
        if res.stop_reason is not None:
            stop_reason = res.stop_reason
            dep.hold()
        keep = res.stop_reason is None or cfg.on_stop == OnStop.SAVE
        if recorder is not None and frames and keep:
            with deferred_interrupts():  # a second Ctrl-C never cuts a save in half
                recorder.save(frames, res, instruction)
            res.saved = True
        if stop_reason is not None:
            break
    return results, stop_reason


def ask_success(k: int, stream=None) -> bool | None:
    """The operator's verdict on episode ``k`` (a real robot has no ground truth): s / f / Enter."""
    stream = stream or sys.stdin
    if not stream.isatty():
        return None
    dep_prompt = f"episode {k}: success? [s]uccess / [f]ailure / Enter: unknown > "
    while True:
        print(dep_prompt, end="", flush=True)
        line = stream.readline()
        key = line.strip().lower()[:1]
        if key in ("s", "f", ""):
            return {"s": True, "f": False, "": None}[key]


def stage_names_of(dep: Deployment, robot, potential) -> tuple[str, ...]:
    """The stages recorded with each episode: the twin's task, else the reward model's."""
    if dep.sim:
        return tuple(robot.stage_names)
    if potential is not None:
        return tuple(potential.stage_names)
    return ("task",)


def install_stop_signals(stop: StopFlag) -> dict:
    """SIGINT/SIGTERM set ``stop`` (main thread only); returns the old handlers to restore."""
    old = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.getsignal(s)
            signal.signal(s, _stop_handler(stop))
    return old


def start_keyboard(cfg: DeployConfig):
    """LeRobot's keyboard listener (e-stop, episode keys) on a TTY; (None, None) otherwise."""
    if not (cfg.keyboard and sys.stdin.isatty()):
        return None, None
    try:
        from lerobot.utils.keyboard_input import init_keyboard_listener

        return init_keyboard_listener()
    except Exception as e:  # no display/TTY support: Ctrl-C still works
        logger.info("keyboard controls unavailable: %s", e)
        return None, None


def disconnect_quietly(robot) -> None:
    try:
        if robot.is_connected:
            robot.disconnect()
    except Exception as e:
        logger.warning("disconnect failed: %s: %s", type(e).__name__, e)


def _stop_handler(stop: StopFlag):
    """First SIGINT/SIGTERM: stop safely at the next step. A second one: interrupt at once (the
    ``finally`` still finalizes the dataset and disconnects)."""

    def handler(signum, frame):  # noqa: ARG001
        if stop.is_set():
            raise KeyboardInterrupt
        logger.warning("signal %d: stopping safely (send it again to interrupt at once)", signum)
        stop.set(StopReason.SIGNAL)

    return handler


def _percentiles(x: np.ndarray) -> dict[str, float] | None:
    if not len(x):
        return None
    return {"p50": float(np.percentile(x, 50) * 1e3), "p99": float(np.percentile(x, 99) * 1e3),
            "max": float(np.max(x) * 1e3)}


def _instruction_of(policy) -> str:
    task = getattr(policy, "task", None)
    return TASKS[task].instruction if task in TASKS else (task or "")


def _sleep_unless(stop: StopFlag, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while not stop.is_set() and time.perf_counter() < end:
        time.sleep(min(0.05, end - time.perf_counter()))
