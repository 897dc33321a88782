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


def option(argv: list[str], *flags: str) -> str | None:
    """The value of lm-eval's option given under any of its names (`--model_args`, `-a`),
    as `--flag value`, `--flag=value` or `-avalue`; the last one given wins, as in argparse."""
    found = None
    for i, arg in enumerate(argv):
        name, equals, rest = arg.partition("=")
        if name in flags:
            found = rest if equals else (argv[i + 1] if i + 1 < len(argv) else None)
        elif not arg.startswith("--") and len(arg) > 2 and arg[:2] in flags:
            found = arg[2:]  # -avalue
    return found


def check_argv(argv: list[str]) -> None:
    """What can be checked before lm-eval starts (one clear line each): the bdh-pl model's
    --model_args, a --device that is no device, an --output_path under a regular file, the
    data files of the local tasks asked for."""
    from lm_eval.utils import simple_parse_args_string

    from bdh_pl.tools.lm_eval_model import check_model_args
    from bdh_pl.tools.options import check_device

    if option(argv, "--model", "-m") == "bdh-pl":
        model_args = option(argv, "--model_args", "-a") or ""
        try:
            parsed = simple_parse_args_string(model_args)
        except (ValueError, IndexError):
            raise UserError(
                f"--model_args {model_args!r} is not a list of key=value pairs separated by "
                "commas (e.g. pretrained=DIR,device=cpu)"
            ) from None
        check_model_args(parsed)
        device = option(argv, "--device")
        if device is not None and not device.startswith("cuda"):  # cuda: the CPU without one
            check_device(device)
    output = option(argv, "--output_path", "-o")
    if output:
        check_writable(Path(output).expanduser().parent, "give --output_path a writable place")
    include, tasks = option(argv, "--include_path"), option(argv, "--tasks", "-t")
    if include and tasks:
        check_local_task_files(Path(include).expanduser(), tasks.split(","))


def is_local_file(name: object) -> bool:
    """A data file name that is a local path, not a URL or a glob pattern."""
    return isinstance(name, str) and "://" not in name and not any(c in name for c in "*?[")


def check_local_task_files(folder: Path, tasks: list[str]) -> None:
    """The local files a task YAML under `folder` reads (dataset_kwargs.data_files, a local
    dataset_path), for the tasks asked for: lm-eval opens them only after the model loads."""
    import yaml

    class Loader(yaml.SafeLoader):  # lm-eval's `!function` tags: not needed here
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    for path in sorted(folder.rglob("*.yaml")) if folder.is_dir() else []:
        try:
            config = yaml.load(path.read_text(), Loader=Loader)
        except (yaml.YAMLError, OSError, UnicodeDecodeError):
            continue  # lm-eval's own reading reports it
        if not isinstance(config, dict) or config.get("task") not in tasks:
            continue
        files = (config.get("dataset_kwargs") or {}).get("data_files") or {}
        files = files.values() if isinstance(files, dict) else [files]
        named = [n for entry in files for n in (entry if isinstance(entry, list) else [entry])]
        local = config.get("dataset_path")
        if isinstance(local, str) and local.startswith(("/", "./", "../", "~")):
            named.append(local)
        for name in named:
            if is_local_file(name) and not Path(name).expanduser().exists():
                raise UserError(
                    f"lm-eval task {config['task']} ({path}) reads {name!r}, which does not "
                    f"exist (relative to {Path.cwd()}): create it or run from its folder"
                )


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
