"""Base class for SO-101 multi-stage MuJoCo tasks.

A task is one file that subclasses :class:`SO101TaskEnv` and fills in named hooks, as
ManiSkill's tabletop tasks do:

- ``scene_objects()``: the boxes and goal markers it adds to the shared SO-101 scene;
- ``_initialize_episode(rng)``: place them for a new episode (seeded);
- ``evaluate()``: success plus the ground-truth stage and dense progress in [0, 1].

The ground truth in ``info`` is for evaluation and baselines only; the learned reward model
never sees it. Actions are validated: NaN/inf or out-of-space values raise ``ValueError``.
"""

from __future__ import annotations

import abc
import enum
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from robo_reward.embodiments.so101.kinematics import (
    ARM_JOINTS,
    TCP_SITE,
    EEDeltaController,
    TopDownIK,
    add_tcp_site,
    gripper_to_lerobot,
    lerobot_to_gripper,
)
from sim.scene import CAMERAS, BoxObject, GoalMarker, SceneSpec, VisualProfile, build_model


class ActionSpace(enum.StrEnum):
    EE_DELTA = "ee_delta"  # (dx, dy, dz, gripper) in [-1, 1], IK keeps the gripper pointing down
    JOINT_POS = "joint_pos"  # LeRobot SO-101 `<joint>.pos`: arm in degrees, gripper 0..100


@dataclass(frozen=True)
class TaskEval:
    """What ``evaluate()`` reports each step (ground truth, never shown to the reward model)."""

    success: bool
    stage: int
    stage_progress: float  # progress within the stage, in [0, 1]


@dataclass
class EnvConfig:
    cameras: tuple[str, ...] = CAMERAS
    """Cameras rendered into obs['pixels'] (any of front, side, wrist; empty for state only)."""
    width: int = 64
    height: int = 64
    action_space: ActionSpace = ActionSpace.EE_DELTA
    visual_profile: VisualProfile = VisualProfile.FAST
    control_dt: float = 0.05
    """Seconds per env step (25 physics steps of 2 ms): 20 Hz, the dataset fps."""
    ee_step: float = 0.02
    """Metres of TCP motion per unit of ee_delta action, per step."""
    max_episode_steps: int | None = None
    """None: the task's own limit."""

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown:
            raise ValueError(f"cameras: unknown camera(s) {unknown}; expected a subset of {list(CAMERAS)}")
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras: duplicates in {list(self.cameras)}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not (16 <= v <= 1024):
                raise ValueError(f"{name}: {v} is out of range; expected 16..1024 pixels")
        self.action_space = ActionSpace(self.action_space)
        self.visual_profile = VisualProfile(self.visual_profile)
        phys = 0.002
        if self.control_dt < phys or abs(round(self.control_dt / phys) * phys - self.control_dt) > 1e-9:
            raise ValueError(f"control_dt: {self.control_dt} must be a positive multiple of the {phys} s physics step")
        if not (0 < self.ee_step <= 0.05):
            raise ValueError(f"ee_step: {self.ee_step} m per unit is out of range; expected (0, 0.05]")


HOME_TCP = np.array([0.20, 0.0, 0.10])  # the TCP starts here, pointing down
GRIPPER_OPEN = 1.0  # ee_delta gripper command for fully open; -1.0 is fully closed


class SO101TaskEnv(gym.Env, abc.ABC):
    """SO-101 arm on a table with three cameras; subclasses add objects, resets and evaluation."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    name: ClassVar[str]
    instruction: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]
    max_steps: ClassVar[int]
    embodiment: ClassVar[str] = "so101"
    """The robot (a name in ``robo_reward.embodiments.EMBODIMENTS``)."""

    def __init__(self, config: EnvConfig | None = None, render_mode: str | None = "rgb_array", **overrides: Any):
        self.config = config or EnvConfig(**overrides)
        if config is not None and overrides:
            raise TypeError("pass either config or keyword overrides, not both")
        self.render_mode = render_mode
        cfg = self.config
        self.metadata = {**self.metadata, "render_fps": int(round(1 / cfg.control_dt))}
        self.n_substeps = int(round(cfg.control_dt / 0.002))
        self.horizon = cfg.max_episode_steps or self.max_steps

        scene = SceneSpec(boxes=self.scene_objects()[0], goals=self.scene_objects()[1],
                          width=cfg.width, height=cfg.height, profile=cfg.visual_profile)
        self.model = build_model(scene, customize=add_tcp_site)
        self.data = mujoco.MjData(self.model)
        self.ik = TopDownIK.from_assets()
        self._arm_qadr = np.array([self.model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self._arm_dadr = np.array([self.model.joint(j).dofadr[0] for j in ARM_JOINTS])
        self._grip_qadr = self.model.joint("gripper").qposadr[0]
        self._arm_act = np.array([self.model.actuator(j).id for j in ARM_JOINTS])
        self._grip_act = self.model.actuator("gripper").id
        self._grip_range = self.model.actuator_ctrlrange[self._grip_act].copy()
        self._tcp_sid = self.model.site(TCP_SITE).id
        self._gripper_bid = self.model.body("gripper").id
        self._jaw_bid = self.model.body("moving_jaw_so101_v1").id
        self._renderer: mujoco.Renderer | None = None
        self.render_seconds = 0.0  # wall time spent rendering cameras (for throughput accounting)
        self._home_q = self.ik.solve(HOME_TCP, np.zeros(5), iterations=200)
        self.ee_controller = EEDeltaController(self.ik, cfg.ee_step, self.model.actuator_ctrlrange[self._arm_act].copy())

        arm_lo = np.degrees(self.model.jnt_range[[self.model.joint(j).id for j in ARM_JOINTS], 0])
        arm_hi = np.degrees(self.model.jnt_range[[self.model.joint(j).id for j in ARM_JOINTS], 1])
        if cfg.action_space == ActionSpace.EE_DELTA:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        else:
            self.action_space = spaces.Box(np.append(arm_lo, 0.0).astype(np.float32),
                                           np.append(arm_hi, 100.0).astype(np.float32), dtype=np.float32)
        n_env = self.env_state_dim
        obs_spaces: dict[str, spaces.Space] = {
            "agent_pos": spaces.Box(np.append(arm_lo, 0.0).astype(np.float32) - 1.0,
                                    np.append(arm_hi, 100.0).astype(np.float32) + 1.0, dtype=np.float32),
            "environment_state": spaces.Box(-np.inf, np.inf, shape=(n_env,), dtype=np.float32),
        }
        if cfg.cameras:
            obs_spaces["pixels"] = spaces.Dict({
                c: spaces.Box(0, 255, shape=(cfg.height, cfg.width, 3), dtype=np.uint8) for c in cfg.cameras
            })
        self.observation_space = spaces.Dict(obs_spaces)
        self._target = np.zeros(3)
        self._steps = 0
        self._last_joint_action = np.zeros(6, dtype=np.float32)

    # ---- hooks -------------------------------------------------------------------------------
    env_state_dim: ClassVar[int]

    @classmethod
    @abc.abstractmethod
    def scene_objects(cls) -> tuple[tuple[BoxObject, ...], tuple[GoalMarker, ...]]:
        """The boxes and goal markers this task adds to the scene."""

    @abc.abstractmethod
    def _initialize_episode(self, rng: np.random.Generator) -> None:
        """Place the task's objects for a new episode (use only ``rng``, so resets are seeded)."""

    @abc.abstractmethod
    def evaluate(self) -> TaskEval:
        """Success plus the ground-truth stage and within-stage progress."""

    @abc.abstractmethod
    def environment_state_now(self) -> np.ndarray:
        """Object and goal positions (privileged state for state-based policies)."""

    # ---- physical queries --------------------------------------------------------------------
    @property
    def tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._tcp_sid].copy()

    def body_pos(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    @property
    def gripper_opening(self) -> float:
        """Measured jaw opening in [0, 1] (0 closed)."""
        return gripper_to_lerobot(self.data.qpos[self._grip_qadr], self._grip_range) / 100.0

    def is_grasped(self, body: str) -> bool:
        """Both the fixed jaw side and the moving jaw touch ``body``."""
        bid = self.model.body(body).id
        fixed = moving = False
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            b1, b2 = self.model.geom_bodyid[c.geom1], self.model.geom_bodyid[c.geom2]
            other = b2 if b1 == bid else b1 if b2 == bid else None
            if other is None:
                continue
            fixed |= other == self._gripper_bid
            moving |= other == self._jaw_bid
        return fixed and moving

    def touching(self, body_a: str, body_b: str) -> bool:
        a, b = self.model.body(body_a).id, self.model.body(body_b).id
        for i in range(self.data.ncon):
            c = self.data.contact[i]
            pair = {self.model.geom_bodyid[c.geom1], self.model.geom_bodyid[c.geom2]}
            if pair == {a, b}:
                return True
        return False

    def gripper_on_table(self) -> bool:
        """The gripper or its moving jaw touches the table (or anything else fixed to the world)."""
        return self.touching("world", "gripper") or self.touching("world", "moving_jaw_so101_v1")

    def joint_positions(self) -> np.ndarray:
        """Measured joints in LeRobot units (arm degrees, gripper 0..100): ``observation.state``."""
        arm = np.degrees(self.data.qpos[self._arm_qadr])
        return np.append(arm, gripper_to_lerobot(self.data.qpos[self._grip_qadr], self._grip_range)).astype(np.float32)

    def joint_targets(self) -> np.ndarray:
        """Commanded joints in LeRobot units: the `<joint>.pos` action a real SO-101 would get."""
        arm = np.degrees(self.data.ctrl[self._arm_act])
        return np.append(arm, gripper_to_lerobot(self.data.ctrl[self._grip_act], self._grip_range)).astype(np.float32)

    # ---- gym API -----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm_qadr] = self._home_q
        self.data.ctrl[self._arm_act] = self._home_q
        grip_open = lerobot_to_gripper(100.0 * (GRIPPER_OPEN + 1) / 2, self._grip_range)
        self.data.qpos[self._grip_qadr] = grip_open
        self.data.ctrl[self._grip_act] = grip_open
        self._initialize_episode(self.np_random)
        mujoco.mj_forward(self.model, self.data)
        self._target = self.tcp_pos
        self._steps = 0
        self._on_reset()
        obs = self._observation()
        return obs, self.task_info(self.evaluate())

    def _on_reset(self) -> None:
        """Per-episode latches a task keeps (called after objects are placed)."""

    def validate_action(self, action: Any) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action: shape {a.shape}, expected {self.action_space.shape} ({self.config.action_space})")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action: non-finite values {a.tolist()} at indices {np.flatnonzero(~np.isfinite(a)).tolist()}")
        lo, hi = self.action_space.low, self.action_space.high
        bad = np.flatnonzero((a < lo - 1e-6) | (a > hi + 1e-6))
        if bad.size:
            raise ValueError(
                f"action: values {a[bad].tolist()} at indices {bad.tolist()} are outside the "
                f"{self.config.action_space} space [{lo[bad].tolist()}, {hi[bad].tolist()}]"
            )
        return a

    def step(self, action: Any):
        a = self.validate_action(action)
        if self.config.action_space == ActionSpace.EE_DELTA:
            q, self._target = self.ee_controller.arm_target(self.tcp_pos, self.data.ctrl[self._arm_act], a)
            self.data.ctrl[self._arm_act] = q
            self.data.ctrl[self._grip_act] = lerobot_to_gripper(self.ee_controller.gripper_target(a), self._grip_range)
        else:
            self.command_joints(a)
            self._target = self.tcp_pos
        self.advance()
        ev = self.evaluate()
        terminated = ev.success
        truncated = self._steps >= self.horizon and not terminated
        return self._observation(), float(ev.success), terminated, truncated, self.task_info(ev)

    def command_joints(self, targets: np.ndarray, clip: bool = False) -> None:
        """Set the actuators to ``<joint>.pos`` targets in LeRobot units (arm degrees, gripper
        0..100); ``clip`` limits the arm to the actuators' range, as the servos do."""
        arm = np.radians(np.asarray(targets[:5], dtype=np.float64))
        if clip:
            rng = self.model.actuator_ctrlrange[self._arm_act]
            arm = np.clip(arm, rng[:, 0], rng[:, 1])
        self.data.ctrl[self._arm_act] = arm
        self.data.ctrl[self._grip_act] = lerobot_to_gripper(float(targets[5]), self._grip_range)

    def advance(self) -> None:
        """One control period of physics with the commanded targets (``n_substeps`` MuJoCo steps),
        counted towards the time limit, then the task's per-step latches."""
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)
        self._steps += 1
        self._after_step()

    def _after_step(self) -> None:
        """Update per-episode latches after physics (e.g. 'was lifted')."""

    def task_info(self, ev: TaskEval) -> dict[str, Any]:
        n = len(self.stages)
        progress = 1.0 if ev.success else min((ev.stage + float(np.clip(ev.stage_progress, 0, 1))) / n, 0.999)
        return {"success": bool(ev.success), "stage": int(ev.stage), "stage_name": self.stages[ev.stage],
                "progress": float(progress), "is_success": bool(ev.success)}

    def _observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {
            "agent_pos": self.joint_positions(),
            "environment_state": self.environment_state_now().astype(np.float32),
        }
        if self.config.cameras:
            obs["pixels"] = {c: self.render_camera(c) for c in self.config.cameras}
        return obs

    def render_camera(self, camera: str) -> np.ndarray:
        t0 = time.perf_counter()
        if self._renderer is None:
            self._renderer = mujoco.Renderer(self.model, self.config.height, self.config.width)
        self._renderer.update_scene(self.data, camera=camera)
        img = self._renderer.render().copy()
        self.render_seconds += time.perf_counter() - t0
        return img

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.render_camera("front")

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
