"""The one observation every policy here reads, built the same way in sim and on a robot.

Functions of arrays only (leading batch axes kept), so the batched ManiSkill env, the gymnasium
wrapper and the deploy loop all call the same code. An :class:`~robo_reward.embodiments.Embodiment`
supplies ``joints``, its own scaling of the measured joints; without it the SO-101's is used.
"""

from __future__ import annotations

import numpy as np


def proprio_state(agent_pos: np.ndarray, tcp: np.ndarray) -> np.ndarray:
    """What a real arm measures, scaled to order one: joints (arm radians, gripper 0..1) and the
    TCP (dm, by forward kinematics). Image policies read this beside their cameras."""
    agent_pos = np.asarray(agent_pos, dtype=np.float64)
    return np.concatenate([np.radians(agent_pos[..., :5]), agent_pos[..., 5:6] / 100.0,
                           np.asarray(tcp) * 10.0], -1).astype(np.float32)


def policy_observation(agent_pos: np.ndarray, tcp: np.ndarray, env_state: np.ndarray | None = None,
                       pixels: dict[str, np.ndarray] | None = None,
                       joints: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The one observation every policy here reads, built the same way in sim (:class:`RLObservation`)
    and on a robot (``real.deploy``): ``proprio``, ``state`` (only where the object and goal
    positions are known: sim, or a robot with privileged state), ``pixels.<camera>``, and
    ``agent_pos``, the measured joints as datasets record them (``observation.state``), for a
    reward model that reads proprioception.
    ``joints``: a non-SO-101 robot's own scaled joints (see :func:`policy_state`)."""
    if joints is None:
        out = {"proprio": proprio_state(agent_pos, tcp)}
    else:
        out = {"proprio": np.concatenate([joints, np.asarray(tcp) * 10.0], -1).astype(np.float32)}
    out["agent_pos"] = np.asarray(agent_pos, dtype=np.float32)
    if env_state is not None:
        out["state"] = policy_state(agent_pos, tcp, env_state, joints)
    for c, img in (pixels or {}).items():
        out[f"pixels.{c}"] = img
    return out


def policy_state(agent_pos: np.ndarray, tcp: np.ndarray, env_state: np.ndarray,
                 joints: np.ndarray | None = None) -> np.ndarray:
    """Low-dimensional policy input: joints (arm radians, gripper 0..1), TCP xyz (dm), object and
    goal positions (dm) and the object-minus-TCP vector (dm). Used by online RL and by demos.
    ``joints`` overrides the SO-101 conversion for another robot (its env's ``policy_joints``).
    Leading batch dimensions are kept (the batched ManiSkill env builds all envs' states at once)."""
    agent_pos = np.asarray(agent_pos, dtype=np.float64)
    if joints is None:
        joints = np.concatenate([np.radians(agent_pos[..., :5]), agent_pos[..., 5:6] / 100.0], -1)
    tcp = np.asarray(tcp, dtype=np.float64) * 10.0
    env_state = np.asarray(env_state, dtype=np.float64) * 10.0
    rel = env_state[..., :3] - tcp if env_state.shape[-1] >= 3 else np.zeros_like(tcp)
    return np.concatenate([joints, tcp, env_state, rel], -1).astype(np.float32)
