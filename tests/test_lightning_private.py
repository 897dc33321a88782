"""Every private Lightning attribute the code touches, each with its reason.

A private attribute (`trainer._x`, an override of `_x`) is not part of Lightning's API: it can
change in any release. The scan below finds them all (attribute reads and writes, `def _x`
overrides, `getattr(obj, "_x")`), and the test fails when one appears that is not listed here,
or when a listed one is gone from the code or from Lightning (a Lightning upgrade moved it)."""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from functools import cache
from pathlib import Path

import lightning as L

import bdh_pl

PACKAGE = Path(bdh_pl.__file__).parent
LIGHTNING_MODULES = ("lightning", "pytorch_lightning", "lightning_fabric")

# (module, name): why the public API does not do it.
ALLOWED: dict[tuple[str, str], str] = {
    ("bdh_pl.lightning_cli", "_set_seed"): "extends the seeding step to set data.seed from "
    "seed_everything, before Lightning seeds (no public hook between parse and seed)",
    ("bdh_pl.lightning_cli", "_parse_ckpt_path"): "replaces LightningCLI's unguarded torch.load "
    "of --ckpt_path with the project's safe loader",
    ("bdh_pl.lightning_cli", "_get"): "reads the trainer section of the parsed config the way "
    "LightningCLI's own instantiate_trainer does",
    ("bdh_pl.bench.resolve", "_set_seed"): "a parse-only CLI must not seed the process",
    ("bdh_pl.training.runs", "_experiment"): "CSVLogger.experiment builds the writer lazily in "
    "this attribute; the override swaps in CSVWriter",
    ("bdh_pl.training.runs", "_fs"): "CSVLogger's filesystem handle, used as its own "
    "experiment property does",
    ("bdh_pl.training.runs", "_record_new_keys"): "ExperimentWriter.save's own step: which "
    "columns are new, so the atomic rewrite happens only then",
    ("bdh_pl.training.runs", "_sanitize_params"): "TensorBoardLogger's hparams cleaning, reused "
    "for the ordered HParams table",
    ("bdh_pl.training.checkpoint_io", "_should_skip_saving_checkpoint"): "ModelCheckpoint's "
    "check (sanity check, fast_dev_run, same step) before writing last.ckpt",
    ("bdh_pl.training.checkpoint_io", "_save_checkpoint"): "ModelCheckpoint's save, so "
    "last.ckpt goes through the checkpoint IO and callbacks like any checkpoint",
    ("bdh_pl.training.callbacks", "_throughputs"): "ThroughputMonitor's meters: the running "
    "tokens/s it computes but does not log per step",
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


def _private_names(node: ast.AST) -> set[str]:
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute):
            names.add(n.attr)
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(n.name)
        elif (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id in ("getattr", "setattr", "hasattr")
            and len(n.args) >= 2
            and isinstance(n.args[1], ast.Constant)
            and isinstance(n.args[1].value, str)
        ):
            names.add(n.args[1].value)
    return {x for x in names if x.startswith("_") and not x.startswith("__")}


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
    """(module, name) for every Lightning private attribute used in the package at root."""
    # anything may be a Trainer, a LightningModule or a Callback when it is not self
    anywhere = [*_lightning_classes(L.Trainer), *_lightning_classes(L.LightningModule)]
    anywhere += _lightning_classes(L.Callback)
    paths = [p for p in sorted(root.rglob("*.py")) if "lightning" in p.read_text()]
    modules = {p: importlib.import_module(_module_name(p, root)) for p in paths}  # all, for _find
    uses = set()
    for path, module in modules.items():
        source = path.read_text()
        name = module.__name__
        tree = ast.parse(source)
        in_classes = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            cls = _class_object(module, node)
            bases = _lightning_classes(cls) if cls else []
            for private in _private_names(node):
                in_classes.add(private)
                if bases and _defines(bases, private):
                    uses.add((name, private))
        for private in _private_names(tree) - in_classes:
            if _defines(anywhere, private):
                uses.add((name, private))
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
