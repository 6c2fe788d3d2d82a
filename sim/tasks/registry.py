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
    """Build a task env by name; kwargs are :class:`EnvConfig` fields."""
    import sim.tasks  # noqa: F401  (the task modules are imported by the package)

    if task not in TASKS:
        raise ValueError(f"task: unknown task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[task](**kwargs)
