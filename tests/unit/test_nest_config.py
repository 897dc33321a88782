"""scripts/nest_config.py: an old run's flat config.yaml in today's layout, each field once, in
the config its class gives it (checked against the dataclasses, not the script's mapping)."""

import dataclasses
import importlib.util
from pathlib import Path

import yaml

from bdh_pl.models.bdh import BDHConfig, BDHExecution
from bdh_pl.training.training_config import TrainingConfig

REPO = Path(__file__).resolve().parents[2]
OLD = REPO / "results/wikitext2-frontier/configs/bdh-d32/flops2e12/lr8x-seed1337.yaml"


def test_a_flat_frontier_config_is_nested_field_by_field():
    spec = importlib.util.spec_from_file_location("nest_config", REPO / "scripts/nest_config.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    old = yaml.safe_load(OLD.read_text())
    flat = dict(old["model"]["init_args"])
    nested = script.nest_config(old)["model"]["init_args"]
    for group, kind in (
        ("config", BDHConfig),
        ("execution", BDHExecution),
        ("training", TrainingConfig),
    ):
        names = {f.name for f in dataclasses.fields(kind)}
        assert set(nested[group]) <= names
        assert {k: flat[k] for k in names & set(flat)} == nested[group]
    assert sum(len(nested[g]) for g in ("config", "execution", "training")) == len(flat)
    assert nested["config"]["n_embd"] == 32 and nested["training"]["learning_rate"] == 0.016
