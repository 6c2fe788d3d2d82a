"""``robo-reward`` command line: one subcommand per job, each a draccus config dataclass whose
field docstrings are its ``--help``.

Subcommands that need the simulator import ``sim`` lazily, so ``robo_reward`` itself never
depends on it.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import draccus

from robo_reward.utils import NameList

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("SVT_LOG", "1")  # the AV1 encoder is chatty at its default level
os.environ.setdefault("MUJOCO_GL", "egl")


@dataclass
class CollectConfig:
    task: str = "pick_place"
    """Task to demonstrate: pick_place, stack, push, or a ManiSkill task (maniskill/PickCube-v1,
    maniskill/StackCube-v1)."""
    episodes: int = 50
    """Target number of episodes in --out (an existing dataset is topped up to this)."""
    quality: str = "mixed"
    """clean (every episode clean), mixed (40 pct clean, 40 pct degraded, 20 pct stopping short) or
    recovery (mixed, where half the episodes first wander 10-30 steps at random: off-path states) or
    offpath (recovery, where half the episodes also wander 5-20 steps partway through the last stage) or
    offpath_fast (offpath, where half the episodes move more the way RL policies do: no hover, 1.5x faster)."""
    out: Path = Path("datasets/so101_pick_place")
    """Dataset directory (LeRobotDataset v3)."""
    seed: int = 0
    """Base seed; episode i uses a seed derived from (seed, i), so a resumed run continues the same sequence."""
    cameras: NameList = field(default_factory=lambda: NameList(["front", "side", "wrist"]))
    """Cameras to record (front,side,wrist or [front,side,wrist])."""
    width: int = 64
    """Image width in pixels."""
    height: int = 64
    """Image height in pixels."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"--episodes: {self.episodes}; expected >= 1")
        if self.seed < 0:
            raise ValueError(f"--seed: {self.seed}; expected >= 0 (episode seeds are derived from it)")
        if not self.cameras:
            raise ValueError("--cameras: empty; expected at least one camera to record (front, side, wrist)")
        from sim.experts.base import QualityMix

        if self.quality not in {q.value for q in QualityMix}:
            raise ValueError(f"--quality: {self.quality!r}; expected one of {[q.value for q in QualityMix]}")


@dataclass
class ImportRawConfig:
    src: Path = Path("raw")
    """Directory of episode_*/cam_<name>.mp4 + annotated_keyframes.json + task_instruction.json."""
    out: Path = Path("datasets/imported")
    """Dataset directory to write (an existing one only with --append)."""
    cameras: NameList = field(default_factory=NameList)
    """Cameras to import (default: every cam_<name>.mp4 found)."""
    stages: NameList = field(default_factory=NameList)
    """Stage order (default: order of first appearance in the annotations, or the dataset's when appending)."""
    append: bool = False
    """Add the episodes to an existing dataset at --out (episodes imported before are refused)."""


@dataclass
class DatasetInfoConfig:
    dataset: Path = Path("datasets/so101_pick_place")
    """Dataset directory."""
    png: Path | None = None
    """Where to write the contact sheet (default: <dataset>/contact_sheet.png)."""
    episode: int = 0
    """Episode shown in the contact sheet."""


@dataclass
class ReportConfig:
    run: Path = Path("outputs/quickstart")
    """A pipeline run (quickstart), or a dataset, reward-model, BC or RL run (also positional: robo-reward report DIR)."""


@dataclass
class EvalRewardConfig:
    model: Path = Path("outputs/reward/run")
    """Run directory written by train-reward."""
    dataset: Path = Path("datasets/so101_pick_place")
    """Dataset to score (the run's held-out split if it is the training dataset, else every episode)."""
    out_json: Path = Path("outputs/reward/run/eval/metrics.json")
    """Where the metrics go; per-episode plots go in plots/ beside it."""
    video: bool = False
    """Also write mp4s with the progress drawn over the views (first 3 episodes)."""
    cameras_present: NameList = field(default_factory=NameList)
    """Comma-separated cameras to keep (the others are masked, as if missing); default all."""
    fusion: bool = False
    """Also report the multi-perspective fusion (stage, hop-chained, forward- and backward-anchored)."""
    camera_map: str = ""
    """For a dataset whose cameras are named otherwise: <dataset camera>:<model camera>,..."""


@dataclass
class AnnotateProgressConfig:
    model: Path = Path("outputs/reward/run")
    """Run directory written by train-reward."""
    dataset: Path = Path("datasets/so101_pick_place")
    """Dataset to annotate; sarm_progress.parquet is written at its root."""
    out: Path | None = None
    """Override the output parquet path."""
    camera_map: str = ""
    """For a dataset whose cameras are named otherwise: <dataset camera>:<model camera>,..."""


@dataclass
class RefitRewardConfig:
    model: Path = Path("outputs/reward/run")
    """Run directory written by train-reward (or an earlier refit)."""
    rollouts: Path = Path("datasets/rollouts")
    """Recorded episodes with their success flags (`deploy --record`)."""
    out: Path = Path("outputs/reward/refit")
    """Where to write the refit model (a new run directory)."""
    steps: int = 300
    """Gradient steps of the success discriminator."""
    failure_tail: float = 0.25
    """Share of each failed episode's last frames taken as failure states."""
    seed: int = 0


@dataclass
class RepairConfig:
    dataset: Path = Path("datasets/so101_pick_place")
    """Dataset to check (also positional: robo-reward repair DIR)."""


def flag_error(e: Exception) -> Exception:
    """The error a user should see for a config that does not parse: a config's own ValueError, or
    one that names the flag whose value could not be read as its type."""
    cause, path = e, None
    while isinstance(cause, draccus.utils.ParsingError) and cause.__cause__ is not None:
        if isinstance(cause, draccus.utils.DecodingError) and cause.key_path:
            path = path or cause.key_path
        cause = cause.__cause__
    if isinstance(cause, ValueError) and str(cause).startswith("--"):
        return cause
    if path is not None and isinstance(cause, (ValueError, TypeError)):
        return ValueError(f"--{'.'.join(path)}: {cause}")
    if isinstance(cause, ValueError):
        return cause
    return e


def _underscore_flag(arg: str) -> str:
    if not arg.startswith("--"):
        return arg
    key, sep, value = arg[2:].partition("=")
    return "--" + key.replace("-", "_") + sep + value


def cmd_collect(cfg: CollectConfig) -> int:
    from sim.collect import collect

    r = collect(cfg.task, cfg.episodes, cfg.quality, cfg.out, cfg.seed, tuple(cfg.cameras),
                cfg.width, cfg.height)
    state = "interrupted: " if r.interrupted else ""
    print(f"{state}added {r.added} episodes to {r.out} (now {r.total}); success rate of this run "
          f"{r.success_rate:.2f}")
    return 130 if r.interrupted else 0


def cmd_import_raw(cfg: ImportRawConfig) -> int:
    from robo_reward.data.raw_import import import_raw

    detected: set[str] = set()
    n = import_raw(cfg.src, cfg.out, list(cfg.stages) or None, list(cfg.cameras) or None, append=cfg.append,
                   detected=detected)
    for d in sorted(detected):
        print(f"detected: {d}")
    print(f"imported {n} episodes into {cfg.out}")
    return 0


def cmd_dataset_info(cfg: DatasetInfoConfig) -> int:
    from robo_reward.data.info import dataset_info

    text, png = dataset_info(cfg.dataset, cfg.png, cfg.episode)
    print(text)
    print(f"contact sheet {png}")
    return 0


def cmd_train_reward(cfg) -> int:
    from robo_reward.reward.train import train_reward

    out = train_reward(cfg)
    print(f"model saved to {out}")
    return 0


def cmd_eval_reward(cfg: EvalRewardConfig) -> int:
    from robo_reward.reward.evaluate import evaluate
    from robo_reward.utils import parse_camera_map

    r = evaluate(cfg.model, cfg.dataset, cfg.out_json, video=cfg.video,
                 cameras_present=list(cfg.cameras_present) or None, fusion=cfg.fusion,
                 camera_map=parse_camera_map(cfg.camera_map))
    keys = ("voc_pos", "voc_neg", "stage_accuracy", "auroc", "hop_mae")
    print(f"{r['n_episodes']} episodes ({r['episodes']}): " + "  ".join(
        f"{k}={r[k]:.3f}" if r[k] is not None else f"{k}=n/a" for k in keys))
    if cfg.fusion:
        print("fusion VOC+: " + "  ".join(f"{k}={v['voc_pos']:.3f}" for k, v in r["fusion"].items()
                                         if v["voc_pos"] is not None))
    print(f"metrics {cfg.out_json}, plots {Path(cfg.out_json).parent / 'plots'}")
    return 0


def cmd_annotate_progress(cfg: AnnotateProgressConfig) -> int:
    from robo_reward.reward.evaluate import annotate_progress
    from robo_reward.utils import parse_camera_map

    print(f"wrote {annotate_progress(cfg.model, cfg.dataset, cfg.out, camera_map=parse_camera_map(cfg.camera_map))}")
    return 0


def cmd_refit_reward(cfg: RefitRewardConfig) -> int:
    from robo_reward.reward.refit import refit_from_recordings

    r = refit_from_recordings(cfg.model, cfg.rollouts, cfg.out, cfg.steps, cfg.seed, failure_tail=cfg.failure_tail)

    def fmt(a, b):
        return "n/a" if a is None else f"{a:.3f} -> {b:.3f}"

    print(f"refit {cfg.model} on {r['rollout_episodes']} rollouts ({r['rollout_successes']} successful) and its "
          f"demos -> {cfg.out}\n  final progress, failed rollouts: "
          f"{fmt(r['final_progress_failed_before'], r['final_progress_failed_after'])}; successful: "
          f"{fmt(r['final_progress_success_before'], r['final_progress_success_after'])}")
    return 0


def cmd_rl(cfg) -> int:
    from robo_reward.rl.runner import run_rl

    r = run_rl(cfg)
    f = r["final"]
    print(f"{cfg.task} {cfg.reward}/{cfg.shaping}: success {f['success_rate']:.2f} over {f['eval_episodes']} eval "
          f"episodes after {f['env_steps']} env steps ({r['episodes']} online episodes, "
          f"{r['env_steps_per_s']:.0f} steps/s)")
    print(f"policy {Path(cfg.out) / 'policy.zip'}, eval history {Path(cfg.out) / 'eval.json'}")
    return 0


def cmd_train_bc(cfg) -> int:
    from robo_reward.policies.train_bc import train_bc

    r = train_bc(cfg)
    w = r["weights"]
    extra = (f", delta mean {w['delta_mean']:.4f} std {w['delta_std']:.4f}" if "delta_mean" in w else "")
    print(f"policy saved to {cfg.out} (final loss {r['final_loss']:.4f}; mean weight {w['mean_weight']:.3f}"
          f"{extra}; {r['frames_used']}/{r['frames']} frames used)")
    return 0


def cmd_eval_policy(cfg) -> int:
    from robo_reward.rl.evaluate import run_eval_policy

    r = run_eval_policy(cfg)
    print(f"{r['task']}: success {r['success_rate']:.2f} ({r['successes']}/{r['episodes']}), mean length "
          f"{r['mean_length']:.1f}; wrote {cfg.out_json}")
    return 0


def cmd_deploy(cfg) -> int:
    from real.deploy import RobotConnectionError, run_deploy

    try:
        r = run_deploy(cfg)
    except RobotConnectionError as e:
        print(f"robo-reward deploy: error: {e}", file=sys.stderr)
        return 3
    except FileNotFoundError as e:
        print(f"robo-reward deploy: error: {e}", file=sys.stderr)
        return 2
    s = r.summary()
    line = f"deploy: {s['episodes']} episode(s)"
    if r.success_rate is not None:
        line += f", success {r.success_rate:.2f} ({sum(bool(e.success) for e in r.episodes)}/{len(r.episodes)})"
    line += f", {r.sent_actions} actions sent; safety clips {r.safety}"
    if r.record:
        line += f"; recorded to {r.record}"
    print(line)
    if r.stop_reason is not None:
        print(f"deploy: stopped safely ({r.stop_reason}): held position, "
              f"{'saved' if cfg.on_stop == 'save' else 'discarded'} the episode in flight, disconnected",
              file=sys.stderr)
        return 1
    return 0


def cmd_repair(cfg: RepairConfig) -> int:
    """Check a dataset; restore an interrupted recording to its complete episodes."""
    from robo_reward.data.lerobot_io import DatasetError, WriterLock, read_info, repair_dataset

    if not (Path(cfg.dataset) / "meta" / "info.json").is_file():
        raise DatasetError(f"{cfg.dataset}: not a LeRobot dataset (no meta/info.json)")
    lock = WriterLock(Path(cfg.dataset))  # refuses while a recording is still going on
    try:
        report = repair_dataset(cfg.dataset, log=False)
    finally:
        lock.release()
    read_info(cfg.dataset)  # a damaged info.json that no commit could restore is named
    if report.episodes < 0:
        print(f"{cfg.dataset}: written without commit records (before crash-safe recording); nothing to check")
    else:
        print(report.describe())
    return 0


def cmd_quickstart(cfg) -> int:
    """The main job: demos -> reward model -> BC / RA-BC -> online fine-tuning -> deploy -> report."""
    from robo_reward.pipeline import run_pipeline

    return run_pipeline(cfg)


def cmd_report(cfg: ReportConfig) -> int:
    from robo_reward.report import write_report

    print(f"report: {write_report(cfg.run)}")
    return 0


COMMANDS = {
    "collect": (CollectConfig, cmd_collect, "collect scripted sim demos into a LeRobot dataset"),
    "import-raw": (ImportRawConfig, cmd_import_raw, "import raw multi-view recordings with keyframes"),
    "dataset-info": (DatasetInfoConfig, cmd_dataset_info, "summarise a dataset and draw a contact sheet"),
    "train-reward": ("robo_reward.reward.train:TrainRewardConfig", cmd_train_reward, "train the multi-view stage-aware process reward model"),
    "eval-reward": (EvalRewardConfig, cmd_eval_reward, "VOC+/-, stage accuracy, AUROC, hop MAE, plots"),
    "annotate-progress": (AnnotateProgressConfig, cmd_annotate_progress,
                          "write sarm_progress.parquet for LeRobot's RA-BC"),
    "refit-reward": (RefitRewardConfig, cmd_refit_reward,
                     "refit a reward model on recorded rollouts, labelled by their success flags"),
    "rl": ("robo_reward.rl.config:RLConfig", cmd_rl, "online RL (SAC/PPO) with sparse, dense or learned-PBRS reward"),
    "train-bc": ("robo_reward.policies.train_bc:TrainBCConfig", cmd_train_bc, "behaviour cloning, optionally reward-aligned (RA-BC)"),
    "eval-policy": ("robo_reward.rl.evaluate:EvalPolicyConfig", cmd_eval_policy,
                    "success rate of a BC or RL policy in sim, optional videos"),
    "deploy": ("real.deploy:DeployConfig", cmd_deploy,
               "run a policy on a robot (so101_follower, or mujoco_so101 with no hardware), record rollouts"),
    "quickstart": ("robo_reward.pipeline:PipelineConfig", cmd_quickstart,
                   "the whole pipeline: demos, reward model, BC and RA-BC, RL fine-tuning, deploy, report"),
    "report": (ReportConfig, cmd_report, "an HTML report of a pipeline run or of one dataset, reward, BC or RL run"),
    "repair": (RepairConfig, cmd_repair, "check a dataset; restore an interrupted recording to its complete episodes"),
}


def _bare_bool_flags(args: list[str], cfg_cls: type) -> list[str]:
    """``--append`` alone means ``--append=true`` for a boolean field of the command's config."""
    import dataclasses
    import typing

    try:
        hints = typing.get_type_hints(cfg_cls)
    except (NameError, TypeError):  # pragma: no cover - a config whose annotations do not resolve
        return args
    flags = {f"--{f.name}" for f in dataclasses.fields(cfg_cls) if hints.get(f.name) is bool}
    out = []
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        takes_value = nxt is not None and not nxt.startswith("--")
        out.append(f"{a}=true" if a in flags and not takes_value else a)
    return out


def quiet_libraries(verbose: bool) -> None:
    """Normal runs show our progress bars and results, not the libraries' logs (FFmpeg's, the
    encoders', LeRobot's INFO lines, ``datasets``' bars); ``--verbose`` (or ROBO_REWARD_VERBOSE=1)
    shows them."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    if verbose:
        os.environ["SVT_LOG"] = "3"
        return
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass
    try:
        import av.logging

        av.logging.set_level(av.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass


def usage() -> str:
    lines = ["usage: robo-reward [--debug] [--verbose] <command> [--field=value ...]   (robo-reward <command> --help)",
             "",
             "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    debug = "--debug" in argv  # tracebacks for every error, not only for bugs
    argv = [a for a in argv if a != "--debug"]
    verbose = os.environ.get("ROBO_REWARD_VERBOSE") == "1"  # library logs too (the pipeline passes it on)
    if argv and argv[0] == "--verbose":
        verbose, argv = True, argv[1:]
    if not argv:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"robo-reward: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    # `dataset-info DIR` takes the directory positionally too
    if name in ("dataset-info", "repair") and rest and not rest[0].startswith("-"):
        rest = [f"--dataset={rest[0]}", *rest[1:]]
    if name == "report" and rest and not rest[0].startswith("-"):
        rest = [f"--run={rest[0]}", *rest[1:]]
    cfg_cls, fn, _ = COMMANDS[name]
    if isinstance(cfg_cls, str):  # configs that pull in torch are imported only when used
        import importlib

        mod, _, attr = cfg_cls.partition(":")
        cfg_cls = getattr(importlib.import_module(mod), attr)
    # `--config=FILE` is accepted as draccus's `--config_path=FILE`, `--out-json` as `--out_json`
    rest = [f"--config_path={a.split('=', 1)[1]}" if a.startswith("--config=") else a for a in rest]
    rest = _bare_bool_flags([_underscore_flag(a) for a in rest], cfg_cls)
    quiet_libraries(verbose)
    try:
        try:
            cfg = draccus.parse(config_class=cfg_cls, args=rest, prog=f"robo-reward {name}")
        except draccus.utils.ParsingError as e:  # a config's own validation (__post_init__) or a bad value
            raise flag_error(e) from None
        return fn(cfg)
    except KeyboardInterrupt:  # Ctrl-C: what was saved stays saved (each command says how it resumes)
        if debug:
            raise
        print(f"robo-reward {name}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:  # bad input: one line, no traceback
        if debug:
            raise
        print(f"robo-reward {name}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # an optional backend that is not installed (the message says how)
        from sim.maniskill import ManiSkillUnavailable

        if not isinstance(e, ManiSkillUnavailable):
            raise
        print(f"robo-reward {name}: error: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
