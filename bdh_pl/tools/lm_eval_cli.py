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

from bdh_pl.errors import UserError


def check_argv(argv: list[str]) -> None:
    """Catch a --model_args typo for bdh-pl before lm-eval starts (one clear line)."""
    from lm_eval.utils import simple_parse_args_string

    from bdh_pl.tools.lm_eval_model import check_model_args

    def value(flag: str) -> str | None:
        for i, arg in enumerate(argv):
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
        return None

    if value("--model") == "bdh-pl":
        check_model_args(simple_parse_args_string(value("--model_args") or ""))


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
    finally:
        sys.argv = saved
