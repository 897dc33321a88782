"""Every private Lightning attribute the code touches, each with its reason.

A private attribute (`trainer._x`, an override of `_x`) is not part of Lightning's API: it can
change in any release. The scan below finds them all (attribute reads and writes, `def _x`
overrides, `getattr(obj, "_x")`), and the test fails when one appears that is not listed here,
or when a listed one is gone from the code or from Lightning (a Lightning upgrade moved it)."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
from functools import cache
from pathlib import Path

import bdh_pl

PACKAGE = Path(bdh_pl.__file__).parent
LIGHTNING_MODULES = ("lightning", "pytorch_lightning", "lightning_fabric")

# (module, name): why the public API does not do it.
ALLOWED: dict[tuple[str, str], str] = {
    ("bdh_pl.training.glue.cli", "_set_seed"): "extends the seeding step to set data.seed from "
    "seed_everything, before Lightning seeds (no public hook between parse and seed)",
    (
        "bdh_pl.training.glue.cli",
        "_parse_ckpt_path",
    ): "replaces LightningCLI's unguarded torch.load of --ckpt_path with the project's safe loader",
    ("bdh_pl.training.glue.cli", "_get"): "reads the trainer section of the parsed config the way "
    "LightningCLI's own instantiate_trainer does",
    ("bdh_pl.bench.resolve", "_set_seed"): "a parse-only CLI must not seed the process",
    (
        "bdh_pl.training.glue.loggers",
        "_experiment",
    ): "CSVLogger.experiment builds the writer lazily in "
    "this attribute; the override swaps in CSVWriter",
    ("bdh_pl.training.glue.loggers", "_fs"): "CSVLogger's filesystem handle, used as its own "
    "experiment property does",
    ("bdh_pl.training.glue.loggers", "_record_new_keys"): "ExperimentWriter.save's own step: which "
    "columns are new, so the atomic rewrite happens only then",
    (
        "bdh_pl.training.glue.loggers",
        "_sanitize_params",
    ): "TensorBoardLogger's hparams cleaning, reused for the ordered HParams table",
    ("bdh_pl.training.glue.checkpoint_io", "_should_skip_saving_checkpoint"): "ModelCheckpoint's "
    "check (sanity check, fast_dev_run, same step) before writing last.ckpt",
    ("bdh_pl.training.glue.checkpoint_io", "_save_checkpoint"): "ModelCheckpoint's save, so "
    "last.ckpt goes through the checkpoint IO and callbacks like any checkpoint",
    ("bdh_pl.training.glue.callbacks", "_throughputs"): "ThroughputMonitor's meters: the running "
    "tokens/s it computes but does not log per step",
    ("bdh_pl.training.glue.trainer", "_should_accumulate"): "the fit loop's own test for a "
    "micro-batch that does not end an optimizer step: a stop request waits for the step's end",
    (
        "bdh_pl.training.glue.loggers",
        "_trainer",
    ): "the HParams table reads the datamodule of a model "
    "that may not be attached (LightningModule.trainer raises then)",
    ("bdh_pl.training.language_model", "_trainer"): "LightningModule.trainer raises when "
    "detached; _trainer tells a detached module (no public is_attached)",
}


@cache
def _lightning_source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return ""


def _lightning_classes(cls: type) -> list[type]:
    return [c for c in cls.__mro__ if c.__module__.split(".")[0] in LIGHTNING_MODULES]


def _defines(classes: list[type], name: str) -> bool:
    return any(name in vars(cls) or f"self.{name}" in _lightning_source(cls) for cls in classes)


def _module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root.parent).with_suffix("").parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_names(node: ast.AST) -> tuple[set[str], set[str]]:
    """Private names used on self (self._x, super()._x, def _x) and on other objects
    (trainer._x, getattr(trainer, "_x"))."""
    own: set[str] = set()
    other: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and _private(n.attr):
            value = n.value
            is_self = isinstance(value, ast.Name) and value.id in ("self", "cls")
            is_super = isinstance(value, ast.Call) and getattr(value.func, "id", "") == "super"
            (own if is_self or is_super else other).add(n.attr)
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and _private(n.name):
            own.add(n.name)
        elif (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id in ("getattr", "setattr", "hasattr")
            and len(n.args) >= 2
            and isinstance(n.args[1], ast.Constant)
            and isinstance(n.args[1].value, str)
            and _private(n.args[1].value)
        ):
            other.add(n.args[1].value)
    return own, other


@cache
def _lightning_private_definitions() -> frozenset[str]:
    """Every private name Lightning defines anywhere (a method, or an attribute it assigns)."""
    names: set[str] = set()
    for package in LIGHTNING_MODULES:
        root = Path(importlib.import_module(package).__file__).parent
        for path in root.rglob("*.py"):
            names.update(re.findall(r"(?:def |self\.)(_[a-z][a-z0-9_]*)", path.read_text()))
    return frozenset(names)


def _find(module, name: str):
    """A name in the module, or in the package module a function-local import took it from."""
    if hasattr(module, name):
        return getattr(module, name)
    for other in list(sys.modules.values()):
        if getattr(other, "__name__", "").startswith("bdh_pl.") and hasattr(other, name):
            return getattr(other, name)
    return None


def _class_object(module, node: ast.ClassDef) -> type | None:
    found = getattr(module, node.name, None)
    if isinstance(found, type):
        return found
    bases = [_find(module, b.id) for b in node.bases if isinstance(b, ast.Name)]
    bases = [b for b in bases if isinstance(b, type)]
    # a class defined inside a function: its bases tell what it inherits
    return type(node.name, tuple(bases), {}) if bases else None


@cache
def uses_in_package() -> frozenset[tuple[str, str]]:
    return frozenset(lightning_private_uses())


def lightning_private_uses(root: Path = PACKAGE) -> set[tuple[str, str]]:
    """(module, name) for every Lightning private attribute used in the package at root:
    on self in a Lightning subclass when a Lightning base defines it, on any other object when
    Lightning defines that name anywhere (the object is then a trainer, a loop, a logger...)."""
    paths = [p for p in sorted(root.rglob("*.py")) if "lightning" in p.read_text()]
    modules = {p: importlib.import_module(_module_name(p, root)) for p in paths}  # all, for _find
    defined_by_lightning = _lightning_private_definitions()
    uses = set()
    for path, module in modules.items():
        name = module.__name__
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                cls = _class_object(module, node)
                bases = _lightning_classes(cls) if cls else []
                own, _ = _private_names(node)
                uses |= {(name, p) for p in own if bases and _defines(bases, p)}
        _, other = _private_names(tree)
        uses |= {(name, p) for p in other if p in defined_by_lightning}
    return uses


def test_every_private_lightning_attribute_has_a_reason():
    unlisted = uses_in_package() - ALLOWED.keys()
    assert not unlisted, (
        f"new uses of Lightning private attributes: {sorted(unlisted)}; use the public API, or "
        "add each to ALLOWED with the reason the public API does not do it"
    )


def test_every_listed_private_attribute_is_still_used():
    stale = ALLOWED.keys() - uses_in_package()
    assert not stale, (
        f"listed but no longer used (or gone from Lightning): {sorted(stale)}; remove them "
        "from ALLOWED, or, after a Lightning upgrade, find what replaced them"
    )


def test_the_scan_finds_planted_uses(tmp_path, monkeypatch):
    # The scan itself can fail: an override of a private Trainer method, a private attribute
    # of a trainer that is not self, and a getattr by name are found; a private of our own is not.
    package = tmp_path / "planted_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "glue.py").write_text(
        "import lightning as L\n\n\nclass T(L.Trainer):\n"
        "    def _run(self, *a, **k):\n        self._ours = 1\n        return super()._run(*a, **k)\n\n\n"
        "def steps(trainer):\n    return trainer._checkpoint_connector, getattr(trainer, '_accelerator_connector')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = lightning_private_uses(package)
    assert found == {
        ("planted_pkg.glue", "_run"),
        ("planted_pkg.glue", "_checkpoint_connector"),
        ("planted_pkg.glue", "_accelerator_connector"),
    }
