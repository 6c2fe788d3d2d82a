"""The policy registry: a run directory's ``policy.json`` names its ``kind``, and
:func:`load_policy` builds the class registered under it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from robo_reward.registry import Registry

POLICY_META = "policy.json"


class Policy(Protocol):
    """What eval-policy and the deploy loop drive: ``act`` on a policy observation dict."""

    task: str | None
    cameras: tuple[str, ...]
    needs_state: bool

    def reset(self) -> None: ...

    def act(self, obs: dict[str, Any], env: Any = None) -> np.ndarray: ...


POLICIES: Registry[type] = Registry("policy kind")
"""Kind string (``policy.json``'s ``kind``) -> a class built from the run directory."""


def load_policy(run: str | Path) -> Policy:
    """A policy run directory -> an object with ``task``, ``cameras``, ``reset()``, ``act()``."""
    run = Path(run)
    meta_path = run / POLICY_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: missing; expected a run written by `robo-reward train-bc` or `rl`")
    kind = json.loads(meta_path.read_text()).get("kind")
    if kind not in POLICIES:
        raise ValueError(f"{meta_path}: kind {kind!r}; expected one of {POLICIES.names()}")
    return POLICIES.get(kind)(run)
