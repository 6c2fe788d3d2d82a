"""push: push the red block onto the green goal disc (a short two-stage task for fast tests).

Stages: reach (get behind the block), push.
"""

from __future__ import annotations

import numpy as np

from sim.scene import BoxObject, GoalMarker
from sim.tasks.base import SO101TaskEnv, TaskEval
from sim.tasks.registry import register_task

BLOCK_HALF = 0.018
PUSH_TOLERANCE = 0.025
PUSH_MIN, PUSH_MAX = 0.06, 0.09
# The jaw's collision hull reaches ~4 cm beside the TCP: start a push well clear of the block.
PRE_PUSH_DISTANCE = 0.065
# the block counts as being pushed once it has gone this share of the way to the goal
PUSH_STARTED = 0.05
# TCP height of a push (metres above the table)
PUSH_HEIGHT = 0.025
# how far off the pre-push line (and above PUSH_HEIGHT) the TCP may be and still count as pushing
ALIGN_TOL = 0.02
# the reach stage's target: the far part of the behind-the-block zone (from the pre-push point out
# to this far behind the block), so reaching it from the side meets the push stage without a jump
# and the block's goal side, across the block from it, is no shortcut
REACH_NEAR = 0.04


@register_task("push")
class PushEnv(SO101TaskEnv):
    instruction = "Push the red block onto the green target."
    stages = ("reach", "push")
    max_steps = 160
    env_state_dim = 6
    block = "block"

    @classmethod
    def scene_objects(cls):
        return ((BoxObject(cls.block, BLOCK_HALF, (0.85, 0.15, 0.15, 1.0), mass=0.08),),
                (GoalMarker("goal", 0.03, (0.15, 0.8, 0.2, 1.0)),))

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        # Rejection-sample a push whose goal and start point both lie where a vertical gripper
        # reaches (x ~0.13-0.30 m from the base).
        for _ in range(1000):
            block_xy = rng.uniform([0.17, -0.07], [0.23, 0.07])
            angle = rng.uniform(-np.pi, np.pi)
            u = np.array([np.cos(angle), np.sin(angle)])
            goal_xy = block_xy + rng.uniform(PUSH_MIN, PUSH_MAX) * u
            start_xy = block_xy - PRE_PUSH_DISTANCE * u
            if (np.all((goal_xy >= [0.15, -0.1]) & (goal_xy <= [0.25, 0.1]))
                    and np.all((start_xy >= [0.13, -0.12]) & (start_xy <= [0.28, 0.12]))):
                break
        self.data.jnt(self.block).qpos[:3] = (*block_xy, BLOCK_HALF)
        self.data.mocap_pos[self.model.body("goal").mocapid[0]] = (*goal_xy, 0.0)

    @property
    def goal_pos(self) -> np.ndarray:
        return np.array([*self.data.mocap_pos[self.model.body("goal").mocapid[0]][:2], BLOCK_HALF])

    def _on_reset(self) -> None:
        self._start_dist = float(np.linalg.norm(self.goal_pos[:2] - self.body_pos(self.block)[:2]))
        self._start_reach = max(self._reach_distance(self.body_pos(self.block)), 0.02)

    def pre_push_point(self) -> np.ndarray:
        """Behind the block, opposite the goal, at table height: where a push starts."""
        pos = self.body_pos(self.block)
        d = self.goal_pos[:2] - pos[:2]
        d /= np.linalg.norm(d) + 1e-9
        return np.array([*(pos[:2] - d * PRE_PUSH_DISTANCE), PUSH_HEIGHT])

    def environment_state_now(self) -> np.ndarray:
        return np.concatenate([self.body_pos(self.block), self.goal_pos])

    def evaluate(self) -> TaskEval:
        """Stage 1 (push) once the TCP stands low behind the block on the line to the goal (from the
        pre-push point up to the block), or the block has gone ``PUSH_STARTED`` of the way; its
        progress is the share of the way the block has gone (0 where it started, 1 at the goal's
        tolerance). Stage 0 (reach): how much nearer the TCP is than at the start to the far part
        of that zone (``_reach_distance``), so it reads 1 where the zone begins.

        This is the dense baseline's potential, so it must not jump where the task has not moved:
        a push keeps its stage when the jaws lose contact mid-push, and touching the block from
        the side or the front (which used to count as pushing: Phi 0 -> 0.5 -> 0, a twentieth of
        an RL run's steps) does not count, and entering the zone from the side steps Phi by a few
        hundredths (0.13 on average, up to 0.4 in RL rollouts, when the reach stage aimed at the
        pre-push point alone; `benchmarks/push_phi_jumps.py`)."""
        pos = self.body_pos(self.block)
        d_goal = float(np.linalg.norm(pos[:2] - self.goal_pos[:2]))
        if d_goal < PUSH_TOLERANCE:
            return TaskEval(True, 1, 1.0)
        moved = float(np.clip((self._start_dist - d_goal) / max(self._start_dist - PUSH_TOLERANCE, 1e-6), 0.0, 1.0))
        if moved > PUSH_STARTED or self._behind_block(pos):
            return TaskEval(False, 1, moved)
        return TaskEval(False, 0, 1.0 - float(np.clip(self._reach_distance(pos) / self._start_reach, 0, 1)))

    def _zone_coords(self, block_pos: np.ndarray) -> tuple[float, float, float]:
        """The TCP's (along, lateral, height) in the block's frame: along the block-goal line
        (negative behind the block), off it (unsigned), and above the table."""
        u = self.goal_pos[:2] - block_pos[:2]
        u /= np.linalg.norm(u) + 1e-9
        rel = self.tcp_pos[:2] - block_pos[:2]
        return float(rel @ u), abs(float(rel[0] * u[1] - rel[1] * u[0])), float(self.tcp_pos[2])

    def _behind_block(self, block_pos: np.ndarray) -> bool:
        """The TCP is low, within ``ALIGN_TOL`` of the block-goal line, between the pre-push point
        and the block."""
        along, lateral, z = self._zone_coords(block_pos)
        return -PRE_PUSH_DISTANCE - ALIGN_TOL <= along <= 0.0 and lateral <= ALIGN_TOL and z <= PUSH_HEIGHT + ALIGN_TOL

    def _reach_distance(self, block_pos: np.ndarray) -> float:
        """Metres from the TCP to the far part of the behind-the-block zone (along from the
        pre-push point's far tolerance to ``REACH_NEAR`` behind the block): 0 inside it."""
        along, lateral, z = self._zone_coords(block_pos)
        d_along = max(-PRE_PUSH_DISTANCE - ALIGN_TOL - along, along + REACH_NEAR, 0.0)
        return float(np.linalg.norm([d_along, max(lateral - ALIGN_TOL, 0.0), max(z - PUSH_HEIGHT - ALIGN_TOL, 0.0)]))
