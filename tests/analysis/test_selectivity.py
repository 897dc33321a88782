"""Selectivity: average precision against its definition, planted detectors found first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bdh_pl.analysis.selectivity import (
    CLASSES,
    average_precision,
    byte_classes,
    selectivity,
    summarize,
    top_contexts,
    top_tokens,
)

from helpers import digit_text

BYTES = [bytes([i]) for i in range(256)]


def ap_by_definition(scores: list[float], labels: list[bool]) -> float:
    """Sum over distinct thresholds, highest first, of (recall gained) x (precision there)."""
    ap, recall_before, n_pos = 0.0, 0.0, sum(labels)
    for t in sorted(set(scores), reverse=True):
        chosen = [lab for s, lab in zip(scores, labels, strict=True) if s >= t]
        recall = sum(chosen) / n_pos
        ap += (recall - recall_before) * sum(chosen) / len(chosen)
        recall_before = recall
    return ap


def test_average_precision_equals_its_definition_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(60, 7)).astype(np.float32)  # many ties
    labels = rng.random((60, 3)) < 0.3
    got = average_precision(torch.as_tensor(scores), torch.as_tensor(labels)).numpy()
    for m in range(7):
        for c in range(3):
            want = ap_by_definition(scores[:, m].tolist(), labels[:, c].tolist())
            assert got[m, c] == pytest.approx(want, abs=1e-12)
    sklearn = pytest.importorskip("sklearn.metrics")
    assert got[2, 1] == pytest.approx(sklearn.average_precision_score(labels[:, 1], scores[:, 2]))


def test_byte_classes_describe_each_byte_with_its_neighbours():
    text = b"Ab 1\nx,"
    labels = byte_classes(BYTES, np.frombuffer(text, dtype=np.uint8))
    named = [{n for n, hit in zip(CLASSES, row, strict=True) if hit} for row in labels]
    assert named[0] == {"uppercase", "vowel", "word start", "line start"}  # text starts a line
    assert named[1] == {"lowercase", "word end"}
    assert named[2] == {"space"} and named[3] == {"digit"} and named[4] == {"newline"}
    assert named[5] == {"lowercase", "word start", "word end", "line start"}
    assert named[6] == {"punctuation"}


def digit_tokens(seed: int = 0) -> np.ndarray:
    return np.frombuffer(digit_text(seed=seed), dtype=np.uint8)


def test_a_planted_digit_neuron_is_found_and_ranked_first():
    tokens = digit_tokens()
    labels = byte_classes(BYTES, tokens)
    torch.manual_seed(0)
    acts = torch.relu(torch.randn(len(tokens), 300))  # 300 unselective neurons
    is_digit = torch.as_tensor((tokens >= 48) & (tokens <= 57))
    acts[:, 123] = is_digit * (1 + torch.rand(len(tokens)))  # fires on digits only
    scores = selectivity(acts, labels)
    digit = list(CLASSES).index("digit")
    assert scores.nap[123, digit] == pytest.approx(1.0)
    assert np.argsort(-scores.best)[0] == 123 and scores.best_class[123] == digit
    summary = summarize(scores, list(CLASSES))
    assert summary["per_class"]["digit"]["neuron"] == 123
    assert summary["median"] < 0.1  # the random ones are near chance


def test_signed_scoring_finds_a_neuron_that_codes_by_going_negative():
    tokens = digit_tokens(seed=1)
    labels = byte_classes(BYTES, tokens)
    is_space = torch.as_tensor(tokens == 32).float()
    acts = torch.stack([-is_space, is_space * 0.0 + torch.rand(len(tokens))], dim=1)
    space = list(CLASSES).index("space")
    assert selectivity(acts, labels).nap[0, space] < 0.1
    signed = selectivity(acts, labels, signed=True)
    assert signed.nap[0, space] == pytest.approx(1.0) and signed.sign[0, space] == -1


def test_top_contexts_spread_over_tied_positions():
    tokens = np.frombuffer(b"a1b2c3d4e5f6g7h8", dtype=np.uint8)
    acts = torch.as_tensor((tokens >= 48) & (tokens <= 57)).float()  # every digit ties
    acts[5] = 2.0  # '3' is the single highest
    contexts = top_contexts(acts, BYTES, tokens, k=3, before=2, after=1)
    assert [c["token"] for c in contexts] == ["3", "1", "8"]
    assert contexts[0] == {
        "position": 5,
        "activation": 2.0,
        "before": "2c",
        "token": "3",
        "after": "d",
    }


def test_top_tokens_rank_a_byte_lookup_neuron_by_its_value_of_each_byte():
    """A layer-0 style neuron (a value per byte): its top contexts all show its best byte, its
    top tokens give the order of the next ones; bytes seen too rarely are left out."""
    tokens = digit_tokens(seed=2)
    value = torch.zeros(256)
    value[list(b"gniK")] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    value[ord("7")] = 9.0  # the highest, but on a byte seen only a few times below
    tokens = tokens.copy()
    tokens[tokens == ord("7")] = ord("8")
    tokens[[100, 200]] = ord("7")  # seen twice
    acts = value[torch.as_tensor(tokens, dtype=torch.long)]
    top = top_tokens(acts, BYTES, tokens, k=3, min_count=5)
    assert [t["token"] for t in top] == ["g", "n", "i"]
    assert [t["mean"] for t in top] == [4.0, 3.0, 2.0]
    assert top[0]["count"] == int((tokens == ord("g")).sum())
    lowest = top_tokens(-acts, BYTES, tokens, k=1, min_count=5, sign=-1.0)
    assert lowest == [{**top[0], "mean": -4.0}]  # ranked by -activation, the mean as it is
