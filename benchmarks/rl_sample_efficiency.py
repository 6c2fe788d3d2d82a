"""RL sample efficiency: sparse vs ground-truth dense (PBRS) vs learned (PBRS) vs learned (naive).

Every variant runs `robo-reward rl` with the same seeds, budget and settings (SAC; optional
demo-seeded replay), two runs at a time with one torch thread each. Finished runs are reused, so
a killed benchmark picks up where it stopped. Writes a JSON of evaluation success against env
steps and against online episodes per run, a summary (steps to 80% success, final success, the
learned/dense step ratio, throughput with the share of wall time in rendering and reward
inference), a budget table (each variant's mean success at every evaluated budget with a bootstrap
95% interval over seeds, and the variants compared seed by seed: learned PBRS minus sparse and so
on, with a sign test) and a plot (mean with a bootstrap 95% band over seeds). ``--resummarize=JSON``
rebuilds an earlier result's budget table from the runs it recorded.

    python benchmarks/rl_sample_efficiency.py --task=push --steps=12000 --seeds=0,1,2 \
        --reward-model=outputs/reward/push_default --demos=datasets/so101_push
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

from robo_reward.stats import bootstrap_mean_ci, paired_difference

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "sparse": ["--reward=sparse"],
    "dense_pbrs": ["--reward=dense", "--shaping=pbrs"],
    "learned_pbrs": ["--reward=learned", "--shaping=pbrs"],
    "learned_naive": ["--reward=learned", "--shaping=naive"],
    # not in the default set: naive with the ground-truth potential (separates naive's effect from
    # the learned model's errors)
    "dense_naive": ["--reward=dense", "--shaping=naive"],
}
DEFAULT_VARIANTS = ("sparse", "dense_pbrs", "learned_pbrs", "learned_naive")
# the comparisons the budget table makes seed by seed (first minus second)
PAIRS = (("learned_pbrs", "sparse"), ("dense_pbrs", "sparse"), ("learned_pbrs", "dense_pbrs"),
         ("learned_naive", "sparse"))


def run_one(variant: str, seed: int, args, out: Path) -> dict:
    summary = out / "summary.json"
    if summary.exists():
        s = json.loads(summary.read_text())
        if s["final"]["env_steps"] >= args.steps:
            return s
    cmd = [str(ROOT / ".venv/bin/robo-reward"), "rl", f"--task={args.task}", *VARIANTS[variant],
           f"--steps={args.steps}", f"--seed={seed}", f"--out={out}", f"--num-envs={args.num_envs}",
           f"--eval-every={args.eval_every}", f"--eval-episodes={args.eval_episodes}", "--wandb=false",
           "--progress-bar=false", f"--utd={args.utd}", f"--checkpoint-every={args.steps // 2}"]
    if "learned" in variant:
        cmd.append(f"--reward-model={args.reward_model}")
    if args.demos:
        cmd += [f"--demos={args.demos}", f"--bc-warmstart-steps={args.bc_steps}", "--learning-starts=0"]
    cmd += args.extra
    if is_pbrs(variant):
        cmd += args.pbrs_flags
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1"}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        rc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise RuntimeError(f"{variant} seed {seed}: exit {rc}; see {out / 'log.txt'}")
    print(f"  {variant} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    return json.loads(summary.read_text())


def is_pbrs(variant: str) -> bool:
    return "--shaping=pbrs" in VARIANTS[variant]


def truncate_run(run: dict, steps: int, from_steps: int) -> dict:
    """A longer run's record cut at ``steps``: SAC before step ``steps`` does not depend on the
    total budget, so its evals up to there are those of a run of ``steps``. The timings are scaled
    by the share of the budget (the throughput of the whole run)."""
    evals = [e for e in run["evals"] if e["env_steps"] <= steps]
    if not evals or evals[-1]["env_steps"] != steps:
        raise SystemExit(f"--reuse-from: seed {run['seed']} has no eval at {steps} steps "
                         f"(evals at {[e['env_steps'] for e in run['evals']]})")
    k = steps / from_steps
    out = {**run, "evals": evals, "final_success": evals[-1]["success_rate"],
           "online_episodes": evals[-1]["online_episodes"], "truncated_from": from_steps,
           "steps_to_80": steps_to(evals, "env_steps", 0.8), "episodes_to_80": steps_to(evals, "online_episodes", 0.8)}
    for key in ("wall_s", "render_s", "reward_inference_s"):
        out[key] = (run.get(key) or 0.0) * k
    return out


def reuse_runs(args, seeds: list[int], variants: list[str]) -> dict[tuple[str, int], dict]:
    """Runs of ``--reuse-variants`` taken from ``--reuse-from``, keyed (variant, seed), after
    checking that that benchmark ran the same task, settings and (for learned variants) reward
    model. Its budget may be larger (the runs are cut at this one's, see :func:`truncate_run`) and
    its seeds may be a subset (the missing seeds are run). ``--pbrs-flags`` must match only for the
    PBRS variants: they are the only runs that read them."""
    if not args.reuse_from:
        return {}
    prev = json.loads(Path(args.reuse_from).read_text())
    want = {"task": args.task, "num_envs": args.num_envs, "utd": args.utd, "demos": args.demos or None,
            "extra": args.extra}
    diff = {k: (prev.get(k), v) for k, v in want.items() if prev.get(k) != v}
    if prev["steps"] < args.steps:
        diff["steps"] = (prev["steps"], f">= {args.steps}")
    if diff:
        raise SystemExit(f"--reuse-from={args.reuse_from}: settings differ (theirs, these): {diff}")
    out = {}
    for v in [v for v in args.reuse_variants.split(",") if v]:
        if v not in variants:
            continue
        if v not in prev["runs"]:
            raise SystemExit(f"--reuse-from={args.reuse_from}: no runs of {v!r}; it has {sorted(prev['runs'])}")
        if "learned" in v and prev.get("reward_model") != args.reward_model:
            raise SystemExit(f"--reuse-variants: {v!r} ran with --reward-model={prev.get('reward_model')}, "
                             f"expected {args.reward_model}; rerun it instead")
        if is_pbrs(v) and prev.get("pbrs_flags", []) != args.pbrs_flags:
            raise SystemExit(f"--reuse-variants: {v!r} ran with --pbrs-flags={prev.get('pbrs_flags', [])}, "
                             f"expected {args.pbrs_flags}; rerun it instead")
        for r in prev["runs"][v]:
            if r["seed"] in seeds:
                out[(v, r["seed"])] = truncate_run(r, args.steps, prev["steps"]) if prev["steps"] > args.steps else r
    return out


def steps_to(evals: list[dict], key: str, threshold: float) -> float | None:
    for e in evals:
        if e["success_rate"] >= threshold:
            return e[key]
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="push")
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    p.add_argument("--reward-model", default="outputs/reward/push_default")
    p.add_argument("--demos", default="")
    p.add_argument("--bc-steps", type=int, default=2000)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--utd", type=float, default=0.5)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--runs", default="outputs/bench_rl")
    p.add_argument("--out", default="benchmarks/results/rl_sample_efficiency_{task}.json")
    p.add_argument("--reuse-from", default="",
                   help="an earlier result JSON whose runs of --reuse-variants are taken instead of rerun (same task "
                        "and RL settings; a larger budget is cut at this one, seeds it lacks are run)")
    p.add_argument("--reuse-variants", default="sparse,dense_pbrs",
                   help="variants taken from --reuse-from (learned ones only when it used the same --reward-model)")
    p.add_argument("--pbrs-flags", default="",
                   help="space-separated flags for the PBRS variants only, e.g. '--value-horizon=20' (Phi read "
                        "as a value); naive keeps the progress itself as its reward")
    p.add_argument("extra", nargs="*", help="extra flags passed to every `robo-reward rl` run")
    p.add_argument("--resummarize", default="",
                   help="an earlier result JSON: rebuild its budget table and plot from its recorded runs (no runs)")
    args = p.parse_args()
    if args.resummarize:
        return resummarize(Path(args.resummarize))
    args.pbrs_flags = args.pbrs_flags.split()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    reused = reuse_runs(args, seeds, variants)
    runs_dir = Path(args.runs) / args.task
    jobs = [(v, s, runs_dir / v / f"seed{s}") for v in variants for s in seeds if (v, s) not in reused]
    print(f"{len(jobs)} runs of {args.steps} env steps on {args.task}, {args.parallel} at a time "
          f"({len(reused)} taken from {args.reuse_from or '-'})", flush=True)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda j: run_one(j[0], j[1], args, j[2]), jobs))
    wall = time.perf_counter() - t0

    records = dict(reused)
    for (v, s, _out), r in zip(jobs, results, strict=True):
        records[(v, s)] = {"seed": s, "evals": r["evals"], "final_success": r["final"]["success_rate"],
                           "online_episodes": r["episodes"], "wall_s": r["wall_s"],
                           "env_steps_per_s": r["env_steps_per_s"], "render_s": r.get("render_s", 0.0),
                           "reward_inference_s": r.get("potential_s", 0.0),
                           "steps_to_80": steps_to(r["evals"], "env_steps", 0.8),
                           "episodes_to_80": steps_to(r["evals"], "online_episodes", 0.8)}
    runs: dict[str, list[dict]] = {v: [records[(v, s)] for s in seeds] for v in variants}
    summary = {}
    for v, rs in runs.items():
        s80 = [r["steps_to_80"] for r in rs]
        walls = sum(r["wall_s"] for r in rs)
        summary[v] = {
            "final_success_mean": float(np.mean([r["final_success"] for r in rs])),
            "final_success_per_seed": [r["final_success"] for r in rs],
            "seeds_reaching_80": sum(x is not None for x in s80),
            "steps_to_80_mean": float(np.mean(s80)) if all(x is not None for x in s80) else None,
            "steps_to_80_per_seed": s80,
            "env_steps_per_s": float(np.mean([r["env_steps_per_s"] for r in rs])),
            "render_share": sum(r["render_s"] or 0.0 for r in rs) / walls,
            "reward_inference_share": sum(r["reward_inference_s"] for r in rs) / walls,
        }
    budgets = budget_table(runs)
    # the training time of this benchmark's own runs (not of those taken from --reuse-from)
    run_wall = float(sum(records[(v, s)]["wall_s"] for v, s, _ in jobs))
    ratio = None
    if all(k in summary for k in ("learned_pbrs", "dense_pbrs")):
        a, b = summary["learned_pbrs"]["steps_to_80_mean"], summary["dense_pbrs"]["steps_to_80_mean"]
        ratio = a / b if a and b else None
    result = {"task": args.task, "steps": args.steps, "seeds": seeds, "num_envs": args.num_envs, "utd": args.utd,
              "demos": args.demos or None, "reward_model": args.reward_model,
              # this call's wall time (about zero when every run is reused) and the runs' own training time
              "wall_s": wall, "runs_wall_s_sum": run_wall, "parallel": args.parallel,
              "extra": args.extra, "pbrs_flags": args.pbrs_flags,
              "reused": {"from": args.reuse_from, "runs": sorted(f"{v} seed {s}" for v, s in reused)},
              "learned_over_dense_steps_to_80": ratio, "summary": summary, "budgets": budgets, "runs": runs}
    out = Path(args.out.format(task=args.task))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    for v, s in summary.items():
        print(f"{v:>14}: final success {s['final_success_mean']:.2f} {s['final_success_per_seed']}, "
              f"steps to 80% {s['steps_to_80_per_seed']}, {s['env_steps_per_s']:.0f} steps/s "
              f"(render {s['render_share']:.0%}, reward model {s['reward_inference_share']:.0%})")
    print(f"learned/dense steps to 80% (every seed): {ratio}; on the mean curve: "
          f"{budgets['learned_over_dense_mean_curve']} (steps: {budgets['mean_curve_steps_to']})")
    print_budgets(budgets, list(runs))
    print(f"wrote {out} and {out.with_suffix('.png')} ({wall / 60:.1f} min for this call; the runs trained for "
          f"{run_wall / 60:.1f} min in all, about {run_wall / 60 / args.parallel:.1f} min at {args.parallel} at a time)")
    return 0


def budget_table(runs: dict[str, list[dict]]) -> dict:
    """Mean eval success of every variant at each evaluated budget (the eval steps all runs share),
    with bootstrap intervals and seed-by-seed comparisons (:data:`PAIRS`), and the acceptance check
    of the RL issue: the budgets at which sparse stays at or below 20% while learned PBRS reaches
    at least 80% (mean over seeds)."""
    common = sorted(set.intersection(*({e["env_steps"] for e in r["evals"]} for rs in runs.values() for r in rs)))
    table = []
    for step in common:
        row: dict = {"env_steps": step}
        per_seed = {v: [next(e["success_rate"] for e in r["evals"] if e["env_steps"] == step) for r in rs]
                    for v, rs in runs.items()}
        for v, xs in per_seed.items():
            row[v] = float(np.mean(xs))
        # how sure the means are: a bootstrap interval over seeds, and each pair of variants compared
        # seed by seed (the same seeds run every variant)
        row["ci95"] = {v: bootstrap_mean_ci(xs) for v, xs in per_seed.items()}
        row["paired"] = {f"{a}-{b}": paired_difference(per_seed[a], per_seed[b]) for a, b in PAIRS
                         if a in per_seed and b in per_seed and _same_seeds(runs[a], runs[b])}
        table.append(row)
    ok = [b["env_steps"] for b in table
          if "sparse" in b and "learned_pbrs" in b and b["sparse"] <= 0.2 and b["learned_pbrs"] >= 0.8]
    sparse_ok = [b["env_steps"] for b in table if b.get("sparse", 1.0) <= 0.2]
    # the first budget at which each variant's mean curve reaches a level, and learned PBRS over dense PBRS
    # there: a ratio that exists even when some seed never gets to 80%
    mean_steps_to = {f"{level:.0%}": {v: next((b["env_steps"] for b in table if b[v] >= level), None) for v in runs}
                     for level in (0.5, 0.8)}
    mean_ratio = {}
    for level, per_variant in mean_steps_to.items():
        a, b = per_variant.get("learned_pbrs"), per_variant.get("dense_pbrs")
        mean_ratio[level] = a / b if a and b else None
    return {"table": table, "largest_budget_sparse_at_most_20": max(sparse_ok) if sparse_ok else None,
            "mean_curve_steps_to": mean_steps_to, "learned_over_dense_mean_curve": mean_ratio,
            "acceptance": {"met": bool(ok), "budgets": ok}}


def _same_seeds(a: list[dict], b: list[dict]) -> bool:
    return [r["seed"] for r in a] == [r["seed"] for r in b]


def resummarize(path: Path) -> int:
    """Rebuild an earlier result's budget table (means, intervals, paired comparisons) and plot
    from the runs it recorded; nothing is rerun and every other field is kept."""
    result = json.loads(path.read_text())
    runs = result.get("runs")
    if not (isinstance(runs, dict) and runs and all(isinstance(rs, list) and rs and all(
            isinstance(r, dict) and "evals" in r and "seed" in r for r in rs) for rs in runs.values())):
        raise SystemExit(f"--resummarize={path}: 'runs' is not this benchmark's record (expected variant -> list of "
                         "runs, each with 'seed' and 'evals')")
    result["budgets"] = budget_table(runs)
    path.write_text(json.dumps(result, indent=2))
    plot(result, path.with_suffix(".png"))
    print_budgets(result["budgets"], list(result["runs"]))
    print(f"rewrote the budget table of {path} and {path.with_suffix('.png')}")
    return 0


def print_budgets(budgets: dict, variants: list[str]) -> None:
    for b in budgets["table"]:
        ci = b.get("ci95", {})
        print("  " + f"{b['env_steps']:>7} steps: " + ", ".join(
            f"{v} {b[v]:.2f}" + (f" [{ci[v][0]:.2f}, {ci[v][1]:.2f}]" if v in ci else "") for v in variants))
        for name, d in b.get("paired", {}).items():
            print(f"{'':>20}{name}: {d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}], seeds "
                  f"ahead / behind / level {d['ahead']} / {d['behind']} / {d['level']} (sign test p = {d['sign_test_p']:.2f})")
    print(f"acceptance (a budget where sparse <= 20% and learned PBRS >= 80%): {budgets['acceptance']}")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for v, rs in result["runs"].items():
        for ax, key in zip(axes, ("env_steps", "online_episodes"), strict=True):
            grid = np.array([e[key] for e in rs[0]["evals"]], dtype=float)
            if key == "online_episodes":  # episodes differ per seed: interpolate on a common grid
                hi = min(r["evals"][-1]["online_episodes"] for r in rs)
                grid = np.linspace(0, hi, 30)
                ys = np.array([np.interp(grid, [0] + [e[key] for e in r["evals"]],
                                         [0] + [e["success_rate"] for e in r["evals"]]) for r in rs])
            else:
                ys = np.array([[e["success_rate"] for e in r["evals"]] for r in rs])
            ax.plot(grid, ys.mean(0), label=v)
            band = np.array([bootstrap_mean_ci(col, n_boot=2000) for col in ys.T])
            ax.fill_between(grid, band[:, 0], band[:, 1], alpha=0.2)
    for ax, label in zip(axes, ("environment steps", "online episodes"), strict=True):
        ax.set_xlabel(label)
        ax.set_ylabel("eval success rate")
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(0.8, color="k", lw=0.5, ls="--")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"{result['task']}: {len(result['seeds'])} seeds, {result['steps']} steps"
                 f"{', demo-seeded' if result['demos'] else ''} (mean, bootstrap 95% band over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
