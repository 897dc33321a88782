"""results.json and summary.md of benchmarks/gpu.py, rewritten after every step from the
run's step list and each step's own {step}.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bdh_pl.fileio import atomic_write_text, write_json  # noqa: E402


def write_results(out: Path, results: dict) -> None:
    write_json(out / "results.json", results)
    atomic_write_text(out / "summary.md", summary(out, results))


def step_data(out: Path, name: str) -> dict[str, Any]:
    """What a step wrote, with what the parent salvaged after a stop folded in."""
    path = out / f"{name}.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {**data, **(data.get("salvaged") or {})}


def num(value: Any, fmt: str = ",.0f") -> str:
    return "" if value is None else format(value, fmt)


def summary(out: Path, results: dict) -> str:
    steps = {s["name"]: s for s in results["steps"]}
    official = results["official"] or "not at hand: its steps are skipped"
    lines = [
        f"# GPU run: {results['device']}",
        "",
        *(
            [
                "**Dry run**: tiny sizes on the CPU; these numbers only show that the script works.",
                "",
            ]
            if results["dry_run"]
            else []
        ),
        f"`{results['command']}`, commit {results['git_commit']}"
        f"{' (with uncommitted changes)' if results['git_dirty'] else ''}, {results['created']}; "
        f"budget {results['budget_s']:.0f} s, steps in {results['isolation']}ed processes; "
        f"official code: {official}.",
        "",
        "## Steps",
        "",
        "| step | status | limit s | wall s | CPU s | note |",
        "|---|---|---:|---:|---:|---|",
    ]
    for s in results["steps"]:
        note = s.get("error") or s.get("reason") or ""
        lines.append(
            f"| {s['name']} | {s['status']} | {s['limit_s']:.0f} | "
            f"{num(s.get('wall_s'), '.1f')} | {num(s.get('cpu_s'), '.1f')} | "
            f"{note.replace('|', '/')} |"
        )
    info = step_data(out, "info")
    lines += ["", *device_lines(info)]
    for section in (reference_lines, speed_lines, generation_lines, equality_lines, frontier_lines):
        if shown := section(out, steps, info):
            lines += ["", *shown]
    return "\n".join(lines).rstrip() + "\n"


def device_lines(info: dict) -> list[str]:
    if not info:
        return ["## Device", "", "(the info step wrote nothing)"]
    peak = info["peak_bf16"]
    peak_text = (
        f"{peak['flops'] / 1e12:.1f} TFLOP/s ({peak['matched']})"
        if peak["flops"]
        else f"unknown ({peak['reason']}): MFU is left empty"
    )
    lines = [
        "## Device",
        "",
        f"{info['device']}, torch {info['torch']}, CUDA {info['cuda']}; "
        f"dense bf16 peak {peak_text}.",
    ]
    if "matmul" in info:
        m = info["matmul"]
        lines.append(
            f"A {m['n']}^3 {m['dtype'].removeprefix('torch.')} matmul reached "
            f"{m['tflops']:.1f} TFLOP/s."
        )
    if "flops_per_token" in info:
        f = info["flops_per_token"]
        lines.append(
            f"BDH {info['model'] or '25.3M (BDHConfig defaults)'} at block "
            f"{info['block']}: {f['forward'] / 1e6:,.1f}M FLOPs per token forward, "
            f"{f['forward_backward'] / 1e6:,.1f}M forward + backward (counted)."
        )
    return lines


def opening(out: Path, steps: dict, name: str, title: str) -> tuple[dict, list[str]]:
    """A step's data and its section's first lines: the title, and the status unless ok."""
    s = steps[name]
    note = (
        []
        if s["status"] == "ok"
        else [f"*{name}: {s['status']}* ({s.get('error') or s.get('reason')}).", ""]
    )
    return step_data(out, name), [title, "", *note]


def reference_lines(out: Path, steps: dict, info: dict) -> list[str]:
    if "reference" not in steps:
        return []
    r, lines = opening(out, steps, "reference", "## The reference run")
    if "val_curve" not in r:
        return lines + ["No validation recorded."]
    anchor = r["anchors"]["500"]
    lines += [
        f"Validation loss at step {r['anchor_step']}: {num(r['val_loss_at_anchor'], '.4f')} "
        f"(the reference A100 run: {anchor['reference']} at step 500).",
        f"Best: step {r['best_step']}, val loss {num(r['best_val_loss'], '.4f')} "
        f"({num(r['best_val_bpb'], '.3f')} bpb); last validation: step {r['last_step']}, "
        f"{num(r['last_val_loss'], '.4f')}; {r['train_steps']} training steps "
        f"(the reference run's step 3000: {r['anchors']['3000']['reference']}, "
        f"ours {num(r['anchors']['3000']['ours'], '.4f') or 'not reached'}).",
        f"Training {num(r['train_tokens_per_sec'])} tokens/s, MFU {num(r['mfu'], '.1%') or '-'}, "
        f"peak memory {num(r['train_peak_memory_mb'])} MiB.",
        "Checkpoints: "
        + ", ".join(f"{k} ({v['mib']:.0f} MiB, {v['path']})" for k, v in r["checkpoints"].items())
        + ".",
    ]
    if r.get("command"):
        lines.append(f"`{r['command']}`")
    return lines


def speed_lines(out: Path, steps: dict, info: dict) -> list[str]:
    names = [n for n in steps if n.startswith("speed-")]
    if not names:
        return []
    first = next((step_data(out, n) for n in names if step_data(out, n)), {})
    lines = [
        f"## Training step speed (block {first.get('block')}, bf16 autocast, AdamW)",
        "",
        "| variant | status | batch | tokens/s | step ms | MFU | peak memory MiB | first step s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        d = step_data(out, n)
        lines.append(
            f"| {n.removeprefix('speed-')} | {steps[n]['status']} | {num(d.get('batch'))}"
            f"{oom(d)} | {num(d.get('tokens_per_s'))} | "
            f"{num(d.get('step_s_median') and d['step_s_median'] * 1e3, '.1f')} | "
            f"{num(d.get('mfu'), '.1%')} | {num(d.get('peak_memory_mib'))} | "
            f"{num(d.get('first_step_s'), '.1f')} |"
        )
    lines += [
        "",
        "MFU = counted training FLOPs per token x tokens/s / the device's dense bf16 "
        "peak (docs/gpu.md)."
        + (f" Not given: {first['mfu_null_reason']}" if first.get("mfu_null_reason") else ""),
    ]
    return lines


def oom(data: dict) -> str:
    tried = data.get("out_of_memory_at")
    return f" (out of memory at {', '.join(map(str, tried))})" if tried else ""


def generation_lines(out: Path, steps: dict, info: dict) -> list[str]:
    if "generation" not in steps:
        return []
    g, lines = opening(
        out, steps, "generation", "## Generation (batch 1, prompt 16, fp32, top-k 3)"
    )
    if not g.get("rows"):
        return lines
    lines += [
        "| new tokens | ours recurrent tok/s | reference re-run tok/s | official re-run tok/s "
        "| peak memory MiB (ours) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in g["rows"]:
        rerun = r.get("reference_rerun", {}).get("tokens_per_s")
        off = r.get("official_rerun", {}).get("tokens_per_s")
        lines.append(
            f"| {r['new_tokens']} | {num(r['ours_recurrent']['tokens_per_s'], ',.1f')} | "
            f"{num(rerun, ',.1f')} | {num(off, ',.1f')} | "
            f"{num(r['ours_recurrent']['peak_memory_mib'])} |"
        )
    return lines


def equality_lines(out: Path, steps: dict, info: dict) -> list[str]:
    if "equality" not in steps:
        return []
    e, lines = opening(out, steps, "equality", "## Fused paths against the reference (model.py)")
    if not e.get("rows"):
        return lines
    tol = e["tolerance"]
    lines += [
        f"Batch {e['batch']} x block {e['block']}, chunk {e['chunk']}; an error is |got - want| / "
        "|want| (norms; per parameter for gradients, the worst shown). Tolerances: fp32 "
        f"(TF32 off) logits {tol['fp32']['logits']:g}, gradients {tol['fp32']['grads']:g} against "
        f"the reference; bf16: the error against fp64 at most {tol['bf16']['factor']:g}x the "
        f"reference's own bf16 error against fp64, plus {tol['bf16']['slack']:g}.",
        "",
        "| variant | precision | logits vs ref | grads vs ref (worst) | logits vs fp64 | "
        "grads vs fp64 | ref vs fp64 (logits, grads) | passed |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in e["rows"]:
        ref64 = (
            f"{r['reference_logits_err_vs_fp64']:.1e}, {r['reference_grads_err_vs_fp64']:.1e}"
            if "reference_logits_err_vs_fp64" in r
            else ""
        )
        lines.append(
            f"| {r['variant']} | {r['precision']} | {r['logits_err_vs_reference']:.1e} | "
            f"{r['grads_err_vs_reference']:.1e} ({r['worst_param']}) | "
            f"{num(r.get('logits_err_vs_fp64'), '.1e')} | {num(r.get('grads_err_vs_fp64'), '.1e')} | "
            f"{ref64} | {r['passed']} |"
        )
    return lines


def frontier_lines(out: Path, steps: dict, info: dict) -> list[str]:
    if "frontier" not in steps:
        return []
    f, lines = opening(out, steps, "frontier", "## A first GPU frontier point (WikiText-2)")
    if not f.get("records"):
        return lines
    lines += [
        f"Budget {f.get('budget')}; predicted: the CPU frontier's fits "
        "(results/wikitext2-frontier/frontier.json, at block 128).",
        "",
        "| model | status | params | steps | train FLOPs | best val bpb | predicted (band) "
        "| test bpb |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in f["records"]:
        p = r["predicted_val_bpb"]
        pred = f"{p['val_bpb']:.3f} ({p['band'][0]:.3f}-{p['band'][1]:.3f})" if p else ""
        lines.append(
            f"| {r['model']} | {r['status']} | {num(r['params'])} | {num(r['train_steps'])} "
            f"| {num(r['train_flops'], '.2e')} | {num(r['best_val_bpb'], '.3f')} | {pred} "
            f"| {num(r['test_bpb'], '.3f')} |"
        )
    return lines
