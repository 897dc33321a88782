"""Which neurons respond to one thing a reader can check: selectivity over simple byte classes.

    labels = byte_classes(tokenizer.token_bytes(), tokens)     # P, C: each position's classes
    scores = selectivity(acts, labels)                         # acts: P, M neurons
    scores.best, scores.best_class                             # M: each neuron's top class
    top_tokens(acts[:, m], tokenizer.token_bytes(), tokens)    # what neuron m fires on, on average

A neuron's selectivity for a class is the average precision (AP) of its activation ranking as
a detector of the class: 1 when the class fills its top activations exactly (it fires on all
of the class and on nothing else above it), the class's prevalence when the ranking is
random. Normalised, nAP = (AP - prevalence) / (1 - prevalence): 0 at chance, 1 perfect,
comparable across classes of any frequency. AP is rank-based, so it compares neurons of any
activation function; tied activations (ReLU's zeros) count as one threshold. A neuron's
score is its best class. `signed=True` also ranks -activation and keeps the better of the two,
for neurons whose sign carries no meaning (a SwiGLU or GELU MLP neuron): it favours them.

The classes describe the token at each position by its first byte (a byte-level model: the
byte itself), the byte before it and the byte after it.

Comparing models fairly (issue 33): no one cut, no unequal populations, no shared weights
counted twice, no always-on "detectors":

    share_curve(scores.best)                          # share with nAP >= t, t = 0.1 .. 0.9
    clustered_share(scores.best, t, clusters)         # that share and its standard error
    equal_size_best(scores, n, dense)                 # each class's best neuron among n drawn
    scores.dense                                      # M: active at > DENSE of the positions

A neuron active at more than half the positions is reported apart and never listed as a
detector: nAP ranks activations, so a neuron that is on almost everywhere scores as a perfect
detector when it is a little higher on one class. BDH shares one set of weights across layers
(neuron n of head h is the same vector in every layer): its readings in different layers are
not independent, so standard errors are clustered by weight vector.
"""

from __future__ import annotations

import string
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

LETTERS = frozenset(string.ascii_letters.encode())
PUNCTUATION = frozenset(string.punctuation.encode())

# name -> predicate on (byte before, this byte, byte after)
CLASSES: dict[str, Callable[[int, int, int], bool]] = {
    "digit": lambda p, c, n: 48 <= c <= 57,
    "uppercase": lambda p, c, n: 65 <= c <= 90,
    "lowercase": lambda p, c, n: 97 <= c <= 122,
    "vowel": lambda p, c, n: c in b"aeiouAEIOU",
    "punctuation": lambda p, c, n: c in PUNCTUATION,
    "space": lambda p, c, n: c == 32,
    "newline": lambda p, c, n: c == 10,
    "word start": lambda p, c, n: c in LETTERS and p not in LETTERS,
    "word end": lambda p, c, n: c in LETTERS and n not in LETTERS,
    "line start": lambda p, c, n: p == 10,
}
THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # nAP cuts of the share curve
DENSE = 0.5  # a neuron active at more than this share of positions is not a detector
DRAWS = 20  # random equal-size subsets averaged over in equal_size_best
MIN_POSITIVES = 20  # a class seen fewer times in the text is not scored
MIN_OCCURRENCES = 10  # a token seen fewer times has no mean activation in top_tokens
CHUNK = 1024  # neurons ranked at a time


def position_bytes(token_bytes: list[bytes], tokens: np.ndarray) -> np.ndarray:
    """P, 3 (uint8): for each token its first byte, the byte before it and the byte after it
    (a line break before the text and after it)."""
    first = np.array([b[0] if b else 0 for b in token_bytes], dtype=np.uint8)
    last = np.array([b[-1] if b else 0 for b in token_bytes], dtype=np.uint8)
    tokens = np.asarray(tokens, dtype=np.int64)
    before = np.concatenate([[10], last[tokens[:-1]]]).astype(np.uint8)
    after = np.concatenate([first[tokens[1:]], [10]]).astype(np.uint8)
    return np.stack([before, first[tokens], after], axis=1)


def byte_classes(token_bytes: list[bytes], tokens: np.ndarray) -> np.ndarray:
    """P, C bool: which of CLASSES each position belongs to (a position may be in several)."""
    triples = position_bytes(token_bytes, tokens).astype(np.int64)
    # each distinct (before, byte, after) once: a text holds a few thousand of them
    keys = (triples[:, 0] << 16) | (triples[:, 1] << 8) | triples[:, 2]
    unique, inverse = np.unique(keys, return_inverse=True)
    per_key = np.array(
        [[fn(int(k >> 16), int((k >> 8) & 255), int(k & 255)) for fn in CLASSES.values()]
         for k in unique],
        dtype=bool,
    ).reshape(len(unique), len(CLASSES))  # fmt: skip
    return per_key[inverse.reshape(-1)]


def average_precision(scores: Tensor, labels: Tensor) -> Tensor:
    """AP of each column of scores (P, M) as a ranking of each class of labels (P, C bool):
    M, C. Equal scores form one threshold (sklearn's average_precision_score convention):
    AP = sum over thresholds, from the highest, of (recall gained) x (precision there)."""
    P, M = scores.shape
    out = torch.empty(M, labels.shape[1], dtype=torch.float64)
    rank = torch.arange(1, P + 1, dtype=torch.float64).view(-1, 1)
    positives = labels.sum(0).double()  # C
    for start in range(0, M, CHUNK):
        values, order = scores[:, start : start + CHUNK].float().sort(dim=0, descending=True)
        end = torch.ones_like(values, dtype=torch.bool)  # last position of each tie group
        end[:-1] = values[:-1] != values[1:]
        for c in range(labels.shape[1]):
            tp = labels[:, c][order].double().cumsum(0)  # P, m: positives at or above
            tp_at_end = torch.where(end, tp, 0.0)
            before = torch.zeros_like(tp)
            before[1:] = tp_at_end.cummax(0).values[:-1]  # tp at the previous group's end
            gained = torch.where(end, (tp - before) * tp / rank, 0.0)
            out[start : start + CHUNK, c] = gained.sum(0) / positives[c].clamp(min=1)
    return out


@dataclass
class Selectivity:
    nap: np.ndarray  # M, C: normalised AP (NaN for classes too rare to score)
    sign: np.ndarray  # M, C: +1, or -1 where -activation ranked better (signed only)
    prevalence: np.ndarray  # C
    active: np.ndarray  # M, 2: share of positions where the neuron is > 0, and < 0

    @property
    def best(self) -> np.ndarray:
        """M: each neuron's best normalised AP over the scored classes."""
        return np.nanmax(self.nap, axis=1)

    @property
    def best_class(self) -> np.ndarray:
        return np.nanargmax(self.nap, axis=1)

    @property
    def active_share(self) -> np.ndarray:
        """M, C: share of positions where the neuron is on, in the direction it is scored in
        for each class (> 0, or < 0 where -activation ranked better)."""
        return np.where(self.sign > 0, self.active[:, :1], self.active[:, 1:])

    @property
    def dense(self) -> np.ndarray:
        """M: on at more than DENSE of the positions, in the direction of its best class."""
        rows = np.arange(len(self.nap))
        return self.active_share[rows, self.best_class] > DENSE


def selectivity(
    acts: Tensor, labels: np.ndarray, signed: bool = False, min_positives: int = MIN_POSITIVES
) -> Selectivity:
    """Normalised AP of every neuron (columns of acts, P x M) for every class (labels, P x C)."""
    lab = torch.as_tensor(labels)
    prevalence = lab.double().mean(0).numpy()
    scored = lab.sum(0).numpy() >= min_positives
    if not scored.any():
        raise ValueError(
            f"no class occurs {min_positives} times in {len(labels)} positions: give more text"
        )

    def normalised(a: Tensor) -> np.ndarray:
        ap = average_precision(a, lab).numpy()
        nap = (ap - prevalence) / np.maximum(1 - prevalence, 1e-12)
        nap[:, ~scored] = np.nan
        return nap

    nap = normalised(acts)
    sign = np.ones_like(nap)
    if signed:
        flipped = normalised(-acts)
        better = flipped > nap
        nap, sign = np.where(better, flipped, nap), np.where(better, -1.0, 1.0)
    active = torch.stack([(acts > 0).double().mean(0), (acts < 0).double().mean(0)], 1)
    return Selectivity(nap, sign, prevalence, active.numpy())


def share_curve(best: np.ndarray, thresholds: tuple[float, ...] = THRESHOLDS) -> list[float]:
    """Share of neurons whose best nAP is >= t, for each t."""
    return [float((best >= t).mean()) for t in thresholds]


def clustered_share(best: np.ndarray, t: float, clusters: np.ndarray | None) -> tuple[float, float]:
    """The share of readings with nAP >= t and its standard error, clustered: readings of one
    weight vector (clusters: M ids; None: every reading its own vector) count as one draw
    (the cluster-robust variance sum_g (sum_{i in g} (x_i - p))^2 / M^2)."""
    x = (best >= t).astype(np.float64)
    p = float(x.mean())
    if clusters is None:
        return p, float(np.sqrt(p * (1 - p) / len(x)))
    _, ids = np.unique(clusters, return_inverse=True)
    per_vector = np.bincount(ids, weights=x - p)
    return p, float(np.sqrt((per_vector**2).sum()) / len(x))


def share_z(ours: tuple[float, float], theirs: tuple[float, float]) -> float:
    """z of the difference of two shares from their (clustered) standard errors; 0 where
    neither varies (both 0% or both 100%: nothing to tell apart)."""
    se = float(np.hypot(ours[1], theirs[1]))
    return (ours[0] - theirs[0]) / se if se > 0 else 0.0


def equal_size_best(scores: Selectivity, n: int, draws: int = DRAWS, seed: int = 0) -> np.ndarray:
    """C: each class's best nAP among n neurons drawn at random (dense ones never count; the
    mean over `draws` draws): a model with more neurons gets no more chances at a high maximum."""
    nap = np.where(scores.active_share > DENSE, -np.inf, np.nan_to_num(scores.nap, nan=-np.inf))
    rng = np.random.default_rng(seed)
    drawn = [rng.choice(len(nap), size=min(n, len(nap)), replace=False) for _ in range(draws)]
    best = np.stack([nap[d].max(0) for d in drawn])  # draws, C
    best = np.where(np.isfinite(best), best, np.nan)  # a class unscored, or only dense drawn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN class: NaN
        return np.nanmean(best, axis=0)


def summarize(scores: Selectivity, class_names: list[str]) -> dict:
    """The distribution of the neurons' best scores and the best neuron of each class."""
    best = scores.best
    quantiles = {q: float(np.quantile(best, q)) for q in (0.5, 0.9, 0.99)}
    detectors = np.where(scores.active_share > DENSE, np.nan, scores.nap)  # dense ones apart
    per_class = {}
    for c, name in enumerate(class_names):
        column = detectors[:, c]
        if np.isnan(column).all():
            continue
        per_class[name] = {
            "best": float(np.nanmax(column)),
            "neuron": int(np.nanargmax(column)),
            "prevalence": float(scores.prevalence[c]),
            "neurons_above_0.5": int((column >= 0.5).sum()),
        }
    dense = scores.dense
    return {
        "neurons": len(best),
        "median": quantiles[0.5],
        "p90": quantiles[0.9],
        "p99": quantiles[0.99],
        "max": float(best.max()),
        "share_above_0.5": float((best >= 0.5).mean()),
        "thresholds": list(THRESHOLDS),
        "share_at_least": share_curve(best),
        "dense": {
            "neurons": int(dense.sum()),
            "share": float(dense.mean()),
            "median": float(np.median(best[dense])) if dense.any() else None,
        },
        "per_class": per_class,
    }


def top_positions(activation: Tensor, k: int) -> list[int]:
    """The k positions of the highest activations; among positions tied at the k-th value
    (a neuron that looks up the current byte gives every occurrence the same value), k spread
    evenly over the text instead of the first k."""
    values = activation.float()
    k = min(k, values.numel())
    threshold = values.topk(k).values[-1]
    above = torch.nonzero(values > threshold).flatten()
    above = above[values[above].argsort(descending=True, stable=True)].tolist()
    tied = torch.nonzero(values == threshold).flatten()
    need = k - len(above)
    picks = torch.linspace(0, len(tied) - 1, need).round().long() if need > 0 else []
    return above + [int(tied[i]) for i in picks]


def top_contexts(
    activation: Tensor,
    token_bytes: list[bytes],
    tokens: np.ndarray,
    k: int = 5,
    before: int = 24,
    after: int = 8,
    sign: float = 1.0,
) -> list[dict]:
    """The k positions where one neuron (activation: P) is highest (sign -1: lowest), each
    with the text around it: `before` tokens, the token itself, `after` tokens."""

    def text(a: int, b: int) -> str:
        piece = b"".join(token_bytes[i] for i in tokens[max(a, 0) : max(b, 0)])
        return piece.decode("utf-8", errors="replace")

    signed = sign * activation.float()
    return [
        {
            "position": t,
            "activation": float(activation[t]),
            "before": text(t - before, t),
            "token": text(t, t + 1),
            "after": text(t + 1, t + 1 + after),
        }
        for t in top_positions(signed, k)
    ]


def top_tokens(
    activation: Tensor,
    token_bytes: list[bytes],
    tokens: np.ndarray,
    k: int = 6,
    sign: float = 1.0,
    min_count: int = MIN_OCCURRENCES,
) -> list[dict]:
    """The k tokens on which one neuron (activation: P, at the first P tokens) is highest on
    average (sign -1: lowest), among tokens seen at least min_count times. The top contexts
    of a neuron that looks up the current byte all show its single best byte; these show the
    bytes next in line (a "lowercase" neuron: f, s, t, ...)."""
    ids = torch.as_tensor(np.asarray(tokens[: activation.shape[0]], dtype=np.int64))
    seen = torch.bincount(ids, minlength=len(token_bytes))
    total = torch.bincount(ids, weights=sign * activation.double(), minlength=len(token_bytes))
    mean = torch.where(seen >= min_count, total / seen.clamp(min=1), float("-inf"))
    order = mean.argsort(descending=True, stable=True)[: min(k, int((seen >= min_count).sum()))]
    return [
        {
            "token": token_bytes[i].decode("utf-8", errors="replace"),
            "mean": sign * float(mean[i]),
            "count": int(seen[i]),
        }
        for i in order.tolist()
    ]
