"""Does a learned progress Phi track the truth on states the demonstrations never show? RL
visits such states all the time: an arm that wanders, stalls, or comes back after a detour.

Rolls out behaviours that are *not* the demonstrations, renders the reward models' cameras every
step, and logs each model's Phi beside the sim's ground-truth progress (the dense baseline's
potential). All models read the same frames, side by side in one run:

- ``expert``: the clean scripted expert (in distribution, the reference);
- ``stall``: the clean expert for a random 0-30 steps, then the arm holds still to the end;
- ``noisy``: the expert with heavy action noise (std 0.6, demos use at most 0.3);
- ``random``: smoothed random actions (what an RL policy does early on);
- ``random_then_expert``: random for 25 steps, then the expert from wherever the arm is.

Per model and behaviour: Pearson correlation of Phi with the truth, mean absolute error, mean
over-rating (Phi - truth), the correlation of per-step changes (what PBRS feeds the learner), and,
for ``stall``, the drift of Phi while nothing moves (the truth's drift there is 0).

    python benchmarks/phi_off_distribution.py --task=push \
        --reward-model=outputs/reward/push_v3_video,outputs/reward/push_w1 --episodes=8
    # an ensemble (mean Phi of its members): outputs/reward/a+outputs/reward/b

Writes benchmarks/results/phi_off_distribution_<task>.json and a plot (Phi and truth per
behaviour, one row per model).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from learned_vs_true_phi import _corr  # benchmarks/ is on sys.path when a benchmark runs as a script
from tqdm import tqdm

BEHAVIOURS = ("expert", "stall", "noisy", "random", "random_then_expert")


class Behaviour:
    """One episode's action source: the scripted expert, whose ``wander_steps`` knob (the random
    walk of ``collect --quality=recovery``) gives the random behaviours, or the expert then a stall."""

    def __init__(self, name: str, task: str, env, rng: np.random.Generator, seed: int):
        from sim.experts import ExpertQuality, make_expert

        self.env = env
        wander = {"random": 10**9, "random_then_expert": 25}.get(name, 0)
        self.expert = make_expert(task, ExpertQuality(action_noise=0.6 if name == "noisy" else 0.0,
                                                      wander_steps=wander), seed=seed)
        self.stall_at = int(rng.integers(0, 31)) if name == "stall" else None
        self.t = 0
        self.hold = None

    def act(self) -> np.ndarray:
        t, self.t = self.t, self.t + 1
        if self.stall_at is not None and t >= self.stall_at:
            if self.hold is None:  # stand still, the jaws as they are
                self.hold = np.zeros(self.env.action_space.shape[0], dtype=np.float32)
                self.hold[-1] = self.expert.phase.gripper
            return self.hold
        return self.expert.act(self.env)


def rollouts(task: str, runs: list[str], behaviours: list[str], episodes: int, steps: int, seed: int,
             progress: bool = True) -> dict:
    from robo_reward.rl.potentials import LearnedPotential
    from sim.tasks import make_env

    pots = {r: LearnedPotential.from_runs(r.split("+"), num_envs=1) for r in runs}  # a+b: an ensemble
    cameras = tuple(dict.fromkeys(c for p in pots.values() for c in p.cameras))
    env = make_env(task, cameras=cameras, width=64, height=64, max_episode_steps=steps)
    out: dict[str, list[dict]] = {b: [] for b in behaviours}
    render_s = phi_s = 0.0
    bar = tqdm(total=len(behaviours) * episodes, desc=f"phi off-distribution ({task})", disable=not progress,
               unit="ep")
    for bi, b in enumerate(behaviours):
        for e in range(episodes):
            ep_seed = seed + 1000 * bi + e
            rng = np.random.default_rng(ep_seed)
            t0 = time.perf_counter()
            obs, info = env.reset(seed=ep_seed)
            render_s += time.perf_counter() - t0
            pol = Behaviour(b, task, env, rng, ep_seed)
            true, phi = [float(info["progress"])], {r: [] for r in runs}
            first = np.array([True])
            success = False
            while True:
                t0 = time.perf_counter()
                for r, p in pots.items():
                    phi[r].append(float(p({"pixels": {c: obs["pixels"][c][None] for c in p.cameras}}, first)[0]))
                phi_s += time.perf_counter() - t0
                first = np.array([False])
                if len(true) > steps:
                    break
                t0 = time.perf_counter()
                obs, _r, terminated, truncated, info = env.step(pol.act())
                render_s += time.perf_counter() - t0
                true.append(float(info["progress"]))
                success = success or bool(info["success"])
                if terminated or truncated:
                    t0 = time.perf_counter()
                    for r, p in pots.items():
                        phi[r].append(float(p({"pixels": {c: obs["pixels"][c][None] for c in p.cameras}},
                                              first)[0]))
                    phi_s += time.perf_counter() - t0
                    break
            out[b].append({"seed": ep_seed, "success": success, "true": np.round(true, 4).tolist(),
                           "stall_at": pol.stall_at, "phi": {r: np.round(v, 4).tolist() for r, v in phi.items()}})
            bar.update(1)
    bar.close()
    env.close()
    return {"episodes": out, "sim_and_render_s": render_s, "reward_inference_s": phi_s}


def metrics(eps: list[dict], run: str, window_span: int) -> dict:
    L = np.concatenate([e["phi"][run] for e in eps])
    T = np.concatenate([e["true"] for e in eps])
    dL = np.concatenate([np.diff(e["phi"][run]) for e in eps])
    dT = np.concatenate([np.diff(e["true"]) for e in eps])
    moving = np.abs(dT) > 0.005
    m = {"frames": int(L.size), "success_rate": float(np.mean([e["success"] for e in eps])),
         "corr": _corr(L, T), "mae": float(np.abs(L - T).mean()), "over_rating": float((L - T).mean()),
         "delta_corr": _corr(dL, dT),
         "delta_sign_agreement": float((np.sign(dL[moving]) == np.sign(dT[moving])).mean()) if moving.any() else None}
    stalls = [e for e in eps if e["stall_at"] is not None]
    if stalls:
        # from one window after the stall (the model has seen only still frames by then) to the end
        drift = [e["phi"][run][-1] - e["phi"][run][min(e["stall_at"] + window_span, len(e["true"]) - 1)]
                 for e in stalls]
        true_drift = [e["true"][-1] - e["true"][min(e["stall_at"] + window_span, len(e["true"]) - 1)] for e in stalls]
        m["stall_drift"] = float(np.mean(drift))
        m["stall_abs_drift"] = float(np.mean(np.abs(drift)))
        m["stall_true_drift"] = float(np.mean(true_drift))
    return m


def plot(res: dict, runs: list[str], behaviours: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), len(behaviours), figsize=(3.0 * len(behaviours), 2.4 * len(runs)),
                             squeeze=False, sharey=True)
    for row, run in zip(axes, runs, strict=True):
        for ax, b in zip(row, behaviours, strict=True):
            for i, e in enumerate(res["episodes"][b][:4]):
                (ln,) = ax.plot(e["phi"][run], lw=1.2, label="learned Phi" if i == 0 else None)
                ax.plot(e["true"], "--", lw=1.0, color=ln.get_color(), label="truth" if i == 0 else None)
            mm = res["metrics"][run][b]
            ax.set_title(f"{b}: r={mm['corr'] if mm['corr'] is None else round(mm['corr'], 2)}, "
                         f"mae={mm['mae']:.2f}", fontsize=8)
            ax.set_ylim(-0.02, 1.02)
        row[0].set_ylabel("+".join(Path(r).name for r in run.split("+")), fontsize=7)
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("frame (solid: learned Phi, dashed: ground truth; 4 episodes each)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="push")
    p.add_argument("--reward-model", required=True,
                   help="comma-separated train-reward runs, compared side by side; a+b+c: an ensemble (mean Phi)")
    p.add_argument("--behaviours", default=",".join(BEHAVIOURS))
    p.add_argument("--episodes", type=int, default=8, help="per behaviour")
    p.add_argument("--steps", type=int, default=80, help="episode length (the RL benchmark's max_episode_steps)")
    p.add_argument("--seed", type=int, default=20_000)
    p.add_argument("--out", default="benchmarks/results/phi_off_distribution_{task}.json")
    args = p.parse_args()
    runs = [r for r in args.reward_model.split(",") if r]
    behaviours = [b for b in args.behaviours.split(",") if b]
    bad = sorted(set(behaviours) - set(BEHAVIOURS))
    if bad:
        raise SystemExit(f"--behaviours: unknown {bad}; expected a subset of {list(BEHAVIOURS)}")
    t0 = time.perf_counter()
    res = rollouts(args.task, runs, behaviours, args.episodes, args.steps, args.seed)
    from robo_reward.reward.modeling import ProcessRewardModel

    spans = {r: (lambda c: (c.window - 1) * c.frame_gap + 1)(ProcessRewardModel.load(r.split("+")[0]).config)
             for r in runs}
    res["metrics"] = {r: {b: metrics(res["episodes"][b], r, spans[r]) for b in behaviours} for r in runs}
    res["metrics_all"] = {r: metrics([e for b in behaviours for e in res["episodes"][b]], r, spans[r]) for r in runs}
    out = Path(args.out.format(task=args.task))
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"task": args.task, "reward_models": runs, "behaviours": behaviours, "episodes": args.episodes,
           "steps": args.steps, "seed": args.seed, "wall_s": time.perf_counter() - t0, **res}
    out.write_text(json.dumps(doc, indent=1))
    plot(res, runs, behaviours, out.with_suffix(".png"))
    for r in runs:
        print(f"== {r}")
        for b in [*behaviours, "all"]:
            m = res["metrics_all"][r] if b == "all" else res["metrics"][r][b]
            fmt = lambda x: "  -  " if x is None else f"{x:+.2f}"  # noqa: E731
            print(f"  {b:20s} corr {fmt(m['corr'])}  dcorr {fmt(m['delta_corr'])}  mae {m['mae']:.3f}  "
                  f"over {m['over_rating']:+.3f}" + (f"  stall drift {m['stall_drift']:+.3f} (truth "
                                                      f"{m['stall_true_drift']:+.3f})" if "stall_drift" in m else ""))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
