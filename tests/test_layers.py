"""One-way layers, no import cycles, every module placed (docs/architecture.md §2): runs → deploy → engine →
models / data / losses / evaluation / video → runtime. Checked on the source: every ``import`` / ``from ... import``
of a vidreid module, at module level *and inside functions* (a function-local import hides a cycle, it does not
remove it)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# layer of each module (prefix match, most specific first); higher numbers may import lower ones, never the reverse
LAYERS = {
    "vidreid": 6,  # the package itself: the public API (vidreid.embed), exact match only
    "vidreid.runs": 5,
    "vidreid.deploy": 4,
    "vidreid.engine": 3,
    "vidreid.models": 2, "vidreid.data": 2, "vidreid.evaluation": 2, "vidreid.losses": 2, "vidreid.video": 2,
    "vidreid.runtime": 1,
}  # fmt: skip
NAMES = {6: "public API", 5: "runs", 4: "deploy", 3: "engine", 2: "models/data/losses/evaluation/video", 1: "runtime"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("vidreid")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if mod.startswith("vidreid"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}  # `from vidreid.data import batch`
    return out


@functools.lru_cache(maxsize=1)
def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (SRC / "vidreid").rglob("*.py")}
    graph = {}
    for name, path in files.items():
        graph[name] = {m for m in _imports(path, name) if m in files and m != name}
    return graph


def _layer(name: str) -> int | None:
    if name == "vidreid":
        return LAYERS["vidreid"]
    for prefix in sorted((p for p in LAYERS if p != "vidreid"), key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            return LAYERS[prefix]
    return None


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    def package_reexport(c: list[str]) -> bool:  # a package __init__ and its own submodules only
        pkgs = [m for m in c if any(o.startswith(m + ".") for o in c)]
        return bool(pkgs) and all(any(o == p or o.startswith(p + ".") for p in pkgs) for o in c)

    cycles = [c for c in cycles if not package_reexport(c)]
    assert not cycles, f"import cycles: {cycles}"


def test_every_module_has_a_layer_and_few_are_loose():
    unplaced = sorted(m for m in _graph() if _layer(m) is None)
    assert not unplaced, f"modules outside every layer: {unplaced}"
    loose = sorted(p.name for p in (SRC / "vidreid").glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= 4, f"modules loose in src/vidreid/: {loose}"


@pytest.mark.parametrize("module", sorted(_graph()))
def test_imports_point_down_the_layers(module):
    graph = _graph()
    mine = _layer(module)
    up = sorted(m for m in graph[module] if (_layer(m) or 0) > mine)
    assert not up, f"{module} ({NAMES[mine]}) imports a higher layer: " + ", ".join(
        f"{m} ({NAMES[_layer(m)]})" for m in up
    )
