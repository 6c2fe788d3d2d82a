"""Static architecture checker for the first-party packages (robo_reward, sim, real, plugins).

Rules (each violation is printed as ``path:line: [kind] message``; exit status 1 if any):

1. ``[cycle]``   No import cycles between first-party modules. Every import counts, function-level
   (lazy) ones included; imports under ``if TYPE_CHECKING:`` do not (they never run). Edges between a
   package ``__init__`` and its own submodules (either direction) are re-exports and are left out.
   Each cycle is a strongly connected component of size > 1, reported with one module path through it.
2. ``[layer]``   Layers point one way: a module may import first-party modules of its own rank or lower
   (see ``LAYERS``). Lazy imports count; ``if TYPE_CHECKING:`` imports are exempt.
3. ``[private]`` No private name (``_x``, not a dunder) used outside its module: no ``from a.b import _x``,
   no ``m._x`` on a first-party module object, and no ``obj._x`` (obj not ``self``/``cls``/``super()``)
   when ``_x`` is a private method or ``self._x`` attribute of a class in *another* first-party module
   and not one of the current module's own. ``ALLOW`` lists attribute names used on third-party objects.
   Private submodules (``pkg/_impl.py``) may be used from inside ``pkg`` only.

Editing LAYERS: keys are dotted module prefixes, values are ranks (lower = lower layer). The longest
matching prefix wins, so a new subpackage inherits its parent's rank until it gets its own entry.
``EXACT_LAYERS`` overrides the rank of a single module (not its children).

Usage: ``python scripts/check_layers.py [--root REPO]``
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

# Lower rank = lower layer; a module may import only its own rank or lower. Longest prefix wins.
LAYERS: dict[str, int] = {
    "robo_reward.utils": 0, "robo_reward.stats": 0, "robo_reward.errors": 0, "robo_reward.registry": 0,
    "robo_reward.envs": 0,
    "robo_reward.embodiments": 1,
    "robo_reward.data": 2,
    "robo_reward.reward": 3,
    "robo_reward.policies": 4,
    "robo_reward.rl": 5,
    "robo_reward": 5,                 # anything else in robo_reward not listed
    "sim": 6,
    "real": 7,
    "plugins": 8,
    "robo_reward.cli": 9,             # the CLI wires everything together
    "robo_reward.pipeline": 9,        # the main job runs the CLI's commands
}
# Exact module names whose rank differs from their prefix (children are not affected).
EXACT_LAYERS: dict[str, int] = {
    "robo_reward": 0,                 # top-level robo_reward/__init__.py must import nothing above
}
# Private attribute names allowed on (third-party) objects -> why. Add an entry with its reason.
_NAMEDTUPLE = "namedtuple public API (underscored to avoid field-name clashes)"
_SB3 = "stable-baselines3 protected API documented for subclasses/callbacks"
ALLOW: dict[str, str] = {
    "_replace": _NAMEDTUPLE, "_asdict": _NAMEDTUPLE, "_fields": _NAMEDTUPLE, "_make": _NAMEDTUPLE,
    "_last_obs": _SB3, "_n_updates": _SB3, "_setup_model": _SB3, "_logger": _SB3, "_on_step": _SB3,
    "_current_progress_remaining": _SB3, "_total_timesteps": _SB3, "_episode_num": _SB3,
}
PACKAGES: tuple[str, ...] = ("robo_reward", "sim", "real", "plugins")
SELF_NAMES: frozenset[str] = frozenset({"self", "cls"})

Violation = tuple[str, int, str, str]  # (relative path, line, kind, message)


class Module:
    """One first-party source file."""
    def __init__(self, name: str, rel: str, tree: ast.Module, is_package: bool) -> None:
        self.name, self.rel, self.tree, self.is_package = name, rel, tree, is_package


class Edge:
    """One resolved first-party import."""
    def __init__(self, src: str, dst: str, line: int, type_only: bool, lazy: bool) -> None:
        self.src, self.dst, self.line, self.type_only, self.lazy = src, dst, line, type_only, lazy


def is_private(name: str) -> bool:
    return len(name) > 1 and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_first_party(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def rank_of(name: str) -> int | None:
    if name in EXACT_LAYERS:
        return EXACT_LAYERS[name]
    matches = [p for p in LAYERS if within(name, p)]
    return LAYERS[max(matches, key=len)] if matches else None


def load_modules(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")) if (root / pkg).is_dir() else []:
            if "__pycache__" in path.parts:
                continue
            rel = path.relative_to(root)
            parts = list(rel.with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
            modules[name] = Module(name, rel.as_posix(), tree, is_package)
    return modules


class ImportVisitor(ast.NodeVisitor):
    """Collects first-party imports, module aliases and private from-imports of one module."""

    def __init__(self, mod: Module, known: set[str]) -> None:
        self.mod, self.known = mod, known
        self.edges: list[Edge] = []
        self.aliases: dict[str, str] = {}  # local name -> first-party module it is bound to
        self.private_names: list[tuple[int, str, str]] = []  # (line, module, private name)
        self._type_only, self._depth = False, 0

    def resolve(self, name: str) -> str:
        """The longest known module prefix of ``name`` (``name`` itself if none is known)."""
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in self.known:
                return ".".join(parts[:i])
        return name

    def visit_If(self, node: ast.If) -> None:
        if _dotted(node.test) not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            self.generic_visit(node)
            return
        saved, self._type_only = self._type_only, True
        for stmt in node.body:
            self.visit(stmt)
        self._type_only = saved
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def _add(self, dst: str, line: int) -> None:
        self.edges.append(Edge(self.mod.name, dst, line, self._type_only, self._depth > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not is_first_party(alias.name):
                continue
            if alias.asname:
                self.aliases[alias.asname] = self.resolve(alias.name)
            else:
                self.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
            self._add(self.resolve(alias.name), node.lineno)

    def _base(self, node: ast.ImportFrom) -> str | None:
        if node.level == 0:
            return node.module if node.module and is_first_party(node.module) else None
        parts = self.mod.name.split(".")
        package = parts if self.mod.is_package else parts[:-1]
        if node.level - 1 > len(package):
            return None  # beyond the top-level package
        package = package[: len(package) - (node.level - 1)]
        return ".".join(package + ([node.module] if node.module else [])) or None

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._base(node)
        if base is None:
            return
        for alias in node.names:
            sub, owner = f"{base}.{alias.name}", self.resolve(base)
            if sub in self.known:
                self.aliases[alias.asname or alias.name] = sub
            # a private submodule may be imported inside its package; a private name only in its module
            ok = within(self.mod.name, base) if sub in self.known else owner == self.mod.name
            if is_private(alias.name) and not ok:
                self.private_names.append((node.lineno, owner, alias.name))
            self._add(sub if sub in self.known else owner, node.lineno)


def tarjan(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of ``graph`` (recursive Tarjan; module graphs are small)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            sccs.append(sorted(scc))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return sccs


def _cycle_path(start: str, scc: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest cycle start -> ... -> start inside ``scc`` (BFS)."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for u in frontier:
            for w in sorted(graph[u] & scc):
                if w == start:
                    path = [u]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return path[::-1] + [start]
                if w not in parent:
                    parent[w] = u
                    nxt.append(w)
        frontier = nxt
    return [start]


def check_cycles(edges: list[Edge], modules: dict[str, Module]) -> list[Violation]:
    where: dict[tuple[str, str], int] = {}
    for e in edges:
        if e.type_only or e.dst not in modules or e.src == e.dst:
            continue
        if within(e.src, e.dst) or (modules[e.src].is_package and within(e.dst, e.src)):
            continue  # re-export edge between a package __init__ and its own submodule
        key = (e.src, e.dst)
        where[key] = min(where.get(key, e.line), e.line)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for src, dst in where:
        graph[src].add(dst)
    out: list[Violation] = []
    for scc in tarjan(graph):
        if len(scc) < 2:
            continue
        path = _cycle_path(scc[0], set(scc), graph)
        hops = [f"{modules[a].rel}:{where[(a, b)]}" for a, b in zip(path, path[1:], strict=False)]
        extra = sorted(set(scc) - set(path))
        msg = f"import cycle {' -> '.join(path)} ({', '.join(hops)})"
        msg += f"; same cycle group: {', '.join(extra)}" if extra else ""
        out.append((modules[path[0]].rel, where[(path[0], path[1])], "cycle", msg))
    return out


def check_layers(edges: list[Edge], modules: dict[str, Module]) -> list[Violation]:
    out: list[Violation] = []
    for e in edges:
        src_rank, dst_rank = rank_of(e.src), rank_of(e.dst)
        if e.type_only or e.src == e.dst or src_rank is None or dst_rank is None or dst_rank <= src_rank:
            continue
        lazy = " (function-level import)" if e.lazy else ""
        msg = f"{e.src} (rank {src_rank}) imports {e.dst} (rank {dst_rank}){lazy}"
        out.append((modules[e.src].rel, e.line, "layer", msg))
    return out


def private_definitions(tree: ast.Module) -> set[str]:
    """Private names defined as methods of classes or assigned as ``self._name = ...``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            names |= {s.name for s in node.body
                      if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef) and is_private(s.name)}
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and is_private(node.attr)
              and isinstance(node.value, ast.Name) and node.value.id == "self"):
            names.add(node.attr)
    return names


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def _is_self_like(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in SELF_NAMES
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def check_attributes(mod: Module, visitor: ImportVisitor, owners: dict[str, set[str]]) -> list[Violation]:
    own = {n for n, where in owners.items() if mod.name in where}
    out: list[Violation] = []
    for node in ast.walk(mod.tree):
        if not isinstance(node, ast.Attribute) or not is_private(node.attr) or _is_self_like(node.value):
            continue
        dotted = _dotted(node.value)
        head, _, rest = (dotted or "").partition(".")
        target = visitor.aliases[head] + ("." + rest if rest else "") if head in visitor.aliases else None
        if target in visitor.known:
            sub = f"{target}.{node.attr}" in visitor.known  # a private submodule, fine inside its package
            ok = within(mod.name, target) if sub else target == mod.name
            msg = None if ok else f"{mod.name} uses private name {node.attr} of module {target}"
        elif node.attr in owners and node.attr not in own and node.attr not in ALLOW:
            defined = ", ".join(sorted(owners[node.attr]))
            msg = f"{mod.name} accesses private attribute .{node.attr} defined in {defined}"
        else:
            msg = None
        if msg:
            out.append((mod.rel, node.lineno, "private", msg))
    return out


def check_private(modules: dict[str, Module], visitors: dict[str, ImportVisitor]) -> list[Violation]:
    owners: dict[str, set[str]] = {}
    for mod in modules.values():
        for name in private_definitions(mod.tree):
            owners.setdefault(name, set()).add(mod.name)
    out: list[Violation] = []
    for mod in modules.values():
        v = visitors[mod.name]
        for line, target, name in v.private_names:
            out.append((mod.rel, line, "private", f"{mod.name} imports private name {name} from {target}"))
        out += check_attributes(mod, v, owners)
    return out


def run(root: Path) -> tuple[list[Violation], int]:
    """All violations under ``root`` (sorted, deduplicated) and the number of modules scanned."""
    modules = load_modules(root)
    visitors: dict[str, ImportVisitor] = {}
    for mod in modules.values():
        visitors[mod.name] = ImportVisitor(mod, set(modules))
        visitors[mod.name].visit(mod.tree)
    edges = [e for v in visitors.values() for e in v.edges]
    found = check_cycles(edges, modules) + check_layers(edges, modules) + check_private(modules, visitors)
    return sorted(set(found)), len(modules)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="repository root (default: the parent of scripts/)")
    args = parser.parse_args(argv)
    try:
        violations, n_modules = run(args.root.resolve())
    except SyntaxError as exc:
        print(f"{exc.filename}:{exc.lineno}: [syntax] {exc.msg}", file=sys.stderr)
        return 2
    for path, line, kind, msg in violations:
        print(f"{path}:{line}: [{kind}] {msg}")
    counts = {k: sum(v[2] == k for v in violations) for k in ("cycle", "layer", "private")}
    detail = ", ".join(f"{k}: {n}" for k, n in counts.items())
    print(f"check_layers: {len(violations)} violation(s) in {n_modules} modules ({detail})")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
