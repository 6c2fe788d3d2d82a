"""`robo-reward rl`: CLI smoke runs (dense and learned reward, demo-seeded replay), a loadable
policy checkpoint, resume, and clear errors for bad flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robo_reward.cli import main
from robo_reward.policies.sb3 import SB3Policy
from robo_reward.rl.config import RLConfig
from robo_reward.rl.demos import load_demo_transitions
from robo_reward.rl.observation import RLObservation
from robo_reward.rl.shaping import Shaper

FAST = ["--num-envs=2", "--learning-starts=64", "--batch-size=64", "--eval-every=200", "--eval-episodes=1",
        "--max-episode-steps=40", "--net=32,32", "--wandb=false", "--progress-bar=false"]


def test_rl_cli_dense_writes_loadable_policy_and_resumes(tmp_path):
    out = tmp_path / "run"
    assert main(["rl", "--task=push", "--reward=dense", "--steps=200", "--checkpoint-every=100", "--n-step=2",
                 f"--out={out}", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["env_steps"] == 200 and not summary["resumed"]
    assert (out / "checkpoint" / "model.zip").is_file() and (out / "checkpoint" / "replay.pkl").is_file()
    evals = json.loads((out / "eval.json").read_text())
    assert [e["env_steps"] for e in evals] == [200]
    assert evals[0]["online_episodes"] == 4 and evals[0]["eval_episodes"] == 1
    assert summary["episodes"] == 4  # 2 envs x 100 steps each / 40-step episodes

    policy = SB3Policy(out)
    from sim.tasks import make_env

    env = RLObservation(make_env("push", cameras=()))
    obs, _ = env.reset(seed=0)
    a = policy.act(obs)
    assert a.shape == (4,) and np.all(np.abs(a) <= 1.0)
    # RLPD's LayerNorm critics (the default) survive the save and load
    for critic in (policy.model.critic, policy.model.critic_target):
        assert sum(isinstance(m, torch.nn.LayerNorm) for m in critic.modules()) == 4  # 2 critics x 2 layers

    # resume: a longer budget continues from the checkpoint instead of starting over
    assert main(["rl", "--task=push", "--reward=dense", "--steps=400", "--checkpoint-every=100", "--n-step=2",
                 f"--out={out}", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] and summary["final"]["env_steps"] == 400
    from stable_baselines3 import SAC
    from stable_baselines3.common.buffers import NStepReplayBuffer

    resumed = SAC.load(out / "checkpoint" / "model.zip", device="cpu")
    resumed.load_replay_buffer(out / "checkpoint" / "replay.pkl")
    assert isinstance(resumed.replay_buffer, NStepReplayBuffer) and resumed.replay_buffer.n_steps == 2
    evals = json.loads((out / "eval.json").read_text())
    assert [e["env_steps"] for e in evals] == [200, 400]
    assert [e["online_episodes"] for e in evals] == [4, 8]
    assert summary["episodes"] == 8  # resumed envs start fresh episodes

    # eval-policy runs RL policies too
    res = tmp_path / "eval.json"
    assert main(["eval-policy", f"--policy={out}", "--episodes=2", f"--out-json={res}", "--max-episode-steps=20"]) == 0
    r = json.loads(res.read_text())
    assert r["task"] == "push" and r["episodes"] == 2 and r["mean_length"] <= 20


def test_rl_cli_ppo(tmp_path):
    out = tmp_path / "ppo"
    assert main(["rl", "--task=push", "--reward=dense", "--algo=ppo", "--steps=128", "--batch-size=32",
                 f"--out={out}", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["env_steps"] >= 128
    assert SB3Policy(out).meta["algo"] == "ppo"


def test_rl_cli_learned_reward_with_demos(tmp_path, tiny_dataset, tiny_run):
    """Learned PBRS reward from images (the cameras the model reads are rendered), demo-seeded
    replay and BC warm start, on the push task."""
    out = tmp_path / "learned"
    assert main(["rl", "--task=push", "--reward=learned", f"--reward-model={tiny_run}",
                 f"--demos={tiny_dataset}", "--bc-warmstart-steps=20", "--bc-weight=1", "--actor-warmup=10",
                 "--ent-coef=auto_0.01", "--steps=120", f"--out={out}", *FAST]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["env_steps"] == 120
    assert summary["demos"]["transitions"] > 0
    assert summary["potential_s"] > 0 and summary["render_s"] > 0
    assert summary["nan_shaping_steps"] == 0
    assert np.isfinite(summary["bc_regulariser"]["bc_loss"]) and summary["bc_regulariser"]["bc_loss"] > 0


def test_demo_transitions_rewards_follow_the_shaper(tiny_dataset):
    gamma = 0.9
    d = load_demo_transitions(tiny_dataset, "push", Shaper("pbrs", gamma), "dense")
    assert len(d) > 0 and d.obs.shape == d.next_obs.shape and d.actions.shape[1] == 4
    # successful episodes end with done=1 on a transition whose env reward is 1
    assert d.dones.sum() == d.successes
    assert np.all(np.abs(d.actions) <= 1.0)
    sparse = load_demo_transitions(tiny_dataset, "push", Shaper("none", gamma), "sparse")
    assert sparse.rewards.sum() == pytest.approx(sparse.successes)


@pytest.mark.parametrize("argv, msg", [
    (["--reward=learned"], "--reward-model"),
    (["--reward=sparse", "--shaping=pbrs"], "needs a potential"),
    (["--reward=dense", "--shaping=bogus"], "--shaping"),
    (["--reward=dense", "--algo=dqn"], "--algo"),
    (["--reward=dense", "--bc-weight=1"], "need --demos"),
    (["--reward=dense", "--n-critics=0"], "--n-critics: 0"),
    (["--reward=dense", "--n-step=0"], "--n-step: 0"),
])
def test_rl_cli_bad_flags(tmp_path, capsys, argv, msg):
    assert main(["rl", "--task=push", f"--out={tmp_path / 'x'}", *argv]) == 2
    assert msg in capsys.readouterr().err


def test_n_step_replay_with_demo_rows(tiny_dataset):
    """Online rows carry n-step returns that stop at a termination (their bootstrap discount
    shrinks to match); demo rows stay one-step with discount gamma. With PBRS, the shaping terms
    in an n-step sum telescope to gamma^n Phi(s_n) - Phi(s_0)."""
    import gymnasium as gym

    from robo_reward.rl.demos import DemoMixReplayBuffer

    gamma, n = 0.9, 3
    demo = load_demo_transitions(tiny_dataset, "push", Shaper("pbrs", gamma), "dense")
    obs_space = gym.spaces.Box(-np.inf, np.inf, demo.obs.shape[1:], np.float32)
    act_space = gym.spaces.Box(-1, 1, demo.actions.shape[1:], np.float32)
    buf = DemoMixReplayBuffer(100, obs_space, act_space, n_envs=1, demo=demo, demo_ratio=0.5,
                              n_steps=n, gamma=gamma)
    phi = np.array([0.1, 0.3, 0.2, 0.6, 0.9, 0.0])  # Phi(s_0..s_5); s_5 terminal
    shaper = Shaper("pbrs", gamma)
    for t in range(5):
        term = t == 4
        r, _ = shaper(np.array([1.0 if term else 0.0]), phi[t:t + 1], phi[t + 1:t + 2], np.array([term]))
        o = np.full((1, *demo.obs.shape[1:]), t, np.float32)
        buf.add(o, o + 1, np.zeros((1, *demo.actions.shape[1:])), r, np.array([term]), [{}])
    np.random.seed(0)
    s = buf.sample(200)
    online = slice(0, 100)
    t0 = s.observations[online, 0].numpy().astype(int)
    ret, disc = s.rewards[online, 0].numpy(), s.discounts[online, 0].numpy()
    for t, r, d in zip(t0, ret, disc, strict=True):
        k = min(n, 5 - t)  # steps until the n-step sum ends (termination after step 4)
        # env reward 1 at termination; the shaping terms telescope (Phi(terminal) = 0)
        phi_end = 0.0 if t + k == 5 else phi[t + k]
        expect = (gamma ** (k - 1) if t + k == 5 else 0.0) + gamma ** k * phi_end - phi[t]
        assert r == pytest.approx(expect, abs=1e-5) and d == pytest.approx(gamma ** k, rel=1e-5)
    assert set(t0) == {0, 1, 2, 3, 4}
    assert np.allclose(s.discounts[100:].numpy(), gamma)  # demo rows: one-step


def test_rl_config_auto_shaping():
    assert RLConfig(reward="sparse").shaping == "none"
    assert RLConfig(reward="dense").shaping == "pbrs"


def test_learned_reward_reading_joints_warns(tmp_path, tiny_run, tiny_model):
    """A reward model that reads proprioception is hackable by a policy that sets the joints:
    `rl` says so; a video-only model (tiny_run) passes silently."""
    import warnings

    from robo_reward.rl.envs import make_potential

    joints = tiny_model(cameras=["front"], state_dim=6)
    joints.config.stage_names = ["reach", "push"]  # push's stages, or rl refuses it as another task's model
    joints.save(tmp_path / "joints")
    with pytest.warns(UserWarning, match=r"reads proprioception.*--model.use_state=false"):
        pot = make_potential(RLConfig(reward="learned", reward_model=str(tmp_path / "joints")), 1)
    assert pot.needs_state
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not make_potential(RLConfig(reward="learned", reward_model=str(tiny_run)), 1).needs_state
    assert not [w for w in caught if "proprioception" in str(w.message)]


def _parse_rl(args: list[str]) -> RLConfig:
    import draccus

    return draccus.parse(config_class=RLConfig, args=args)


def test_push_preset_is_the_benchmarked_setting():
    """configs/rl/push.yaml holds the flags of the benchmark row it cites (the PBRS variants' flags),
    so the preset and the measured numbers cannot drift apart."""
    from pathlib import Path

    from robo_reward.cli import _underscore_flag

    root = Path(__file__).resolve().parents[2]
    bench = json.loads((root / "benchmarks/results/rl_sample_efficiency_push_value.json").read_text())
    flags = [*bench["extra"], *bench["pbrs_flags"], f"--utd={bench['utd']}", f"--task={bench['task']}",
             f"--steps={bench['steps']}", "--eval-every=4000"]
    want = _parse_rl(["--reward=learned", "--reward_model=m", *map(_underscore_flag, flags)])
    got = _parse_rl(["--config_path=" + str(root / "configs/rl/push.yaml"), "--reward=learned", "--reward_model=m"])
    assert got == want
    pp = _parse_rl(["--config_path=" + str(root / "configs/rl/pick_place_demos.yaml"), "--reward=sparse"])
    assert (pp.task, pp.utd, pp.n_step, pp.demo_success_only, pp.learning_starts) == ("pick_place", 2.0, 3, True, 0)


def test_rl_cli_runs_from_the_preset(tmp_path):
    out = tmp_path / "run"
    assert main(["rl", "--config=configs/rl/push.yaml", "--reward=dense", "--steps=200", f"--out={out}", *FAST]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["gamma"], cfg["n_step"], cfg["value_horizon"], cfg["ent_coef"]) == (0.9, 3, 20, "auto_0.01")
    assert cfg["max_episode_steps"] == 40  # a flag after --config overrides the preset


def test_rl_refuses_a_reward_model_it_cannot_use(tmp_path, tiny_dataset, capsys):
    from robo_reward.rl.envs import check_stages

    with pytest.raises(ValueError, match=r"stages \['reach', 'grasp', 'lift', 'carry', 'place'\] are not task 'push'"):
        check_stages("push", ("reach", "grasp", "lift", "carry", "place"), "outputs/reward/pp")
    check_stages("push", ("reach", "push"), "ok")
    check_stages("push", ("task",), "one-stage")  # linear labels fit any task
    # a dataset (or any directory) where a run is expected: one line, exit 2
    assert main(["rl", "--task=push", "--reward=learned", f"--reward-model={tiny_dataset}",
                 f"--out={tmp_path / 'x'}", *FAST]) == 2
    assert "is not a train-reward run" in capsys.readouterr().err


def test_rl_stops_when_the_potential_is_nan_on_most_steps(tiny_run, tmp_path, capsys):
    from robo_reward.reward.modeling import ProcessRewardModel

    model = ProcessRewardModel.load(tiny_run)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model.save(tmp_path / "nan_model")
    out = tmp_path / "run"
    with pytest.warns(RuntimeWarning, match="non-finite potential"):
        rc = main(["rl", "--task=push", "--reward=learned", f"--reward-model={tmp_path / 'nan_model'}", "--steps=400",
                   f"--out={out}", *FAST])
    assert rc == 2
    err = capsys.readouterr().err
    assert "the potential was NaN on" in err and "--max-nan-share=0.05" in err
    assert not (out / "policy.zip").exists()  # no policy is written from a run without a reward
