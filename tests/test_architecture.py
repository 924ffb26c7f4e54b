"""The layers import one way: service -> training/eval -> data -> models (ARCHITECTURE.md).

Parsed from the source, not imported, so a lazy import inside a function counts too: the arrow
is about what a layer may know, not about when it loads it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("models", "data", "eval", "training", "service")
#: what each layer may import besides itself
ALLOWED = {
    "models": set(),
    "data": {"models"},
    "eval": {"data", "models"},
    "training": {"eval", "data", "models"},
    "service": {"training", "eval", "data", "models"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "voce" and parts[1] in LAYERS:
                found.add(parts[1])
            elif parts[0] in LAYERS:  # the un-namespaced names must not come back
                found.add(f"bare:{parts[0]}")
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_the_layers_below(layer: str) -> None:
    wrong = {}
    for path in sorted((ROOT / layer).rglob("*.py")):
        bad = {m for m in _imports(path) if m != layer and m not in ALLOWED[layer]}
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong, f"{layer} imports layers above it (or bare package names): {wrong}"


def test_training_never_reaches_the_serving_stack_through_eval() -> None:
    """eval is imported by training, so eval itself must not need the service's dependencies."""
    heavy = ("fastapi", "sqlalchemy", "uvicorn", "alembic")
    for path in sorted((ROOT / "eval").rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        mods = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not mods & set(heavy), f"{path.name} imports {sorted(mods & set(heavy))}"
