"""How much the ground-truth potential (the dense baseline's Phi) steps where the push stage
changes, on clean and noisy expert rollouts. A potential that jumps where the task has not
moved hands PBRS a spurious reward.

    python benchmarks/push_phi_jumps.py --episodes 20

Even episodes run the expert as is, odd ones add N(0, 0.8) to every action. Writes
benchmarks/results/push_phi_jumps.json (|dPhi| at stage changes and within stages).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm


def main() -> None:
    from sim.experts import make_expert
    from sim.tasks import make_env

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--noise", type=float, default=0.8)
    p.add_argument("--out", default="benchmarks/results/push_phi_jumps.json")
    args = p.parse_args()

    env = make_env("push", cameras=())
    rng = np.random.default_rng(0)
    at_change, within, successes = [], [], 0
    for k in tqdm(range(args.episodes), desc="push rollouts"):
        env.reset(seed=500 + k)
        expert = make_expert("push", seed=500 + k)
        noise = 0.0 if k % 2 == 0 else args.noise
        progress, stages = [], []
        for _ in range(env.horizon):
            a = expert.act(env)
            a = np.clip(a + noise * rng.normal(size=a.shape), -1, 1).astype(np.float32)
            *_, terminated, truncated, info = env.step(a)
            progress.append(info["progress"])
            stages.append(info["stage"])
            if terminated or truncated:
                break
        successes += int(info["success"])
        d, changed = np.abs(np.diff(progress)), np.diff(stages) != 0
        at_change += d[changed].tolist()
        within += d[~changed].tolist()
    at_change, within = np.array(at_change), np.array(within)
    result = {"episodes": args.episodes, "noise": args.noise, "successes": successes,
              "stage_changes": int(at_change.size),
              "abs_dphi_at_stage_change": {"mean": float(at_change.mean()), "max": float(at_change.max())},
              "abs_dphi_within_stage": {"mean": float(within.mean()), "max": float(within.max()),
                                        "over_0.1": int((within > 0.1).sum()), "steps": int(within.size)}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
