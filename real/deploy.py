"""``robo-reward deploy``: run a policy on a robot at a fixed rate, behind a safety filter, with the
reward model's live stage and progress, recording every episode for more learning.

One control step:

    robot.get_observation() -> policy observation (the same builder as sim) -> reward model
    (progress, stage) -> policy.act -> ee_delta through the sim's IK -> safety filter ->
    robot.send_action -> record the frame

A watchdog ends the run safely on: SIGINT/SIGTERM or the e-stop key (Esc or q), an overrun
of the control period, a stale camera frame (the driver's TimeoutError), a non-finite value
from the policy or the reward model, or an exception from the driver. It then holds the
measured position, saves (or discards) the episode in flight, finalizes the dataset and
disconnects. Episodes saved before are never touched.
"""

from __future__ import annotations

import enum
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from lerobot.robots import RobotConfig

from real.robots import register_lerobot_types
from real.safety import DEFAULT_SAFETY, SafetyConfig, SafetyFilter

logger = logging.getLogger(__name__)
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
    episodes: int = 1
    fps: int = 20
    """Control rate (Hz); the loop keeps this period and stops when it overruns it."""
    episode_time_s: float | None = None
    """Longest episode (default: the sim task's horizon on mujoco_so101, else 30 s)."""
    record: Path | None = None
    """Record each episode to this LeRobotDataset (created, or appended to)."""
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


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


class Deployment:
    """The deploy loop around one connected robot. Use :func:`run_deploy` from code or the CLI."""

    def __init__(self, cfg: DeployConfig, robot, policy, potential=None, stop: StopFlag | None = None,
                 on_step: Callable[[int, dict[str, Any]], None] | None = None):
        from sim.robot import ACTION_KEYS, EEDeltaController, TopDownIK

        self.cfg, self.robot, self.policy, self.potential = cfg, robot, policy, potential
        self.stop = stop or StopFlag()
        self.on_step = on_step
        self.keys = list(ACTION_KEYS)
        ik = TopDownIK.from_assets()
        self.controller = EEDeltaController(ik)
        self.safety = SafetyFilter(SafetyConfig.load(cfg.safety), ik.model)
        self.sim = hasattr(robot, "ground_truth") and hasattr(robot, "reset_episode")
        self.image_size = (potential.models[0].config.image_size if potential is not None else 64)
        self.period = 1.0 / cfg.fps
        if cfg.episode_time_s is not None:
            self.max_steps = int(round(cfg.episode_time_s * cfg.fps))
        else:
            self.max_steps = int(robot.horizon) if self.sim else int(30 * cfg.fps)
        feats = robot.observation_features
        self.robot_cameras = [k for k, v in feats.items() if isinstance(v, tuple) and len(v) == 3]
        self.has_env_state = "environment_state" in feats
        self._check_compatible()
        self.recorder = None
        self.sent_actions = 0

    # ---- checks ------------------------------------------------------------------------------
    def _check_compatible(self) -> None:
        robot_name = getattr(self.robot, "name", type(self.robot).__name__)
        missing_joints = [k for k in self.keys if k not in self.robot.action_features]
        if missing_joints:
            raise ValueError(f"robot {robot_name}: action features lack {missing_joints}; this deploy loop drives an "
                             f"SO-101 ({self.keys})")
        need = {"policy": tuple(self.policy.cameras),
                "reward model": tuple(self.potential.cameras) if self.potential is not None else ()}
        for who, cams in need.items():
            missing = [c for c in cams if c not in self.robot_cameras]
            if missing:
                raise ValueError(f"--robot.cameras: the {who} reads camera(s) {missing}; robot {robot_name} provides "
                                 f"{self.robot_cameras}. Add them, e.g. --robot.cameras='{{{missing[0]}: {{type: opencv, "
                                 "index_or_path: 0, width: 640, height: 480, fps: 30}}'")
        if getattr(self.policy, "needs_state", False) and not self.has_env_state:
            raise ValueError(f"--policy: {self.cfg.policy} is a state-based policy; it reads object and goal positions "
                             f"(environment_state) that robot {robot_name} does not measure. Deploy an image policy "
                             "(train-bc --obs=images), or on mujoco_so101 pass --robot.privileged_state=true")

    # ---- one observation ---------------------------------------------------------------------
    def observe(self) -> tuple[dict[str, Any], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Robot observation -> (policy observation, measured joints, TCP by FK, raw camera frames)."""
        from robo_reward.shaping import policy_observation

        raw = self.robot.get_observation()
        joints = np.array([raw[k] for k in self.keys], dtype=np.float32)
        frames = {c: np.asarray(raw[c]) for c in self.robot_cameras}
        tcp = self.safety.tcp(joints)
        pixels = {c: _resize(frames[c], self.image_size) for c in self.robot_cameras}
        env_state = np.asarray(raw["environment_state"], np.float32) if self.has_env_state else None
        self._env_state = env_state
        return policy_observation(joints, tcp, env_state, pixels), joints, tcp, frames

    def hold(self) -> None:
        """Command the measured position (stop moving); errors are logged, never raised."""
        if self.cfg.dry_run:
            return
        try:
            raw = self.robot.get_observation()
            self.robot.send_action({k: float(raw[k]) for k in self.keys})
        except Exception as e:  # the driver may be what failed; the run is stopping anyway
            logger.warning("hold position failed: %s: %s", type(e).__name__, e)

    # ---- one episode -------------------------------------------------------------------------
    def _sense(self, t: int) -> dict[str, Any]:
        """Observe, then run the reward model; raises :class:`_Stop` for a watchdog trigger."""
        from robo_reward.shaping import batch_obs

        try:
            obs, joints, tcp, raw_frames = self.observe()
        except TimeoutError as e:
            logger.error("stale camera frame: %s", e)
            raise _Stop(StopReason.STALE_FRAME) from None
        except (ConnectionError, OSError, RuntimeError) as e:
            logger.error("robot driver failed in get_observation: %s: %s", type(e).__name__, e)
            raise _Stop(StopReason.DRIVER_ERROR) from None
        phi, stage = np.nan, -1
        if self.potential is not None:
            phi = float(self.potential(batch_obs([obs]), np.array([t == 0]))[0])
            stage = int(self.potential.last_stage[0])
            if not np.isfinite(phi):
                logger.error("reward model returned %s at step %d", phi, t)
                raise _Stop(StopReason.REWARD_NAN)
        # the ground truth of the state this frame shows (sim only), as `collect` records it
        gt = self.robot.ground_truth() if self.sim else None
        return {"obs": obs, "joints": joints, "tcp": tcp, "frames": raw_frames, "phi": phi, "stage": stage, "gt": gt,
                "env_state": self._env_state}

    def _act(self, s: dict[str, Any], last_arm: np.ndarray | None, t: int) -> tuple[np.ndarray, dict[str, float]]:
        """Policy -> ee_delta -> IK -> safety filter: (the ee_delta action, the joint targets to send)."""
        a = np.asarray(self.policy.act(s["obs"]), dtype=np.float64).reshape(-1)
        if a.shape != (4,) or not np.all(np.isfinite(a)):
            logger.error("policy returned %s at step %d; expected 4 finite ee_delta values", a.tolist(), t)
            raise _Stop(StopReason.POLICY_NAN)
        a = np.clip(a, -1.0, 1.0)
        joints = s["joints"]
        if last_arm is None:
            last_arm = np.radians(joints[:5].astype(np.float64))
        target = self.controller.joint_targets(s["tcp"], last_arm, a)
        safe = self.safety.filter(target, joints)
        return a, dict(zip(self.keys, safe.tolist(), strict=True))

    def _send(self, action: dict[str, float]) -> dict[str, float]:
        if self.cfg.dry_run:
            return action
        self.safety.throttle()
        try:
            sent = self.robot.send_action(action)
        except (ConnectionError, OSError, RuntimeError) as e:
            logger.error("robot driver failed in send_action: %s: %s", type(e).__name__, e)
            raise _Stop(StopReason.DRIVER_ERROR) from None
        self.sent_actions += 1
        return sent

    def run_episode(self, k: int, events: dict[str, bool] | None = None) -> tuple[EpisodeResult, list[dict]]:
        """One episode at the fixed rate. Returns its result and the frames to record (each frame:
        what was observed and the action then sent)."""
        seed = self.cfg.seed + k if self.sim else None
        if self.sim:
            self.robot.reset_episode(seed)
        self.policy.reset()
        res = EpisodeResult(index=k, steps=0, success=False if self.sim else None, final_progress=None,
                            stop_reason=None, seed=seed)
        frames: list[dict[str, Any]] = []
        bar = _ProgressDisplay(k, self.cfg.episodes, self.max_steps, self.cfg.display,
                               self.potential.stage_names if self.potential is not None else ())
        last_arm, a = None, np.zeros(4)
        next_t = time.perf_counter()
        try:
            for t in range(self.max_steps):
                t0 = time.perf_counter()
                res.ticks.append(t0)
                if self.stop.is_set():
                    raise _Stop(self.stop.reason or StopReason.ESTOP)
                if events and events.get("stop_recording"):
                    raise _Stop(StopReason.ESTOP)
                if events and events.get("exit_early"):
                    events["exit_early"] = False
                    break
                s = self._sense(t)
                if s["gt"] is not None and s["gt"]["success"]:
                    res.success = True
                a, action = self._act(s, last_arm, t)
                sent = self._send(action)
                sent_arr = np.array([sent[key] for key in self.keys], dtype=np.float32)
                last_arm = np.radians(sent_arr[:5].astype(np.float64))
                frames.append(self._frame(s, sent_arr, a))
                res.steps = t + 1
                res.final_progress = None if np.isnan(s["phi"]) else s["phi"]
                bar.update(t, s["phi"], s["stage"], action if self.cfg.dry_run else None)
                if self.on_step is not None:
                    self.on_step(t, {"obs": s["obs"], "action": action, "sent": sent, "phi": s["phi"],
                                     "stage": s["stage"], "gt": s["gt"]})
                if self.sim and self.cfg.stop_on_success and self.robot.ground_truth()["success"]:
                    # record the state that shows success too (a hold frame, nothing more is sent)
                    res.success = True
                    s = self._sense(t + 1)
                    hold = np.asarray(s["joints"], np.float32)
                    frames.append(self._frame(s, hold, np.array([0.0, 0.0, 0.0, a[3]])))
                    res.final_progress = None if np.isnan(s["phi"]) else s["phi"]
                    break
                if self.cfg.stop_on_progress is not None and s["phi"] >= self.cfg.stop_on_progress:
                    break
                # fixed rate: sleep to the next tick; one step far over the period stops the run
                elapsed = time.perf_counter() - t0
                res.step_times.append(elapsed)
                if t > 0 and elapsed > self.cfg.overrun_factor * self.period:
                    logger.error("control step %d took %.1f ms; the period is %.1f ms (overrun factor %.1f)",
                                 t, elapsed * 1e3, self.period * 1e3, self.cfg.overrun_factor)
                    raise _Stop(StopReason.OVERRUN)
                next_t += self.period
                delay = next_t - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_t = time.perf_counter()
            if self.sim and not res.success:
                res.success = bool(self.robot.ground_truth()["success"])
        except _Stop as stop:
            res.stop_reason = stop.reason
        finally:
            bar.close(res)
        return res, frames

    def _frame(self, s: dict[str, Any], sent: np.ndarray, a: np.ndarray) -> dict[str, Any]:
        fr: dict[str, Any] = {f"observation.images.{c}": s["frames"][c] for c in self.robot_cameras}
        fr["observation.state"] = s["joints"]
        fr["action"] = sent
        fr["action.ee_delta"] = np.asarray(a, np.float32)
        if self.has_env_state:
            fr["observation.environment_state"] = s["env_state"]
        if self.potential is not None:
            fr["reward.progress"] = np.array([s["phi"]], np.float32)
            fr["reward.stage"] = np.array([s["stage"]], np.int64)
        if s["gt"] is not None:
            fr["gt.progress"] = np.array([s["gt"]["progress"]], np.float32)
            fr["gt.stage"] = np.array([s["gt"]["stage"]], np.int64)
        return fr


class _Stop(Exception):
    """A watchdog trigger inside a control step."""

    def __init__(self, reason: StopReason):
        super().__init__(str(reason))
        self.reason = reason


class _ProgressDisplay:
    """A live bar of the reward model's progress with the stage name (tqdm on stderr)."""

    def __init__(self, k: int, n: int, steps: int, enabled: bool, stage_names: tuple[str, ...]):
        from tqdm import tqdm

        self.stage_names = stage_names
        self.bar = tqdm(total=100, desc=f"episode {k + 1}/{n}", disable=not enabled, leave=True,
                        bar_format="{desc} |{bar}| progress {n:.0f}% {postfix}", file=sys.stderr)
        self.steps = steps

    def update(self, t: int, phi: float, stage: int, action: dict | None) -> None:
        if self.bar.disable:
            return
        if np.isfinite(phi):
            self.bar.n = round(100 * phi)
        name = self.stage_names[stage] if 0 <= stage < len(self.stage_names) else "-"
        post = f"stage {name}  step {t + 1}/{self.steps}"
        if action is not None:  # dry run: show what would be sent
            post += "  would send " + " ".join(f"{k.removesuffix('.pos')}={v:.1f}" for k, v in action.items())
        self.bar.set_postfix_str(post, refresh=False)
        self.bar.refresh()

    def close(self, res: EpisodeResult) -> None:
        if not self.bar.disable:
            end = "SUCCESS" if res.success else (f"stopped: {res.stop_reason}" if res.stop_reason else "done")
            self.bar.set_postfix_str(f"{end} after {res.steps} steps")
        self.bar.close()


# ---- recording -------------------------------------------------------------------------------
PROGRESS_FILE = "sarm_progress.parquet"


class EpisodeRecorder:
    """Appends deploy episodes to a LeRobotDataset (robo-reward's layout: SARM stage columns from
    the ground truth where the robot knows it, else from the reward model's stages) and keeps
    ``sarm_progress.parquet`` (the reward model's per-frame progress) beside it for RA-BC."""

    def __init__(self, root: Path, fps: int, deployment: Deployment, stage_names: tuple[str, ...]):
        from robo_reward.data.lerobot_io import DatasetWriter
        from sim.robot import ACTION_KEYS

        feats = deployment.robot.observation_features
        features: dict[str, dict] = {
            f"observation.images.{c}": {"dtype": "video", "shape": tuple(feats[c]),
                                        "names": ["height", "width", "channels"]} for c in deployment.robot_cameras}
        features["observation.state"] = {"dtype": "float32", "shape": (6,), "names": list(ACTION_KEYS)}
        features["action"] = {"dtype": "float32", "shape": (6,), "names": list(ACTION_KEYS)}
        features["action.ee_delta"] = {"dtype": "float32", "shape": (4,), "names": ["dx", "dy", "dz", "gripper"]}
        if deployment.has_env_state:
            features["observation.environment_state"] = {"dtype": "float32",
                                                         "shape": tuple(feats["environment_state"]), "names": None}
        if deployment.potential is not None:
            features["reward.progress"] = {"dtype": "float32", "shape": (1,), "names": None}
            features["reward.stage"] = {"dtype": "int64", "shape": (1,), "names": None}
        if deployment.sim:
            features["gt.progress"] = {"dtype": "float32", "shape": (1,), "names": None}
            features["gt.stage"] = {"dtype": "int64", "shape": (1,), "names": None}
        self.root = Path(root)
        self.stage_names = tuple(stage_names)
        self.writer = DatasetWriter(self.root, fps, features, list(self.stage_names),
                                    robot_type=getattr(deployment.robot, "name", "so101_follower"))
        self.has_progress = deployment.potential is not None
        self.saved = 0

    def save(self, frames: list[dict[str, Any]], res: EpisodeResult, instruction: str) -> int:
        from robo_reward.data.lerobot_io import EpisodeMeta
        from robo_reward.labels import Segments

        if "gt.stage" in frames[0]:
            stage = [int(f["gt.stage"][0]) for f in frames]
            if res.success:  # as in collect: once the task is done the rest is the last stage
                stage[-1] = len(self.stage_names) - 1
        elif "reward.stage" in frames[0]:
            stage = [max(int(f["reward.stage"][0]), 0) for f in frames]
        else:
            stage = [0] * len(frames)
        seg = Segments.from_stage_per_frame(self.stage_names, stage)
        quality = "rollout" if res.stop_reason is None else f"stopped:{res.stop_reason}"
        for f in frames:
            f["task"] = instruction
        meta = EpisodeMeta(episode_index=0, length=len(frames), subtask_names=list(seg.names),
                           subtask_start_frames=list(seg.starts), subtask_end_frames=list(seg.ends),
                           quality=quality, success=bool(res.success), seed=res.seed)
        self.writer.add_episode(frames, meta)
        self.saved += 1
        return meta.episode_index

    def finalize(self) -> None:
        self.writer.finalize()
        if self.has_progress and self.writer.num_episodes:
            self._write_progress()

    def _write_progress(self) -> None:
        import pandas as pd

        from robo_reward.data.lerobot_io import _atomic_write_bytes

        files = sorted((self.root / "data").glob("chunk-*/file-*.parquet"))
        df = pd.concat([pd.read_parquet(f, columns=["index", "episode_index", "frame_index", "reward.progress"])
                        for f in files], ignore_index=True)
        df["progress_sparse"] = [float(np.asarray(v).reshape(-1)[0]) for v in df.pop("reward.progress")]
        _atomic_write_bytes(self.root / PROGRESS_FILE, df.sort_values("index").to_parquet(index=False))


# ---- entry point -----------------------------------------------------------------------------
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
    from robo_reward.bc import load_policy
    from robo_reward.shaping import LearnedPotential

    if policy is None:
        policy = load_policy(cfg.policy)
    if potential is None and cfg.reward_model is not None:
        potential = LearnedPotential.from_runs(str(cfg.reward_model), num_envs=1)
    SafetyConfig.load(cfg.safety)  # a bad safety file fails before the robot moves
    if robot is None:
        robot = make_robot(cfg.robot)
    check_port(robot)
    stop = stop or StopFlag()
    dep = Deployment(cfg, robot, policy, potential, stop, on_step)
    connect_robot(robot)
    old_handlers = {}
    if install_signals and threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            old_handlers[s] = signal.getsignal(s)
            signal.signal(s, _stop_handler(stop))
    listener, events = None, None
    if cfg.keyboard and sys.stdin.isatty():
        try:
            from lerobot.utils.keyboard_input import init_keyboard_listener

            listener, events = init_keyboard_listener()
        except Exception as e:  # no display/TTY support: Ctrl-C still works
            logger.info("keyboard controls unavailable: %s", e)
    results: list[EpisodeResult] = []
    recorder = None
    stop_reason = None
    try:
        if dep.sim:
            stage_names = tuple(robot.stage_names)
        elif potential is not None:
            stage_names = tuple(potential.stage_names)
        else:
            stage_names = ("task",)
        instruction = getattr(robot, "instruction", None) or _instruction_of(policy)
        if cfg.record is not None:
            recorder = EpisodeRecorder(cfg.record, cfg.fps, dep, stage_names)
        for k in range(cfg.episodes):
            if k > 0 and not dep.sim and cfg.reset_time_s > 0 and not stop.is_set():
                dep.hold()
                logger.warning("reset the scene: next episode in %.0f s", cfg.reset_time_s)
                _sleep_unless(stop, cfg.reset_time_s)
            res, frames = dep.run_episode(k, events)
            results.append(res)
            if res.stop_reason is not None:
                stop_reason = res.stop_reason
                dep.hold()
            keep = res.stop_reason is None or cfg.on_stop == OnStop.SAVE
            if recorder is not None and frames and keep:
                from robo_reward.data.lerobot_io import deferred_interrupts

                with deferred_interrupts():  # a second Ctrl-C never cuts a save in half
                    recorder.save(frames, res, instruction)
                res.saved = True
            if stop_reason is not None:
                break
    finally:
        try:
            if recorder is not None:
                recorder.finalize()
        finally:
            if listener is not None:
                listener.stop()
            for s, h in old_handlers.items():
                signal.signal(s, h)
            try:
                if robot.is_connected:
                    robot.disconnect()
            except Exception as e:
                logger.warning("disconnect failed: %s: %s", type(e).__name__, e)
    out = DeployResult(results, stop_reason, dep.safety.report(), cfg.record, dep.sent_actions)
    summary_path = cfg.out_json or (Path(cfg.record) / "deploy_summary.json" if cfg.record else None)
    if summary_path is not None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(out.summary(), indent=2))
    return out


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
    from sim.tasks import TASKS

    task = getattr(policy, "task", None)
    return TASKS[task].instruction if task in TASKS else (task or "")


def _sleep_unless(stop: StopFlag, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while not stop.is_set() and time.perf_counter() < end:
        time.sleep(min(0.05, end - time.perf_counter()))
