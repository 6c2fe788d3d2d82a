"""kill -9 ``collect`` and ``deploy --record`` (on ``mujoco_so101``) at random moments, fresh and
appending, and check what survives.

After each kill:
1. the episodes committed before the kill are read from the commit record on disk;
2. the dataset is opened the way every robo-reward command opens one (which repairs an
   interrupted recording), then with LeRobot's own ``LeRobotDataset``: it must hold exactly
   the committed episodes, and the last one's frames must decode;
3. the same command is re-run to the requested count; the dataset must then hold that many
   episodes with contiguous indices, in LeRobot's metadata and in the annotations alike.

It also measures what the safety costs per episode (closing LeRobot's writers, committing, and
resuming into new files) against the time an episode takes to save.

    .venv/bin/python benchmarks/crash_safety.py --kills=20 --out=benchmarks/results/crash_safety.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "SVT_LOG": "1"}
CLI = [sys.executable, "-m", "robo_reward.cli"]
TARGET = 4  # episodes each run asks for


def collect_cmd(out: Path, episodes: int) -> list[str]:
    return [*CLI, "collect", "--task=push", f"--episodes={episodes}", f"--out={out}", "--cameras=front",
            "--quality=clean"]


def deploy_cmd(out: Path, episodes: int, policy: Path, calib: Path) -> list[str]:
    return [*CLI, "deploy", "--robot.type=mujoco_so101", "--robot.task=push", "--robot.privileged_state=true",
            f"--robot.calibration_dir={calib}", f"--policy={policy}", f"--episodes={episodes}",
            "--episode-time-s=1.5", f"--record={out}", "--display=false", "--keyboard=false",
            "--overrun-factor=50", "--reset-time-s=0"]


def committed(out: Path) -> int:
    from robo_reward.data.recovery import read_commit

    commit = read_commit(out) if out.exists() else None
    return int(commit["episodes"]) if commit else 0


def kill_at_random(cmd: list[str], out: Path, rng: np.random.Generator, max_delay: float) -> float:
    """Start ``cmd``; kill -9 it at a random moment after it starts writing (or during start-up,
    one time in five). Returns the delay used."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    if rng.random() >= 0.2:  # most kills once the dataset is being written
        while time.time() - t0 < 120 and not (out / "meta" / "info.json").exists() and proc.poll() is None:
            time.sleep(0.05)
    delay = float(rng.uniform(0.0, max_delay))
    deadline = time.time() + delay
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    return time.time() - t0


def check(out: Path, n_before: int) -> dict:
    """Open as robo-reward does (repairing), then with LeRobot; compare with the commit."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from robo_reward.data.lerobot_io import open_dataset, repo_id_for

    rec = {"committed": n_before}
    if n_before == 0:
        rec["ok"] = True  # nothing was saved: a re-run starts the dataset again
        return rec
    ours = open_dataset(out, video_backend="pyav")  # the repair every robo-reward open runs
    ds = LeRobotDataset(repo_id_for(out), root=out, video_backend="pyav")
    item = ds[len(ds) - 1]
    rec.update(opened=int(ds.meta.total_episodes), frames=len(ds), ours=int(ours.meta.total_episodes),
               decoded=tuple(item["observation.images.front"].shape) == (3, 64, 64))
    rec["ok"] = rec["opened"] == n_before and rec["ours"] == n_before and rec["decoded"]
    return rec


def contiguous(out: Path, want: int) -> bool:
    from robo_reward.data.lerobot_io import load_episode_meta, open_metadata

    meta = open_metadata(out)
    idx = sorted(int(i) for i in meta.episodes["episode_index"])
    return idx == list(range(want)) and sorted(load_episode_meta(out)) == list(range(want))


MAX_DELAY = {"collect": 4.0, "deploy": 7.0}  # about the time a run takes to write its episodes here


def trial(kind: str, appending: bool, work: Path, rng: np.random.Generator, base: Path | None,
          policy: Path | None = None, max_delay: float | None = None) -> dict:
    out = work / f"{kind}_{'append' if appending else 'fresh'}_{rng.integers(1 << 30)}"
    if appending:
        shutil.copytree(base, out)
    start = committed(out)
    if kind == "collect":
        cmd = collect_cmd(out, TARGET)
    else:
        cmd = deploy_cmd(out, TARGET - start, policy, work / "calib")
    delay = kill_at_random(cmd, out, rng, max_delay or MAX_DELAY[kind])
    n = committed(out)
    rec = {"kind": kind, "appending": appending, "kill_after_s": round(delay, 2), "before": start,
           "mid_run": n < TARGET, **check(out, n)}
    rerun = collect_cmd(out, TARGET) if kind == "collect" else deploy_cmd(out, TARGET - n, policy, work / "calib")
    r = subprocess.run(rerun, env=ENV, capture_output=True, text=True, timeout=900)
    rec["rerun_rc"] = r.returncode
    rec["reached"] = r.returncode == 0 and committed(out) == TARGET and contiguous(out, TARGET)
    rec["survived"] = bool(rec["ok"] and rec["reached"] and n >= start)
    if not rec["survived"]:
        rec["rerun_tail"] = (r.stdout + r.stderr)[-800:]
    shutil.rmtree(out, ignore_errors=True)
    return rec


def safety_cost(work: Path, episodes: int = 6) -> dict:
    """Seconds per episode spent saving, and in the safety (writer close, commit, resume)."""
    from robo_reward.data import lerobot_io

    timings: list[dict[str, float]] = []
    orig = lerobot_io.DatasetWriter.add_episode

    def timed(self, frames, meta):
        out = orig(self, frames, meta)
        timings.append(dict(self.last_timing))
        return out

    lerobot_io.DatasetWriter.add_episode = timed
    try:
        from sim.collect import collect

        collect("push", episodes, "clean", work / "cost", seed=1, cameras=("front",), progress=False)
    finally:
        lerobot_io.DatasetWriter.add_episode = orig
    keys = timings[0].keys()
    return {k: float(np.mean([t[k] for t in timings[1:] or timings])) for k in keys} | {"episodes": len(timings)}


def make_base(work: Path, kind: str, policy: Path | None) -> Path:
    base = work / f"base_{kind}"
    cmd = collect_cmd(base, 2) if kind == "collect" else deploy_cmd(base, 2, policy, work / "calib")
    subprocess.run(cmd, env=ENV, check=True, capture_output=True, timeout=900)
    return base


def make_policy(work: Path) -> Path:
    from robo_reward.policies.train_bc import TrainBCConfig, train_bc
    from sim.collect import collect

    collect("push", 3, "clean", work / "bc_demos", seed=0, cameras=("front",), progress=False)
    train_bc(TrainBCConfig(dataset=work / "bc_demos", out=work / "bc", steps=50, wandb=False, progress_bar=False))
    return work / "bc"


def run(kills: int, seed: int, work: Path, kinds: tuple[str, ...] = ("collect", "deploy")) -> dict:
    rng = np.random.default_rng(seed)
    policy = make_policy(work) if "deploy" in kinds else None
    bases = {k: make_base(work, k, policy) for k in kinds}
    trials = []
    for kind in kinds:
        for i in range(kills):
            trials.append(trial(kind, appending=bool(i % 2), work=work, rng=rng, base=bases[kind], policy=policy))
            print(json.dumps(trials[-1]), flush=True)
    survived = sum(t["survived"] for t in trials)
    return {"kills": len(trials), "survived": survived, "met": survived == len(trials),
            "mid_run_kills": sum(t["mid_run"] for t in trials),
            "per_kind": {k: f"{sum(t['survived'] for t in trials if t['kind'] == k)}/"
                            f"{sum(t['kind'] == k for t in trials)}" for k in kinds},
            "safety_cost_s_per_episode": safety_cost(work), "trials": trials}


def plot(result: dict, path: Path) -> None:
    """Each kill: when it came (seconds after start) against the episodes it left committed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    for kind, marker in (("collect", "o"), ("deploy", "s")):
        ts = [t for t in result["trials"] if t["kind"] == kind]
        for ok, color in ((True, "tab:green"), (False, "tab:red")):
            sel = [t for t in ts if t["survived"] == ok]
            if sel:
                ax.scatter([t["kill_after_s"] for t in sel], [t["committed"] for t in sel], marker=marker, c=color,
                           label=f"{kind}, {'survived' if ok else 'lost'} ({len(sel)})", alpha=0.8)
    ax.set_xlabel("kill -9 after (s)")
    ax.set_ylabel("episodes committed")
    ax.set_title(f"crash safety: {result['survived']}/{result['kills']} survived")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20, help="kills per command (collect, deploy)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/crash_safety.json"))
    ap.add_argument("--replot", type=Path, default=None, help="redraw the plot of a result JSON and exit")
    args = ap.parse_args()
    if args.replot is not None:
        plot(json.loads(args.replot.read_text()), args.replot.with_suffix(".png"))
        return
    import datasets

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.kills, args.seed, Path(tmp))
    result["command"] = " ".join(["benchmarks/crash_safety.py", f"--kills={args.kills}", f"--seed={args.seed}"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(result, args.out.with_suffix(".png"))
    print(f"survived {result['survived']}/{result['kills']} ({result['per_kind']}); safety per episode "
          f"{result['safety_cost_s_per_episode']}")


if __name__ == "__main__":
    main()
