"""The house rules of the README's Architecture section, checked on the code: who may import
whom, and no file too long to read."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bdh_pl"
FILES = sorted(PACKAGE.rglob("*.py"))


def room(path: Path) -> str:
    """`models`, `data`, `training`, `bench`, `tools`, or the top-level module's name."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_rooms(path: Path) -> set[str]:
    """The bdh_pl rooms a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "bdh_pl" and len(parts) > 1:
                found.add(parts[1])
    return found


# What each room may import from bdh_pl (besides itself).
ALLOWED = {
    "models": {"errors"},
    "data": {"errors", "fileio"},
    "training": {"data", "models", "errors", "fileio"},
    "bench": {"training", "data", "models", "charts", "cli", "errors", "fileio"},
    "tools": {"bench", "training", "data", "models", "charts", "analysis", "errors", "fileio"},
    "analysis": set(),  # measures on plain tensors and networks: no bdh_pl import at all
}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_rooms(path):
    here = room(path)
    if here not in ALLOWED:
        return  # cli.py, __init__.py, the shim and the small shared modules
    assert imported_rooms(path) - {here} <= ALLOWED[here]


def test_the_bdh_model_imports_torch_only():
    paths = [*(PACKAGE / "models" / "bdh").glob("*.py"), PACKAGE / "models" / "sampling.py"]
    for path in paths:
        tops = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                tops.add(node.module.split(".")[0])
        third_party = tops - set(sys.stdlib_module_names) - {"__future__"}
        assert third_party <= {"torch", "bdh_pl"}, path
        assert imported_rooms(path) <= {"models"}, path


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_file_is_too_long_to_read(path):
    assert len(path.read_text().splitlines()) <= 400
