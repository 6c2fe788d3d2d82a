"""Memory and time against dataset size: `import-raw`, the frame-store build and 200 steps of
`train-reward`, at --sizes frames (synthetic raw episodes in Robo-Dopamine's layout: two 4:3
cameras, two annotated subtasks per episode). Each stage runs in a fresh process; its peak
resident memory comes from the kernel (wait4's ru_maxrss), so stages are measured one by one.

    python benchmarks/data_scale.py --sizes=1000,10000,100000

Writes benchmarks/results/data_scale.{json,png}. Also times the training window sampler reading
from the on-disk store against the same frames held in memory (the way the cache worked before),
so the store's cost to training speed is a ratio from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CAMS = ("high", "wrist")


def write_raw(root: Path, episodes: int, length: int, h: int = 72, w: int = 96, fps: int = 30) -> None:
    """``episodes`` raw episodes of ``length`` frames: cam_<name>.mp4 per camera, shared-boundary
    keyframes spelled ``anotation``, the instruction list at the root."""
    import av

    root.mkdir(parents=True)
    (root / "task_instruction.json").write_text(json.dumps(["move the block", "push the block over"]))
    for e in range(episodes):
        d = root / f"episode_{e:04d}"
        d.mkdir()
        for i, cam in enumerate(CAMS):
            with av.open(str(d / f"cam_{cam}.mp4"), "w") as c:
                s = c.add_stream("mpeg4", rate=fps)
                s.width, s.height, s.pix_fmt = w, h, "yuv420p"
                for t in range(length):
                    img = np.full((h, w, 3), (40 * i + e) % 255, np.uint8)
                    x = int((w - 12) * t / max(1, length - 1))
                    img[h // 2 - 6: h // 2 + 6, x: x + 12] = 255
                    for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                        c.mux(p)
                for p in s.encode():
                    c.mux(p)
        kf = [{"anotation": "reach", "start_frame_id": 0, "end_frame_id": length // 2},
              {"anotation": "push", "start_frame_id": length // 2, "end_frame_id": length - 1}]
        (d / "annotated_keyframes.json").write_text(json.dumps(kf))


def measured(cmd: list[str], env: dict) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}:\n{err[-3000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


CACHE_BUILD = """
import sys
from robo_reward.data.frames import load_frame_cache
c = load_frame_cache(sys.argv[1], sys.argv[2].split(","), 64, progress=False)
print(c.frames.path)
"""

SAMPLER_SPEED = """
import sys, time, json
import numpy as np
from robo_reward.data.frames import WindowSampler, load_frame_cache
cache = load_frame_cache(sys.argv[1], sys.argv[2].split(","), 64, progress=False)
rows = list(range(len(cache.episodes)))
store, memory = cache.frames, np.asarray(cache.frames)
rates = {"disk": [], "memory": []}
for _ in range(5):  # interleaved rounds: the machine's noise hits both alike
    for name, frames in (("disk", store), ("memory", memory)):
        cache.frames = frames
        s = WindowSampler(cache, rows, 8, 3, 0.25, 0.2, seed=0)
        s.sample(16)
        t0 = time.perf_counter()
        for _ in range(50):
            s.sample(16)
        rates[name].append(50 * 16 / (time.perf_counter() - t0))
print(json.dumps({k: float(np.median(v)) for k, v in rates.items()}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--episode-length", type=int, default=500)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/data_scale.json"))
    args = p.parse_args()
    py, cli = str(ROOT / ".venv/bin/python"), str(ROOT / ".venv/bin/robo-reward")
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        tmp = Path(tempfile.mkdtemp(prefix="rr-scale-"))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
               "ROBO_REWARD_CACHE_DIR": str(tmp / "frames"), "SVT_LOG": "1"}
        episodes = max(2, n // args.episode_length)
        t0 = time.perf_counter()
        write_raw(tmp / "raw", episodes, args.episode_length)
        gen_s = time.perf_counter() - t0
        imp_s, imp_mb = measured([cli, "import-raw", f"--src={tmp / 'raw'}", f"--out={tmp / 'ds'}"], env)
        cache_s, cache_mb = measured([py, "-c", CACHE_BUILD, str(tmp / "ds"), ",".join(CAMS)], env)
        train_s, train_mb = measured([cli, "train-reward", f"--dataset={tmp / 'ds'}", f"--out={tmp / 'run'}",
                                      f"--steps={args.steps}", "--wandb=disabled", "--threads=1",
                                      f"--checkpoint_every={args.steps}"], env)
        row = {"frames": episodes * args.episode_length, "episodes": episodes, "cameras": len(CAMS),
               "source_size": [72, 96], "model_size": 64,
               "import": {"seconds": imp_s, "peak_rss_mb": imp_mb},
               "cache_build": {"seconds": cache_s, "peak_rss_mb": cache_mb},
               "train_reward": {"seconds": train_s, "peak_rss_mb": train_mb, "steps": args.steps},
               "store_mb": sum(f.stat().st_size for f in (tmp / "frames").glob("*.npy")) / 2**20,
               "raw_generation_seconds": gen_s}
        if not rows:  # the sampler from disk against the same frames in memory, on the smallest size
            proc = subprocess.run([py, "-c", SAMPLER_SPEED, str(tmp / "ds"), ",".join(CAMS)], env=env,
                                  capture_output=True, text=True, check=True)
            row["sampler_windows_per_s"] = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['frames']:>7} frames: import {imp_s:6.0f} s {imp_mb:6.0f} MB | cache {cache_s:5.0f} s "
              f"{cache_mb:6.0f} MB | train {train_s:5.0f} s {train_mb:6.0f} MB | store {row['store_mb']:.0f} MB",
              flush=True)
        shutil.rmtree(tmp)
    base = rows[0]["train_reward"]["peak_rss_mb"]
    result = {"rows": rows, "train_peak_ratio_largest_to_smallest": rows[-1]["train_reward"]["peak_rss_mb"] / base,
              "target": "train-reward peak RSS at 100k frames <= 4096 MB and <= 1.5x its value at 1k frames",
              "machine": f"{os.cpu_count()} CPU cores, OMP_NUM_THREADS=1"}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["frames"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("import", "import-raw"), ("cache_build", "frame-store build"),
                       ("train_reward", "train-reward (200 steps)")):
        a.plot(x, [r[key]["peak_rss_mb"] for r in rows], "o-", label=label)
        b.plot(x, [r[key]["seconds"] for r in rows], "o-", label=label)
    a.plot(x, [r["frames"] * r["cameras"] * 64 * 64 * 3 / 2**20 for r in rows], "k--", label="frames held in memory")
    a.axhline(4096, color="r", lw=0.8, ls=":", label="4 GB target")
    for ax, title in ((a, "peak resident memory (MB)"), (b, "wall time (s)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("frames in the dataset")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
