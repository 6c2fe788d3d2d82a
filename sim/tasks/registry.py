"""Task registry: a task registers itself by type string, the CLI picks it with ``--task``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.tasks.base import SO101TaskEnv

TASKS: dict[str, type[SO101TaskEnv]] = {}


def register_task(name: str):
    def deco(cls: type[SO101TaskEnv]) -> type[SO101TaskEnv]:
        if name in TASKS:
            raise ValueError(f"task {name!r} is already registered by {TASKS[name].__name__}")
        cls.name = name
        TASKS[name] = cls
        return cls

    return deco


def make_env(task: str, **kwargs: Any) -> SO101TaskEnv:
    """Build a task env by name; kwargs are :class:`EnvConfig` fields. ``maniskill/<EnvId>``
    names a ManiSkill 3 task (``sim.maniskill``; its kwargs are ``MSConfig`` fields)."""
    import sim.tasks  # noqa: F401  (the task modules are imported by the package)
    from sim.maniskill import PREFIX

    if task.startswith(PREFIX):  # ManiSkill 3 tasks, through the adapter (optional extra)
        from sim.maniskill.tasks import ManiSkillTaskEnv

        return ManiSkillTaskEnv(task, **kwargs)
    if task not in TASKS:
        raise ValueError(f"task: unknown task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[task](**kwargs)
