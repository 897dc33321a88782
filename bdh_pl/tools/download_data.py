"""`python -m bdh_pl download-data DIR`: a local data root from the Hugging Face hub, laid out like
the offline data folder (then `export BDH_PL_DATA_DIR=DIR`); data/download.py does the work."""

from __future__ import annotations

from pathlib import Path

from bdh_pl.tools.options import parse


def download_data(out: str) -> None:
    """Fill OUT (created if missing) with tiny Shakespeare, WikiText-2 and the GPT-2 tokenizer."""
    from bdh_pl.data.download import download_data_root

    root = download_data_root(Path(out).expanduser())
    print(f"data root ready: {root} (export BDH_PL_DATA_DIR={root})")


def main(argv: list[str]) -> None:
    download_data(**parse(download_data, argv, "download-data"))
