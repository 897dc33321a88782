"""Selectivity: average precision against its definition, planted detectors found first."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bdh_pl.analysis.selectivity import (
    CLASSES,
    THRESHOLDS,
    Selectivity,
    average_precision,
    byte_classes,
    clustered_share,
    equal_size_best,
    selectivity,
    share_curve,
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


def planted_population(seed: int = 0):
    """100 unselective sparse ReLU neurons on a digit text, neuron 42 firing on digits only,
    neuron 7 on everywhere and a little higher on spaces (a perfect ranking, no detector)."""
    tokens = digit_tokens(seed=seed)
    torch.manual_seed(seed)
    acts = torch.relu(torch.randn(len(tokens), 100) - 1)  # each on at ~16% of positions
    acts[:, 42] = torch.as_tensor((tokens >= 48) & (tokens <= 57)) * (1 + torch.rand(len(tokens)))
    acts[:, 7] = 1.0 + 0.5 * torch.as_tensor(tokens == 32).float()
    return tokens, acts


def test_a_planted_selective_neuron_counts_at_every_threshold():
    tokens, acts = planted_population()
    labels = byte_classes(BYTES, tokens)
    scores = selectivity(acts, labels)
    with_it = np.array(share_curve(scores.best)) * 100
    without = np.array(share_curve(np.delete(scores.best, 42))) * 99
    assert with_it - without == pytest.approx(np.ones(len(THRESHOLDS))), "found at every t"
    summary = summarize(scores, list(CLASSES))
    assert summary["thresholds"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert summary["per_class"]["digit"]["neuron"] == 42


def test_an_always_on_neuron_is_counted_apart_and_never_the_best_of_a_class():
    tokens, acts = planted_population(seed=1)
    scores = selectivity(acts, byte_classes(BYTES, tokens))
    space = list(CLASSES).index("space")
    assert scores.nap[7, space] == pytest.approx(1.0)  # what nAP alone would make a detector
    assert scores.active_share[7, space] == 1.0 and scores.dense.tolist().count(True) == 1
    summary = summarize(scores, list(CLASSES))
    assert summary["dense"]["neurons"] == 1 and summary["per_class"]["space"]["neuron"] != 7
    assert summary["per_class"]["space"]["best"] < 0.5
    best = summary["per_class"]["space"]["best"]
    assert equal_size_best(scores, 100)[space] == pytest.approx(best)  # all drawn: the max


def test_readings_of_one_weight_vector_in_several_layers_count_once():
    """Each of 50 vectors read identically in 4 layers: the clustered standard error is that
    of 50 draws, sqrt(p (1 - p) / 50), not of 200."""
    rng = np.random.default_rng(0)
    per_vector = rng.random(50)
    best = np.tile(per_vector, 4)  # layer-major, as `read` lays out BDH's columns
    vectors = np.arange(200) % 50
    p, se = clustered_share(best, 0.5, vectors)
    assert p == pytest.approx((per_vector >= 0.5).mean())
    assert se == pytest.approx(np.sqrt(p * (1 - p) / 50))
    assert clustered_share(best, 0.5, None)[1] == pytest.approx(np.sqrt(p * (1 - p) / 200))


def test_the_best_of_a_class_at_equal_size_is_the_chance_of_drawing_it():
    """One perfect neuron among 100 (the rest at 0): among n drawn, the best is 1 with
    probability n / 100, so its mean over many draws is near n / 100."""
    nap = np.zeros((100, 1))
    nap[42] = 1.0
    hand = Selectivity(nap, np.ones_like(nap), np.array([0.1]), np.full((100, 2), 0.1))
    assert equal_size_best(hand, 25, draws=2000)[0] == pytest.approx(0.25, abs=0.04)
    assert equal_size_best(hand, 100, draws=3)[0] == 1.0
