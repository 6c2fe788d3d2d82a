"""Embodiments: one folder per robot (``so101``, ``panda``), each owning its joint names and units,
its kinematics asset, its action layout and how its measurements become a policy's observation.

Sim tasks, the real-robot deploy loop, RL and BC all read the robot through an :class:`Embodiment`
chosen by name (``EMBODIMENTS.get("so101")``), so adding an arm is one new folder.

May import: ``robo_reward.registry`` and third-party libraries (mujoco, mink) only.
"""

from robo_reward.embodiments.base import EMBODIMENTS, Embodiment
from robo_reward.embodiments.observation import policy_observation, policy_state, proprio_state
from robo_reward.embodiments.panda import PANDA
from robo_reward.embodiments.so101 import SO101

__all__ = ["EMBODIMENTS", "PANDA", "SO101", "Embodiment", "policy_observation", "policy_state", "proprio_state"]
