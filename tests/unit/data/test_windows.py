import itertools

import numpy as np
import pytest
import torch

from bdh_pl.data.windows import IGNORE_INDEX, EvalWindows, RandomWindows

BOS = 999


def scored_positions(windows: EvalWindows) -> list[int]:
    """Token indices scored by each window, with checks that targets and context are right."""
    stream = np.concatenate([[BOS], windows.tokens])
    scored = []
    for w in range(len(windows)):
        item = windows[w]
        begin = int(windows.begins[w])
        for j, target in enumerate(item["targets"].tolist()):
            if target == IGNORE_INDEX:
                continue
            # position j predicts stream[begin + j + 1] from stream[begin .. begin + j]
            assert target == stream[begin + j + 1]
            assert item["input_ids"][j] == stream[begin + j]
            scored.append(begin + j)  # index into the split's tokens
    return scored


@pytest.mark.parametrize("n", [1, 5, 64, 1000])
@pytest.mark.parametrize(
    ("block", "stride"), [(7, None), (64, None), (64, 16), (64, 63), (2000, None), (8, 1)]
)
def test_eval_windows_score_every_token_exactly_once(n, block, stride):
    tokens = np.random.default_rng(n).integers(0, 256, size=n)
    ones = np.ones(n, dtype=np.int64)
    windows = EvalWindows(tokens, BOS, block, stride, ones, 2 * ones)
    assert scored_positions(windows) == list(range(n))
    assert sum(int(windows[w]["n_bytes"]) for w in range(len(windows))) == n
    assert sum(int(windows[w]["n_words"]) for w in range(len(windows))) == 2 * n


def test_sliding_windows_give_more_context_than_disjoint_ones():
    tokens = np.arange(100)
    ones = np.ones(100, dtype=np.int64)
    sliding = EvalWindows(tokens, BOS, 32, 8, ones, ones)
    # after the first window, every scored target sees at least block - stride tokens of context
    for w in range(1, len(sliding)):
        first = int((sliding[w]["targets"] != IGNORE_INDEX).nonzero()[0])
        assert first >= 32 - 8 - 1


def test_eval_stride_must_fit_the_block():
    with pytest.raises(ValueError, match="stride"):
        EvalWindows(np.arange(10), BOS, 8, 9, np.ones(10), np.ones(10))


def test_random_windows_are_a_pure_function_of_seed_index_rank():
    tokens = np.arange(10_000) % 251
    a = RandomWindows(tokens, 32, 4, seed=7)
    b = RandomWindows(tokens, 32, 4, seed=7)
    assert torch.equal(a.batch(5)["input_ids"], b.batch(5)["input_ids"])
    assert not torch.equal(a.batch(5)["input_ids"], a.batch(6)["input_ids"])
    b.rank = 1
    assert not torch.equal(a.batch(5)["input_ids"], b.batch(5)["input_ids"])
    batch = a.batch(0)
    assert batch["input_ids"].shape == (4, 32)
    assert torch.equal((batch["input_ids"] + 1) % 251, batch["targets"])  # next token


def test_random_windows_resume_where_they_left_off():
    tokens = np.arange(5_000) % 200
    full = RandomWindows(tokens, 16, 2, seed=1)
    first_five = [b["input_ids"] for b, _ in zip(full, range(5), strict=False)]
    resumed = RandomWindows(tokens, 16, 2, seed=1)
    resumed.first_batch = 3
    first = next(iter(resumed))
    assert torch.equal(first["input_ids"], first_five[3])
    assert int(first["index"]) == 3  # the batch says where it is in the stream


def test_micro_batches_are_the_slices_of_the_batch_in_order():
    tokens = np.arange(1000, dtype=np.uint16)
    whole = RandomWindows(tokens, block_size=8, batch_size=6, seed=3)
    split = RandomWindows(tokens, block_size=8, batch_size=6, seed=3)
    split.parts, split.first_batch = 3, 3  # resumed at batch 1 (3 micro-batches consumed)
    items = itertools.islice(iter(split), 6)
    for index in (1, 2):
        parts = [next(items) for _ in range(3)]
        expected = whole.batch(index)
        for key in ("input_ids", "targets"):
            assert torch.equal(torch.cat([p[key] for p in parts]), expected[key])
        assert [int(p["index"]) for p in parts] == [index] * 3
        assert [int(p["part"]) for p in parts] == [0, 1, 2]
