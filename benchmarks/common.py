"""What the benchmark scripts share: the environment of their child processes (one torch
thread each, offline, MuJoCo on EGL, this checkout first on the path) and running a CLI step
with its output in a log file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = str(ROOT / ".venv/bin/robo-reward")


def env_vars(**extra: str) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1",
            "SVT_LOG": "1", "PYTHONPATH": str(ROOT), **extra}  # this checkout, whichever one the venv came from


def run(cmd: list[str], log: Path) -> None:
    """Run ``cmd`` from the repository root, appending its output to ``log``; a failure names the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        rc = subprocess.run(cmd, env=env_vars(), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise RuntimeError(f"exit {rc}: {' '.join(cmd)}; see {log}")
