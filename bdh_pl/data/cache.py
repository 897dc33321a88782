"""Tokenize once, then memory-map: token files keyed by content hash + tokenizer.

Like nanoGPT's `prepare.py`, a split becomes a flat array of token ids on disk (uint8 for
bytes, uint16 for GPT-2). Tokenization streams over the text in chunks cut between words,
so preparing a corpus of any size needs bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bdh_pl.data.tokenizers import Tokenizer
from bdh_pl.fileio import atomic_write_text

CACHE_DIR_ENV = "BDH_PL_CACHE_DIR"
CHUNK_BYTES = 1 << 20  # a BPE encoding costs ~0.5 kB per token while alive: keep chunks small
WHITESPACE = np.array([c in b" \t\n\r\x0b\x0c" for c in range(256)])


def default_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """$BDH_PL_CACHE_DIR, or ~/.cache/bdh_pl when it is unset or empty."""
    return Path(environ.get(CACHE_DIR_ENV) or "~/.cache/bdh_pl").expanduser()


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(
        np.uint8 if vocab_size <= 1 << 8 else np.uint16 if vocab_size <= 1 << 16 else np.uint32
    )


def fingerprint(data: np.ndarray) -> str:
    digest = hashlib.sha256()
    for start in range(0, len(data), CHUNK_BYTES):
        digest.update(memoryview(np.ascontiguousarray(data[start : start + CHUNK_BYTES])))
    return digest.hexdigest()[:24]


def cached_tokens(data: np.ndarray, tokenizer: Tokenizer, cache_dir: Path) -> np.ndarray:
    """Token ids of `data` (UTF-8 bytes), tokenized on first use and memory-mapped after."""
    dtype = token_dtype(tokenizer.vocab_size)
    stem = cache_dir / f"{fingerprint(data)}-{tokenizer.name}"
    bin_path, meta_path = stem.with_suffix(".bin"), stem.with_suffix(".json")
    if not meta_path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        n_tokens = _tokenize_to_file(data, tokenizer, bin_path, dtype)
        meta = {"tokenizer": tokenizer.name, "dtype": dtype.name, "n_tokens": n_tokens}
        atomic_write_text(meta_path, json.dumps(meta))  # written last: marks the .bin complete
    n_tokens = json.loads(meta_path.read_text())["n_tokens"]
    if n_tokens == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(bin_path, dtype=dtype, mode="r", shape=(n_tokens,))


def _tokenize_to_file(data: np.ndarray, tokenizer: Tokenizer, path: Path, dtype: np.dtype) -> int:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n_tokens = 0
    with open(tmp, "wb") as f:
        for chunk in _chunks(data):
            ids = tokenizer.encode(chunk)
            f.write(np.asarray(ids).astype(dtype, copy=False).tobytes())
            n_tokens += len(ids)
    os.replace(tmp, path)
    return n_tokens


def _chunks(data: np.ndarray):
    """Pieces of about CHUNK_BYTES, cut before a single space between two non-space bytes.

    GPT-2's pre-tokenizer starts a new piece at such a space (only runs of whitespace merge),
    so tokenizing chunk by chunk gives exactly the tokens of the whole text.
    """
    start = 0
    while start < len(data):
        end = min(start + CHUNK_BYTES, len(data))
        if end < len(data):
            piece = data[start : end + 1]
            cuts = np.flatnonzero(piece[1:-1] == ord(" ")) + 1
            cuts = cuts[~WHITESPACE[piece[cuts - 1]] & ~WHITESPACE[piece[cuts + 1]]]
            if len(cuts):
                end = start + int(cuts[-1])
        yield bytes(data[start:end])
        start = end
