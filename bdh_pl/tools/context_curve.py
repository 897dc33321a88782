"""`python -m bdh_pl context-curve`: bits per byte by how much context each byte had.

    python -m bdh_pl context-curve --ckpt_path bdh.ckpt llama.ckpt --out results/long-context

Each checkpoint scores the test split of its dataset (or --text FILE) token by token:
  - a model with a recurrent state (BDH) reads the split as one stream, its state carried from
    window to window (`data.eval_mode stream`): a token's context is all the text before it;
  - any other model (GPT-2, LLaMA) reads sliding windows of its block size, advanced by
    --stride (default half a block, each token scored once, as `data.eval_stride`): a token's
    context is the text before it inside its window, at most one block.
--windows also scores stateful models on disjoint windows, as `test` does by default.
--per_article reads each article of the split (WikiText's ` = Title = ` lines) on its own, in
each of these ways, a stream from an empty state at its heading, and pools the buckets over
the articles, so that the short-context buckets rest on many bytes. The
bytes are then bucketed by their context in bytes (--buckets, the edges) and each bucket's
bits per byte is its tokens' NLL over its bytes: whether a model gains from context it never
saw in training shows right of its training length. Writes context_curve.json (the table)
and context_curve.png under --out; `--replot DIR` redraws DIR/context_curve.png from its JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bdh_pl.errors import COUNT, MAX_COUNT, UserError, check_options, count
from bdh_pl.fileio import check_writable, write_json
from bdh_pl.tools.options import Loading, check_paths, parse

if TYPE_CHECKING:
    from bdh_pl.data.windows import EvalWindows
    from bdh_pl.training.language_model import LanguageModel

BUCKETS = [0, 64, 256, 1024, 4096, 16384, 65536]  # bytes of context; the last bucket is open
MIN_BYTES = 1000  # a bucket of fewer bytes is drawn hollow: its bpb is a noisy estimate


@dataclasses.dataclass(kw_only=True)
class Curve(Loading):
    """What is scored, and how

    Args:
        ckpt_path: bdh-pl checkpoints, BDH folders or plain BDH weights (with --n_layer)
        replot: redraw DIR/context_curve.png from DIR's JSON (instead of --ckpt_path)
        label: a name per checkpoint
        text: test text file (default: test split)
        stride: sliding stride (default: half a block)
        windows: also disjoint windows of the block (every model)
        per_article: each article its own stream (` = Title = `)
        buckets: the buckets' edges, in bytes of context
        batch_size: windows per batch
        max_tokens: score the first N tokens only
        out: folder for the JSON and the chart (not with --replot)
    """

    ckpt_path: list[str] | None = None
    replot: str | None = None
    label: list[str] | None = None
    text: str | None = None
    stride: int | None = None
    windows: bool = False
    per_article: bool = False
    buckets: list[int] = dataclasses.field(default_factory=lambda: list(BUCKETS))
    batch_size: int = 32
    max_tokens: int | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        if (self.ckpt_path is None) == (self.replot is None):
            raise UserError("give either --ckpt_path (to score) or --replot DIR (to redraw)")
        if self.ckpt_path and not self.out:
            raise UserError("--out is required with --ckpt_path")
        if self.label and len(self.label) != len(self.ckpt_path or []):
            raise UserError(f"give one --label per checkpoint ({len(self.ckpt_path or [])})")
        edges = self.buckets
        if edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise UserError(f"--buckets must start at 0 and increase, got {edges}")
        check_options(
            [
                ("--batch_size", self.batch_size, count(), COUNT),
                ("--stride", self.stride, count(), COUNT),  # 0 is no default stride
                ("--max_tokens", self.max_tokens, count(), COUNT),  # 0 would score nothing
                ("--buckets", max(edges), count(0), f"edges in [0, {MAX_COUNT}]"),
            ]
        )
        super().__post_init__()
        # Everything that can be checked before the models are read and scored (minutes).
        out = self.out or self.replot
        check_writable(
            Path(out), f"give {'--out' if self.out else '--replot'} a folder you can write"
        )
        if self.text and not Path(self.text).is_file():
            raise UserError(f"--text {self.text!r} is not a file: give the text to score")
        check_paths("--ckpt_path", self.ckpt_path or [])


def score_tokens(
    model: LanguageModel, windows: EvalWindows, token_bytes: np.ndarray, batch_size: int, device
) -> tuple[np.ndarray, np.ndarray]:
    """Each token's NLL (nats) and its context in bytes, in split order."""
    import torch
    from torch.utils.data import DataLoader

    nll = np.zeros(len(windows.tokens), dtype=np.float64)
    loader = DataLoader(windows, batch_size=1 if windows.carry_state else batch_size)
    w = 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            batch = {k: v.to(device) for k, v in batch.items()}
            for row in model.token_nll(batch, i).double().cpu().numpy():  # T per window
                begin, seen, end = (
                    int(a[w]) for a in (windows.begins, windows.first_scored, windows.ends)
                )
                nll[seen:end] = row[seen - begin : end - begin]
                w += 1
    return nll, token_contexts(windows, token_bytes)


def score_pieces(
    model: LanguageModel,
    make_windows,
    spans: list[tuple[int, int]],
    token_bytes: np.ndarray,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """score_tokens over each [begin, end) of spans read on its own (its context counted from
    its begin), concatenated in order; make_windows(begin, end) gives its EvalWindows."""
    parts = [
        score_tokens(model, make_windows(a, b), token_bytes[a:b], batch_size, model.device)
        for a, b in spans
    ]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def token_contexts(windows: EvalWindows, token_bytes: np.ndarray) -> np.ndarray:
    """Each token's context in bytes: in a stream the whole split before it; in a window its
    inputs, which start at the token before the window's first (or at the split's start)."""
    before = np.concatenate([[0], np.cumsum(token_bytes, dtype=np.int64)])  # bytes before t
    context = np.zeros(len(windows.tokens), dtype=np.int64)
    for begin, seen, end in zip(windows.begins, windows.first_scored, windows.ends, strict=True):
        origin = 0 if windows.carry_state else max(int(begin) - 1, 0)
        context[seen:end] = before[seen:end] - before[origin]
    return context


def bucket_table(
    nll: np.ndarray, context: np.ndarray, token_bytes: np.ndarray, edges: list[int]
) -> list[dict[str, Any]]:
    """Bits per byte of the tokens whose context falls in each [edge, next edge)."""
    rows = []
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        mask = (context >= lo) & (context < (hi if hi is not None else np.inf))
        n_bytes = int(token_bytes[mask].sum())
        bpb = float(nll[mask].sum() / math.log(2) / n_bytes) if n_bytes else None
        # where the bucket's bytes are: their mean context (a window's last byte sits at 256)
        mean = float((context[mask] * token_bytes[mask]).sum() / n_bytes) if n_bytes else None
        rows.append(
            {"from": lo, "to": hi, "bytes": n_bytes, "tokens": int(mask.sum()), "bpb": bpb,
             "mean_context": mean}
        )  # fmt: skip
    return rows


def paired_gain(
    nll_windows: np.ndarray,
    nll_stream: np.ndarray,
    context: np.ndarray,
    token_bytes: np.ndarray,
    article: np.ndarray,
    edges: list[int],
    resamples: int = 1000,
) -> list[dict[str, Any]]:
    """Per bucket of stream context: how many bits per byte the stream saves over windows on the
    same bytes, with a 5-95% band from resampling whole articles (their bytes are not
    independent); no band where the bucket's bytes lie in one article (or a single stream)."""
    n_articles = int(article.max()) + 1
    picks = np.random.default_rng(0).integers(0, n_articles, size=(resamples, n_articles))
    rows = []
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        mask = (context >= lo) & (context < (hi if hi is not None else np.inf))
        saved = np.bincount(article[mask], nll_windows[mask] - nll_stream[mask], n_articles)
        n_bytes = np.bincount(article[mask], token_bytes[mask], n_articles)
        row = {"from": lo, "to": hi, "bytes": int(n_bytes.sum()), "gain_bpb": None, "band": None}
        if n_bytes.sum():
            row["gain_bpb"] = float(saved.sum() / math.log(2) / n_bytes.sum())
        if (n_bytes > 0).sum() > 1:  # one article's bytes: resampling cannot tell its spread
            sums = saved[picks].sum(1) / math.log(2), n_bytes[picks].sum(1)
            gains = sums[0][sums[1] > 0] / sums[1][sums[1] > 0]
            row["band"] = [float(q) for q in np.quantile(gains, [0.05, 0.95])]
        rows.append(row)
    return rows


def curve(args: Curve, path: str, label: str) -> list[dict[str, Any]]:
    """The rows of one checkpoint: stream (stateful) or sliding windows, plus disjoint windows
    with --windows."""
    from bdh_pl.data.tokenizers import count_bytes_and_words
    from bdh_pl.data.windows import EvalWindows
    from bdh_pl.tools.common import checkpoint_data
    from bdh_pl.training.loading import load_model

    loaded = load_model(path, args.n_layer)
    model = loaded.model.to(args.device)
    data, source = checkpoint_data(loaded, path, args.text, args.data_dir)
    split = data.split_tokens("test")
    tokens = split[: args.max_tokens]
    token_bytes, token_words = count_bytes_and_words(data.tokenizer, tokens)
    block = model.block_size
    # --windows: disjoint windows of the block for every model, so that each bucket pools every
    # window's positions (sliding windows put only an article's opening bytes under 64 bytes)
    modes = ["stream" if model.has_state else "sliding", *(["windows"] if args.windows else [])]
    spans = [(0, len(tokens))]
    if args.per_article:  # the articles of the split, up to --max_tokens
        spans = [(a, min(b, len(tokens))) for a, b in data.article_spans("test") if a < len(tokens)]
    rows, nlls, contexts = [], {}, {}
    for mode in modes:
        stride = (args.stride or max(block // 2, 1)) if mode == "sliding" else block
        if stride > block:
            raise UserError(f"--stride {stride} exceeds the block size {block} of {path}")

        def windows(a: int, b: int, stride: int = stride, mode: str = mode) -> EvalWindows:
            return EvalWindows(
                tokens[a:b], data.tokenizer.bos_id, block, stride, token_bytes[a:b],
                token_words[a:b], carry_state=mode == "stream",
            )  # fmt: skip

        nll, context = score_pieces(model, windows, spans, token_bytes, args.batch_size)
        nlls[mode], contexts[mode] = nll, context
        print(f"context-curve: {label} {mode}: {len(tokens):,} tokens scored", file=sys.stderr)
        rows.append(
            {
                "label": label,
                "checkpoint": path,
                "mode": mode,
                "block_size": block,
                "stride": stride,
                "articles": len(spans) if args.per_article else None,  # None: one stream
                "text": source,
                "tokens": len(tokens),
                "bytes": int(token_bytes.sum()),
                "split_tokens": len(split),
                "split_bytes": int(count_bytes_and_words(data.tokenizer, split)[0].sum()),
                "bpb": float(nll.sum() / math.log(2) / token_bytes.sum()),
                "buckets": bucket_table(nll, context, token_bytes, args.buckets),
            }
        )
    if "stream" in nlls and "windows" in nlls:
        # The same bytes read both ways: each stream bucket's bytes as the windows scored them
        # (at most a block of context), so that a gain from reading further is not a difference
        # between the bytes that sit early and late in an article.
        rows[0]["windows_same_bytes"] = bucket_table(
            nlls["windows"], contexts["stream"], token_bytes, args.buckets
        )
        article = np.repeat(np.arange(len(spans)), [b - a for a, b in spans])
        rows[0]["stream_gain"] = paired_gain(
            nlls["windows"], nlls["stream"], contexts["stream"], token_bytes, article, args.buckets
        )
    return rows


def figure_note(rows: list[dict[str, Any]]) -> str | None:
    """What the chart leaves out (the part of the split that was not scored), and how the
    split was read (per article: context counted from each article's heading)."""
    row, notes = rows[0], []
    if row.get("articles"):
        notes.append(
            f"Each of the {row['articles']} articles read on its own from its heading (a "
            "stream: from an empty state); buckets pooled over the articles."
        )
    if row.get("split_bytes") and row["bytes"] < row["split_bytes"]:
        notes.append(
            f"Only the first {row['bytes']:,} of the test split's {row['split_bytes']:,} bytes "
            "were scored."
        )
    return " ".join(notes) or None


def draw(rows: list[dict[str, Any]], folder: Path) -> Path:
    """context_curve.png, and stream_gain.png where a stream was also read in windows."""
    from bdh_pl.charts import context_figure, save_figure, stream_gain_figure

    gain = stream_gain_figure(rows)
    if gain is not None:
        save_figure(gain, folder / "stream_gain.png")
    return save_figure(
        context_figure(rows, MIN_BYTES, figure_note(rows)), folder / "context_curve.png"
    )


def replot(folder: str) -> Path:
    path = Path(folder) / "context_curve.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["runs"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path} is not a context_curve.json ({err}); rerun context-curve"
        ) from None
    return draw(rows, path.parent)


def context_curve(args: Curve) -> None:
    """Score each --ckpt_path by context length into --out, or redraw --replot's charts."""
    if args.replot:
        print(replot(args.replot))
        return
    labels = args.label or [Path(p).stem for p in args.ckpt_path]
    rows = [
        row
        for path, label in zip(args.ckpt_path, labels, strict=True)
        for row in curve(args, path, label)
    ]
    out = Path(args.out)
    write_json(out / "context_curve.json", {"buckets": args.buckets, "runs": rows})
    draw(rows, out)
    for row in rows:
        cells = " ".join(f"{b['bpb']:.3f}" if b["bpb"] is not None else "-" for b in row["buckets"])
        print(f"{row['label']:>16} {row['mode']:>8} bpb {row['bpb']:.4f} | {cells}")


def main(argv: list[str]) -> None:
    context_curve(**parse(context_curve, argv, "context-curve"))
