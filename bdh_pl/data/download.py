"""Build a local data root from the Hugging Face hub, laid out like the offline data folder:

    python -m bdh_pl download-data DIR     # then: export BDH_PL_DATA_DIR=DIR

`tinyshakespeare/input.txt`, `wikitext-2-raw/wiki.{train,valid,test}.raw`,
`wikitext-2/wiki.{train,valid,test}.tokens` (through `datasets`, cached as usual) and
`gpt2-tokenizer/` (`save_pretrained`). Copy DIR to a machine without network to work offline.
"""

from __future__ import annotations

from pathlib import Path

from bdh_pl.data.sources import SPLITS, hub_text
from bdh_pl.fileio import atomic_write_bytes, check_writable
from bdh_pl.hub import require_hub

COMPLETE = ".complete"  # written last: a folder without it is a download that did not finish
WIKITEXT = {
    "wikitext-2-raw": ("wikitext-2-raw-v1", "raw"),
    "wikitext-2": ("wikitext-2-v1", "tokens"),
}
FILE_SPLIT = {"train": "train", "val": "valid", "test": "test"}


def download_data_root(root: Path) -> Path:
    """Fill `root` from the hub (a no-op when an earlier call finished)."""
    if (root / COMPLETE).is_file():
        return root
    # The target first (a typo costs no download), then one quick look for the hub.
    check_writable(root, "give download-data a folder you can write")
    require_hub("download-data", "run it on a machine with internet and copy the folder here")
    from transformers import GPT2TokenizerFast

    shakespeare = b"".join(hub_text("karpathy/tiny_shakespeare", None, s).tobytes() for s in SPLITS)
    atomic_write_bytes(root / "tinyshakespeare" / "input.txt", shakespeare)
    for folder, (config, suffix) in WIKITEXT.items():
        for split in SPLITS:
            text = hub_text("Salesforce/wikitext", config, split).tobytes()
            atomic_write_bytes(root / folder / f"wiki.{FILE_SPLIT[split]}.{suffix}", text)
    GPT2TokenizerFast.from_pretrained("gpt2").save_pretrained(root / "gpt2-tokenizer")
    atomic_write_bytes(root / COMPLETE, b"")
    return root
