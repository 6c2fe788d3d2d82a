"""``robo-reward report RUN_DIR``: one static HTML page for a pipeline run, or for a single
dataset, reward-model, BC or RL run: figures and numbers a person would rather see than read.

The page is ``RUN_DIR/report.html``; its figures are drawn into ``RUN_DIR/report_files/`` and
every image or video it shows is referenced by a path relative to it, inside ``RUN_DIR``, so the
directory can be copied or zipped as it is. No server, no script, no network.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

ASSETS = "report_files"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: unreadable JSON ({e})") from e


def kind_of(root: Path) -> str:
    """What a directory holds: pipeline, dataset, reward, policy (BC) or rl."""
    if (root / "pipeline.json").is_file():
        return "pipeline"
    if (root / "meta" / "info.json").is_file():
        return "dataset"
    if (root / "model.safetensors").is_file() and (root / "config.json").is_file():
        return "reward"
    if (root / "eval.json").is_file() and isinstance(_read_json(root / "eval.json"), list):
        return "rl"
    if (root / "policy.json").is_file():
        return "policy"
    raise ValueError(f"{root}: not a run this report knows (expected pipeline.json, meta/info.json, "
                     "model.safetensors + config.json, policy.json or an RL eval.json)")


def collect_results(root: Path) -> dict[str, Any]:
    """The numbers of every part a directory holds, keyed by part (dataset, reward, bc, rabc, rl,
    deploy), from the files its commands wrote."""
    root = Path(root)
    kind = kind_of(root)
    parts = ({"dataset": root / "demos", "reward": root / "reward", "bc": root / "bc", "rabc": root / "rabc",
              "rl": root / "rl", "deploy": root / "rollouts"} if kind == "pipeline" else {kind: root})
    out: dict[str, Any] = {"kind": kind}
    if "dataset" in parts and (parts["dataset"] / "meta" / "info.json").is_file():
        from robo_reward.data.lerobot_io import read_dataset_summary

        out["dataset"] = read_dataset_summary(parts["dataset"])
        out["dataset_dir"] = parts["dataset"]
    if "reward" in parts:
        m = _read_json(parts["reward"] / "eval" / "metrics.json")
        out["reward"] = m if m is not None else {}
        out["reward_dir"] = parts["reward"]
    for key in ("bc", "rabc", "policy"):
        if key in parts:
            ev = _read_json(parts[key] / "eval.json")
            if isinstance(ev, dict):
                out["bc" if key == "policy" else key] = ev
                out[("bc" if key == "policy" else key) + "_dir"] = parts[key]
    if "rl" in parts and (parts["rl"] / "eval.json").is_file():
        out["rl"] = {"evals": _read_json(parts["rl"] / "eval.json") or [],
                     "summary": _read_json(parts["rl"] / "summary.json"),
                     "config": _read_json(parts["rl"] / "config.json")}
        out["rl_dir"] = parts["rl"]
    if kind == "pipeline":
        dep = _read_json(root / "deploy.json") or _read_json(parts["deploy"] / "deploy_summary.json")
        if dep is not None:
            out["deploy"] = dep
            out["deploy_dir"] = parts["deploy"]
        out["pipeline"] = _read_json(root / "pipeline.json")
    return out


def _plot_policies(r: dict, path: Path) -> Path | None:
    from robo_reward.stats import wilson_interval

    rows = [(label, r[k]) for k, label in (("bc", "BC"), ("rabc", "RA-BC")) if r.get(k)]
    if r.get("rl") and r["rl"]["evals"]:
        last = r["rl"]["evals"][-1]
        rows.append(("RL fine-tuned", {"success_rate": last["success_rate"],
                                        "successes": int(round(last["success_rate"] * last["eval_episodes"])),
                                        "episodes": last["eval_episodes"]}))
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    for i, (_, ev) in enumerate(rows):
        lo, hi = wilson_interval(int(ev["successes"]), int(ev["episodes"]))
        ax.bar(i, ev["success_rate"], color=("tab:gray", "tab:blue", "tab:green")[i % 3])
        ax.errorbar(i, ev["success_rate"], yerr=[[ev["success_rate"] - lo], [hi - ev["success_rate"]]], color="k",
                    capsize=4)
        ax.text(i, min(0.98, hi + 0.02), f"{ev['success_rate']:.2f}", ha="center", fontsize=9)
    ax.set_xticks(range(len(rows)), [lab for lab, _ in rows])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("success rate (95% Wilson)")
    ax.set_title(f"{rows[0][1]['episodes']} seeded episodes each", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_rl(r: dict, path: Path) -> Path | None:
    from robo_reward.stats import wilson_interval

    evals = r.get("rl", {}).get("evals") or []
    if not evals:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    x = [e["online_episodes"] for e in evals]
    y = [e["success_rate"] for e in evals]
    ci = [wilson_interval(int(round(e["success_rate"] * e["eval_episodes"])), e["eval_episodes"]) for e in evals]
    ax.fill_between(x, [c[0] for c in ci], [c[1] for c in ci], alpha=0.2, color="tab:green")
    ax.plot(x, y, "o-", color="tab:green", label="fine-tuned policy (deterministic)")
    train = [e.get("train_success_rate") for e in evals]
    if all(t is not None for t in train):
        ax.plot(x, train, "--", color="tab:olive", label="online episodes so far (exploring)")
    corr = [e.get("phi_true_corr") for e in evals]
    if any(c is not None for c in corr):
        ax2 = ax.twinx()
        ax2.plot(x, [c if c is not None else float("nan") for c in corr], "s:", color="tab:purple", ms=4)
        ax2.set_ylabel("corr(learned Phi, true progress)", color="tab:purple", fontsize=8)
        ax2.set_ylim(-1, 1)
    ax.set_xlabel("online episodes")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_deploy_progress(rollouts: Path, path: Path) -> Path | None:
    import pandas as pd

    pq = rollouts / "sarm_progress.parquet"
    if not pq.is_file():
        return None
    df = pd.read_parquet(pq)
    col = "progress_sparse" if "progress_sparse" in df.columns else None
    if col is None:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    for ep, g in df.groupby("episode_index"):
        ax.plot(g["frame_index"].to_numpy(), g[col].to_numpy(), label=f"episode {int(ep)}")
    ax.set_xlabel("frame")
    ax.set_ylabel("predicted progress")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _table(rows: list[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) + \
        "</table>"


def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _episode_videos(rollouts: Path, max_episodes: int = 3) -> list[tuple[int, Path]]:
    """(episode, video file) of the first camera of the first recorded episodes."""
    import pandas as pd

    files = sorted((rollouts / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    info = _read_json(rollouts / "meta" / "info.json")
    if not files or info is None:
        return []
    cams = sorted(k for k, f in info["features"].items() if f.get("dtype") == "video")
    if not cams:
        return []
    key = cams[0]
    eps = pd.concat([pd.read_parquet(f) for f in files]).sort_values("episode_index")
    out = []
    for rec in eps.head(max_episodes).to_dict("records"):
        p = rollouts / info["video_path"].format(video_key=key, chunk_index=int(rec[f"videos/{key}/chunk_index"]),
                                                 file_index=int(rec[f"videos/{key}/file_index"]))
        if p.is_file():
            out.append((int(rec["episode_index"]), p))
    return out


def write_report(root: str | Path) -> Path:
    """Draw the figures and write ``root/report.html``; returns its path."""
    root = Path(root)
    r = collect_results(root)
    assets = root / ASSETS
    assets.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []

    if r.get("dataset"):
        d = r["dataset"]
        sheet = r["dataset_dir"] / "contact_sheet.png"
        if not sheet.is_file():
            from robo_reward.data.info import dataset_info

            dataset_info(r["dataset_dir"], sheet, 0)
        q = ", ".join(f"{k} {v}" for k, v in sorted(d["quality"].items()))
        body = _table([("episodes", str(d["episodes"])), ("frames", str(d["frames"])), ("fps", str(d["fps"])),
                       ("cameras", ", ".join(d["cameras"])), ("stages", ", ".join(d["stages"] or ["(none)"])),
                       ("success rate", _f(d["success_rate"], 2)), ("quality", q)])
        sections.append(f"<h2>Demonstrations</h2>{body}<figure><img src='{_rel(sheet, root)}' alt='contact sheet'>"
                        f"<figcaption>contact sheet of episode 0</figcaption></figure>")

    if "reward" in r:
        m = r["reward"]
        if m:
            body = _table([("episodes scored", f"{m['n_episodes']} ({m['episodes']})"),
                           ("VOC+ (successes)", _f(m.get("voc_pos"))), ("VOC- (failures)", _f(m.get("voc_neg"))),
                           ("stage accuracy", _f(m.get("stage_accuracy"))), ("AUROC (final progress)",
                                                                               _f(m.get("auroc"))),
                           ("hop MAE", _f(m.get("hop_mae")))])
            plots = sorted((r["reward_dir"] / "eval" / "plots").glob("*.png"))[:6]
            imgs = "".join(f"<img class='curve' src='{_rel(p, root)}' alt='{p.stem}'>" for p in plots)
            sections.append(f"<h2>Reward model</h2>{body}<p>Predicted progress and stage on held-out episodes "
                            f"(the labels' progress beside it):</p><div class='grid'>{imgs}</div>")
        else:
            sections.append("<h2>Reward model</h2><p>No evaluation yet: run <code>robo-reward eval-reward "
                            f"--model={html.escape(str(r['reward_dir']))} --dataset=DATASET "
                            f"--out_json={html.escape(str(r['reward_dir'] / 'eval' / 'metrics.json'))}</code>.</p>")

    pol = _plot_policies(r, assets / "policies.png")
    if pol is not None:
        rows = [(label, f"success {r[k]['success_rate']:.2f} ({r[k]['successes']}/{r[k]['episodes']}), mean length "
                        f"{r[k]['mean_length']:.0f}") for k, label in (("bc", "BC"), ("rabc", "RA-BC")) if r.get(k)]
        sections.append(f"<h2>Policies: BC against RA-BC</h2>{_table(rows)}<img src='{_rel(pol, root)}' "
                        "alt='policy success'>")

    rl = _plot_rl(r, assets / "rl_curve.png")
    if rl is not None:
        ev = r["rl"]["evals"]
        cfg = r["rl"].get("config") or {}
        rows = [("started from", str(cfg.get("init_policy") or "scratch")),
                ("reward", f"{cfg.get('reward', '?')}" + (f", refit every {cfg['refit_every']} episodes"
                                                          if cfg.get("refit_every") else "")),
                ("success", " -> ".join(f"{e['success_rate']:.2f}" for e in ev)),
                ("at online episodes", ", ".join(str(e["online_episodes"]) for e in ev))]
        if ev[-1].get("phi_true_corr") is not None:
            rows.append(("corr(Phi, true progress), last", _f(ev[-1]["phi_true_corr"], 2)
                         + (f" (frozen model {_f(ev[-1].get('phi_true_corr_frozen'), 2)})"
                            if ev[-1].get("phi_true_corr_frozen") is not None else "")))
        sections.append(f"<h2>Online fine-tuning</h2>{_table(rows)}<img src='{_rel(rl, root)}' alt='rl curve'>")

    if r.get("deploy"):
        dp = r["deploy"]
        per = dp.get("per_episode", [])
        rows = [("episodes", str(dp["episodes"])), ("success rate", _f(dp.get("success_rate"), 2)),
                ("loop period p50 / p99 (ms)", f"{_f(dp['period_ms'].get('p50'), 1)} / "
                                               f"{_f(dp['period_ms'].get('p99'), 1)}" if dp.get("period_ms") else "n/a"),
                ("safety clips", json.dumps(dp.get("safety", {}))),
                ("final progress per episode", ", ".join(_f(e.get("final_progress"), 2) for e in per))]
        if r.get("pipeline", {}).get("deployed"):
            rows.insert(0, ("policy", r["pipeline"]["deployed"]))
        prog = _plot_deploy_progress(r["deploy_dir"], assets / "deploy_progress.png")
        vids = "".join(f"<figure><video src='{_rel(p, root)}' controls muted loop preload='auto'></video>"
                       f"<figcaption>episode {ep}</figcaption></figure>" for ep, p in _episode_videos(r["deploy_dir"]))
        sections.append(f"<h2>Deployment on mujoco_so101 (recorded)</h2>{_table(rows)}"
                        + (f"<img src='{_rel(prog, root)}' alt='live progress'>" if prog else "")
                        + f"<div class='grid'>{vids}</div><p>Recording: <code>{html.escape(_rel(r['deploy_dir'], root))}"
                          "</code> (a LeRobot dataset with the success flag and progress of every episode).</p>")

    if r.get("pipeline"):
        st = r["pipeline"]
        cmd_rows = [(k, f"robo-reward {' '.join(v['args'])}  ({v['seconds']:.0f} s)")
                    for k, v in st.get("commands", {}).items() if v.get("done")]
        total = sum(v.get("seconds", 0.0) for v in st.get("steps", {}).values())
        sections.append(f"<h2>Commands</h2><p>Every step, as it ran (total {total / 60:.1f} min):</p>{_table(cmd_rows)}")

    title = {"pipeline": "pipeline run", "dataset": "dataset", "reward": "reward model", "policy": "policy",
             "rl": "RL run"}[r["kind"]]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>robo-reward report: {html.escape(root.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; margin: .5em 0; }} th, td {{ text-align: left; padding: .2em .8em; }}
th {{ color: #555; font-weight: 600; }} tr:nth-child(odd) {{ background: #f6f6f6; }}
img {{ max-width: 100%; }} .grid {{ display: flex; flex-wrap: wrap; gap: 8px; }}
.grid img.curve {{ width: 340px; }} video {{ width: 256px; image-rendering: pixelated; background: #000; }}
figure {{ margin: .4em 0; }} figcaption {{ font-size: .85em; color: #666; }}
code {{ background: #f2f2f2; padding: 0 .2em; }}
</style></head><body>
<h1>robo-reward report: {html.escape(title)} <code>{html.escape(str(root))}</code></h1>
<p>Written {time.strftime('%Y-%m-%d %H:%M')} by <code>robo-reward report {html.escape(str(root))}</code>.</p>
{''.join(sections)}
</body></html>
"""
    out = root / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page)
    os.replace(tmp, out)
    return out
