"""Where the articles of a WikiText split start: its level-1 heading lines, ` = Title = `
(level 2 is ` = = Section = = `). The carried-state training resets its state there
(data.stream_reset_articles) and `context-curve --per_article` reads each article as its own
stream."""

from __future__ import annotations

import re

import numpy as np

HEADING = re.compile(rb"^ = [^=\n][^\n]* = $", re.MULTILINE)


def article_starts(data: np.ndarray | bytes) -> np.ndarray:
    """Byte offsets (int64) of the level-1 heading lines of a UTF-8 text, in order."""
    text = data.tobytes() if isinstance(data, np.ndarray) else data
    return np.array([m.start() for m in HEADING.finditer(text)], dtype=np.int64)


def token_offsets(byte_offsets: np.ndarray, token_bytes: np.ndarray) -> np.ndarray:
    """The index of the token holding each byte offset (a heading starts a line, so with BPE
    too it is the token starting there), for tokens of token_bytes bytes each."""
    ends = np.cumsum(token_bytes, dtype=np.int64)  # bytes up to and including each token
    return np.searchsorted(ends, byte_offsets, side="right")


def article_spans(starts: np.ndarray, n: int) -> list[tuple[int, int]]:
    """[begin, end) of each article of a stream of n tokens whose articles start at `starts`
    (token indices); text before the first heading belongs to the first article."""
    edges = np.unique(np.concatenate([[0], starts[1:][starts[1:] < n], [n]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
