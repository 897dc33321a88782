"""benchmarks/gpu.py, the one-command GPU run, known to work before a GPU exists: its dry run
on the CPU (every step, tiny sizes), the official code's steps skipped without it, a step that
hangs stopped at its limit while the rest go on; the peak table; the frontier point's config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu  # noqa: E402
import gpu_steps  # noqa: E402

# An official-like bdh.py for the tests (the real one is never committed here): the official
# interface, forward(idx, targets) -> (logits, loss), over this project's reference model.
STAND_IN = """
from bdh_pl.models.bdh import BDH as _BDH, BDHConfig

class BDH(_BDH):
    def forward(self, idx, targets=None):
        return super().forward(idx), None
"""


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 1979e12 / 2),  # data sheets give "with sparsity": halved
        ("NVIDIA H100 PCIe", 1513e12 / 2),
        ("NVIDIA H100 NVL", 1671e12 / 2),
        ("NVIDIA H200", 1979e12 / 2),
        ("NVIDIA H200 NVL", 1671e12 / 2),
        ("NVIDIA A100-SXM4-80GB", 624e12 / 2),
        ("NVIDIA A100 80GB PCIe", 624e12 / 2),
        ("NVIDIA A100-PCIE-40GB", 624e12 / 2),
    ],
)
def test_peak_bf16_by_device_name(name, peak):
    found = gpu_steps.peak_bf16(name)
    assert found["flops"] == pytest.approx(peak, rel=1e-3) and found["reason"] is None


@pytest.mark.parametrize(
    ("name", "why"), [("NVIDIA H100", "SXM"), ("Tesla T4", "Tesla T4"), ("cpu", "CPU")]
)
def test_unknown_peak_is_null_with_a_reason(name, why):
    found = gpu_steps.peak_bf16(name)
    assert found["flops"] is None and why in found["reason"]


def test_official_path_given_but_missing_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        gpu.official_path(str(tmp_path / "nowhere"))
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no official bdh.py at") and "\n" not in err


@pytest.mark.parametrize(
    ("log", "note"),
    [
        ("", None),
        ("Traceback\n  ...\nRuntimeError: boom\n", "RuntimeError: boom"),
        ("error: model: bad\nTraceback\nRuntimeError: fit exited with 2\n", "error: model: bad"),
    ],
)
def test_a_failed_steps_note_is_its_error_line(tmp_path, log, note):
    (tmp_path / "step.log").write_text(log)
    assert gpu.last_line(tmp_path / "step.log") == note


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_frontier_point_is_a_valid_benchmark(tmp_path, dry_run):
    """The frontier step's config parses as a benchmark (the GPU one at the budget the CPU
    frontier's fits were extrapolated to)."""
    from bdh_pl.bench.spec import load_spec

    step = gpu_steps.Step("frontier", tmp_path, dry_run=dry_run)
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(gpu_steps.frontier_spec(step)))
    spec = load_spec(path)
    assert [m.name for m in spec.models] == ["bdh", "gpt2-scratch", "llama-tiny"]
    budget = spec.budget.steps if dry_run else spec.budget.flops
    assert budget == (2 if dry_run else gpu_steps.REFERENCE_RUN_FLOPS)


def test_the_predictions_are_the_frontier_fits_at_the_reference_run():
    flops, predicted = gpu_steps.predictions()
    fits = json.loads((REPO / "results/wikitext2-frontier/frontier.json").read_text())
    for name, family in fits["families"].items():
        fit = family.get("fit")
        if not fit:
            assert name not in predicted
            continue
        by_hand = fit["E"] + fit["A"] / flops ** fit["alpha"]
        assert predicted[name]["val_bpb"] == pytest.approx(by_hand)


def test_official_steps_run_the_official_interface(tmp_path):
    """Speed and generation load the official code from its path and read its (logits, loss)."""
    official = tmp_path / "bdh.py"
    official.write_text(STAND_IN)
    tf32 = torch.backends.cuda.matmul.allow_tf32  # the speed step sets it, as the official code
    try:
        for name in ("speed-official-eager", "generation"):
            step = gpu_steps.Step(name, tmp_path, dry_run=True, official=official)
            gpu_steps.STEPS[name](step)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    speed = json.loads((tmp_path / "speed-official-eager.json").read_text())
    assert speed["tokens_per_s"] > 0 and speed["losses_finite"]
    rows = json.loads((tmp_path / "generation.json").read_text())["rows"]
    assert rows[0]["official_rerun"]["tokens_per_s"] > 0


def test_speed_halves_the_batch_until_it_fits(tmp_path, monkeypatch):
    """Out of memory at batch 2 (the dry run's): recorded, and measured at batch 1."""
    measure = gpu_steps.train_steps

    def tight(step, batch):
        if batch > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return measure(step, batch)

    monkeypatch.setattr(gpu_steps, "train_steps", tight)
    step = gpu_steps.Step("speed-ours-eager", tmp_path, dry_run=True)
    gpu_steps.speed(step)
    speed = json.loads((tmp_path / "speed-ours-eager.json").read_text())
    assert speed["out_of_memory_at"] == [2] and speed["batch"] == 1
    assert speed["tokens_per_s"] == pytest.approx(16 / speed["step_s_median"])


@pytest.mark.slow
def test_dry_run_writes_every_step_and_survives_a_stalled_one(data_dir, tmp_path):
    """The whole script on the CPU, without the official code and with one step that hangs
    (torch.compile's, stopped at a 3 s limit): every other step writes its results."""
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "BDH_OFFICIAL"}
    env.update(BDH_GPU_STALL="speed-ours-torch-compile", BDH_PL_CACHE_DIR=str(tmp_path / "c"))
    argv = ["--dry-run", "--out", str(out), "--skip", "frontier"]
    argv += ["--limit", "speed-ours-torch-compile=3"]
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu.py"), *argv],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "speed-official-eager: skipped (official code not found" in result.stdout
    results = json.loads((out / "results.json").read_text())
    status = {s["name"]: s for s in results["steps"]}
    skipped = {"speed-official-eager", "speed-official-compiled"}
    assert {n for n, s in status.items() if s["status"] == "skipped"} == skipped
    stalled = status["speed-ours-torch-compile"]
    assert stalled["status"] == "timeout" and stalled["wall_s"] < 3 + gpu.KILL_GRACE_S + 2
    ran = [n for n in status if n not in skipped | {"speed-ours-torch-compile"}]
    assert "speed-ours-reference-eager" in ran  # the step after the stalled one
    assert all(status[n]["status"] == "ok" for n in ran), [status[n] for n in ran]
    assert not (out / "frontier.json").exists() and "frontier" not in status

    reference = json.loads((out / "reference.json").read_text())
    assert reference["val_loss_at_anchor"] is not None and reference["best_step"] is not None
    assert {"best", "last"} <= set(reference["checkpoints"])
    assert all(Path(c["path"]).is_file() for c in reference["checkpoints"].values())
    assert reference["anchors"]["500"]["reference"] == 1.53
    equality = json.loads((out / "equality.json").read_text())
    assert equality["all_passed"] and len(equality["rows"]) == 2 * len(gpu_steps.EQ_VARIANTS)
    for name in ("speed-ours-eager", "speed-ours-compiled", "speed-ours-reference-eager"):
        speed = json.loads((out / f"{name}.json").read_text())
        assert speed["tokens_per_s"] > 0 and speed["losses_finite"]
        assert speed["mfu"] is None and "CPU" in speed["mfu_null_reason"]
    info = json.loads((out / "info.json").read_text())
    assert info["flops_per_token"]["forward_backward"] > info["flops_per_token"]["forward"] > 0
    assert json.loads((out / "generation.json").read_text())["rows"]

    summary = (out / "summary.md").read_text()
    for heading in ("## Steps", "## The reference run", "## Training step speed", "## Generation"):
        assert heading in summary
    assert "| speed-ours-torch-compile | timeout |" in summary
    assert all((out / s["log"]).is_file() for s in results["steps"] if s["status"] != "skipped")
