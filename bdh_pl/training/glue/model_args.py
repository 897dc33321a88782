"""A model's init args on the command line (LightningCLI + jsonargparse): the defaults of a
class's configs, and what a class swap keeps of another class's configs.

The swap: a model YAML or `--model` after another model's settings drops the init args the new
class does not take. jsonargparse checks them at the top level only, so a typed config
(`config`, `training`) would carry the old class's fields into the new one's and fail
(`Group 'config' does not accept option 'mlp_internal_dim_multiplier'`). Importing this module
makes the same rule reach one level down: it wraps a private jsonargparse function (4.x),
called through its module global (tests/integration/test_cli.py checks the swap).
"""

from __future__ import annotations

import dataclasses
import importlib

from jsonargparse import Namespace, _typehints

from bdh_pl.training.language_model import LanguageModel


def constructor_defaults(cls: type) -> Namespace:
    """The init_args of `cls` at their defaults: each of its configs' defaults, but the ones
    linked from the data (vocab_size, block_size, seed)."""
    linked = ("vocab_size", "block_size", "seed")
    return Namespace(
        **{
            name: Namespace(
                **{f.name: f.default for f in dataclasses.fields(kind) if f.name not in linked}
            )
            for name, kind in cls.config_types().items()
        }
    )


def import_class(class_path: str) -> type | None:
    """The class a dotted path names, or None."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _discard_foreign_config_fields(parser_or_action, prev_val, value) -> None:
    """jsonargparse's swap rule, then the fields the new class's configs lack dropped too."""
    if prev_val and "init_args" in prev_val and prev_val["class_path"] != value["class_path"]:
        cls = import_class(str(value["class_path"]))
        if isinstance(cls, type) and issubclass(cls, LanguageModel):
            init_args = prev_val["init_args"]
            for name, kind in cls.config_types().items():
                group = init_args.get(name) if name in init_args else None
                if isinstance(group, Namespace | dict):
                    taken = {f.name for f in dataclasses.fields(kind)}
                    for key in [k for k in group.keys() if k not in taken]:  # noqa: SIM118
                        del group[key]
    _jsonargparse_discard(parser_or_action, prev_val, value)


_jsonargparse_discard = _typehints.discard_init_args_on_class_path_change
_typehints.discard_init_args_on_class_path_change = _discard_foreign_config_fields
