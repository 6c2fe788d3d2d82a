import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim.experts import make_expert
from sim.tasks import TASKS, make_env

TASK_NAMES = sorted(TASKS)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_check_env(task):
    env = make_env(task)
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("task", TASK_NAMES)
@pytest.mark.parametrize("action_space", ["ee_delta", "joint_pos"])
def test_seeded_reset_is_deterministic(task, action_space):
    env = make_env(task, action_space=action_space)
    trajs = []
    for _ in range(2):
        obs, _ = env.reset(seed=123)
        env.action_space.seed(7)
        seq = [obs["environment_state"].copy(), obs["pixels"]["front"].copy()]
        for _ in range(5):
            obs, *_ = env.step(env.action_space.sample())
            seq.append(obs["agent_pos"].copy())
        trajs.append(seq)
    for a, b in zip(*trajs, strict=True):
        np.testing.assert_array_equal(a, b)
    other, _ = env.reset(seed=124)
    assert not np.allclose(other["environment_state"], trajs[0][0]), "different seeds must place objects differently"
    env.close()


@pytest.mark.parametrize("task", TASK_NAMES)
def test_nan_and_out_of_space_actions_raise(task):
    env = make_env(task, cameras=())
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"non-finite values \[nan"):
        env.step(np.array([np.nan, 0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"outside the ee_delta space"):
        env.step(np.array([0.0, 2.5, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        env.step(np.zeros(3))


def test_observation_has_three_cameras_at_configured_size():
    env = make_env("push", width=48, height=32)
    obs, info = env.reset(seed=0)
    assert set(obs["pixels"]) == {"front", "side", "wrist"}
    assert obs["pixels"]["wrist"].shape == (32, 48, 3)
    assert obs["pixels"]["front"].std() > 5, "the rendered image should not be blank"
    assert set(info) >= {"success", "stage", "stage_name", "progress"}
    env.close()


def test_bad_config_names_field():
    with pytest.raises(ValueError, match="cameras: unknown camera"):
        make_env("push", cameras=("top",))
    with pytest.raises(ValueError, match="task: unknown task 'fold'"):
        make_env("fold")


@pytest.mark.parametrize("task", TASK_NAMES)
def test_clean_expert_succeeds_and_progress_rises(task):
    env = make_env(task, cameras=())
    for seed in (0, 1, 2):
        env.reset(seed=seed)
        expert = make_expert(task, seed=seed)
        progress = []
        for _ in range(env.horizon):
            _, reward, terminated, truncated, info = env.step(expert.act(env))
            progress.append(info["progress"])
            if terminated or truncated:
                break
        assert info["success"], f"{task} seed {seed}: clean expert failed at stage {info['stage_name']}"
        assert reward == 1.0 and progress[-1] == 1.0
        assert progress[-1] > progress[0]
    env.close()


def test_stopping_short_expert_fails():
    from sim.experts import ExpertQuality

    env = make_env("pick_place", cameras=())
    env.reset(seed=0)
    expert = make_expert("pick_place", ExpertQuality(stop_short_stage=2), seed=0)
    for _ in range(env.horizon):
        *_, terminated, truncated, info = env.step(expert.act(env))
        if terminated or truncated or expert.done:
            break
    assert expert.gave_up and not info["success"]
    assert expert.stage == 1, "a demo that stops before lifting must not be labelled as lifting"


def test_hesitation_is_labelled_with_the_phase_it_follows():
    """A hesitating demo holds still at the end of a phase, like one that stops short, so its
    pause frames carry that phase's stage: the stage only advances once the next motion starts,
    and the jaws keep the finished phase's setting while it waits."""
    from sim.experts import ExpertQuality

    env = make_env("pick_place", cameras=())
    env.reset(seed=3)
    expert = make_expert("pick_place", ExpertQuality(hesitation_prob=1.0), seed=3)
    stages, paused, grips = [], [], []
    for _ in range(env.horizon):
        a = expert.act(env)
        stages.append(expert.stage)
        paused.append(expert._pausing)
        grips.append(a[-1])
        *_, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            break
    stages, paused = np.array(stages), np.array(paused)
    assert info["success"] and paused.sum() >= 20, "hesitation_prob=1 should pause at every phase change"
    assert np.all(np.diff(stages) >= 0), f"stage labels went back: {stages.tolist()}"
    starts = np.flatnonzero(paused & ~np.r_[False, paused[:-1]])
    for s in starts:  # a pause continues the stage and the jaws of the step before it
        assert stages[s] == stages[s - 1] and grips[s] == grips[s - 1], f"pause at step {s}"
    # every stage change happens on a moving (not paused) step
    changes = np.flatnonzero(np.diff(stages) > 0) + 1
    assert not paused[changes].any()


def test_wandering_expert_starts_off_path_in_no_stage_then_succeeds():
    """Recovery data: a demo that first wanders at random has those frames in no stage (-1, so
    they lie before the first annotated segment) and still finishes the task from wherever the
    arm ended up."""
    from sim.experts import ExpertQuality
    from sim.experts.base import Quality, sample_quality

    env = make_env("push", cameras=())
    env.reset(seed=4)
    tcp0 = env.tcp_pos.copy()
    expert = make_expert("push", ExpertQuality(wander_steps=20), seed=4)
    stages = []
    for t in range(env.horizon):
        a = expert.act(env)
        stages.append(expert.stage)
        *_, terminated, truncated, info = env.step(a)
        if t == 19:
            assert np.linalg.norm(env.tcp_pos - tcp0) > 0.01, "the wander should move the arm"
        if terminated or truncated:
            break
    assert stages[:20] == [-1] * 20 and min(stages[20:]) >= 0, stages[:25]
    assert info["success"]
    assert expert.quality.label == Quality.DEGRADED
    rng = np.random.default_rng(0)
    draws = [sample_quality("recovery", rng, 2).wander_steps for _ in range(200)]
    assert 60 < sum(d > 0 for d in draws) < 140 and all(d == 0 or 10 <= d <= 30 for d in draws)


def test_mid_task_wander_keeps_the_stage_and_still_succeeds():
    """Off-path data: a demo that wanders partway through its last stage (the block half pushed,
    the arm elsewhere) keeps that stage's label while wandering, moves the arm off the push line,
    and still finishes the task."""
    from sim.experts import ExpertQuality
    from sim.experts.base import Quality, sample_quality

    env = make_env("push", cameras=())
    env.reset(seed=1)
    expert = make_expert("push", ExpertQuality(mid_wander_steps=15), seed=1)
    stages, wandering, off_line = [], [], []
    for _ in range(env.horizon):
        a = expert.act(env)
        stages.append(expert.stage)
        wandering.append(expert._mid_wandering)
        *_, terminated, truncated, info = env.step(a)
        off_line.append(not env._behind_block(env.body_pos(env.block)))
        if terminated or truncated:
            break
    wandering = np.array(wandering)
    assert wandering.sum() == 15, "the mid-task wander should run its 15 steps"
    first = int(np.flatnonzero(wandering)[0])
    assert stages[first - 1] == 1 and all(stages[t] == 1 for t in np.flatnonzero(wandering))
    assert min(stages) >= 0  # never in 'no stage'
    assert np.array(off_line)[wandering].any(), "the wander should take the arm off the push line"
    assert info["success"] and expert.quality.label == Quality.DEGRADED
    rng = np.random.default_rng(0)
    draws = [sample_quality("offpath", rng, 2) for _ in range(200)]
    mid = [d.mid_wander_steps for d in draws]
    assert 60 < sum(m > 0 for m in mid) < 140 and all(m == 0 or 5 <= m <= 20 for m in mid)
    assert 60 < sum(d.wander_steps > 0 for d in draws) < 140


def test_push_progress_does_not_fall_back_when_contact_flickers():
    """The ground-truth progress is the dense baseline's potential: a push that loses contact
    for a step keeps its progress (it used to drop from the push stage to the reach stage,
    0.3-0.8 per step, several times an episode)."""
    env = make_env("push", cameras=())
    for seed in (1, 2, 3):
        env.reset(seed=seed)
        expert = make_expert("push", seed=seed)
        progress = []
        for _ in range(env.horizon):
            *_, terminated, truncated, info = env.step(expert.act(env))
            progress.append(info["progress"])
            if terminated or truncated:
                break
        assert info["success"]
        drops = -np.minimum(np.diff(progress), 0.0)
        assert drops.max() < 0.15 and drops.sum() < 0.4, f"seed {seed}: progress {np.round(progress, 2).tolist()}"


def test_push_progress_ignores_touching_the_block_from_the_front():
    """Only a push from behind the block (on its line to the goal) counts as the push stage:
    jaws that reach round and touch the block's goal side stay in the reach stage."""
    env = make_env("push", cameras=())
    env.reset(seed=4)
    block, goal = env.body_pos(env.block), env.goal_pos
    u = (goal[:2] - block[:2]) / np.linalg.norm(goal[:2] - block[:2])
    front = np.array([*(block[:2] + 0.08 * u), 0.025])
    touched, stages = False, []
    # above the goal side, down to table height, then back into the block (away from the goal)
    for target in (front + [0, 0, 0.08], front, np.array([*(block[:2] + 0.01 * u), 0.025])):
        for _ in range(40):
            err = target - env.tcp_pos
            *_, info = env.step(np.append(np.clip(err / env.config.ee_step, -1, 1), 0.0).astype(np.float32))
            touched |= env.touching("gripper", env.block) or env.touching("moving_jaw_so101_v1", env.block)
            stages.append(info["stage"])
    assert touched, "the scripted jaws never reached the block"
    assert max(stages) == 0 and info["progress"] < 0.5


def test_push_progress_meets_the_push_stage_without_a_jump():
    """Entering the behind-the-block zone from the side: the reach stage's progress has reached
    its end there, so Phi steps by a few hundredths (it stepped by up to 0.4 when the reach
    stage aimed at the pre-push point alone)."""
    env = make_env("push", cameras=())
    env.reset(seed=4)
    block, goal = env.body_pos(env.block), env.goal_pos
    u = (goal[:2] - block[:2]) / np.linalg.norm(goal[:2] - block[:2])
    side = np.array([-u[1], u[0]])
    beside = np.array([*(block[:2] - 0.06 * u - 0.07 * side), 0.025])
    progress, stages = [], []
    # down beside the block, then sideways onto its line to the goal, just behind it
    for target in (beside + [0, 0, 0.06], beside, np.array([*(block[:2] - 0.06 * u), 0.025])):
        for _ in range(30):
            err = target - env.tcp_pos
            *_, info = env.step(np.append(np.clip(err / env.config.ee_step, -1, 1), 0.0).astype(np.float32))
            progress.append(info["progress"])
            stages.append(info["stage"])
    change = np.flatnonzero(np.diff(stages) > 0)
    assert len(change) == 1, f"stages {stages}, progress {np.round(progress, 3).tolist()}"
    assert progress[change[0]] > 0.4
    step = abs(progress[change[0] + 1] - progress[change[0]])
    assert step < 0.08, f"Phi stepped by {step:.3f} entering the push stage"


def test_pressing_down_at_the_floor_does_not_jam_the_jaws_into_the_table():
    """The TCP target's floor keeps the jaws off the table: an RL policy steering with its z action
    pushed down once jammed the jaw pad into the table, and friction held every sideways move for
    the rest of the episode. Press down while moving in random directions: the gripper must not
    touch the floor (the old 8 mm floor: 24 contact steps of these 90)."""
    env = make_env("push", cameras=())
    base = env.unwrapped
    contacts = 0
    for seed in (1, 2, 3):
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        for _ in range(12):
            env.step(np.array([0.0, 0.0, -1.0, -0.4]))
        for _ in range(30):
            d = rng.uniform(-1, 1, 2)
            env.step(np.array([*(d / np.linalg.norm(d)), -1.0, -0.4]))
            contacts += base.gripper_on_table()
        assert base.tcp_pos[2] >= 0.011  # the floor of the TCP target
    assert contacts <= 3, f"{contacts} of 90 steps pressed the gripper into the table"


def test_fast_push_expert_skips_the_hover_and_the_mix_draws_it():
    """``offpath_fast`` demos move the way RL policies do: a ``fast`` push leaves out the hover
    above the pre-push point (the TCP stays low) and still pushes the block home on most seeds."""
    from sim.experts.base import ExpertQuality, Quality, sample_quality

    env = make_env("push", cameras=())
    top = {False: [], True: []}
    wins = {False: 0, True: 0}
    for seed in range(8):
        for fast in (False, True):
            env.reset(seed=seed)
            expert = make_expert("push", ExpertQuality(fast=fast), seed=seed)
            z = []
            for _ in range(env.horizon):
                *_, terminated, truncated, info = env.step(expert.act(env))
                z.append(env.tcp_pos[2])
                if terminated or truncated:
                    break
            top[fast].append(max(z[3:]))
            wins[fast] += int(info["success"])
            if fast:
                assert "above" not in [p.name for p in expert.plan]
                assert expert.quality.label == Quality.DEGRADED
    assert all(f < c - 0.01 for f, c in zip(top[True], top[False], strict=True)), (top[True], top[False])
    assert wins[False] >= 7 and wins[True] >= 5, wins
    rng = np.random.default_rng(0)
    draws = [sample_quality("offpath_fast", rng, 2) for _ in range(200)]
    assert 60 < sum(d.fast for d in draws) < 140
    assert 60 < sum(d.mid_wander_steps > 0 for d in draws) < 140
