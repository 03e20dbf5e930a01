"""The package's import graph: no cycles, and the core layers import nothing of the tools built on them.

The graph is read with ``ast`` from every module under ``src/tcsnn``, imports inside functions included, so a
deferred import cannot hide a cycle.  An edge ``a -> b`` means module ``a`` imports ``b`` (or a name from it);
importing a submodule counts as importing its parent packages too, as Python runs their ``__init__``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import tcsnn

PACKAGE_DIR = Path(tcsnn.__file__).resolve().parent

#: Subpackages the core must not reach: quantisation, evaluation, training, data, tools and the CLI.
TOOLS = ("tcsnn.quant", "tcsnn.metrics", "tcsnn.train", "tcsnn.data", "tcsnn.commands", "tcsnn.cli",
         "tcsnn.neuromorphic", "tcsnn.robustness", "tcsnn.models")
CORE = ("tcsnn.functional", "tcsnn.nn")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the tcsnn modules it imports (anywhere in its body), parents of submodules included."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, path.name == "__init__.py", node)
                subs = [f"{base}.{alias.name}" for alias in node.names]
                if all(s in modules for s in subs):
                    targets.update(subs)  # `from pkg import submodule` needs the submodule, not pkg's names
                else:
                    targets.add(base)
        own_parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for target in targets:
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a, a.b and a.b.c ...
                prefix = ".".join(parts[:i])
                # ... but a module's own parent packages are already running when it runs (no new edge),
                # unless it asks for names defined in them (the full target)
                implied_parent = prefix in own_parents and prefix != target
                if prefix in modules and prefix not in (name, "tcsnn") and not implied_parent:
                    graph[name].add(prefix)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_graph_sees_imports_inside_functions():
    graph = import_graph()
    # tcsnn.commands.eval imports tcsnn.metrics only inside run_cli
    assert "tcsnn.metrics" in graph["tcsnn.commands.eval"]
    assert "tcsnn.loading" in graph["tcsnn.commands.eval"]


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_core_imports_no_tools():
    """functional/ and nn/ stand alone: quantisation attaches from outside, metrics and training sit above."""
    bad = sorted((m, t) for m, targets in import_graph().items() if _in(m, CORE)
                 for t in targets if _in(t, TOOLS))
    assert not bad, f"core modules import tools: {bad}"


def test_library_modules_keep_no_argparse():
    """Argument parsing lives in tcsnn.commands and tcsnn.cli only."""
    offenders = [name for name, path in _modules().items()
                 if not _in(name, ("tcsnn.commands", "tcsnn.cli")) and "argparse" in path.read_text()]
    assert not offenders, f"argparse outside tcsnn.commands: {offenders}"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["eval", "--help"], ["robustness", "--help"]])
def test_help_does_not_import_torch(argv):
    code = ("import sys\nfrom tcsnn.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nassert 'numba' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          env={"PYTHONPATH": str(PACKAGE_DIR.parent), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
