"""Tokenize once, then memory-map: token files keyed by content hash + tokenizer.

Like nanoGPT's `prepare.py`, a split becomes a flat array of token ids on disk (uint8 for
bytes, uint16 for GPT-2). Tokenization streams over the text in chunks cut between words,
so preparing a corpus of any size needs bounded memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bdh_pl.data.tokenizers import Tokenizer
from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_write, atomic_write_text, check_writable

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
    """Token ids of `data` (UTF-8 bytes), tokenized on first use and memory-mapped after.

    The .json beside each .bin records its size and a CRC-32 of its content; an entry that
    does not match (truncated, overwritten, missing, unreadable) is rebuilt, with a warning."""
    dtype = token_dtype(tokenizer.vocab_size)
    cache_dir = Path(cache_dir)
    stem = cache_dir / f"{fingerprint(data)}-{tokenizer.name}"
    bin_path, meta_path = stem.with_suffix(".bin"), stem.with_suffix(".json")
    if cache_dir.exists() and not cache_dir.is_dir():
        raise UserError(
            f"the token cache {str(cache_dir)!r} is a file, not a folder: point "
            f"${CACHE_DIR_ENV} or data.init_args.cache_dir at a folder"
        )
    if meta_path.exists() or bin_path.exists():
        damage = _damage(bin_path, meta_path, dtype)
        if damage is None:
            n_tokens = json.loads(meta_path.read_text())["n_tokens"]
            return _open(bin_path, dtype, n_tokens)
        print(f"warning: token cache {bin_path} {damage}: rebuilding it", file=sys.stderr)
    check_writable(
        cache_dir, f"point ${CACHE_DIR_ENV} or data.init_args.cache_dir at a writable folder"
    )
    n_tokens, crc = _tokenize_to_file(data, tokenizer, bin_path, dtype)
    meta = {
        "tokenizer": tokenizer.name,
        "dtype": dtype.name,
        "n_tokens": n_tokens,
        "bytes": n_tokens * dtype.itemsize,
        "crc32": crc,
    }
    atomic_write_text(meta_path, json.dumps(meta))  # written last: marks the .bin complete
    return _open(bin_path, dtype, n_tokens)


def _open(bin_path: Path, dtype: np.dtype, n_tokens: int) -> np.ndarray:
    if n_tokens == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(bin_path, dtype=dtype, mode="r", shape=(n_tokens,))


def _damage(bin_path: Path, meta_path: Path, dtype: np.dtype) -> str | None:
    """Why a cache entry cannot be used, or None when its size and checksum match."""
    try:
        meta = json.loads(meta_path.read_text())
        n_tokens, size, crc = int(meta["n_tokens"]), int(meta["bytes"]), int(meta["crc32"])
    except FileNotFoundError:
        return "has no .json record (an interrupted write)"
    except (OSError, ValueError, KeyError, TypeError):
        return "has an unreadable .json record (or one written by an older bdh-pl)"
    if meta.get("dtype") != dtype.name or size != n_tokens * dtype.itemsize:
        return "has a .json record for another tokenizer"
    if not bin_path.is_file():
        return "is missing"
    if bin_path.stat().st_size != size:
        return f"has {bin_path.stat().st_size} bytes, not the {size} recorded"
    if _crc32_of_file(bin_path) != crc:
        return "does not match its recorded checksum (the file was changed)"
    return None


def _crc32_of_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES * 8):
            crc = zlib.crc32(block, crc)
    return crc


def _tokenize_to_file(
    data: np.ndarray, tokenizer: Tokenizer, path: Path, dtype: np.dtype
) -> tuple[int, int]:
    """(number of tokens, CRC-32 of the file), written atomically."""
    n_tokens, crc, done = 0, 0, 0
    progress = Progress(len(data), f"tokenizing {len(data) / 2**20:.1f} MB ({tokenizer.name})")
    with atomic_write(path) as f:
        for chunk in _chunks(data):
            ids = np.asarray(tokenizer.encode(chunk)).astype(dtype, copy=False).tobytes()
            f.write(ids)
            crc = zlib.crc32(ids, crc)
            n_tokens += len(ids) // dtype.itemsize
            done += len(chunk)
            progress.update(done)
    progress.finish(f"{n_tokens:,} tokens")
    return n_tokens, crc


class Progress:
    """A line with size and rate every few seconds while a large text is tokenized (minutes for
    hundreds of MB with BPE); silent for small texts."""

    MIN_BYTES = 16 << 20
    EVERY_S = 5.0

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what = total, what
        self.start = self.last = time.perf_counter()
        self.on = total >= self.MIN_BYTES
        if self.on:
            print(f"{what}: started", file=sys.stderr, flush=True)

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if self.on and now - self.last >= self.EVERY_S:
            self.last = now
            rate = done / 2**20 / max(now - self.start, 1e-9)
            print(
                f"{self.what}: {100 * done / self.total:.0f}% at {rate:.1f} MB/s",
                file=sys.stderr,
                flush=True,
            )

    def finish(self, result: str) -> None:
        if self.on:
            seconds = time.perf_counter() - self.start
            print(f"{self.what}: done in {seconds:.1f} s, {result}", file=sys.stderr, flush=True)


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
