"""Where does an RL policy park, by the learned potential and by the truth? Rolls out the
deterministic policy of an `robo-reward rl` run with the reward model it was trained on (the
cameras it reads rendered every step) and logs, per frame, the learned progress Phi next to the
sim's ground-truth progress. A policy trained on a learned Phi that parks where the learned Phi
is well above the truth has found states the model over-rates.

    python benchmarks/learned_vs_true_phi.py outputs/bench_rl_v4/push/learned_pbrs/seed0 \
        --reward-model=outputs/reward/push_v3 --episodes=10

With ``--state-ablation`` (a model that reads proprioception), Phi is also computed with the joint
state held at the episode's reset pose while the cameras show the real frames: where that Phi
stays near zero, the model's progress comes from the arm's joints, which the RL policy sets
directly, not from what the cameras show of the task.

Writes benchmarks/results/learned_vs_true_phi_<task>.json and a plot of both curves per episode.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


class StateFrozen:
    """The potential as the shaper sees it, plus the same model run beside it on the same frames
    with the joint state held at the reset pose (``frozen`` logs that Phi per call)."""

    def __init__(self, potential, twin):
        self.potential, self.twin = potential, twin
        self.home = None
        self.frozen: list[float] = []

    def __getattr__(self, name):
        return getattr(self.potential, name)

    def __call__(self, obs, first, active=None):
        phi = self.potential(obs, first, active)
        if first[0]:
            self.home = np.array(obs["agent_pos"], copy=True)
        self.frozen.append(float(self.twin({**obs, "agent_pos": self.home}, first, active)[0]))
        return phi


def rollouts(run: Path, reward_model: str, episodes: int, seed: int, state_ablation: bool = False) -> dict:
    from robo_reward.policies.sb3 import SB3Policy
    from robo_reward.rl.envs import make_vec_env
    from robo_reward.rl.potentials import LearnedPotential
    from robo_reward.rl.shaping import Shaper

    cfg = json.loads((run / "config.json").read_text())
    policy = SB3Policy(run)
    runs = [r for r in reward_model.split(",") if r]
    potential = LearnedPotential.from_runs(runs, num_envs=1)
    if state_ablation:
        if not potential.needs_state:
            raise ValueError(f"--state-ablation: {reward_model} reads no proprioception (use_state is false)")
        potential = StateFrozen(potential, LearnedPotential.from_runs(runs, num_envs=1))
    venv = make_vec_env(cfg["task"], 1, potential, Shaper("none"), seed=seed,
                        max_episode_steps=cfg.get("max_episode_steps"))
    eps = []
    for _ in range(episodes):
        if state_ablation:
            potential.frozen.clear()
        obs = venv.reset()
        learned = [float(venv._phi[0])]  # the shaper's Phi of the reset frame
        spread = []  # ensemble std per frame (several --reward-model runs), the reset frame's left out
        true = [float(venv.venv.reset_infos[0]["progress"])]
        success = False
        while True:
            action, _ = policy.model.predict(obs, deterministic=True)
            obs, _r, done, info = venv.step(action)
            learned.append(float(info[0]["phi"]))
            true.append(float(info[0]["progress"]))  # the step's info: right even when the env has reset
            if done[0]:
                success = bool(info[0]["success"])
                break
            if potential.disagreement() is not None:
                spread.append(float(potential.disagreement()[0]))
        learned_a, true_a = np.array(learned), np.array(true)
        tail = slice(-min(20, len(learned_a)), None)
        if state_ablation:  # calls: reset frame, then per step Phi(s') (and a reset frame after done)
            frozen = np.array(potential.frozen[:len(learned_a)])
            eps_extra = {"learned_state_frozen": frozen.round(4).tolist(),
                         "learned_state_frozen_final": float(frozen[tail].mean())}
        else:
            eps_extra = {}
        eps.append({**eps_extra, "success": success, "length": len(learned) - 1, "learned": learned_a.round(4).tolist(),
                    "true": true_a.round(4).tolist(), "learned_final": float(learned_a[tail].mean()),
                    "true_final": float(true_a[tail].mean()),
                    "over_rating_final": float(learned_a[tail].mean() - true_a[tail].mean()),
                    "spread": np.round(spread, 4).tolist()})
    venv.close()
    spread_where = None
    if any(e["spread"] for e in eps):  # is the ensemble less sure where it over-rates the state?
        over = np.concatenate([np.array(e["learned"][1:len(e["spread"]) + 1]) - e["true"][1:len(e["spread"]) + 1]
                               for e in eps])
        sp = np.concatenate([e["spread"] for e in eps])
        spread_where = {"over_rated_by_0.3": float(sp[over > 0.3].mean()) if (over > 0.3).any() else None,
                        "within_0.1": float(sp[np.abs(over) < 0.1].mean()) if (np.abs(over) < 0.1).any() else None}
    failed = [e for e in eps if not e["success"]]
    return {"run": str(run), "reward_model": reward_model, "task": cfg["task"], "reward": cfg["reward"],
            "shaping": cfg["shaping"], "episodes": eps, "ensemble_spread": spread_where,
            "success_rate": float(np.mean([e["success"] for e in eps])),
            "mean_learned_state_frozen": (float(np.mean(np.concatenate([e["learned_state_frozen"] for e in eps])))
                                          if state_ablation else None),
            "mean_learned": float(np.mean(np.concatenate([e["learned"] for e in eps]))),
            "failed_mean_learned_final": float(np.mean([e["learned_final"] for e in failed])) if failed else None,
            "failed_mean_true_final": float(np.mean([e["true_final"] for e in failed])) if failed else None,
            "correlation": _corr(np.concatenate([e["learned"] for e in eps]), np.concatenate([e["true"] for e in eps]))}


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation, None where either side is constant."""
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else None


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(r["episodes"]) for r in results)
    fig, axes = plt.subplots(len(results), n, figsize=(2.2 * n, 2.2 * len(results)), squeeze=False, sharey=True)
    for row, r in zip(axes, results, strict=True):
        for ax, e in zip(row, r["episodes"], strict=False):
            ax.plot(e["learned"], label="learned Phi")
            ax.plot(e["true"], label="true progress")
            if "learned_state_frozen" in e:
                ax.plot(e["learned_state_frozen"], ":", label="learned, joints frozen")
            ax.set_title(("success" if e["success"] else "fail") + f", {e['length']} steps", fontsize=8)
            ax.set_ylim(-0.02, 1.02)
        row[0].set_ylabel(Path(r["run"]).parent.name + "/" + Path(r["run"]).name, fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="robo-reward rl run directories")
    p.add_argument("--reward-model", required=True,
                   help="train-reward run whose Phi is compared with the truth (comma-separated: an ensemble, "
                        "its mean Phi and per-frame spread)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=10_000)
    p.add_argument("--state-ablation", action="store_true",
                   help="also compute Phi with the joint state held at the reset pose (models with use_state)")
    p.add_argument("--out", default="benchmarks/results/learned_vs_true_phi_{task}.json")
    args = p.parse_args()
    results = [rollouts(run, args.reward_model, args.episodes, args.seed, args.state_ablation) for run in args.runs]
    out = Path(args.out.format(task=results[0]["task"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"episodes": args.episodes, "seed": args.seed, "results": results}, indent=1))
    plot(results, out.with_suffix(".png"))
    for r in results:
        print(f"{r['run']}: success {r['success_rate']:.2f}; failed episodes end at learned Phi "
              f"{r['failed_mean_learned_final']} vs true {r['failed_mean_true_final']}; corr {r['correlation']}; "
              f"ensemble spread {r['ensemble_spread']}"
              + (f"; mean Phi {r['mean_learned']:.3f}, joints frozen {r['mean_learned_state_frozen']:.3f}"
                 if r["mean_learned_state_frozen"] is not None else ""))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
