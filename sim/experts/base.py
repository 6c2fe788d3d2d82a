"""Phase-machine scripted experts for the SO-101 tasks (ee_delta actions).

Each expert is a list of phases; a phase moves the TCP to a target (recomputed from the live
object state every step) or holds for a few steps, with a gripper command, and belongs to one
task stage. The phase a step was produced in gives the *annotation* (the subtask label a human
would mark); the first step of each stage starts its segment, so segments are contiguous.

Envs whose action has ``dyaw`` (ManiSkill's PegInsertionSide) also get a turn from the phase's
``yaw`` (how far the TCP still has to turn), inserted before the gripper command.

Quality knobs degrade a demo the way real teleoperation does: Gaussian action noise, hesitation
pauses, a deliberate drop and re-grasp, detours, and stopping short (a failure).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robo_reward.registry import Registry
from sim.tasks.base import SO101TaskEnv


class Quality(enum.StrEnum):
    CLEAN = "clean"
    DEGRADED = "degraded"
    FAILED = "failed"


class QualityMix(enum.StrEnum):
    """What ``collect --quality`` asks for."""

    CLEAN = "clean"
    MIXED = "mixed"
    RECOVERY = "recovery"
    OFFPATH = "offpath"
    OFFPATH_FAST = "offpath_fast"


@dataclass(frozen=True)
class ExpertQuality:
    action_noise: float = 0.0
    """Std of Gaussian noise added to the position part of each action (in action units)."""
    hesitation_prob: float = 0.0
    """Chance, at each phase change, of pausing for 5-15 steps."""
    drop_regrasp: bool = False
    """Open the jaws during the carry, then go back and grasp again."""
    detour: bool = False
    """Swing out through a side waypoint before reaching and before carrying."""
    stop_short_stage: int | None = None
    """Give up (hold still) when this stage would start: the episode fails."""
    wander_steps: int = 0
    """Wander (smoothed random actions) this many steps before starting the task, so the task is
    done from wherever the arm ends up: recovery data. The wandering frames belong to no stage."""
    mid_wander_steps: int = 0
    """Wander this many steps partway through the last stage (after 1-8 of its steps), then
    finish from wherever the arm ends up: the task half done while the arm is somewhere else,
    which an RL policy shows and clean demos never do. These frames keep the last stage."""
    fast: bool = False
    """Move more the way an RL policy does: skip the phases marked ``skip_when_fast`` (the hover
    above a push) and move ``FAST_SPEEDUP`` times faster. Off the clean demos' style, so it counts
    as degraded."""

    @property
    def label(self) -> Quality:
        if self.stop_short_stage is not None:
            return Quality.FAILED
        if (self.action_noise > 0 or self.hesitation_prob > 0 or self.drop_regrasp or self.detour
                or self.wander_steps > 0 or self.mid_wander_steps > 0 or self.fast):
            return Quality.DEGRADED
        return Quality.CLEAN


def sample_quality(mix: QualityMix | str, rng: np.random.Generator, n_stages: int) -> ExpertQuality:
    """Draw one episode's knobs: ``clean`` is always clean; ``mixed`` is 40% clean, 40% degraded
    (one or more knobs), 20% stopping short; ``recovery`` is ``mixed`` where half the episodes
    first wander for 10-30 steps (states off the demonstrations' path, which an RL policy visits);
    ``offpath`` is ``recovery`` where, independently, half the episodes also wander 5-20 steps
    partway through the last stage (the task half done, the arm elsewhere); ``offpath_fast`` is
    ``offpath`` where, independently, half the episodes move ``fast`` (no hover, ``FAST_SPEEDUP`` times faster)."""
    mix = QualityMix(mix)
    if mix == QualityMix.CLEAN:
        return ExpertQuality()
    if mix == QualityMix.OFFPATH_FAST:
        fast = bool(rng.uniform() < 0.5)
        return dataclasses.replace(sample_quality(QualityMix.OFFPATH, rng, n_stages), fast=fast)
    if mix == QualityMix.OFFPATH:
        mid = int(rng.integers(5, 21)) if rng.uniform() < 0.5 else 0
        return dataclasses.replace(sample_quality(QualityMix.RECOVERY, rng, n_stages), mid_wander_steps=mid)
    if mix == QualityMix.RECOVERY:
        wander = int(rng.integers(10, 31)) if rng.uniform() < 0.5 else 0
        return dataclasses.replace(sample_quality(QualityMix.MIXED, rng, n_stages), wander_steps=wander)
    u = rng.uniform()
    if u < 0.4:
        return ExpertQuality()
    if u < 0.8:
        knobs = rng.uniform(size=4) < 0.5
        if not knobs.any():
            knobs[rng.integers(4)] = True
        return ExpertQuality(
            action_noise=float(rng.uniform(0.1, 0.3)) if knobs[0] else 0.0,
            hesitation_prob=float(rng.uniform(0.3, 0.6)) if knobs[1] else 0.0,
            drop_regrasp=bool(knobs[2]) and n_stages > 3,
            detour=bool(knobs[3]),
        )
    return ExpertQuality(stop_short_stage=int(rng.integers(1, n_stages)))


@dataclass
class Phase:
    name: str
    stage: int
    gripper: float  # ee_delta gripper command: -1 closed, +1 open
    target: Callable[[SO101TaskEnv], np.ndarray] | None = None  # None: hold for `hold` steps
    hold: int = 0
    speed: float = 1.0  # max |action| on the position part
    tol: float = 0.004
    timeout: int = 80
    abort: Callable[[SO101TaskEnv], bool] | None = None
    """Recovery: when this returns True the expert goes back to phase ``restart``."""
    restart: str = ""
    yaw: Callable[[SO101TaskEnv], float] | None = None
    """Envs whose action has ``dyaw``: how far (rad, counter-clockwise) the TCP still has to turn.
    The phase ends when both the position and this are within tolerance."""
    yaw_tol: float = 0.02
    """Radians of turn still left that count as done (with ``yaw``)."""
    gain: float = 1.0
    """Action per unit of position error (in ee_step units); above 1 it beats an arm that sags
    short of small targets under a load."""
    straight: bool = False
    """Scale the whole step down to ``speed`` (keeping its direction) instead of clipping each axis:
    for moves that must stay on a line, like pushing a peg into a hole."""
    skip_when_fast: bool = False
    """Left out of a ``fast`` demo (a hover an RL policy does not bother with)."""


EXPERTS: Registry[Callable[[], tuple[list[Phase], Any]]] = Registry("scripted expert")
"""Task name -> a function returning the expert's phase list (and its drop-and-regrasp hook)."""


def register_expert(task: str):
    """``@register_expert("push")`` on the function that builds the task's phases."""
    return EXPERTS.register(task)


# How much faster a ``fast`` demo moves (capped at full speed). Without the hover, a push fails
# more often (the approach can nudge the block off its line), whatever the speed.
FAST_SPEEDUP = 1.5


def _fast_plan(phases: list[Phase]) -> list[Phase]:
    """The phases of a ``fast`` demo: those marked ``skip_when_fast`` left out, every move
    ``FAST_SPEEDUP`` times faster (at most full speed), and a recovery that restarts at a left-out
    phase restarting at the next kept one."""
    kept = [i for i, p in enumerate(phases) if not p.skip_when_fast]
    if not kept:
        raise ValueError("phases: every phase is skip_when_fast; a fast demo would do nothing")
    names = [p.name for p in phases]

    def restart(name: str) -> str:
        if not name or name not in names:
            return name
        i = names.index(name)
        return phases[next((k for k in kept if k >= i), kept[-1])].name

    return [dataclasses.replace(phases[i], speed=min(1.0, FAST_SPEEDUP * phases[i].speed), restart=restart(phases[i].restart))
            for i in kept]


@dataclass
class ScriptedExpert:
    """Runs a task's phase list against a live env. ``act(env)`` returns an ee_delta action."""

    phases: list[Phase]
    quality: ExpertQuality = field(default_factory=ExpertQuality)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    drop_phases: list[Phase] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.plan = _fast_plan(self.phases) if self.quality.fast else list(self.phases)
        self.i = 0
        self.steps_in_phase = 0
        self.pause = 0
        self._paused_after: Phase | None = None  # the phase a hesitation follows
        self._pausing = False  # this step's action was a hesitation
        self.gave_up = False
        self.done = False
        self._dropped = False
        self.recoveries = 0
        self._detour_done: set[int] = set()
        self._detour_point: np.ndarray | None = None
        self.wander_left = self.quality.wander_steps
        self._wandering = False
        self._wander = np.zeros(3)
        self._last_stage = max(p.stage for p in self.phases)
        self._mid_wander_at = int(self.rng.integers(1, 9)) if self.quality.mid_wander_steps > 0 else -1
        self._mid_wandering = False  # the current wander is the mid-task one (it keeps the stage)

    @property
    def phase(self) -> Phase:
        return self.plan[min(self.i, len(self.plan) - 1)]

    @property
    def stage(self) -> int:
        """The stage of the last action: a hesitation belongs to the phase it follows (the robot
        holds still at that phase's end, as it does when it stops short), not to the next one.
        -1 while wandering before the task starts (no stage)."""
        if (self.wander_left > 0 or self._wandering) and not self._mid_wandering:
            return -1
        if self._pausing and self._paused_after is not None:
            return self._paused_after.stage
        return self.phase.stage

    def _advance(self, env: SO101TaskEnv) -> None:
        self.i += 1
        self.steps_in_phase = 0
        if self.i >= len(self.plan):
            self.done = True
            return
        q = self.quality
        if q.stop_short_stage is not None and self.plan[self.i].stage >= q.stop_short_stage:
            self.i -= 1  # stay in (and report the stage of) the last phase actually carried out
            self.gave_up = True
            self.done = True
        elif q.hesitation_prob > 0 and self.rng.uniform() < q.hesitation_prob:
            self.pause = int(self.rng.integers(5, 16))
            self._paused_after = self.plan[self.i - 1]
        if q.detour and self.plan[self.i].target is not None and self.i not in self._detour_done and (
            self.plan[self.i].name in ("hover", "carry", "above")
        ):
            self._detour_done.add(self.i)
            side = self.rng.choice([-1.0, 1.0])
            self._detour_point = env.tcp_pos + np.array([0.0, side * 0.06, 0.03])

    def act(self, env: SO101TaskEnv) -> np.ndarray:
        a = self._act(env)
        if "dyaw" not in getattr(env, "action_names", ()):
            return a
        ph = self.phase
        turn = 0.0
        if not self.done and not self._pausing and not self._wandering and ph.yaw is not None:
            turn = float(np.clip(ph.yaw(env) / env.yaw_step, -ph.speed, ph.speed))
        return np.insert(a, 3, turn).astype(np.float32)

    def _act(self, env: SO101TaskEnv) -> np.ndarray:
        grip = self.phase.gripper
        self._pausing = False
        self._maybe_start_mid_wander()
        self._wandering = self.wander_left > 0
        if not self._wandering:
            self._mid_wandering = False
        if self._wandering:  # an Ornstein-Uhlenbeck-like walk: smooth and wandering
            self.wander_left -= 1
            self._wander = np.clip(0.8 * self._wander + 0.45 * self.rng.normal(size=3), -1.0, 1.0)
            return np.append(self._wander, grip).astype(np.float32)
        if self.done:
            return np.array([0.0, 0.0, 0.0, grip], dtype=np.float32)
        # a drop and re-grasp: halfway through the carry, open the jaws and go back for the block
        q = self.quality
        if q.drop_regrasp and not self._dropped and self.phase.name == "carry" and self.steps_in_phase == 2:
            self._dropped = True
            self.plan[self.i:self.i] = self.drop_phases
            self.steps_in_phase = 0
        for _ in range(len(self.plan)):
            a = self._phase_action(env)
            if a is not None:
                return a
        return np.array([0.0, 0.0, 0.0, grip], dtype=np.float32)  # pragma: no cover

    def _phase_action(self, env: SO101TaskEnv) -> np.ndarray | None:
        """The current phase's action, or None when the phase just ended (or restarted) and the
        next one should act this step."""
        if self.pause > 0:  # hesitate at the end of the phase just finished, its jaws as they were
            self.pause -= 1
            self._pausing = True
            return self._noisy(np.zeros(3), self._paused_after.gripper)
        ph = self.phase
        if ph.target is None:
            if self.steps_in_phase >= ph.hold:
                self._advance(env)
                if self.done:
                    return np.array([0.0, 0.0, 0.0, self.phase.gripper], dtype=np.float32)
                return None
            self.steps_in_phase += 1
            return self._noisy(np.zeros(3), ph.gripper)
        if self._detour_point is not None:
            err = self._detour_point - env.tcp_pos
            if np.linalg.norm(err) < 0.01:
                self._detour_point = None
            else:
                self.steps_in_phase += 1
                return self._noisy(np.clip(err / env.config.ee_step, -1, 1), ph.gripper)
        if ph.abort is not None and ph.abort(env):
            self.i = next(k for k, p in enumerate(self.plan) if p.name == ph.restart)
            self.steps_in_phase = 0
            self.recoveries += 1
            if self.recoveries > 4:
                self.gave_up = self.done = True
                return np.array([0.0, 0.0, 0.0, self.phase.gripper], dtype=np.float32)
            return None
        err = ph.target(env) - env.tcp_pos
        turned = ph.yaw is None or abs(ph.yaw(env)) < ph.yaw_tol
        if (np.linalg.norm(err) < ph.tol and turned) or self.steps_in_phase >= ph.timeout:
            self._advance(env)
            if self.done:
                return np.array([0.0, 0.0, 0.0, self.phase.gripper], dtype=np.float32)
            return None
        self.steps_in_phase += 1
        delta = ph.gain * err / env.config.ee_step
        if ph.straight:
            delta = delta * min(1.0, ph.speed / max(float(np.abs(delta).max()), 1e-9))
        delta = np.clip(delta, -ph.speed, ph.speed)
        return self._noisy(delta, ph.gripper)

    def _maybe_start_mid_wander(self) -> None:
        """Once per episode, partway through the last stage's first targeted phase: start wandering."""
        ph = self.phase
        if (self._mid_wander_at >= 0 and not self.done and not self._mid_wandering and self.wander_left == 0
                and ph.target is not None and ph.stage == self._last_stage and self.steps_in_phase >= self._mid_wander_at):
            self._mid_wander_at = -1  # once per episode
            self._mid_wandering = True
            self.wander_left = self.quality.mid_wander_steps
            self._wander = np.zeros(3)

    def _noisy(self, delta: np.ndarray, grip: float) -> np.ndarray:
        if self.quality.action_noise > 0:
            delta = delta + self.rng.normal(0.0, self.quality.action_noise, 3)
        return np.append(np.clip(delta, -1.0, 1.0), grip).astype(np.float32)


def make_expert(task: str, quality: ExpertQuality | None = None, seed: int = 0) -> ScriptedExpert:
    if task not in EXPERTS:
        raise ValueError(f"task: no scripted expert for {task!r}; expected one of {EXPERTS.names()}")
    phases, drop = EXPERTS.get(task)()
    return ScriptedExpert(phases, quality or ExpertQuality(), np.random.default_rng(seed), drop)
