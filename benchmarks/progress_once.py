"""Offline progress: each frame encoded once (cached tokens, :func:`predict_episode`) against the
per-window path (:func:`predict_windows`, each frame encoded ``window`` times), on the same episode.

    python benchmarks/progress_once.py --frames=300

Uses a model of the default size (3 cameras at 64x64, dim 128, window 8, random weights: speed does
not depend on them) and writes benchmarks/results/progress_once.json with frames/s of both paths
and the largest difference between them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from robo_reward.reward.config import RewardModelConfig
    from robo_reward.reward.inference import predict_episode, predict_windows
    from robo_reward.reward.modeling import ProcessRewardModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/progress_once.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = RewardModelConfig(cameras=["front", "side", "wrist"], window=args.window, stage_names=list("abcd"),
                            temporal_proportions=[0.25] * 4)
    model = ProcessRewardModel(cfg).eval()
    frames = np.random.default_rng(0).integers(0, 255, (args.frames, 3, 64, 64, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {"once": [], "per_window": []}
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        for name, fn in (("once", predict_episode), ("per_window", predict_windows)):
            t0 = time.perf_counter()
            out = fn(model, frames)
            times[name].append(time.perf_counter() - t0)
            if name == "once":
                fast = out
            else:
                ref = out
    fps = {k: args.frames / float(np.median(v)) for k, v in times.items()}
    res = {"frames": args.frames, "window": args.window, "threads": args.threads, "frames_per_s": fps,
           "speedup": fps["once"] / fps["per_window"], "seconds": times,
           "max_abs_diff_progress": float(np.abs(fast.progress - ref.progress).max())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"once {fps['once']:.0f} frames/s, per window {fps['per_window']:.0f} frames/s: x{res['speedup']:.1f} "
          f"(max |diff| {res['max_abs_diff_progress']:.1e}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
