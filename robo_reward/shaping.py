"""Potential-based reward shaping (Ng, Harada & Russell 1999) with a learned progress potential.

The shaped reward is ``r' = r_env + lambda * (gamma * Phi(s') - Phi(s))`` with ``Phi(terminal) = 0``.
Truncation by a time limit is *not* termination: the episode could have gone on, so ``Phi(s')``
stays. Summed over an episode the shaping terms telescope to ``gamma^T Phi(s_T) - Phi(s_0)``, which
is why PBRS leaves the optimal policy unchanged.

Potentials read observation dicts (batched, leading axis = env):

- :class:`GroundTruthPotential`: the sim's privileged progress (``obs["progress"]``), a baseline;
- :class:`LearnedPotential`: a :class:`ProcessRewardModel` over the rendered views
  (``obs["pixels"][camera]``). It keeps, per env, the fused token of every recent frame, so each
  step encodes only the newest frame of each env, in one batch across envs.

Two non-invariant baselines are kept for comparison: ``naive`` (``r_env + lambda * Phi(s')``) and
``delta`` (``r_env + lambda * (Phi(s') - Phi(s))``, no gamma and no terminal handling).

Wrappers: :class:`ShapedRewardWrapper` (gymnasium, one env) and :class:`ShapedVecEnv`
(stable-baselines3 ``VecEnv``). A NaN potential gives zero shaping for that step and a counted
warning; it never crashes the run.
"""

from __future__ import annotations

import abc
import enum
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch


class Shaping(enum.StrEnum):
    PBRS = "pbrs"
    NAIVE = "naive"
    DELTA = "delta"
    NONE = "none"


def shaping_term(phi: np.ndarray, phi_next: np.ndarray, terminated: np.ndarray, gamma: float,
                 mode: Shaping | str) -> np.ndarray:
    """The shaping term F(s, s') per env (without lambda). ``terminated`` is true termination
    only (never truncation)."""
    mode = Shaping(mode)
    phi = np.asarray(phi, dtype=np.float64)
    phi_next = np.asarray(phi_next, dtype=np.float64)
    if mode is Shaping.PBRS:
        return gamma * np.where(np.asarray(terminated, dtype=bool), 0.0, phi_next) - phi
    if mode is Shaping.NAIVE:
        return phi_next.copy()
    if mode is Shaping.DELTA:
        return phi_next - phi
    return np.zeros(np.broadcast(phi, phi_next).shape)


@dataclass
class ShapingStats:
    """Counters a wrapper keeps (logged by the RL loop)."""

    steps: int = 0
    nan_steps: int = 0
    shaping_sum: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"shaping/steps": self.steps, "shaping/nan_steps": self.nan_steps,
                "shaping/mean_term": self.shaping_sum / max(self.steps, 1)}


class Shaper:
    """Turns (r_env, Phi(s), Phi(s'), terminated) into the shaped reward, with NaN handling."""

    def __init__(self, mode: Shaping | str = Shaping.PBRS, gamma: float = 0.99, scale: float = 1.0,
                 disagreement_penalty: float = 0.0, value_horizon: float = 0.0):
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"gamma: {gamma}; expected in (0, 1]")
        if not np.isfinite(scale):
            raise ValueError(f"scale (lambda): {scale}; expected a finite number")
        if not (np.isfinite(value_horizon) and value_horizon >= 0):
            raise ValueError(f"value_horizon: {value_horizon}; expected a number of steps >= 0 (0: off)")
        self.mode = Shaping(mode)
        self.gamma = float(gamma)
        self.scale = float(scale)
        self.disagreement_penalty = float(disagreement_penalty)
        self.value_horizon = float(value_horizon)
        self.stats = ShapingStats()

    def potential_of(self, progress: np.ndarray) -> np.ndarray:
        """Phi from progress. With ``value_horizon`` H > 0, progress p is read as the discounted
        value of finishing H steps after the start, ``gamma ** ((1 - p) * H)``. With a critic that
        starts near zero, Phi acts as the initial Q (Wiewiora 2003): a large H keeps that start
        below what a learning policy achieves (no optimism for the actor to park on) and damps
        the early, least reliable part of a learned progress. Monotone in p, so the ordering of
        states is the model's; NaN stays NaN."""
        p = np.asarray(progress, dtype=np.float64)
        if self.value_horizon <= 0:
            return p
        return self.gamma ** ((1.0 - np.clip(p, 0.0, 1.0)) * self.value_horizon)

    def __call__(self, r_env: np.ndarray, phi: np.ndarray, phi_next: np.ndarray, terminated: np.ndarray,
                 disagreement: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Returns (shaped reward, shaping term) per env; ``phi`` and ``phi_next`` are progress,
        turned into the potential by :meth:`potential_of`."""
        term = shaping_term(self.potential_of(phi), self.potential_of(phi_next), terminated, self.gamma, self.mode)
        bad = ~np.isfinite(term)
        if self.mode is not Shaping.NONE and bad.any():
            self.stats.nan_steps += int(bad.sum())
            warnings.warn(f"shaping: reward model gave a non-finite potential in {int(bad.sum())} env(s) "
                          f"(total {self.stats.nan_steps}); using zero shaping for that step",
                          RuntimeWarning, stacklevel=2)
            term = np.where(bad, 0.0, term)
        elif self.mode is Shaping.NONE:
            term = np.zeros_like(term)
        if disagreement is not None and self.disagreement_penalty > 0:
            term = term - self.disagreement_penalty * np.nan_to_num(np.asarray(disagreement), nan=0.0)
        self.stats.steps += term.size
        self.stats.shaping_sum += float(term.sum())
        return np.asarray(r_env, dtype=np.float64) + self.scale * term, term


# ---- potentials ------------------------------------------------------------------------------
class Potential(abc.ABC):
    """Phi over a batch of observation dicts. ``first[i]`` marks env i's first frame of an episode
    (stateful potentials reset their history there)."""

    cameras: tuple[str, ...] = ()
    needs_progress: bool = False
    needs_state: bool = False  # reads obs["agent_pos"] (proprioception) besides the cameras

    @abc.abstractmethod
    def __call__(self, obs: dict[str, Any], first: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """Phi per env, shape (N,). Only ``active`` envs (default all) advance their history; the
        others' entries are undefined."""

    def disagreement(self) -> np.ndarray | None:
        """Ensemble spread of the last call (None for single models)."""
        return None


class GroundTruthPotential(Potential):
    """The simulator's privileged dense progress (``obs['progress']``): the oracle baseline."""

    needs_progress = True

    def __call__(self, obs: dict[str, Any], first: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        if "progress" not in obs:
            raise KeyError("obs: no 'progress' key; wrap the env with RLObservation(include_progress=True)")
        return np.asarray(obs["progress"], dtype=np.float64).reshape(-1)


class LearnedPotential(Potential):
    """Phi from a trained :class:`ProcessRewardModel` (or an ensemble of them), batched across envs.

    For each env it keeps the fused per-frame tokens of the last ``(window-1)*frame_gap+1``
    frames; a step encodes only the newest frame and runs the causal transformer on the window
    (the same clamped-at-start windows as training and ``eval-reward``)."""

    def __init__(self, models, num_envs: int = 1, device: str = "cpu"):
        from robo_reward.models.modeling import ProcessRewardModel

        if isinstance(models, ProcessRewardModel):
            models = [models]
        if not models:
            raise ValueError("models: empty; expected at least one reward model")
        cams = [tuple(m.config.cameras) for m in models]
        if len(set(cams)) != 1 or len({(m.config.window, m.config.frame_gap, m.config.image_size) for m in models}) != 1:
            raise ValueError(f"ensemble: members differ in cameras/window/frame_gap/image_size: {cams}")
        self.models = [m.to(device).eval() for m in models]
        cfg = self.models[0].config
        self.cameras = cams[0]
        self.window, self.gap = cfg.window, cfg.frame_gap
        self.span = (cfg.window - 1) * cfg.frame_gap + 1
        self.device = device
        self.num_envs = num_envs
        # history[m]: (num_envs, span, D) tokens; count[i]: frames seen this episode by env i
        self._hist = [torch.zeros(num_envs, self.span, cfg.dim, device=device) for _ in self.models]
        self._count = np.zeros(num_envs, dtype=np.int64)
        self._spread: np.ndarray | None = None
        if len({(m.config.use_state, m.config.state_dim) for m in self.models}) != 1:
            raise ValueError("ensemble: members differ in use_state/state_dim")
        self.needs_state = cfg.use_state
        self.stage_names: tuple[str, ...] = tuple(cfg.stage_names)
        self.last_stage = np.full(num_envs, -1, dtype=np.int64)
        self.last_success = np.full(num_envs, np.nan)

    @classmethod
    def from_runs(cls, runs, num_envs: int = 1, device: str = "cpu") -> LearnedPotential:
        from robo_reward.models.modeling import ProcessRewardModel

        runs = [runs] if isinstance(runs, str) else list(runs)
        return cls([ProcessRewardModel.load(r) for r in runs], num_envs=num_envs, device=device)

    def _frames(self, obs: dict[str, Any]) -> np.ndarray:
        # nested ({'pixels': {cam: ...}}) or flat ({'pixels.<cam>': ...}, what SB3 vec envs carry)
        pix = obs.get("pixels") or {k.removeprefix("pixels."): v for k, v in obs.items() if k.startswith("pixels.")}
        if not pix:
            raise KeyError(f"obs: no 'pixels'; the reward model needs cameras {list(self.cameras)}")
        missing = [c for c in self.cameras if c not in pix]
        if missing:
            raise KeyError(f"obs['pixels']: camera(s) {missing} missing; the reward model reads "
                           f"{list(self.cameras)}, the env renders {sorted(pix)}")
        return np.stack([np.asarray(pix[c]) for c in self.cameras], axis=1)  # (N, V, H, W, 3)

    @torch.no_grad()
    def __call__(self, obs: dict[str, Any], first: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        frames = self._frames(obs)
        n = frames.shape[0]
        if n != self.num_envs:
            raise ValueError(f"obs: batch of {n} envs; this potential was built for num_envs={self.num_envs}")
        first = np.asarray(first, dtype=bool).reshape(n)
        rows = np.arange(n) if active is None else np.flatnonzero(np.asarray(active, dtype=bool).reshape(n))
        phi = np.zeros(n)
        if rows.size == 0:
            return phi
        self._count[rows[first[rows]]] = 0
        frames = frames[rows]
        finite = np.isfinite(frames.reshape(len(rows), -1)).all(axis=1) if frames.dtype.kind == "f" \
            else np.ones(len(rows), bool)
        frames = np.where(finite[:, None, None, None, None], frames, 0)
        x = self.models[0]._prep(frames[:, None])[:, 0].flatten(0, 1)  # (R*V, 3, s, s)
        state = None
        if self.needs_state:
            if "agent_pos" not in obs:
                raise KeyError(f"obs: no 'agent_pos'; the reward model reads proprioception (observation.state, "
                               f"width {self.models[0].config.state_dim}) with its cameras")
            state = np.asarray(obs["agent_pos"], dtype=np.float32).reshape(n, -1)[rows]
            ok = np.isfinite(state).all(axis=1)
            finite &= ok
            state = np.where(ok[:, None], state, 0.0)
        # the causal window ending now (clamped at the episode start); newest frame at span-1
        offs = self.gap * np.arange(self.window - 1, -1, -1)
        back = np.minimum(offs[None, :], self._count[rows][:, None])  # (R, T)
        idx = torch.as_tensor(self.span - 1 - back, device=self.device)
        r_t = torch.as_tensor(rows, device=self.device)
        outs, stage_p, succ_p = [], [], []
        for m, hist in zip(self.models, self._hist, strict=True):
            tok = m.frame_tokens(x, n_views=len(self.cameras), state=state)  # (R, D)
            h_rows = torch.roll(hist[r_t], shifts=-1, dims=1)
            h_rows[:, -1] = tok
            hist[r_t] = h_rows
            seq = torch.gather(h_rows, 1, idx[..., None].expand(-1, -1, h_rows.shape[-1]))
            h = m.temporal_from_tokens(seq)
            hd = m.heads(h[:, -1:])
            outs.append(hd["progress"][:, -1].clamp(0.0, 1.0).cpu().numpy())
            stage_p.append(hd["stage_logits"][:, -1].softmax(-1).cpu().numpy())
            succ_p.append(torch.sigmoid(hd["success_logit"][:, -1]).cpu().numpy())
        self._count[rows] += 1
        # the ensemble's mean stage distribution and success probability, for live displays
        self.last_stage = np.full(n, -1, dtype=np.int64)
        self.last_stage[rows] = np.mean(stage_p, axis=0).argmax(-1)
        self.last_success = np.full(n, np.nan)
        self.last_success[rows] = np.mean(succ_p, axis=0)
        p = np.stack(outs)  # (M, R)
        self._spread = np.zeros(n)
        if len(outs) > 1:
            self._spread[rows] = p.std(axis=0)
        vals = p.mean(axis=0).astype(np.float64)
        vals[~finite] = np.nan
        phi[rows] = vals
        return phi

    def disagreement(self) -> np.ndarray | None:
        return self._spread if len(self.models) > 1 else None


# ---- observation adapter ---------------------------------------------------------------------
class RLObservation(gym.ObservationWrapper):
    """Task env obs -> {'state': flat policy state, ['pixels.<camera>' ...], ['progress']} (flat, as
    SB3's vector envs need).

    The policy state is built by :func:`policy_state` from the joint positions, the TCP position
    and the environment state (object and goal positions), scaled to order one. ``pixels`` are
    kept only for the cameras the potential needs; ``progress`` (ground truth) only when asked.
    """

    def __init__(self, env: gym.Env, include_progress: bool = False):
        super().__init__(env)
        self.include_progress = include_progress
        base = env.unwrapped
        self.keep_pixels = bool(base.config.cameras)
        # another robot (ManiSkill's Panda) brings its own joint scaling: ``policy_joints``
        self._joints = getattr(base, "policy_joints", None)
        q0 = np.zeros(env.observation_space["agent_pos"].shape)
        probe = policy_observation(q0, np.zeros(3), np.zeros(base.env_state_dim), None,
                                   self._joints(q0) if self._joints else None)
        dim, dim_p = probe["state"].shape[0], probe["proprio"].shape[0]
        spaces_: dict[str, gym.Space] = {"state": gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32),
                                         "proprio": gym.spaces.Box(-np.inf, np.inf, (dim_p,), np.float32),
                                         "agent_pos": gym.spaces.Box(-np.inf, np.inf, q0.shape, np.float32)}
        if self.keep_pixels:
            for c, sp in env.observation_space["pixels"].items():
                spaces_[f"pixels.{c}"] = sp
        if include_progress:
            spaces_["progress"] = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.observation_space = gym.spaces.Dict(spaces_)
        self._last_progress = 0.0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last_progress = info["progress"]
        return self.observation(obs), info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self._last_progress = info["progress"]
        return self.observation(obs), r, term, trunc, info

    def observation(self, obs):
        base = self.env.unwrapped
        out = policy_observation(obs["agent_pos"], base.tcp_pos, obs["environment_state"],
                                 obs["pixels"] if self.keep_pixels else None,
                                 self._joints(obs["agent_pos"]) if self._joints else None)
        if self.include_progress:
            out["progress"] = np.array([self._last_progress], dtype=np.float32)
        return out


def proprio_state(agent_pos: np.ndarray, tcp: np.ndarray) -> np.ndarray:
    """What a real arm measures, scaled to order one: joints (arm radians, gripper 0..1) and the
    TCP (dm, by forward kinematics). Image policies read this beside their cameras."""
    agent_pos = np.asarray(agent_pos, dtype=np.float64)
    return np.concatenate([np.radians(agent_pos[..., :5]), agent_pos[..., 5:6] / 100.0,
                           np.asarray(tcp) * 10.0], -1).astype(np.float32)


def policy_observation(agent_pos: np.ndarray, tcp: np.ndarray, env_state: np.ndarray | None = None,
                       pixels: dict[str, np.ndarray] | None = None,
                       joints: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The one observation every policy here reads, built the same way in sim (:class:`RLObservation`)
    and on a robot (``real.deploy``): ``proprio``, ``state`` (only where the object and goal
    positions are known: sim, or a robot with privileged state), ``pixels.<camera>``, and
    ``agent_pos``, the measured joints as datasets record them (``observation.state``), for a
    reward model that reads proprioception.
    ``joints``: a non-SO-101 robot's own scaled joints (see :func:`policy_state`)."""
    if joints is None:
        out = {"proprio": proprio_state(agent_pos, tcp)}
    else:
        out = {"proprio": np.concatenate([joints, np.asarray(tcp) * 10.0], -1).astype(np.float32)}
    out["agent_pos"] = np.asarray(agent_pos, dtype=np.float32)
    if env_state is not None:
        out["state"] = policy_state(agent_pos, tcp, env_state, joints)
    for c, img in (pixels or {}).items():
        out[f"pixels.{c}"] = img
    return out


def policy_state(agent_pos: np.ndarray, tcp: np.ndarray, env_state: np.ndarray,
                 joints: np.ndarray | None = None) -> np.ndarray:
    """Low-dimensional policy input: joints (arm radians, gripper 0..1), TCP xyz (dm), object and
    goal positions (dm) and the object-minus-TCP vector (dm). Used by online RL and by demos.
    ``joints`` overrides the SO-101 conversion for another robot (its env's ``policy_joints``).
    Leading batch dimensions are kept (the batched ManiSkill env builds all envs' states at once)."""
    agent_pos = np.asarray(agent_pos, dtype=np.float64)
    if joints is None:
        joints = np.concatenate([np.radians(agent_pos[..., :5]), agent_pos[..., 5:6] / 100.0], -1)
    tcp = np.asarray(tcp, dtype=np.float64) * 10.0
    env_state = np.asarray(env_state, dtype=np.float64) * 10.0
    rel = env_state[..., :3] - tcp if env_state.shape[-1] >= 3 else np.zeros_like(tcp)
    return np.concatenate([joints, tcp, env_state, rel], -1).astype(np.float32)


# ---- gymnasium wrapper -----------------------------------------------------------------------
class ShapedRewardWrapper(gym.Wrapper):
    """Shapes one env's reward with ``potential`` (called with a batch of one). Wrap an env whose
    observations carry what the potential reads (see :class:`RLObservation`). Adds
    ``info['phi']``, ``info['shaping']`` and ``info['env_reward']``."""

    def __init__(self, env: gym.Env, potential: Potential | Callable, shaper: Shaper):
        super().__init__(env)
        self.potential = potential
        self.shaper = shaper
        self._phi = 0.0

    def _phi_of(self, obs, first: bool) -> float:
        batched = batch_obs([obs])
        return float(self.potential(batched, np.array([first]))[0])

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._phi = self._phi_of(obs, True)
        info["phi"] = self._phi
        return obs, info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        phi_next = self._phi_of(obs, False)
        shaped, f = self.shaper(np.array([r]), np.array([self._phi]), np.array([phi_next]), np.array([term]),
                                _maybe(self.potential))
        info.update(phi=phi_next, shaping=float(f[0]), env_reward=float(r))
        self._phi = phi_next
        return obs, float(shaped[0]), term, trunc, info


def _maybe(potential) -> np.ndarray | None:
    return potential.disagreement() if isinstance(potential, Potential) else None


def batch_obs(obs_list: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obs_list[0].items():
        if isinstance(v, dict):
            out[k] = {c: np.stack([o[k][c] for o in obs_list]) for c in v}
        else:
            out[k] = np.stack([np.asarray(o[k]) for o in obs_list])
    return out


# ---- stable-baselines3 vector wrapper ----------------------------------------------------------
def make_shaped_vec_env(venv, potential: Potential, shaper: Shaper):
    """Wrap an SB3 VecEnv of :class:`RLObservation` envs: shape rewards with ``potential`` (one
    batched call per step across envs) and hand the policy only ``obs['state']``."""
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class ShapedVecEnv(VecEnvWrapper):
        def __init__(self):
            super().__init__(venv, observation_space=venv.observation_space["state"])
            self.potential = potential
            self.shaper = shaper
            self._phi = np.zeros(venv.num_envs)
            self.time_in_potential = 0.0

        def _call_potential(self, obs, first, active=None):
            import time

            t0 = time.perf_counter()
            out = self.potential(obs, first, active)
            self.time_in_potential += time.perf_counter() - t0
            return out

        def reset(self):
            obs = self.venv.reset()
            self._phi = self._call_potential(obs, np.ones(self.num_envs, bool))
            return obs["state"]

        def step_wait(self):
            obs, r, dones, infos = self.venv.step_wait()
            n = self.num_envs
            term = np.array([bool(d and not info.get("TimeLimit.truncated", False)) for d, info in zip(dones, infos, strict=True)])
            # Phi(s') of done envs comes from their terminal observation (obs holds the reset one)
            next_obs = obs
            if dones.any():
                next_obs = batch_obs([infos[i]["terminal_observation"] if dones[i] else _index(obs, i)
                                       for i in range(n)])
            phi_next = self._call_potential(next_obs, np.zeros(n, bool))
            shaped, f = self.shaper(r, self._phi, phi_next, term, self.potential.disagreement())
            for i in range(n):
                infos[i]["env_reward"] = float(r[i])
                infos[i]["shaping"] = float(f[i])
                infos[i]["phi"] = float(phi_next[i])
                if dones[i]:
                    infos[i]["terminal_observation"] = infos[i]["terminal_observation"]["state"]
            self._phi = phi_next.copy()
            if dones.any():  # the new episodes' first frames
                phi_reset = self._call_potential(obs, dones.astype(bool), active=dones.astype(bool))
                self._phi[dones] = phi_reset[dones]
            return obs["state"], shaped.astype(np.float32), dones, infos

    return ShapedVecEnv()


def _index(obs: dict[str, Any], i: int) -> dict[str, Any]:
    return {k: ({c: x[i] for c, x in v.items()} if isinstance(v, dict) else v[i]) for k, v in obs.items()}
