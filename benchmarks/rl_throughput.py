"""Where the time goes in an RL step with the learned reward, and what batching, token caching
and rendering only the model's cameras save. Measured side by side in one process.

    python benchmarks/rl_throughput.py --model outputs/reward/push_default --task push --envs 4 --steps 200

Configurations (all step ``--envs`` sim envs with random actions, no learner):
- ``sparse``: no rendering, no reward model (the floor);
- ``all_cams_full_window_unbatched``: render every camera, run the model on the whole window of
  each env separately (the naive way);
- ``model_cams_full_window_batched``: render only the model's cameras, one batched call over envs;
- ``model_cams_cached_batched``: as above with the per-frame token cache (what `robo-reward rl` does).
Writes benchmarks/results/rl_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def run(task: str, envs: int, steps: int, model_dir: str | None, mode: str) -> dict:
    from robo_reward.reward.modeling import ProcessRewardModel
    from robo_reward.rl.potentials import LearnedPotential
    from sim.scene import CAMERAS
    from sim.tasks import make_env

    model = ProcessRewardModel.load(model_dir) if model_dir else None
    cams: tuple[str, ...] = ()
    if mode.startswith("all_cams"):
        cams = CAMERAS
    elif model is not None and mode != "sparse":
        cams = tuple(model.config.cameras)
    es = [make_env(task, cameras=cams) for _ in range(envs)]
    rng = np.random.default_rng(0)
    obs = [e.reset(seed=i)[0] for i, e in enumerate(es)]
    for e in es:  # renderer creation at the first reset is a one-off; do not count it
        e.render_seconds = 0.0
    pot = LearnedPotential(model, num_envs=envs) if mode.endswith("cached_batched") else None
    hist: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(envs)]  # (frames, joints)
    t_model = 0.0
    t0 = time.perf_counter()
    for step in range(steps):
        for i, e in enumerate(es):
            obs[i], _, term, trunc, _ = e.step(rng.uniform(-1, 1, 4).astype(np.float32))
            if term or trunc:
                obs[i] = e.reset(seed=1000 + step * envs + i)[0]
        if mode == "sparse":
            continue
        tm = time.perf_counter()
        mc = model.config.cameras
        frames = [np.stack([o["pixels"][c] for c in mc]) for o in obs]  # (V, H, W, 3)
        if pot is not None:
            pot({"pixels": {c: np.stack([o["pixels"][c] for o in obs]) for c in mc},
                 "agent_pos": np.stack([o["agent_pos"] for o in obs])}, np.full(envs, step == 0))
        else:
            span = (model.config.window - 1) * model.config.frame_gap + 1
            wins, qs = [], []
            for i in range(envs):
                hist[i] = (hist[i] + [(frames[i], obs[i]["agent_pos"])])[-span:]
                idx = [max(len(hist[i]) - 1 - model.config.frame_gap * k, 0)
                       for k in range(model.config.window - 1, -1, -1)]
                wins.append(np.stack([hist[i][j][0] for j in idx]))
                qs.append(np.stack([hist[i][j][1] for j in idx]))
            with torch.no_grad():
                if mode.endswith("unbatched"):
                    for w, q in zip(wins, qs, strict=True):
                        model.progress(w[None], state=q[None])
                else:
                    model.progress(np.stack(wins), state=np.stack(qs))
        t_model += time.perf_counter() - tm
    wall = time.perf_counter() - t0
    render = sum(e.render_seconds for e in es)
    for e in es:
        e.close()
    n = steps * envs
    return {"mode": mode, "cameras_rendered": list(cams), "env_steps_per_s": n / wall,
            "ms_per_env_step": 1000 * wall / n, "render_share": render / wall, "reward_model_share": t_model / wall,
            "physics_ik_share": max(0.0, 1 - (render + t_model) / wall)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="outputs/reward/push_default")
    p.add_argument("--task", default="push")
    p.add_argument("--envs", type=int, default=4)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--out", default="benchmarks/results/rl_throughput.json")
    args = p.parse_args()
    modes = ["sparse", "all_cams_full_window_unbatched", "model_cams_full_window_batched", "model_cams_cached_batched"]
    rows = [run(args.task, args.envs, args.steps, args.model, m) for m in modes]
    res = {"task": args.task, "envs": args.envs, "steps_per_env": args.steps, "model": args.model,
           "torch_threads": torch.get_num_threads(), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    for r in rows:
        print(f"{r['mode']:>32}: {r['env_steps_per_s']:7.1f} env steps/s  render {r['render_share']:.0%}  "
              f"reward model {r['reward_model_share']:.0%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
