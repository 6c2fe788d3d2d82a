"""SARM label arithmetic: subtask segments, temporal proportions and stage-aware progress.

Global progress of a frame in stage ``k`` at within-stage fraction ``tau`` is
``P_{k-1} + a_k * tau``, where ``a_k`` is the mean share of episode time spent in stage ``k``
("temporal proportions") and ``P_{k-1}`` the sum of the earlier shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class AnnotationError(ValueError):
    """Subtask annotations that are out of range, overlapping, unordered or misaligned."""


@dataclass(frozen=True)
class Segments:
    """One episode's subtask segments: inclusive ``[start, end]`` frame ranges, in order."""

    names: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]

    def validate(self, length: int, where: str = "annotations") -> Segments:
        n = len(self.names)
        if not (len(self.starts) == len(self.ends) == n) or n == 0:
            raise AnnotationError(
                f"{where}: names/starts/ends must be non-empty and equally long; got "
                f"{n}/{len(self.starts)}/{len(self.ends)}")
        for i, (name, s, e) in enumerate(zip(self.names, self.starts, self.ends, strict=True)):
            if not (0 <= s <= e <= length - 1):
                raise AnnotationError(
                    f"{where}: segment {i} {name!r} spans frames [{s}, {e}]; expected "
                    f"0 <= start <= end <= {length - 1} (the episode has {length} frames)")
            if i and s <= self.ends[i - 1]:
                raise AnnotationError(
                    f"{where}: segment {i} {name!r} starts at frame {s}, overlapping segment {i - 1} "
                    f"{self.names[i - 1]!r} which ends at frame {self.ends[i - 1]}; expected start > "
                    f"{self.ends[i - 1]}")
        return self

    def normalized(self, length: int) -> Segments:
        """The same segments with inclusive ends, from either convention real annotations use: where a
        subtask's end equals the next one's start (LeRobot's annotator, Robo-Dopamine's keyframes),
        that end is exclusive; a last end equal to the episode length is exclusive too. Genuine
        overlaps are left for :meth:`validate` to refuse."""
        ends = list(self.ends)
        for i in range(len(ends) - 1):
            if ends[i] == self.starts[i + 1]:
                ends[i] -= 1
        if ends and ends[-1] == length:
            ends[-1] = length - 1
        return Segments(self.names, self.starts, tuple(ends))

    @property
    def shares_boundaries(self) -> bool:
        return any(self.ends[i] == self.starts[i + 1] for i in range(len(self.ends) - 1))

    @classmethod
    def from_stage_per_frame(cls, stage_names: Sequence[str], stage_of_frame: Sequence[int]) -> Segments:
        """Contiguous segments from a per-frame stage index: a stage starts where it is first
        reached, so a monotone labelling results even if the demo went back (a re-grasp). A
        negative index marks a frame before the task starts (no stage); those frames lie before
        the first segment, where progress reads 0."""
        stages = np.maximum.accumulate(np.asarray(stage_of_frame, dtype=int))
        if stages.size == 0 or stages[-1] < 0:
            raise AnnotationError(f"stage_of_frame: no frame is in a stage ({stages.size} frames); expected at "
                                  f"least one index in 0..{len(stage_names) - 1}")
        names, starts, ends = [], [], []
        for k in np.unique(stages[stages >= 0]):
            idx = np.flatnonzero(stages == k)
            names.append(stage_names[int(k)])
            starts.append(int(idx[0]))
            ends.append(int(idx[-1]))
        return cls(tuple(names), tuple(starts), tuple(ends))


def temporal_proportions(episodes: Sequence[Segments], stage_names: Sequence[str]) -> dict[str, float]:
    """Mean share of episode time per stage, ``a_k``, normalised to sum to 1.

    Averaged over the episodes that contain every stage (complete demonstrations); if none do,
    over all episodes, counting a missing stage as 0.
    """
    if not episodes:
        raise AnnotationError("temporal proportions: no annotated episodes; expected at least one")
    complete = [ep for ep in episodes if set(stage_names) <= set(ep.names)] or list(episodes)
    shares = np.zeros((len(complete), len(stage_names)))
    for i, ep in enumerate(complete):
        total = ep.ends[-1] - ep.starts[0] + 1
        for name, s, e in zip(ep.names, ep.starts, ep.ends, strict=True):
            if name in stage_names:
                shares[i, list(stage_names).index(name)] += (e - s + 1) / total
    mean = shares.mean(axis=0)
    if mean.sum() <= 0:
        raise AnnotationError("temporal proportions: every stage has zero duration")
    mean = mean / mean.sum()
    return {name: float(p) for name, p in zip(stage_names, mean, strict=True)}


def stage_and_tau(frame: int, seg: Segments, stage_names: Sequence[str]) -> tuple[int, float]:
    """Stage index and within-stage fraction for ``frame`` (tau = 0 at a segment's first frame,
    1 at its last)."""
    for name, s, e in zip(seg.names, seg.starts, seg.ends, strict=True):
        if s <= frame <= e:
            return list(stage_names).index(name), (frame - s) / max(e - s, 1)
    if frame < seg.starts[0]:
        return list(stage_names).index(seg.names[0]), 0.0
    # after the last segment, or in a gap: hold the end of the previous segment
    prev = max(i for i, e in enumerate(seg.ends) if e < frame)
    return list(stage_names).index(seg.names[prev]), 1.0


def progress_from_stage(stage: np.ndarray | int, tau: np.ndarray | float, proportions: Sequence[float]) -> np.ndarray:
    """``P_{k-1} + a_k * tau`` (vectorised)."""
    a = np.asarray(proportions, dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(a)])
    stage = np.asarray(stage, dtype=int)
    return np.clip(cum[stage] + a[stage] * np.clip(np.asarray(tau, dtype=np.float64), 0.0, 1.0), 0.0, 1.0)


def episode_progress(length: int, seg: Segments | None, stage_names: Sequence[str],
                     proportions: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (stage, tau, progress) for one episode. Without annotations: one stage with
    linear progress."""
    if seg is None or len(stage_names) == 1:
        tau = np.arange(length) / max(length - 1, 1)
        return np.zeros(length, dtype=int), tau, tau.copy()
    st = np.zeros(length, dtype=int)
    tau = np.zeros(length)
    for f in range(length):
        st[f], tau[f] = stage_and_tau(f, seg, stage_names)
    return st, tau, progress_from_stage(st, tau, proportions)
