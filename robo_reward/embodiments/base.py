"""The :class:`Embodiment` base class and its registry."""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np

from robo_reward.embodiments.observation import policy_observation, policy_state
from robo_reward.registry import Registry


class KinematicsUnavailable(RuntimeError):
    """The embodiment ships no kinematics model, so the TCP must come from the robot or the dataset."""


class Embodiment(abc.ABC):
    """A robot as the learning code sees it.

    Measured joints arrive in the robot's own units (``agent_pos``, what datasets record as
    ``observation.state``); :meth:`policy_joints` scales them to order one for networks. The
    policy observation is built here, the same way in sim and on hardware. Subclasses set the
    class attributes and implement :meth:`policy_joints`; :meth:`forward_tcp` where the
    embodiment ships a kinematics model.
    """

    name: ClassVar[str]
    joint_names: ClassVar[tuple[str, ...]]
    """Every joint in ``agent_pos`` order (the gripper included)."""
    joint_units: ClassVar[str]
    """How ``agent_pos`` is measured, in words (for messages and docs)."""

    @property
    def state_keys(self) -> tuple[str, ...]:
        """LeRobot's per-joint feature names (``<joint>.pos``)."""
        return tuple(f"{j}.pos" for j in self.joint_names)

    @abc.abstractmethod
    def policy_joints(self, agent_pos: np.ndarray) -> np.ndarray:
        """Joints scaled to order one, leading batch axes kept."""

    @property
    def has_kinematics(self) -> bool:
        """Whether :meth:`forward_tcp` works; datasets of an embodiment without record the TCP."""
        return type(self).forward_tcp is not Embodiment.forward_tcp

    def forward_tcp(self, agent_pos: np.ndarray) -> np.ndarray:
        """TCP positions (N, 3) in the robot's base frame for measured joints (N, J)."""
        raise KinematicsUnavailable(f"embodiment {self.name!r} ships no kinematics model; record the TCP "
                                    "(observation.tcp) instead")

    def proprio(self, agent_pos: np.ndarray, tcp: np.ndarray) -> np.ndarray:
        """What the robot measures, scaled to order one: its joints and the TCP (dm)."""
        return np.concatenate([self.policy_joints(agent_pos), np.asarray(tcp) * 10.0], -1).astype(np.float32)

    def policy_state(self, agent_pos: np.ndarray, tcp: np.ndarray, env_state: np.ndarray) -> np.ndarray:
        return policy_state(agent_pos, tcp, env_state, self.policy_joints(agent_pos))

    def policy_observation(self, agent_pos: np.ndarray, tcp: np.ndarray, env_state: np.ndarray | None = None,
                           pixels: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        return policy_observation(agent_pos, tcp, env_state, pixels, self.policy_joints(agent_pos))


def _instantiate(name: str, entry: type[Embodiment] | Embodiment) -> Embodiment:
    return entry() if isinstance(entry, type) else entry


EMBODIMENTS: Registry[Embodiment] = Registry("embodiment", on_register=_instantiate)
"""Embodiment name -> instance (``@EMBODIMENTS.register("so101")`` on the class)."""
