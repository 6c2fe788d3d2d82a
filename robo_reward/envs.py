"""Env registries: the tasks (``--task``) and the batched vector envs, by type string.

``robo_reward`` defines only the registries; the task packages (``sim``, or a third-party one)
fill them when they are imported, and :mod:`robo_reward.registry` imports them as plugins the
first time a name is looked up. So RL, BC and evaluation build any task with
:func:`make_env` without importing the simulator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

from robo_reward.registry import Registry


def _name_task(name: str, entry: Any) -> None:
    if isinstance(entry, type):
        entry.name = name


TASKS: Registry[Callable[..., gym.Env]] = Registry("task", on_register=_name_task)
"""Task name -> env class (or factory) taking the task's config fields as keyword arguments."""

VEC_ENVS: Registry[Callable[..., Any]] = Registry("vectorized env")
"""Task name (usually by prefix) -> ``build(num_envs, cameras, image_size, max_episode_steps, seed)``
returning one batched SB3 ``VecEnv`` (ManiSkill's GPU sim)."""


def make_env(task: str, **kwargs: Any) -> gym.Env:
    """Build a task env by name; ``kwargs`` are its config fields (``EnvConfig`` for the MuJoCo tasks)."""
    return TASKS.get(task)(**kwargs)


def task_instructions() -> dict[str, str]:
    """Task name -> its instruction, for every registered task class that declares one."""
    return {name: cls.instruction for name, cls in TASKS.items() if isinstance(getattr(cls, "instruction", None), str)}
