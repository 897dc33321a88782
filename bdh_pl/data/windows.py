"""Windows over a token stream: random ones for training, covering ones for evaluation.

Training (nanoGPT-style): each batch holds random windows of block_size+1 tokens. Batch b of
rank r is a pure function of (seed, b, r), so a resumed run sees exactly the batches an
uninterrupted one would have seen.

Evaluation: the stream is [bos] + tokens, and every token of the split is a target exactly
once, in order, with the previous tokens as context (Hugging Face's "perplexity of fixed-length
models" method). With stride == block_size the windows are disjoint; a smaller stride gives
each target up to block_size - stride tokens of extra context but still scores it once.

Streams (for models with a recurrent state, BDH): StreamLanes trains on consecutive windows of
fixed lanes (ArticleLanes: the state reset at every article), and EvalWindows(carry_state=True) marks disjoint windows read in order, so the
model scores every token with all the text before it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from bdh_pl.errors import UserError

IGNORE_INDEX = -100


class RandomWindows(IterableDataset):
    """Endless batches of random windows; yields whole batches (use `batch_size=None`)."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int) -> None:
        self.tokens, self.block_size, self.batch_size, self.seed = (
            tokens,
            block_size,
            batch_size,
            seed,
        )
        self.first_batch = 0  # set on resume: micro-batches this rank already consumed
        self.rank, self.world_size = 0, 1
        # Each batch served as this many equal slices, one per item (micro-batches for
        # gradient accumulation, training/memory.py): the same windows per optimizer step.
        self.parts = 1

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index, self.rank])
        starts = rng.integers(0, len(self.tokens) - self.block_size, size=self.batch_size)
        rows = np.stack([self.tokens[s : s + self.block_size + 1] for s in starts]).astype(np.int64)
        window = torch.from_numpy(rows)  # B, T+1
        # The batch carries its place in the stream: the model seeds its dropout masks from it.
        return {"input_ids": window[:, :-1], "targets": window[:, 1:], "index": torch.tensor(index)}

    def part(self, item: int) -> dict[str, torch.Tensor]:
        """Item `item` of the stream: batch item // parts, its slice item % parts."""
        if self.parts == 1:
            return self.batch(item)
        index, part = divmod(item, self.parts)
        size = self.batch_size // self.parts
        whole = self.batch(index)
        rows = slice(part * size, (part + 1) * size)
        return {
            "input_ids": whole["input_ids"][rows],  # B/parts, T
            "targets": whole["targets"][rows],
            "index": whole["index"],
            "part": torch.tensor(part),
            "parts": torch.tensor(self.parts),
        }

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = get_worker_info()
        step, offset = (1, 0) if worker is None else (worker.num_workers, worker.id)
        for item in itertools.count(self.first_batch + offset, step):
            yield self.part(item)


class StreamLanes(RandomWindows):
    """Endless batches of consecutive windows, for training with a carried state.

    The split is cut into batch_size x world_size equal lanes (rank r reads lanes r*B to
    r*B+B-1); batch k holds window k mod K of every lane (K windows of block_size fit a lane),
    so row b of a batch continues row b of the one before. "position" (tokens since the state
    started, the same for every row) is 0 where the lanes start again, and every `reset_every`
    windows when that is set (the longest context trained on is then reset_every x T). Like
    RandomWindows, batch k is a pure function of k: a resumed run reads what an uninterrupted
    one would have.
    """

    reset_every: int | None = None  # windows between state resets (None: at the lane's end)

    def lane_length(self) -> int:
        """Tokens per lane, at least one window's worth (else the one error line)."""
        lanes = self.batch_size * self.world_size
        lane = (len(self.tokens) - 1) // lanes
        if lane < self.block_size:
            raise UserError(
                f"data.train_mode stream: {len(self.tokens)} training tokens cut into {lanes} "
                f"lanes are shorter than one window of {self.block_size}: lower "
                "data.batch_size or data.block_size"
            )
        return lane

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        T, lane = self.block_size, self.lane_length()
        windows_per_lane = lane // T
        window = index % windows_per_lane  # the text goes on through the lane
        position = (window % (self.reset_every or windows_per_lane)) * T  # the state may not
        lanes = np.arange(self.batch_size) + self.rank * self.batch_size
        rows = np.stack([self.tokens[s : s + T + 1] for s in lanes * lane + window * T])
        rows = torch.from_numpy(rows.astype(np.int64))  # B, T+1
        return {
            "input_ids": rows[:, :-1],
            "targets": rows[:, 1:],
            "index": torch.tensor(index),
            "position": torch.tensor(position),
        }


class ArticleLanes(StreamLanes):
    """StreamLanes whose state starts afresh at every article (WikiText's ` = Title = `).

    The articles (spans, [begin, end) token ranges tiling the split) are dealt to the lanes in
    order, whole, so that the lanes hold about as many windows each; an article is read in
    windows of block_size that stop at its end (the last one padded, its missing targets
    ignored), so no window crosses two articles, and "reset" marks the rows whose window starts
    an article (their state is emptied first). Batch k holds window k mod K of every lane (K:
    the shortest lane's windows), a pure function of k as in StreamLanes.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        batch_size: int,
        seed: int,
        spans: list[tuple[int, int]],
    ) -> None:
        super().__init__(tokens, block_size, batch_size, seed)
        self.spans = spans
        self._plan: tuple | None = None

    def plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every lane's windows: start, length and whether it starts an article (lanes, K)."""
        lanes = self.batch_size * self.world_size
        if self._plan is not None and self._plan[0] == lanes:
            return self._plan[1]
        T, last = self.block_size, len(self.tokens) - 1  # the last token is no input
        windows = [
            (s, min(T, stop - s), s == begin)
            for begin, end in self.spans
            for stop in [min(end, last)]
            for s in range(begin, stop, T)
        ]
        firsts = np.flatnonzero([w[2] for w in windows])  # each article's first window
        even = np.arange(1, lanes) * len(windows) / lanes  # equal lanes would cut there
        cuts = np.append(firsts, len(windows))[np.searchsorted(firsts, even)]  # at an article
        bounds = [0, *cuts.tolist(), len(windows)]
        per_lane = [windows[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        K = min(len(lane) for lane in per_lane)
        if K == 0:
            raise UserError(
                f"data.stream_reset_articles: {len(self.spans)} articles cannot fill {lanes} "
                "lanes: lower data.batch_size"
            )
        plan = tuple(np.array([[w[i] for w in lane[:K]] for lane in per_lane]) for i in range(3))
        self._plan = (lanes, plan)
        return plan

    def lane_length(self) -> int:
        return self.plan()[0].shape[1] * self.block_size

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        starts, lengths, first = self.plan()
        T, k = self.block_size, index % starts.shape[1]
        lanes = np.arange(self.batch_size) + self.rank * self.batch_size
        inputs = np.zeros((len(lanes), T), dtype=np.int64)
        targets = np.full((len(lanes), T), IGNORE_INDEX, dtype=np.int64)
        for row, lane in enumerate(lanes):
            s, n = starts[lane, k], lengths[lane, k]
            inputs[row, :n] = self.tokens[s : s + n]
            targets[row, :n] = self.tokens[s + 1 : s + n + 1]
        return {
            "input_ids": torch.from_numpy(inputs),
            "targets": torch.from_numpy(targets),
            "index": torch.tensor(index),
            "position": torch.tensor(k * T),  # 0: every lane starts again (at an article)
            "reset": torch.from_numpy(first[lanes, k].astype(bool)),
        }


class EvalWindows(Dataset):
    """Windows that score each token of `tokens` exactly once, padded to block_size."""

    def __init__(
        self,
        tokens: np.ndarray,
        bos_id: int,
        block_size: int,
        stride: int | None,
        token_bytes: np.ndarray,
        token_words: np.ndarray,
        carry_state: bool = False,
    ) -> None:
        stride = stride or block_size
        if carry_state and stride != block_size:
            raise ValueError("windows that carry the state must be disjoint (stride = block_size)")
        self.carry_state = carry_state
        if not 0 < stride <= block_size:
            raise ValueError(f"eval stride must be in [1, block_size={block_size}], got {stride}")
        self.tokens, self.bos_id, self.block_size = tokens, bos_id, block_size
        n = len(tokens)  # targets are stream[1..n], stream = [bos] + tokens
        begins = np.arange(0, max(n, 1), stride)
        ends = np.minimum(begins + block_size, n)
        keep = np.concatenate([[True], ends[:-1] < n])  # stop once the last target is scored
        self.begins, self.ends = begins[keep], ends[keep]
        self.first_scored = np.concatenate([[0], self.ends[:-1]])  # targets before it seen already
        # The scored ranges [first_scored, end) tile the split in order: one sum per window.
        self.window_bytes = np.add.reduceat(token_bytes, self.first_scored, dtype=np.int64)
        self.window_words = np.add.reduceat(token_words, self.first_scored, dtype=np.int64)

    def stream(self, start: int, stop: int) -> np.ndarray:
        """Slice [start, stop) of [bos] + tokens without copying the split."""
        head = [self.bos_id] if start == 0 else []
        return np.concatenate([head, self.tokens[max(start - 1, 0) : stop - 1]]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.begins)

    def __getitem__(self, w: int) -> dict[str, torch.Tensor]:
        begin, end, seen = int(self.begins[w]), int(self.ends[w]), int(self.first_scored[w])
        length = end - begin
        input_ids = np.zeros(self.block_size, dtype=np.int64)
        targets = np.full(self.block_size, IGNORE_INDEX, dtype=np.int64)
        input_ids[:length] = self.stream(begin, end)
        skip = seen - begin  # targets already scored by an earlier window
        targets[skip:length] = self.tokens[seen:end]
        item = {
            "input_ids": torch.from_numpy(input_ids),
            "targets": torch.from_numpy(targets),
            "n_bytes": torch.tensor(self.window_bytes[w]),
            "n_words": torch.tensor(self.window_words[w]),
        }
        if self.carry_state:  # read in order, one stream: the model carries its state across
            item["carry"] = torch.tensor(True)
        return item
