"""Phase lists of the scripted experts, one function per task."""

from __future__ import annotations

import numpy as np

from sim.experts.base import Phase, register_expert

OPEN, CLOSED = 1.0, -1.0
HOVER = 0.05  # TCP height above the block centre before descending
CARRY_Z = 0.075  # TCP height while carrying
GRASP_DZ = 0.0  # TCP height relative to the block centre at the grasp


def _pick_place_phases(last_stage_name: str):
    def above_block(env):
        return env.body_pos(env.block) + np.array([0.0, 0.0, HOVER])

    def at_block(env):
        return env.body_pos(env.block) + np.array([0.0, 0.0, GRASP_DZ])

    def lift(env):
        p = env.tcp_pos
        return np.array([p[0], p[1], CARRY_Z])

    def carry(env):
        # steer the block (not the TCP) over the goal, so a block that slid in the jaws still lands
        offset = env.tcp_pos - env.body_pos(env.block)
        return np.array([*(env.goal_pos[:2] + offset[:2]), CARRY_Z])

    def lower(env):
        offset = env.tcp_pos - env.body_pos(env.block)
        return env.goal_pos + offset + np.array([0.0, 0.0, 0.003])

    def retreat(env):
        p = env.tcp_pos
        return np.array([p[0], p[1], CARRY_Z])

    phases = [
        Phase("hover", 0, OPEN, above_block, tol=0.006),
        Phase("descend", 0, OPEN, at_block, speed=0.5, tol=0.003),
        Phase("close", 1, CLOSED, hold=8),
        Phase("lift", 2, CLOSED, lift, speed=0.5, tol=0.006),
        Phase("carry", 3, CLOSED, carry, tol=0.004),
        Phase("lower", 4, CLOSED, lower, speed=0.4, tol=0.003),
        Phase("open", 4, OPEN, hold=8),
        Phase("retreat", 4, OPEN, retreat, tol=0.01),
    ]
    drop = [
        Phase("drop", 3, OPEN, hold=6),
        Phase("rehover", 3, OPEN, above_block, tol=0.006),
        Phase("redescend", 3, OPEN, at_block, speed=0.5, tol=0.003),
        Phase("reclose", 3, CLOSED, hold=8),
        Phase("relift", 3, CLOSED, lift, speed=0.5, tol=0.006),
    ]
    return phases, drop


@register_expert("pick_place")
def pick_place_expert():
    return _pick_place_phases("place")


@register_expert("stack")
def stack_expert():
    return _pick_place_phases("stack")


@register_expert("push")
def push_expert():
    def above(env):
        return env.pre_push_point() + np.array([0.0, 0.0, 0.05])

    def start(env):
        return env.pre_push_point()

    def push(env):
        block = env.body_pos(env.block)
        d = env.goal_pos[:2] - block[:2]
        dist = np.linalg.norm(d)
        u = d / (dist + 1e-9)
        # aim the TCP through the block's centre towards the goal, a little past contact
        tgt = block[:2] - u * (0.018 + 0.012) + u * min(dist, 0.02)
        return np.array([*tgt, 0.012])

    phases = [
        Phase("above", 0, CLOSED, above, tol=0.008),
        Phase("descend", 0, CLOSED, start, speed=0.6, tol=0.004),
        Phase("push", 1, CLOSED, push, speed=0.35, tol=0.0, timeout=120),
    ]
    return phases, []
