"""`python -m bdh_pl lm-eval ...`: lm-evaluation-harness's command line with the `bdh-pl`
model registered (see bdh_pl/tools/lm_eval_model.py).

    pip install -e ".[eval]"
    python -m bdh_pl lm-eval --model bdh-pl --model_args pretrained=DIR_OR_CKPT,device=cpu \\
        --tasks wikitext --batch_size 8

Every other option is lm-eval's own (`--include_path` for local task YAMLs, `--limit`,
`--output_path`, ...); `--model hf` and the other built-in models work as in `lm_eval`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bdh_pl.errors import UserError
from bdh_pl.fileio import check_writable


def check_argv(argv: list[str]) -> None:
    """What can be checked before lm-eval starts (one clear line each): the bdh-pl model's
    --model_args, a --device that is no device, an --output_path under a regular file."""
    from lm_eval.utils import simple_parse_args_string

    from bdh_pl.tools.common import check_device
    from bdh_pl.tools.lm_eval_model import check_model_args

    def value(flag: str) -> str | None:
        for i, arg in enumerate(argv):
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
        return None

    if value("--model") == "bdh-pl":
        model_args = value("--model_args") or ""
        try:
            parsed = simple_parse_args_string(model_args)
        except (ValueError, IndexError):
            raise UserError(
                f"--model_args {model_args!r} is not a list of key=value pairs separated by "
                "commas (e.g. pretrained=DIR,device=cpu)"
            ) from None
        check_model_args(parsed)
        device = value("--device")
        if device is not None and not device.startswith("cuda"):  # cuda: the CPU without one
            check_device(device)
    output = value("--output_path") or value("-o")
    if output:
        check_writable(Path(output).expanduser().parent, "give --output_path a writable place")


def config_error(err: Exception) -> str | None:
    """lm-eval's own refusal of its options (an unknown task, say), raised while it reads
    them, before any model is loaded: its message, else None (a failure to report whole)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = Path(tb.tb_frame.f_code.co_filename).as_posix() if tb is not None else ""
    if "/lm_eval/config/" in where or "/lm_eval/_cli/" in where:
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return None


def main(argv: list[str]) -> None:
    try:
        from lm_eval.__main__ import cli_evaluate

        import bdh_pl.tools.lm_eval_model  # noqa: F401  (registers the `bdh-pl` model)
    except ImportError as err:
        raise UserError(
            f'lm-evaluation-harness is not installed ({err.name}): pip install -e ".[eval]"'
        ) from None
    if argv and argv[0] not in ("-h", "--help"):
        check_argv(argv)
    saved = sys.argv
    sys.argv = ["lm_eval", *argv]
    try:
        cli_evaluate()
    except (ValueError, TypeError) as err:
        line = config_error(err)
        if line is None:
            raise
        hint = (
            " (list tasks: `python -m bdh_pl lm-eval ls tasks`)" if "task" in line.lower() else ""
        )
        raise UserError(f"lm-eval: {line}{hint}") from None
    finally:
        sys.argv = saved
