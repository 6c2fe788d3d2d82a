"""Registries by type string: tasks, experts, encoders, policies and embodiments register with a
decorator and are chosen from the CLI (``--task=push``, ``--model.encoder=cnn``, ...).

Packages above ``robo_reward`` (``sim``, ``real``, third-party distributions) add entries without
``robo_reward`` importing them: they declare an entry point in the ``robo_reward.plugins`` group
(see ``pyproject.toml``), and a registry loads those plugins the first time a name is missing,
the way LeRobot's ``register_third_party_plugins`` finds ``lerobot_robot_*`` packages. Adding a
task is then one new file plus a ``@TASKS.register("name")`` line, and no ``elif`` chain.

A name may also be claimed by a *prefix* (``maniskill/`` names any ManiSkill env id): the prefix's
factory builds the entry for the full name.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator

PLUGIN_GROUP = "robo_reward.plugins"
_loaded_plugins: set[str] = set()


def load_plugins(group: str = PLUGIN_GROUP) -> list[str]:
    """Import every installed plugin of ``group`` once; returns the names loaded by this call."""
    new = []
    for ep in importlib.metadata.entry_points(group=group):
        key = f"{group}:{ep.name}"
        if key in _loaded_plugins:
            continue
        _loaded_plugins.add(key)
        ep.load()
        new.append(ep.name)
    return new


class Registry[T]:
    """Name -> entry (a class, a factory or an instance), filled by :meth:`register`."""

    def __init__(self, kind: str, on_register: Callable[[str, T], T | None] | None = None):
        """``on_register(name, entry)`` runs on every registration; what it returns (if not None)
        is stored instead of the entry (e.g. an instance of a registered class)."""
        self.kind = kind
        self.entries: dict[str, T] = {}
        self.prefixes: dict[str, Callable[[str], T]] = {}
        self.on_register = on_register

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name")`` on a class or function."""

        def deco(entry: T) -> T:
            self.add(name, entry)
            return entry

        return deco

    def add(self, name: str, entry: T) -> None:
        if name in self.entries:
            raise ValueError(f"{self.kind} {name!r} is already registered ({self.entries[name]!r})")
        stored = self.on_register(name, entry) if self.on_register is not None else None
        self.entries[name] = entry if stored is None else stored

    def remove(self, name: str) -> None:
        """Unregister ``name`` (tests that register a toy entry clean up with this)."""
        self.entries.pop(name, None)

    def register_prefix(self, prefix: str, factory: Callable[[str], T]) -> None:
        """Names starting with ``prefix`` resolve to ``factory(name)``."""
        self.prefixes[prefix] = factory

    def get(self, name: str) -> T:
        """The entry for ``name``; loads the plugins when it is not known yet."""
        for attempt in range(2):
            if name in self.entries:
                return self.entries[name]
            for prefix, factory in self.prefixes.items():
                if name.startswith(prefix):
                    return factory(name)
            if attempt == 0 and not load_plugins():
                break
        raise ValueError(f"{self.kind}: unknown {self.kind} {name!r}; expected one of {self.names()}")

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        for attempt in range(2):
            if name in self.entries or any(str(name).startswith(p) for p in self.prefixes):
                return True
            if attempt == 0 and not load_plugins():
                break
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        load_plugins()
        return sorted(self.entries.items())

    def __len__(self) -> int:
        load_plugins()
        return len(self.entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)
