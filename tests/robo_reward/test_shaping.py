"""Potential-based shaping: policy invariance on tabular MDPs, the naive 'semantic trap',
telescoping of the wrappers' shaping terms, NaN handling, and the learned potential's cached
incremental inference against whole-episode inference."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from robo_reward.rl.observation import RLObservation
from robo_reward.rl.potentials import GroundTruthPotential, LearnedPotential, Potential
from robo_reward.rl.shaped_env import ShapedRewardWrapper
from robo_reward.rl.shaped_vec_env import make_shaped_vec_env
from robo_reward.rl.shaping import Shaper, shaping_term


# ---- tabular MDPs ----------------------------------------------------------------------------
def q_iteration(P: np.ndarray, R: np.ndarray, terminal: np.ndarray, gamma: float, pi: np.ndarray | None = None,
                iters: int = 5000) -> np.ndarray:
    """Q of a finite MDP: the optimal one, or with ``pi`` (S, A) that of this fixed stochastic policy
    (what an actor-critic's critic estimates). P (S, A, S), R (S, A, S) rewards on transitions;
    terminal states end the episode (no value after them)."""
    S, A, _ = P.shape
    Q = np.zeros((S, A))
    cont = (~terminal).astype(float)
    for _ in range(iters):
        V = (Q.max(axis=1) if pi is None else (pi * Q).sum(axis=1)) * cont
        Qn = (P * (R + gamma * V[None, None, :])).sum(-1)
        if np.abs(Qn - Q).max() < 1e-12:
            break
        Q = Qn
    return Q


def shaped_rewards(R: np.ndarray, phi: np.ndarray, terminal: np.ndarray, gamma: float, mode: str) -> np.ndarray:
    S, A, _ = R.shape
    phi_s = np.broadcast_to(phi[:, None, None], R.shape)
    phi_next = np.broadcast_to(phi[None, None, :], R.shape)
    term = np.broadcast_to(terminal[None, None, :], R.shape)
    return R + shaping_term(phi_s, phi_next, term, gamma, mode)


@st.composite
def mdps(draw):
    S = draw(st.integers(2, 6))
    A = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    gamma = draw(st.sampled_from([0.5, 0.9, 0.95]))
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S) * 0.5, size=(S, A))
    R = rng.normal(size=(S, A, S))
    terminal = rng.random(S) < 0.3
    terminal[0] = False  # a start state that is not terminal
    phi = rng.normal(scale=draw(st.sampled_from([0.1, 1.0, 10.0])), size=S)
    return P, R, terminal, gamma, phi


@settings(max_examples=60, deadline=None)
@given(mdps())
def test_pbrs_keeps_the_optimal_policy(mdp):
    P, R, terminal, gamma, phi = mdp
    phi = np.where(terminal, 0.0, phi)  # Phi(terminal) = 0 as the wrapper defines it
    Q = q_iteration(P, R, terminal, gamma)
    Qs = q_iteration(P, shaped_rewards(R, phi, terminal, gamma, "pbrs"), terminal, gamma)
    # Ng et al.: Q'(s, a) = Q(s, a) - Phi(s) for every non-terminal state, hence the same argmax
    live = ~terminal
    np.testing.assert_allclose(Qs[live], Q[live] - phi[live, None], atol=1e-6)
    for s in np.flatnonzero(live):
        best = np.flatnonzero(Q[s] >= Q[s].max() - 1e-7)
        assert int(np.argmax(Qs[s])) in best


@settings(max_examples=30, deadline=None)
@given(mdps())
def test_pbrs_ignores_phi_on_terminal_states(mdp):
    """Whatever Phi says about terminal states, the shaping term treats them as 0."""
    P, R, terminal, gamma, phi = mdp
    Q = q_iteration(P, R, terminal, gamma)
    Qs = q_iteration(P, shaped_rewards(R, phi, terminal, gamma, "pbrs"), terminal, gamma)
    live = ~terminal
    np.testing.assert_allclose(Qs[live], Q[live] - phi[live, None], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(mdps(), st.integers(0, 2**31 - 1))
def test_pbrs_leaves_every_policys_advantages_unchanged(mdp, pi_seed):
    """For *any* fixed policy, not only the optimal one, Q'^pi = Q^pi - Phi(s): the shaped critic
    ranks actions exactly as the unshaped one. So once SAC's critic has evaluated a policy that
    never reaches the task reward, Phi gives its actor no preference at all (Q' = -Phi(s) for
    every action); PBRS steers exploration only while the critic is still learning (Wiewiora
    2003: PBRS equals initialising Q with Phi). Why shaped SAC can stall short of the goal."""
    P, R, terminal, gamma, phi = mdp
    phi = np.where(terminal, 0.0, phi)
    pi = np.random.default_rng(pi_seed).dirichlet(np.ones(P.shape[1]), size=P.shape[0])
    Q = q_iteration(P, R, terminal, gamma, pi)
    Qs = q_iteration(P, shaped_rewards(R, phi, terminal, gamma, "pbrs"), terminal, gamma, pi)
    live = ~terminal
    np.testing.assert_allclose(Qs[live], Q[live] - phi[live, None], atol=1e-6)
    # a task reward the policy never collects: the shaped critic is flat in the action
    Qz = q_iteration(P, shaped_rewards(np.zeros_like(R), phi, terminal, gamma, "pbrs"), terminal, gamma, pi)
    np.testing.assert_allclose(Qz[live], np.broadcast_to(-phi[live, None], Qz[live].shape), atol=1e-6)


def semantic_trap(gamma: float = 0.99):
    """start -(go)-> near (Phi 0.9) -(finish)-> goal (terminal, r=1); near -(stay)-> near.
    Action 0 = stay/idle, action 1 = advance."""
    S, A = 3, 2
    P = np.zeros((S, A, S))
    P[0, 0, 0] = 1.0
    P[0, 1, 1] = 1.0
    P[1, 0, 1] = 1.0  # loiter near the goal
    P[1, 1, 2] = 1.0  # finish
    P[2, :, 2] = 1.0
    R = np.zeros((S, A, S))
    R[1, 1, 2] = 1.0
    terminal = np.array([False, False, True])
    phi = np.array([0.0, 0.9, 1.0])  # progress: high near the goal, full at the goal
    return P, R, terminal, gamma, phi


def test_naive_progress_reward_is_a_semantic_trap_pbrs_is_not():
    P, R, terminal, gamma, phi = semantic_trap()
    Q = q_iteration(P, R, terminal, gamma)
    Q_naive = q_iteration(P, shaped_rewards(R, phi, terminal, gamma, "naive"), terminal, gamma)
    Q_pbrs = q_iteration(P, shaped_rewards(R, phi, terminal, gamma, "pbrs"), terminal, gamma)
    assert np.argmax(Q[1]) == 1  # finishing is optimal
    assert np.argmax(Q_pbrs[1]) == 1  # PBRS agrees
    assert np.argmax(Q_naive[1]) == 0  # naive progress: loitering at 0.9 forever pays more
    assert Q_naive[1, 0] > 10 * Q_naive[1, 1]


# ---- wrappers --------------------------------------------------------------------------------
class Corridor(gym.Env):
    """A 1-D corridor: action 1 steps right, 0 stays; reaching the end terminates with r=1.
    obs['progress'] is the position over the length."""

    def __init__(self, length: int = 6, limit: int = 50):
        self.length, self.limit = length, limit
        self.observation_space = gym.spaces.Dict({"state": gym.spaces.Box(0, length, (1,), np.float32),
                                                  "progress": gym.spaces.Box(0, 1, (1,), np.float32)})
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        return {"state": np.array([self.x], np.float32), "progress": np.array([self.x / self.length], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.t = 0, 0
        return self._obs(), {}

    def step(self, a):
        self.x = min(self.x + int(a), self.length)
        self.t += 1
        term = self.x == self.length
        return self._obs(), float(term), term, self.t >= self.limit and not term, {"success": term}


@pytest.mark.parametrize("terminates", [True, False])
def test_wrapper_shaping_telescopes(terminates):
    gamma = 0.9
    env = ShapedRewardWrapper(Corridor(length=6, limit=10), GroundTruthPotential(), Shaper("pbrs", gamma))
    rng = np.random.default_rng(3)
    obs, info = env.reset(seed=0)
    phi0 = info["phi"]
    actions = [1] * 6 if terminates else list(rng.integers(0, 2, size=10) * 0)  # stay put: truncation
    total, t, phis = 0.0, 0, [phi0]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        total += gamma**t * info["shaping"]
        t += 1
        phis.append(info["phi"])
        assert r == pytest.approx(info["env_reward"] + info["shaping"])
        if term or trunc:
            break
    assert term == terminates and trunc == (not terminates)
    expected = (0.0 if terminates else gamma**t * phis[-1]) - phi0
    assert total == pytest.approx(expected, abs=1e-9)


def test_value_potential_telescopes_and_is_flat_at_demo_pace():
    """With value_horizon H, Phi = gamma^((1 - progress) H): moving at a demo's pace (1/H of the
    task per step) earns zero shaping, slower earns less, and the terms still telescope."""
    gamma, length = 0.9, 6
    shaper = Shaper("pbrs", gamma, value_horizon=length)
    env = ShapedRewardWrapper(Corridor(length=length), GroundTruthPotential(), shaper)
    _, info = env.reset(seed=0)
    phi0 = shaper.potential_of(info["phi"])
    assert phi0 == pytest.approx(gamma**length)
    out = [env.step(1) for _ in range(length)]
    np.testing.assert_allclose([o[4]["shaping"] for o in out[:-1]], 0.0, atol=1e-6)
    assert out[-1][2] and out[-1][1] == pytest.approx(1.0 - gamma)  # r_env 1, Phi(goal) -> 0
    total = sum(gamma**t * o[4]["shaping"] for t, o in enumerate(out))
    assert total == pytest.approx(0.0 - phi0)
    env.reset(seed=0)
    assert env.step(0)[1] < 0.0  # standing still falls behind the demo's pace
    assert np.isnan(shaper.potential_of(np.array([np.nan])))[0]
    with pytest.raises(ValueError, match="value_horizon"):
        Shaper("pbrs", gamma, value_horizon=-1.0)


def test_non_invariant_baselines_do_not_telescope():
    env = ShapedRewardWrapper(Corridor(length=4), GroundTruthPotential(), Shaper("naive", 0.9))
    env.reset(seed=0)
    rs = [env.step(1)[1] for _ in range(4)]
    np.testing.assert_allclose(rs, [0.25, 0.5, 0.75, 1.0 + 1.0])  # Phi(s') itself, terminal included
    env = ShapedRewardWrapper(Corridor(length=4), GroundTruthPotential(), Shaper("delta", 0.9))
    env.reset(seed=0)
    rs = [env.step(1)[1] for _ in range(4)]
    np.testing.assert_allclose(rs, [0.25, 0.25, 0.25, 1.25])  # no gamma, no terminal handling


class FlakyPotential(Potential):
    """Ground-truth progress, NaN on chosen calls (a reward model that blew up)."""

    def __init__(self, nan_calls):
        self.nan_calls, self.calls = set(nan_calls), 0

    def __call__(self, obs, first, active=None):
        self.calls += 1
        p = np.asarray(obs["progress"], dtype=np.float64).reshape(-1)
        return np.full_like(p, np.nan) if self.calls in self.nan_calls else p


def test_nan_potential_gives_zero_shaping_and_a_counted_warning():
    shaper = Shaper("pbrs", 0.9)
    env = ShapedRewardWrapper(Corridor(length=6), FlakyPotential({3, 4}), shaper)
    env.reset(seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = [env.step(1) for _ in range(5)]
    # calls: 1 = reset, 2 = step 1, 3 = step 2 (NaN phi'), 4 = step 3 (NaN phi'), 5 = step 4
    rewards = [o[1] for o in out]
    assert np.isfinite(rewards).all()
    assert rewards[1] == 0.0 and out[1][4]["shaping"] == 0.0  # NaN Phi(s') -> zero shaping
    assert rewards[2] == 0.0  # NaN Phi(s) on the next step too
    assert rewards[0] != 0.0 and rewards[4] != 0.0
    assert shaper.stats.nan_steps == 3  # steps 2, 3 and 4 each touched a NaN
    assert sum("non-finite potential" in str(w.message) for w in caught) == 3


def test_shaper_rejects_bad_gamma():
    with pytest.raises(ValueError, match="gamma"):
        Shaper("pbrs", gamma=1.5)


# ---- the learned potential -------------------------------------------------------------------
def test_learned_potential_cached_inference_matches_whole_episode(tiny_model):
    """Encoding only the newest frame each step (cached tokens) gives the same Phi as running
    every causal window of the episode at once, for two envs with different episode starts."""
    from robo_reward.reward.inference import predict_episode

    model = tiny_model()
    rng = np.random.default_rng(0)
    eps = [rng.integers(0, 255, size=(L, 2, 32, 32, 3), dtype=np.uint8) for L in (11, 7)]
    ref = [predict_episode(model, e).progress for e in eps]
    pot = LearnedPotential(model, num_envs=2)
    got: list[list[float]] = [[], []]
    # env 1 starts 4 steps after env 0 (it idles on a different episode first)
    pre = rng.integers(0, 255, size=(4, 2, 32, 32, 3), dtype=np.uint8)
    for t in range(15):
        frames, first = [], []
        for i in range(2):
            k = t if i == 0 else t - 4
            if i == 0:
                f = eps[0][min(k, 10)]
            else:
                f = pre[t] if k < 0 else eps[1][min(k, 6)]
            frames.append(f)
            first.append(k == 0)
        obs = {"pixels": {"front": np.stack([f[0] for f in frames]), "wrist": np.stack([f[1] for f in frames])}}
        phi = pot(obs, np.array(first))
        if t < 11:
            got[0].append(phi[0])
        if 0 <= t - 4 < 7:
            got[1].append(phi[1])
    np.testing.assert_allclose(got[0], ref[0], atol=1e-5)
    np.testing.assert_allclose(got[1], ref[1], atol=1e-5)


def test_learned_potential_with_proprioception_matches_whole_episode(tiny_model):
    """A use_state model reads obs['agent_pos'] beside the cameras; online (cached tokens) it
    gives the same Phi as eval-reward's whole-episode pass, and the state really moves Phi."""
    from robo_reward.reward.inference import predict_episode

    model = tiny_model(state_dim=6)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, size=(9, 2, 32, 32, 3), dtype=np.uint8)
    state = rng.normal(0, 30, size=(9, 6)).astype(np.float32)
    ref = predict_episode(model, frames, state=state).progress
    other = predict_episode(model, frames, state=state[::-1].copy()).progress
    assert np.abs(ref - other).max() > 1e-4, "the state must change the prediction"
    pot = LearnedPotential(model, num_envs=1)
    assert pot.needs_state
    got = [pot({"pixels": {"front": f[None, 0], "wrist": f[None, 1]}, "agent_pos": s[None]}, np.array([t == 0]))[0]
           for t, (f, s) in enumerate(zip(frames, state, strict=True))]
    np.testing.assert_allclose(got, ref, atol=1e-5)
    with pytest.raises(KeyError, match="agent_pos"):
        pot({"pixels": {"front": frames[None, 0, 0], "wrist": frames[None, 0, 1]}}, np.array([True]))
    with pytest.raises(ValueError, match="state: missing"):
        predict_episode(model, frames)
    with pytest.raises(ValueError, match="NaN"):
        model.progress(frames[None, :4], state=np.full((1, 4, 6), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"state: shape \(4, 5\); expected \(4, 6\)"):
        model.progress(frames[None, :4], state=np.zeros((1, 4, 5), np.float32))


def test_learned_potential_errors_on_missing_camera_and_nan_weights(tiny_model):
    model = tiny_model()
    pot = LearnedPotential(model, num_envs=1)
    img = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(KeyError, match="wrist"):
        pot({"pixels": {"front": img}}, np.array([True]))
    with torch.no_grad():
        model.stage_head.weight.fill_(float("nan"))
    phi = pot({"pixels": {"front": img, "wrist": img}}, np.array([True]))
    shaper = Shaper("pbrs", 0.99)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        r, f = shaper(np.array([0.0]), np.array([0.2]), phi, np.array([False]))
    assert r[0] == 0.0 and f[0] == 0.0


def test_ensemble_disagreement_penalty(tiny_model):
    a, b = tiny_model(), tiny_model()
    with torch.no_grad():
        b.tau_head.bias.add_(3.0)  # the second member disagrees
    pot = LearnedPotential([a, b], num_envs=1)
    img = np.full((1, 32, 32, 3), 100, np.uint8)
    phi = pot({"pixels": {"front": img, "wrist": img}}, np.array([True]))
    spread = pot.disagreement()
    assert spread is not None and spread[0] > 0
    shaper = Shaper("pbrs", 0.9, disagreement_penalty=2.0)
    _, f = shaper(np.zeros(1), phi, phi, np.array([False]), spread)
    assert f[0] == pytest.approx(0.9 * phi[0] - phi[0] - 2.0 * spread[0])


# ---- the SB3 vector wrapper on the real sim ----------------------------------------------------
def test_vec_wrapper_on_sim_matches_formula_and_strips_obs():
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sim.tasks import make_env

    gamma = 0.97
    venv = DummyVecEnv([lambda: RLObservation(make_env("push", cameras=(), max_episode_steps=6),
                                              include_progress=True) for _ in range(2)])
    venv.seed(0)
    env = make_shaped_vec_env(venv, GroundTruthPotential(), Shaper("pbrs", gamma))
    obs = env.reset()
    assert obs.shape == (2, env.observation_space.shape[0])
    phi = env._phi.copy()
    rng = np.random.default_rng(0)
    saw_done = False
    for _ in range(8):
        obs, r, dones, infos = env.step(rng.uniform(-1, 1, size=(2, 4)).astype(np.float32))
        for i in range(2):
            term = dones[i] and not infos[i]["TimeLimit.truncated"]
            expect = infos[i]["env_reward"] + (gamma * (0 if term else infos[i]["phi"]) - phi[i])
            assert r[i] == pytest.approx(expect, abs=1e-5)
            if dones[i]:
                saw_done = True
                assert infos[i]["terminal_observation"].shape == obs[i].shape  # the policy state only
        phi = env._phi.copy()
    assert saw_done


def test_learned_potential_reads_cameras_named_otherwise_through_a_camera_map(tiny_model):
    model = tiny_model(cameras=("high", "wrist_cam"))
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, size=(1, 2, 32, 32, 3), dtype=np.uint8)
    direct = LearnedPotential(model)({"pixels": {"high": frames[:, 0], "wrist_cam": frames[:, 1]}}, np.array([True]))
    mapped = LearnedPotential(model, camera_map={"front": "high", "wrist": "wrist_cam"})
    assert mapped.cameras == ("front", "wrist")  # what the env must render, in the model's order
    got = mapped({"pixels": {"front": frames[:, 0], "wrist": frames[:, 1], "side": frames[:, 0] * 0}},
                 np.array([True]))
    np.testing.assert_allclose(got, direct, atol=1e-6)
    with pytest.raises(ValueError, match=r"--camera-map: \['top'\] are not cameras of the reward model"):
        LearnedPotential(model, camera_map={"front": "top"})
