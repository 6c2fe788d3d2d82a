"""stack: pick the red block and stack it on the blue block.

Stages: reach, grasp, lift, carry, stack.
"""

from __future__ import annotations

import numpy as np

from sim.scene import BoxObject
from sim.tasks.pick_place import BLOCK_HALF, PickPlaceEnv, sample_apart
from sim.tasks.registry import register_task

BASE_HALF = 0.02
STACK_TOLERANCE = 0.012


@register_task("stack")
class StackEnv(PickPlaceEnv):
    instruction = "Stack the red block on top of the blue block."
    stages = ("reach", "grasp", "lift", "carry", "stack")
    max_steps = 220
    env_state_dim = 6

    @classmethod
    def scene_objects(cls):
        return ((BoxObject(cls.block, BLOCK_HALF, (0.85, 0.15, 0.15, 1.0)),
                 BoxObject("base_block", BASE_HALF, (0.15, 0.3, 0.85, 1.0), mass=0.2)), ())

    def _initialize_episode(self, rng: np.random.Generator) -> None:
        block_xy, base_xy = sample_apart(rng, 0.09)
        self.data.jnt(self.block).qpos[:3] = (*block_xy, BLOCK_HALF)
        self.data.jnt("base_block").qpos[:3] = (*base_xy, BASE_HALF)

    @property
    def goal_pos(self) -> np.ndarray:
        base = self.body_pos("base_block")
        return np.array([base[0], base[1], base[2] + BASE_HALF + BLOCK_HALF])

    def environment_state_now(self) -> np.ndarray:
        return np.concatenate([self.body_pos(self.block), self.body_pos("base_block")])

    def evaluate(self):
        return self._pick_place_eval(self.block, self.goal_pos, STACK_TOLERANCE)
