"""ManiSkill 3 adapters: seeded resets, info fields, the experts, a collect round trip, and the
message a user gets when SAPIEN finds no Vulkan device. Runs on the CPU (physx_cpu, lavapipe)."""

import os
import subprocess
import sys

import numpy as np
import pytest

if os.environ.get("ROBO_REWARD_MANISKILL") == "0":  # setup.sh was told to skip the extra
    pytest.skip("ManiSkill extra not installed (ROBO_REWARD_MANISKILL=0)", allow_module_level=True)

from sim.maniskill import ManiSkillUnavailable, task_names  # noqa: E402
from sim.tasks import make_env  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # ManiSkill on numpy 2

TASKS = task_names()
INFO_KEYS = {"success", "is_success", "stage", "stage_name", "progress", "normalized_dense_reward"}


def action(env, dx=0.0, dy=0.0, dz=0.0, gripper=1.0) -> np.ndarray:
    """An ee_delta action for ``env`` (PegInsertionSide adds dyaw, left at 0 here)."""
    a = np.zeros(len(env.action_names))
    a[:3], a[-1] = (dx, dy, dz), gripper
    return a


@pytest.fixture(scope="module", params=TASKS)
def state_env(request):
    env = make_env(request.param, cameras=())
    yield env
    env.close()


def test_seeded_reset_and_info_fields(state_env):
    a, info = state_env.reset(seed=3)
    b, _ = state_env.reset(seed=3)
    c, _ = state_env.reset(seed=4)
    np.testing.assert_array_equal(a["environment_state"], b["environment_state"])
    assert not np.allclose(a["environment_state"], c["environment_state"])
    assert INFO_KEYS <= set(info) and info["stage"] == 0 and info["stage_name"] == state_env.stages[0]
    obs, r, term, trunc, info = state_env.step(action(state_env, dx=0.5, dz=-0.5))
    assert INFO_KEYS <= set(info) and 0.0 <= info["progress"] <= 1.0 and 0.0 <= info["normalized_dense_reward"] <= 1.0
    assert obs["agent_pos"].shape == state_env.observation_space["agent_pos"].shape
    assert obs["environment_state"].shape == (state_env.env_state_dim,)


def test_bad_actions_are_refused(state_env):
    state_env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        state_env.step(action(state_env, dx=np.nan))
    with pytest.raises(ValueError, match=r"outside \[-1, 1\]"):
        state_env.step(action(state_env, dx=2.0))
    with pytest.raises(ValueError, match="shape"):
        state_env.step(np.zeros(7))


def test_ee_delta_moves_the_tcp_like_the_mujoco_tasks():
    env = make_env("maniskill/PickCube-v1", cameras=())
    env.reset(seed=0)
    p0 = env.tcp_pos
    for _ in range(5):
        env.step(np.array([1.0, 0.0, 0.0, 1.0]))
    moved = env.tcp_pos - p0
    env.close()
    # 2 cm of target per unit and step, as in sim/tasks (relative to the measured TCP, so the arm's
    # PD lag makes it less): five full steps move the TCP 3-10 cm along +x and nowhere else
    assert 0.03 < moved[0] <= 0.10 + 1e-3 and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01


def test_cameras_are_named_like_the_mujoco_tasks():
    env = make_env("maniskill/PickCube-v1", cameras=("front", "side", "wrist"), width=64, height=64)
    obs, _ = env.reset(seed=1)
    env.close()
    assert set(obs["pixels"]) == {"front", "side", "wrist"}
    for img in obs["pixels"].values():
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and img.std() > 3  # a real image
    assert not np.array_equal(obs["pixels"]["front"], obs["pixels"]["wrist"])


def test_peg_task_turns_the_gripper_and_keeps_it_pointing_down():
    env = make_env("maniskill/PegInsertionSide-v1", cameras=())
    assert env.action_names == ("dx", "dy", "dz", "dyaw", "gripper") and env.action_space.shape == (5,)
    env.reset(seed=0)
    yaw0 = env.tcp_yaw
    for _ in range(5):
        env.step(np.array([0.0, 0.0, 0.0, 1.0, 1.0]))
    turned = env.tcp_yaw - yaw0
    for _ in range(10):  # reach out and down: pd_ee_delta_pose alone lets the hand droop here
        env.step(np.array([1.0, 0.0, -0.5, 0.0, 1.0]))
    z_axis = env.unwrapped_ms.agent.tcp.pose.to_transformation_matrix()[0, :3, 2].numpy()
    with pytest.raises(ValueError, match=r"expected \(5,\) \(ee_delta: dx, dy, dz, dyaw, gripper\)"):
        env.step(np.zeros(4))
    env.close()
    assert 0.1 < turned <= 0.5 + 1e-3  # counter-clockwise, at most 0.1 rad per unit and step
    assert z_axis[2] < -0.998  # within ~3.5 degrees of straight down


@pytest.mark.parametrize("task", ["maniskill/PickCube-v1", "maniskill/StackCube-v1",
                                  "maniskill/PegInsertionSide-v1"])
def test_clean_expert_succeeds(task):
    from sim.experts import make_expert

    env = make_env(task, cameras=())
    wins = 0
    for seed in range(2):
        env.reset(seed=seed)
        expert = make_expert(task, seed=seed)
        stages = []
        for _ in range(env.horizon):
            _, _, term, trunc, info = env.step(expert.act(env))
            stages.append(info["stage"])
            if term or trunc:
                break
        wins += info["success"]
        assert max(stages) == len(env.stages) - 1  # it went through every stage
    env.close()
    assert wins == 2


def test_collect_round_trip(tmp_path):
    from robo_reward.data.lerobot_io import load_episode_meta, open_dataset
    from sim.collect import collect

    out = tmp_path / "ms"
    r = collect("maniskill/PickCube-v1", 2, "clean", out, seed=0, cameras=("front", "wrist"), progress=False)
    assert r.added == 2 and r.success_rate == 1.0
    ds = open_dataset(out, video_backend="pyav")
    assert ds.meta.total_episodes == 2 and ds.meta.robot_type == "panda_wristcam"
    assert ds.features["observation.state"]["shape"] == (9,)
    item = ds[5]
    assert item["observation.images.front"].shape == (3, 64, 64)
    metas = load_episode_meta(out)
    assert all(m.subtask_names == ["reach", "grasp", "move"] and m.success for m in metas.values())


def test_collect_peg_insertion_records_the_yaw_action(tmp_path):
    from robo_reward.data.lerobot_io import load_episode_meta, open_dataset
    from sim.collect import collect

    out = tmp_path / "peg"
    r = collect("maniskill/PegInsertionSide-v1", 1, "clean", out, seed=0, cameras=("wrist",), progress=False)
    assert r.added == 1 and r.success_rate == 1.0
    ds = open_dataset(out, video_backend="pyav")
    feat = ds.features["action.ee_delta"]
    assert feat["shape"] == (5,) and feat["names"] == ["dx", "dy", "dz", "dyaw", "gripper"]
    yaw = np.stack([ds[i]["action.ee_delta"].numpy() for i in range(0, len(ds), 5)])[:, 3]
    assert np.abs(yaw).max() > 0.1  # the expert turned the gripper onto the peg and the hole
    meta = load_episode_meta(out)[0]
    assert meta.subtask_names == ["reach", "grasp", "align", "insert"] and meta.success


def test_bc_trains_on_the_5d_peg_insertion_actions(tmp_path):
    """The action layout comes from the dataset: PegInsertionSide's (dx, dy, dz, dyaw, gripper)."""
    from robo_reward.policies import load_policy
    from robo_reward.policies.train_bc import TrainBCConfig, train_bc
    from robo_reward.rl.observation import RLObservation
    from sim.collect import collect

    out, task = tmp_path / "peg", "maniskill/PegInsertionSide-v1"
    collect(task, 1, "clean", out, seed=0, cameras=("wrist",), progress=False)
    r = train_bc(TrainBCConfig(dataset=out, out=tmp_path / "bc", task=task, steps=30, chunk=4, n_action_steps=2,
                               hidden="32", wandb=False, progress_bar=False))
    assert r["frames"] > 20
    policy = load_policy(tmp_path / "bc")
    assert policy.meta["action_dim"] == 5 and policy.policy.action_dim == 5
    env = RLObservation(make_env(task, cameras=()))
    obs, _ = env.reset(seed=0)
    a = policy.act(obs, env)
    assert a.shape == (5,) and env.action_space.contains(np.clip(a, -1, 1).astype(np.float32))
    env.close()


def test_missing_vulkan_says_what_to_install():
    code = ("from sim.maniskill import require_maniskill, ManiSkillUnavailable\n"
            "try:\n    require_maniskill()\nexcept ManiSkillUnavailable as e:\n    print('MSG', e)\n")
    env = {**os.environ, "VK_ICD_FILENAMES": "/nonexistent/icd.json", "VK_DRIVER_FILES": "/nonexistent/icd.json"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "MSG" in p.stdout, p.stdout + p.stderr
    assert "mesa-vulkan-drivers" in p.stdout and "bookworm-backports" in p.stdout
    assert issubclass(ManiSkillUnavailable, ImportError)


def test_rl_accepts_maniskill_tasks(tmp_path):
    import json

    from robo_reward.cli import main
    from robo_reward.rl.observation import RLObservation

    env = RLObservation(make_env("maniskill/PickCube-v1", cameras=()))
    obs, _ = env.reset(seed=0)
    # Panda: 7 arm joints + 2 fingers, TCP, cube and goal, cube - TCP
    assert obs["state"].shape == (9 + 3 + 6 + 3,) and np.all(np.isfinite(obs["state"]))
    env.close()
    out = tmp_path / "rl"
    assert main(["rl", "--task=maniskill/PickCube-v1", "--reward=dense", "--steps=60", "--num-envs=1",
                 "--learning-starts=20", "--eval-every=60", "--eval-episodes=1", "--max-episode-steps=30",
                 f"--out={out}", "--wandb=false", "--progress-bar=false"]) == 0
    hist = json.loads((out / "eval.json").read_text())
    assert hist[-1]["env_steps"] >= 60 and (out / "policy.zip").is_file()


def test_batched_env_matches_the_single_env_and_resets_in_place():
    from robo_reward.rl.observation import RLObservation
    from sim.maniskill.tasks import MSConfig
    from sim.maniskill.vec import ManiSkillVecEnv

    venv = ManiSkillVecEnv("maniskill/PickCube-v1", 1, MSConfig(cameras=("wrist",), max_episode_steps=4), seed=3)
    env = RLObservation(make_env("maniskill/PickCube-v1", cameras=("wrist",)))
    batched, (single, _) = venv.reset(), env.reset(seed=3)
    assert set(batched) == set(single) == {"state", "proprio", "agent_pos", "pixels.wrist"}
    for k in single:
        np.testing.assert_allclose(batched[k][0], single[k], atol=1e-5)
    a = np.array([[0.5, 0.0, -0.5, 1.0]], np.float32)
    for t in range(4):
        venv.step_async(a)
        obs, reward, done, infos = venv.step_wait()
        single, r, *_ = env.step(a[0])
        if t < 3:  # the same physics, step for step
            np.testing.assert_allclose(obs["state"][0], single["state"], atol=1e-4)
            assert not done[0] and reward[0] == r
    # at the time limit: truncated, reset in place, the last observation kept for bootstrapping
    assert done[0] and infos[0]["TimeLimit.truncated"]
    np.testing.assert_allclose(infos[0]["terminal_observation"]["state"], single["state"], atol=1e-4)
    assert np.abs(obs["state"][0] - single["state"]).max() > 1e-3  # a fresh episode
    with pytest.raises(ValueError, match=r"actions: shape \(1, 5\)"):
        venv.step_async(np.zeros((1, 5)))
    venv.close()
    env.close()
    with pytest.raises(ValueError, match="num_envs: 2 with sim_backend=physx_cpu"):
        ManiSkillVecEnv("maniskill/PickCube-v1", 2, MSConfig(cameras=(), sim_backend="physx_cpu"))


def test_rl_runs_on_the_batched_maniskill_env(tmp_path):
    import json

    from robo_reward.cli import main
    from robo_reward.rl.envs import make_vec_env
    from robo_reward.rl.potentials import GroundTruthPotential
    from robo_reward.rl.shaping import Shaper

    out = tmp_path / "rl"
    assert main(["rl", "--task=maniskill/PickCube-v1", "--reward=sparse", "--vectorized=true", "--steps=60",
                 "--num-envs=1", "--learning-starts=20", "--eval-every=60", "--eval-episodes=1",
                 "--max-episode-steps=30", f"--out={out}", "--wandb=false", "--progress-bar=false"]) == 0
    hist = json.loads((out / "eval.json").read_text())
    assert hist[-1]["env_steps"] >= 60 and hist[-1]["online_episodes"] >= 2 and (out / "policy.zip").is_file()
    with pytest.raises(ValueError, match="--reward=dense on the batched ManiSkill env"):
        make_vec_env("maniskill/PickCube-v1", 1, GroundTruthPotential(), Shaper("pbrs", 0.98), 0, vectorized="true")
    from robo_reward.rl.envs import use_batched_env

    assert use_batched_env("maniskill/PickCube-v1", "true", needs_progress=True)
    assert not use_batched_env("maniskill/PickCube-v1", "false")
    assert not use_batched_env("push", "true")  # MuJoCo tasks always run as single envs
    assert not use_batched_env("maniskill/PickCube-v1", "auto", needs_progress=True)  # dense: per env
