"""The house rules of the README's Architecture section, checked on the code: who may import
whom, no import cycle, one module reading model files, no file too long to read, and tests laid
out like the package (that the command line starts at once needs a process:
tests/integration/test_architecture.py)."""

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bdh_pl"
FILES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in FILES}


def room(path: Path) -> str:
    """`models`, `data`, `training`, `bench`, `tools`, or the top-level module's name."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_modules(path: Path) -> set[str]:
    """The bdh_pl modules a file imports, at module level, inside functions or for type
    checking (a `from package import name` counts as the package unless name is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name.split(".")[0] == "bdh_pl"}


def imported_rooms(path: Path) -> set[str]:
    return {name.split(".")[1] for name in imported_modules(path) if "." in name}


# What each room (or top-level module) may import from bdh_pl, besides itself.
ALLOWED = {
    "models": {"errors"},
    "data": {"errors", "fileio", "hub"},
    # training/glue/cli.py: the LightningCLI names the program as the entry point does (cli_help)
    "training": {"cli_help", "data", "models", "errors", "fileio", "hub"},
    "bench": {"training", "data", "models", "charts", "step_tokens", "errors", "fileio", "hub"},
    "tools": {
        "bench",
        "training",
        "data",
        "models",
        "charts",
        "analysis",
        "errors",
        "fileio",
        "hub",
    },
    "analysis": {"models"},  # measures on tensors and networks (BDH's reference layer)
    # the entry point: tools are dispatched by name (importlib), Lightning's commands lazily
    "cli": {"cli_help", "training", "errors", "fileio"},
    "cli_help": set(),
    "charts": {"step_tokens", "errors", "fileio"},
    "step_tokens": set(),  # the tokens per step formula: bench and charts both read it
    "errors": set(),
    "fileio": {"errors"},
    "hub": {"errors"},  # one quick probe of the Hugging Face hub before any download
    "lit_models": {"training"},  # where checkpoints of v0.1.0 find their classes
    "__init__": {"training", "data"},
    "__main__": {"cli"},
}


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_rooms(path):
    here = room(path)
    assert here in ALLOWED, f"{here} has no rule: add one to ALLOWED"
    assert imported_rooms(path) - {here} <= ALLOWED[here]


def test_no_import_cycles():
    """Not even through imports inside functions: each module can be read on its own."""
    graph = {name: imported_modules(path) & set(MODULES) - {name} for name, path in MODULES.items()}
    cycles, done = [], set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycles.append(path[path.index(name) :] + [name])
            return
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, " ; ".join(" -> ".join(cycle) for cycle in cycles)


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


def test_the_reference_bdh_imports_no_fast_path():
    model = imported_modules(PACKAGE / "models" / "bdh" / "model.py")
    assert not {"bdh_pl.models.bdh.kernels", "bdh_pl.models.bdh.linear_attention"} & model
    assert "bdh_pl.models.bdh" not in model  # the package imports the kernels


def test_one_module_reads_model_files():
    """torch.load (and safetensors' load_file) in training/loading.py only."""
    readers = set()
    for path in FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            torch_load = isinstance(node, ast.Attribute) and node.attr == "load"
            if torch_load and isinstance(node.value, ast.Name) and node.value.id == "torch":
                readers.add(module_name(path))
            if isinstance(node, ast.alias) and node.name in ("load_file", "load"):
                readers.add(module_name(path))
    assert readers == {"bdh_pl.training.loading"}


def test_the_readme_architecture_names_every_module():
    """A module (or benchmark script) the README's Architecture section does not name is one a
    newcomer cannot find: each file's name appears there as a word."""
    readme = (PACKAGE.parent / "README.md").read_text()
    section = readme[readme.index("## Architecture") : readme.index("## Development")]
    words = set(re.findall(r"[A-Za-z_0-9]+", section))
    scripts = sorted((PACKAGE.parent / "benchmarks").glob("*.*"))
    files = [path for path in [*FILES, *scripts] if path.stem not in ("__init__", "__main__")]
    unnamed = [str(path.relative_to(PACKAGE.parent)) for path in files if path.stem not in words]
    assert not unnamed, f"name these in README.md's Architecture section: {unnamed}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_file_is_too_long_to_read(path):
    assert len(path.read_text().splitlines()) <= 400


def test_the_tests_mirror_the_package():
    """Two tiers, each laid out like the package: tests/unit/<subpackage>/test_<module>.py (no
    process, no fit past a few steps, no compile, no tmpfs: `make test-fast`) and
    tests/integration/ (the rest), at the same relative paths."""
    tests = PACKAGE.parent / "tests"
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    folders.add("benchmarks")  # the scripts of benchmarks/
    misplaced = []
    for path in tests.rglob("test_*.py"):
        tier, *parts = path.relative_to(tests).parts
        if tier not in ("unit", "integration") or (len(parts) > 1 and parts[0] not in folders):
            misplaced.append(str(path.relative_to(tests)))
    assert not misplaced, f"under tests/unit/ or tests/integration/, as in bdh_pl/: {misplaced}"
