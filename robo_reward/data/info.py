"""``dataset-info``: a dataset's summary and a contact sheet of one episode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from robo_reward.data.lerobot_io import DatasetError, load_episode_meta, open_dataset, read_dataset_summary


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"dataset      {s['root']}",
        f"episodes     {s['episodes']}",
        f"frames       {s['frames']}  (mean {s['mean_length']:.1f} per episode)" if s["mean_length"]
        else f"frames       {s['frames']}",
        f"fps          {s['fps']}",
        f"cameras      {', '.join(s['cameras'])}",
    ]
    if s["temporal_proportions"]:
        lines.append("stages       " + "  ".join(f"{k}={v:.3f}" for k, v in s["temporal_proportions"].items()))
    if s["quality"]:
        total = sum(s["quality"].values())
        lines.append("quality      " + "  ".join(f"{k}={v} ({v / total:.0%})" for k, v in sorted(s["quality"].items())))
    if s["success_rate"] is not None:
        lines.append(f"success      {s['success_rate']:.1%}")
    return "\n".join(lines)


def contact_sheet(root: str | Path, out_png: str | Path, episode: int = 0, columns: int = 8,
                  video_backend: str | None = None) -> Path:
    """PNG of one episode: a row per camera, ``columns`` frames across time, and a stage bar with
    the annotated boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = open_dataset(root, video_backend=video_backend)
    if not (0 <= episode < ds.meta.total_episodes):
        raise DatasetError(f"--episode: {episode} out of range; the dataset has {ds.meta.total_episodes} episodes")
    ep = ds.meta.episodes[episode]
    start, end = int(ep["dataset_from_index"]), int(ep["dataset_to_index"])
    length = end - start
    cams = [k for k in ds.meta.video_keys]
    idx = np.linspace(0, length - 1, columns).round().astype(int)
    meta = load_episode_meta(root).get(episode)
    fig = plt.figure(figsize=(1.6 * columns, 1.7 * len(cams) + 1.2))
    gs = fig.add_gridspec(len(cams) + 1, columns, height_ratios=[1] * len(cams) + [0.4], hspace=0.35)
    axes = np.array([[fig.add_subplot(gs[i, j]) for j in range(columns)] for i in range(len(cams))])
    stage_colors = plt.get_cmap("tab10")
    names = list(dict.fromkeys(meta.subtask_names)) if meta else []

    def stage_at(f: int) -> str | None:
        if not meta:
            return None
        for n, s, e in zip(meta.subtask_names, meta.subtask_start_frames, meta.subtask_end_frames, strict=True):
            if s <= f <= e:
                return n
        return None

    for j, f in enumerate(idx):
        item = ds[start + int(f)]
        for i, cam in enumerate(cams):
            ax = axes[i, j]
            ax.imshow((item[cam].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(cam.removeprefix("observation.images."), fontsize=8)
            if i == 0:
                st = stage_at(int(f))
                ax.set_title(f"t={f}" + (f"\n{st}" if st else ""), fontsize=7)
    _stage_bar(fig.add_subplot(gs[-1, :]), meta, idx, length, stage_colors, names)
    q = f" | {meta.quality}, {'success' if meta.success else 'failure'}" if meta else ""
    fig.suptitle(f"{Path(root).name} episode {episode} ({length} frames){q}", fontsize=9)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out_png


def _stage_bar(bar, meta, idx: np.ndarray, length: int, stage_colors, names: list[str]) -> None:
    """The contact sheet's bottom row: the annotated stages over time, the sampled frames dotted."""
    if meta:
        for n, s, e in zip(meta.subtask_names, meta.subtask_start_frames, meta.subtask_end_frames, strict=True):
            bar.axvspan(s, e + 1, color=stage_colors(names.index(n) % 10), alpha=0.8)
            bar.text((s + e + 1) / 2, 0.5, n, ha="center", va="center", fontsize=7)
            bar.axvline(s, color="k", lw=0.8)
    for f in idx:
        bar.axvline(f + 0.5, color="w", lw=0.6, ls=":")
    bar.set_xlim(0, length)
    bar.set_yticks([])
    bar.set_xlabel("frame (stage boundaries from the annotations)", fontsize=8)


def dataset_info(root: str | Path, png: str | Path | None = None, episode: int = 0) -> tuple[str, Path]:
    summary = read_dataset_summary(root)
    png = Path(png) if png else Path(root) / "contact_sheet.png"
    return format_summary(summary), contact_sheet(root, png, episode)
