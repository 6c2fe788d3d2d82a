"""Task registration: a task class registers itself by type string (``@register_task("push")``) in
:data:`robo_reward.envs.TASKS`, and the CLI picks it with ``--task``."""

from __future__ import annotations

from robo_reward.envs import TASKS, make_env

__all__ = ["TASKS", "make_env", "register_task"]


def register_task(name: str):
    """Class decorator: register a task env under ``name`` (also sets ``cls.name``)."""
    return TASKS.register(name)
