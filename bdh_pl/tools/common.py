"""What several tools share: the text a checkpoint was trained on (their options: options.py)."""

from __future__ import annotations

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
