from bdh_pl.data.datamodule import TextDataModule, TextFile, TinyShakespeare, WikiText2

__all__ = ["TextDataModule", "TextFile", "TinyShakespeare", "WikiText2"]
