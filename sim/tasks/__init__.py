"""SO-101 MuJoCo tasks. Each module registers one task; this list is the one place they are named."""

from sim.tasks import pick_place, push, stack  # noqa: F401
from sim.tasks.base import ActionSpace, EnvConfig, SO101TaskEnv, TaskEval
from sim.tasks.registry import TASKS, make_env

__all__ = ["TASKS", "ActionSpace", "EnvConfig", "SO101TaskEnv", "TaskEval", "make_env"]
