"""The tools' one argument system: typed functions whose dataclass parameters become flat
flags, each dataclass checking its own values; the flags the scripts and docs use still parse."""

import dataclasses
from typing import Literal

import pytest

from bdh_pl.errors import UserError
from bdh_pl.tools import context_curve, export, generate, mauve, merge, plot
from bdh_pl.tools.inspect import command as inspect
from bdh_pl.tools.options import Checkpoint, Loading, Sampling, parse


@dataclasses.dataclass(kw_only=True)
class Extra:
    """Extra options

    Args:
        names: several names
        kinds: which kinds
        switch: a switch
    """

    names: list[str] = dataclasses.field(default_factory=list)
    kinds: list[Literal["a", "b"]] = dataclasses.field(default_factory=lambda: ["a", "b"])
    switch: bool = False


def toy(source: str, checkpoint: Checkpoint, sampling: Sampling, extra: Extra) -> None:
    """A toy command.

    Args:
        source: where from
    """


def test_dataclass_fields_are_flat_flags_and_plain_parameters_positional():
    argv = ["S", "--ckpt_path", "m.ckpt", "--top_k", "5", "--names", "x", "y", "--switch"]
    args = parse(toy, [*argv, "--kinds", "b"], "toy")
    assert args["source"] == "S"
    assert args["checkpoint"] == Checkpoint(ckpt_path="m.ckpt")  # the rest at its defaults
    assert args["sampling"] == Sampling(top_k=5)
    assert args["extra"] == Extra(names=["x", "y"], kinds=["b"], switch=True)
    assert parse(toy, ["S", "--ckpt_path", "m"], "toy")["extra"] == Extra()


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--top_k", "0"], "--top_k 0: must be a whole number in [1, "),  # the dataclass's check
        (["--top_p", "1.5"], "--top_p 1.5: must be in (0, 1]"),
        (["--seed", "-1"], "--seed -1: must be in [0, 2**32)"),
        (["--n_layer", "0"], "--n_layer 0: must be a whole number"),
        (["--device", "foo"], "--device 'foo' is not a device"),
        (["--top_k", "two"], "--top_k two: must be a whole number"),  # the type's, at parsing
        (["--temperature", "nan"], "--temperature nan: must be a finite number"),
        (["--kinds", "c"], "--kinds"),
        (["--temp", "0.5"], "unrecognized arguments: --temp"),  # no abbreviations
    ],
)
def test_a_bad_value_is_one_line_naming_the_flag(argv, named):
    with pytest.raises(UserError) as refused:
        parse(toy, ["S", "--ckpt_path", "m.ckpt", *argv], "toy")
    line = str(refused.value)
    assert "\n" not in line and named in line, line


def test_a_missing_required_flag_is_named_as_a_flag():
    with pytest.raises(UserError, match=r"give --ckpt_path: required"):
        parse(toy, ["S"], "toy")


def test_the_flags_the_scripts_and_docs_use_still_parse(tmp_path):
    """benchmarks/*.sh and the docs call the tools with these flags."""
    a, b = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    out = str(tmp_path / "out")
    curve = parse(
        context_curve.context_curve,
        ["--per_article", "--windows", "--max_tokens", "64", "--out", out, "--label", "A", "B"]
        + ["--ckpt_path", str(a), str(b), "--stride", "8"],
        "context-curve",
    )["args"]
    assert (curve.per_article, curve.windows, curve.stride) == (True, True, 8)
    assert curve.ckpt_path == [str(a), str(b)] and curve.label == ["A", "B"]
    assert curve.buckets == context_curve.BUCKETS and curve.device == "cpu"
    replot = parse(context_curve.context_curve, ["--replot", out], "context-curve")["args"]
    assert replot.replot == out and replot.ckpt_path is None
    seen = parse(
        inspect.inspect_command,
        ["--ckpt_path", str(a), "--label", "bdh", "--control", str(b), "--control_label"]
        + ["llama", "--measures", "graph", "--out", out],
        "inspect",
    )["args"]
    assert (seen.measures, seen.control_label, seen.seed) == (["graph"], ["llama"], 0)
    assert parse(inspect.inspect_command, ["--replot", "--out", out], "inspect")["args"].replot
    merged = parse(merge.merge_command, [str(a), str(b), "--out", out], "merge")
    assert (merged["a"], merged["b"], merged["output"].out) == (str(a), str(b), out)
    sampled = parse(
        generate.generate,
        ["--ckpt_path", "m.ckpt", "--prompt", "To be or ", "--num_samples", "3", "--top_p", "0.9"],
        "generate",
    )
    assert sampled["prompt"].bytes == b"To be or " and sampled["sampling"].top_p == 0.9
    scored = parse(mauve.run, ["--ckpt_path", "m", "--n_samples", "5"], "mauve")
    assert scored["sampling"].max_new_tokens == 256 and scored["prompts"].n_samples == 5
    exported = parse(export.export_command, ["--ckpt_path", "m", "--out", out], "export")
    assert exported["args"].test_metrics is None
    assert parse(plot.plot, ["--results", out], "plot")["args"].results == out


def test_the_shared_options_are_checked_in_one_place():
    """A subclass narrows a range (mauve: at least one new token) without restating it."""
    assert issubclass(mauve.Continuations, Sampling) and issubclass(Checkpoint, Loading)
    with pytest.raises(UserError, match="--max_new_tokens 0: must be a whole number"):
        mauve.Continuations(max_new_tokens=0)
    assert generate.Sampling(max_new_tokens=0).max_new_tokens == 0  # generate: the prompt only
