"""Reward-model inference throughput on the CPU: windows/s for batch sizes 1, 16 and 256
(default config: 3 views, 8-frame windows, 64x64).

    .venv/bin/python benchmarks/reward_throughput.py [--model RUN] --out benchmarks/results/reward_throughput.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from robo_reward.reward.config import RewardModelConfig
from robo_reward.reward.modeling import ProcessRewardModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="", help="run directory (default: a fresh default-config model)")
    p.add_argument("--batches", default="1,16,256")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--out", default="benchmarks/results/reward_throughput.json")
    args = p.parse_args()
    model = ProcessRewardModel.load(args.model) if args.model else ProcessRewardModel(
        RewardModelConfig(cameras=["front", "side", "wrist"], stage_names=list("abcde"), temporal_proportions=[0.2] * 5)).eval()
    cfg = model.config
    res = {"threads": torch.get_num_threads(), "views": len(cfg.cameras), "window": cfg.window,
           "use_state": cfg.use_state,
           "image_size": cfg.image_size, "batch": {}}
    for b in [int(x) for x in args.batches.split(",")]:
        x = torch.randint(0, 255, (b, cfg.window, len(cfg.cameras), cfg.image_size, cfg.image_size, 3),
                          dtype=torch.uint8)
        # a use_state model reads the joints of every frame too
        st = torch.zeros(b, cfg.window, cfg.state_dim) if cfg.use_state else None
        model.progress(x, state=st)  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            model.progress(x, state=st)
            n += b
        rate = n / (time.perf_counter() - t0)
        res["batch"][str(b)] = {"windows_per_s": round(rate, 1), "frames_per_s": round(rate * cfg.window * len(cfg.cameras), 1),
                                "latency_ms": round(1000 * b / rate, 2)}
        print(f"batch {b:>4}: {rate:8.1f} windows/s  ({1000 * b / rate:.1f} ms per call)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
