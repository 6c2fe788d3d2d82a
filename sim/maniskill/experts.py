"""Scripted experts for the ManiSkill tasks: phase lists on privileged state, run by the same
:class:`sim.experts.base.ScriptedExpert` (and quality knobs) as the MuJoCo tasks' experts."""

from __future__ import annotations

import numpy as np

from sim.experts.base import Phase, register_expert

OPEN, CLOSED = 1.0, -1.0
HALF = 0.02  # cube half size in PickCube and StackCube


def _dropped(body: str):
    def check(env) -> bool:
        # the cube is back on the table and out of the fingers: go back and grasp it again
        p = env.body_pos(body)
        return not env.is_grasped(body) and p[2] < HALF + 0.01 and (
            np.linalg.norm(env.tcp_pos[:2] - p[:2]) > 0.015 or env.tcp_pos[2] > p[2] + 0.03)

    return check


def _reach_and_grasp(body: str) -> list[Phase]:
    return [
        Phase("hover", 0, OPEN, lambda env: env.body_pos(body) + np.array([0.0, 0.0, 0.08]), tol=0.008),
        Phase("descend", 0, OPEN, lambda env: env.body_pos(body), speed=0.5, tol=0.005, timeout=40),
        Phase("close", 1, CLOSED, hold=6),
    ]


@register_expert("maniskill/PickCube-v1")
def pick_cube():
    def lift(env):
        p = env.tcp_pos
        return np.array([p[0], p[1], 0.07])

    def carry(env):  # steer the cube (not the TCP) onto the goal
        return env.goal_pos + (env.tcp_pos - env.body_pos("cube"))

    phases = [
        *_reach_and_grasp("cube"),
        Phase("lift", 2, CLOSED, lift, speed=0.5, tol=0.01, abort=_dropped("cube"), restart="hover"),
        Phase("carry", 2, CLOSED, carry, tol=0.004, timeout=80, abort=_dropped("cube"), restart="hover"),
        Phase("settle", 2, CLOSED, hold=30),
    ]
    return phases, [Phase("drop", 2, OPEN, hold=4)]


@register_expert("maniskill/StackCube-v1")
def stack_cube():
    def lift(env):
        p = env.tcp_pos
        return np.array([p[0], p[1], 0.10])

    def over_b(env):
        return env.body_pos("cubeB") + np.array([0.0, 0.0, 4 * HALF + 0.02]) + (env.tcp_pos - env.body_pos("cubeA"))

    def onto_b(env):
        return env.body_pos("cubeB") + np.array([0.0, 0.0, 2 * HALF + 0.002]) + (env.tcp_pos - env.body_pos("cubeA"))

    def retreat(env):
        p = env.tcp_pos
        return np.array([p[0], p[1], 0.12])

    phases = [
        *_reach_and_grasp("cubeA"),
        Phase("lift", 2, CLOSED, lift, speed=0.5, tol=0.01, abort=_dropped("cubeA"), restart="hover"),
        Phase("carry", 2, CLOSED, over_b, tol=0.004, timeout=80, abort=_dropped("cubeA"), restart="hover"),
        Phase("lower", 2, CLOSED, onto_b, speed=0.3, tol=0.003, timeout=40),
        Phase("release", 3, OPEN, hold=6),
        Phase("retreat", 3, OPEN, retreat, speed=0.5, tol=0.01, timeout=30),
        Phase("wait", 3, OPEN, hold=20),
    ]
    return phases, [Phase("drop", 2, OPEN, hold=4)]


# ---- PegInsertionSide: grasp the peg across its axis, turn it onto the hole's axis, push it in ----
GRASP_BACK = 0.07  # grasp this far behind the peg's centre (towards the white tail), clear of the box
PRE_INSERT = 0.03  # line the head up this far outside the hole's entrance


def _wrap(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def _axis(pose) -> np.ndarray:
    return pose.to_transformation_matrix()[0, :3, 0].cpu().numpy().astype(np.float64)


def _peg(env):
    """Peg centre, long axis (towards the orange head), half length; hole centre and axis."""
    u = env.unwrapped_ms
    half = u.peg_half_sizes[0].cpu().numpy().astype(np.float64)
    hole = u.box_hole_pose
    return (env.body_pos("peg"), _axis(u.peg.pose), float(half[0]),
            hole.p[0].cpu().numpy().astype(np.float64), _axis(hole))


def _grasp_point(env) -> np.ndarray:
    c, axis, *_ = _peg(env)
    return c - GRASP_BACK * axis


def _grasp_yaw(env) -> float:
    """Turn left to put the TCP's x axis along the peg (either way round: the jaws are symmetric)."""
    _, axis, *_ = _peg(env)
    d = _wrap(np.arctan2(axis[1], axis[0]) - env.tcp_yaw)
    return _wrap(d + np.pi) if abs(d) > np.pi / 2 else d


def _align_yaw(env) -> float:
    """Turn left to put the peg's axis along the hole's."""
    _, axis, _, _, hole_axis = _peg(env)
    return _wrap(np.arctan2(hole_axis[1], hole_axis[0]) - np.arctan2(axis[1], axis[0]))


def _peg_centre_to(depth: float):
    """TCP target that puts the peg's centre on the hole's axis, its head ``depth`` past the hole's
    centre (negative: before it); steers the peg, not the TCP, so the grasp offset cancels."""
    def target(env) -> np.ndarray:
        c, _, half, hole, hole_axis = _peg(env)
        return env.tcp_pos + (hole + (depth - half) * hole_axis - c)
    return target


LATERAL_TOL = 0.002  # the hole's clearance is 3 mm
LATERAL_GAIN = 3.0  # the arm sags under the peg's weight: over-command lateral corrections


def _insert(env) -> np.ndarray:
    """Push the head along the hole's axis to 1 cm past its centre. Outside the hole, stop and
    re-centre whenever the head drifts off the axis by more than LATERAL_TOL, and creep over the
    last centimetre before the rim; inside, the walls guide the head, so keep the peg's centre on
    the axis (the peg stays parallel to the hole) and push."""
    c, axis, half, hole, hole_axis = _peg(env)
    head = c + half * axis
    along = float((head - hole) @ hole_axis)
    if along < -half + 0.005:  # not (far enough) in the hole yet
        lateral = (hole + along * hole_axis) - head
        if np.linalg.norm(lateral) > LATERAL_TOL:
            # re-centre; at the rim, back off a little so the head comes free
            back = -0.003 * hole_axis if along > -half - 0.003 else 0.0
            return env.tcp_pos + LATERAL_GAIN * lateral + back
        step = 0.004 if along > -half - 0.01 else 0.01 - along
        return env.tcp_pos + step * hole_axis + LATERAL_GAIN * lateral
    lateral = (hole + float((c - hole) @ hole_axis) * hole_axis) - c
    return env.tcp_pos + (0.01 - along) * hole_axis + LATERAL_GAIN * lateral


def _peg_dropped(env) -> bool:
    return not env.is_grasped("peg") and env.body_pos("peg")[2] < 0.03


@register_expert("maniskill/PegInsertionSide-v1")
def peg_insertion_side():
    def hover(env):
        return _grasp_point(env) + np.array([0.0, 0.0, 0.08])

    def lift(env):  # raise the peg's centre to the hole's height
        c, *_, hole, _ = _peg(env)
        return env.tcp_pos + np.array([0.0, 0.0, hole[2] - c[2]])

    def pre_insert(env):
        _, _, half, *_ = _peg(env)
        return _peg_centre_to(-(half + PRE_INSERT))(env)

    phases = [
        Phase("hover", 0, OPEN, hover, tol=0.008, yaw=_grasp_yaw),
        Phase("descend", 0, OPEN, _grasp_point, speed=0.5, tol=0.004, timeout=40, yaw=_grasp_yaw),
        Phase("close", 1, CLOSED, hold=8),
        Phase("lift", 2, CLOSED, lift, speed=0.5, tol=0.01, abort=_peg_dropped, restart="hover"),
        Phase("carry", 2, CLOSED, pre_insert, tol=0.003, timeout=80, abort=_peg_dropped, restart="hover",
              yaw=_align_yaw, yaw_tol=0.005, straight=True, gain=3.0),
        Phase("insert", 3, CLOSED, _insert, speed=0.6, tol=0.002, timeout=100, yaw=_align_yaw,
              straight=True),
        Phase("settle", 3, CLOSED, hold=10),
    ]
    return phases, [Phase("drop", 2, OPEN, hold=4)]
