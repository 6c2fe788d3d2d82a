"""One-shot adaptation of the reward model to a task it never saw: start from a model trained on
another task (`train-reward --init=RUN`) and fine-tune it on 1 or 5 demonstrations of the new
one, against training from scratch on the same demos with the same steps.

    python benchmarks/one_shot.py --base-task=pick_place --new-task=stack --seeds=0,1,2

The base model trains on --base-episodes mixed demos of --base-task. For each seed and each k in
--shots, k clean demos of --new-task are recorded (seeded, so adaptation and scratch see the
same ones); both variants train --steps steps on them with every episode in training, and are
scored by `eval-reward` on the same --eval-episodes mixed episodes of the new task (recorded
once, seed 9000): VOC+ on the successes, VOC- on the failures and stage accuracy. Writes
benchmarks/results/one_shot_<new-task>.{json,png}: means over seeds with bootstrap 95%
intervals and the paired difference adaptation - scratch. Finished runs are reused
(delete --runs to start over). Two runs at a time, one torch thread each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import CLI, run  # noqa: E402

METRICS = ("voc_pos", "voc_neg", "stage_accuracy")


def collect(task: str, n: int, quality: str, seed: int, out: Path, log: Path) -> Path:
    if not (out / "meta" / "info.json").is_file() or _episodes(out) < n:
        run([CLI, "collect", f"--task={task}", f"--episodes={n}", f"--quality={quality}", f"--seed={seed}",
             f"--out={out}"], log)
    return out


def _episodes(root: Path) -> int:
    return int(json.loads((root / "meta" / "info.json").read_text()).get("total_episodes", 0))


def train(dataset: Path, out: Path, steps: int, seed: int, log: Path, init: Path | None = None,
          held_out: float = 0.0) -> Path:
    if not (out / "model.safetensors").is_file():
        run([CLI, "train-reward", f"--dataset={dataset}", f"--out={out}", f"--steps={steps}", f"--seed={seed}",
             f"--held_out={held_out}", "--wandb=disabled", "--threads=1", *([f"--init={init}"] if init else [])], log)
    return out


def evaluate(model: Path, dataset: Path, log: Path) -> dict:
    out = model / "eval_new_task.json"
    if not out.is_file():
        run([CLI, "eval-reward", f"--model={model}", f"--dataset={dataset}", f"--out_json={out}"], log)
    r = json.loads(out.read_text())
    return {k: r[k] for k in METRICS}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-task", default="pick_place")
    p.add_argument("--new-task", default="stack")
    p.add_argument("--base-episodes", type=int, default=30)
    p.add_argument("--base-steps", type=int, default=1500)
    p.add_argument("--shots", default="1,5")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--runs", default=str(ROOT / "outputs/bench_one_shot"))
    p.add_argument("--out", default=None)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    runs = Path(args.runs)
    log = runs / "log.txt"
    seeds = [int(s) for s in args.seeds.split(",")]
    shots = [int(k) for k in args.shots.split(",")]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.jobs) as pool:
        base_ds = pool.submit(collect, args.base_task, args.base_episodes, "mixed", 0, runs / f"data_{args.base_task}",
                              log)
        eval_ds = pool.submit(collect, args.new_task, args.eval_episodes, "mixed", 9000, runs / "data_eval", log)
        base = train(base_ds.result(), runs / "base", args.base_steps, 0, log, held_out=0.2)
        eval_ds = eval_ds.result()
        demos = {(s, k): pool.submit(collect, args.new_task, k, "clean", 1000 * (s + 1), runs / f"demos_s{s}_k{k}", log)
                 for s in seeds for k in shots}
        def variant_run(demos_future, out: Path, seed: int, init: Path | None) -> dict:
            return evaluate(train(demos_future.result(), out, args.steps, seed, log, init), eval_ds, log)

        jobs = {(variant, s, k): pool.submit(variant_run, ds, runs / f"{variant}_s{s}_k{k}", s,
                                             base if variant == "adapted" else None)
                for (s, k), ds in demos.items() for variant in ("adapted", "scratch")}
        scores = {key: f.result() for key, f in jobs.items()}
    base_scores = evaluate(base, eval_ds, log)
    result = summarise(scores, seeds, shots, base_scores, args, time.perf_counter() - t0)
    out = Path(args.out or ROOT / f"benchmarks/results/one_shot_{args.new_task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    for k in shots:
        a, s = result["shots"][str(k)]["adapted"], result["shots"][str(k)]["scratch"]
        d = result["shots"][str(k)]["difference"]["voc_pos"]
        print(f"{k} demo(s): VOC+ adapted {a['voc_pos']['mean']:.3f} scratch {s['voc_pos']['mean']:.3f} "
              f"(difference {d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}])")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def summarise(scores: dict, seeds: list[int], shots: list[int], base_scores: dict, args, seconds: float) -> dict:
    from robo_reward.stats import bootstrap_mean_ci, paired_difference

    def stat(xs):
        xs = [x for x in xs if x is not None]
        if not xs:
            return {"mean": None, "ci": None, "per_seed": []}
        return {"mean": float(np.mean(xs)), "ci": list(bootstrap_mean_ci(xs)) if len(xs) > 1 else [xs[0], xs[0]],
                "per_seed": xs}

    out = {}
    for k in shots:
        row = {v: {m: stat([scores[(v, s, k)][m] for s in seeds]) for m in METRICS} for v in ("adapted", "scratch")}
        row["difference"] = {}
        for m in METRICS:
            a = [scores[("adapted", s, k)][m] for s in seeds]
            b = [scores[("scratch", s, k)][m] for s in seeds]
            if None in a or None in b:
                continue
            d = paired_difference(a, b)
            row["difference"][m] = {**d, "ci": d["ci95"], "per_seed": [x - y for x, y in zip(a, b, strict=True)]}
        out[str(k)] = row
    return {"base_task": args.base_task, "new_task": args.new_task, "seeds": seeds, "steps": args.steps,
            "base": {"episodes": args.base_episodes, "steps": args.base_steps, "on_new_task": base_scores},
            "eval_episodes": args.eval_episodes, "shots": out, "wall_seconds": seconds,
            "targets": {"one_shot_voc_pos_gain_over_scratch": 0.15, "five_shot_voc_pos": 0.95}}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = list(result["shots"])
    fig, axes = plt.subplots(1, len(METRICS), figsize=(12, 3.6))
    for ax, m in zip(axes, METRICS, strict=True):
        for j, (v, color) in enumerate((("adapted", "tab:blue"), ("scratch", "tab:gray"))):
            for i, k in enumerate(shots):
                s = result["shots"][k][v][m]
                if s["mean"] is None:
                    continue
                x = i + (j - 0.5) * 0.35
                ax.bar(x, s["mean"], 0.35, color=color, label=v if i == 0 else None,
                       yerr=[[s["mean"] - s["ci"][0]], [s["ci"][1] - s["mean"]]], capsize=3)
                ax.plot([x] * len(s["per_seed"]), s["per_seed"], "k.", ms=4)
        ax.set_xticks(range(len(shots)), [f"{k} demo{'s' if k != '1' else ''}" for k in shots])
        ax.set_title({"voc_pos": "VOC+ (best +1)", "voc_neg": "VOC- (reversed, best -1)"}.get(m, m))
        ax.set_ylim(-1.0 if m == "voc_neg" else 0, 1.0)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"reward model on {result['new_task']}: adapted from {result['base_task']} vs from scratch "
                 f"({len(result['seeds'])} seeds, {result['eval_episodes']} held-out episodes)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
