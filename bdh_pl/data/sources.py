"""Where the raw text of a split comes from: a local data root, or the Hugging Face hub.

A local root is laid out as in the README's "Offline data": `tinyshakespeare/input.txt`,
`wikitext-2-raw/wiki.{train,valid,test}.raw`, `wikitext-2/wiki.{train,valid,test}.tokens`.
Local files are memory-mapped, so a corpus far larger than RAM costs no memory here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bdh_pl.errors import UserError

DATA_DIR_ENV = "BDH_PL_DATA_DIR"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitText:
    """The UTF-8 bytes of one split and where they came from (for messages)."""

    data: np.ndarray  # uint8, often a read-only memmap
    origin: str


def resolve_data_dir(data_dir: str | None) -> Path | None:
    """The local data root: the argument, else $BDH_PL_DATA_DIR, else None (use the hub)."""
    given, how = (data_dir, "data.data_dir") if data_dir else (os.environ.get(DATA_DIR_ENV), "")
    if not given:
        return None
    root = Path(given).expanduser()
    if not root.is_dir():
        how = how or f"${DATA_DIR_ENV}"
        raise UserError(
            f"data directory {str(root)!r} ({how}) does not exist: point it at a folder laid "
            'out as in the README\'s "Offline data" section, or unset it to download from '
            "the Hugging Face hub"
        )
    return root


def read_file(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"data file {str(path)!r} not found: check data.data_dir / ${DATA_DIR_ENV}")
    if path.stat().st_size == 0:
        raise UserError(f"data file {str(path)!r} is empty: give a file with text in it")
    return np.memmap(path, dtype=np.uint8, mode="r")


def fraction_split(
    data: np.ndarray, split: str, fractions: tuple[float, float, float]
) -> np.ndarray:
    """Contiguous train/val/test slices by fraction of bytes, cut on UTF-8 character starts."""
    n = len(data)
    cuts = [0, int(n * fractions[0]), int(n * (fractions[0] + fractions[1])), n]
    cuts[1:3] = [_char_start(data, c) for c in cuts[1:3]]
    i = SPLITS.index(split)
    return data[cuts[i] : cuts[i + 1]]


def _char_start(data: np.ndarray, i: int) -> int:
    while i < len(data) and (int(data[i]) & 0xC0) == 0x80:  # UTF-8 continuation byte
        i += 1
    return i


def check_hub_for(path: str) -> None:
    """The hub dataset `path` can be asked for (a quick probe), else one error line."""
    from bdh_pl.hub import require_hub

    require_hub(
        f"no data folder is set, so the {path} dataset",
        f"set data.data_dir or ${DATA_DIR_ENV} to a local copy (see README: Offline data)",
    )


def hub_text(path: str, name: str | None, split: str) -> np.ndarray:
    """Join a hub dataset's `text` rows back into the file it was made from (cached by datasets)."""
    hub_split = {"val": "validation"}.get(split, split)
    check_hub_for(path)
    import datasets

    try:
        rows = datasets.load_dataset(path, name, split=hub_split)["text"]
    except Exception as err:  # the hub raises many types; all mean "cannot get it"
        raise UserError(
            f"cannot load {path} ({name or 'default'}, {hub_split}) from the Hugging Face hub "
            f"({type(err).__name__}): set data.data_dir or ${DATA_DIR_ENV} to a local copy"
        ) from None
    # WikiText rows are lines with their "\n"; a blank line " \n" became the empty row.
    text = "".join(row if row else " \n" for row in rows) if name else "".join(rows)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
