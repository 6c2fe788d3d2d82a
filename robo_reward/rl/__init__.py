"""Online RL: potential-based shaping (``shaping``) with potentials (``potentials``), the observation
adapter and the gymnasium / vector-env wrappers (one per file), SAC extended the supported way
(``sac``), demo replay (``demos``), checkpoints, policy evaluation, and the runner (``runner``).

May import: ``robo_reward.policies``, ``robo_reward.reward``, ``robo_reward.data``,
``robo_reward.embodiments`` and the rank-0 modules. Envs come from ``robo_reward.envs`` by name.
"""
