"""The tools' one argument system: a tool is a typed function whose parameters are dataclasses
of options (litgpt's CLI(function), with flat flags). Their fields (type, default, the class
docstring's `Args:` as help) become `--ckpt_path`, `--top_k`, ... of a jsonargparse parser,
which type-checks the values; each dataclass checks its own ranges in __post_init__, so a range
is written once (Checkpoint, Sampling below) and a bad value is one UserError line. A list
field takes several values (`--control A B`), a bool field is a switch (`--windows`), a plain
parameter without a default is positional (`merge A B`): the flags the tools always had.
(jsonargparse's add_class_arguments would write lists as `--x [a,b]` and bools as `--x true`,
and import the TYPE_CHECKING names of the tool's module, torch among them.)

Imports no torch: `python -m bdh_pl TOOL --help` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentParser, DefaultHelpFormatter

from bdh_pl.errors import COUNT, MAX_COUNT, UserError, check_options, count, finite_positive

SEED = (lambda v: 0 <= v < 2**32, "in [0, 2**32)")  # numpy's (and mauve's) seed range


@dataclasses.dataclass(kw_only=True)
class Reading:
    """Reading the model

    Args:
        n_layer: layers of plain BDH weights (the official format does not record it); only
            for them
        data_dir: data root holding the tokenizer and text (default: the run's)
    """

    n_layer: int | None = None
    data_dir: str | None = None

    def __post_init__(self) -> None:
        check_options([("--n_layer", self.n_layer, count(), COUNT)])


@dataclasses.dataclass(kw_only=True)
class Loading(Reading):
    """Reading the model and running it

    Args:
        device: cpu, cuda, cuda:1, ...
    """

    device: str = "cpu"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.device = check_device(self.device)


@dataclasses.dataclass(kw_only=True)
class Checkpoint(Loading):
    """The model

    Args:
        ckpt_path: a bdh-pl checkpoint, plain BDH weights (with --n_layer) or a BDH folder
            written by `export`
    """

    ckpt_path: str  # a missing file is named by the loading, after the options are checked


@dataclasses.dataclass(kw_only=True)
class Sampling:
    """Sampling

    Args:
        max_new_tokens: tokens sampled after the prompt
        temperature: divides the logits (< 1: surer, > 1: more varied)
        top_k: sample among the k likeliest tokens (1: greedy)
        top_p: nucleus sampling: among the likeliest tokens holding probability p (after top_k)
        seed: the random seed of the sampling
    """

    max_new_tokens: int = 200
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_options(
            [
                ("--max_new_tokens", self.max_new_tokens, count(0), f"in [0, {MAX_COUNT}]"),
                ("--temperature", self.temperature, finite_positive, "a finite number > 0"),
                ("--top_k", self.top_k, count(), COUNT),
                ("--top_p", self.top_p, lambda v: 0 < v <= 1, "in (0, 1]"),  # NaN too
                ("--seed", self.seed, *SEED),
            ]
        )

    def sample(self, model: Any, idx: Any) -> Any:
        """model.generate (a LanguageModel's) under these options: (B, T) -> (B, T + new)."""
        return model.generate(
            idx,
            self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
        )


def check_paths(option: str, paths: list[str]) -> None:
    """Each path exists: checked before minutes of loading."""
    for path in paths:
        if not Path(path).expanduser().exists():
            raise UserError(f"{option} {path}: no such file or folder")


def check_device(name: str, option: str = "--device") -> str:
    """`name` if this machine has that device (cpu or cuda); else one error line naming
    `option`."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{option} {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} {name}: this machine has no CUDA GPU; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"{option} {name}: there are {torch.cuda.device_count()} CUDA devices")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"{option} {name!r}: bdh-pl's tools run on cpu or cuda")
    return str(device)


# --- the parser ----------------------------------------------------------------------------


class HelpFormatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """jsonargparse's (each option's type and default), with the module docstring as written
    (its examples keep their lines)."""


def parse(command: Callable, argv: list[str], name: str) -> dict[str, Any]:
    """`command`'s arguments from argv: its dataclass parameters built (their checks run), its
    plain ones as given. `name` is the subcommand (`python -m bdh_pl NAME`)."""
    parser = command_parser(command, name)
    try:
        namespace = parser.parse_args(argv)
    except argparse.ArgumentError as err:
        raise UserError(f"{error_line(err, parser)} (see `{parser.prog} --help`)") from None
    values = namespace.as_dict()
    kwargs = {}
    for param, hint in parameters(command).items():
        if dataclasses.is_dataclass(hint):
            names = {f.name for f in dataclasses.fields(hint) if f.init}
            kwargs[param] = hint(**{k: v for k, v in values.items() if k in names})
        else:
            kwargs[param] = values[param]
    return kwargs


def command_parser(command: Callable, name: str) -> ArgumentParser:
    """Flags from the fields of command's dataclass parameters (a group each, titled by the
    class's docstring), positionals from its plain parameters."""
    parser = ArgumentParser(
        prog=f"python -m bdh_pl {name}",
        description=sys.modules[command.__module__].__doc__,
        formatter_class=HelpFormatter,
        exit_on_error=False,
        allow_abbrev=False,  # `--temp` is not `--temperature`
        default_env=False,
    )
    docs = docstring_args(command)
    for param, hint in parameters(command).items():
        if dataclasses.is_dataclass(hint):
            add_dataclass(parser, hint)
        else:
            parser.add_argument(param, type=hint, help=docs.get(param))
    return parser


def parameters(command: Callable) -> dict[str, Any]:
    hints = typing.get_type_hints(command)
    return {p: hints[p] for p in inspect.signature(command).parameters}


def add_dataclass(parser: ArgumentParser, cls: type) -> None:
    """cls's fields as flat flags, typed; a list takes several values and a bool is a switch,
    as the tools' flags always did (jsonargparse's own forms are `--x [a,b]`, `--x true`)."""
    hints, docs = typing.get_type_hints(cls), docstring_args(cls)
    group = parser.add_argument_group(docstring_title(cls))
    for field in (f for f in dataclasses.fields(cls) if f.init):
        hint, flag, help = hints[field.name], f"--{field.name}", docs.get(field.name)
        default = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        if hint is bool:
            group.add_argument(flag, action="store_true", help=help)
            continue
        kwargs: dict[str, Any] = {"type": hint}
        if many(hint):
            element = typing.get_args(optional(hint))[0]
            kwargs = {"nargs": "*" if default == [] else "+", "type": element}
            if typing.get_origin(element) is Literal:
                kwargs = {"nargs": kwargs["nargs"], "choices": typing.get_args(element)}
        if default is dataclasses.MISSING:
            group.add_argument(flag, required=True, help=help, **kwargs)
        else:
            group.add_argument(flag, default=default, help=help, **kwargs)


def optional(hint: Any) -> Any:
    """X of `X | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else hint
    return hint


def many(hint: Any) -> bool:
    return typing.get_origin(optional(hint)) is list


def docstring_args(obj: Any) -> dict[str, str]:
    """The `Args:` of obj's docstring (and its bases'), by name: the options' help."""
    from docstring_parser import parse as parse_docstring

    docs: dict[str, str] = {}
    for klass in reversed(getattr(obj, "__mro__", [obj])):
        for param in parse_docstring(klass.__doc__ or "").params:
            docs[param.arg_name] = " ".join((param.description or "").split())
    return docs


def docstring_title(cls: type) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]


def is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false"}


def error_line(err: Exception, parser: argparse.ArgumentParser) -> str:
    """jsonargparse's explanation of a bad value as one line naming the flag and the value."""
    text = str(err)
    missing = re.match(r"the following arguments are required: (.*)", text)
    if missing:
        flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
        names = [flags.get(n, n) for n in missing.group(1).split(", ")]
        return f"give {', '.join(names)}: required"
    key = re.match(r'Parser key "([\w.]+)"', text)
    value = re.search(r"(?:Given|Got) value: (.*)", text)
    if key:
        given = f" {value.group(1).strip()}" if value else ""
        kinds = re.findall(r"Expected a <class '(\w+)'>", text)
        kind = next((KINDS[k] for k in kinds if k in KINDS), "a value of its type (see --help)")
        if kind == KINDS["float"] and value and is_float(value.group(1)):
            kind = "a finite number"  # nan, inf: YAML's are .nan and .inf
        return f"--{key.group(1)}{given}: must be {kind}"
    required = re.match(r'Key "(\w+)" is required', text)
    if required:
        return f"--{required.group(1)} is required"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
