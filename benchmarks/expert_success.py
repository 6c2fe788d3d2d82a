"""Clean scripted-expert success rate per task over N seeds (acceptance: >= 95% of 50).

    .venv/bin/python benchmarks/expert_success.py --seeds 50 --out benchmarks/results/expert_success.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from tqdm import tqdm  # noqa: E402

from sim.experts import make_expert  # noqa: E402
from sim.tasks import TASKS, make_env  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--tasks", default=",".join(sorted(TASKS)))
    p.add_argument("--out", default="benchmarks/results/expert_success.json")
    args = p.parse_args()
    results = {}
    for task in args.tasks.split(","):
        env = make_env(task, cameras=())
        ok, lengths, failed = 0, [], []
        t0 = time.time()
        for seed in tqdm(range(args.seeds), desc=task):
            env.reset(seed=seed)
            expert = make_expert(task, seed=seed)
            steps = 0
            for steps in range(1, env.horizon + 1):  # noqa: B007  (steps is read after the loop)
                *_, terminated, truncated, info = env.step(expert.act(env))
                if terminated or truncated:
                    break
            ok += info["success"]
            lengths.append(steps)
            if not info["success"]:
                failed.append(seed)
        results[task] = {"seeds": args.seeds, "successes": ok, "success_rate": ok / args.seeds,
                         "failed_seeds": failed, "mean_steps": sum(lengths) / len(lengths),
                         "wall_s": round(time.time() - t0, 1)}
        print(f"{task:<22} {ok}/{args.seeds} = {ok / args.seeds:.0%}  (mean {results[task]['mean_steps']:.0f} steps)")
        env.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
