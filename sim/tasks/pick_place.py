"""pick_place: pick the red block and place it on the green goal disc.

Stages (SARM sparse names): reach, grasp, lift, carry, place.
"""

from __future__ import annotations

import numpy as np

from sim.scene import BoxObject, GoalMarker
from sim.tasks.base import SO101TaskEnv, TaskEval
from sim.tasks.registry import register_task

BLOCK_HALF = 0.015
# A vertical grasp is reachable for x ~0.15-0.30 m; keep objects well inside it.
SAMPLE_LOW = np.array([0.16, -0.08])
SAMPLE_HIGH = np.array([0.25, 0.08])
MIN_GOAL_DISTANCE = 0.07
PLACE_TOLERANCE = 0.025
LIFT_HEIGHT = 0.04  # block rise that completes the lift stage
MIN_CARRY_RISE = 0.02  # a block pushed along the table to the goal does not count


def sample_apart(rng: np.random.Generator, min_dist: float) -> tuple[np.ndarray, np.ndarray]:
    a = rng.uniform(SAMPLE_LOW, SAMPLE_HIGH)
    for _ in range(1000):
        b = rng.uniform(SAMPLE_LOW, SAMPLE_HIGH)
        if np.linalg.norm(a - b) >= min_dist:
            return a, b
    raise RuntimeError("could not sample two positions apart")  # pragma: no cover


@register_task("pick_place")
class PickPlaceEnv(SO101TaskEnv):
    instruction = "Pick up the red block and place it on the green target."
    stages = ("reach", "grasp", "lift", "carry", "place")
    max_steps = 220
    env_state_dim = 6
    block = "block"

    @classmethod
    def scene_objects(cls):
        return ((BoxObject(cls.block, BLOCK_HALF, (0.85, 0.15, 0.15, 1.0)),),
                (GoalMarker("goal", 0.028, (0.15, 0.8, 0.2, 1.0)),))

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        block_xy, goal_xy = sample_apart(rng, MIN_GOAL_DISTANCE)
        self.data.jnt(self.block).qpos[:3] = (*block_xy, BLOCK_HALF)
        self.data.mocap_pos[self.model.body("goal").mocapid[0]] = (*goal_xy, 0.0)

    def _on_reset(self) -> None:
        self._was_lifted = False
        self._start_tcp = self.tcp_pos
        self._start_dist = float(np.linalg.norm(self.goal_pos[:2] - self.body_pos(self.block)[:2]))

    def _after_step(self) -> None:
        self._was_lifted |= bool(self.body_pos(self.block)[2] - BLOCK_HALF > MIN_CARRY_RISE)

    @property
    def goal_pos(self) -> np.ndarray:
        """Where the block centre should rest."""
        return np.array([*self.data.mocap_pos[self.model.body("goal").mocapid[0]][:2], BLOCK_HALF])

    def environment_state_now(self) -> np.ndarray:
        return np.concatenate([self.body_pos(self.block), self.goal_pos])

    def evaluate(self) -> TaskEval:
        return self._pick_place_eval(self.block, self.goal_pos, PLACE_TOLERANCE)

    def _pick_place_eval(self, block: str, goal: np.ndarray, tol: float) -> TaskEval:
        """Shared by pick_place and stack: ``goal`` is where the block centre should rest."""
        pos = self.body_pos(block)
        tcp = self.tcp_pos
        grasped = self.is_grasped(block)
        rise = pos[2] - goal[2] if self._was_lifted else pos[2] - BLOCK_HALF
        d_goal = float(np.linalg.norm(pos[:2] - goal[:2]))
        speed = float(np.linalg.norm(self.data.jnt(block).qvel[:3]))
        at_rest_on_goal = d_goal < tol and abs(pos[2] - goal[2]) < 0.006 and speed < 0.02
        success = self._was_lifted and at_rest_on_goal and not grasped and self.gripper_opening > 0.35
        if success:
            return TaskEval(True, 4, 1.0)
        if self._was_lifted and d_goal < tol:
            # place: lower onto the goal, then open the jaws
            lowered = 1.0 - np.clip((pos[2] - goal[2]) / LIFT_HEIGHT, 0.0, 1.0)
            return TaskEval(False, 4, 0.7 * lowered + 0.3 * float(not grasped))
        if grasped and self._was_lifted:
            return TaskEval(False, 3, 1.0 - np.clip(d_goal / max(self._start_dist, 1e-6), 0.0, 1.0))
        if grasped:
            return TaskEval(False, 2, np.clip(rise / LIFT_HEIGHT, 0.0, 1.0))
        d_xy = float(np.linalg.norm(tcp[:2] - pos[:2]))
        if d_xy < 0.012 and tcp[2] - pos[2] < 0.012:
            return TaskEval(False, 1, 1.0 - self.gripper_opening)
        pre = pos + np.array([0.0, 0.0, 0.0])
        d0 = float(np.linalg.norm(self._start_tcp - pre)) + 1e-6
        return TaskEval(False, 0, 1.0 - np.clip(np.linalg.norm(tcp - pre) / d0, 0.0, 1.0))
