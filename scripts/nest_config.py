"""A run's config.yaml from before the configs were passed whole, in today's layout.

    python scripts/nest_config.py OLD.yaml NEW.yaml

Old files hold the model's init_args flat (`n_embd: 32`, `learning_rate: 0.016`); today each
field sits in its config (`config: {n_embd: 32}`, `training: {learning_rate: 0.016}`). The
mapping is loading.py's, the one checkpoints go through.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from bdh_pl.training.loading import model_class, nest_flat_hparams


def nest_config(old: dict) -> dict:
    model = old["model"]
    model["init_args"] = nest_flat_hparams(model_class(model["class_path"]), model["init_args"])
    return old


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/nest_config.py OLD.yaml NEW.yaml")
    old = yaml.safe_load(Path(sys.argv[1]).read_text(encoding="utf-8"))
    Path(sys.argv[2]).write_text(yaml.safe_dump(nest_config(old), sort_keys=False), "utf-8")
