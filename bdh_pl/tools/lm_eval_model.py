"""BDH and the baselines as an lm-evaluation-harness model, registered as `bdh-pl`.

    python -m bdh_pl lm-eval --model bdh-pl --model_args pretrained=DIR_OR_CKPT,device=cpu \\
        --tasks lambada_openai,wikitext

(`python -m bdh_pl lm-eval` is lm-eval's own command line after this module is imported: the
0.4 harness finds models only in its own list, not through entry points.) `pretrained` is a
bdh-pl checkpoint, a BDH folder or a Hugging Face folder written by `python -m bdh_pl export`.

How each request type is scored:

* `loglikelihood`: lm-eval's split of context and continuation into tokens (TemplateLM), the
  input cut on the left to `max_length` tokens, one forward pass per batch.
* `loglikelihood_rolling` (perplexity tasks): disjoint windows of `max_length` tokens
  (default: the block size the model was trained with), the first predicted from the
  beginning-of-text token (a newline for bytes, `<|endoftext|>` for GPT-2) and each later one
  from the last token of the previous window: bdh-pl's `test` windows, so `bits_per_byte`
  equals `test/bpb` on the same text and window length. lm-eval's own models (`hf`) cut the
  same windows except the last, partial one of each document, which they give up to
  `max_length` tokens of context; that is the only difference. BDH too is scored in windows
  (not from its recurrent state over the whole document), for that equality.
* `generate_until`: BDH continues from its recurrent state (prefill, then one step per
  token, the whole context kept); the transformers baselines from their KV cache, the context
  cut on the left to leave `max_gen_toks` positions. Greedy unless `do_sample`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import simple_parse_args_string

from bdh_pl.errors import MAX_COUNT, UserError
from bdh_pl.tools.options import check_device
from bdh_pl.training.loading import load_network

RANGE = f"[1, {MAX_COUNT}]"
MODEL_ARGS = (
    "pretrained", "device", "batch_size", "max_batch_size", "max_length", "data_dir", "n_layer"
)  # fmt: skip


def check_model_args(args: dict[str, Any]) -> None:
    """Names and values of the bdh-pl model's arguments, before anything is loaded."""
    unknown = sorted(set(args) - set(MODEL_ARGS))
    if unknown:
        raise UserError(
            f"unknown --model_args {', '.join(unknown)} for model bdh-pl: use "
            + ", ".join(a for a in MODEL_ARGS if a != "max_batch_size")
        )
    if not args.get("pretrained"):
        raise UserError(
            "--model_args needs pretrained=PATH: a bdh-pl checkpoint or a folder written by "
            "`python -m bdh_pl export`"
        )
    for name in ("max_length", "batch_size", "max_batch_size", "n_layer"):
        value = args.get(name)
        if value is None or (name == "batch_size" and str(value).startswith("auto")):
            continue
        if isinstance(value, bool) or not str(value).isdigit() or not 1 <= int(value) <= MAX_COUNT:
            raise UserError(f"--model_args {name}={value!r}: must be a whole number in {RANGE}")
    if args.get("device") is not None:
        check_device(str(args["device"]), "--model_args device")


@register_model("bdh-pl")
class BDHPLM(TemplateLM):
    """Args (lm-eval `--model_args`):
    pretrained: bdh-pl checkpoint, BDH folder or Hugging Face folder from `export`.
    device: cpu, cuda, cuda:1, ...
    batch_size: sequences per forward pass (lm-eval's --batch_size; "auto" means 8).
    max_length: window length in tokens (default: the model's block size).
    data_dir: data root holding gpt2-tokenizer/ (default: the run's, or $BDH_PL_DATA_DIR).
    n_layer: layers of plain BDH weights, which do not record it (refused without it).
    """

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        """--model_args win over lm-eval's own flags; its --device defaults to cuda:0, which
        means the CPU on a machine without CUDA (as for lm-eval's hf model)."""
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        device = extra.pop("device", None)
        if "device" not in arg_dict and device is not None:
            cuda_missing = str(device).startswith("cuda") and not torch.cuda.is_available()
            extra["device"] = "cpu" if cuda_missing else device
        return cls(**{**extra, **arg_dict})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        check_model_args(kwargs)
        n_layer = int(kwargs["n_layer"]) if kwargs.get("n_layer") is not None else None
        loaded = load_network(kwargs["pretrained"], kwargs.get("data_dir"), n_layer)
        if loaded.block_size is None and kwargs.get("max_length") is None:
            raise UserError(
                f"{kwargs['pretrained']!r} holds plain BDH weights, which do not record the "
                "window they were trained with: give max_length=N in --model_args (the run's "
                "data.block_size), so it scores as its checkpoint does"
            )
        self._device = torch.device(kwargs.get("device") or "cpu")
        self.network = loaded.network.to(self._device).eval()
        self.tok = loaded.tokenizer
        self.max_length = int(kwargs.get("max_length") or loaded.block_size)
        batch_size = kwargs.get("batch_size") or 8
        self.batch_size = 8 if str(batch_size).startswith("auto") else int(batch_size)
        self.eos_id = getattr(getattr(self.tok, "_tok", None), "eos_token_id", None)

    # --- tokens ---------------------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.tok.bos_id

    @property
    def prefix_token_id(self) -> int:
        return self.tok.bos_id  # what bdh-pl's evaluation streams start with

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return self.tok.name

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs
    ) -> list[int]:
        return [int(t) for t in self.tok.encode(string.encode("utf-8"))]

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tok.decode(tokens)

    # --- scoring --------------------------------------------------------------------------

    @torch.no_grad()
    def _score(self, rows: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """Per (input ids, targets): summed log-probability of the targets, which are the
        next tokens of the last len(targets) inputs, and whether all are the argmax."""
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            width = len(rows[batch[0]][0])
            x = torch.zeros(len(batch), width, dtype=torch.long)
            for r, i in enumerate(batch):  # right padding: causal models never look ahead
                x[r, : len(rows[i][0])] = torch.tensor(rows[i][0])
            logprobs = F.log_softmax(self.network(x.to(self._device)).double(), dim=-1).cpu()
            for r, i in enumerate(batch):
                inputs, targets = rows[i]
                span = logprobs[r, len(inputs) - len(targets) : len(inputs)]
                target = torch.tensor(targets)
                total = span.gather(-1, target[:, None]).sum().item()
                results[i] = (total, bool((span.argmax(-1) == target).all()))
        return results

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        rows = []
        for _, context, continuation in requests:
            whole = (context + continuation)[-(self.max_length + 1) :]
            rows.append((whole[:-1], continuation))
        results = self._score(rows)
        for (key, _, _), result in zip(requests, results, strict=True):
            self.cache_hook.add_partial("loglikelihood", key, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        rows, owner = [], []
        for n, request in enumerate(requests):
            (text,) = request.args
            tokens = self.tok_encode(text)
            stream = [self.prefix_token_id, *tokens]
            # bdh-pl's evaluation windows (data/windows.py, stride = window): disjoint, each
            # predicted from the token before it. lm-eval's own models give the last, partial
            # window of a document more context instead; here it is scored like bdh-pl's test.
            for start in range(0, len(tokens), self.max_length):
                end = min(start + self.max_length, len(tokens))
                rows.append((stream[start:end], tokens[start:end]))
                owner.append(n)
        totals = [0.0] * len(requests)
        for n, (logprob, _) in zip(owner, self._score(rows), strict=True):
            totals[n] += logprob
        for request, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    # --- generation -----------------------------------------------------------------------

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for request in requests:
            context, gen_kwargs = request.args
            text = self._generate(context, dict(gen_kwargs))
            self.cache_hook.add_partial("generate_until", request.args, text)
            out.append(text)
        return out

    @torch.no_grad()
    def _generate(self, context: str, gen_kwargs: dict[str, Any]) -> str:
        until = gen_kwargs.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        max_new = int(gen_kwargs.pop("max_gen_toks", 256))
        sample = bool(gen_kwargs.pop("do_sample", False))
        temperature = float(gen_kwargs.pop("temperature", 1.0) or 1.0)
        ids = self.tok_encode(context) or [self.prefix_token_id]
        bdh = hasattr(self.network, "prefill")
        if not bdh:  # learned or trained positions: leave room for the new tokens
            ids = ids[-max(1, self.max_length - max_new) :]
        x = torch.tensor([ids], device=self._device)
        if bdh:
            logits, state = self.network.prefill(x)
        else:
            hf_out = self.network.hf(input_ids=x, use_cache=True)
            logits, cache = hf_out.logits[:, -1], hf_out.past_key_values
        new: list[int] = []
        text = ""
        for _ in range(max_new):
            if sample and temperature > 0:
                probs = F.softmax(logits.float() / temperature, dim=-1)
                token = int(torch.multinomial(probs, 1))
            else:
                token = int(logits.argmax(-1))
            if token == self.eos_id:
                break
            new.append(token)
            text = self.tok_decode(new)
            if any(stop in text for stop in until):
                break
            step = torch.tensor([token], device=self._device)
            if bdh:
                logits, state = self.network.step(step, state)
            else:
                hf_out = self.network.hf(
                    input_ids=step[None], past_key_values=cache, use_cache=True
                )
                logits, cache = hf_out.logits[:, -1], hf_out.past_key_values
        for stop in until:
            text = text.split(stop)[0] if stop else text
        return text
