"""SB3's SAC, extended the supported way: :class:`LayerNormSACPolicy` (RLPD's LayerNorm critics)
and :class:`BCRegularizedSAC`, whose actor optimizer adds a behaviour-cloning term on demo batches
(Nair et al. 2018; optionally Q-filtered, TD3+BC-normalised) and can hold the actor still for a
critic warm-up. Without a regulariser installed, :class:`BCRegularizedSAC` is plain SAC."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from stable_baselines3 import SAC
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from robo_reward.rl.demos import DemoTransitions


class LayerNormSACPolicy(SACPolicy):
    """SB3's SAC MLP policy whose critics can put a LayerNorm after each hidden layer (RLPD)."""

    def __init__(self, *args, critic_layer_norm: bool = False, **kwargs):
        self.critic_layer_norm = critic_layer_norm
        super().__init__(*args, **kwargs)

    def make_critic(self, features_extractor=None) -> ContinuousCritic:
        critic = super().make_critic(features_extractor)
        if self.critic_layer_norm:
            in_dim = critic.features_extractor.features_dim + get_action_dim(self.action_space)
            arch = self.critic_kwargs["net_arch"]
            critic.q_networks = []
            for idx in range(critic.n_critics):
                q_net = nn.Sequential(*create_mlp(in_dim, 1, arch, self.activation_fn,
                                                  post_linear_modules=[nn.LayerNorm]))
                critic.add_module(f"qf{idx}", q_net)  # replaces the plain MLP of that name
                critic.q_networks.append(q_net)
        return critic

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "critic_layer_norm": self.critic_layer_norm}


class BCRegularizedAdam(torch.optim.Adam):
    """Adam that, before each step, runs ``hook`` (which adds the BC gradient to the actor gradient
    SB3 just computed), and skips its first ``warmup_left`` steps. Its state is a plain Adam state."""

    def __init__(self, params, hook: Callable[[], None] | None = None, warmup: int = 0, **kwargs):
        super().__init__(params, **kwargs)
        self.hook = hook
        self.warmup_left = warmup

    def step(self, closure=None):
        if self.warmup_left > 0:  # critic warm-up: the actor does not move yet
            self.warmup_left -= 1
            return None
        if self.hook is not None:
            self.hook()
        return super().step(closure)


class BCRegularizedSAC(SAC):
    """SAC whose actor can be regularised towards demonstrations (:meth:`install_bc`)."""

    bc_stats: dict[str, float] | None = None

    def _setup_model(self) -> None:
        super()._setup_model()
        opt = self.actor.optimizer
        self.actor.optimizer = BCRegularizedAdam(self.actor.parameters(), **opt.defaults)

    def install_bc(self, demo: DemoTransitions, weight: float, q_filter: bool, rl_alpha: float | None = None,
                   warmup: int = 0, batch: int = 128) -> None:
        """Add ``weight * ||pi(s) - a_demo||^2`` on a demo batch to every actor update (only where the
        critic prefers the demo action, with ``q_filter``); with ``rl_alpha``, scale the RL term by
        ``rl_alpha / max(mean|Q|, 1)`` (TD3+BC); ``warmup`` critic-only updates first."""
        obs_all = torch.as_tensor(demo.obs)
        act_all = torch.as_tensor(demo.actions).clamp(-0.999, 0.999)
        params = [p for g in self.actor.optimizer.param_groups for p in g["params"]]
        stats = {"bc_loss": 0.0, "q_filter_pass": 0.0}

        def hook() -> None:
            i = torch.randint(0, len(obs_all), (batch,))
            obs, act = obs_all[i], act_all[i]
            pi = self.actor(obs, deterministic=True)
            if rl_alpha is not None:
                with torch.no_grad():
                    q_scale = torch.cat(self.critic(obs, pi), dim=1).abs().mean().clamp_min(1.0)
                for p in params:
                    if p.grad is not None:
                        p.grad.mul_(rl_alpha / q_scale)
                stats["q_scale"] = float(q_scale)
            err = ((pi - act) ** 2).mean(-1)
            if q_filter:
                with torch.no_grad():
                    q_demo = torch.min(torch.cat(self.critic(obs, act), dim=1), dim=1).values
                    q_pi = torch.min(torch.cat(self.critic(obs, pi.detach()), dim=1), dim=1).values
                    keep = (q_demo > q_pi).float()
                err = err * keep
                stats["q_filter_pass"] = float(keep.mean())
            loss = weight * err.mean()
            loss.backward()
            stats["bc_loss"] = float(loss.detach())

        self.actor.optimizer.hook = hook
        self.actor.optimizer.warmup_left = warmup
        self.bc_stats = stats

    def install_residual_penalty(self, weight: float, batch: int = 256) -> None:
        """Add ``weight * ||pi(s)||^2`` on a batch of replayed states to every actor update: a
        residual actor moves off the base policy only where the critic pays for it."""
        stats = {"residual_sq": 0.0}

        def hook() -> None:
            if self.replay_buffer is None or self.replay_buffer.size() == 0:
                return
            obs = self.replay_buffer.sample(batch).observations
            pi = self.actor(obs, deterministic=True)
            sq = (pi ** 2).mean()
            (weight * sq).backward()
            stats["residual_sq"] = float(sq.detach())

        self.actor.optimizer.hook = hook
        self.bc_stats = stats

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "bc_stats"]
