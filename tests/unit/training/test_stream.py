"""BDH without a context window: a stream scored with its state carried, and training on
consecutive windows with the state carried from batch to batch (truncated BPTT)."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bdh_pl.data import TextFile
from bdh_pl.data.articles import article_spans, article_starts, token_offsets
from bdh_pl.data.windows import ArticleLanes, EvalWindows, StreamLanes
from bdh_pl.models.bdh import BDHConfig, BDHExecution
from bdh_pl.training.lit_models import BDHLM

TINY = dict(n_layer=2, n_embd=32, n_head=2, mlp_internal_dim_multiplier=4, dropout=0.0)


def tiny_bdh(fused: bool = True, **overrides) -> BDHLM:
    torch.manual_seed(0)
    model = BDHLM(BDHConfig(**{**TINY, "block_size": 16, **overrides}), BDHExecution(fused))
    return model.eval()


def text_tokens(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(32, 127, size=n).astype(np.uint16)


def eval_windows(tokens: np.ndarray, block: int, carry: bool) -> EvalWindows:
    ones = np.ones(len(tokens), dtype=np.int64)
    return EvalWindows(tokens, 10, block, None, ones, ones, carry_state=carry)


def module_nll(model: BDHLM, windows: EvalWindows, reset_every_window: bool = False) -> np.ndarray:
    """Each target's NLL in split order, as validation/test compute it."""
    out = []
    with torch.no_grad():
        for i, batch in enumerate(DataLoader(windows, batch_size=1)):
            nll = model.token_nll(batch, 0 if reset_every_window else i)[0]
            out.append(nll[batch["targets"][0] != -100])
    return torch.cat(out).numpy()


def naive_prefix_nll(model: BDHLM, tokens: np.ndarray, bos: int = 10) -> np.ndarray:
    """Each position scored by a fresh forward over the whole text before it (quadratic)."""
    stream = torch.tensor([bos, *tokens.tolist()])
    out = []
    with torch.no_grad():
        for t in range(len(tokens)):
            logits = model.network(stream[None, : t + 1])[0, -1]
            out.append(F.cross_entropy(logits[None], stream[t + 1 : t + 2]).item())
    return np.array(out)


@pytest.mark.parametrize(
    ("fused", "attn_decay"), [(False, "none"), (True, "none"), (False, "alibi"), (True, "learned")]
)
def test_stream_mode_equals_a_naive_full_prefix_loop(fused, attn_decay):
    """Damped too: the decayed state carried across windows scores like a re-read prefix."""
    model = tiny_bdh(fused=fused, attn_decay=attn_decay)
    tokens = text_tokens(75)  # 5 windows of 16, the last one short
    stream = module_nll(model, eval_windows(tokens, 16, carry=True))
    np.testing.assert_allclose(stream, naive_prefix_nll(model, tokens), rtol=0, atol=1e-5)


def test_stream_reset_every_window_equals_disjoint_windows():
    model = tiny_bdh()
    tokens = text_tokens(70)
    reset = module_nll(model, eval_windows(tokens, 16, carry=True), reset_every_window=True)
    windows = module_nll(model, eval_windows(tokens, 16, carry=False))
    np.testing.assert_allclose(reset, windows, rtol=0, atol=1e-5)
    carried = module_nll(model, eval_windows(tokens, 16, carry=True))
    assert np.abs(carried[16:] - windows[16:]).max() > 1e-3  # the state does change the scores


def test_test_in_stream_mode_scores_every_byte_once_with_all_the_text_before(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_bytes(bytes(text_tokens(2000, seed=1).tolist()))
    data = TextFile(
        path=str(text), block_size=16, cache_dir=str(tmp_path), eval_mode="stream",
        eval_batch_size=7,
    )  # fmt: skip
    model = tiny_bdh()
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    tokens = data.split_tokens("test")
    expected = naive_prefix_nll(model, tokens, bos=data.tokenizer.bos_id)
    assert metrics["test/tokens"] == len(tokens)
    assert metrics["test/loss"] == pytest.approx(expected.mean(), abs=1e-5)


def test_stream_lanes_continue_from_batch_to_batch():
    tokens = np.arange(1000) % 60000
    lanes = StreamLanes(tokens, block_size=10, batch_size=4, seed=0)
    lane = lanes.lane_length()  # 999 // 4 = 249: 24 windows a lane
    first, second = lanes.batch(0), lanes.batch(1)
    assert int(first["position"]) == 0 and int(second["position"]) == 10
    for b in range(4):
        assert first["input_ids"][b, 0] == b * lane  # lane b starts at its offset
        assert second["input_ids"][b, 0] == first["targets"][b, -1]  # and goes on
    assert int(lanes.batch(24)["position"]) == 0  # the lanes start again
    lanes.reset_every = 5
    assert [int(lanes.batch(i)["position"]) for i in (4, 5, 6)] == [40, 0, 10]
    assert lanes.batch(5)["input_ids"][0, 0] == lanes.batch(4)["targets"][0, -1]  # text goes on
    lanes.reset_every = None
    assert torch.equal(lanes.batch(24)["input_ids"], first["input_ids"])
    other_rank = StreamLanes(tokens, 10, 4, 0)
    other_rank.rank, other_rank.world_size, lanes.world_size = 1, 2, 2
    rows = torch.cat([lanes.batch(3)["input_ids"], other_rank.batch(3)["input_ids"]])
    assert len(set(rows[:, 0].tolist())) == 8  # every rank its own lanes


@pytest.mark.parametrize("fused", [False, True])
def test_carried_state_training_reads_the_whole_lane_and_backpropagates(fused):
    model = tiny_bdh(fused=fused).train()
    tokens = text_tokens(400)
    lanes = StreamLanes(tokens, block_size=16, batch_size=3, seed=0)
    batches = [lanes.batch(i) for i in range(3)]
    for batch in batches:
        logits = model._train_logits(batch)
        F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.network.parameters())
    # the third batch's logits saw both windows before it: as one forward over the lane
    whole = torch.cat([b["input_ids"] for b in batches], dim=1)  # 3, 48
    with torch.no_grad():
        expected = model.network(whole)[:, 32:]
    torch.testing.assert_close(logits.detach(), expected, atol=1e-5, rtol=0)


def test_carried_state_gradients_equal_between_fused_and_reference():
    tokens = text_tokens(400)
    lanes = StreamLanes(tokens, block_size=16, batch_size=2, seed=0)
    grads = []
    for fused in (False, True):
        model = tiny_bdh(fused=fused).train()
        for i in range(2):
            batch = lanes.batch(i)
            model.zero_grad()
            logits = model._train_logits(batch)
            F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten()).backward()
        grads.append({n: p.grad.clone() for n, p in model.network.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attn_decay", ["none", "learned"])
def test_the_carried_state_travels_in_the_checkpoint(attn_decay):
    tokens = text_tokens(400)
    lanes = StreamLanes(tokens, block_size=16, batch_size=2, seed=0)
    model = tiny_bdh(attn_decay=attn_decay)
    with torch.no_grad():
        for i in range(2):
            model._train_logits(lanes.batch(i))
    model.trainer = L.Trainer(logger=False, enable_progress_bar=False)
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    assert checkpoint["carried_state"]["pos"] == 32
    resumed, fresh = tiny_bdh(attn_decay=attn_decay), tiny_bdh(attn_decay=attn_decay)
    resumed.on_load_checkpoint(checkpoint)
    fresh.on_load_checkpoint({})
    with torch.no_grad():
        expected = model._train_logits(lanes.batch(2))
        torch.testing.assert_close(resumed._train_logits(lanes.batch(2)), expected)
        assert not torch.allclose(fresh._train_logits(lanes.batch(2)), expected, atol=1e-3)


def article_text(seed: int = 0) -> tuple[bytes, list[int]]:
    """WikiText-like text: articles of random lengths under ` = Title = ` lines, with level-2
    headings inside (not article starts); and the byte offsets of the articles' headings."""
    rng = np.random.default_rng(seed)
    text, starts = b" \n", []
    for i, n in enumerate([40, 7, 90, 33, 61, 25]):
        starts.append(len(text))
        body = bytes(rng.integers(97, 123, size=n).tolist())
        text += (
            b" = Title %d = \n \n " % i + body[: n // 2] + b" \n = = Part = = \n" + body[n // 2 :]
        )
        text += b" \n \n"
    return text, starts


def test_articles_start_at_level_one_headings_only():
    text, starts = article_text()
    assert article_starts(text).tolist() == starts
    spans = article_spans(np.array(starts), len(text))
    assert spans[0] == (0, starts[1]) and spans[-1] == (starts[-1], len(text))  # the lead text
    assert [b for _, b in spans[:-1]] == [a for a, _ in spans[1:]]  # they tile the text
    # BPE tokens: the heading's byte offset maps to the token that starts there
    assert token_offsets(np.array([0, 3, 4, 9, 6]), np.array([3, 1, 5, 2])).tolist() == [
        0,
        1,
        2,
        3,
        2,
    ]


def test_article_lanes_reset_the_state_where_each_article_starts():
    """Windows never cross an article; a row whose window starts an article is flagged; read
    with the state carried and reset there, every logit equals a fresh read of its article
    from its first byte (damped model)."""
    text, starts = article_text(1)
    tokens = np.frombuffer(text, dtype=np.uint8).astype(np.uint16)
    spans = article_spans(np.array(starts), len(tokens))
    lanes = ArticleLanes(tokens, block_size=16, batch_size=2, seed=0, spans=spans)
    begin, length, first = lanes.plan()
    K = begin.shape[1]
    model = tiny_bdh(attn_decay="learned")
    article_of = np.searchsorted([a for a, _ in spans], np.arange(len(tokens)), side="right") - 1
    with torch.no_grad():
        for k in range(K + 1):  # and once round: the lanes start again
            batch = lanes.batch(k)
            logits = model._train_logits(batch)
            for row in range(2):
                s, n = int(begin[row, k % K]), int(length[row, k % K])
                a = spans[article_of[s]][0]
                assert article_of[s + n - 1] == article_of[s]  # inside one article
                assert bool(batch["reset"][row]) == (s == a)
                assert (batch["targets"][row, n:] == -100).all()
                fresh = model.network(torch.from_numpy(tokens[a : s + n].astype(np.int64))[None])
                torch.testing.assert_close(logits[row, :n], fresh[0, s - a :], atol=1e-5, rtol=0)
    read = sorted(int(s) for s in begin[:, :K][first[:, :K]])
    assert len(read) >= 4 and set(read) <= {a for a, _ in spans}  # whole articles, in lanes
