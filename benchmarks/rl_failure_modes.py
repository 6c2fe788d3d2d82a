"""How do RL policies on push fail? Rolls out the deterministic policy of each `robo-reward rl` run
on seeded episodes (state only, no cameras) and sorts every failed episode into one of these modes,
by its last 10 steps and the sim's ground truth:

- ``jammed``: the policy commands sideways motion (mean |dx, dy| action > 0.1), the TCP does not
  move (< 2 mm over the 10 steps), and the gripper touches the table: pressed into it, held by
  friction;
- ``parked``: the TCP does not move and the gripper is off the table (the policy's own fixed point);
- ``lost``: the block was pushed at least half way (true progress >= 0.5 at some step), then went
  off the goal again (the episode ends at least 0.3 below that peak): an overshoot or a push off
  the line;
- ``short``: the episode ends with the block at least half way, still moving;
- ``never_reached``: none of the above (the push never got half way).

    python benchmarks/rl_failure_modes.py outputs/bench_rl_v10/push/{sparse,dense_pbrs}/seed{0,1,2} \
        --episodes=20 --out=benchmarks/results/rl_failure_modes_push.json

``--stochastic`` samples the policy's actions instead of taking its mean: where that succeeds far
more often, the parking is a fixed point of the mean action, not a lack of skill.

``--tcp-floor=Z`` sets the floor (metres) of the TCP target's workspace for the rollouts, to replay
policies trained before it moved (8 mm then, 12 mm now) under the conditions they were trained in.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

MODES = ("jammed", "parked", "lost", "short", "never_reached")


def failure_mode(tcp: np.ndarray, actions: np.ndarray, progress: np.ndarray, on_table: bool) -> str:
    """``tcp`` (T+1, 3), ``actions`` (T, 4), ``progress`` (T,) of one failed episode."""
    still = float(np.linalg.norm(tcp[-1] - tcp[-11])) < 0.002
    steering = float(np.mean(np.linalg.norm(actions[-10:, :2], axis=1))) > 0.1
    if still and steering and on_table:
        return "jammed"
    if still and not on_table:
        return "parked"
    peak = float(progress.max())
    if peak >= 0.5 and progress[-1] <= peak - 0.3:
        return "lost"
    if progress[-1] >= 0.5:
        return "short"
    return "never_reached"


def run_modes(run: Path, episodes: int, seed: int, stochastic: bool = False) -> dict:
    from robo_reward.policies.sb3 import SB3Policy
    from robo_reward.rl.observation import RLObservation
    from sim.tasks import make_env

    cfg = json.loads((run / "config.json").read_text())
    if cfg["task"] != "push":
        raise ValueError(f"{run}: task {cfg['task']!r}; this script reads push's ground truth")
    policy = SB3Policy(run, deterministic=not stochastic)
    env = RLObservation(make_env("push", cameras=(), max_episode_steps=cfg.get("max_episode_steps")))
    base = env.unwrapped
    modes: Counter = Counter()
    per_episode = []
    for k in range(episodes):
        obs, info = env.reset(seed=seed + k)
        tcp, acts, prog = [base.tcp_pos], [], []
        done = success = False
        while not done:
            a = np.clip(policy.act(obs), env.action_space.low, env.action_space.high)
            obs, _, term, trunc, info = env.step(a)
            tcp.append(base.tcp_pos)
            acts.append(a)
            prog.append(info["progress"])
            success = success or info["success"]
            done = term or trunc
        mode = "success" if success else failure_mode(np.array(tcp), np.array(acts), np.array(prog),
                                                       base.gripper_on_table())
        modes[mode] += 1
        d_goal = float(np.linalg.norm(base.body_pos("block")[:2] - base.goal_pos[:2]))
        per_episode.append({"seed": seed + k, "mode": mode, "length": len(acts), "peak_progress": float(max(prog)),
                            "final_progress": float(prog[-1]), "final_block_to_goal_m": d_goal,
                            "final_tcp_z_m": float(tcp[-1][2]),
                            "last10_xy_action": float(np.mean(np.linalg.norm(np.array(acts)[-10:, :2], axis=1))),
                            "last10_z_action": float(np.mean(np.array(acts)[-10:, 2]))})
    env.close()
    return {"run": str(run), "stochastic": stochastic, "reward": cfg["reward"], "shaping": cfg["shaping"], "seed": cfg["seed"],
            "episodes": episodes, "success_rate": modes["success"] / episodes,
            "modes": {m: modes[m] for m in ("success", *MODES)}, "per_episode": per_episode}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=10_000)
    p.add_argument("--tcp-floor", type=float, default=None)
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the mean")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rl_failure_modes_push.json"))
    args = p.parse_args()
    if args.tcp_floor is not None:
        import robo_reward.embodiments.so101.kinematics

        robo_reward.embodiments.so101.kinematics.TCP_BOUNDS[0, 2] = args.tcp_floor
    from robo_reward.embodiments.so101.kinematics import TCP_BOUNDS

    results = [run_modes(r, args.episodes, args.seed, args.stochastic) for r in args.runs]
    by_variant: dict[str, Counter] = {}
    for r in results:
        by_variant.setdefault(f"{r['reward']}_{r['shaping']}", Counter()).update(r["modes"])
        print(f"{r['run']}: success {r['success_rate']:.2f}  " + "  ".join(f"{m} {n}" for m, n in r["modes"].items()))
    out = {"episodes": args.episodes, "seed": args.seed, "stochastic": args.stochastic, "tcp_floor_m": float(TCP_BOUNDS[0, 2]),
           "by_variant": {k: dict(v) for k, v in by_variant.items()}, "runs": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    for k, v in by_variant.items():
        print(f"{k}: " + "  ".join(f"{m} {v[m]}" for m in ("success", *MODES)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
