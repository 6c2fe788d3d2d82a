"""The ``sim`` plugin (entry point ``robo_reward.plugins: sim``): importing it registers the MuJoCo
tasks and their experts, and the ManiSkill adapters (by the ``maniskill/`` prefix), in
``robo_reward``'s registries."""

from sim import experts, maniskill, tasks  # noqa: F401
from sim.maniskill import experts as maniskill_experts  # noqa: F401
