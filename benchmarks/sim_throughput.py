"""Env steps/s for each task with 0, 1 and 3 cameras (default 64x64, fast visual profile), and
the full profile with 3 cameras for comparison. All settings run side by side in one process.
The ManiSkill tasks (``--maniskill``, on by default) run on ``physx_cpu`` with SAPIEN rendering
on the CPU here; on a machine with CUDA, the batched env (``sim.maniskill.vec``) on ``physx_cuda``
adds GPU-parallel numbers for ``--gpu-envs`` (default 1,64,1024) envs in one sim.

    .venv/bin/python benchmarks/sim_throughput.py --out benchmarks/results/sim_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from sim.experts import make_expert  # noqa: E402
from sim.tasks import TASKS, make_env  # noqa: E402

SETTINGS = {"0cam": (), "1cam": ("front",), "3cam": ("front", "side", "wrist")}


def steps_per_second(task: str, cameras, size: int, profile: str, steps: int, expert: bool = True) -> float:
    """Env steps/s driven by the task's scripted expert, or by random ee_delta actions
    (``expert=False``: ManiSkill, where not every task has an expert)."""
    kw = {} if task.startswith("maniskill/") else {"visual_profile": profile}
    env = make_env(task, cameras=cameras, width=size, height=size, **kw)
    rng = np.random.default_rng(0)

    def actor(seed: int):
        if expert:
            ex = make_expert(task, seed=seed)
            return lambda: ex.act(env)
        return lambda: rng.uniform(-1, 1, env.action_space.shape)

    env.reset(seed=0)
    act = actor(0)
    n, seed = 0, 0
    t0 = time.perf_counter()
    while n < steps:
        *_, terminated, truncated, _ = env.step(act())
        n += 1
        if terminated or truncated:
            seed += 1
            env.reset(seed=seed)
            act = actor(seed)
    rate = n / (time.perf_counter() - t0)
    env.close()
    return rate


def batched_steps_per_second(task: str, num_envs: int, cameras, size: int, steps: int) -> float:
    """Env steps/s (summed over envs) of ``num_envs`` copies in one batched ManiSkill sim, driven by
    random ee_delta actions."""
    from sim.maniskill.tasks import MSConfig
    from sim.maniskill.vec import ManiSkillVecEnv

    venv = ManiSkillVecEnv(task, num_envs, MSConfig(cameras=cameras, width=size, height=size))
    rng = np.random.default_rng(0)
    venv.reset()
    t0 = time.perf_counter()
    for _ in range(steps):
        venv.step_async(rng.uniform(-1, 1, (num_envs, *venv.action_space.shape)))
        venv.step_wait()
    rate = num_envs * steps / (time.perf_counter() - t0)
    venv.close()
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--out", default="benchmarks/results/sim_throughput.json")
    p.add_argument("--maniskill", default="PickCube-v1,StackCube-v1,PegInsertionSide-v1",
                   help="ManiSkill tasks to include (comma-separated; empty for none)")
    p.add_argument("--maniskill-steps", type=int, default=100)
    p.add_argument("--gpu-envs", default="1,64,1024", help="with CUDA: batched env sizes to time on physx_cuda")
    args = p.parse_args()
    results: dict = {"size": args.size, "steps": args.steps, "mujoco_gl": os.environ["MUJOCO_GL"],
                     "control_hz": 20, "tasks": {}}
    for task in sorted(TASKS):
        r = {name: steps_per_second(task, cams, args.size, "fast", args.steps) for name, cams in SETTINGS.items()}
        r["3cam_full_profile"] = steps_per_second(task, SETTINGS["3cam"], args.size, "full", args.steps // 4)
        results["tasks"][task] = {k: round(v, 1) for k, v in r.items()}
        print(task, results["tasks"][task])
    results["mean_3cam_fast"] = round(float(np.mean([v["3cam"] for v in results["tasks"].values()])), 1)
    if args.maniskill:
        results["maniskill"] = {"sim_backend": "physx_cpu", "render": "SAPIEN on the CPU (Mesa lavapipe)", "tasks": {}}
        for env_id in args.maniskill.split(","):
            task = f"maniskill/{env_id}"
            r = {name: round(steps_per_second(task, cams, args.size, "fast", args.maniskill_steps, expert=False), 1)
                 for name, cams in SETTINGS.items()}
            # the batched env (what rl uses on a GPU), here with its one CPU env: same sim, less Python
            r["batched_n1_0cam"] = round(batched_steps_per_second(task, 1, (), args.size, args.maniskill_steps), 1)
            results["maniskill"]["tasks"][task] = r
            print(task, r)
        import torch

        if torch.cuda.is_available() and args.gpu_envs:
            gpu: dict = {"sim_backend": "physx_cuda", "device": torch.cuda.get_device_name(0), "tasks": {}}
            for env_id in args.maniskill.split(","):
                task = f"maniskill/{env_id}"
                gpu["tasks"][task] = {f"{n}envs_{name}": round(batched_steps_per_second(
                    task, n, cams, args.size, args.maniskill_steps), 1)
                    for n in map(int, args.gpu_envs.split(",")) for name, cams in SETTINGS.items()}
                print(task, gpu["tasks"][task])
            results["maniskill_gpu"] = gpu
        else:
            results["maniskill_gpu"] = None  # no CUDA device here
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
