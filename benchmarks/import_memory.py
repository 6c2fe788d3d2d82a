"""Resident memory of `import-raw` against episode length: three 640x480 cameras, synthetic
episodes of --lengths frames, each imported in a fresh process (peak RSS from the kernel).

    python benchmarks/import_memory.py --lengths=150,600

Writes benchmarks/results/import_memory.json. Frames stream from the source videos into LeRobot's
writer, so the peak should not grow with the episode.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_episode(d: Path, n: int, h: int = 480, w: int = 640, fps: int = 30) -> None:
    import av

    d.mkdir(parents=True)
    for i, cam in enumerate(("high", "left_wrist", "right_wrist")):
        with av.open(str(d / f"cam_{cam}.mp4"), "w") as c:
            s = c.add_stream("mpeg4", rate=fps)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for t in range(n):
                img = np.full((h, w, 3), (t * 3 + 40 * i) % 255, np.uint8)
                img[(t * 5) % (h - 40):][:40, 100:140] = 255
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
    kf = [{"anotation": "a", "start_frame_id": 0, "end_frame_id": n // 2},
          {"anotation": "b", "start_frame_id": n // 2, "end_frame_id": n - 1}]
    (d / "annotated_keyframes.json").write_text(json.dumps(kf))
    (d.parent / "task_instruction.json").write_text(json.dumps(["do the thing"]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", default="150,600")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/import_memory.json"))
    args = p.parse_args()
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    for n in (int(x) for x in args.lengths.split(",")):
        tmp = Path(tempfile.mkdtemp())
        write_episode(tmp / "raw" / "episode_000", n)
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        rc = subprocess.run([str(ROOT / ".venv/bin/robo-reward"), "import-raw", f"--src={tmp / 'raw'}",
                             f"--out={tmp / 'ds'}"], env=env, capture_output=True, text=True).returncode
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, max over children so far
        if rc:
            raise RuntimeError(f"import-raw exited {rc}")
        rows.append({"frames": n, "cameras": 3, "size": [480, 640], "peak_rss_mb": peak / 1024,
                     "grew": peak > before, "seconds": time.perf_counter() - t0,
                     "raw_frames_mb": n * 3 * 480 * 640 * 3 / 2**20})
        print(f"{n} frames: peak RSS {peak / 1024:.0f} MB (the raw frames are {rows[-1]['raw_frames_mb']:.0f} MB), "
              f"{rows[-1]['seconds']:.0f} s", flush=True)
        shutil.rmtree(tmp)
    Path(args.out).write_text(json.dumps({"rows": rows, "note": "peak RSS is the maximum over the child processes "
                                          "so far, so runs go from short to long"}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
