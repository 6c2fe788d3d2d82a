"""The main job, end to end: demonstrations -> reward model -> BC and RA-BC -> online fine-tuning
with the learned reward -> deployment on the MuJoCo twin, recorded -> one HTML report.

Each step runs the same ``robo-reward`` subcommands a user would (each in its own process, its
progress bars on the terminal), so the report can list them and anyone can re-run one by hand.
``<out>/pipeline.json`` records every finished command: a re-run skips them and continues where
an interruption (Ctrl-C, a kill) left off; the commands themselves resume their own work
(``collect`` tops up, ``train-reward`` and ``rl`` continue from their checkpoints).

``robo-reward quickstart`` runs it on the defaults below (sized for a 2-core CPU machine, about
15 minutes); ``--config=configs/pipeline/<task>.yaml`` at benchmark scale.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robo_reward.utils import NameList


@dataclass
class PipelineConfig:
    out: Path = Path("outputs/quickstart")
    """Run directory: every step's output, pipeline.json and report.html."""
    task: str = "pick_place"
    """Task (pick_place, stack, push)."""
    seed: int = 0
    """Seed of the demos, the reward model, the policies and the RL run."""
    demos: int = 24
    """Demonstrations to collect."""
    quality: str = "mixed"
    """Their quality mix (see `collect --help`)."""
    cameras: NameList = field(default_factory=lambda: NameList(["front", "side", "wrist"]))
    """Cameras to record and train the reward model on."""
    reward_config: Path = Path("configs/reward/rl_potential.yaml")
    """train-reward's config: the model serves RA-BC, the RL potential and deploy's live progress."""
    reward_steps: int = 700
    """train-reward steps."""
    reward_args: list[str] = field(default_factory=list)
    """More train-reward flags, e.g. [--batch_size=32]."""
    bc_steps: int = 1500
    """train-bc steps (plain BC and RA-BC alike)."""
    rabc_args: list[str] = field(default_factory=lambda: ["--min-final-progress=0.9"])
    """RA-BC's flags beside --rabc=true (default: also drop episodes whose final progress is below 0.9)."""
    eval_episodes: int = 30
    """Seeded episodes per policy evaluation (BC, RA-BC, RL; the same seeds for each)."""
    rl_episodes: int = 20
    """Online episodes of fine-tuning."""
    rl_eval_every: int = 10
    """Online episodes between RL evaluations."""
    rl_refit_every: int = 10
    """Online episodes between reward refits on the policy's own rollouts (0: frozen reward)."""
    rl_args: list[str] = field(default_factory=lambda: ["--n-step=3", "--gamma=0.99"])
    """More rl flags."""
    deploy_episodes: int = 3
    """Episodes deployed on mujoco_so101 and recorded."""
    deploy_args: list[str] = field(default_factory=lambda: ["--overrun_factor=10"])
    """More deploy flags. The default lets a control step run up to 10x the period before the watchdog stops
    the run: the twin's physics waits for the loop, so on a busy CPU a slow step is no hazard (a real arm's
    default stays 2x)."""
    verbose: bool = False
    """Show library output (FFmpeg, LeRobot, pip) too."""

    def __post_init__(self) -> None:
        self.cameras = NameList.parse(self.cameras)
        for name in ("demos", "reward_steps", "bc_steps", "eval_episodes", "rl_episodes", "rl_eval_every",
                     "deploy_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}: {getattr(self, name)}; expected >= 1")
        if self.rl_refit_every < 0:
            raise ValueError(f"--rl_refit_every: {self.rl_refit_every}; expected >= 0 (0: no refit)")


class Paths:
    """Where each step writes, under the run directory."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.demos, self.reward, self.bc, self.rabc, self.rl, self.rollouts = (
            self.root / n for n in ("demos", "reward", "bc", "rabc", "rl", "rollouts"))
        self.state, self.report, self.deploy_json = (self.root / n for n in ("pipeline.json", "report.html",
                                                                             "deploy.json"))


STEPS: tuple[tuple[str, str], ...] = (
    ("collect", "collect mixed-quality demonstrations"),
    ("reward", "train the reward model, evaluate it on held-out episodes"),
    ("bc", "annotate progress, train plain BC and RA-BC, evaluate both"),
    ("rl", "fine-tune the better policy online with the learned reward"),
    ("deploy", "deploy the result on mujoco_so101 with live progress, recording it"),
    ("report", "write the report"),
)


class StepFailed(RuntimeError):
    """A pipeline step's command failed: the message names the step and what to do."""


class Interrupted(RuntimeError):
    """Ctrl-C (or SIGTERM) during a step; finished steps and commands are kept."""


class Pipeline:
    def __init__(self, cfg: PipelineConfig, cli: list[str] | None = None):
        self.cfg = cfg
        self.p = Paths(Path(cfg.out))
        self.cli = cli or [sys.executable, "-m", "robo_reward.cli"]
        self.state = self._load_state()

    # ---- state -------------------------------------------------------------------------------
    def _load_state(self) -> dict[str, Any]:
        path = self.p.state
        if path.is_file():
            try:
                state = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: unreadable ({e}); delete it to start the pipeline over") from e
            if state.get("task") != self.cfg.task:
                raise ValueError(f"{path}: this run directory holds a {state.get('task')} pipeline, not "
                                 f"{self.cfg.task}; use another --out")
            return state
        return {"task": self.cfg.task, "commands": {}, "steps": {}, "config": _jsonable(self.cfg)}

    def _save_state(self) -> None:
        self.p.root.mkdir(parents=True, exist_ok=True)
        tmp = self.p.state.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state, indent=2))
        os.replace(tmp, self.p.state)

    # ---- running -----------------------------------------------------------------------------
    def command(self, step: str, key: str, args: list[str]) -> None:
        """Run ``robo-reward <args>`` unless already done in this run directory."""
        done = self.state["commands"].get(key)
        if done and done.get("done"):
            return
        shown = "robo-reward " + " ".join(args)
        print(f"  $ {shown}", flush=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.cfg.verbose:
            env["ROBO_REWARD_VERBOSE"] = "1"
        t0 = time.perf_counter()
        proc = subprocess.Popen([*self.cli, *args], env=env)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)  # the command saves what it has (checkpoint, episodes) and stops
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise Interrupted(step) from None
        if rc in (130, -signal.SIGINT):
            raise Interrupted(step)
        if rc != 0:
            raise StepFailed(f"step '{step}' failed: `{shown}` exited {rc} (its error is printed above). Fix the cause "
                             f"and re-run the same command: the finished steps in {self.p.state} are kept")
        self.state["commands"][key] = {"done": True, "args": args, "seconds": time.perf_counter() - t0}
        self._save_state()

    def run(self) -> Path:
        t_start = time.perf_counter()
        for i, (name, what) in enumerate(STEPS, 1):
            if self.state["steps"].get(name, {}).get("done"):
                print(f"[{i}/{len(STEPS)}] {name}: done already, skipped", flush=True)
                continue
            print(f"[{i}/{len(STEPS)}] {name}: {what}", flush=True)
            t0 = time.perf_counter()
            getattr(self, f"step_{name}")()
            self.state["steps"][name] = {"done": True, "seconds": time.perf_counter() - t0}
            self._save_state()
        self.state["last_run_seconds"] = time.perf_counter() - t_start
        self._save_state()
        return self.p.report

    # ---- steps -------------------------------------------------------------------------------
    def step_collect(self) -> None:
        c, p = self.cfg, self.p
        self.command("collect", "collect", ["collect", f"--task={c.task}", f"--episodes={c.demos}",
                                            f"--quality={c.quality}", f"--seed={c.seed}", f"--out={p.demos}",
                                            f"--cameras={','.join(c.cameras)}"])
        self.command("collect", "dataset-info", ["dataset-info", str(p.demos), f"--png={p.demos / 'contact_sheet.png'}"])

    def step_reward(self) -> None:
        c, p = self.cfg, self.p
        self.command("reward", "train-reward", [
            "train-reward", f"--config={c.reward_config}", f"--dataset={p.demos}", f"--out={p.reward}",
            f"--steps={c.reward_steps}", f"--seed={c.seed}", f"--cameras={','.join(c.cameras)}", "--wandb=disabled",
            *c.reward_args])
        self.command("reward", "eval-reward", ["eval-reward", f"--model={p.reward}", f"--dataset={p.demos}",
                                               f"--out_json={p.reward / 'eval' / 'metrics.json'}"])

    def step_bc(self) -> None:
        c, p = self.cfg, self.p
        self.command("bc", "annotate-progress", ["annotate-progress", f"--model={p.reward}", f"--dataset={p.demos}"])
        common = [f"--dataset={p.demos}", f"--steps={c.bc_steps}", f"--seed={c.seed}", "--wandb=disabled"]
        self.command("bc", "train-bc", ["train-bc", *common, f"--out={p.bc}"])
        self.command("bc", "train-rabc", ["train-bc", *common, f"--out={p.rabc}", "--rabc=true", *c.rabc_args])
        for run in (p.bc, p.rabc):
            self.command("bc", f"eval-{run.name}", ["eval-policy", f"--policy={run}", f"--episodes={c.eval_episodes}",
                                                    f"--out_json={run / 'eval.json'}"])

    def best_bc(self) -> Path:
        """The better of BC and RA-BC by evaluated success (BC on a tie: the simpler one)."""
        rate = {run: json.loads((run / "eval.json").read_text())["success_rate"] for run in (self.p.bc, self.p.rabc)}
        return self.p.rabc if rate[self.p.rabc] > rate[self.p.bc] else self.p.bc

    def step_rl(self) -> None:
        c, p = self.cfg, self.p
        base = self.best_bc()
        self.state["rl_base"] = str(base)
        self.command("rl", "rl", [
            "rl", f"--task={c.task}", f"--init-policy={base}", "--reward=learned", f"--reward-model={p.reward}",
            f"--refit-every={c.rl_refit_every}", f"--max-episodes={c.rl_episodes}", f"--steps={c.rl_episodes * 400}",
            f"--eval-every-episodes={c.rl_eval_every}", f"--eval-episodes={c.eval_episodes}", "--phi-corr-episodes=2",
            f"--seed={c.seed}", f"--out={p.rl}", "--wandb=disabled", *c.rl_args])

    def deployed_policy(self) -> Path:
        """The RL policy, unless its final evaluation fell below the policy it started from."""
        evals = json.loads((self.p.rl / "eval.json").read_text())
        base = Path(self.state.get("rl_base") or self.best_bc())
        base_rate = json.loads((base / "eval.json").read_text())["success_rate"]
        return self.p.rl if evals and evals[-1]["success_rate"] >= base_rate else base

    def step_deploy(self) -> None:
        c, p = self.cfg, self.p
        if not self.state["commands"].get("deploy", {}).get("done") and p.rollouts.exists():
            shutil.rmtree(p.rollouts)  # an interrupted deploy step starts over: its episodes were not all recorded
        policy = self.deployed_policy()
        self.state["deployed"] = str(policy)
        self.command("deploy", "deploy", [
            "deploy", "--robot.type=mujoco_so101", f"--robot.task={c.task}", "--robot.privileged_state=true",
            f"--policy={policy}",
            f"--reward-model={p.reward}", f"--episodes={c.deploy_episodes}", f"--record={p.rollouts}",
            "--keyboard=false", "--ask_success=false", f"--out_json={p.deploy_json}", *c.deploy_args])

    def step_report(self) -> None:
        from robo_reward.report import write_report

        write_report(self.p.root)


def _jsonable(cfg) -> dict:
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, list) else v
    return out


def summary_table(root: Path) -> str:
    """The few numbers a person wants at the end of a pipeline run."""
    from robo_reward.report import collect_results

    r = collect_results(Path(root))
    rows = []
    if r.get("dataset"):
        d = r["dataset"]
        rows.append(("demos", f"{d['episodes']} episodes, success {d['success_rate']:.2f}"))
    if r.get("reward"):
        m = r["reward"]
        rows.append(("reward model", "  ".join(f"{k} {_fmt(m.get(k))}" for k in ("voc_pos", "voc_neg",
                                                                                 "stage_accuracy", "auroc"))))
    for key, label in (("bc", "BC"), ("rabc", "RA-BC")):
        if r.get(key):
            rows.append((label, f"success {r[key]['success_rate']:.2f} ({r[key]['successes']}/{r[key]['episodes']})"))
    if r.get("rl"):
        ev = r["rl"]["evals"]
        rows.append(("RL fine-tune", " -> ".join(f"{e['success_rate']:.2f}" for e in ev)
                     + f" (online episodes {', '.join(str(e['online_episodes']) for e in ev)})"))
    if r.get("deploy"):
        dp = r["deploy"]
        rows.append(("deploy", f"{dp['episodes']} episodes on mujoco_so101, success {_fmt(dp.get('success_rate'))}"))
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def run_pipeline(cfg: PipelineConfig) -> int:
    pipe = Pipeline(cfg)
    try:
        report = pipe.run()
    except Interrupted as e:
        print(f"\nquickstart: interrupted during step '{e}'. Finished work is kept in {cfg.out}; run the same "
              "command again to continue.", file=sys.stderr)
        return 130
    except StepFailed as e:
        print(f"\nquickstart: {e}", file=sys.stderr)
        return 1
    print(f"\n{summary_table(cfg.out)}\n\nreport: {report}")
    return 0
