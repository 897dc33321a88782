"""What a person sees in TensorBoard after a tiny run, read back from its event file: the
HParams table leads with the model, its size, recipe and data, without internal keys, typed
(numbers, booleans, no "None"); the scalars hold train/bpb and the compute axis train/flops,
and no constant, duplicate or internal counter."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
LEAD = ["model", "params", "n_layer", "n_embd", "n_head", "learning_rate", "dropout",
        "weight_decay", "dataset", "tokenizer", "block_size", "batch_size", "seed"]  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 10-step BDH fit on a small text file, in this process."""
    import random

    from bdh_pl.cli import main

    tmp = tmp_path_factory.mktemp("tb")
    text = tmp / "text.txt"
    rng = random.Random(0)
    text.write_bytes(bytes(rng.choice(b"abcdefgh \n") for _ in range(6000)))
    main(
        ["fit", "--config", f"{CONFIGS}/shakespeare.yaml", "--config", f"{CONFIGS}/cpu.yaml",
         "--config", f"{CONFIGS}/cpu/bdh.yaml", "--data", "bdh_pl.data.TextFile",
         "--data.init_args.path", str(text), "--trainer.max_steps", "10",
         "--trainer.val_check_interval", "5", "--trainer.log_every_n_steps", "1",
         "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
         "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(tmp)]
    )  # fmt: skip
    return tmp / "version_0"


def events(run_dir) -> EventAccumulator:
    (path,) = run_dir.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams_table(acc: EventAccumulator) -> dict:
    """The HParams plugin's experiment (column order) and session start (values)."""
    plugin = acc.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/experiment"])
    start = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"])
    values = start.session_start_info.hparams
    table = {}
    for info in experiment.experiment.hparam_infos:  # in the order the dashboard shows
        value = values[info.name]
        table[info.name] = getattr(value, value.WhichOneof("kind"))
    return table


def test_the_hparams_table_leads_with_model_size_recipe_and_data(run_dir):
    table = hparams_table(events(run_dir))
    assert list(table)[: len(LEAD)] == LEAD
    assert table["model"] == "BDHLM" and table["dataset"] == "textfile"
    assert table["params"] > 0 and table["block_size"] == 64 and table["batch_size"] == 16
    assert not [k for k in table if k.startswith("_")]  # no _instantiator, no _class_path


def test_no_constant_or_internal_counter_is_a_scalar(run_dir):
    tags = events(run_dir).Tags()["scalars"]
    assert "train/loss" in tags and "val/bpb" in tags and "train/tokens_per_sec" in tags
    assert "epoch" not in tags
    counters = [
        t for t in tags if t.rsplit("/", 1)[-1] in ("batches", "samples", "lengths", "time")
    ]
    assert counters == []
    # metrics.csv keeps the counters the benchmark's wall-clock charts read
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/time" in header


def scalars(acc: EventAccumulator, tag: str) -> dict[int, float]:
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_the_hparams_table_is_typed_and_says_the_run_s_budget_compute_and_code(run_dir):
    table = hparams_table(events(run_dir))
    assert "None" not in table.values()  # an unset value is left out, not the string "None"
    assert table["fused"] is True and table["compile"] is False  # bools, not 1.0 / 0.0
    assert table["max_steps"] == 10 and table["precision"] == "32-true"
    assert table["flops_per_token"] > 0
    assert re.fullmatch(r"[0-9a-f]{40}", table["git_commit"])


def test_train_bpb_and_the_cumulative_training_flops_are_scalars(run_dir):
    acc = events(run_dir)
    loss, bpb = scalars(acc, "train/loss"), scalars(acc, "train/bpb")
    assert len(bpb) >= 9 and bpb.keys() == loss.keys()
    for step, value in bpb.items():  # one byte per token: bits per byte = nats / ln 2
        assert value == pytest.approx(loss[step] / math.log(2), rel=1e-5)
    flops, tokens = scalars(acc, "train/flops"), scalars(acc, "train/tokens")
    per_token = hparams_table(acc)["flops_per_token"]
    for step, value in flops.items():  # the project's rule: 3 x forward FLOPs x tokens
        assert value == pytest.approx(3 * per_token * tokens[step], rel=1e-6)
    assert list(flops.values()) == sorted(flops.values()) and len(set(flops.values())) > 1


def test_the_active_fraction_is_named_for_what_it_is_and_nothing_is_logged_twice(run_dir):
    tags = events(run_dir).Tags()["scalars"]
    assert "val/active_fraction_x_l0" in tags and "val/active_fraction_y" in tags
    assert not [t for t in tags if "sparsity" in t]
    assert "val/ppl" in tags and "val/byte_ppl" not in tags  # equal on byte data
