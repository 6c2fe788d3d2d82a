"""Policy inputs computed from a dataset's frames, the same way the envs build them online."""

from __future__ import annotations

import numpy as np

from robo_reward.data.lerobot_io import DatasetError
from robo_reward.data.table import FrameTable, load_frame_table  # noqa: F401  (re-exported)
from robo_reward.embodiments import EMBODIMENTS
from robo_reward.envs import make_env


def state_features(table: FrameTable, obs: str = "state") -> np.ndarray:
    """Per-frame policy input: the low-dimensional state of online RL (``state``), or the
    proprioception an image policy gets (``images``). The TCP comes from forward kinematics, or
    from ``observation.tcp`` for a robot whose kinematics are not shipped (ManiSkill's Panda)."""
    env = make_env(table.task, cameras=())
    state_dim, embodiment = env.unwrapped.env_state_dim, EMBODIMENTS.get(getattr(env.unwrapped, "embodiment", "so101"))
    env.close()
    if obs == "state" and table.env_state.shape[1] != state_dim:
        raise DatasetError(f"{table.root}: observation.environment_state has {table.env_state.shape[1]} values; "
                           f"task {table.task!r} expects {state_dim} (a dataset of another task?)")
    tcp = table.tcp if table.tcp is not None else embodiment.forward_tcp(table.state)
    if obs == "state":
        return np.stack([embodiment.policy_state(a, t, e) for a, t, e in zip(table.state, tcp, table.env_state, strict=True)])
    return embodiment.proprio(table.state, tcp)
