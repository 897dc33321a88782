"""What several tools share: the text a checkpoint was trained on, the --device option."""

from __future__ import annotations

import torch

from bdh_pl.errors import UserError
from bdh_pl.training.loading import LoadedModel


def checkpoint_data(
    loaded: LoadedModel, ckpt_path: str, text: str | None = None, data_dir: str | None = None
):
    """The DataModule a checkpoint was trained on (its class and arguments), or the file
    `text` as the test split with the checkpoint's tokenizer; and where the text comes from."""
    import bdh_pl.data

    if text:
        return bdh_pl.data.TextFile(test=text, tokenizer=loaded.tokenizer, data_dir=data_dir), text
    hparams = dict(loaded.checkpoint.get("datamodule_hyper_parameters", {}))
    class_path = hparams.pop("_class_path", "")
    module, _, name = class_path.rpartition(".")
    cls = getattr(bdh_pl.data, name, None) if module == "bdh_pl.data" else None
    if cls is None:
        raise UserError(
            f"{ckpt_path} does not name a bdh-pl dataset ({class_path or 'none'}): give the "
            "test text with --text FILE"
        )
    init = {k: v for k, v in hparams.items() if not k.startswith("_")}
    if data_dir:
        init["data_dir"] = data_dir
    return cls(**init), class_path


def check_device(name: str, option: str = "--device") -> torch.device:
    """The device `name` means, if this machine has it (cpu or cuda); else one error line
    naming `option`."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{option} {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} {name}: this machine has no CUDA GPU; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"{option} {name}: there are {torch.cuda.device_count()} CUDA devices")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"{option} {name!r}: bdh-pl's tools run on cpu or cuda")
    return device
