"""Plain BC vs RA-BC (learned progress) vs RA-BC (oracle ground-truth progress) on a mixed-quality
dataset: same seeds, same budget, each policy evaluated on the same seeded sim episodes.

    python benchmarks/rabc_vs_bc.py --dataset=datasets/so101_pick_place \
        --reward-model=outputs/reward/pp_default --seeds=0,1,2 --episodes=50

Writes benchmarks/results/rabc_vs_bc_<task>.json and a bar plot beside it. Finished runs are
reused (delete --runs to start over). Two runs go at a time, one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def variants(args) -> dict[str, list[str]]:
    drop = [f"--min-final-progress={args.min_final_progress}"]
    every = {
        "bc": [],
        # plain BC on the episodes the learned model's final progress keeps (no frame weights)
        "bc_filtered": ["--rabc=true", f"--progress={args.progress}", *drop, "--frame-weights=false"],
        "rabc": ["--rabc=true", f"--progress={args.progress}"],
        "rabc_oracle": ["--rabc=true", "--oracle=true"],
        # the same, also dropping whole episodes whose final progress is below --min-final-progress
        "rabc_drop": ["--rabc=true", f"--progress={args.progress}", *drop],
        "rabc_oracle_drop": ["--rabc=true", "--oracle=true", *drop],
    }
    return {k: every[k] for k in args.variants.split(",")}


def run(cmd: list[str], log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1"}
    with open(log, "a") as f:
        rc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise RuntimeError(f"exit {rc}: {' '.join(cmd)}; see {log}")


def one(variant: str, flags: list[str], seed: int, args) -> dict:
    out = Path(args.runs) / variant / f"seed{seed}"
    res = out / "eval.json"
    if not res.exists():
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        exe = str(ROOT / ".venv/bin/robo-reward")
        run([exe, "train-bc", f"--dataset={args.dataset}", f"--out={out}", f"--steps={args.steps}",
             f"--seed={seed}", f"--chunk={args.chunk}", f"--kappa={args.kappa}", f"--obs={args.obs}",
             "--wandb=false", "--progress-bar=false", *flags], out / "log.txt")
        run([exe, "eval-policy", f"--policy={out}", f"--episodes={args.episodes}", f"--out-json={res}"],
            out / "log.txt")
        print(f"  {variant} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    r = json.loads(res.read_text())
    w = json.loads((out / "train_log.json").read_text())["weights"]
    return {"seed": seed, "success_rate": r["success_rate"], "mean_length": r["mean_length"], "weights": w}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="datasets/so101_pick_place")
    p.add_argument("--reward-model", default="outputs/reward/pp_default")
    p.add_argument("--progress", default="", help="sarm_progress.parquet (default: annotate with --reward-model)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--chunk", type=int, default=10)
    p.add_argument("--kappa", type=float, default=0.01)
    p.add_argument("--obs", default="state")
    p.add_argument("--variants", default="bc,bc_filtered,rabc,rabc_oracle,rabc_drop,rabc_oracle_drop")
    p.add_argument("--min-final-progress", type=float, default=0.9)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--runs", default="outputs/bench_rabc")
    p.add_argument("--out", default="")
    args = p.parse_args()
    if not args.progress:
        args.progress = str(Path(args.runs) / "sarm_progress.parquet")
        if not Path(args.progress).exists():
            Path(args.runs).mkdir(parents=True, exist_ok=True)
            run([str(ROOT / ".venv/bin/robo-reward"), "annotate-progress", f"--model={args.reward_model}",
                 f"--dataset={args.dataset}", f"--out={args.progress}"], Path(args.runs) / "annotate.log")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(v, f, s) for v, f in variants(args).items() for s in seeds]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda j: one(*j, args), jobs))
    table: dict[str, dict] = {}
    for (v, _, _), r in zip(jobs, results, strict=True):
        table.setdefault(v, {"runs": []})["runs"].append(r)
    for d in table.values():
        rates = [r["success_rate"] for r in d["runs"]]
        d["success_mean"] = float(np.mean(rates))
        d["success_std"] = float(np.std(rates))
        d["mean_weight"] = float(np.mean([r["weights"]["mean_weight"] for r in d["runs"]]))
    bc = table["bc"]["success_mean"]
    for d in table.values():
        d["over_bc"] = d["success_mean"] / bc if bc > 0 else None
        d["minus_bc_points"] = 100 * (d["success_mean"] - bc)
    from robo_reward.data.table import task_of_dataset

    task = task_of_dataset(Path(args.dataset))
    result = {"dataset": args.dataset, "task": task, "reward_model": args.reward_model, "seeds": seeds,
              "episodes_per_eval": args.episodes, "steps": args.steps, "chunk": args.chunk, "kappa": args.kappa,
              "obs": args.obs, "wall_s": time.perf_counter() - t0,
              "min_final_progress": args.min_final_progress,
              "variants": table}
    out = Path(args.out or f"benchmarks/results/rabc_vs_bc_{task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    for v, d in table.items():
        print(f"{v:>12}: success {d['success_mean']:.3f} +- {d['success_std']:.3f} "
              f"{[r['success_rate'] for r in d['runs']]} (mean weight {d['mean_weight']:.2f}; "
              f"x{d['over_bc'] or float('nan'):.2f}, {d['minus_bc_points']:+.1f} points vs BC)")
    print(f"wrote {out}")
    return 0


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["variants"])
    means = [result["variants"][n]["success_mean"] for n in names]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    colors = {"bc": "#999999", "bc_filtered": "#bbbbbb", "rabc": "#3a7bd5", "rabc_oracle": "#2ca25f", "rabc_drop": "#1f4e99",
              "rabc_oracle_drop": "#17693a"}
    ax.bar(names, means, color=[colors.get(n, "#777777") for n in names], alpha=0.85)
    ax.tick_params(axis="x", labelsize=8)
    for i, n in enumerate(names):
        pts = [r["success_rate"] for r in result["variants"][n]["runs"]]
        ax.scatter([i] * len(pts), pts, color="k", s=12, zorder=3)
        ax.text(i, means[i] + 0.03, f"{means[i]:.2f}", ha="center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"success over {result['episodes_per_eval']} seeded episodes")
    ax.set_title(f"{result['task']}: BC vs RA-BC ({len(result['seeds'])} seeds, {result['steps']} steps)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
