"""The one LightningModule for causal language models.

The network is a plain nn.Module mapping token ids (B, T) to logits (B, T, V); subclasses
(lit_models.py) only say how to build it. Everything else, training step, evaluation metrics,
optimiser and schedule, lives here once for BDH and every baseline.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import grad_norm
from torch import nn

from bdh_pl.data.windows import IGNORE_INDEX
from bdh_pl.errors import UserError
from bdh_pl.training.metrics import LN2, LanguageModelingMetric, count_parameters
from bdh_pl.training.schedule import lr_factor, warmup_length

COUNTS = ("tokens", "bytes", "words")  # what a split holds, not how well it is predicted


class LanguageModel(L.LightningModule):
    """Training and evaluation shared by all models.

    A subclass takes its typed configs whole and passes them here: `config`, the network's
    (its sizes, with vocab_size and block_size set from the data by the CLI), `training`, a
    TrainingConfig, and any other (BDH's `execution`); it builds its network from them in
    `build_network`. Each is kept as an attribute of the same name (`training` as
    `training_config`: nn.Module's `training` is the train/eval flag) and saved as a plain
    dict in the checkpoint's hyperparameters.
    """

    # The data tokenizer the network needs: "byte", "gpt2", or "any" (sized from the data).
    tokenizer_need: ClassVar[str] = "any"
    # The config fields ("group.field", or a whole "group") that change how the same function
    # is computed, not which: a checkpoint may be evaluated with other values of these.
    execution_options: ClassVar[frozenset[str]] = frozenset({"training.compile"})

    def __init__(self, **configs: Any) -> None:
        # Keywords only, untyped here: each subclass's signature types them (a typed or
        # positional `config` here would be LightningCLI's default for every subclass).
        super().__init__()
        self.config = configs.pop("config")
        self.training_config = configs.pop("training")
        for name, value in configs.items():
            setattr(self, name, value)
        groups = {"config": self.config, **configs, "training": self.training_config}
        cls = type(self)
        self.save_hyperparameters(
            {"_class_path": f"{cls.__module__}.{cls.__qualname__}"}
            | {name: dataclasses.asdict(value) for name, value in groups.items()}
        )
        self.network = self.build_network()
        self.val_metric = LanguageModelingMetric()
        self.test_metric = LanguageModelingMetric()
        self._test_start = 0.0
        self._train_state = None  # carried across training batches (data.train_mode stream)
        self._step_losses: list[torch.Tensor] = []  # of the batches since the last step
        self._eval_state = None  # carried across the windows of a split (data.eval_mode stream)
        self._token_bytes: torch.Tensor | None = None  # V: UTF-8 bytes of each token id
        # forward FLOPs per token, set by the Throughput callback at setup (training/glue/callbacks.py)
        self.flops_per_token: float | None = None

    @classmethod
    def config_types(cls) -> dict[str, type]:
        """The typed configs `cls(...)` takes, by argument name (its __init__'s annotations)."""
        hints = typing.get_type_hints(cls.__init__)
        params = inspect.signature(cls.__init__).parameters.values()
        return {
            p.name: hints[p.name]
            for p in params
            if p.kind == p.POSITIONAL_OR_KEYWORD and p.name != "self"
        }

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> LanguageModel:
        """The model of hyperparameters as __init__ saves them ({config name: {field: value}});
        a config not given, or a field, keeps its default."""
        kinds = cls.config_types().items()
        return cls(**{name: kind(**hparams.get(name, {})) for name, kind in kinds})

    @property
    def block_size(self) -> int:
        """The context length the model was trained on (the data's windows)."""
        return int(self.config.block_size)

    def build_network(self) -> nn.Module:
        raise NotImplementedError("subclasses build their network")

    def configure_model(self) -> None:
        if self.training_config.compile:
            self.network.compile()  # in place: parameter names do not change

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.network(input_ids)  # B, T, V

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> torch.Tensor:
        """Continue idx (B, T) by sampling, with the network's own fast path (BDH: its
        recurrent state; transformers models: their KV cache, cropped past their positions)."""
        return self.network.generate(
            idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p
        )

    @property
    def parameter_counts(self) -> tuple[int, int]:
        return count_parameters(self.network)

    # --- carried state (networks with a recurrent form: BDH) --------------------------------

    @property
    def has_state(self) -> bool:
        return hasattr(self.network, "forward_state")

    @classmethod
    def reads(cls, tokenizer_name: str) -> bool:
        """Whether data tokenized with `tokenizer_name` ("byte" or "gpt2") suits the network."""
        return cls.tokenizer_need in ("any", tokenizer_name)

    def check_data(self, datamodule: L.LightningDataModule, trainer: L.Trainer) -> None:
        """Refuse, before anything runs, data this model cannot read (its tokenizer_need) and a
        data mode this model or trainer cannot honour."""
        given = getattr(datamodule, "tokenizer_name", None)
        if given is not None and not self.reads(given):
            raise UserError(
                f"the data's tokenizer does not match the model: {type(self).__name__} reads "
                f"{self.tokenizer_need} tokens, data.tokenizer gives {given} tokens; set "
                f"--data.init_args.tokenizer {self.tokenizer_need}"
            )
        streams = [
            f"data.{mode} stream"
            for mode in ("train_mode", "eval_mode")
            if getattr(datamodule, mode, None) == "stream"
        ]
        if streams and not self.has_state:
            raise UserError(
                f"{' and '.join(streams)} needs a model with a recurrent state (BDH); "
                f"{type(self).__name__} has none: use data.train_mode random and data.eval_mode "
                "windows (data.eval_stride gives a transformer sliding windows)"
            )
        if "data.train_mode stream" in streams and trainer.accumulate_grad_batches != 1:
            raise UserError(
                "data.train_mode stream carries the state from each batch to the next, which "
                "gradient accumulation would reorder: set trainer.accumulate_grad_batches 1 "
                "(and raise data.batch_size instead)"
            )

    def _new_state(self, batch_size: int, position: int = 0):
        state = self.network.init_state(batch_size)
        state.pos = position
        return state

    def _train_logits(self, batch: dict) -> torch.Tensor:
        if "position" not in batch:  # random windows
            return self(batch["input_ids"])
        position = int(batch["position"])
        if position == 0 or self._train_state is None:  # lanes start (again), or no state kept
            self._train_state = self._new_state(batch["input_ids"].size(0), position)
        elif "reset" in batch:  # rows whose lane starts an article here (data.ArticleLanes)
            self._train_state.kv[:, :, batch["reset"].to(self._train_state.kv.device)] = 0
        return self.network.forward_state(batch["input_ids"], self._train_state)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The carried state is part of where training stands: an exact resume needs it. Under
        # DDP every rank has its own lanes, so every rank's state is kept.
        state = self._train_state
        if state is not None:
            kv = self.all_gather(state.kv) if self.trainer.world_size > 1 else state.kv[None]
            checkpoint["carried_state"] = {"kv": kv.cpu(), "pos": state.pos}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        carried = checkpoint.get("carried_state")
        rank = self.global_rank if self._trainer is not None else 0
        if carried is None or not self.has_state or rank >= len(carried["kv"]):
            return  # (another world size: the lanes start from an empty state)
        state = self._new_state(carried["kv"].size(3), carried["pos"])
        if state.kv.shape == carried["kv"][rank].shape:  # else another batch size: empty
            state.kv.copy_(carried["kv"][rank])
            self._train_state = state

    # --- training -------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        tokenizer = getattr(self._trainer and self.trainer.datamodule, "tokenizer", None)
        if tokenizer is not None:
            lengths = [len(piece) for piece in tokenizer.token_bytes()]
            self._token_bytes = torch.tensor(lengths, dtype=torch.int64)

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        # Dropout masks follow the batch's position in the training stream, which the batch
        # carries (the data owns that count, resume included).
        key = (self.training_config.seed, int(batch["index"]), self.global_rank)
        if "part" in batch:  # a micro-batch: its own masks (a batch's would need all its rows)
            key += (int(batch["part"]),)
        torch.manual_seed(hash(key) % (1 << 62))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self._train_logits(batch)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["targets"].flatten())
        if not torch.isfinite(loss):
            raise UserError(
                f"training loss is {loss.item()} at step {self.global_step}: stopping (the last good "
                "checkpoint is kept); lower the learning rate or use bf16-mixed instead of fp16"
            )
        # The loss of the optimizer step: the mean over the batches it accumulates (Lightning
        # logs the last value given before the step; equal micro-batches make it the batch's).
        self._step_losses.append(loss.detach())
        self.log("train/loss", torch.stack(self._step_losses).mean(), prog_bar=True)
        # Tokens seen by all devices, from the batch's position in the training stream (so a
        # resumed run goes on counting), and the one learning-rate curve (every group shares
        # the schedule).
        parts = int(batch.get("parts", 1))  # a micro-batch: its batch is `parts` times larger
        tokens = (int(batch["index"]) + 1) * batch["targets"].numel() * parts
        tokens *= self.trainer.world_size
        self.log("train/tokens", float(tokens))
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])
        self._log_train_compute(loss, batch["targets"], tokens)
        return loss

    def _log_train_compute(self, loss: torch.Tensor, targets: torch.Tensor, tokens: int) -> None:
        """train/bpb of this batch, as val/bpb (total NLL / (ln 2 * bytes)), and train/flops,
        the run's training compute so far: 3 x forward FLOPs per token x tokens (the backward
        costs about twice the forward)."""
        if self._token_bytes is not None:
            self._token_bytes = self._token_bytes.to(targets.device)
            n_bytes = self._token_bytes[targets.clamp(min=0)].masked_fill(targets < 0, 0).sum()
            bpb = loss.detach() * (targets >= 0).sum() / (LN2 * n_bytes.clamp(min=1))
            self.log("train/bpb", bpb)
        if self.flops_per_token:
            self.log("train/flops", 3.0 * self.flops_per_token * tokens)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._step_losses = []
        # The whole model's gradient 2-norm before clipping, at the logging cadence only (it
        # reads every gradient).
        if self.global_step % self.trainer.log_every_n_steps == 0:
            norms = grad_norm(self.network, norm_type=2)
            if norms:
                self.log("train/grad_norm", norms["grad_2.0_norm_total"])

    # --- evaluation -----------------------------------------------------------------------

    def eval_forward(self, input_ids: torch.Tensor, state=None) -> torch.Tensor:
        """Logits for evaluation, after `state` when given (moved on in place); subclasses may
        record extra statistics here."""
        if state is not None:
            return self.network.forward_state(input_ids, state)
        return self(input_ids)

    def token_nll(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Negative log-likelihood (B, T) of each target of an evaluation batch, 0 where there
        is none. A stream batch continues the state of the batch before; batch 0 starts it."""
        state = None
        if "carry" in batch:
            if batch_idx == 0:
                self._eval_state = self._new_state(batch["input_ids"].size(0))
            state = self._eval_state
        logits = self.eval_forward(batch["input_ids"], state)
        targets = batch["targets"]
        nll = F.cross_entropy(
            logits.flatten(0, 1).float(),
            targets.flatten(),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        )
        return nll.view_as(targets)

    def _score(self, batch: dict, batch_idx: int, metric: LanguageModelingMetric) -> None:
        targets = batch["targets"]
        metric.update(
            self.token_nll(batch, batch_idx).sum(),
            (targets != IGNORE_INDEX).sum(),
            batch["n_bytes"].sum(),
            batch["n_words"].sum(),
        )

    def _log_metric(self, stage: str, metric: LanguageModelingMetric) -> dict[str, torch.Tensor]:
        # Already reduced across processes by the metric: logged as is.
        values = metric.compute()
        metric.reset()
        self._eval_state = None  # a split's stream ends with it
        one_byte_tokens = bool(values["tokens"] == values["bytes"])
        for name, value in values.items():
            if stage == "val" and name in COUNTS:
                continue  # the same every validation: constant curves say nothing
            if stage == "val" and name == "byte_ppl" and one_byte_tokens:
                continue  # equal to val/ppl when every token is one byte: one curve
            self.log(f"{stage}/{name}", value.float(), prog_bar=name == "loss")
        return values

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._score(batch, batch_idx, self.val_metric)

    def on_validation_epoch_end(self) -> None:
        self._log_metric("val", self.val_metric)

    def on_test_epoch_start(self) -> None:
        self._synchronize()
        self._test_start = time.perf_counter()

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._score(batch, batch_idx, self.test_metric)

    def on_test_epoch_end(self) -> None:
        self._synchronize()
        elapsed = time.perf_counter() - self._test_start
        values = self._log_metric("test", self.test_metric)
        self.log("test/tokens_per_sec", values["tokens"].float() / elapsed)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # --- optimisation ---------------------------------------------------------------------

    def configure_optimizers(self):
        hp = self.training_config
        # Matrices decay; embeddings, norms and biases do not (nanoGPT/litgpt). A weight tied
        # to an embedding (GPT-2's output head) counts as the embedding, and once only.
        embeddings = {
            id(p)
            for m in self.network.modules()
            if isinstance(m, nn.Embedding)
            for p in m.parameters()
        }
        decay, no_decay = [], []
        for p in self.network.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(p)
        groups = [
            {"params": decay, "weight_decay": hp.weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
        ]
        fused = self.device.type == "cuda"
        optimizer = torch.optim.AdamW(
            groups, lr=hp.learning_rate, betas=tuple(hp.betas), fused=fused
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"},
        }

    def schedule_steps(self) -> tuple[int, int]:
        """(warmup steps, decay steps) of this run: the decay length is lr_decay_steps, else
        trainer.max_steps (0: unknown, constant after warmup)."""
        hp = self.training_config
        decay_steps = hp.lr_decay_steps or (
            self.trainer.max_steps if self._trainer is not None else 0
        )
        fraction = hp.warmup_fraction
        if fraction is not None and decay_steps <= 0:
            raise UserError(
                "model.training.warmup_fraction needs the run's length: set trainer.max_steps "
                "or model.training.lr_decay_steps (or give warmup_steps instead)"
            )
        return warmup_length(max(decay_steps, 0), hp.warmup_steps, fraction), decay_steps

    def _lr_factor(self, step: int) -> float:
        """Linear warmup, then cosine decay to min_learning_rate (training/schedule.py)."""
        warmup, decay_steps = self.schedule_steps()
        floor = self.training_config.min_learning_rate / self.training_config.learning_rate
        return lr_factor(step, warmup, decay_steps, floor)
