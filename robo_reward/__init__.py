"""robo-reward: process reward models from multi-view demonstration video, policy-invariant reward
shaping for online RL, and reward-aligned behaviour cloning.

Packages by role, lowest layer first (a package imports only from the ones before it; see
``docs/architecture.md``): ``registry``/``envs``/``stats`` -> ``embodiments`` -> ``data`` ->
``reward`` -> ``policies`` -> ``rl`` -> ``cli``. The simulator (``sim``) and the robot layer
(``real``) sit on top and register into ``robo_reward``'s registries as plugins.
"""
