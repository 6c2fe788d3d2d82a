"""Demonstrations for SAC: transitions shaped like the online ones, RLPD's demo-mixing replay
buffer, and a BC warm start of the actor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from tqdm import tqdm

from robo_reward.data.lerobot_io import DatasetError
from robo_reward.policies.features import load_frame_table, state_features
from robo_reward.reward.inference import dataset_progress
from robo_reward.rl.shaping import Shaper


@dataclass
class DemoTransitions:
    obs: np.ndarray
    actions: np.ndarray
    next_obs: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    episodes: int = 0
    successes: int = 0
    stats: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.obs)


def load_demo_transitions(root: str | Path, task: str, shaper: Shaper, reward: str, reward_model: str = "",
                          success_only: bool = False, progress_bar: bool = False) -> DemoTransitions:
    """Transitions (s, a, r', s', done) from a collected dataset, with the same reward as online:
    r_env = 1 at the step that reaches success (the episode ends there), plus the shaping term with
    Phi from the ground truth (dense) or the reward model run on the dataset's video (learned)."""

    table = load_frame_table(root, task)
    if table.gt_progress is None:
        raise DatasetError(f"{root}: column gt.progress missing; demo-seeded replay needs a dataset written by "
                           "`robo-reward collect` (it marks where the demo succeeds)")
    states = state_features(table, "state")
    phi_all = {"learned": lambda: dataset_progress(reward_model, root, progress_bar),
               "dense": lambda: table.gt_progress.astype(np.float64),
               "sparse": lambda: np.zeros(len(table.index))}[reward]()
    obs, acts, nxt, rews, dones = [], [], [], [], []
    n_eps = n_succ = 0
    for ep_idx in table.episodes:
        m = table.episode_index == ep_idx
        s, act, gt, phi = states[m], table.action[m], table.gt_progress[m], phi_all[m]
        hit = np.flatnonzero(gt >= 1.0)
        success = hit.size > 0 and hit[0] > 0
        if success_only and not success:
            continue
        end = int(hit[0]) if success else len(s) - 1  # transitions 0..end-1 lead to frame end
        if end < 1:
            continue
        r_env = np.zeros(end)
        term = np.zeros(end, dtype=bool)
        if success:
            r_env[-1] = 1.0
            term[-1] = True
        shaped, _ = shaper(r_env, phi[:end], phi[1:end + 1], term)
        obs.append(s[:end])
        acts.append(act[:end])
        nxt.append(s[1:end + 1])
        rews.append(shaped.astype(np.float32))
        dones.append(term.astype(np.float32))
        n_eps += 1
        n_succ += int(success)
    if not obs:
        raise DatasetError(f"{root}: no usable demo episodes (success_only={success_only})")
    return DemoTransitions(np.concatenate(obs), np.clip(np.concatenate(acts), -1, 1), np.concatenate(nxt),
                           np.concatenate(rews), np.concatenate(dones), n_eps, n_succ)


class DemoMixReplayBuffer(NStepReplayBuffer):
    """RLPD's symmetric sampling: ``demo_ratio`` of every batch comes from fixed demo transitions.
    Online rows use ``n_steps``-step returns (1: plain one-step TD); demo rows stay one-step."""

    def __init__(self, *args, demo: DemoTransitions | None = None, demo_ratio: float = 0.5, n_steps: int = 1,
                 gamma: float = 0.99, **kwargs):
        super().__init__(*args, n_steps=n_steps, gamma=gamma, **kwargs)
        self.demo = demo
        self.demo_ratio = demo_ratio if demo is not None else 0.0

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> ReplayBufferSamples:
        if getattr(self, "n_steps", 1) == 1:  # a checkpoint from before --n-step has no n_steps
            return ReplayBuffer._get_samples(self, batch_inds, env)
        return super()._get_samples(batch_inds, env)

    def sample(self, batch_size: int, env=None) -> ReplayBufferSamples:
        n_demo = int(round(batch_size * self.demo_ratio))
        online = super().sample(batch_size - n_demo, env)
        if n_demo == 0:
            return online
        d = self.demo
        i = np.random.randint(0, len(d), size=n_demo)

        def t(x):
            return torch.as_tensor(x, device=self.device)

        return ReplayBufferSamples(
            torch.cat([online.observations, t(d.obs[i])]),
            torch.cat([online.actions, t(d.actions[i])]),
            torch.cat([online.next_observations, t(d.next_obs[i])]),
            torch.cat([online.dones, t(d.dones[i])[:, None]]),
            torch.cat([online.rewards, t(d.rewards[i])[:, None]]),
            None if online.discounts is None else
            torch.cat([online.discounts, torch.full((n_demo, 1), self.gamma, dtype=online.discounts.dtype,
                                                    device=online.discounts.device)]),
        )


def bc_warmstart(model, demo: DemoTransitions, steps: int, batch: int = 256, progress_bar: bool = False) -> float:
    """Behaviour-clone the SAC actor's mean action onto the demo actions (MSE); returns the last loss."""
    actor = model.actor
    opt = torch.optim.Adam(actor.parameters(), lr=1e-3)
    obs = torch.as_tensor(demo.obs)
    act = torch.as_tensor(demo.actions).clamp(-0.999, 0.999)
    loss = torch.tensor(float("nan"))
    for _ in tqdm(range(steps), desc="bc-warmstart", disable=not progress_bar):
        i = torch.randint(0, len(obs), (batch,))
        pred = actor(obs[i], deterministic=True)
        loss = torch.nn.functional.mse_loss(pred, act[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())
