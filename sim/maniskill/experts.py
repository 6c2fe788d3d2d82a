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
