"""The package's import structure, read from the source (AST), not by importing it.

- No import cycles between nodezoo's modules, counting imports inside functions too (a cycle
  hidden in a function is still a knot); importing ``a.b.c`` also runs the package ``a.b``'s
  ``__init__``, so that edge counts too.
- No imports inside functions, except of optional or heavy third-party libraries (and
  huggingface_hub, which reads HF_ENDPOINT when first imported).
- The zoo never imports the reports; the zoo's registry imports no models.
- ``import nodezoo`` stays solver-only: no Lightning, no huggingface_hub, no zoo.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import nodezoo

ROOT = Path(nodezoo.__file__).parent
PACKAGE = "nodezoo"

# Third-party modules that may be imported inside a function: optional extras, heavy libraries
# only some paths need, and huggingface_hub (it reads HF_ENDPOINT/HF_HUB_OFFLINE on import).
LAZY_THIRD_PARTY = (
    "huggingface_hub",
    "matplotlib",
    "resource",
    "scipy",
    "sklearn",
    "torchdiffeq",
    "tqdm",  # the progress bar, only on a terminal
    "torchode",
    "wandb",
    "wandb_workspaces",
)
# nodezoo modules that may be imported inside a function, with the importer and the reason.
LAZY_INTERNAL = {
    # the torchdiffeq backend is optional; solvers/ is its own area (torchdiffeq parity work)
    ("nodezoo.solvers.odeint", "nodezoo.solvers.backends"),
    # the CLI's verbs load Lightning/W&B (via the data modules) only when they run, so that
    # `nodezoo --help`, `list` and `evaluate --help` stay about as fast as `import torch`
    ("nodezoo.cli", "nodezoo.lightning_cli"),
    ("nodezoo.zoo.commands", "nodezoo.zoo.evaluation"),
    ("nodezoo.zoo.commands", "nodezoo.zoo.hub"),
    ("nodezoo.zoo.commands", "nodezoo.zoo.publish"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (ROOT.parent / name.replace(".", "/") / "__init__.py").is_file()


def exists(name: str) -> bool:
    path = ROOT.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The nodezoo modules an import statement loads (a ``from x import name`` loads ``x.name``
    too when that is a module)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    if node.level:
        base = importer if is_package(importer) else importer.rpartition(".")[0]
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = f"{base}.{node.module}" if node.module else base
    else:
        target = node.module or ""
    if target.split(".")[0] != PACKAGE:
        return []
    found = [target]
    found += [f"{target}.{a.name}" for a in node.names if exists(f"{target}.{a.name}")]
    return found


def with_packages(importer: str, target: str) -> list[str]:
    """``target`` plus the packages whose ``__init__`` importing it runs (not the root package,
    nor the importer's own packages, which are already being initialised)."""
    parts = target.split(".")
    chain = [".".join(parts[:i]) for i in range(2, len(parts) + 1)]
    return [m for m in chain if not importer.startswith(m + ".") and m != importer]


def module_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported (not inside functions, and not
    under ``if TYPE_CHECKING``)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []) or [])
        elif isinstance(node, ast.ExceptHandler):
            stack.extend(node.body)


def function_imports(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    yield sub


def parse_package() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text()) for p in sorted(ROOT.rglob("*.py"))}


def import_graph(trees: dict[str, ast.Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in trees}
    for name, tree in trees.items():
        for node in [*module_level_imports(tree), *function_imports(tree)]:
            for target in resolve(name, node):
                graph[name].update(m for m in with_packages(name, target) if m in trees)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.fixture(scope="module")
def trees() -> dict[str, ast.Module]:
    return parse_package()


def test_no_import_cycles(trees):
    cycle = find_cycle(import_graph(trees))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    """The check above can fail: a synthetic cycle, and one through a package __init__."""
    graph = {"nodezoo.a": {"nodezoo.b"}, "nodezoo.b": {"nodezoo.c"}, "nodezoo.c": {"nodezoo.a"}}
    assert find_cycle(graph) == ["nodezoo.a", "nodezoo.b", "nodezoo.c", "nodezoo.a"]
    assert find_cycle({"nodezoo.a": {"nodezoo.b"}, "nodezoo.b": set()}) is None
    # a real module pair: models.classifier imports zoo.pretrained, so the zoo package's
    # __init__ runs; if it imported the classifier back, that would be a cycle
    real = parse_package()
    real["nodezoo.zoo"] = ast.parse("from ..models.classifier import ImageClassifier")
    cycle = find_cycle(import_graph(real))
    assert cycle is not None and "nodezoo.zoo" in cycle and "nodezoo.models.classifier" in cycle


def test_imports_inside_functions_are_only_lazy_third_party(trees):
    offenders = []
    for name, tree in trees.items():
        for node in function_imports(tree):
            internal = resolve(name, node)
            if internal:
                offenders += [
                    f"{name}:{node.lineno} imports {t}"
                    for t in internal[:1]
                    if (name, t) not in LAZY_INTERNAL
                ]
                continue
            is_plain = isinstance(node, ast.Import)
            modules = [a.name for a in node.names] if is_plain else [node.module]
            offenders += [
                f"{name}:{node.lineno} imports {m}"
                for m in modules
                if m and m.split(".")[0] not in LAZY_THIRD_PARTY
            ]
    assert not offenders, "imports inside functions:\n" + "\n".join(offenders)


def test_zoo_does_not_import_reports_and_registry_imports_no_models(trees):
    graph = import_graph(trees)
    zoo_to_reports = [
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m.startswith("nodezoo.zoo")
        for t in targets
        if t.startswith("nodezoo.reports")
    ]
    assert not zoo_to_reports
    assert not {t for t in graph["nodezoo.zoo.registry"] if t.startswith("nodezoo.models")}
    assert graph["nodezoo.zoo.registry"] <= {"nodezoo.zoo.errors", "nodezoo.errors"}


def test_hub_is_the_only_zoo_module_using_the_hub_network_api(trees):
    network = ("snapshot_download", "HfApi", "hf_hub_download", "upload_folder", "create_repo")
    users = set()
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "huggingface_hub"
            ):
                if any(a.name in network for a in node.names):
                    users.add(name)
    assert users == {"nodezoo.zoo.hub"}


def test_import_nodezoo_stays_solver_only():
    code = (
        "import sys, nodezoo\n"
        "heavy = [m for m in ('pytorch_lightning', 'huggingface_hub', 'nodezoo.zoo', "
        "'nodezoo.models', 'torchvision') if m in sys.modules]\n"
        "print(heavy)\n"
        "assert callable(nodezoo.from_pretrained) and callable(nodezoo.list_models)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
