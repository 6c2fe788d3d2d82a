"""Small pieces every command shares: str Enums for config modes (and the one error message for
a bad value), the wandb mode and its one init path."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Any


def as_enum[E: enum.Enum](cls: type[E], value: Any, flag: str) -> E:
    """``cls(value)``, or a ValueError that names the flag, the value and the choices."""
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{flag}: {value!r}; expected one of {[m.value for m in cls]}") from None


class Choice(enum.StrEnum):
    """A config mode: a str Enum whose bad value on the command line gets one message naming the
    flag, the value and the choices (subclasses register a draccus decoder on creation)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        import draccus

        def decode(raw: Any, path: tuple[str, ...] | None = None) -> Choice:
            return as_enum(cls, raw, "--" + ".".join(path) if path else cls.__name__)

        draccus.decode.register(cls, decode)


class WandbMode(Choice):
    """How a run logs to wandb: ``offline`` (the default; sync later), ``online`` or ``disabled``.
    ``true`` / ``false`` are read as offline / disabled."""

    OFFLINE = "offline"
    ONLINE = "online"
    DISABLED = "disabled"

    @classmethod
    def _missing_(cls, value: object) -> WandbMode | None:
        v = str(value).strip().lower()
        if v in ("true", "1", "yes"):
            return cls.OFFLINE
        if v in ("false", "0", "no", "none"):
            return cls.DISABLED
        return next((m for m in cls if m.value == v), None)


def init_wandb(mode: WandbMode | str | bool, out: Path, run_id: str, config: dict[str, Any]):
    """A wandb run under ``<out>/wandb`` (None when disabled or when wandb fails: logging must never
    break a run)."""
    mode = as_enum(WandbMode, mode, "--wandb")
    if mode is WandbMode.DISABLED:
        return None
    try:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        return wandb.init(project="robo-reward", dir=str(out), mode=mode.value, name=out.name, id=run_id,
                          resume="allow", config=config)
    except Exception as e:  # noqa: BLE001
        print(f"wandb disabled: {e}")
        return None


def parse_camera_map(text: str | dict | None) -> dict[str, str]:
    """``--camera-map=high:front,left_wrist:side`` -> {dataset or robot camera: model camera}."""
    if not text:
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    out = {}
    for pair in str(text).strip("[]").split(","):
        if not pair.strip():
            continue
        src, sep, dst = pair.partition(":")
        if not sep or not src.strip() or not dst.strip():
            raise ValueError(f"--camera-map: {pair.strip()!r}; expected <dataset camera>:<model camera>, comma-separated")
        out[src.strip()] = dst.strip()
    return out


class NameList(list):
    """A list of names on the command line: ``--cameras=front,wrist`` and ``--cameras=[front,wrist]``
    both work, in every command (and a YAML list in a ``--config`` file)."""

    @classmethod
    def parse(cls, raw: Any) -> NameList:
        if isinstance(raw, str):
            raw = raw.strip()
            if raw.startswith("[") and raw.endswith("]"):
                raw = raw[1:-1]
            return cls(x.strip().strip("'\"") for x in raw.split(",") if x.strip().strip("'\""))
        return cls(str(x) for x in (raw or ()))


def _register_draccus_types() -> None:
    import draccus

    draccus.decode.register(NameList, lambda raw, path=None: NameList.parse(raw))
    draccus.encode.register(NameList, lambda v: list(v))


_register_draccus_types()
