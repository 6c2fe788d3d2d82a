"""Simulation: SO-101 MuJoCo tasks (``tasks/``, one file each), scripted experts of controllable
quality (``experts/``), scenes (``scene``), ManiSkill 3 adapters (``maniskill/``) and demo
collection (``collect``). ``sim.plugin`` registers the tasks and experts in ``robo_reward``'s
registries (entry point ``robo_reward.plugins``).

May import: ``robo_reward`` (never ``real``).
"""
