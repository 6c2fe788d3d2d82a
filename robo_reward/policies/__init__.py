"""Policies: BC chunk policies (``chunk``, trained by ``train_bc``, optionally RA-BC weighted by
``rabc``), the stable-baselines3 adapter (``sb3``) and :func:`load_policy`, which builds a run's
policy from the ``kind`` its ``policy.json`` records.

May import: ``robo_reward.reward``, ``robo_reward.data``, ``robo_reward.embodiments`` and the
rank-0 modules (``registry``, ``envs``, ``stats``).
"""

from robo_reward.policies import chunk, residual, sb3  # noqa: F401  (register the built-in kinds)
from robo_reward.policies.registry import POLICIES, load_policy

__all__ = ["POLICIES", "load_policy"]
