"""Fine-tuning a cloned policy online (``rl --init-policy``: a residual on the frozen base) and
refitting the reward model on rollouts labelled only by their success flags (in the RL loop and
offline with ``refit-reward`` on ``deploy --record`` recordings)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from robo_reward.cli import main
from robo_reward.envs import make_env
from robo_reward.policies.registry import load_policy
from robo_reward.policies.residual import ResidualPolicy
from robo_reward.rl.checkpoint import RunState
from robo_reward.rl.config import RLConfig
from robo_reward.rl.envs import make_vec_env
from robo_reward.rl.observation import RLObservation
from robo_reward.rl.runner import load_or_build_model, run_rl
from robo_reward.rl.shaping import Shaper


def _cfg(tmp_path, policy, **kw) -> RLConfig:
    base = dict(task="push", reward="sparse", init_policy=policy, steps=120, num_envs=2, learning_starts=0,
                batch_size=32, net="32,32", max_episode_steps=30, eval_episodes=2, eval_every_episodes=2,
                checkpoint_every=60, actor_warmup=20, wandb="disabled", progress_bar=False, out=tmp_path / "ft")
    base.update(kw)
    return RLConfig(**base)


def test_finetuning_starts_at_the_base_policys_actions(tmp_path, state_policy):
    cfg = _cfg(tmp_path, state_policy)
    venv = make_vec_env("push", 2, None, Shaper("none", 0.98), 0, 30, init_policy=state_policy, residual_scale=0.3)
    model, _ = load_or_build_model(cfg, venv, None, RunState(tmp_path))
    tuned, base = ResidualPolicy(base=load_policy(state_policy), model=model, scale=0.3), load_policy(state_policy)
    env = RLObservation(make_env("push", cameras=()))
    obs, _ = env.reset(seed=3)
    tuned.reset()
    base.reset()
    for _ in range(12):  # across several chunks of the base
        a = base.act(obs)
        np.testing.assert_allclose(tuned.act(obs), np.clip(a, -1, 1), atol=1e-6)
        obs, *_ = env.step(a)
    # the vector env executes the base's action for a zero residual, and bounds any other
    obs = venv.reset()
    res_env = venv.venv
    proposed = res_env._base.copy()
    venv.step(np.zeros((2, 4), np.float32))
    np.testing.assert_allclose(res_env.last_executed, np.clip(proposed, -1, 1), atol=1e-6)
    proposed = res_env._base.copy()
    venv.step(np.ones((2, 4), np.float32))
    assert np.all(res_env.last_executed <= np.clip(proposed + 0.3, -1, 1) + 1e-6)
    assert obs.shape == (2, venv.observation_space.shape[0])  # the policy state and the base's action


def test_finetune_run_evaluates_from_the_base_writes_a_residual_policy_and_resumes(tmp_path, state_policy):
    cfg = _cfg(tmp_path, state_policy)
    summary = run_rl(cfg)
    evals = json.loads((cfg.out / "eval.json").read_text())
    assert evals[0]["online_episodes"] == 0 and evals[0]["residual_scale"] == pytest.approx(0.1)
    assert len(evals[0]["successes"]) == 2 and summary["episodes"] == 4  # 120 steps over 2 envs / 30-step episodes
    assert [e["online_episodes"] for e in evals][:3] == [0, 2, 4]
    meta = json.loads((cfg.out / "policy.json").read_text())
    assert meta["kind"] == "residual" and meta["base"] == str(state_policy.resolve())
    assert meta["scale"] == pytest.approx(0.1 + 4 / 50 * 0.2)  # grown with the online episodes
    policy = load_policy(cfg.out)
    env = RLObservation(make_env("push", cameras=()))
    obs, _ = env.reset(seed=0)
    assert policy.act(obs).shape == (4,)
    assert {"refit", "evaluation", "total"} <= set(summary["time_s"])
    again = run_rl(replace(cfg, steps=180))
    assert again["resumed"] and again["final"]["env_steps"] == 180 and again["episodes"] == 6


def test_an_init_policy_of_another_layout_is_refused(tmp_path, state_policy, capsys):
    meta = json.loads((state_policy / "policy.json").read_text())
    for change, msg in (({"task": "pick_place"}, "trained on task 'pick_place', this run is 'push'"),
                        ({"action_dim": 5}, "acts 5-D, task 'push' takes 4-D actions"),
                        ({"state_dim": meta["state_dim"] + 3}, f"reads a {meta['state_dim'] + 3}-D state")):
        bad = tmp_path / f"bad{len(msg)}"
        bad.mkdir()
        (bad / "policy.json").write_text(json.dumps({**meta, **change}))
        assert main(["rl", "--task=push", "--reward=sparse", f"--init-policy={bad}", "--steps=10",
                     f"--out={tmp_path / 'o'}", "--wandb=disabled", "--progress-bar=false"]) == 2
        err = capsys.readouterr().err
        assert f"--init-policy={bad}: {msg}" in err and "Traceback" not in err
    assert main(["rl", "--task=push", f"--init-policy={tmp_path / 'none'}", "--reward=sparse",
                 f"--out={tmp_path / 'o'}"]) == 2
    assert "none/policy.json missing" in capsys.readouterr().err


def test_a_refit_moves_a_failed_rollouts_end_progress_down(tiny_run, tiny_dataset):
    from robo_reward.data.frames import load_frame_cache
    from robo_reward.reward.inference import predict_episode
    from robo_reward.reward.modeling import ProcessRewardModel
    from robo_reward.reward.refit import LabelledFeatures, demo_features, fit_refit_head

    model = ProcessRewardModel.load(tiny_run)
    cfg = model.config
    cache = load_frame_cache(tiny_dataset, list(cfg.cameras), cfg.image_size, progress=False)
    ep = cache.episodes[0]
    frames = cache.episode_frames(ep)
    stall = ep.length // 2  # a hand-made failure: the robot stops half way and stays there
    failed = np.concatenate([frames[:stall], np.repeat(frames[stall:stall + 1], ep.length - stall, axis=0)])
    before_fail = predict_episode(model, failed).progress[-1]
    before_ok = predict_episode(model, frames).progress[-1]
    data = demo_features(model, tiny_run)
    assert all(data.success) and len(data) >= 3
    for _ in range(3):
        data.add(predict_episode(model, failed).hidden, False)
    stats = fit_refit_head(model, data, steps=300)
    assert stats["sigmoid_failure"] < stats["sigmoid_success"]
    after_fail = predict_episode(model, failed).progress[-1]
    after_ok = predict_episode(model, frames).progress[-1]
    assert after_fail < before_fail - 0.1, (before_fail, after_fail)
    assert after_ok > 0.7 * before_ok, (before_ok, after_ok)
    # a model with a refit head saves and loads with it
    model.save(tiny_run.parent / "refit")
    again = ProcessRewardModel.load(tiny_run.parent / "refit")
    assert again.config.refit_head
    np.testing.assert_allclose(predict_episode(again, failed).progress, predict_episode(model, failed).progress,
                               atol=1e-6)
    assert LabelledFeatures().split()[0].shape == (0, 0)


def test_deploy_records_success_flags_and_refit_reward_changes_the_model(tiny_run, state_policy, tmp_path, capsys):
    from real.cameras.mujoco import MujocoCameraConfig
    from real.deploy import DeployConfig, run_deploy
    from real.robots.mujoco_so101 import MujocoSO101Config
    from robo_reward.data.lerobot_io import load_episode_meta
    from robo_reward.reward.modeling import ProcessRewardModel

    rec = tmp_path / "rollouts"
    robot = MujocoSO101Config(task="push", privileged_state=True, calibration_dir=tmp_path / "calib",
                              cameras={c: MujocoCameraConfig(camera=c) for c in ("front", "wrist")})
    res = run_deploy(DeployConfig(robot=robot, policy=state_policy, reward_model=tiny_run, episodes=3, fps=20,
                                  episode_time_s=1.0, display=False, keyboard=False, record=rec, overrun_factor=20.0))
    flags = [e.success for e in res.episodes]
    metas = load_episode_meta(rec)
    assert [metas[i].success for i in range(3)] == flags and all(f is not None for f in flags)
    assert not all(flags), "1 s of a barely trained policy should not finish the push"
    out = tmp_path / "refit"
    assert main(["refit-reward", f"--model={tiny_run}", f"--rollouts={rec}", f"--out={out}", "--steps=200"]) == 0
    printed = capsys.readouterr().out
    assert "final progress, failed rollouts:" in printed
    report = json.loads((out / "refit.json").read_text())
    assert report["rollout_episodes"] == 3 and report["failed_episodes"] >= 1
    assert report["final_progress_failed_after"] < report["final_progress_failed_before"]
    assert ProcessRewardModel.load(out).config.refit_head and not ProcessRewardModel.load(tiny_run).config.refit_head
    assert main(["refit-reward", f"--model={tiny_run}", f"--rollouts={rec}", f"--out={tiny_run}"]) == 2
    assert "the same directory as --model" in capsys.readouterr().err


def test_rl_with_refit_relabels_the_replay_buffer_and_logs_phi_correlation(tmp_path, tiny_run, state_policy):
    cfg = _cfg(tmp_path, state_policy, reward="learned", reward_model=str(tiny_run), refit_every=2, refit_steps=50,
               phi_corr_episodes=1, steps=120)
    with pytest.warns(UserWarning, match="reads proprioception") if json.loads(
            (tiny_run / "config.json").read_text())["use_state"] else _nothing():
        summary = run_rl(cfg)
    assert len(summary["refits"]) >= 2
    assert any("relabelled" in r and r["relabelled"] > 0 for r in summary["refits"])
    evals = json.loads((cfg.out / "eval.json").read_text())
    assert "phi_true_corr" in evals[-1] and "phi_true_corr_frozen" in evals[-1]
    fitted = [r for r in summary["refits"] if "loss" in r["model0"]]
    if fitted:  # successes and failures were both seen: the refit model is a run of its own
        assert (cfg.out / "reward_refit" / "model.safetensors").is_file()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False
