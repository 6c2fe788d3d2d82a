"""One control loop on a robot: :class:`Deployment` (sense, act, safety filter, send, watchdog)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from real.deploy.config import DeployConfig, EpisodeResult, StopFlag, StopReason
from real.safety import SafetyConfig, SafetyFilter

logger = logging.getLogger(__name__)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size and img.shape[1] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


class Deployment:
    """The deploy loop around one connected robot. Use :func:`run_deploy` from code or the CLI."""

    def __init__(self, cfg: DeployConfig, robot, policy, potential=None, stop: StopFlag | None = None,
                 on_step: Callable[[int, dict[str, Any]], None] | None = None):
        from robo_reward.embodiments import SO101
        from robo_reward.embodiments.so101.kinematics import EEDeltaController, TopDownIK

        self.cfg, self.robot, self.policy, self.potential = cfg, robot, policy, potential
        self.stop = stop or StopFlag()
        self.on_step = on_step
        self.embodiment = SO101  # the deploy loop drives SO-101 arms (so101_follower, mujoco_so101)
        self.keys = list(self.embodiment.state_keys)
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
        raw = self.robot.get_observation()
        joints = np.array([raw[k] for k in self.keys], dtype=np.float32)
        frames = {c: np.asarray(raw[c]) for c in self.robot_cameras}
        tcp = self.safety.tcp(joints)
        pixels = {c: _resize(frames[c], self.image_size) for c in self.robot_cameras}
        env_state = np.asarray(raw["environment_state"], np.float32) if self.has_env_state else None
        self._env_state = env_state
        return self.embodiment.policy_observation(joints, tcp, env_state, pixels), joints, tcp, frames

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
        from robo_reward.rl.observation import batch_obs

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
                    self._record_success(t, res, frames, a)
                    break
                if self.cfg.stop_on_progress is not None and s["phi"] >= self.cfg.stop_on_progress:
                    break
                next_t = self._pace(t, t0, next_t, res)
            if self.sim and not res.success:
                res.success = bool(self.robot.ground_truth()["success"])
        except _Stop as stop:
            res.stop_reason = stop.reason
        finally:
            bar.close(res)
        return res, frames

    def _record_success(self, t: int, res: EpisodeResult, frames: list[dict[str, Any]], a: np.ndarray) -> None:
        """Success ends the episode; record the state that shows it too (a hold frame, nothing sent)."""
        res.success = True
        s = self._sense(t + 1)
        hold = np.asarray(s["joints"], np.float32)
        frames.append(self._frame(s, hold, np.array([0.0, 0.0, 0.0, a[3]])))
        res.final_progress = None if np.isnan(s["phi"]) else s["phi"]

    def _pace(self, t: int, t0: float, next_t: float, res: EpisodeResult) -> float:
        """Fixed rate: sleep to the next tick; one step far over the period stops the run."""
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
            return next_t
        return time.perf_counter()

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
