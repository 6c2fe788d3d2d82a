"""Reward-model ablation on one fixed split of a mixed pick_place dataset.

Variants (same steps, seed and split):
- full: multi-view, stage head, contrastive alignment, video only;
- with_state: full plus proprioception (use_state, as configs/reward/default.yaml);
- front_only: the front camera alone;
- no_contrastive: contrastive weight 0;
- no_stage_head: plain progress regression (stage-blind);
- one_shot: trained on a single successful demonstration, evaluated on every other episode.

Each is evaluated on the held-out split, and full/front_only also on a held-out perturbation:
the front view half occluded. Writes a JSON table and a bar plot. Resumable: finished variants
are read back from their run directories.

    .venv/bin/python benchmarks/reward_ablation.py --dataset datasets/so101_pick_place --steps 1200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from robo_reward.reward.config import RewardModelConfig
from robo_reward.reward.evaluate import evaluate
from robo_reward.reward.train import TrainRewardConfig, train_reward

VARIANTS = {
    "full": {},
    "with_state": {"use_state": True},
    "front_only": {"cameras": ["front"]},
    "no_contrastive": {"contrastive_weight": 0.0},
    "no_stage_head": {"stage_head": False, "contrastive_weight": 0.0},
}
METRICS = ("voc_pos", "voc_neg", "stage_accuracy", "auroc", "hop_mae")


def summarize(r: dict) -> dict:
    return {k: r[k] for k in METRICS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="datasets/so101_pick_place")
    p.add_argument("--runs", default="outputs/ablation")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--variants", default=",".join([*VARIANTS, "one_shot"]))
    p.add_argument("--out", default="benchmarks/results/reward_ablation.json")
    args = p.parse_args()
    runs = Path(args.runs)
    table: dict = {"dataset": args.dataset, "steps": args.steps, "variants": {}}
    if Path(args.out).exists():
        table = json.loads(Path(args.out).read_text()) | {"steps": args.steps}
    for name in args.variants.split(","):
        run = runs / name
        if name in table["variants"] and (run / "model.safetensors").exists():
            print(f"{name}: done, skipping")
            continue
        t0 = time.time()
        if name == "one_shot":
            entry = one_shot(args.dataset, run, args.steps)
        else:
            mcfg = dataclasses.replace(RewardModelConfig(), **VARIANTS[name])
            train_reward(TrainRewardConfig(dataset=Path(args.dataset), out=run, steps=args.steps, wandb="disabled",
                                           model=mcfg))
            train_s = time.time() - t0
            entry = {"train_s": round(train_s, 1), "held_out": summarize(evaluate(run, args.dataset, plots=False))}
            if "front" in mcfg.cameras:
                entry["front_occluded"] = summarize(evaluate(run, args.dataset, plots=False,
                                                             occlude={"front": 0.5}))
        table["variants"][name] = entry
        print(name, json.dumps(entry))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(table, indent=2))
    plot(table, Path(args.out).with_suffix(".png"))
    print(f"wrote {args.out}")


def one_shot(dataset: str, run: Path, steps: int) -> dict:
    """Train on one successful demo (episode split forced), evaluate VOC+ on all the others."""
    from robo_reward.data.frames import load_frame_cache

    cache = load_frame_cache(dataset, ["front", "side", "wrist"], progress=False)
    demo = next(e.index for e in cache.episodes if e.success and e.quality == "clean")
    run.mkdir(parents=True, exist_ok=True)
    others = [e.index for e in cache.episodes if e.index != demo]
    (run / "split.json").write_text(json.dumps({"dataset": str(Path(dataset).resolve()), "seed": 0,
                                                "train": [demo], "held_out": others}))
    t0 = time.time()
    train_reward(TrainRewardConfig(dataset=Path(dataset), out=run, steps=steps, wandb="disabled"))
    r = evaluate(run, dataset, plots=False)
    return {"train_s": round(time.time() - t0, 1), "demo_episode": demo, "held_out": summarize(r)}


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = []
    for name, e in table["variants"].items():
        rows.append((name, e["held_out"]))
        if "front_occluded" in e:
            rows.append((f"{name}\n(front occluded)", e["front_occluded"]))
    metrics = ("voc_pos", "voc_neg", "stage_accuracy", "auroc")
    fig, ax = plt.subplots(figsize=(max(8, 1.3 * len(rows)), 4))
    w = 0.8 / len(metrics)
    x = np.arange(len(rows))
    for i, m in enumerate(metrics):
        vals = [r[m] if r[m] is not None else np.nan for _, r in rows]
        ax.bar(x + i * w - 0.4 + w / 2, vals, w, label=m)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels([n for n, _ in rows], fontsize=7)
    ax.set_ylim(-1.05, 1.05)
    ax.legend(fontsize=7, ncol=4)
    ax.set_title(f"reward-model ablation ({table['steps']} steps each; VOC- should be near -1)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
