"""Reward refit during online RL (``rl --refit-every=N``): every N online episodes the learned
potential's models are refit on the policy's own rollouts, labelled only by each episode's
success flag (:mod:`robo_reward.reward.refit`), and the replay buffer's shaped rewards are
recomputed with the refit Phi, so the critic never mixes two potentials."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from robo_reward.reward.refit import LabelledFeatures, demo_features, fit_refit_head
from robo_reward.rl.potentials import LearnedPotential
from robo_reward.rl.shaping import Shaper, shaping_term


class RolloutRefitter:
    """Collects the potential's features along every online episode and, on :meth:`refit`, fits
    each model's success discriminator on demos + rollouts and relabels the replay buffer."""

    def __init__(self, potential: LearnedPotential, shaper: Shaper, runs: list[str], num_envs: int, capacity: int,
                 steps: int = 300, seed: int = 0, progress_bar: bool = False, failure_tail: float = 0.25):
        self.potential, self.shaper, self.steps, self.seed = potential, shaper, steps, seed
        self.failure_tail = failure_tail
        self.frozen = [copy.deepcopy(m) for m in potential.models]  # the models as given, for comparison
        self.demos = [demo_features(m, r, progress_bar) for m, r in zip(potential.models, runs, strict=True)]
        self.rollouts = [LabelledFeatures() for _ in potential.models]
        self.current: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        f = potential.last_features.shape[1:]
        self.capacity = capacity
        # per replay-buffer slot and env: features of s and s', the env reward, terminated
        self.feat_s = np.full((capacity, num_envs, *f), np.nan, np.float32)
        self.feat_next = np.full((capacity, num_envs, *f), np.nan, np.float32)
        self.env_r = np.zeros((capacity, num_envs), np.float32)
        self.term = np.zeros((capacity, num_envs), bool)
        self.filled = np.zeros(capacity, bool)
        self.history: list[dict[str, Any]] = []

    def observe(self, infos: list[dict], dones: np.ndarray, pos: int) -> None:
        """Called after every vector step, before SB3 stores it at replay slot ``pos``."""
        for i, info in enumerate(infos):
            if "phi_features" not in info:
                continue
            s, s_next = info["phi_features"]
            if pos < self.capacity:
                self.feat_s[pos, i], self.feat_next[pos, i] = s, s_next
                self.env_r[pos, i], self.term[pos, i] = info.get("env_reward", 0.0), info.get("terminal", False)
                self.filled[pos] = True
            if not self.current[i]:
                self.current[i].append(s)
            self.current[i].append(s_next)
            if dones[i]:
                ep = np.stack(self.current[i])  # (T, M, 1 + D)
                ok = np.isfinite(ep).all(axis=(1, 2))
                for m, store in enumerate(self.rollouts):
                    store.add(ep[ok, m, 1:], bool(info.get("success", False)))
                self.current[i] = []

    def refit(self, replay_buffer=None) -> dict[str, Any]:
        rec: dict[str, Any] = {"rollouts": len(self.rollouts[0]),
                               "rollout_successes": int(sum(self.rollouts[0].success))}
        for m, model in enumerate(self.potential.models):
            data = LabelledFeatures(self.demos[m].hidden + self.rollouts[m].hidden,
                                    self.demos[m].success + self.rollouts[m].success)
            rec[f"model{m}"] = fit_refit_head(model, data, self.steps, seed=self.seed + len(self.history),
                                              failure_tail=self.failure_tail)
        if replay_buffer is not None:
            rec["relabelled"] = self.relabel(replay_buffer)
        self.history.append(rec)
        return rec

    def relabel(self, replay_buffer) -> int:
        """Shaped rewards of every stored online transition, again with the refit Phi."""
        rows = np.flatnonzero(self.filled[: min(self.capacity, replay_buffer.buffer_size)])
        if rows.size == 0:
            return 0
        phi = self.potential.phi_from_features(self.feat_s[rows])
        phi_next = self.potential.phi_from_features(self.feat_next[rows])
        sh = self.shaper
        term = shaping_term(sh.potential_of(phi), sh.potential_of(phi_next), self.term[rows], sh.gamma, sh.mode)
        term = np.where(np.isfinite(term), term, 0.0)
        replay_buffer.rewards[rows] = (self.env_r[rows] + sh.scale * term).astype(replay_buffer.rewards.dtype)
        return int(rows.size * self.feat_s.shape[1])

    def state_dict(self) -> dict[str, Any]:
        return {"rollouts": [(s.hidden, s.success) for s in self.rollouts], "history": self.history,
                "heads": [m.refit.state_dict() if m.config.refit_head else None for m in self.potential.models],
                "side": (self.feat_s, self.feat_next, self.env_r, self.term, self.filled)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.rollouts = [LabelledFeatures(list(h), list(s)) for h, s in d["rollouts"]]
        self.history = d["history"]
        for m, head in zip(self.potential.models, d["heads"], strict=True):
            if head is not None:
                m.add_refit_head()
                m.refit.load_state_dict(head)
        self.feat_s, self.feat_next, self.env_r, self.term, self.filled = d["side"]
