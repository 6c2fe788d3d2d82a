"""ManiSkill 3 tabletop tasks (Panda with a wrist camera) behind the MuJoCo tasks' env API.

:class:`ManiSkillTaskEnv` gives what ``SO101TaskEnv`` gives: seeded ``reset``, ``ee_delta`` actions
(dx, dy, dz, gripper) in [-1, 1] with 2 cm of TCP motion per unit and the gripper held pointing
down (tasks that need it to turn, like PegInsertionSide, add ``dyaw``: up to 0.1 rad per unit,
counter-clockwise seen from above), observations ``agent_pos``, ``environment_state`` and
``pixels`` from cameras named ``front``, ``side`` and ``wrist``, and ``info`` with ``success``,
the ground-truth ``stage``/``stage_name``/``progress`` (from the task's ``evaluate()`` signals and
privileged state) plus ManiSkill's ``normalized_dense_reward``. It also offers the queries the
scripted experts use (``tcp_pos``, ``tcp_yaw``, ``body_pos``, ``is_grasped``).

One env at a time here (``physx_cpu``); with CUDA, ``sim_backend="physx_cuda"`` is chosen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sim.maniskill import PREFIX, require_maniskill
from sim.scene import CAMERAS
from sim.tasks.base import TaskEval

# pd_ee_delta_pose maps a normalized 1.0 to 0.1 m and 0.1 rad; our ee_delta unit is 2 cm (and 0.1 rad)
MS_POS_SCALE = 0.1
MS_ROT_SCALE = 0.1
YAW_STEP = 0.1
EE_DELTA_NAMES = ("dx", "dy", "dz", "gripper")
EE_DELTA_YAW_NAMES = ("dx", "dy", "dz", "dyaw", "gripper")
WRIST_UID = "hand_camera"  # panda_wristcam's camera, exposed as "wrist"


@dataclass
class MSConfig:
    cameras: tuple[str, ...] = CAMERAS
    width: int = 64
    height: int = 64
    ee_step: float = 0.02
    """Metres of TCP motion per unit of ee_delta action, per step."""
    control_dt: float = 0.05
    """ManiSkill's tabletop tasks control at 20 Hz."""
    max_episode_steps: int | None = None
    sim_backend: str = "auto"
    """physx_cpu, physx_cuda, or auto (CUDA when torch sees a GPU)."""

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown:
            raise ValueError(f"cameras: unknown camera(s) {unknown}; expected a subset of {list(CAMERAS)}")
        if not (0 < self.ee_step <= 0.1):
            raise ValueError(f"ee_step: {self.ee_step}; expected in (0, 0.1] m")


@dataclass(frozen=True)
class TaskSpec:
    env_id: str
    instruction: str
    stages: tuple[str, ...]
    max_steps: int
    bodies: dict[str, str]
    """Our name -> the env attribute holding the actor."""
    state: Callable[[Any], Any]
    """Privileged environment state (object and goal positions) of the unwrapped env: a
    (num_envs, D) tensor."""
    evaluate: Callable[[ManiSkillTaskEnv], TaskEval] = field(compare=False)
    yaw: bool = False
    """The task needs the gripper to turn about the vertical: the action gains ``dyaw``."""


def _np(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64).reshape(-1)


def _cat(*parts):
    import torch

    return torch.cat([x.reshape(x.shape[0], -1) for x in parts], dim=1)


def _yaw(pose) -> float:
    """Heading of a pose's x axis in the world xy plane (rad)."""
    w, x, y, z = _np(pose.q)[:4]
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _stage_progress(stage: int, within: float) -> TaskEval:
    return TaskEval(success=False, stage=stage, stage_progress=float(np.clip(within, 0.0, 1.0)))


def _frac(d: float, d0: float) -> float:
    return 1.0 - d / max(d0, 1e-6)


# ---- per-task ground truth ----------------------------------------------------------------------
def _reach_or_grasp(env: ManiSkillTaskEnv, body: str, near: float = 0.025) -> TaskEval:
    """The first two stages of every task: reach ``body`` (distance closed), then close on it."""
    d = np.linalg.norm(env.tcp_pos - env.body_pos(body))
    if d < near:
        return _stage_progress(1, 1.0 - env.gripper_opening)
    return _stage_progress(0, _frac(d, env.start["reach_dist"]))


def _pick_cube_eval(env: ManiSkillTaskEnv) -> TaskEval:
    info = env.last_ms_info
    if bool(info.get("success", False)):
        return TaskEval(True, 2, 1.0)
    if env.is_grasped("cube"):
        return _stage_progress(2, _frac(np.linalg.norm(env.goal_pos - env.body_pos("cube")), env.start["goal_dist"]))
    return _reach_or_grasp(env, "cube")


def _stack_cube_eval(env: ManiSkillTaskEnv) -> TaskEval:
    info = env.last_ms_info
    if bool(info.get("success", False)):
        return TaskEval(True, 3, 1.0)
    if bool(info.get("is_cubeA_on_cubeB", False)):
        return _stage_progress(3, env.gripper_opening)
    if env.is_grasped("cubeA"):
        top = env.body_pos("cubeB") + np.array([0.0, 0.0, 0.04])
        return _stage_progress(2, _frac(np.linalg.norm(env.body_pos("cubeA") - top), env.start["stack_dist"]))
    return _reach_or_grasp(env, "cubeA")


def _peg_eval(env: ManiSkillTaskEnv) -> TaskEval:
    u = env.unwrapped_ms
    info = env.last_ms_info
    if bool(info.get("success", False)):
        return TaskEval(True, 3, 1.0)
    if env.is_grasped("peg"):
        head = _np((u.goal_pose.inv() * u.peg_head_pose).p)
        yz = float(np.linalg.norm(head[1:]))
        if yz < 0.01:  # lined up with the hole: the rest is pushing in along x
            return _stage_progress(3, _frac(abs(head[0]), env.start["insert_depth"]))
        return _stage_progress(2, _frac(yz, env.start["align_dist"]))
    return _reach_or_grasp(env, "peg", near=0.03)


SPECS: dict[str, TaskSpec] = {
    "PickCube-v1": TaskSpec(
        "PickCube-v1", "Pick up the red cube and move it to the goal.", ("reach", "grasp", "move"), 100,
        {"cube": "cube", "goal": "goal_site"},
        lambda u: _cat(u.cube.pose.p, u.goal_site.pose.p), _pick_cube_eval),
    "StackCube-v1": TaskSpec(
        "StackCube-v1", "Stack the red cube on top of the green cube.", ("reach", "grasp", "stack", "release"), 150,
        {"cubeA": "cubeA", "cubeB": "cubeB"},
        lambda u: _cat(u.cubeA.pose.p, u.cubeB.pose.p), _stack_cube_eval),
    "PegInsertionSide-v1": TaskSpec(
        "PegInsertionSide-v1", "Insert the peg into the hole in the box from the side.",
        ("reach", "grasp", "align", "insert"), 200,
        {"peg": "peg", "box": "box"},
        lambda u: _cat(u.peg.pose.p, u.peg.pose.q, u.box_hole_pose.p, u.box_hole_pose.q),
        _peg_eval, yaw=True),
}


def to_ms_action(actions, tcp_pose, yaw: bool, ee_step: float):
    """Batched ``ee_delta`` actions (N, 4 or 5) in [-1, 1] -> ``pd_ee_delta_pose`` actions (N, 7), as a
    tensor on the sim's device. The rotation part holds the gripper pointing straight down (as the
    SO-101 IK does; pd_ee_delta_pose alone lets it droop under a load) and turns it by ``dyaw``."""
    import torch

    m = tcp_pose.to_transformation_matrix()
    a = torch.as_tensor(np.asarray(actions), dtype=torch.float32, device=m.device)
    out = torch.zeros((a.shape[0], 7), dtype=torch.float32, device=m.device)
    out[:, :3] = a[:, :3] * (ee_step / MS_POS_SCALE)
    # world rotation vector taking the TCP's z axis back to straight down
    z = m[:, :3, 2].float()
    down = torch.tensor([0.0, 0.0, -1.0], device=m.device).expand_as(z)
    axis = torch.linalg.cross(z, down)
    sin = axis.norm(dim=1, keepdim=True)
    turn = axis / sin.clamp_min(1e-9) * torch.atan2(sin, -z[:, 2:3])
    if yaw:
        turn[:, 2] += a[:, 3] * YAW_STEP
    out[:, 3:6] = (-turn / MS_ROT_SCALE).clamp(-1.0, 1.0)  # the controller's rotation is sign-flipped
    out[:, 6] = a[:, -1]
    return out


def task_spec(task: str) -> tuple[str, TaskSpec]:
    """``maniskill/<EnvId>`` (or the bare id) -> (EnvId, its spec)."""
    env_id = task.removeprefix(PREFIX)
    if env_id not in SPECS:
        raise ValueError(f"task: unknown ManiSkill task {task!r}; expected one of {[PREFIX + k for k in SPECS]}")
    return env_id, SPECS[env_id]


def make_ms_env(env_id: str, cfg: MSConfig, num_envs: int = 1):
    """The ManiSkill env behind our adapters (``RR-<env_id>`` with our cameras, panda_wristcam,
    pd_ee_delta_pose) and its sim backend: ``cfg.sim_backend``, where auto is physx_cuda when torch
    sees a GPU. ManiSkill's CPU sim holds one env, so physx_cpu refuses ``num_envs`` > 1."""
    import torch

    backend = cfg.sim_backend
    if backend == "auto":
        backend = "physx_cuda" if torch.cuda.is_available() else "physx_cpu"
    if backend == "physx_cpu" and num_envs != 1:
        raise ValueError(f"num_envs: {num_envs} with sim_backend=physx_cpu; ManiSkill's CPU sim holds one env, "
                         "so the batched env needs CUDA (physx_cuda) for num_envs > 1")
    # panda_wristcam is the Panda plus a wrist camera; ManiSkill warns it is "not supported" by
    # tasks that list only "panda". Silence that one spurious warning while making the env.
    ms_log = logging.getLogger("mani_skill")
    level = ms_log.level
    ms_log.setLevel(logging.ERROR)
    try:
        env = gym.make(
            _with_our_cameras(env_id), obs_mode="rgb" if cfg.cameras else "state_dict",
            control_mode="pd_ee_delta_pose", robot_uids="panda_wristcam", sim_backend=backend,
            render_backend="gpu" if backend == "physx_cuda" else "cpu",
            sensor_configs=dict(width=cfg.width, height=cfg.height), max_episode_steps=10**9,
            num_envs=num_envs,
        )
    finally:
        ms_log.setLevel(level)
    return env, backend


def _with_our_cameras(env_id: str) -> str:
    """Register ``RR-<env_id>``: the task with ``front`` and ``side`` cameras (the wrist camera
    comes with the ``panda_wristcam`` robot)."""
    import mani_skill.envs  # noqa: F401
    from mani_skill.sensors.camera import CameraConfig
    from mani_skill.utils import sapien_utils
    from mani_skill.utils.registration import REGISTERED_ENVS, register_env

    ours = f"RR-{env_id}"
    if ours in REGISTERED_ENVS:
        return ours
    base = REGISTERED_ENVS[env_id].cls

    class WithCameras(base):  # type: ignore[misc, valid-type]
        @property
        def _default_sensor_configs(self):
            target = [-0.05, 0.0, 0.05]
            return [CameraConfig("front", sapien_utils.look_at(eye=[0.45, 0.0, 0.35], target=target), 64, 64, 1.2, 0.01, 10),
                    CameraConfig("side", sapien_utils.look_at(eye=[-0.05, 0.5, 0.35], target=target), 64, 64, 1.2, 0.01, 10)]

    WithCameras.__name__ = f"RR{base.__name__}"
    register_env(ours, max_episode_steps=SPECS[env_id].max_steps)(WithCameras)
    return ours


class ManiSkillTaskEnv(gym.Env):
    """One ManiSkill task env with the SO-101 tasks' API (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    robot_type: ClassVar[str] = "panda_wristcam"
    embodiment: ClassVar[str] = "panda"

    def __init__(self, task: str, config: MSConfig | None = None, **overrides: Any):
        require_maniskill()

        env_id, self.spec_ = task_spec(task)
        self.name = PREFIX + env_id
        self.instruction = self.spec_.instruction
        self.stages = self.spec_.stages
        self.max_steps = self.spec_.max_steps
        self.config = config or MSConfig(**overrides)
        cfg = self.config
        self.horizon = cfg.max_episode_steps or self.max_steps
        self._env, self.sim_backend = make_ms_env(env_id, cfg)
        self.unwrapped_ms = self._env.unwrapped
        self.yaw_step = YAW_STEP
        self.action_names = EE_DELTA_YAW_NAMES if self.spec_.yaw else EE_DELTA_NAMES
        self.action_space = spaces.Box(-1.0, 1.0, shape=(len(self.action_names),), dtype=np.float32)
        self.render_seconds = 0.0
        self.last_ms_info: dict[str, Any] = {}
        self.start: dict[str, float] = {}
        self._steps = 0
        obs, _ = self.reset(seed=0)
        self.env_state_dim = int(obs["environment_state"].shape[0])
        n_q = obs["agent_pos"].shape[0]
        obs_spaces: dict[str, spaces.Space] = {
            "agent_pos": spaces.Box(-np.inf, np.inf, (n_q,), np.float32),
            "environment_state": spaces.Box(-np.inf, np.inf, (self.env_state_dim,), np.float32),
        }
        if cfg.cameras:
            obs_spaces["pixels"] = spaces.Dict({c: spaces.Box(0, 255, (cfg.height, cfg.width, 3), np.uint8)
                                                for c in cfg.cameras})
        self.observation_space = spaces.Dict(obs_spaces)
        self.state_names = tuple(f"{j.name}.pos" for j in self.unwrapped_ms.agent.robot.get_active_joints())

    # ---- queries the experts and ground truth use ------------------------------------------
    @property
    def tcp_pos(self) -> np.ndarray:
        return _np(self.unwrapped_ms.agent.tcp.pose.p)

    @property
    def tcp_yaw(self) -> float:
        """Heading (rad) of the TCP's x axis in the world xy plane."""
        return _yaw(self.unwrapped_ms.agent.tcp.pose)

    def body_pos(self, name: str) -> np.ndarray:
        return _np(getattr(self.unwrapped_ms, self.spec_.bodies[name]).pose.p)

    @property
    def goal_pos(self) -> np.ndarray:
        return self.body_pos("goal")

    def is_grasped(self, name: str) -> bool:
        return bool(self.unwrapped_ms.agent.is_grasping(getattr(self.unwrapped_ms, self.spec_.bodies[name]))[0])

    @property
    def gripper_opening(self) -> float:
        """Finger opening in [0, 1] (0 closed)."""
        q = _np(self.unwrapped_ms.agent.robot.get_qpos())
        return float(np.clip(q[-2:].sum() / 0.08, 0.0, 1.0))

    def joint_positions(self) -> np.ndarray:
        return _np(self.unwrapped_ms.agent.robot.get_qpos()).astype(np.float32)

    def joint_targets(self) -> np.ndarray:
        """The joint targets the arm's IK controller commands (rad; fingers in m)."""
        ctrl = self.unwrapped_ms.agent.controller.controllers
        arm = getattr(ctrl["arm"], "_target_qpos", None)
        grip = getattr(ctrl["gripper"], "_target_qpos", None)
        q = self.joint_positions().astype(np.float64)
        if arm is not None:
            q[: _np(arm).size] = _np(arm)
        if grip is not None:
            g = _np(grip)
            q[-g.size:] = g
        return q.astype(np.float32)

    def evaluate(self) -> TaskEval:
        return self.spec_.evaluate(self)

    def environment_state_now(self) -> np.ndarray:
        return _np(self.spec_.state(self.unwrapped_ms)[0]).astype(np.float32)

    # ---- gym API ----------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self._env.reset(seed=seed, options=options)
        self._ms_info = info
        self.last_ms_info = self._scalars(info)
        self._steps = 0
        self.start = self._start_distances()
        return self._observation(obs), self.task_info(self.evaluate())

    def _start_distances(self) -> dict[str, float]:
        out = {"reach_dist": 0.1}
        b = self.spec_.bodies
        first = next(iter(b))
        out["reach_dist"] = float(np.linalg.norm(self.tcp_pos - self.body_pos(first)))
        if "goal" in b:
            out["goal_dist"] = float(np.linalg.norm(self.goal_pos - self.body_pos("cube")))
        if "cubeB" in b:
            out["stack_dist"] = float(np.linalg.norm(self.body_pos("cubeA") - self.body_pos("cubeB") - [0, 0, 0.04]))
        if "peg" in b:
            u = self.unwrapped_ms
            head = _np((u.goal_pose.inv() * u.peg_head_pose).p)
            out["align_dist"] = float(np.linalg.norm(head[1:]))
            out["insert_depth"] = float(max(abs(head[0]), 0.01))
        return out

    def validate_action(self, action: Any) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        n = len(self.action_names)
        if a.shape != (n,):
            raise ValueError(f"action: shape {a.shape}, expected ({n},) (ee_delta: {', '.join(self.action_names)})")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action: non-finite values {a.tolist()}")
        bad = np.flatnonzero(np.abs(a) > 1 + 1e-6)
        if bad.size:
            raise ValueError(f"action: values {a[bad].tolist()} at indices {bad.tolist()} are outside [-1, 1]")
        return a

    def step(self, action: Any):
        a = self.validate_action(action)
        ms_action = to_ms_action(a[None], self.unwrapped_ms.agent.tcp.pose, self.spec_.yaw, self.config.ee_step)
        obs, _, _, _, info = self._env.step(ms_action)
        self._ms_info = info  # ManiSkill's own evaluate(), reused for its dense reward below
        self.last_ms_info = self._scalars(info)
        self._steps += 1
        ev = self.evaluate()
        terminated = ev.success
        truncated = self._steps >= self.horizon and not terminated
        out = self.task_info(ev)
        return self._observation(obs), float(ev.success), terminated, truncated, out

    @staticmethod
    def _scalars(info: dict) -> dict[str, Any]:
        out = {}
        for k, v in info.items():
            if hasattr(v, "detach"):
                v = v.detach().cpu().numpy()
            if isinstance(v, np.ndarray) and v.size == 1:
                v = v.reshape(()).item()
            out[k] = v
        return out

    def task_info(self, ev: TaskEval) -> dict[str, Any]:
        n = len(self.stages)
        progress = 1.0 if ev.success else min((ev.stage + ev.stage_progress) / n, 0.999)
        dense = self.unwrapped_ms.compute_normalized_dense_reward(obs=None, action=None, info=self._ms_info)
        return {"success": bool(ev.success), "stage": int(ev.stage), "stage_name": self.stages[ev.stage],
                "progress": float(progress), "is_success": bool(ev.success),
                "normalized_dense_reward": float(_np(dense)[0])}

    def _observation(self, obs: dict) -> dict[str, Any]:
        out: dict[str, Any] = {"agent_pos": self.joint_positions(),
                               "environment_state": self.environment_state_now()}
        if self.config.cameras:
            t0 = time.perf_counter()
            sensors = obs["sensor_data"]
            out["pixels"] = {c: sensors[WRIST_UID if c == "wrist" else c]["rgb"][0].cpu().numpy()
                             for c in self.config.cameras}
            self.render_seconds += time.perf_counter() - t0
        return out

    def render_camera(self, camera: str) -> np.ndarray:
        obs = self.unwrapped_ms.get_obs() if self.config.cameras else None
        if obs is None or camera not in self.config.cameras:
            raise ValueError(f"camera {camera!r}: not rendered by this env (cameras={list(self.config.cameras)})")
        return obs["sensor_data"][WRIST_UID if camera == "wrist" else camera]["rgb"][0].cpu().numpy()

    def close(self) -> None:
        self._env.close()
