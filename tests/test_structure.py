"""The layering of docs/design.md §2, read from the source: layers import downward only.

Every import counts, at module level or inside a function, under ``TYPE_CHECKING`` too: a lazy import is still a
dependency a reader has to follow, and a cycle through one is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diffsem", "services_common", "channel_emulator", "transmitter", "receiver", "eavesdropper",
            "control_panel", "launcher", "protos")
SERVICES = ("channel_emulator", "transmitter", "receiver", "eavesdropper", "control_panel", "launcher")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (``from a import b`` is ``a.b`` when that is a module)."""
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in files and t != name}
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while (w := stack.pop()) != v:
                comp.append(w)
            comp.append(v)
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_scan_sees_a_cycle_and_a_back_arrow_when_there_is_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "diffsem.phy.link" in graph["diffsem.phy"] and "diffsem.config" in graph["diffsem.framepath"]


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_layers_import_downward_only() -> None:
    """The core knows no service, grpc or fastapi; the shared plumbing knows no service; a service knows no other
    service (the launcher, which starts them all, and the generated protos are the exceptions)."""
    graph = import_graph()
    for module, targets in graph.items():
        top = module.split(".")[0]
        above = {t.split(".")[0] for t in targets} - {top, "diffsem", "protos", "services_common"}
        if top in ("diffsem", "services_common", "protos"):
            assert not {t.split(".")[0] for t in targets} & set(SERVICES), (module, targets)
        if top in SERVICES and top != "launcher":
            assert not above, (module, above)
    core_text = "\n".join(p.read_text() for p in (ROOT / "diffsem").rglob("*.py"))
    for library in ("grpc", "fastapi"):
        assert f"import {library}" not in core_text and f"from {library}" not in core_text, library
