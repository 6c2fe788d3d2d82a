"""Tests of scripts/check_layers.py on tiny fake trees (run as a subprocess, as CI would)."""

import re
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_layers.py"
VIOLATION = re.compile(r"^(?P<path>\S+):(?P<line>\d+): \[(?P<kind>cycle|layer|private)\] (?P<msg>.*)$")

CLEAN = {
    "robo_reward/__init__.py": "",
    "robo_reward/data/__init__.py": "from robo_reward.data.io import load\n",
    "robo_reward/data/io.py": """
        def _helper():
            return 1

        def load():
            return _helper()
    """,
    "robo_reward/reward/__init__.py": "",
    "robo_reward/reward/model.py": """
        from robo_reward.data import load
        from robo_reward.data.io import load as load2

        class Model:
            def __init__(self):
                self._secret_attr = load() + load2()

            def _prep(self, x):
                return x

            def same(self, other):
                return other._secret_attr == self._secret_attr
    """,
    "robo_reward/rl/__init__.py": "from .train import train\n",
    "robo_reward/rl/train.py": """
        from robo_reward import rl
        from robo_reward.reward.model import Model

        def train():
            return Model(), rl
    """,
    "robo_reward/cli.py": """
        import robo_reward.rl.train

        def main():
            return robo_reward.rl.train.train()
    """,
    "sim/__init__.py": "",
    "sim/env.py": """
        from robo_reward.data.io import load

        def make():
            return load()
    """,
}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def check(root: Path) -> tuple[int, list[dict[str, str]], str]:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)],
                          capture_output=True, text=True, timeout=60)
    lines = proc.stdout.splitlines()
    found = [m.groupdict() for m in map(VIOLATION.match, lines) if m]
    assert lines and lines[-1].startswith("check_layers:"), proc.stdout + proc.stderr
    return proc.returncode, found, proc.stdout


def tree(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    """The clean tree, with the files in ``extra`` added or replaced."""
    return write_tree(tmp_path, {**CLEAN, **(extra or {})})


def test_clean_tree_passes(tmp_path):
    rc, found, out = check(tree(tmp_path))
    assert (rc, found) == (0, []), out
    assert "0 violation(s)" in out


def test_cycle_is_reported_with_both_modules(tmp_path):
    rc, found, out = check(tree(tmp_path, {
        "robo_reward/rl/a.py": "from robo_reward.rl import b\n",
        "robo_reward/rl/b.py": "def f():\n    from robo_reward.rl.a import x\n",
    }))
    cycles = [f for f in found if f["kind"] == "cycle"]
    assert rc == 1 and len(cycles) == 1, out
    assert "robo_reward.rl.a -> robo_reward.rl.b -> robo_reward.rl.a" in cycles[0]["msg"]
    assert "robo_reward/rl/a.py:1" in cycles[0]["msg"] and "robo_reward/rl/b.py:2" in cycles[0]["msg"]


def test_lazy_upward_import_is_a_layer_violation(tmp_path):
    rc, found, out = check(tree(tmp_path, {
        "robo_reward/data/io.py": "def load():\n    from sim.scene import build\n",
        "sim/scene.py": "def build():\n    pass\n",
    }))
    assert rc == 1, out
    assert found == [{"path": "robo_reward/data/io.py", "line": "2", "kind": "layer",
                      "msg": "robo_reward.data.io (rank 2) imports sim.scene (rank 6) (function-level import)"}]


def test_relative_upward_import_is_resolved(tmp_path):
    rc, found, out = check(tree(tmp_path, {"robo_reward/data/io.py": "def load():\n    from ..reward import model\n"}))
    layers = [f["msg"] for f in found if f["kind"] == "layer"]  # (model.py imports io back: a cycle too)
    assert layers == ["robo_reward.data.io (rank 2) imports robo_reward.reward.model (rank 3) (function-level import)"], out


def test_type_checking_import_is_exempt(tmp_path):
    io = """
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from sim.env import make

        def load(f: "make"):
            return f
    """
    rc, found, out = check(tree(tmp_path, {"robo_reward/data/io.py": io}))
    assert (rc, found) == (0, []), out


def test_private_import_from_another_module(tmp_path):
    rc, found, out = check(tree(tmp_path, {"sim/env.py": "from robo_reward.data.io import _helper\n"}))
    assert rc == 1, out
    assert [(f["path"], f["kind"]) for f in found] == [("sim/env.py", "private")]
    assert "_helper" in found[0]["msg"] and "robo_reward.data.io" in found[0]["msg"]


def test_private_attribute_of_module_object(tmp_path):
    env = "import robo_reward.data.io as m\n\n\ndef make():\n    return m._helper()\n"
    rc, found, out = check(tree(tmp_path, {"sim/env.py": env}))
    assert [(f["path"], f["line"], f["kind"]) for f in found] == [("sim/env.py", "5", "private")], out


def test_private_attribute_set_on_self_in_another_module(tmp_path):
    env = """
        from robo_reward.reward.model import Model

        def make(model: Model):
            return model._secret_attr, model._replace()
    """
    rc, found, out = check(tree(tmp_path, {"sim/env.py": env}))
    assert rc == 1, out
    assert [(f["path"], f["line"], f["kind"]) for f in found] == [("sim/env.py", "4", "private")]
    assert "_secret_attr" in found[0]["msg"] and "robo_reward.reward.model" in found[0]["msg"]


def test_cli_may_import_anything_lazily(tmp_path):
    cli = "def main():\n    from sim.env import make\n    from robo_reward.rl import train\n    return make, train\n"
    rc, found, out = check(tree(tmp_path, {"robo_reward/cli.py": cli}))
    assert (rc, found) == (0, []), out


def test_top_level_init_is_rank_zero(tmp_path):
    rc, found, out = check(tree(tmp_path, {"robo_reward/__init__.py": "from robo_reward.data import load\n"}))
    assert [(f["path"], f["kind"]) for f in found] == [("robo_reward/__init__.py", "layer")], out


def test_repo_layers():
    rc, found, out = check(SCRIPT.parent.parent)
    assert (rc, found) == (0, []), out
