"""Phase lists of the scripted experts, one function per task."""

from __future__ import annotations

import numpy as np

from sim.experts.base import Phase, register_expert

OPEN, CLOSED = 1.0, -1.0
HOVER = 0.05  # TCP height above the block centre before descending
CARRY_Z = 0.075  # TCP height while carrying
GRASP_DZ = 0.0  # TCP height relative to the block centre at the grasp
PUSH_Z = 0.025  # TCP height while pushing


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

    def dropped(env):
        # the block is back on the table and out of the jaws: go back and grasp it again
        return not env.is_grasped(env.block) and env.body_pos(env.block)[2] < 0.02 and (
            np.linalg.norm(env.tcp_pos[:2] - env.body_pos(env.block)[:2]) > 0.01 or env.tcp_pos[2] > 0.04)

    phases = [
        Phase("hover", 0, OPEN, above_block, tol=0.006),
        Phase("descend", 0, OPEN, at_block, speed=0.5, tol=0.004, timeout=40),
        Phase("close", 1, CLOSED, hold=8),
        Phase("lift", 2, CLOSED, lift, speed=0.5, tol=0.006, abort=dropped, restart="hover"),
        Phase("carry", 3, CLOSED, carry, tol=0.006, abort=dropped, restart="hover"),
        Phase("lower", 4, CLOSED, lower, speed=0.4, tol=0.003, abort=dropped, restart="hover"),
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
        # advance along the block->goal line, steering the TCP back onto the line through the
        # block's centre (the jaw hull, not the TCP, makes the contact, so no contact offset is
        # assumed)
        block = env.body_pos(env.block)
        d = env.goal_pos[:2] - block[:2]
        u = d / (np.linalg.norm(d) + 1e-9)
        rel = env.tcp_pos[:2] - block[:2]
        lateral = rel - (rel @ u) * u
        tgt = env.tcp_pos[:2] + 0.02 * u - lateral
        return np.array([*tgt, PUSH_Z])

    def lost_contact(env):
        # the block slid off the jaw: the TCP is no longer behind it on the push line
        block = env.body_pos(env.block)
        d = env.goal_pos[:2] - block[:2]
        u = d / (np.linalg.norm(d) + 1e-9)
        rel = env.tcp_pos[:2] - block[:2]
        return bool(rel @ u > 0.0 or np.linalg.norm(rel - (rel @ u) * u) > 0.03)

    phases = [
        Phase("above", 0, CLOSED, above, tol=0.008, skip_when_fast=True),
        Phase("descend", 0, CLOSED, start, speed=0.6, tol=0.004),
        Phase("push", 1, CLOSED, push, speed=0.5, tol=0.0, timeout=200, abort=lost_contact, restart="above"),
    ]
    return phases, []
