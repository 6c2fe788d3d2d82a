"""The deploy loop's real control period and its jitter on the MuJoCo-backed SO-101, at 10 Hz and
30 Hz, with and without the reward model, measured side by side in one process.

    python benchmarks/deploy_latency.py --policy outputs/bench_rabc/rabc_drop/seed0 \
        --reward-model outputs/reward/pp_default --seconds 10

Each configuration runs one episode of ``--seconds`` on ``mujoco_so101`` (3 cameras at 64x64,
privileged state, success does not end the episode) through ``real.deploy.run_deploy``, the same
code as ``robo-reward deploy``, with the safety filter, IK and recording to a LeRobotDataset.
Reported per configuration:
- ``period_ms`` p50/p99/max: time between the starts of consecutive control steps;
- ``jitter_ms`` p50/p99: |period - target period|;
- ``step_time_ms`` p50/p99: the work inside one step (observe, reward model, policy, IK,
  safety filter, send, record), i.e. the headroom left in the period;
- ``overruns``: steps whose work exceeded the period.
Writes benchmarks/results/deploy_latency.json and a plot of the period distributions.

Without ``--policy``/``--reward-model`` (a fresh clone) it first collects 6 pick_place demos and
trains a small BC policy and reward model on them: latency does not depend on their quality.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SVT_LOG", "1")

RESULTS = Path(__file__).resolve().parent / "results"


def build_defaults(work: Path) -> tuple[Path, Path]:
    from robo_reward.policies.train_bc import TrainBCConfig, train_bc
    from robo_reward.reward.config import RewardModelConfig
    from robo_reward.reward.train import TrainRewardConfig, train_reward
    from sim.collect import collect

    data = work / "demos"
    collect("pick_place", 6, "clean", data, seed=1)
    policy, rm = work / "policy", work / "reward"
    train_bc(TrainBCConfig(dataset=data, out=policy, steps=200, wandb=False))
    train_reward(TrainRewardConfig(dataset=data, out=rm, steps=100, batch_size=8, wandb="disabled",
                                   model=RewardModelConfig()))
    return policy, rm


def measure(policy: Path, reward_model: Path | None, fps: int, seconds: float, record: Path) -> dict:
    from real.deploy import DeployConfig, run_deploy
    from real.robots.mujoco_so101 import MujocoSO101Config

    cfg = DeployConfig(robot=MujocoSO101Config(task="pick_place", privileged_state=True,
                                               calibration_dir=record.parent / "calib"),
                       policy=policy, reward_model=reward_model, episodes=1, fps=fps, episode_time_s=seconds,
                       record=record, display=False, keyboard=False, overrun_factor=1e9, stop_on_success=False)
    res = run_deploy(cfg)
    ep = res.episodes[0]
    period = np.diff(ep.ticks)
    work = np.asarray(ep.step_times)
    target = 1.0 / fps
    jitter = np.abs(period - target)
    ms = lambda x, q: float(np.percentile(x, q) * 1e3)  # noqa: E731
    return {
        "fps": fps, "reward_model": reward_model is not None, "steps": ep.steps,
        "target_period_ms": target * 1e3,
        "period_ms": {"p50": ms(period, 50), "p99": ms(period, 99), "max": float(period.max() * 1e3)},
        "jitter_ms": {"p50": ms(jitter, 50), "p99": ms(jitter, 99)},
        "step_time_ms": {"p50": ms(work, 50), "p99": ms(work, 99)},
        "overruns": int((work > target).sum()),
        "_periods": period.tolist(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--policy", type=Path, default=None)
    ap.add_argument("--reward-model", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", default="10,30")
    ap.add_argument("--out", type=Path, default=RESULTS / "deploy_latency.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="deploy_latency_"))
    policy, rm = args.policy, args.reward_model
    if policy is None or rm is None:
        p, r = build_defaults(work)
        policy, rm = policy or p, rm or r
    rows = []
    for fps in (int(x) for x in args.rates.split(",")):
        for use_rm in (False, True):
            row = measure(policy, rm if use_rm else None, fps, args.seconds, work / f"rec_{fps}_{int(use_rm)}")
            rows.append(row)
            print(f"{fps:>3} Hz  reward model {'on ' if use_rm else 'off'}  period p50 {row['period_ms']['p50']:.2f} "
                  f"p99 {row['period_ms']['p99']:.2f} ms  jitter p99 {row['jitter_ms']['p99']:.2f} ms  "
                  f"work p50 {row['step_time_ms']['p50']:.1f} p99 {row['step_time_ms']['p99']:.1f} ms  "
                  f"overruns {row['overruns']}/{row['steps']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import platform

    out = {"policy": str(policy), "reward_model": str(rm), "seconds": args.seconds,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]}
    args.out.write_text(json.dumps(out, indent=2))
    plot(rows, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len({r["fps"] for r in rows}), figsize=(10, 3.6), squeeze=False)
    for ax, fps in zip(axes[0], sorted({r["fps"] for r in rows}), strict=True):
        for r in (r for r in rows if r["fps"] == fps):
            p = np.asarray(r["_periods"]) * 1e3
            ax.hist(p, bins=40, alpha=0.6, label=f"reward model {'on' if r['reward_model'] else 'off'}")
        ax.axvline(1e3 / fps, color="k", ls="--", lw=1)
        ax.set_title(f"{fps} Hz (target {1e3 / fps:.1f} ms)")
        ax.set_xlabel("control period (ms)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
