"""The precision a machine runs: a bf16 request on a CPU without bf16 arithmetic runs in fp32,
said in one line, and the memory estimate counts the precision actually run."""

import pytest

from bdh_pl.training import memory, trainer_options
from bdh_pl.training.trainer_options import FORCE_BF16_ENV, cpu_flags, cpu_precision

from helpers import SMOKE, digit_text

AVX2 = frozenset({"fpu", "sse2", "avx", "avx2", "fma"})


@pytest.mark.parametrize("asked", ["bf16-mixed", "bf16-true", "bf16"])
def test_bf16_on_a_cpu_without_bf16_arithmetic_runs_in_fp32(asked):
    precision, line = cpu_precision(asked, on_cpu=True, flags=AVX2)
    assert precision == "32-true"
    assert line.startswith(f"precision: {asked} runs as 32-true on this CPU")
    assert "\n" not in line and FORCE_BF16_ENV in line


@pytest.mark.parametrize(
    ("asked", "on_cpu", "flags", "force"),
    [
        ("bf16-mixed", True, AVX2 | {"avx512f", "avx512_bf16"}, False),  # AVX512-BF16
        ("bf16-mixed", True, AVX2 | {"amx_tile", "amx_bf16"}, False),  # AMX
        ("bf16-mixed", True, frozenset({"fp", "asimd", "bf16"}), False),  # Arm BF16
        ("bf16-mixed", False, AVX2, False),  # a GPU run
        ("bf16-mixed", True, None, False),  # flags unreadable: cannot tell, keep the request
        ("bf16-mixed", True, AVX2, True),  # forced
        ("32-true", True, AVX2, False),
        ("16-mixed", True, AVX2, False),
    ],
)
def test_the_request_is_kept_where_bf16_runs_or_is_not_asked(asked, on_cpu, flags, force):
    assert cpu_precision(asked, on_cpu, flags, force) == (asked, None)


def test_cpu_flags_read_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\nprocessor\t: 1\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert cpu_flags(str(x86)) == {"fpu", "sse2", "avx2", "avx512_bf16"}
    assert cpu_flags(str(arm)) == {"fp", "asimd", "bf16", "i8mm"}
    assert cpu_flags(str(tmp_path / "missing")) is None


def test_a_fit_says_the_fallback_once_and_estimates_memory_in_fp32(tmp_path, run_cli, monkeypatch):
    """On a CPU whose flags show no bf16 (faked, so the test is the same on any CPU)."""
    monkeypatch.setattr(trainer_options, "cpu_flags", lambda: AVX2)
    monkeypatch.delenv(FORCE_BF16_ENV, raising=False)
    estimated = []
    step_memory = memory.step_memory

    def recording(model, block_size, precision, device, training=True):
        estimated.append(precision)
        return step_memory(model, block_size, precision, device, training)

    monkeypatch.setattr(memory, "step_memory", recording)
    text = tmp_path / "text.txt"
    text.write_bytes(digit_text(2000))
    code, err = run_cli([
        "fit", *SMOKE, "--data", "bdh_pl.data.TextFile", "--data.init_args.path", str(text),
        *("--data.init_args.block_size", "16", "--data.init_args.batch_size", "2"),
        *("--trainer.precision", "bf16-mixed", "--trainer.max_steps", "1"),
        *("--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0"),
        *("--trainer.enable_progress_bar", "false"),
        *("--trainer.default_root_dir", str(tmp_path / "runs")),
    ])  # fmt: skip
    assert code == 0, err[-2000:]
    lines = [line for line in err.splitlines() if "runs as 32-true" in line]
    assert len(lines) == 1 and lines[0].startswith("precision: bf16-mixed runs as 32-true")
    assert "bfloat16" not in err  # Lightning's "Using bfloat16 Automatic Mixed Precision"
    assert estimated == ["32-true"]
