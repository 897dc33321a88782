from bdh_pl.data.datamodule import TextDataModule, TinyShakespeare, WikiText2

__all__ = ["TextDataModule", "TinyShakespeare", "WikiText2"]
