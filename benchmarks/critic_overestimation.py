"""Does an `robo-reward rl` SAC critic overestimate? Rolls out the run's deterministic policy and
compares the critic's Q(s, pi(s)) with the discounted return that actually followed, in the run's
own (shaped) reward: the env reward plus lambda * (gamma * Phi(s') - Phi(s)), ground-truth Phi
for dense runs, and the sparse reward for sparse runs. Learned-reward runs are scored with the
ground-truth Phi as a stand-in (no rendering). Truncated tails are not bootstrapped, so the
realised return of a frozen policy is what standing still earns.

    python benchmarks/critic_overestimation.py outputs/bench_rl_v3/push/sparse/seed0 \
        outputs/bench_rl_v3/push/dense_pbrs/seed0 --episodes 5

Writes benchmarks/results/critic_overestimation.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def score(run: Path, episodes: int) -> dict:
    from robo_reward.policies.sb3 import SB3Policy
    from robo_reward.rl.observation import RLObservation
    from robo_reward.rl.shaping import Shaper
    from sim.tasks import make_env

    cfg = json.loads((run / "config.json").read_text())
    policy = SB3Policy(run)
    model = policy.model
    gamma = float(cfg["gamma"])
    shaping = "none" if cfg["reward"] == "sparse" else cfg["shaping"]
    shaper = Shaper(shaping, cfg.get("shaping_gamma") or gamma, cfg.get("shaping_scale", 1.0),
                    value_horizon=cfg.get("value_horizon", 0.0))
    env = RLObservation(make_env(policy.meta["task"], cameras=()), include_progress=True)
    q_all, g_all, successes, frozen = [], [], 0, 0
    for k in range(episodes):
        obs, info = env.reset(seed=10_000 + k)
        qs, rewards = [], []
        phi = info["progress"]
        for _ in range(env.unwrapped.horizon):
            a = policy.act(obs)
            with torch.no_grad():
                o = torch.as_tensor(obs["state"][None], dtype=torch.float32)
                qs.append(float(torch.min(torch.cat(model.critic(o, torch.as_tensor(a[None])), dim=1))))
            obs, r, terminated, truncated, info = env.step(a)
            shaped, _ = shaper(np.array([r]), np.array([phi]), np.array([info["progress"]]), np.array([terminated]))
            rewards.append(float(shaped[0]))
            phi = info["progress"]
            if terminated or truncated:
                break
        successes += int(info["success"])
        # frozen: a failed episode whose last 20 rewards are all the same (the arm stands still)
        frozen += int(not info["success"] and len(rewards) >= 20 and np.allclose(rewards[-20:], rewards[-1], atol=1e-4))
        g, returns = 0.0, []
        for rr in reversed(rewards):
            g = rr + gamma * g
            returns.append(g)
        q_all += qs
        g_all += returns[::-1]
    q, g = np.array(q_all), np.array(g_all)
    return {"run": str(run), "reward": cfg["reward"], "shaping": shaping, "lambda": cfg.get("shaping_scale", 1.0),
            "episodes": episodes, "successes": successes, "frozen_episodes": frozen,
            "q_mean": float(q.mean()), "q_max": float(q.max()), "realised_return_mean": float(g.mean()),
            "overestimation_mean": float((q - g).mean())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--episodes", type=int, default=5)
    p.add_argument("--out", default="benchmarks/results/critic_overestimation.json")
    args = p.parse_args()
    results = [score(r, args.episodes) for r in args.runs]
    for r in results:
        print(f"{r['run']}: success {r['successes']}/{r['episodes']}, frozen {r['frozen_episodes']}, "
              f"Q {r['q_mean']:.2f} (max {r['q_max']:.2f}) vs realised {r['realised_return_mean']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
