"""One LightningDataModule for every text dataset; subclasses only say where the text is."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import lightning as L
import numpy as np
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from bdh_pl.data.articles import article_spans, article_starts, token_offsets
from bdh_pl.data.cache import cached_tokens, default_cache_dir
from bdh_pl.data.sources import (
    SPLITS,
    SplitText,
    check_hub_for,
    fraction_split,
    hub_text,
    read_file,
    resolve_data_dir,
)
from bdh_pl.data.tokenizers import Tokenizer, count_bytes_and_words, get_tokenizer
from bdh_pl.data.windows import ArticleLanes, EvalWindows, RandomWindows, StreamLanes
from bdh_pl.errors import UserError


def ignore_ctrl_c(worker_id: int) -> None:
    """A DataLoader worker's start: a terminal's Ctrl-C reaches the whole process group, and
    the main process decides what it does (finish the step, save, stop)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def loader(dataset: Dataset, num_workers: int, **kwargs) -> DataLoader:
    """A DataLoader whose workers leave Ctrl-C to the main process."""
    init = ignore_ctrl_c if num_workers > 0 else None
    return DataLoader(dataset, num_workers=num_workers, worker_init_fn=init, **kwargs)


class ContiguousSampler(UnrepeatedDistributedSampler):
    """Each rank one contiguous piece of the windows, in order (a stream per rank); a
    DistributedSampler, so Lightning keeps it instead of putting its own."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        pieces = np.array_split(np.arange(len(dataset)), num_replicas)
        self.indices = pieces[rank].tolist()
        self.num_samples = len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples


class TextDataModule(L.LightningDataModule):
    """Tokenized splits served as random training windows and covering evaluation windows.

    Args:
        data_dir: local data root laid out as in the README's "Offline data" (default:
            $BDH_PL_DATA_DIR,
            else the Hugging Face hub).
        tokenizer: "byte", "gpt2", or a folder holding a GPT-2 tokenizer.
        block_size: context length of a window.
        batch_size: training windows per batch (per device).
        eval_batch_size: evaluation windows per batch (default: batch_size).
        eval_stride: evaluation stride; None means disjoint windows of block_size.
        cache_dir: where token files go (default: $BDH_PL_CACHE_DIR or ~/.cache/bdh_pl).
        seed: seed of the training windows.
        num_workers: DataLoader workers.
        train_fraction: train on the first this share of the training split only (for
            data-limited studies such as overfitting; validation and test stay whole).
        train_mode: "random" windows (nanoGPT), or "stream": consecutive windows of
            batch_size fixed lanes, the model carrying its state (detached) from one batch to
            the next (truncated BPTT; models with a recurrent state, BDH).
        stream_reset_windows: with train_mode stream, start the carried state afresh every
            this many windows (the text still goes on), so training reads states of up to
            stream_reset_windows x block_size tokens; default: never before the lane ends.
        stream_reset_articles: with train_mode stream, lanes of whole articles (WikiText's
            ` = Title = ` lines), read in windows that stop at an article's end, the state
            started afresh at every article (instead of stream_reset_windows).
        eval_mode: "windows" (each scored on its own, see eval_stride), or "stream": the
            split read in order as one stream, the model's state carried from window to window,
            so every token is scored once with all the text before it (BDH). The state starts
            empty at the start of the split; under DDP each rank scores one contiguous piece,
            starting empty.
    """

    dataset_name = "text"
    hub_dataset: str | None = None  # read from the Hugging Face hub when no data folder is set

    def __init__(
        self,
        data_dir: str | None = None,
        tokenizer: str = "byte",
        block_size: int = 256,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        eval_stride: int | None = None,
        cache_dir: str | None = None,
        seed: int = 1337,
        num_workers: int = 0,
        train_fraction: float = 1.0,
        train_mode: Literal["random", "stream"] = "random",
        eval_mode: Literal["windows", "stream"] = "windows",
        stream_reset_windows: int | None = None,
        stream_reset_articles: bool = False,
    ) -> None:
        super().__init__()
        for name, value in [
            ("block_size", block_size),
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size or 1),
            ("eval_stride", eval_stride or 1),
        ]:
            if value <= 0:
                raise UserError(f"data.{name} must be a positive integer, got {value}")
        if eval_stride is not None and eval_stride > block_size:
            raise UserError(
                f"data.eval_stride ({eval_stride}) must not exceed data.block_size ({block_size})"
            )
        if not 0 <= seed < 2**32:  # numpy's seed range
            raise UserError(f"data.seed must be in [0, 2**32), got {seed}")
        if num_workers < 0:
            raise UserError(f"data.num_workers must be >= 0, got {num_workers}")
        if eval_mode == "stream" and eval_stride not in (None, block_size):
            raise UserError(
                "data.eval_mode stream reads disjoint windows (the state carries the context):"
                " drop data.eval_stride"
            )
        if stream_reset_windows is not None and stream_reset_windows < 1:
            raise UserError(
                f"data.stream_reset_windows must be a positive integer, got {stream_reset_windows}"
            )
        if stream_reset_articles and stream_reset_windows is not None:
            raise UserError(
                "give data.stream_reset_articles or data.stream_reset_windows, not both"
            )
        if not 0 < train_fraction <= 1:
            raise UserError(f"data.train_fraction must be in (0, 1], got {train_fraction}")
        self.save_hyperparameters()
        self.data_root = resolve_data_dir(data_dir)
        self.tokenizer: Tokenizer = get_tokenizer(tokenizer, self.data_root)
        self.block_size = block_size
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.eval_stride = eval_stride
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.seed = seed
        self.num_workers = num_workers
        self.train_fraction = train_fraction
        self.train_mode, self.eval_mode = train_mode, eval_mode
        self.stream_reset_windows = stream_reset_windows
        self.stream_reset_articles = stream_reset_articles
        self.tokens: dict[str, np.ndarray] = {}
        # Training batches served as this many micro-batches (set by training/memory.py when a
        # batch's activations do not fit; the optimizer steps on the same windows).
        self.micro_batches = 1
        if self.data_root is None and self.hub_dataset is not None:
            check_hub_for(self.hub_dataset)  # no network: one line now, not retries later

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name

    def split_text(self, split: str) -> SplitText:
        """The raw UTF-8 bytes of one split: what subclasses provide."""
        raise NotImplementedError

    def split_tokens(self, split: str) -> np.ndarray:
        """Token ids of a split, tokenized once into the cache and memory-mapped after."""
        if split not in self.tokens:
            text = self.split_text(split)
            tokens = cached_tokens(text.data, self.tokenizer, self.cache_dir)
            if split == "train" and self.train_fraction < 1:
                tokens = tokens[: int(len(tokens) * self.train_fraction)]
            needed = self.block_size + 1 if split == "train" else 1
            if len(tokens) < needed:
                raise UserError(
                    f"{split} text from {text.origin} has {len(tokens)} tokens, fewer than the "
                    f"{needed} a {split} window needs: use more text, a smaller data.block_size"
                    " or a larger data.train_fraction"
                )
            self.tokens[split] = tokens
        return self.tokens[split]

    def article_spans(self, split: str) -> list[tuple[int, int]]:
        """[begin, end) token ranges of the split's articles (level-1 ` = Title = ` lines)."""
        tokens = self.split_tokens(split)
        text = self.split_text(split)
        starts = article_starts(text.data)
        if len(starts) == 0:
            raise UserError(
                f"{split} text from {text.origin} has no ` = Title = ` heading lines (WikiText's "
                "articles): read it without articles (data.stream_reset_windows, or context-curve "
                "without --per_article)"
            )
        token_bytes, _ = count_bytes_and_words(self.tokenizer, tokens)
        return article_spans(token_offsets(starts, token_bytes), len(tokens))

    def stage_splits(self, stage: str | None) -> tuple[str, ...]:
        stage = getattr(stage, "value", stage)  # Lightning passes a TrainerFn enum
        return {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(stage, SPLITS)

    def prepare_data(self) -> None:
        # Fails fast (before any logger writes) and fills the token cache on one process.
        for split in self.stage_splits(self.trainer.state.fn if self.trainer else None):
            self.split_tokens(split)

    def setup(self, stage: str | None = None) -> None:
        for split in self.stage_splits(stage):
            self.split_tokens(split)

    def train_dataloader(self) -> DataLoader:
        args = (self.split_tokens("train"), self.block_size, self.batch_size, self.seed)
        if self.train_mode == "stream" and self.stream_reset_articles:
            windows = ArticleLanes(*args, spans=self.article_spans("train"))
        else:
            windows = (StreamLanes if self.train_mode == "stream" else RandomWindows)(*args)
        if self.trainer is not None:
            # The one place the stream position is computed: on resume, skip what this run
            # already trained on; each batch then carries its index (for the dropout seed).
            windows.first_batch = self.trainer.global_step * self.trainer.accumulate_grad_batches
            windows.rank = self.trainer.global_rank
            windows.world_size = self.trainer.world_size
        windows.parts = self.micro_batches
        if self.train_mode == "stream":
            windows.reset_every = self.stream_reset_windows
            windows.lane_length()  # lanes too short: the error now, not in the loader
        return loader(windows, self.num_workers, batch_size=None)

    def eval_windows(self, split: str) -> EvalWindows:
        tokens = self.split_tokens(split)
        token_bytes, token_words = count_bytes_and_words(self.tokenizer, tokens)
        return EvalWindows(
            tokens,
            self.tokenizer.bos_id,
            self.block_size,
            self.eval_stride,
            token_bytes,
            token_words,
            carry_state=self.eval_mode == "stream",
        )

    def _eval_loader(self, split: str) -> DataLoader:
        windows = self.eval_windows(split)
        sampler = None
        distributed = self.trainer is not None and self.trainer.world_size > 1
        if self.eval_mode == "stream":
            # one stream in order: one window per batch, one contiguous piece per rank
            if distributed:
                sampler = ContiguousSampler(
                    windows, self.trainer.world_size, self.trainer.global_rank
                )
            return loader(windows, self.num_workers, batch_size=1, sampler=sampler)
        if distributed:
            # Lightning's default DistributedSampler pads ranks to equal length by repeating
            # windows, which would score some tokens twice: give each window to one rank.
            sampler = UnrepeatedDistributedSampler(
                windows,
                num_replicas=self.trainer.world_size,
                rank=self.trainer.global_rank,
                shuffle=False,
            )
        return loader(windows, self.num_workers, batch_size=self.eval_batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class TextFile(TextDataModule):
    """Your own text: one file split by fractions, or separate train/val/test files.

    One file (`path`): the first `fractions[0]` of its bytes train, the next `fractions[1]`
    validate, the rest test (cuts moved to the next character start). Separate files (`train`,
    `val`, `test`, like run_clm.py's --train_file/--validation_file and litgpt's TextFiles):
    each is a split as is, and only the files of the stage that runs are needed (`fit`: train
    and val; `validate`: val; `test`: test, scored whole). Any UTF-8 file; byte-level, any
    binary file.

    Args:
        path: one file, split by `fractions`.
        fractions: train, val and test shares of `path`, summing to 1.
        train: the training file (instead of `path`).
        val: the validation file.
        test: the test file.
    """

    dataset_name = "textfile"

    def __init__(
        self,
        path: str = "",
        fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        **kwargs,
    ) -> None:
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
            raise UserError(
                f"data.fractions must be three positive shares summing to 1, got {fractions}"
            )
        self.files = {"train": train, "val": val, "test": test}
        if path and any(self.files.values()):
            raise UserError(
                "give either data.path (one file, split by data.fractions) or data.train / "
                "data.val / data.test (one file per split), not both"
            )
        self.path, self.fractions = path, tuple(fractions)
        super().__init__(**kwargs)

    def source(self) -> tuple[np.ndarray, str]:
        if not self.path:
            raise UserError(
                "data.path is required: the text file to train on (or give data.train, "
                "data.val and data.test, one file per split)"
            )
        path = Path(self.path).expanduser()
        return read_file(path), str(path)

    def split_text(self, split: str) -> SplitText:
        if any(self.files.values()):
            name = self.files[split]
            if not name:
                given = ", ".join(f"data.{k}" for k, v in self.files.items() if v)
                raise UserError(
                    f"no {split} file: this stage needs data.{split}, only {given} is set "
                    f"(give --data.init_args.{split} PATH)"
                )
            path = Path(name).expanduser()
            return SplitText(read_file(path), str(path))
        data, origin = self.source()
        return SplitText(fraction_split(data, split, self.fractions), f"{origin} [{split}]")


class TinyShakespeare(TextFile):
    """Karpathy's tiny Shakespeare (1.1 MB). No official split: the first 90% of the bytes
    train, the next 5% validate, the last 5% test (as in the hub's karpathy/tiny_shakespeare)."""

    dataset_name = "tinyshakespeare"
    hub_dataset = "karpathy/tiny_shakespeare"

    def __init__(self, **kwargs) -> None:
        super().__init__(path="", fractions=(0.9, 0.05, 0.05), **kwargs)

    def source(self) -> tuple[np.ndarray, str]:
        if self.data_root is not None:
            path = self.data_root / "tinyshakespeare" / "input.txt"
            return read_file(path), str(path)
        data = np.concatenate([hub_text("karpathy/tiny_shakespeare", None, s) for s in SPLITS])
        return data, "hub karpathy/tiny_shakespeare"


class WikiText2(TextDataModule):
    """WikiText-2 (Merity et al. 2016), official train/valid/test splits.

    Args:
        variant: "raw" (original text) or "tokens" (rare words replaced by <unk>). The local
            data root may lack wiki.train.raw: train offline on "tokens"; "raw" valid/test still
            evaluate.
    """

    dataset_name = "wikitext2"
    hub_dataset = "Salesforce/wikitext"
    hub_configs = {"raw": "wikitext-2-raw-v1", "tokens": "wikitext-2-v1"}
    local_files = {"raw": ("wikitext-2-raw", "raw"), "tokens": ("wikitext-2", "tokens")}

    def __init__(self, variant: Literal["raw", "tokens"] = "tokens", **kwargs) -> None:
        if variant not in self.hub_configs:
            raise UserError(f"unknown data.variant {variant!r}: use 'raw' or 'tokens'")
        self.variant = variant
        super().__init__(**kwargs)

    def split_text(self, split: str) -> SplitText:
        file_split = {"val": "valid"}.get(split, split)
        if self.data_root is None:
            data = hub_text("Salesforce/wikitext", self.hub_configs[self.variant], split)
            return SplitText(
                data, f"hub Salesforce/wikitext {self.hub_configs[self.variant]} [{split}]"
            )
        folder, suffix = self.local_files[self.variant]
        path = self.data_root / folder / f"wiki.{file_split}.{suffix}"
        if not path.is_file() and self.variant == "raw" and split == "train":
            raise UserError(
                f"{path} not found (the offline data has no raw WikiText-2 train split): train "
                "with data.variant: tokens, or unset the data dir to use the hub"
            )
        return SplitText(read_file(path), str(path))
