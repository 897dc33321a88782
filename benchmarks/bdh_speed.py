"""Speed of BDH's fast paths (models/bdh/kernels.py) against its plain reference (model.py).

    python benchmarks/bdh_speed.py [--quick] [--rounds N] [--no-rerun] [--out results/bdh-speed]

Training: tokens/s of a full step (forward, cross-entropy, backward, AdamW step), variants timed
interleaved in one process (round robin, median per variant), so that load from other processes
hits all of them alike. Peak RSS of a training step: one subprocess per variant, peak reset
after the warm-up steps (/proc/self/clear_refs), so compile-time memory is not counted.
Generation: tokens/s of the recurrent generate() against re-running the full forward per token.

Writes speed.json and summary.md to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bdh_pl.models.bdh import BDH, BDHConfig, BDHExecution  # noqa: E402
from bdh_pl.models.bdh.linear_attention import (  # noqa: E402
    attention_chunked,
    attention_quadratic,
    chunked_from,
)

CONFIGS = {
    # name: (model config, batch size, block size)
    "seed-25M": (dict(), 1, 256),
    "small-1.6M": (dict(n_layer=4, n_embd=128, n_head=4, mlp_internal_dim_multiplier=32), 8, 256),
}
VARIANTS = {
    # name: (implementation, bf16 autocast, torch.compile of the whole model, fused kernels)
    "plain fp32": ("plain", False, False, False),
    "plain bf16": ("plain", True, False, False),
    "plain bf16+compile": ("plain", True, True, False),
    "ours fp32": ("ours", False, False, False),
    "ours fp32+kernels": ("ours", False, False, True),
    "ours bf16": ("ours", True, False, False),
    "ours bf16+kernels": ("ours", True, False, True),
}


def rerun_generate(model: BDH, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The official generate: the whole sequence through the model again per new token."""
    with torch.no_grad():
        for _ in range(max_new_tokens):
            probs = F.softmax(model(idx)[:, -1], dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
    return idx


def build(config_name: str, variant: str):
    """A step() closure for one (config, variant), and the model."""
    kw, batch, block = CONFIGS[config_name]
    impl, bf16, whole_compile, kernels = VARIANTS[variant]
    torch.manual_seed(0)
    # plain: the reference forward of models/bdh/model.py, the official math in eager PyTorch
    execution = BDHExecution(fused=impl == "ours", compile_elementwise=kernels)
    model = execution.apply(BDH(BDHConfig(**kw)))
    model.train()
    net = torch.compile(model) if whole_compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    idx = torch.randint(0, 256, (batch, block + 1))

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(idx[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), idx[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step, batch * block


def bench_train(config_name: str, variants: list[str], rounds: int) -> dict:
    steps, warmup = {}, {}
    for v in variants:
        step, tokens = build(config_name, v)
        t = time.perf_counter()
        step()  # compile happens here
        warmup[v] = time.perf_counter() - t
        step()
        steps[v] = step
        print(f"  {config_name} {v}: first step {warmup[v]:.1f} s", flush=True)
    times = {v: [] for v in variants}
    for _ in range(rounds):
        for v, step in steps.items():
            t = time.perf_counter()
            step()
            times[v].append(time.perf_counter() - t)
    return {
        v: {
            "tokens_per_s": tokens / statistics.median(ts),
            "step_s_median": statistics.median(ts),
            "step_s_all": ts,
            "first_step_s": warmup[v],
        }
        for v, ts in times.items()
    }


def _vm_hwm_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmHWM")) / 1024


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM; fork + exec would otherwise inherit the parent's peak


def peak_rss_child(config_name: str, variant: str) -> None:
    """Run in a subprocess: print the peak RSS (MiB) of training steps after a warm-up."""
    _reset_peak_rss()
    step, _ = build(config_name, variant)
    step()
    step()
    warmup = _vm_hwm_mib()  # includes model build and compilation
    _reset_peak_rss()
    for _ in range(2):
        step()
    print(json.dumps({"step_peak_rss_mib": _vm_hwm_mib(), "warmup_peak_rss_mib": warmup}))


def bench_memory(config_name: str, variants: list[str]) -> dict:
    out = {}
    for v in variants:
        threads = ["--threads", str(torch.get_num_threads())]
        cmd = [sys.executable, __file__, "--rss-child", config_name, v, *threads]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out[v] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"  {config_name} {v}: {out[v]}", flush=True)
    return out


def bench_generate(config_name: str, lengths: list[int], rerun_max: int) -> dict:
    kw, _, _ = CONFIGS[config_name]
    torch.manual_seed(0)
    ours = BDHExecution().apply(BDH(BDHConfig(**kw))).eval()
    plain = BDH(BDHConfig(**kw)).eval()  # the reference
    plain.load_state_dict(ours.state_dict(), strict=True)
    prompt = torch.randint(0, 256, (1, 16))
    out = {}
    for n in lengths:
        row = {}
        torch.manual_seed(1)
        t = time.perf_counter()
        a = ours.generate(prompt, n)
        row["recurrent_tokens_per_s"] = n / (time.perf_counter() - t)
        if n <= rerun_max:
            torch.manual_seed(1)
            t = time.perf_counter()
            b = rerun_generate(plain, prompt, n)
            row["rerun_tokens_per_s"] = n / (time.perf_counter() - t)
            row["speedup"] = row["recurrent_tokens_per_s"] / row["rerun_tokens_per_s"]
            # same weights, same seed: the samples agree until fp rounding flips one
            row["same_tokens_prefix"] = int((a != b).int().cumsum(1).eq(0).sum())
        out[str(n)] = row
        print(f"  generate {config_name} {n}: {row}", flush=True)
    return out


def bench_attention(lengths: list[int], rounds: int = 2) -> dict:
    """fwd+bwd ms of the quadratic and the chunked attention (batch 1), and attention="auto"'s
    choice: the measurements behind linear_attention.chunked_from."""
    out = {}
    for name, (kw, _, _) in CONFIGS.items():
        cfg = BDHConfig(**kw)
        nh, N, D, C = cfg.n_head, cfg.n_neurons, cfg.n_embd, BDHExecution.chunk_size
        for dtype in (torch.float32, torch.bfloat16):
            auto_from = chunked_from(N, D, C, dtype)
            for T in lengths:
                q = torch.randn(nh, 1, T, N).relu().to(dtype)
                v = torch.randn(1, T, D)
                fns = {
                    "quadratic": attention_quadratic,
                    "chunked": lambda q, v, C=C: attention_chunked(q, v, C),
                }
                times = {k: [] for k in fns}
                for _ in range(rounds):
                    for k, f in fns.items():
                        qq, vv = q.clone().requires_grad_(), v.clone().requires_grad_()
                        t = time.perf_counter()
                        f(qq, vv).sum().backward()
                        times[k].append(time.perf_counter() - t)
                row = {k: 1e3 * min(ts) for k, ts in times.items()}
                row["auto"] = "chunked" if auto_from <= T else "quadratic"
                out[f"{name} {str(dtype).removeprefix('torch.')} T={T}"] = row
                print(f"  attention {name} {dtype} T={T}: {row}", flush=True)
    return out


def _targets(results: dict) -> list[str]:
    """The issue's targets against this run's numbers."""
    lines = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]

    def row(what: str, value: float, goal: float, unit: str = "x") -> None:
        lines.append(f"| {what} (>= {goal}{unit}) | {value:.2f}{unit} | {value >= goal} |")

    for name, res in results["train"].items():
        tps = {v: r["tokens_per_s"] for v, r in res.items()}
        ours = max((v for v in tps if v.startswith("ours")), key=tps.get)
        best_plain = max(tps["plain bf16"], tps["plain bf16+compile"])
        row(f"{name} train, {ours} / plain fp32", tps[ours] / tps["plain fp32"], 2.5)
        row(f"{name} train, {ours} / best plain bf16(+compile)", tps[ours] / best_plain, 1.3)
        mem = results["memory"].get(name, {})
        for prec in ("fp32", "bf16"):
            plain = mem.get(f"plain {prec}", {}).get("step_peak_rss_mib")
            worst = max(
                (r["step_peak_rss_mib"] for v, r in mem.items() if v.startswith(f"ours {prec}")),
                default=None,
            )
            if plain and worst:
                lines.append(
                    f"| {name} peak RSS, ours {prec} (all switches) <= plain {prec} eager | "
                    f"{worst:.0f} vs {plain:.0f} MiB | {worst <= plain} |"
                )
    for name, res in results["generate"].items():
        if "speedup" in res.get("1024", {}):
            row(
                f"{name} generation at 1024 new tokens, recurrent / re-run",
                res["1024"]["speedup"],
                40,
            )
    return [*lines, ""]


def _load(avg) -> str:
    return ", ".join(f"{x:.2f}" for x in avg)


def summary(results: dict) -> str:
    lines = [
        "# BDH speed",
        "",
        f"{results['machine']['cpu']}, {results['machine']['threads']} threads, torch "
        f"{results['machine']['torch']}; load average (1, 5, 15 min) before / after: "
        f"{_load(results['load_before'])} / {_load(results['load_after'])}.",
        "Training step = forward + cross-entropy + backward + AdamW step; variants interleaved "
        "in one process (median of the rounds). 'kernels' = BDHExecution(compile_elementwise=True); "
        f"'first step s' with a {results.get('inductor_cache', 'warm')} inductor cache.",
        "",
    ]
    lines += _targets(results)
    for name, res in results["train"].items():
        _, batch, block = CONFIGS[name]
        mem = results["memory"].get(name, {})
        best_plain = max(res[k]["tokens_per_s"] for k in ("plain bf16", "plain bf16+compile"))
        fp32 = res["plain fp32"]["tokens_per_s"]
        lines += [
            f"## Training, {name} (batch {batch}, block {block})",
            "",
            "| variant | tokens/s | vs plain fp32 | vs best plain bf16 | first step s "
            "| step peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for v, r in res.items():
            rss = mem.get(v, {}).get("step_peak_rss_mib")
            lines.append(
                f"| {v} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / fp32:.2f}x | "
                f"{r['tokens_per_s'] / best_plain:.2f}x | {r['first_step_s']:.1f} | "
                f"{'' if rss is None else f'{rss:.0f}'} |"
            )
        lines.append("")
    for name, res in results["generate"].items():
        lines += [
            f"## Generation, {name} (batch 1, prompt 16, fp32, eval)",
            "",
            "| new tokens | recurrent tok/s | full re-run tok/s | speedup |",
            "|---:|---:|---:|---:|",
        ]
        for n, r in res.items():
            rr = r.get("rerun_tokens_per_s")
            sp = r.get("speedup")
            lines.append(
                f"| {n} | {r['recurrent_tokens_per_s']:.1f} | "
                f"{'' if rr is None else f'{rr:.2f}'} | {'' if sp is None else f'{sp:.0f}x'} |"
            )
        lines.append("")
    if results.get("attention"):
        lines += [
            f"## Attention fwd+bwd, batch 1, chunk {BDHExecution.chunk_size} (ms, best of rounds)",
            "",
            "| case | quadratic | chunked | auto picks |",
            "|---|---:|---:|---|",
        ]
        for case, r in results["attention"].items():
            lines.append(f"| {case} | {r['quadratic']:.0f} | {r['chunked']:.0f} | {r['auto']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and shorter generation")
    ap.add_argument("--rounds", type=int, help="training rounds (default 5, --quick 2)")
    ap.add_argument(
        "--no-rerun", action="store_true", help="time the recurrent generation only (a busy CPU)"
    )
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results/bdh-speed"))
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    ap.add_argument("--warm-cache", action="store_true", help="reuse the inductor cache")
    ap.add_argument("--rss-child", nargs=2, metavar=("CONFIG", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_child:
        peak_rss_child(*args.rss_child)
        return
    cache = None
    if not args.warm_cache:  # a fresh inductor cache: "first step s" includes the full compile
        cache = tempfile.TemporaryDirectory(prefix="bdh-speed-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name
    rounds = args.rounds or (2 if args.quick else 5)
    results = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "load_before": os.getloadavg(),
        "quick": args.quick,
        "rounds": rounds,
        "inductor_cache": "warm" if args.warm_cache else "cold",
        "train": {},
        "memory": {},
        "generate": {},
    }
    try:
        cpu = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
        results["machine"]["cpu"] = cpu[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    for name in CONFIGS:
        print(f"training {name}", flush=True)
        results["train"][name] = bench_train(name, list(VARIANTS), rounds)
        fp32 = results["train"][name]["plain fp32"]["tokens_per_s"]
        for v, r in results["train"][name].items():
            print(
                f"  {name} {v}: {r['tokens_per_s']:.1f} tokens/s, {r['tokens_per_s'] / fp32:.2f}x"
            )
        if not args.no_memory:
            results["memory"][name] = bench_memory(name, list(VARIANTS))
    lengths = [256] if args.quick else [256, 1024]
    rerun = 0 if args.no_rerun else 1
    results["generate"]["small-1.6M"] = bench_generate("small-1.6M", lengths, 1024 * rerun)
    results["generate"]["seed-25M"] = bench_generate("seed-25M", lengths, 256 * rerun)
    if not args.quick:
        results["attention"] = bench_attention([512, 1024, 2048, 4096])
    results["load_after"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(results, indent=2))
    (out / "summary.md").write_text(summary(results))
    print(summary(results))
    if cache is not None:
        cache.cleanup()


if __name__ == "__main__":
    main()
