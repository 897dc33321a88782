"""The reference run's A100 experiment (the original project's, ../shared/SEED.md) and the GPU questions, in one command:

    bash benchmarks/gpu.sh                       # -> results/gpu/<device>/, under 10 min on one H100/H200
    python benchmarks/gpu.py --dry-run --out DIR # the same steps, tiny sizes, CPU, ~1 min

Steps, in this order, each in its own process under its own time limit (a step at its limit
is stopped and recorded as `timeout`, a step that raises as `failed`, and the next one runs),
all within one overall budget (--budget-s); each step's numbers are written as they come:

    info           device, its dense bf16 peak (the MFU's denominator), a big matmul, FLOPs/token
    reference      the reference run: 25.3M BDH on tiny Shakespeare (configs/shakespeare.yaml),
                   validation every 100 steps, best/last checkpoints, early stopping, against
                   the reference run's val loss 1.53 at step 500; bounded by Lightning's max_time
    equality       the fused paths against model.py on the device: fp32 and bf16, values and
                   gradients, against an fp64 run too (tolerances in gpu_steps.py)
    speed-*        a training step's tokens/s, MFU and peak memory: ours eager, official eager,
                   ours compiled, official compiled, ours torch.compile, ours reference eager
    generation     recurrent generate() against a full forward per token (ours, official)
    frontier       optional: configs/benchmark/wikitext2-gpu.yaml at the budget where the CPU
                   frontier's fits predict each family's bpb; runs only with time left

The official code (github.com/pathwaycom/bdh, its bdh.py) is never part of this repository:
--official PATH or BDH_OFFICIAL=PATH (a checkout or the file); without it the official steps
are skipped with a line saying so.

On a device machine of this workplace (no internet there): first, here,
    bash benchmarks/gpu_prepare.sh /path/to/pathwaycom-bdh   # .gpu/: wheels, data, official code
then the device tool's run with
    command: bash benchmarks/gpu.sh     carry: [".gpu"]     timeout_s: 600
gpu.sh installs the carried wheels (jsonargparse, docstring-parser, typeshed-client: the device
image lacks them), points BDH_PL_DATA_DIR and BDH_OFFICIAL at .gpu/, and packs the results
(no checkpoints) into $OUT/gpu-results.tar.gz after every step.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Planned:
    name: str
    limit_s: float  # on a GPU
    min_s: float = 20.0  # not started with less time left than this
    official: bool = False  # needs the official code


PLAN = [
    Planned("info", 60),
    Planned("reference", 270, min_s=90),
    Planned("equality", 120),
    Planned("speed-ours-eager", 60),
    Planned("speed-official-eager", 60, official=True),
    Planned("generation", 60),
    Planned("speed-ours-compiled", 120),
    Planned("speed-official-compiled", 120, official=True),
    Planned("speed-ours-torch-compile", 120),
    Planned("speed-ours-reference-eager", 60),
    Planned("frontier", 300, min_s=150),
]
DRY_LIMIT_S = 120.0  # every step's limit in a dry run
BUDGET_S = 540.0  # the whole run: 9 minutes, inside a 10-minute device call
KILL_GRACE_S = 5.0  # SIGTERM, then SIGKILL this much later


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-device"


def gpu_name() -> str:
    """The first GPU's name from nvidia-smi: the parent never touches CUDA itself, so the
    steps' processes can start it afresh."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown-gpu"


def official_path(given: str | None) -> Path | None:
    """The official code's path: --official, else BDH_OFFICIAL (gpu.sh sets it to
    .gpu/official when that holds bdh.py), else None. A path given that holds no bdh.py is a
    mistake: one line, exit 2."""
    given = given or os.environ.get("BDH_OFFICIAL")
    if not given:
        return None
    path = Path(given).expanduser().resolve()
    if not (path / "bdh.py").is_file() and not (path.is_file() and path.suffix == ".py"):
        print(
            f"error: no official bdh.py at {given} (--official / BDH_OFFICIAL): give a "
            "checkout of github.com/pathwaycom/bdh or its bdh.py, or leave it unset to skip",
            file=sys.stderr,
        )
        sys.exit(2)
    return path


# ---------------------------------------------------------------- one step, one process


def child_main(name: str, ctx) -> None:
    """In the step's process: run it; an exception's traceback goes to the step's log."""
    from gpu_steps import STEPS

    if os.environ.get("BDH_GPU_STALL") == name:  # tests: a step that hangs
        time.sleep(3600)
    if ctx.dry_run:  # trace only (dynamo, backend "eager"), every torch.compile, the fast
        # path's too: inductor's code generation costs a minute of CPU the dry run need not
        import functools

        import torch

        torch.compile = functools.partial(torch.compile, backend="eager")
    STEPS[name](ctx)


def run_forked(name: str, ctx, log: Path, limit_s: float) -> tuple[str, float]:
    """Fork, run the step in the child (its own process group), wait at most limit_s."""
    import torch

    if torch.cuda.is_initialized():  # CUDA does not survive a fork: never here, but if so
        return run_spawned(name, ctx, log, limit_s)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler
            os.setpgid(0, 0)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            child_main(name, ctx)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return wait(pid, limit_s)


def run_spawned(name: str, ctx, log: Path, limit_s: float) -> tuple[str, float]:
    """The same in a fresh interpreter (--spawn): slower to start, shares nothing."""
    argv = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--out",
        str(ctx.out),
        "--limit-s",
        str(limit_s),
        *(["--dry-run"] if ctx.dry_run else []),
        *(["--official", str(ctx.official)] if ctx.official else []),
        *(["--frontier-flops", str(ctx.frontier_flops)] if ctx.frontier_flops else []),
    ]
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            argv, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, preexec_fn=os.setpgrp
        )  # noqa: PLW1509
    return wait(proc.pid, limit_s, proc)


CURRENT: list[int] = []  # the step process in flight, for the parent's signal handler
CPU_S: list[float] = []  # the CPU seconds of the step that ended last


def wait(pid: int, limit_s: float, proc: subprocess.Popen | None = None) -> tuple[str, float]:
    """("ok" | "failed" | "timeout", seconds): poll the step's process until it ends or its
    limit passes; then its whole group (compile workers, a fit's subprocesses) is stopped."""
    CURRENT[:] = [pid]
    start = time.monotonic()
    status = None
    while status is None:
        done, code, usage = os.wait4(pid, os.WNOHANG)
        if done:
            status = "ok" if os.waitstatus_to_exitcode(code) == 0 else "failed"
            CPU_S[:] = [usage.ru_utime + usage.ru_stime]
        elif time.monotonic() - start > limit_s:
            stop_group(pid)
            status = "timeout"
        else:
            time.sleep(0.05)
    if proc is not None:
        proc.returncode = 0  # reaped above
    CURRENT.clear()
    return status, time.monotonic() - start


def stop_group(pid: int) -> None:
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 30.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + grace
        while time.monotonic() < end:
            if os.waitpid(pid, os.WNOHANG)[0]:
                with contextlib.suppress(ProcessLookupError):  # the leader is gone, its group?
                    os.killpg(pid, signal.SIGKILL)
                return
            time.sleep(0.05)


def stop_and_exit(signum: int, frame) -> None:
    """The parent stopped (SIGTERM): the step in flight goes with it."""
    if CURRENT:
        stop_group(CURRENT[0])
    sys.exit(143)


def last_line(log: Path) -> str | None:
    """What went wrong: the last `error:` line of bdh_pl's (the reference fit, the frontier
    benchmark), else the log's last line (an exception's)."""
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    chosen = [ln for ln in lines if ln.startswith("error:")] or lines
    return chosen[-1][:500] if chosen else None


# ---------------------------------------------------------------- the run


def snapshot(out: Path, target: Path) -> None:
    """The results (no checkpoints, nothing over 16 MiB) as one tar.gz, replaced atomically:
    what the device tool brings back, even from a run cut short."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if info.name.endswith(".ckpt") or info.size > 16 * 2**20 else info

    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(out, arcname=out.name, filter=keep)
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    official = official_path(args.official) if not args.child else None
    import gpu_steps  # the steps' imports (torch, Lightning) made once, before any fork

    if args.child:  # --spawn's step process
        ctx = gpu_steps.Step(
            args.child,
            Path(args.out),
            args.dry_run,
            Path(args.official) if args.official else None,
            args.limit_s,
            args.frontier_flops,
        )
        child_main(args.child, ctx)
        return 0
    if not args.spawn:
        import bdh_pl.bench.record  # noqa: F401  (Lightning, for the forked steps)
        import bdh_pl.training.glue.cli  # noqa: F401
    device = "cpu (dry run)" if args.dry_run else gpu_name()
    out = Path(args.out or REPO / "results" / "gpu" / slug(device)).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    os.chdir(REPO)  # the steps' configs are relative to the repository
    from gpu_report import write_results

    from bdh_pl.bench.record import environment

    selected = [p for p in PLAN if (not args.steps or p.name in args.steps)]
    selected = [p for p in selected if p.name not in args.skip]
    limits = dict(args.limit)
    results = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "device": device,
        "budget_s": args.budget_s,
        "official": str(official) if official else None,
        "isolation": "spawn" if args.spawn else "fork",
        **environment(REPO),  # commit, uncommitted changes, torch and Lightning versions
        "steps": [],
    }
    run = run_spawned if args.spawn else run_forked
    deadline = time.monotonic() + args.budget_s
    signal.signal(signal.SIGTERM, stop_and_exit)
    for planned in selected:
        limit = limits.get(planned.name, DRY_LIMIT_S if args.dry_run else planned.limit_s)
        left = deadline - time.monotonic()
        entry = {"name": planned.name, "limit_s": limit, "log": f"logs/{planned.name}.log"}
        if planned.official and official is None:
            entry.update(
                status="skipped",
                reason="official code not found: set BDH_OFFICIAL or "
                "--official to a checkout of github.com/pathwaycom/bdh",
            )
        elif left < (1.0 if args.dry_run else planned.min_s):
            entry.update(
                status="skipped",
                reason=f"budget spent: {left:.0f} s left, the step needs {planned.min_s:.0f} s",
            )
        else:
            entry["limit_s"] = limit = min(limit, left)
            print(f"[gpu] {planned.name}: up to {limit:.0f} s", flush=True)
            ctx = gpu_steps.Step(
                planned.name, out, args.dry_run, official, limit, args.frontier_flops
            )
            CPU_S.clear()
            status, wall = run(planned.name, ctx, out / entry["log"], limit)
            entry.update(status=status, wall_s=round(wall, 2))
            if CPU_S:  # the step's process (with the children it waited for)
                entry["cpu_s"] = round(CPU_S[0], 2)
            if status == "failed":
                entry["error"] = last_line(out / entry["log"])
            elif status == "timeout":
                entry["error"] = f"stopped at its time limit of {limit:.0f} s"
            if status != "ok" and planned.name in gpu_steps.SALVAGE:
                try:  # what the step left before it stopped
                    ctx.load().put(salvaged=gpu_steps.SALVAGE[planned.name](ctx))
                except Exception as err:  # noqa: BLE001  (the run goes on)
                    entry["salvage_error"] = repr(err)[:300]
        print(
            f"[gpu] {planned.name}: {entry['status']}"
            + (
                f" ({entry.get('error') or entry.get('reason')})" if entry["status"] != "ok" else ""
            ),
            flush=True,
        )
        results["steps"].append(entry)
        write_results(out, results)
        if args.snapshot:
            snapshot(out, Path(args.snapshot))
        if (
            planned.name == "info"
            and entry["status"] != "ok"
            and "no CUDA" in str(entry.get("error"))
        ):
            print(
                "error: no CUDA device: run on a GPU, or with --dry-run on a CPU", file=sys.stderr
            )
            return 2
    print(f"[gpu] results: {out}/summary.md", flush=True)
    return 0


def parse(argv: list[str] | None) -> argparse.Namespace:
    def limit(text: str) -> tuple[str, float]:
        name, _, seconds = text.partition("=")
        if name not in {p.name for p in PLAN} or not seconds:
            raise argparse.ArgumentTypeError(f"expected STEP=SECONDS with a step of {names}")
        return name, float(seconds)

    def steps(text: str) -> list[str]:
        unknown = [s for s in text.split(",") if s not in names]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown steps {unknown}: the steps are {names}")
        return text.split(",")

    names = [p.name for p in PLAN]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, seconds")
    ap.add_argument("--out", help="results folder (default results/gpu/<device>)")
    ap.add_argument("--official", help="the official code: a pathwaycom/bdh checkout or bdh.py")
    ap.add_argument("--budget-s", type=float, default=BUDGET_S, help="the whole run's limit")
    ap.add_argument("--steps", type=steps, default=None, help="only these (comma-separated)")
    ap.add_argument("--skip", type=steps, default=[], help="not these (comma-separated)")
    ap.add_argument("--limit", type=limit, action="append", default=[], metavar="STEP=SECONDS")
    ap.add_argument("--spawn", action="store_true", help="each step in a fresh interpreter")
    ap.add_argument("--snapshot", help="after each step, the results as this .tar.gz")
    ap.add_argument("--frontier-flops", type=float, help="the frontier point's training FLOPs")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--limit-s", type=float, default=60.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.budget_s <= 0:
        ap.error("--budget-s must be positive")
    return args


if __name__ == "__main__":
    sys.exit(main())
