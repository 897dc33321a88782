"""Tokenizers: byte-level (vocab 256) and GPT-2 byte-level BPE, behind one small interface.

Every tokenizer also knows the UTF-8 bytes of each of its tokens. That is what lets the
evaluation count bytes and words of the text it actually scored, whatever the tokenizer, so
bits-per-byte and word perplexity compare across vocabularies.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import numpy as np

from bdh_pl.errors import UserError

ASCII_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")


class Tokenizer(Protocol):
    name: str  # stable id, part of the token cache key
    vocab_size: int
    bos_id: int  # context for the first token of a stream; itself never scored

    def encode(self, data: bytes) -> np.ndarray: ...

    def decode(self, ids: list[int]) -> str: ...

    def token_bytes(self) -> list[bytes]: ...


class ByteTokenizer:
    """One token per UTF-8 byte: any byte string round-trips exactly."""

    name = "byte"
    vocab_size = 256
    bos_id = ord("\n")  # a stream starts as if after a line break

    def encode(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8)

    def decode(self, ids: list[int]) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self) -> list[bytes]:
        return [bytes([i]) for i in range(256)]


class GPT2Tokenizer:
    """GPT-2 BPE from a local folder (`save_pretrained` layout) or a hub name."""

    vocab_size = 50257

    def __init__(self, name_or_path: str = "gpt2") -> None:
        from transformers import GPT2TokenizerFast

        if not Path(name_or_path).is_dir():
            from bdh_pl.hub import require_hub

            require_hub(
                f"the GPT-2 tokenizer {name_or_path!r}",
                "give a folder with vocab.json and merges.txt, e.g. "
                "$BDH_PL_DATA_DIR/gpt2-tokenizer",
            )
        try:
            self._tok = GPT2TokenizerFast.from_pretrained(name_or_path)
        except OSError as err:
            raise UserError(
                f"cannot load the GPT-2 tokenizer from {name_or_path!r}: give a folder with "
                "vocab.json and merges.txt (or tokenizer.json), e.g. $BDH_PL_DATA_DIR/gpt2-tokenizer"
            ) from err
        if len(self._tok) != self.vocab_size:
            raise UserError(
                f"tokenizer at {name_or_path!r} has {len(self._tok)} tokens, not GPT-2's "
                f"{self.vocab_size}: point data.tokenizer at a GPT-2 tokenizer folder"
            )
        self.name = "gpt2"
        self.bos_id = self._tok.eos_token_id  # <|endoftext|>, as lm-evaluation-harness does

    def encode(self, data: bytes) -> np.ndarray:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(
                f"text is not valid UTF-8 at byte {err.start}: the GPT-2 tokenizer needs UTF-8 "
                "text (the byte tokenizer accepts any bytes)"
            ) from None
        ids = self._tok.backend_tokenizer.encode(text, add_special_tokens=False).ids
        return np.asarray(ids, dtype=np.uint16)

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode([int(i) for i in ids])

    def token_bytes(self) -> list[bytes]:
        byte_of = {ch: b for b, ch in _bytes_to_unicode().items()}
        out = []
        for piece in self._tok.convert_ids_to_tokens(list(range(self.vocab_size))):
            if piece in self._tok.all_special_tokens:
                out.append(b"")  # never part of the scored text
            else:
                out.append(bytes(byte_of[ch] for ch in piece))
        return out


@functools.cache
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def get_tokenizer(name: str, data_dir: Path | None = None) -> Tokenizer:
    """`byte`, `gpt2` (local `gpt2-tokenizer/` under the data root if present, else the hub),
    or a path to a GPT-2 tokenizer folder."""
    if name == "byte":
        return ByteTokenizer()
    if name == "gpt2":
        local = data_dir / "gpt2-tokenizer" if data_dir is not None else None
        return GPT2Tokenizer(str(local) if local is not None and local.is_dir() else "gpt2")
    if Path(name).is_dir():
        return GPT2Tokenizer(name)
    raise UserError(
        f"unknown tokenizer {name!r}: use 'byte', 'gpt2' or a folder holding a GPT-2 tokenizer"
    )


def token_tables(tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per token id: byte length, word starts inside it, starts with / ends with whitespace.

    A word is a maximal run of non-whitespace bytes (ASCII whitespace), so the number of words
    of a text is the number of non-whitespace bytes that follow whitespace or the text start.
    """
    pieces = tokenizer.token_bytes()
    n_bytes = np.array([len(p) for p in pieces], dtype=np.uint8)  # GPT-2's longest is 128
    inner_starts = np.array(
        [
            sum(
                1
                for a, b in zip(p, p[1:], strict=False)
                if a in ASCII_WHITESPACE and b not in ASCII_WHITESPACE
            )
            for p in pieces
        ],
        dtype=np.uint8,
    )
    starts_ws = np.array([len(p) > 0 and p[0] in ASCII_WHITESPACE for p in pieces])
    ends_ws = np.array([len(p) > 0 and p[-1] in ASCII_WHITESPACE for p in pieces])
    return n_bytes, inner_starts, starts_ws, ends_ws


def count_bytes_and_words(
    tokenizer: Tokenizer, tokens: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bytes and word starts contributed by each token of a stream that begins a text.

    Both come back as uint8 arrays (one byte per token), so a large split costs little memory.
    """
    n_bytes, inner_starts, starts_ws, ends_ws = token_tables(tokenizer)
    has_bytes = n_bytes[tokens] > 0
    # Whitespace status of the last byte before each token; zero-byte tokens pass it through.
    last_is_ws = np.empty(len(tokens), dtype=bool)
    if has_bytes.all():
        last_is_ws[:1] = True  # the text start counts as whitespace
        last_is_ws[1:] = ends_ws[tokens[:-1]]
    else:  # rare (special tokens inside the text): walk the stream
        state = True
        for i, t in enumerate(tokens):
            last_is_ws[i] = state
            if n_bytes[t] > 0:
                state = bool(ends_ws[t])
    word_starts = inner_starts[tokens] + (last_is_ws & ~starts_ws[tokens] & has_bytes)
    return n_bytes[tokens], word_starts.astype(np.uint8)
