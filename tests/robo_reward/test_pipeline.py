"""The main job end to end at a tiny scale: interrupted during training, continued, every
artefact checked, and the report opened in headless Chromium with every image and video loaded."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from robo_reward.pipeline import PipelineConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--task=push", "--demos=4", "--reward_steps=60", "--bc_steps=30", "--eval_episodes=3", "--rl_episodes=2",
        "--rl_eval_every=1", "--rl_refit_every=1", "--deploy_episodes=1", "--rabc_args=[]"]

CHECK = """
<pre id="rr-check">pending</pre>
<script>
window.addEventListener("load", () => setTimeout(() => {
  const bad = [];
  for (const img of document.images) if (!img.complete || img.naturalWidth === 0) bad.push("img " + img.src);
  for (const v of document.querySelectorAll("video")) if (v.error || v.readyState < 2) bad.push("video " + v.src);
  document.getElementById("rr-check").textContent =
    "images=" + document.images.length + " videos=" + document.querySelectorAll("video").length +
    " broken=" + JSON.stringify(bad);
}, 1500));
</script>
"""


def open_in_chromium(report: Path) -> dict:
    """Load ``report`` in headless Chromium; (images, videos, broken) as the page saw them."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed: Debian's chromium package (scripts/test.sh installs it)"
    page = report.with_name("report_check.html")  # beside the report, so relative paths resolve the same
    page.write_text(report.read_text().replace("</body>", CHECK + "</body>"))
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    page.unlink()
    m = re.search(r'<pre id="rr-check">images=(\d+) videos=(\d+) broken=(.*?)</pre>', out, re.S)
    assert m, f"the page did not report back; Chromium printed: {out[-2000:]}"
    return {"images": int(m.group(1)), "videos": int(m.group(2)), "broken": json.loads(m.group(3).replace("&quot;", '"'))}


def test_quickstart_defaults_are_the_quickstart_yaml():
    y = yaml.safe_load((ROOT / "configs" / "pipeline" / "quickstart.yaml").read_text())
    d = {f.name: getattr(PipelineConfig(), f.name) for f in dataclasses.fields(PipelineConfig)}
    assert {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, list) else v) for k, v in d.items()} == y


def test_pipeline_interrupted_during_training_continues_and_reports(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "robo_reward.cli", "quickstart", f"--out={out}", *TINY]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (out / "reward" / "split.json").exists():  # train-reward has started
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    first = proc.communicate(timeout=180)[0]
    assert proc.returncode == 130, first[-3000:]
    assert "interrupted during step 'reward'" in first
    state = json.loads((out / "pipeline.json").read_text())
    assert state["steps"]["collect"]["done"] and "reward" not in state["steps"]
    assert not (out / "reward" / "model.safetensors").exists()

    second = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "[1/6] collect: done already, skipped" in second.stdout
    assert "robo-reward collect" not in second.stdout  # no command of a finished step ran again

    # every artefact
    for rel in ("demos/meta/info.json", "demos/contact_sheet.png", "demos/sarm_progress.parquet",
                "reward/model.safetensors", "reward/eval/metrics.json", "bc/policy.json", "bc/eval.json",
                "rabc/policy.json", "rabc/eval.json", "rl/policy.json", "rl/eval.json", "rollouts/meta/info.json",
                "deploy.json", "report.html", "report_files/policies.png", "report_files/rl_curve.png"):
        assert (out / rel).is_file(), rel
    state = json.loads((out / "pipeline.json").read_text())
    assert all(state["steps"][s]["done"] for s in ("collect", "reward", "bc", "rl", "deploy", "report"))
    assert json.loads((out / "deploy.json").read_text())["episodes"] == 1
    assert "report: " in second.stdout and "RA-BC" in second.stdout  # the closing table

    # the report, in a browser: every image and the recorded video load
    page = (out / "report.html").read_text()
    for section in ("Demonstrations", "Reward model", "BC against RA-BC", "Online fine-tuning", "Deployment"):
        assert section in page, section
    seen = open_in_chromium(out / "report.html")
    assert seen["broken"] == [] and seen["images"] >= 5 and seen["videos"] >= 1, seen

    # a failing step names itself and what to do, and keeps what was done
    bad = subprocess.run([*cmd[:4], f"--out={tmp_path / 'bad'}", *TINY, "--reward_args=[--model.window=0]"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "step 'reward' failed" in bad.stderr and "re-run" in bad.stderr
    assert json.loads((tmp_path / "bad" / "pipeline.json").read_text())["steps"]["collect"]["done"]


def test_report_of_a_single_reward_run(tiny_run, tiny_dataset, tmp_path):
    from robo_reward.cli import main

    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    assert main(["eval-reward", f"--model={run}", f"--dataset={tiny_dataset}",
                 f"--out_json={run / 'eval' / 'metrics.json'}"]) == 0
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "Reward model" in page and "Online fine-tuning" not in page
    seen = open_in_chromium(run / "report.html")
    assert seen["broken"] == [] and seen["images"] >= 1
    with pytest.raises(ValueError, match="not a run this report knows"):
        from robo_reward.report import write_report

        write_report(tmp_path)
