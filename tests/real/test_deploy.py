"""The deploy loop on the MuJoCo-backed SO-101: end to end with recording, every watchdog stop,
dry runs, observation parity with sim, and the real driver's connection error."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from real.cameras.mujoco import MujocoCameraConfig
from real.deploy import (
    DeployConfig,
    Deployment,
    RobotConnectionError,
    StopFlag,
    StopReason,
    connect_robot,
    run_deploy,
)
from real.robots import make_robot
from real.robots.mujoco_so101 import MujocoSO101Config
from robo_reward.cli import main
from robo_reward.data.lerobot_io import open_dataset
from robo_reward.policies.registry import load_policy
from robo_reward.rl.potentials import LearnedPotential

CAMS = ("front", "wrist")
STEPS = 20  # per episode: 1 s at 20 Hz


def _robot_cfg(tmp_path, cameras=None, **kw) -> MujocoSO101Config:
    cameras = cameras or {c: MujocoCameraConfig(camera=c) for c in CAMS}
    return MujocoSO101Config(task="push", privileged_state=True, cameras=cameras,
                             calibration_dir=tmp_path / "calib", **kw)


def _cfg(tmp_path, policy, robot=None, **kw) -> DeployConfig:
    # a lenient watchdog (1 s) so a loaded CI machine never trips it; the overrun test sets its own
    base = dict(episodes=3, fps=20, episode_time_s=STEPS / 20, display=False, keyboard=False,
                record=tmp_path / "rec", overrun_factor=20.0)
    base.update(kw)
    return DeployConfig(robot=robot or _robot_cfg(tmp_path), policy=policy, **base)


def _episodes_on_disk(root) -> int:
    return int(open_dataset(root, video_backend="pyav").meta.total_episodes)


def test_deploy_cli_end_to_end_records_progress(tiny_run, state_policy, tmp_path):
    from robo_reward.data.table import load_frame_table, read_progress_parquet

    rec = tmp_path / "rec"
    args = ["deploy", "--robot.type=mujoco_so101", "--robot.task=push", "--robot.privileged_state=true",
            f"--robot.calibration_dir={tmp_path / 'calib'}", f"--policy={state_policy}",
            f"--reward-model={tiny_run}", "--episodes=2", "--episode-time-s=1", f"--record={rec}",
            "--display=false", "--keyboard=false", "--overrun-factor=20"]
    assert main(args) == 0
    ds = open_dataset(rec, video_backend="pyav")  # LeRobot's own reader
    assert ds.meta.total_episodes == 2 and ds.meta.total_frames <= 2 * STEPS
    assert {"reward.progress", "reward.stage", "observation.images.front", "observation.images.wrist",
            "action", "action.ee_delta"} <= set(ds.features)
    item = ds[3]
    assert item["observation.images.front"].shape == (3, 64, 64) and 0 <= float(item["reward.progress"]) <= 1
    summary = json.loads((rec / "deploy_summary.json").read_text())
    assert summary["episodes"] == 2 and summary["stop_reason"] is None
    # the per-frame progress is ready for RA-BC: it matches the dataset frame for frame
    table = load_frame_table(rec)
    p = read_progress_parquet(rec / "sarm_progress.parquet", table)
    assert len(p) == ds.meta.total_frames and np.all((p >= 0) & (p <= 1)) and p.std() > 0
    first = pd.read_parquet(rec / "sarm_progress.parquet")
    # a second run appends; what was recorded before is untouched
    assert main(args) == 0
    assert _episodes_on_disk(rec) == 4
    again = pd.read_parquet(rec / "sarm_progress.parquet")
    pd.testing.assert_frame_equal(again.iloc[: len(first)].reset_index(drop=True), first)


def test_policy_sees_the_same_observation_in_sim_and_on_the_robot(state_policy, image_policy, tiny_run, tmp_path):
    from robo_reward.rl.observation import RLObservation
    from sim.tasks import make_env

    env = RLObservation(make_env("push", cameras=CAMS))
    sim_obs, _ = env.reset(seed=5)
    robot = make_robot(_robot_cfg(tmp_path))
    potential = LearnedPotential.from_runs(str(tiny_run))
    dep = Deployment(_cfg(tmp_path, state_policy), robot, load_policy(state_policy), potential)
    robot.connect()
    try:
        robot.reset_episode(5)
        robot_obs, _, _, _ = dep.observe()
    finally:
        robot.disconnect()
        env.close()
    assert set(robot_obs) == set(sim_obs)
    np.testing.assert_allclose(robot_obs["state"], sim_obs["state"], atol=1e-4)
    np.testing.assert_allclose(robot_obs["proprio"], sim_obs["proprio"], atol=1e-4)
    for c in CAMS:
        assert np.abs(robot_obs[f"pixels.{c}"].astype(int) - sim_obs[f"pixels.{c}"]).mean() < 1.0
    for run in (state_policy, image_policy):  # both kinds act the same on either observation
        a, b = load_policy(run), load_policy(run)
        np.testing.assert_allclose(a.act(robot_obs), b.act(sim_obs), atol=1e-4)


class _NaNPolicyAfter:
    """A real policy whose output turns NaN after ``n`` calls (a diverged network)."""

    def __init__(self, run, n):
        self.inner, self.n, self.calls = load_policy(run), n, 0
        self.cameras, self.task, self.needs_state = self.inner.cameras, self.inner.task, self.inner.needs_state

    def reset(self):
        self.inner.reset()

    def act(self, obs, env=None):
        self.calls += 1
        a = self.inner.act(obs)
        return a * np.nan if self.calls > self.n else a


class _NaNPotentialAfter:
    """A real reward model whose progress turns NaN after ``n`` calls."""

    def __init__(self, run, n):
        self.inner, self.n, self.calls = LearnedPotential.from_runs(str(run)), n, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __call__(self, obs, first, active=None):
        self.calls += 1
        phi = self.inner(obs, first, active)
        return phi * np.nan if self.calls > self.n else phi


FAULT_AT = STEPS + 5  # the fault strikes 5 steps into the second episode


@pytest.mark.parametrize("fault,on_stop", [
    ("serial_error", "save"), ("serial_error", "discard"), ("latency", "save"), ("stale_frame", "save"),
    ("policy_nan", "save"), ("reward_nan", "discard"), ("sigint", "save"), ("estop", "save"),
])
def test_watchdog_stops_safely_and_keeps_saved_episodes(fault, on_stop, state_policy, tiny_run, tmp_path):
    robot_kw, policy, potential, stop, on_step = {}, None, None, StopFlag(), None
    expected = {"serial_error": StopReason.DRIVER_ERROR, "latency": StopReason.OVERRUN,
                "stale_frame": StopReason.STALE_FRAME, "policy_nan": StopReason.POLICY_NAN,
                "reward_nan": StopReason.REWARD_NAN, "sigint": StopReason.SIGNAL, "estop": StopReason.ESTOP}[fault]
    if fault == "serial_error":
        robot_kw = dict(serial_error_after=FAULT_AT)
    elif fault == "latency":
        robot_kw = dict(latency_s=1.5, latency_after=FAULT_AT)  # 1.5 s against the 1 s limit
    elif fault == "stale_frame":
        robot_kw = dict(max_frame_age_ms=120, cameras={"front": MujocoCameraConfig(camera="front"),
                                                       "wrist": MujocoCameraConfig(camera="wrist", freeze_after=FAULT_AT)})
    elif fault == "policy_nan":
        policy = _NaNPolicyAfter(state_policy, FAULT_AT)
    elif fault == "reward_nan":
        potential = _NaNPotentialAfter(tiny_run, FAULT_AT)
    else:
        count = iter(range(10**6))

        def on_step(t, info):
            if next(count) == FAULT_AT:
                signal.raise_signal(signal.SIGINT) if fault == "sigint" else stop.set()

    robot = make_robot(_robot_cfg(tmp_path, **robot_kw))
    cfg = _cfg(tmp_path, state_policy, robot=_robot_cfg(tmp_path, **robot_kw), on_stop=on_stop,
               reward_model=tiny_run if potential is None else None)
    previous = signal.getsignal(signal.SIGINT)
    res = run_deploy(cfg, policy=policy, potential=potential, stop=stop, on_step=on_step, robot=robot)
    assert signal.getsignal(signal.SIGINT) is previous  # handlers restored
    assert res.stop_reason == expected
    assert not robot.is_connected  # disconnected cleanly
    assert len(res.episodes) == 2 and res.episodes[0].stop_reason is None and res.episodes[1].stop_reason == expected
    assert res.episodes[0].saved and res.episodes[1].saved == (on_stop == "save")
    # the first episode, saved before the fault, still opens; the one in flight is kept or not as asked
    assert _episodes_on_disk(cfg.record) == (2 if on_stop == "save" else 1)
    if fault == "policy_nan":  # nothing after the NaN reached the arm except the hold command
        assert robot.actions_sent == FAULT_AT + 1
    if on_stop == "save":
        meta = json.loads((cfg.record / "deploy_summary.json").read_text())
        assert meta["per_episode"][1]["stop_reason"] == expected


def test_dropped_frames_do_not_stop_the_run(state_policy, tmp_path):
    cams = {c: MujocoCameraConfig(camera=c, drop_prob=0.3, seed=i) for i, c in enumerate(CAMS)}
    robot = make_robot(_robot_cfg(tmp_path, cameras=cams))
    res = run_deploy(_cfg(tmp_path, state_policy, episodes=1, record=None), robot=robot)
    assert res.stop_reason is None and res.episodes[0].steps > 0
    assert sum(c.dropped_frames for c in robot.cameras.values()) > 0


def test_dry_run_never_sends(state_policy, tmp_path, monkeypatch):
    robot = make_robot(_robot_cfg(tmp_path))
    calls = []
    monkeypatch.setattr(robot, "send_action", lambda action: calls.append(action))
    seen = []
    res = run_deploy(_cfg(tmp_path, state_policy, episodes=1, record=None, dry_run=True), robot=robot,
                     on_step=lambda t, info: seen.append(info["action"]))
    assert calls == [] and res.sent_actions == 0
    assert len(seen) == STEPS and res.safety["actions"] == STEPS  # actions were computed and filtered
    with pytest.raises(ValueError, match="--record with --dry-run"):
        _cfg(tmp_path, state_policy, dry_run=True)


def test_incompatible_policy_and_robot_fail_before_moving(state_policy, image_policy, tmp_path):
    only_front = {"front": MujocoCameraConfig(camera="front")}
    robot = make_robot(MujocoSO101Config(task="push", cameras=only_front, calibration_dir=tmp_path / "c"))
    with pytest.raises(ValueError, match=r"camera\(s\) \['wrist'\]"):
        run_deploy(_cfg(tmp_path, image_policy, record=None), robot=robot)
    robot = make_robot(MujocoSO101Config(task="push", calibration_dir=tmp_path / "c"))  # no privileged state
    with pytest.raises(ValueError, match="state-based policy"):
        run_deploy(_cfg(tmp_path, state_policy, record=None), robot=robot)
    assert not robot.is_connected


def test_image_policy_deploys_without_privileged_state(image_policy, tmp_path):
    robot = make_robot(MujocoSO101Config(task="push", calibration_dir=tmp_path / "c"))
    res = run_deploy(_cfg(tmp_path, image_policy, episodes=1, episode_time_s=0.25, record=tmp_path / "img"),
                     robot=robot)
    assert res.stop_reason is None and res.episodes[0].steps == 5
    ds = open_dataset(tmp_path / "img", video_backend="pyav")
    assert "observation.environment_state" not in ds.features and ds.meta.total_frames == 5


def test_wrong_port_is_one_clear_message(state_policy, tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "robo_reward.cli", "deploy", "--robot.type=so101_follower",
                           "--robot.port=/dev/does-not-exist", f"--policy={state_policy}", "--episodes=3",
                           f"--record={tmp_path / 'rec'}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and time.perf_counter() - t0 < 60
    assert "/dev/does-not-exist" in proc.stderr and "lerobot-find-port" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "rec").exists()


def test_real_driver_connection_error_is_translated(tmp_path):
    from lerobot.robots.so_follower import SO101FollowerConfig

    robot = make_robot(SO101FollowerConfig(port="/dev/null", calibration_dir=tmp_path / "c"))
    with pytest.raises(RobotConnectionError, match="lerobot-find-port"):
        connect_robot(robot)  # LeRobot's Feetech bus fails to open it; one message says what to do


class _ExpertThroughTheLoop:
    """The scripted expert as a deploy-loop policy (it peeks at the simulated arm's scene), to
    produce successful rollouts through the real loop."""

    cameras, task, needs_state = (), "push", False

    def __init__(self, robot):
        self.robot = robot

    def reset(self):
        from sim.experts import make_expert

        self.expert = make_expert("push", seed=0)

    def act(self, obs, env=None):
        return self.expert.act(self.robot.env)


def test_successful_rollouts_are_ready_for_rl_replay(tmp_path):
    from robo_reward.rl.demos import load_demo_transitions
    from robo_reward.rl.shaping import Shaper

    robot = make_robot(_robot_cfg(tmp_path))
    cfg = _cfg(tmp_path, tmp_path / "unused", episodes=2, fps=60, episode_time_s=5.0)  # the policy is passed in
    res = run_deploy(cfg, policy=_ExpertThroughTheLoop(robot), robot=robot)
    assert res.stop_reason is None
    assert [e.success for e in res.episodes] == [True, True]  # the expert succeeds through the loop too
    ds = open_dataset(tmp_path / "rec", video_backend="pyav")
    # each successful episode ends on a frame that shows the success (a hold frame)
    assert ds.meta.total_frames == sum(e.steps + 1 for e in res.episodes)
    demos = load_demo_transitions(tmp_path / "rec", "push", Shaper("pbrs", gamma=0.98), "dense")
    assert demos.episodes == 2 and demos.successes == 2 and demos.dones.sum() == 2  # success terminates


def test_deploy_record_refuses_a_demo_dataset_unless_asked_and_sets_stale_progress_aside(
        tiny_dataset, state_policy, tmp_path, caplog):
    import shutil

    from robo_reward.data.lerobot_io import DatasetError

    demos = tmp_path / "demos"
    shutil.copytree(tiny_dataset, demos)
    (demos / "sarm_progress.parquet").write_bytes(b"progress of the demos")
    n = _episodes_on_disk(demos)
    with pytest.raises(DatasetError, match=r"--record=.*demos: holds demonstrations \(quality clean\), not rollouts;"
                                           r".* pass --append-to-demos"):
        run_deploy(_cfg(tmp_path, state_policy, episodes=1, record=demos))
    assert _episodes_on_disk(demos) == n
    run_deploy(_cfg(tmp_path, state_policy, episodes=1, record=demos, append_to_demos=True))
    assert _episodes_on_disk(demos) == n + 1
    assert not (demos / "sarm_progress.parquet").exists(), "a progress file that misses the new episode is not kept"
    assert (demos / "sarm_progress.parquet.stale").read_bytes() == b"progress of the demos"
    assert "Re-run `robo-reward annotate-progress --dataset=" in caplog.text
