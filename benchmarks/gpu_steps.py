"""The steps of benchmarks/gpu.py, one function each: info, reference, equality, speed (one
variant per step), generation, frontier. gpu.py runs each in its own process under its own
time limit; a step writes what it has measured to {out}/{step}.json as it goes (Step.put), so
a step stopped at its limit keeps its finished parts.

Sizes: GPU (the reference run's 25.3M BDH, batch 32 x block 512) or DRY (a 2-layer, 32-wide BDH on
the CPU, a few steps: the --dry-run that tests/integration/benchmarks/test_gpu.py runs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bdh_pl.fileio import write_json  # noqa: E402
from bdh_pl.models.bdh import BDH, BDHConfig, BDHExecution  # noqa: E402
from bdh_pl.training.flops import flops_per_token  # noqa: E402
from bdh_pl.training.glue.callbacks import peak_memory_mb, reset_peak_memory  # noqa: E402

REFERENCE_ANCHORS = {500: 1.53, 3000: 3.25}  # the reference A100 run (../shared/SEED.md): val loss
# Dense bf16 tensor-core peaks in FLOP/s (NVIDIA data sheets: the "with sparsity" figure
# halved), matched on torch.cuda.get_device_name() lower-cased: every word of a row's key in
# the name, the first row that matches wins.
PEAK_BF16: list[tuple[tuple[str, ...], str, float]] = [
    (("h200", "nvl"), "H200 NVL", 835.5e12),
    (("h200",), "H200 SXM", 989.4e12),
    (("h100", "nvl"), "H100 NVL", 835.5e12),
    (("h100", "pcie"), "H100 PCIe", 756.5e12),
    (("h100", "hbm3"), "H100 SXM", 989.4e12),
    (("h100", "sxm"), "H100 SXM", 989.4e12),
    (("a100",), "A100 (SXM or PCIe)", 312e12),
]


def peak_bf16(device_name: str) -> dict[str, Any]:
    """{flops, matched, reason}: the device's dense bf16 peak, or flops None and why."""
    name = device_name.lower()
    for words, label, flops in PEAK_BF16:
        if all(w in name for w in words):
            return {"flops": flops, "matched": label, "reason": None}
    if "h100" in name:
        reason = "an H100 whose name does not say SXM (HBM3), PCIe or NVL: the peaks differ"
    elif name.startswith("cpu"):
        reason = "a CPU: no bf16 peak in the table"
    else:
        reason = f"{device_name!r} is not in PEAK_BF16 (benchmarks/gpu_steps.py): add its peak"
    return {"flops": None, "matched": None, "reason": reason}


@dataclass(frozen=True)
class Sizes:
    model: dict  # BDHConfig fields
    batch: int  # training speed and the FLOPs count
    block: int
    warmup: int  # untimed training steps (the first one compiles)
    timed: int  # timed training steps (median)
    gen_lengths: tuple[int, ...]  # new tokens per generation
    rerun_max: int  # the longest generation also timed as a full forward per token
    eq_model: dict  # equality: the model, batch x block, chunked attention's chunk
    eq_batch: int
    eq_block: int
    chunk: int
    matmul: int  # the size of the square matmul that measures what the device reaches
    reference_args: tuple[str, ...]  # the reference fit's extra arguments
    anchor_step: int  # the reference run's step whose val loss is compared (500)


GPU = Sizes(
    model={},  # BDHConfig's defaults: 6 layers, 256 wide, 4 heads, multiplier 128 (25.3M)
    batch=32,
    block=512,
    warmup=3,
    timed=20,
    gen_lengths=(256, 1024),
    rerun_max=256,
    eq_model={},
    eq_batch=2,
    eq_block=512,
    chunk=256,
    matmul=8192,
    reference_args=(),
    anchor_step=500,
)
DRY = Sizes(
    model=dict(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4),
    batch=2,
    block=16,
    warmup=1,
    timed=2,
    gen_lengths=(8, 16),
    rerun_max=8,
    # big enough that bf16's rounding averages out (2 x 32 x 16 positions: a few gradient
    # entries dominate, and the fused paths' error ranges from 0.3x to 4x the reference's)
    eq_model=dict(n_layer=2, n_embd=64, n_head=2, mlp_internal_dim_multiplier=16),
    eq_batch=2,
    eq_block=64,
    chunk=16,
    matmul=128,
    # configs/cpu.yaml + configs/cpu/bdh.yaml, then smaller still: 6 steps, validation every 2
    reference_args=(
        *("--config", "configs/cpu.yaml", "--config", "configs/cpu/bdh.yaml"),
        *("--trainer.max_steps", "6", "--trainer.val_check_interval", "2"),
        *("--trainer.limit_val_batches", "2", "--model.init_args.config.n_embd", "32"),
        *("--model.init_args.config.mlp_internal_dim_multiplier", "4"),
        *("--model.init_args.training.warmup_steps", "1", "--data.init_args.block_size", "16"),
        *("--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "4"),
    ),
    anchor_step=4,
)


@dataclass
class Step:
    """What a step gets: where to write, which sizes, the official code, its time limit."""

    name: str
    out: Path
    dry_run: bool = False
    official: Path | None = None  # a folder or file holding the official bdh.py
    limit_s: float = 60.0
    frontier_flops: float | None = None
    data: dict = field(default_factory=dict)

    @property
    def sizes(self) -> Sizes:
        return DRY if self.dry_run else GPU

    @property
    def device(self) -> torch.device:
        if self.dry_run:
            return torch.device("cpu")
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device: on a machine without one use --dry-run")
        return torch.device("cuda")

    def load(self) -> Step:
        """Take up what the step's process wrote (the parent, before it adds to it)."""
        path = self.out / f"{self.name}.json"
        if path.is_file():
            self.data = {k: v for k, v in json.loads(path.read_text()).items() if k != "step"}
        return self

    def put(self, **values: Any) -> None:
        """Add values to this step's result file, written whole (atomically) every time."""
        self.data.update(values)
        write_json(self.out / f"{self.name}.json", {"step": self.name, **self.data})


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def load_official(path: Path):
    """The official bdh.py (github.com/pathwaycom/bdh) as a module, from a file or its folder."""
    import importlib.util

    file = path / "bdh.py" if path.is_dir() else path
    spec = importlib.util.spec_from_file_location("official_bdh", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- info


def info(step: Step) -> None:
    """The device, its bf16 peak, what a plain matmul reaches, the FLOPs of one token."""
    device, sizes = step.device, step.sizes
    name = device_name(device)
    step.put(
        device=name,
        device_type=device.type,
        torch=torch.__version__,
        cuda=torch.version.cuda,
        peak_bf16=peak_bf16(name),
        model=sizes.model,
        batch=sizes.batch,
        block=sizes.block,
    )
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        step.put(memory_gib=props.total_memory / 2**30, multiprocessors=props.multi_processor_count)
    counts = flops_per_token(BDH(BDHConfig(**sizes.model)), sizes.block)
    step.put(flops_per_token=counts)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = sizes.matmul
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    times = []
    for i in range(13):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        if i >= 3:  # three warm-ups
            times.append(time.perf_counter() - t)
    step.put(matmul={"n": n, "dtype": str(dtype), "tflops": 2 * n**3 / min(times) / 1e12})


# ---------------------------------------------------------------- reference run


def reference_command(step: Step) -> list[str]:
    """The reference run as this project writes it (configs/shakespeare.yaml: 25.3M BDH, block
    512, batch 32, bf16-mixed, up to 3000 steps, validation every 100, early stopping),
    bounded by Lightning's max_time so that it ends cleanly inside the step's limit."""
    # the time limit leaves room for start-up, the last validation and the checkpoint
    seconds = max(10, int(step.limit_s - (45 if not step.dry_run else 20)))
    return [
        *("fit", "--config", "configs/shakespeare.yaml", *step.sizes.reference_args),
        *("--trainer.default_root_dir", str(step.out / "reference")),
        *("--trainer.max_time", f"00:00:{seconds // 60:02d}:{seconds % 60:02d}"),
        *("--trainer.enable_progress_bar", "false"),
    ]


def reference(step: Step) -> None:
    from bdh_pl.cli import main

    argv = reference_command(step)
    step.put(command="python -m bdh_pl " + " ".join(argv), status="running")
    try:
        main(argv)
    except SystemExit as stop:
        if stop.code not in (0, None):
            raise RuntimeError(f"python -m bdh_pl fit exited with {stop.code}") from None
    step.put(status="finished", **reference_figures(step))


def reference_figures(step: Step) -> dict[str, Any]:
    """The run's validation curve against the reference run's anchors, its best and last points and
    checkpoints, throughput, MFU against the device's peak and peak memory (from the run's
    own metrics.csv: also what a run stopped at its limit left)."""
    from bdh_pl.bench.record import fit_figures
    from bdh_pl.charts import read_metrics

    runs = sorted((step.out / "reference").glob("version_*"), key=lambda p: p.stat().st_mtime)
    if not runs or not (runs[-1] / "metrics.csv").is_file():
        return {"note": "the fit wrote no metrics"}
    run = runs[-1]
    per_step = step.sizes.batch * step.sizes.block
    figures = fit_figures(run, None, per_step)
    # Lightning logs a validation after step s at row s - 1
    curve = [(s + 1, v) for s, v in read_metrics(run).get("val/loss", [])]
    at = dict(curve)
    checkpoints = {
        p.stem: {"path": str(p), "mib": p.stat().st_size / 2**20}
        for p in sorted((run / "checkpoints").glob("*.ckpt"))
    }
    # the device's peak and the FLOPs per token from the info step (the parent calls this
    # too, and must not touch the GPU)
    info_file = step.out / "info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    peak = info.get("peak_bf16", {}).get("flops")
    ftok = info.get("flops_per_token", {}).get("forward_backward")
    tps = figures.get("train_tokens_per_sec")
    return {
        "run": str(run),
        "val_curve": curve,
        "anchor_step": step.sizes.anchor_step,
        "val_loss_at_anchor": at.get(step.sizes.anchor_step),
        "anchors": {
            str(k): {"reference": v, "ours": at.get(k)} for k, v in REFERENCE_ANCHORS.items()
        },
        "best_step": figures.get("best_step"),
        "best_val_loss": figures.get("best_val_loss"),
        "best_val_bpb": figures.get("best_val_bpb"),
        "last_step": curve[-1][0] if curve else None,
        "last_val_loss": curve[-1][1] if curve else None,
        "train_steps": figures.get("train_steps"),
        "train_tokens_per_sec": tps,
        "mfu": tps * ftok / peak if tps and ftok and peak else None,
        "lightning_mfu": figures.get("mfu"),
        "train_peak_memory_mb": figures.get("train_peak_memory_mb"),
        "checkpoints": checkpoints,
    }


# ---------------------------------------------------------------- equality


EQ_VARIANTS = {  # BDHExecution switches, each against the reference (fused=False)
    "fused quadratic": dict(attention="quadratic"),
    "fused chunked": dict(attention="chunked"),
    "fused auto": dict(attention="auto"),
    "fused compile_elementwise": dict(compile_elementwise=True),  # last: it compiles
}
# Errors are relative in norm, |got - want| / |want| (per parameter for gradients, the worst
# one reported): a max-abs error is ruled by a few entries, noisy for bf16 gradients.
# fp32 (TF32 off): against the reference, about 1000x fp32's epsilon.
FP32_TOL = {"logits": 1e-4, "grads": 1e-4}
# bf16 autocast: the error against an fp64 run at most BF16_FACTOR x the reference's own bf16
# error against fp64, plus BF16_SLACK.
BF16_FACTOR, BF16_SLACK = 2.0, 1e-3


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm().clamp_min(1e-30))


def forward_backward(model: torch.nn.Module, idx: torch.Tensor, precision: str):
    """Logits (fp64) and every parameter's gradient (fp64) of a cross-entropy step."""
    model.zero_grad(set_to_none=True)
    model.to(torch.float64 if precision == "fp64" else torch.float32).train()
    with torch.autocast(idx.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(idx[:, :-1])
    logits = out[0] if isinstance(out, tuple) else out
    F.cross_entropy(logits.flatten(0, 1).float(), idx[:, 1:].flatten()).backward()
    grads = {n: p.grad.double() for n, p in model.named_parameters()}
    return logits.detach().double(), grads


def compare(got, want) -> tuple[float, float, str]:
    """(logits error, worst gradient error, its parameter)."""
    errs = {n: rel_err(g, want[1][n]) for n, g in got[1].items()}
    worst = max(errs, key=errs.get)
    return rel_err(got[0], want[0]), errs[worst], worst


def equality(step: Step) -> None:
    """Each fused path against the reference, values and gradients, fp32 and bf16."""
    device, sizes = step.device, step.sizes
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    cfg = BDHConfig(**{**sizes.eq_model, "dropout": 0.0})
    torch.manual_seed(0)
    reference_model = BDHExecution(fused=False).apply(BDH(cfg)).to(device)
    weights = {k: v.clone() for k, v in reference_model.state_dict().items()}
    idx = torch.randint(0, cfg.vocab_size, (sizes.eq_batch, sizes.eq_block + 1), device=device)
    fp64 = forward_backward(reference_model, idx, "fp64")
    rows: list[dict] = []
    step.put(
        batch=sizes.eq_batch,
        block=sizes.eq_block,
        chunk=sizes.chunk,
        rows=rows,
        tolerance={"fp32": FP32_TOL, "bf16": {"factor": BF16_FACTOR, "slack": BF16_SLACK}},
    )
    for precision in ("fp32", "bf16"):
        reference_model.load_state_dict(weights)
        ref = forward_backward(reference_model, idx, precision)
        ref64 = compare(ref, fp64)
        for variant, switches in EQ_VARIANTS.items():
            execution = BDHExecution(**switches, chunk_size=sizes.chunk)
            model = execution.apply(BDH(cfg)).to(device)
            model.load_state_dict(weights)
            got = forward_backward(model, idx, precision)
            vs_ref, vs64 = compare(got, ref), compare(got, fp64)
            if precision == "fp32":
                ok = vs_ref[0] <= FP32_TOL["logits"] and vs_ref[1] <= FP32_TOL["grads"]
            else:
                ok = all(vs64[i] <= BF16_FACTOR * ref64[i] + BF16_SLACK for i in (0, 1))
            rows.append(
                {
                    "variant": variant,
                    "precision": precision,
                    "passed": ok,
                    "logits_err_vs_reference": vs_ref[0],
                    "grads_err_vs_reference": vs_ref[1],
                    "worst_param": vs_ref[2],
                    "logits_err_vs_fp64": vs64[0],
                    "grads_err_vs_fp64": vs64[1],
                    "reference_logits_err_vs_fp64": ref64[0],
                    "reference_grads_err_vs_fp64": ref64[1],
                }
            )
            step.put(rows=rows)
    if step.official is not None:  # the official forward against the reference, fp32, values
        official = load_official(step.official)
        model = official.BDH(official.BDHConfig(**dataclasses.asdict(cfg))).to(device)
        model.load_state_dict(weights, strict=True)
        reference_model.load_state_dict(weights)
        got = forward_backward(model, idx, "fp32")
        ref = forward_backward(reference_model, idx, "fp32")
        vs_ref = compare(got, ref)
        rows.append(
            {
                "variant": "official (pathwaycom/bdh)",
                "precision": "fp32",
                "passed": vs_ref[0] <= FP32_TOL["logits"] and vs_ref[1] <= FP32_TOL["grads"],
                "logits_err_vs_reference": vs_ref[0],
                "grads_err_vs_reference": vs_ref[1],
                "worst_param": vs_ref[2],
                "logits_err_vs_fp64": compare(got, fp64)[0],
            }
        )
        step.put(rows=rows)
    step.put(all_passed=all(r["passed"] for r in rows))


# ---------------------------------------------------------------- training speed

# name: (code, BDHExecution switches (ours), torch.compile of the whole model)
SPEED_VARIANTS: dict[str, tuple[str, dict, bool]] = {
    "ours-eager": ("ours", {}, False),  # the fused path, as `fit` trains
    "official-eager": ("official", {}, False),
    "ours-compiled": ("ours", {"compile_elementwise": True}, False),
    "official-compiled": ("official", {}, True),  # as the official train.py runs it
    "ours-torch-compile": ("ours", {}, True),  # a BDHLM with `compile: true`
    "ours-reference-eager": ("ours", {"fused": False}, False),  # model.py alone
}


def build_for_speed(step: Step, variant: str) -> torch.nn.Module:
    code, switches, whole = SPEED_VARIANTS[variant]
    cfg = BDHConfig(**step.sizes.model)
    torch.manual_seed(0)
    if code == "official":
        official = load_official(step.official)
        model = official.BDH(official.BDHConfig(**dataclasses.asdict(cfg)))
    else:
        model = BDHExecution(**switches).apply(BDH(cfg))
    model = model.to(step.device).train()
    return torch.compile(model) if whole else model


def speed(step: Step) -> None:
    """Tokens/s, MFU and peak memory of a training step: forward under bf16 autocast,
    cross-entropy, backward, AdamW step. Out of memory at the reference run's batch, the batch is
    halved until it fits (each batch tried is recorded)."""
    device, sizes = step.device, step.sizes
    torch.backends.cuda.matmul.allow_tf32 = True  # as the official train.py
    ftok = flops_per_token(BDH(BDHConfig(**sizes.model)), sizes.block)["forward_backward"]
    peak = peak_bf16(device_name(device))
    step.put(
        variant=step.name.removeprefix("speed-"),
        block=sizes.block,
        precision="bf16 autocast",
        train_flops_per_token=ftok,
        peak_bf16=peak,
        out_of_memory_at=[],
    )
    batch = sizes.batch
    while True:
        try:
            times, losses = train_steps(step, batch)
            break
        except torch.cuda.OutOfMemoryError:
            if batch == 1:
                raise
            step.put(out_of_memory_at=[*step.data["out_of_memory_at"], batch])
        torch.cuda.empty_cache()  # after the except: its traceback held the batch's tensors
        batch //= 2
    median = statistics.median(times)
    tps = batch * sizes.block / median
    step.put(
        step_s_median=median,
        step_s_all=times,
        tokens_per_s=tps,
        mfu=tps * ftok / peak["flops"] if peak["flops"] else None,
        mfu_null_reason=peak["reason"],
        peak_memory_mib=peak_memory_mb(device),
        memory_kind="cuda allocated" if device.type == "cuda" else "process RSS",
        losses_finite=all(math.isfinite(float(x)) for x in losses),
    )


def train_steps(step: Step, batch: int) -> tuple[list[float], list[torch.Tensor]]:
    """(seconds, loss) of each timed training step at this batch, after the warm-up ones."""
    device, sizes = step.device, step.sizes
    step.put(batch=batch)
    model = build_for_speed(step, step.name.removeprefix("speed-"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    idx = torch.randint(0, 256, (batch, sizes.block + 1), device=device)

    def train_step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = model(idx[:, :-1])
        logits = out[0] if isinstance(out, tuple) else out  # the official returns (logits, loss)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), idx[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    t = time.perf_counter()
    train_step()
    sync(device)
    step.put(first_step_s=time.perf_counter() - t)  # compiles, for the compiled variants
    for _ in range(sizes.warmup - 1):
        train_step()
    sync(device)
    reset_peak_memory(device)
    times, losses = [], []
    for _ in range(sizes.timed):
        t = time.perf_counter()
        losses.append(train_step())
        sync(device)
        times.append(time.perf_counter() - t)
    return times, losses


# ---------------------------------------------------------------- generation


def generation(step: Step) -> None:
    """Tokens/s of our recurrent generate() against a full forward per new token (the
    official generate's way): ours through model.py, and the official code when at hand."""
    device, sizes = step.device, step.sizes
    cfg = BDHConfig(**sizes.model)
    torch.manual_seed(0)
    ours = BDHExecution().apply(BDH(cfg)).to(device).eval()
    plain = BDH(cfg).to(device).eval()
    plain.load_state_dict(ours.state_dict())
    official = None
    if step.official is not None:
        module = load_official(step.official)
        official = module.BDH(module.BDHConfig(**dataclasses.asdict(cfg))).to(device).eval()
        official.load_state_dict(ours.state_dict())
    prompt = torch.randint(0, cfg.vocab_size, (1, 16), device=device)

    def rerun(model: torch.nn.Module, n: int) -> torch.Tensor:
        idx = prompt
        with torch.no_grad():
            for _ in range(n):
                out = model(idx)
                logits = (out[0] if isinstance(out, tuple) else out)[:, -1]
                v, _ = torch.topk(logits, 3)
                logits[logits < v[:, [-1]]] = -float("inf")
                nxt = torch.multinomial(F.softmax(logits, -1), 1)
                idx = torch.cat((idx, nxt), 1)
        return idx

    def timed(fn: Callable[[], Any], n: int) -> dict[str, float]:
        reset_peak_memory(device)
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        return {
            "tokens_per_s": n / (time.perf_counter() - t),
            "peak_memory_mib": peak_memory_mb(device),
        }

    rows: list[dict] = []
    step.put(batch=1, prompt=16, precision="fp32 (TF32 off)", top_k=3, rows=rows)
    ours.generate(prompt, 2, top_k=3)  # warm-up
    for n in sizes.gen_lengths:
        row = {
            "new_tokens": n,
            "ours_recurrent": timed(lambda n=n: ours.generate(prompt, n, top_k=3), n),
        }
        if n <= sizes.rerun_max:
            row["reference_rerun"] = timed(lambda n=n: rerun(plain, n), n)
            if official is not None:
                row["official_rerun"] = timed(lambda n=n: rerun(official, n), n)
        rows.append(row)
        step.put(rows=rows)


# ---------------------------------------------------------------- frontier point


def frontier_spec(step: Step) -> dict:
    """configs/benchmark/wikitext2-gpu.yaml at one budget: the reference run's scale, where the CPU
    frontier's fits predict each family's validation bpb (results/wikitext2-frontier)."""
    spec = yaml.safe_load((REPO / "configs/benchmark/wikitext2-gpu.yaml").read_text())
    spec.update(
        experiment="wikitext2-gpu-point",
        output_dir=str(step.out / "frontier"),
        dataset=str(REPO / "configs/wikitext2.yaml"),
        budget={"flops": step.frontier_flops or predictions()[0]},
        validations=4,
        trainer={"limit_val_batches": 32, "enable_progress_bar": False},
    )
    if step.dry_run:
        spec.update(
            dataset=[str(REPO / "configs/wikitext2.yaml"), str(REPO / "configs/cpu.yaml")],
            budget={"steps": 2},
            validations=1,
            trainer={"limit_val_batches": 1, "limit_test_batches": 1, "enable_progress_bar": False},
            data={"init_args": {"block_size": 16, "batch_size": 2, "eval_batch_size": 4}},
        )
        tiny = {"n_layer": 1, "n_embd": 16, "n_head": 2}
        for entry in spec["models"]:
            entry["model_args"] = {
                **tiny,
                **({"mlp_internal_dim_multiplier": 4} if entry["config"] == "bdh" else {}),
            }
    return spec


# The reference run's training compute: the 25.3M BDH on 2M tokens, 3 x forward FLOPs.
REFERENCE_RUN_FLOPS = 2.0234e15


def predictions() -> tuple[float, dict]:
    """(budget FLOPs, {family: the CPU frontier's fit at that budget}), an extrapolation far
    past the measured range: the fits are L(C) = E + A C^-alpha; a family without a fit (too
    few interior points) has no prediction."""
    path = REPO / "results/wikitext2-frontier/frontier.json"
    families = json.loads(path.read_text()).get("families", {})
    predicted = {}
    for name, family in families.items():
        fit = family.get("fit")
        if fit:
            value = fit["E"] + fit["A"] * REFERENCE_RUN_FLOPS ** -fit["alpha"]
            predicted[name] = {"val_bpb": value, "measured_range": fit.get("measured_range")}
    return REFERENCE_RUN_FLOPS, predicted


def frontier(step: Step) -> None:
    spec = frontier_spec(step)
    folder = step.out / "frontier"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "benchmark-input.yaml"
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    command = [sys.executable, "-m", "bdh_pl", "benchmark", "--config", str(config)]
    step.put(command="python -m bdh_pl benchmark --config " + str(config), budget=spec["budget"])
    subprocess.run(command, cwd=REPO, check=True)
    step.put(**frontier_figures(step))


def frontier_figures(step: Step) -> dict[str, Any]:
    path = step.out / "frontier" / "wikitext2-gpu-point" / "metrics.json"
    if not path.is_file():
        return {"note": "the benchmark wrote no metrics.json"}
    keys = (
        "model",
        "status",
        "params",
        "train_steps",
        "train_tokens",
        "train_flops",
        "best_val_bpb",
        "test_bpb",
        "train_tokens_per_sec",
        "mfu",
        "train_peak_memory_mb",
    )
    records = json.loads(path.read_text())["records"]
    _, predicted = predictions()
    family = {"bdh": "bdh", "gpt2-scratch": "gpt2", "llama-tiny": "llama"}
    rows = []
    for r in records:
        row = {k: r.get(k) for k in keys}
        row["predicted_val_bpb"] = predicted.get(family.get(r.get("model"), ""), {})
        rows.append(row)
    return {"records": rows}


STEPS: dict[str, Callable[[Step], None]] = {
    "info": info,
    "reference": reference,
    "equality": equality,
    **{f"speed-{v}": speed for v in SPEED_VARIANTS},
    "generation": generation,
    "frontier": frontier,
}
# What a step stopped at its limit (or failed) still left: read by the parent afterwards.
SALVAGE: dict[str, Callable[[Step], dict]] = {
    "reference": reference_figures,
    "frontier": frontier_figures,
}
