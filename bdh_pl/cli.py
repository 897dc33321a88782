"""The command line: LightningCLI's fit / validate / test (training/glue/cli.py) and bdh-pl's own
tools, one module each with a `main(argv)`.

python -m bdh_pl fit  --config configs/shakespeare.yaml
python -m bdh_pl test --config configs/shakespeare.yaml --ckpt_path best.ckpt
python -m bdh_pl generate|benchmark|plot|export|mauve|lm-eval|context-curve|merge|download-data ...
python -m bdh_pl --help   (every subcommand; each has its own --help)

This module imports no torch or Lightning: `--help` and a mistyped subcommand answer at once;
a subcommand imports what it needs. Bad input anywhere ends as one `error:` line, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from bdh_pl.cli_help import SUBCOMMAND_HELP, top_level_help
from bdh_pl.errors import INTERRUPTED_EXIT_CODE, Preempted, UserError, config_error_line
from bdh_pl.fileio import disk_error

# Subcommands that are not LightningCLI's: name -> module with a `main(argv)`.
TOOLS: dict[str, str] = {
    "benchmark": "bdh_pl.bench.matrix",
    "plot": "bdh_pl.tools.plot",
    "generate": "bdh_pl.tools.generate",
    "download-data": "bdh_pl.tools.download_data",
    "export": "bdh_pl.tools.export",
    "lm-eval": "bdh_pl.tools.lm_eval_cli",
    "mauve": "bdh_pl.tools.mauve",
    "context-curve": "bdh_pl.tools.context_curve",
    "inspect": "bdh_pl.tools.inspect.command",
    "merge": "bdh_pl.tools.merge",
}
LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test")


def current_run():
    """The run a Lightning subcommand opened (training/run_folders.py's RUN), or None when none was
    started: looked up, not imported, so that a tool's error path stays free of Lightning."""
    runs = sys.modules.get("bdh_pl.training.run_folders")
    return runs.RUN if runs is not None else None


def fail(message: str, code: int = 2, abandon: bool = True) -> None:
    """Print one line, drop the folder of a run that never got going, exit."""
    run = current_run()
    if code == 2 and abandon and run is not None:
        run.abandon()
    print(message, file=sys.stderr)
    sys.exit(code)


def dispatch(args: list[str]) -> None:
    if args[:1] in (["-h"], ["--help"]):
        sys.stdout.write(top_level_help())
    elif args and args[0] in TOOLS:
        importlib.import_module(TOOLS[args[0]]).main(args[1:])
    elif args and args[0] == "predict":
        raise UserError(
            "`predict` is not supported: sample text with `python -m bdh_pl generate`, "
            "score a text with `test`"
        )
    elif not args or args[0] not in LIGHTNING_SUBCOMMANDS:
        given = f"unknown subcommand {args[0]!r}" if args else "no subcommand given"
        raise UserError(f"{given}: use one of {', '.join(SUBCOMMAND_HELP)} (see --help)")
    else:
        from bdh_pl.training.glue.cli import run_lightning

        run_lightning(args)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        dispatch(args)
    except UserError as err:
        fail(f"error: {err}")
    except Preempted as err:
        fail(str(err), err.code)
    except KeyboardInterrupt:  # Ctrl-C outside a Lightning run (a tool, data preparation)
        fail(f"{args[0] if args else 'bdh_pl'}: stopped by Ctrl-C", INTERRUPTED_EXIT_CODE)
    except argparse.ArgumentError as err:
        fail(f"error: {config_error_line(err)}")
    except ValueError as err:
        # jsonargparse re-raises a class's own error (our UserErrors included) as this.
        if not str(err).startswith("Does not validate against any of the Union subtypes"):
            raise
        fail(f"error: {config_error_line(err, hint=False)}")
    except OSError as err:
        run = current_run()
        run_dir = run.run_dir if run is not None else None
        folder = Path(err.filename).parent if err.filename else run_dir or Path(".")
        converted = disk_error(err, folder)
        if not isinstance(converted, UserError):
            raise
        fail(f"error: {converted}", abandon=False)  # the folder the message names stays
    except RuntimeError as err:
        from bdh_pl.training.memory import out_of_memory_line  # torch raised it: loaded

        line = out_of_memory_line(err, args[0] if args and args[0] in TOOLS else None)
        if line is None:
            raise
        fail(f"error: {line}")
    finally:
        run = current_run()
        if run is not None:
            run.release()
