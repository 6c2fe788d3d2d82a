"""Does a policy do as well through the deploy loop (LeRobot Robot API, safety filter, IK from
measured joints, fixed-rate loop, recording) as in ``eval-policy``? Same policy, same scene seeds.

    python benchmarks/deploy_vs_eval.py --policy outputs/bench_rabc/rabc_drop/seed0 \
        --reward-model outputs/reward/pp_default --episodes 30

Runs ``robo-reward deploy --robot.type=mujoco_so101`` for ``--episodes`` episodes (seeds 10000..)
and ``eval-policy`` on the same seeds, and reports both success rates with 95% Wilson intervals,
a two-proportion z-test, and how many episodes had the same outcome. Writes
benchmarks/results/deploy_vs_eval.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path

from robo_reward.stats import wilson_interval

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SVT_LOG", "1")

RESULTS = Path(__file__).resolve().parent / "results"


def wilson(k: int, n: int) -> list[float]:
    return list(wilson_interval(k, n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", type=Path, required=True)
    ap.add_argument("--reward-model", type=Path, default=None)
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--seed", type=int, default=10_000)
    ap.add_argument("--overrun-factor", type=float, default=5.0,
                    help="the deploy watchdog's limit (this measures success, not timing: be lenient)")
    ap.add_argument("--out", type=Path, default=None, help="default: results/deploy_vs_eval[_<policy dir>].json")
    args = ap.parse_args()

    from real.deploy import DeployConfig, run_deploy
    from real.robots.mujoco_so101 import MujocoSO101Config
    from robo_reward.policies.registry import load_policy
    from robo_reward.rl.evaluate import evaluate_policy

    args.out = args.out or RESULTS / "deploy_vs_eval.json"

    work = Path(tempfile.mkdtemp(prefix="deploy_vs_eval_"))
    policy = load_policy(args.policy)
    # object positions only for a state policy; an image policy runs on exactly so101_follower's features
    robot = MujocoSO101Config(task=policy.task, privileged_state=policy.needs_state, calibration_dir=work / "calib")
    cfg = DeployConfig(robot=robot,
                       policy=args.policy, reward_model=args.reward_model, episodes=args.episodes, seed=args.seed,
                       record=work / "rollouts", keyboard=False, display=False, overrun_factor=args.overrun_factor)
    dep = run_deploy(cfg)
    if dep.stop_reason is not None:
        raise SystemExit(f"deploy stopped early ({dep.stop_reason}) after {len(dep.episodes)} episodes; on a busy "
                         "machine raise --overrun-factor")
    ev = evaluate_policy(load_policy(args.policy), policy.task, len(dep.episodes), seed=args.seed)
    d = [bool(e.success) for e in dep.episodes]
    e = [r["success"] for r in ev["per_episode"]]
    n = len(d)
    kd, ke = sum(d), sum(e)
    pooled = (kd + ke) / (2 * n)
    se = math.sqrt(max(pooled * (1 - pooled) * 2 / n, 1e-12))
    z = (kd / n - ke / n) / se
    out = {
        "policy": str(args.policy), "policy_obs": "state" if policy.needs_state else "images", "task": policy.task, "episodes": n, "seeds": [args.seed, args.seed + n - 1],
        "deploy": {"success_rate": kd / n, "successes": kd, "wilson95": wilson(kd, n),
                   "mean_steps": sum(x.steps for x in dep.episodes) / n, "safety": dep.safety,
                   "period_ms": dep.summary()["period_ms"]},
        "eval_policy": {"success_rate": ke / n, "successes": ke, "wilson95": wilson(ke, n),
                        "mean_steps": ev["mean_length"]},
        "two_proportion_z": z,
        "within_sampling_error": abs(z) < 1.96,
        "same_outcome_episodes": sum(a == b for a, b in zip(d, e, strict=True)),
        "recorded_dataset": str(work / "rollouts"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps({k: out[k] for k in ("deploy", "eval_policy", "two_proportion_z", "same_outcome_episodes")},
                     indent=1))


if __name__ == "__main__":
    main()
