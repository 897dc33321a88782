"""The cross-tokenizer numbers, checked against computations that do not use the project's code:
Hugging Face's own loss window by window, a hand loop for the sliding window, and bytes and
words counted on the raw text. The text is a slice of the real WikiText-2 raw test file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from bdh_pl.cli import main
from bdh_pl.data import WikiText2
from bdh_pl.models.bdh import BDHConfig
from bdh_pl.models.hf import PretrainedGPT2
from bdh_pl.training.lit_models import BDHLM, PretrainedGPT2LM

REPO = Path(__file__).resolve().parents[2]
BLOCK = 64
EOS = 50256  # GPT-2's <|endoftext|>: the context of the first token, as in lm-evaluation-harness


@pytest.fixture(scope="module")
def text_root(tmp_path_factory, data_dir):
    """A data root whose wiki.test.raw is the first 24 lines of the real one (multi-byte UTF-8
    included), next to the real GPT-2 tokenizer."""
    root = tmp_path_factory.mktemp("wikitext-slice")
    lines = (data_dir / "wikitext-2-raw" / "wiki.test.raw").read_bytes().split(b"\n")[:24]
    (root / "wikitext-2-raw").mkdir()
    (root / "wikitext-2-raw" / "wiki.test.raw").write_bytes(b"\n".join(lines) + b"\n")
    (root / "gpt2-tokenizer").symlink_to(data_dir / "gpt2-tokenizer")
    return root


@pytest.fixture(scope="module")
def raw_text(text_root) -> bytes:
    data = (text_root / "wikitext-2-raw" / "wiki.test.raw").read_bytes()
    assert len(data) > len(data.decode("utf-8"))  # some characters take several bytes
    return data


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=50257, n_positions=BLOCK, n_layer=2, n_head=2, n_embd=32)
    path = tmp_path_factory.mktemp("tiny-gpt2")
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_model(gpt2_dir):
    return GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()


@pytest.fixture(scope="module")
def stream(data_dir, raw_text) -> list[int]:
    """<|endoftext|> then the text's GPT-2 tokens, from transformers' tokenizer directly."""
    tok = GPT2TokenizerFast.from_pretrained(data_dir / "gpt2-tokenizer")
    return [EOS, *tok(raw_text.decode("utf-8"))["input_ids"]]


def run_test(model: L.LightningModule, text_root, session_cache, **data_args) -> dict:
    data = WikiText2(
        variant="raw",
        data_dir=str(text_root),
        cache_dir=str(session_cache),
        block_size=BLOCK,
        eval_batch_size=16,
        **data_args,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    return metrics


@pytest.fixture(scope="module")
def gpt2_metrics(gpt2_dir, text_root, session_cache) -> dict:
    model = PretrainedGPT2LM(
        PretrainedGPT2(name_or_path=str(gpt2_dir), vocab_size=50257, block_size=BLOCK)
    )
    return run_test(model, text_root, session_cache, tokenizer="gpt2")


def test_loss_is_transformers_own_loss(gpt2_metrics, hf_model, stream, raw_text):
    # Disjoint windows: inputs stream[b : b+BLOCK], targets the next tokens. Given shift_labels,
    # transformers' own causal-LM loss scores every target (labels alone drop the last one).
    total_nll, n_targets = 0.0, 0
    with torch.no_grad():
        for begin in range(0, len(stream) - 1, BLOCK):
            ids = torch.tensor([stream[begin : begin + BLOCK + 1]])
            targets = ids[:, 1:]
            loss = hf_model(input_ids=ids[:, :-1], labels=targets, shift_labels=targets).loss
            total_nll += loss.item() * targets.numel()
            n_targets += targets.numel()
    assert gpt2_metrics["test/tokens"] == n_targets == len(stream) - 1
    assert gpt2_metrics["test/loss"] == pytest.approx(total_nll / n_targets, abs=1e-5)
    n_bytes, n_words = len(raw_text), len(raw_text.split())  # bytes.split: ASCII whitespace
    assert gpt2_metrics["test/bytes"] == n_bytes
    assert gpt2_metrics["test/words"] == n_words
    bpb = total_nll / math.log(2) / n_bytes
    assert gpt2_metrics["test/bpb"] == pytest.approx(bpb, rel=1e-6)
    assert gpt2_metrics["test/byte_ppl"] == pytest.approx(2**bpb, rel=1e-6)
    assert gpt2_metrics["test/word_ppl"] == pytest.approx(math.exp(total_nll / n_words), rel=1e-5)


def sliding_window_nll(model, stream: list[int], block: int, stride: int) -> tuple[float, int]:
    """Hugging Face's "perplexity of fixed-length models" loop: each window moves by `stride`
    and scores only the targets no earlier window scored."""
    n = len(stream) - 1  # targets are stream[1..n]
    total, scored, prev_end = 0.0, 0, 0
    with torch.no_grad():
        for begin in range(0, n, stride):
            end = min(begin + block, n)
            ids = torch.tensor([stream[begin:end]])
            targets = torch.tensor(stream[begin + 1 : end + 1])
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
            new = slice(prev_end - begin, end - begin)
            total -= logp[new].gather(1, targets[new, None]).sum().item()
            scored += end - prev_end
            prev_end = end
            if end == n:
                break
    return total, scored


def test_sliding_window(gpt2_dir, gpt2_metrics, hf_model, stream, text_root, session_cache):
    def lm():
        return PretrainedGPT2LM(
            PretrainedGPT2(name_or_path=str(gpt2_dir), vocab_size=50257, block_size=BLOCK)
        )

    full_stride = run_test(lm(), text_root, session_cache, tokenizer="gpt2", eval_stride=BLOCK)
    for key in ("test/loss", "test/tokens", "test/bytes", "test/words", "test/bpb"):
        assert full_stride[key] == gpt2_metrics[key]

    sliding = run_test(lm(), text_root, session_cache, tokenizer="gpt2", eval_stride=24)
    for key in ("test/tokens", "test/bytes", "test/words"):  # every token scored once
        assert sliding[key] == gpt2_metrics[key]
    nll, scored = sliding_window_nll(hf_model, stream, BLOCK, 24)
    assert scored == sliding["test/tokens"]
    assert sliding["test/loss"] == pytest.approx(nll / scored, abs=1e-5)


def test_bdh_and_gpt2_count_the_same_bytes_and_words(gpt2_metrics, text_root, session_cache):
    sizes = {"n_layer": 1, "n_embd": 32, "n_head": 2, "mlp_internal_dim_multiplier": 4}
    bdh = BDHLM(BDHConfig(**sizes, dropout=0.0, block_size=BLOCK))
    bdh_metrics = run_test(bdh, text_root, session_cache, tokenizer="byte")
    assert bdh_metrics["test/tokens"] == bdh_metrics["test/bytes"]  # one token per byte
    for key in ("test/bytes", "test/words"):
        assert bdh_metrics[key] == gpt2_metrics[key]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")
def test_cli_zero_shot_gpt2_matches(gpt2_dir, gpt2_metrics, text_root, data_dir, tmp_path):
    # The command, `test --config configs/wikitext2.yaml --config configs/model/gpt2.yaml`,
    # with the checkpoint and data given as local folders.
    main(
        [
            "test",
            *("--config", str(REPO / "configs" / "wikitext2.yaml")),
            *("--config", str(REPO / "configs" / "model" / "gpt2.yaml")),
            *("--model.init_args.config.name_or_path", str(gpt2_dir)),
            *("--data.init_args.data_dir", str(text_root), "--data.init_args.variant", "raw"),
            *("--data.init_args.block_size", str(BLOCK), "--trainer.precision", "32-true"),
            *("--trainer.default_root_dir", str(tmp_path)),
            *("--trainer.enable_progress_bar", "false"),
        ]
    )
    record = json.loads((tmp_path / "version_0" / "test_metrics.json").read_text())
    assert record["model"] == "PretrainedGPT2LM" and record["tokenizer"] == "gpt2"
    assert record["metrics"]["test/loss"] == pytest.approx(gpt2_metrics["test/loss"], abs=1e-6)
    assert record["metrics"]["test/bytes"] == gpt2_metrics["test/bytes"]
