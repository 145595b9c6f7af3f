"""The layering holds: no import cycle, no hidden one, and providers use only public agtl.

Read from the source with ``ast``: every import a module makes, at its top level, inside
``if TYPE_CHECKING:`` or inside a function, is an edge of the graph. A cycle anywhere in it
fails, naming the modules on it; so does a provider importing a private ``agtl._`` module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "agtl": ROOT / "agtl",
    "agtl_llamacpp": ROOT / "providers" / "llamacpp" / "agtl_llamacpp",
    "agtl_openai": ROOT / "providers" / "openai" / "agtl_openai",
}
#: Imports inside a function that are allowed: an optional dependency loaded only when used
#: (the bundled model's locator, from the other provider's distribution; the provider
#: distributions a Temporal worker builds from a spec, only the one the spec names).
#: The command line (``agtl.cli``) is the application on top of everything: it loads each
#: subcommand and its optional dependencies (rich, the serve extra, the provider
#: distributions) when it runs, so it is not held to this rule; its lazy imports are still
#: edges of the cycle check.
OPTIONAL_LOCAL_IMPORTS = {
    ("agtl_openai.testing", "agtl_llamacpp"),
    ("agtl.temporal._spec", "agtl_llamacpp"),
    ("agtl.temporal._spec", "agtl_openai"),
}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports(module: str, path: Path) -> Iterator[tuple[str, bool]]:
    """Every module ``module`` imports, and whether the import is inside a function."""
    tree = ast.parse(path.read_text())
    local = {
        id(node)
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(func)
    }
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in local
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, id(node) in local
            for alias in node.names:  # `from agtl import result` imports a submodule
                yield f"{target}.{alias.name}", id(node) in local


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for target, _ in imports(name, path):
            if target in known and target != name:
                edges[name].add(target)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    # A package's __init__ re-exporting its submodules is not a cycle of the code; leave
    # those edges out (a submodule importing its own package's __init__ would be).
    edges = graph()
    for package in PACKAGES:
        edges[package] = {t for t in edges[package] if not t.startswith(f"{package}.")}
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


@pytest.mark.parametrize(
    "module", sorted(m for m in modules() if m != "agtl.cli" and not m.startswith("agtl.cli."))
)
def test_no_function_local_import_hides_a_dependency(module: str) -> None:
    local = {t for t, inside in imports(module, modules()[module]) if inside}
    allowed = {t for m, t in OPTIONAL_LOCAL_IMPORTS if m == module}
    extra = {t for t in local if not any(t == a or t.startswith(f"{a}.") for a in allowed)}
    assert not extra, f"{module} imports {sorted(extra)} inside a function"


@pytest.mark.parametrize("package", ["agtl_llamacpp", "agtl_openai"])
def test_providers_import_nothing_private_from_agtl(package: str) -> None:
    private = sorted(
        f"{name}: {target}"
        for name, path in modules().items()
        if name.startswith(package)
        for target, _ in imports(name, path)
        if target.startswith("agtl.") and any(p.startswith("_") for p in target.split(".")[1:])
    )
    assert not private, private


#: The integrations on top of the core: the core never imports them.
INTEGRATIONS = (
    *("agtl.aio", "agtl.otel", "agtl.mcp", "agtl.serve", "agtl.temporal", "agtl.cli"),
    *("agtl.evals", "agtl.a2a"),
)


#: ``agtl.aio`` is reachable as ``agtl.aio`` after ``import agtl``: the package loads it on
#: first use (PEP 562) and imports it for type checkers only. The run-time check below
#: holds the package to that.
LAZY_REEXPORTS = {("agtl", "agtl.aio")}


def _integration(module: str) -> bool:
    return any(module == top or module.startswith(f"{top}.") for top in INTEGRATIONS)


@pytest.mark.parametrize(
    "module",
    sorted(m for m in modules() if (m == "agtl" or m.startswith("agtl.")) and not _integration(m)),
)
def test_the_core_never_imports_an_integration(module: str) -> None:
    upward = sorted(
        t
        for t, _ in imports(module, modules()[module])
        if _integration(t) and (module, t) not in LAZY_REEXPORTS
    )
    assert not upward, f"{module} imports {upward}"


def test_import_agtl_loads_no_integration() -> None:
    script = (
        "import sys, agtl\n"
        f"tops = {INTEGRATIONS!r}\n"
        "loaded = [m for m in sys.modules if any(m == t or m.startswith(t + '.') for t in tops)]\n"
        "print(sorted(loaded))\n"
        "assert agtl.aio.result is not None  # still there on first use\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout
