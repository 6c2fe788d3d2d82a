"""Online RL that improves on imitation: fine-tune a cloned policy within a budget of online
episodes, against Filtered BC, with sparse, ground-truth dense and learned PBRS rewards (the
learned one frozen, or refit on the policy's own rollouts from their success flags alone).

    python benchmarks/rl_finetune.py --dataset=datasets/so101_pick_place \\
        --base=outputs/bc/pp_state --reward-model=outputs/reward/pp_w1 --seeds=0,1,2

Every variant starts from the same base policy, trains on the same seeds and is evaluated every
--eval-every online episodes on the same --eval-episodes seeded episodes (seeds 10000...). Writes
benchmarks/results/rl_finetune_<task>.json and a plot of success against online episodes (mean
over training seeds, bootstrap 95% interval). Finished runs are reused (delete --runs to start
over); --resummarize only rebuilds the JSON and plot. Two runs at a time, one torch thread each.
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

from benchmarks.common import run  # noqa: E402

EVAL_SEED = 10_000


def rl_flags(args, variant: str) -> list[str]:
    learned = [f"--reward-model={args.reward_model}", "--reward=learned", f"--phi-corr-episodes={args.phi_episodes}"]
    return {"sparse": ["--reward=sparse"], "dense": ["--reward=dense"], "learned": learned,
            "learned_refit": [*learned, f"--refit-every={args.refit_every}"]}[variant]


def rl_run(variant: str, seed: int, args) -> Path:
    out = Path(args.runs) / variant / f"seed{seed}"
    if not (out / "summary.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        run([str(ROOT / ".venv/bin/robo-reward"), "rl", f"--task={args.task}", f"--init-policy={args.base}",
             *rl_flags(args, variant), f"--seed={seed}", f"--out={out}", f"--max-episodes={args.episodes}",
             f"--steps={args.episodes * 400}", f"--eval-every-episodes={args.eval_every}",
             f"--eval-episodes={args.eval_episodes}", f"--eval-seed={EVAL_SEED}", f"--num-envs={args.num_envs}",
             f"--utd={args.utd}", "--learning-starts=0", f"--actor-warmup={args.actor_warmup}",
             f"--residual-scale={args.residual_scale}", f"--residual-scale-start={args.residual_scale_start}",
             "--ent-coef=auto_0.01", "--checkpoint-every=1000000", "--wandb=disabled", "--progress-bar=false",
             *args.extra.split()], out / "log.txt")
        print(f"  {variant} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def curve_of_rl(out: Path) -> list[dict]:
    evals = json.loads((out / "eval.json").read_text())
    out, prev_n, prev_s = [], 0, 0
    for e in evals:  # the sampled (exploring) policy's success over the online episodes since the last point
        n = e["online_episodes"]
        s = round(e["train_success_rate"] * n)
        online = (s - prev_s) / (n - prev_n) if n > prev_n else None
        prev_n, prev_s = n, s
        out.append({"online_episodes": n, "success_rate": e["success_rate"], "successes": e["successes"],
                    "online_success_since_last": online,
                    **{k: e[k] for k in ("phi_true_corr", "phi_true_corr_frozen") if k in e}})
    return out


def eval_policy(policy: Path, task: str, episodes: int) -> dict:
    from robo_reward.policies.registry import load_policy
    from robo_reward.rl.evaluate import evaluate_policy

    r = evaluate_policy(load_policy(policy), task, episodes, seed=EVAL_SEED, progress_bar=False)
    return {"success_rate": r["success_rate"], "successes": [e["success"] for e in r["per_episode"]]}


def record_rollouts(policy: Path, task: str, seeds: list[int], out: Path) -> float:
    """Roll ``policy`` out on ``seeds`` and record every episode (state, actions, success flag; no
    video: Filtered BC of a state policy reads none) as a LeRobot dataset."""
    from robo_reward.data.labels import Segments
    from robo_reward.data.lerobot_io import DatasetWriter, EpisodeMeta, features_for
    from robo_reward.embodiments.so101.kinematics import ACTION_KEYS
    from robo_reward.envs import make_env
    from robo_reward.policies.registry import load_policy
    from robo_reward.rl.observation import RLObservation

    pol = load_policy(policy)
    raw = make_env(task, cameras=())
    env = RLObservation(raw)
    base = raw.unwrapped
    extra = {"action.ee_delta": {"dtype": "float32", "shape": (4,), "names": ["dx", "dy", "dz", "gripper"]},
             "observation.environment_state": {"dtype": "float32", "shape": (base.env_state_dim,), "names": None},
             "gt.progress": {"dtype": "float32", "shape": (1,), "names": None}}
    writer = DatasetWriter(out, base.metadata["render_fps"], features_for([], 0, 0, list(ACTION_KEYS),
                                                                          list(ACTION_KEYS), extra), list(base.stages))
    wins = []
    try:
        for s in seeds:
            raw_obs, info = raw.reset(seed=s)
            obs = env.observation(raw_obs)
            pol.reset()
            frames, stages, done, success = [], [], False, False
            while not done:
                a = np.clip(pol.act(obs, env), -1, 1).astype(np.float32)
                fr = {"observation.state": obs["agent_pos"].astype(np.float32),
                      "observation.environment_state": raw_obs["environment_state"].astype(np.float32),
                      "gt.progress": np.array([info["progress"]], np.float32), "task": base.instruction}
                stages.append(int(info["stage"]))
                raw_obs, _, term, trunc, info = raw.step(a)
                obs = env.observation(raw_obs)
                frames.append({**fr, "action": base.joint_targets(), "action.ee_delta": a})
                success, done = success or info["success"], term or trunc
            seg = Segments.from_stage_per_frame(base.stages, stages)
            writer.add_episode(frames, EpisodeMeta(0, len(frames), list(seg.names), list(seg.starts), list(seg.ends),
                                                   quality="rollout", success=bool(success), seed=s))
            wins.append(success)
    finally:
        writer.finalize()
        env.close()
    return float(np.mean(wins))


def filtered_bc_run(seed: int, args) -> Path:
    """Every --eval-every episodes: roll the current policy out, keep its successes, retrain BC on
    demos + every success so far (ResFiT's Filtered BC), evaluate."""
    out = Path(args.runs) / "filtered_bc" / f"seed{seed}"
    done = out / "curve.json"
    if done.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    curve = [{"online_episodes": 0, **eval_policy(Path(args.base), args.task, args.eval_episodes)}]
    policy, rollouts = Path(args.base), []
    for k in range(args.episodes // args.eval_every):
        seeds = [seed * 1_000_003 + k * args.eval_every + i for i in range(args.eval_every)]
        rollouts.append(out / f"rollouts_{k}")
        if not (rollouts[-1] / "meta" / "info.json").is_file():
            record_rollouts(policy, args.task, seeds, rollouts[-1])
        policy = out / f"bc_{k}"
        run([str(ROOT / ".venv/bin/robo-reward"), "train-bc", f"--dataset={args.dataset}", f"--out={policy}",
             f"--add-successes={','.join(map(str, rollouts))}", f"--steps={args.bc_steps}", f"--seed={seed}",
             "--chunk=10", "--wandb=false", "--progress-bar=false"], out / "log.txt")
        curve.append({"online_episodes": (k + 1) * args.eval_every, **eval_policy(policy, args.task, args.eval_episodes)})
    done.write_text(json.dumps(curve, indent=2))
    print(f"  filtered_bc seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def summarize(args, seeds: list[int], variants: list[str], base: dict, wall: float) -> dict:
    from robo_reward.stats import bootstrap_mean_ci, wilson_interval

    res: dict = {"task": args.task, "dataset": args.dataset, "base": args.base, "reward_model": args.reward_model,
                 "seeds": seeds, "episodes": args.episodes, "eval_every": args.eval_every,
                 "eval_episodes": args.eval_episodes, "eval_seed": EVAL_SEED, "wall_s": wall,
                 "base_policy": base, "variants": {}}
    for v in variants:
        runs = []
        for s in seeds:
            out = Path(args.runs) / v / f"seed{s}"
            if v == "filtered_bc":
                curve = json.loads((out / "curve.json").read_text()) if (out / "curve.json").is_file() else None
            else:
                curve = curve_of_rl(out) if (out / "summary.json").is_file() else None
            if curve is not None:
                summ = json.loads((out / "summary.json").read_text()) if v != "filtered_bc" else {}
                runs.append({"seed": s, "curve": curve, "wall_s": summ.get("wall_s"),
                             "env_steps_per_s": summ.get("env_steps_per_s"), "time_s": summ.get("time_s"),
                             "render_s": summ.get("render_s"), "potential_s": summ.get("potential_s")})
        if not runs:
            continue
        points = sorted({p["online_episodes"] for r in runs for p in r["curve"]})
        table = []
        for n in points:
            rates = [next(p["success_rate"] for p in r["curve"] if p["online_episodes"] == n) for r in runs
                     if any(p["online_episodes"] == n for p in r["curve"])]
            pooled = [x for r in runs for p in r["curve"] if p["online_episodes"] == n for x in p["successes"]]
            row = {"online_episodes": n, "mean": float(np.mean(rates)), "ci95": bootstrap_mean_ci(rates),
                   "ci95_episodes": wilson_interval(int(sum(pooled)), len(pooled)), "per_seed": rates}
            online = [p.get("online_success_since_last") for r in runs for p in r["curve"]
                      if p["online_episodes"] == n and p.get("online_success_since_last") is not None]
            if online:
                row["online_success_since_last"] = float(np.mean(online))
            for k in ("phi_true_corr", "phi_true_corr_frozen"):
                vals = [p.get(k) for r in runs for p in r["curve"] if p["online_episodes"] == n and p.get(k) is not None]
                if vals:
                    row[k] = float(np.mean(vals))
            table.append(row)
        res["variants"][v] = {"runs": runs, "curve": table}
    res["comparisons"] = compare(res)
    return res


def final_successes(res: dict, v: str) -> dict[int, list[bool]]:
    """Seed -> the per-episode outcomes at the last evaluation point of variant ``v``."""
    return {r["seed"]: r["curve"][-1]["successes"] for r in res["variants"].get(v, {}).get("runs", [])}


def compare(res: dict) -> dict:
    """learned_refit against each other variant at the end: seed by seed, and the difference of mean
    success with a bootstrap interval over the paired (same seed, same eval episode) outcomes."""
    from robo_reward.stats import bootstrap_mean_ci

    out = {}
    mine = final_successes(res, "learned_refit")
    for other in res["variants"]:
        if other == "learned_refit" or not mine:
            continue
        theirs = final_successes(res, other)
        seeds = sorted(set(mine) & set(theirs))
        if not seeds:
            continue
        diffs = np.concatenate([np.asarray(mine[s], float) - np.asarray(theirs[s], float) for s in seeds])
        per_seed = [float(np.mean(mine[s]) - np.mean(theirs[s])) for s in seeds]
        out[f"learned_refit_minus_{other}"] = {"mean": float(diffs.mean()), "ci95_paired_episodes": bootstrap_mean_ci(diffs),
                                               "per_seed": per_seed, "wins": int(sum(d > 0 for d in per_seed)),
                                               "seeds": seeds}
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"sparse": "#999999", "dense": "#2ca25f", "learned": "#f28e2b", "learned_refit": "#3a7bd5",
              "filtered_bc": "#b07aa1"}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    for v, d in res["variants"].items():
        for k, ls in (("phi_true_corr", "-o"), ("phi_true_corr_frozen", ":")):
            pts = [(p["online_episodes"], p[k]) for p in d["curve"] if k in p]
            if pts and not (k == "phi_true_corr_frozen" and v != "learned_refit"):
                ax2.plot(*zip(*pts, strict=True), ls, ms=3, color=colors.get(v),
                         label=f"{v}{' (model as given)' if k.endswith('frozen') else ''}")
        x = [p["online_episodes"] for p in d["curve"]]
        m = np.array([p["mean"] for p in d["curve"]])
        key = "ci95" if len(d["runs"]) > 1 else "ci95_episodes"  # one seed: the interval over its episodes
        lo, hi = np.array([p[key][0] for p in d["curve"]]), np.array([p[key][1] for p in d["curve"]])
        ax.plot(x, m, "-o", ms=3, color=colors.get(v), label=f"{v} ({len(d['runs'])} seeds)")
        ax.fill_between(x, lo, hi, color=colors.get(v), alpha=0.15)
    b = res["base_policy"]
    ax.axhline(b["success_rate"], color="k", ls="--", lw=1, label=f"base policy ({b['episodes']} episodes)")
    ax.set_xlabel("online episodes")
    ax.set_ylabel(f"success ({res['eval_episodes']} seeded episodes)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{res['task']}: fine-tuning a cloned policy")
    ax.legend(fontsize=7, loc="upper left")
    ax2.set_xlabel("online episodes")
    ax2.set_ylabel("Pearson(learned Phi, true progress)")
    ax2.set_ylim(0, 1.02)
    ax2.set_title("learned Phi along the current policy's rollouts", fontsize=9)
    ax2.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pick_place")
    p.add_argument("--dataset", default="datasets/so101_pick_place")
    p.add_argument("--base", default="outputs/bc/pp_state", help="train-bc run every variant starts from")
    p.add_argument("--reward-model", default="outputs/reward/pp_w1")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default="sparse,dense,learned,learned_refit,filtered_bc")
    p.add_argument("--episodes", type=int, default=150, help="online episodes per run")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--base-episodes", type=int, default=100)
    p.add_argument("--refit-every", type=int, default=25)
    p.add_argument("--phi-episodes", type=int, default=3)
    p.add_argument("--num-envs", type=int, default=2)
    p.add_argument("--utd", type=float, default=1.0)
    p.add_argument("--actor-warmup", type=int, default=2000)
    p.add_argument("--residual-scale", type=float, default=0.3)
    p.add_argument("--residual-scale-start", type=float, default=0.1)
    p.add_argument("--bc-steps", type=int, default=3000)
    p.add_argument("--extra", default="", help="more flags for every rl run")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--runs", default="outputs/bench_finetune")
    p.add_argument("--out", default="")
    p.add_argument("--resummarize", action="store_true")
    args = p.parse_args()
    import datasets

    datasets.disable_progress_bars()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    t0 = time.perf_counter()
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    base_json = runs / "base.json"
    if not base_json.is_file() and not args.resummarize:
        b = eval_policy(Path(args.base), args.task, args.base_episodes)
        base_json.write_text(json.dumps({**b, "episodes": args.base_episodes}))
    base = json.loads(base_json.read_text())
    if not args.resummarize:
        jobs = [(v, s) for s in seeds for v in variants]
        with ThreadPoolExecutor(args.parallel) as pool:
            futs = [pool.submit(filtered_bc_run if v == "filtered_bc" else rl_run, *((s, args) if v == "filtered_bc"
                                                                                      else (v, s, args)))
                    for v, s in jobs]
            for f in futs:
                f.result()
    res = summarize(args, seeds, variants, {k: base[k] for k in ("success_rate", "episodes")}, time.perf_counter() - t0)
    out = Path(args.out or ROOT / f"benchmarks/results/rl_finetune_{args.task}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    plot(res, out.with_suffix(".png"))
    for v, d in res["variants"].items():
        last = d["curve"][-1]
        corr = f", phi~truth {last['phi_true_corr']:.2f}" if "phi_true_corr" in last else ""
        ci = last["ci95"] if len(d["runs"]) > 1 else last["ci95_episodes"]
        print(f"{v:>14}: {' '.join(f'{q['mean']:.2f}' for q in d['curve'])} (final {last['mean']:.2f} "
              f"[{ci[0]:.2f}, {ci[1]:.2f}]{corr}; online {last.get('online_success_since_last', float('nan')):.2f})")
    for k, c in res["comparisons"].items():
        print(f"{k}: {c['mean']:+.3f} [{c['ci95_paired_episodes'][0]:+.3f}, {c['ci95_paired_episodes'][1]:+.3f}], "
              f"wins {c['wins']}/{len(c['seeds'])}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
