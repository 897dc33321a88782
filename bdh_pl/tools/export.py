"""`python -m bdh_pl export`: a checkpoint as a folder other tools read.

    python -m bdh_pl export --ckpt_path lightning_logs/version_0/checkpoints/best.ckpt --out my-model

* GPT-2 and LLaMA checkpoints become a standard Hugging Face folder (`save_pretrained`: config,
  safetensors weights, the tokenizer with its class), which `AutoModelForCausalLM` and
  `AutoTokenizer` load without `trust_remote_code`.
* BDH becomes `config.json` + `model.safetensors` (+ the tokenizer files), read back by
  `bdh_pl.training.loading.load_bdh(DIR)`; `test`, `generate`, `mauve` and the lm-eval model
  take the folder as `--ckpt_path` / `pretrained=`.

Every folder gets a `README.md` model card: architecture, parameters, data, steps and, when a
`test` run of the checkpoint is found beside it (or given with --test_metrics), its test bpb.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bdh_pl.errors import UserError
from bdh_pl.fileio import atomic_folder, check_writable
from bdh_pl.tools.options import parse

if TYPE_CHECKING:  # the work imports torch and Lightning, --help neither
    from bdh_pl.models.bdh import BDH
    from bdh_pl.training.loading import LoadedModel


@dataclasses.dataclass(kw_only=True)
class Export:
    """What is exported, where

    Args:
        ckpt_path: a bdh-pl checkpoint (.ckpt)
        out: the folder to write (new or empty)
        test_metrics: test_metrics.json of a `test` run of this checkpoint, for the model card
            (default: looked up among the runs beside the checkpoint)
        data_dir: data root holding gpt2-tokenizer/ (default: the run's)
    """

    ckpt_path: str
    out: str
    test_metrics: str | None = None
    data_dir: str | None = None


# --- BDH folders ----------------------------------------------------------------------------


def save_bdh(
    network: BDH, out: str | Path, block_size: int, tokenizer: str = "byte", bos_id: int = 10
) -> None:
    """config.json (BDHConfig: the architecture; + what the model reads) and model.safetensors
    (official names). Read back by bdh_pl.training.loading."""
    from safetensors.torch import save_file

    from bdh_pl.training.loading import BDH_MODEL_TYPE, CONFIG, FORMAT_VERSION, WEIGHTS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": BDH_MODEL_TYPE,
        "architectures": ["BDH"],
        "bdh_pl_format": FORMAT_VERSION,
        **dataclasses.asdict(network.config),
        "block_size": block_size,
        "tokenizer": tokenizer,
        "bos_token_id": bos_id,
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    weights = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    save_file(weights, out / WEIGHTS, metadata={"format": "pt"})


# --- tokenizers -----------------------------------------------------------------------------


def byte_tokenizer_hf(block_size: int):
    """bdh-pl's byte tokenizer as a Hugging Face fast tokenizer: token i is byte i, and the
    beginning-of-text token is the newline (id 10), the context bdh-pl scores the first byte
    from. Being a special token, a literal U+010A ("Ċ") in a text reads as that newline, and
    `decode(skip_special_tokens=True)` drops newlines: decode without it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from bdh_pl.data.tokenizers import _bytes_to_unicode

    char_of = _bytes_to_unicode()
    backend = Tokenizer(models.BPE(vocab={char_of[b]: b for b in range(256)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=char_of[10], model_max_length=block_size
    )


def hf_tokenizer(name: str, data_dir: Path | None, block_size: int):
    """The Hugging Face tokenizer equal to bdh-pl's tokenizer `name`."""
    from bdh_pl.data.tokenizers import get_tokenizer

    if name == "byte":
        return byte_tokenizer_hf(block_size)
    fast = get_tokenizer(name, data_dir)._tok  # GPT2TokenizerFast: bos = eos = <|endoftext|>
    fast.model_max_length = block_size
    return fast


# --- export ---------------------------------------------------------------------------------


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(
            f"--out {str(out)!r} exists and is not an empty folder: choose a new folder (export "
            "never overwrites)"
        )
    check_writable(out, "choose another --out")


def export(
    ckpt_path: str,
    out: str | Path,
    test_metrics: str | None = None,
    data_dir: str | None = None,
) -> Path:
    from bdh_pl.data.sources import resolve_data_dir
    from bdh_pl.data.tokenizers import get_tokenizer
    from bdh_pl.models.bdh import BDH
    from bdh_pl.models.hf import HFCausalLM
    from bdh_pl.training.loading import load_model, read_model_file

    out = Path(out).expanduser()
    check_out(out)
    if Path(ckpt_path).is_dir():
        raise UserError(f"{ckpt_path} is a folder: export takes a checkpoint file (.ckpt)")
    if read_model_file(ckpt_path).kind != "checkpoint":
        raise UserError(
            f"{ckpt_path} holds plain weights without a config: export takes bdh-pl checkpoints "
            "(evaluate official weights with `test`, which sizes the model from them)"
        )
    loaded = load_model(ckpt_path)
    model = loaded.model
    block_size = model.block_size
    root = resolve_data_dir(data_dir or loaded.data_dir)
    tokenizer = get_tokenizer(loaded.tokenizer, root)
    tokenizer_hf = hf_tokenizer(loaded.tokenizer, root, block_size)
    network = model.network
    if isinstance(network, BDH):
        architecture = "BDH (Kosowski et al. 2025, arXiv 2509.26507), bdh-pl implementation"
    elif isinstance(network, HFCausalLM):
        architecture = f"{type(network.hf).__name__} (Hugging Face transformers)"
    else:
        raise UserError(f"cannot export a {type(network).__name__} network")
    card = model_card(ckpt_path, loaded, architecture, tokenizer.name, out, test_metrics)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Writing model shards" bar around the one line
    with atomic_folder(out, "(another --out)") as folder:  # whole or absent, never half
        if isinstance(network, BDH):
            save_bdh(network, folder, block_size, tokenizer.name, tokenizer.bos_id)
        else:
            hf = network.hf
            # The folder's own BOS/EOS, so transformers' tools start and stop as bdh-pl does.
            hf.config.bos_token_id = tokenizer_hf.bos_token_id
            hf.config.eos_token_id = tokenizer_hf.eos_token_id
            hf.generation_config.bos_token_id = tokenizer_hf.bos_token_id
            hf.generation_config.eos_token_id = tokenizer_hf.eos_token_id
            hf.save_pretrained(folder, safe_serialization=True)
        tokenizer_hf.save_pretrained(folder)
        (folder / "README.md").write_text(card)
    return out


def find_test_metrics(ckpt_path: str) -> Path | None:
    """The newest test_metrics.json, among the runs beside the checkpoint, that tested it."""
    ckpt = Path(ckpt_path).resolve()
    root = ckpt.parents[2] if len(ckpt.parents) > 2 else ckpt.parent
    found = []
    for record_path in root.glob("version_*/test_metrics.json"):
        try:
            _, record = read_test_metrics(record_path)
        except UserError:
            continue  # damaged: not this checkpoint's test, as far as anyone can tell
        tested = record.get("checkpoint")
        if isinstance(tested, str) and tested and Path(tested).resolve() == ckpt:
            found.append(record_path)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def model_card(
    ckpt_path: str,
    loaded: LoadedModel,
    architecture: str,
    tokenizer: str,
    out: Path,
    test_metrics: str | None,
) -> str:
    from bdh_pl.models.bdh import BDH
    from bdh_pl.training.metrics import count_parameters

    sizes = dataclasses.asdict(loaded.model.config)
    class_path = loaded.checkpoint["hyper_parameters"].get("_class_path", "")
    data = {
        k: v
        for k, v in loaded.checkpoint.get("datamodule_hyper_parameters", {}).items()
        if k != "_instantiator"
    }
    total, non_embedding = count_parameters(loaded.model.network)
    dataset = data.pop("_class_path", "unknown")
    bdh = isinstance(loaded.model.network, BDH)
    lines = [
        f"# {out.name}",
        "",
        f"Exported by bdh-pl from `{ckpt_path}`.",
        "",
        f"* **Architecture**: {architecture}; `{class_path}`: "
        + ", ".join(f"{k}={v}" for k, v in sizes.items()),
        f"* **Parameters**: {total:,} ({non_embedding:,} non-embedding)",
        f"* **Data**: `{dataset}`, tokenizer `{tokenizer}`, block size {sizes.get('block_size')}"
        + (f", batch size {data['batch_size']}" if "batch_size" in data else ""),
        f"* **Training steps**: {loaded.checkpoint.get('global_step', 'unknown')}",
    ]
    run_config = Path(ckpt_path).resolve().parents[1] / "config.yaml"
    config = str(run_config) if run_config.is_file() else "<the run's config.yaml>"
    metrics_path = Path(test_metrics) if test_metrics else find_test_metrics(ckpt_path)
    if metrics_path is not None:
        metrics, record = read_test_metrics(metrics_path)
        bpb, n_bytes = metrics.get("test/bpb"), metrics.get("test/bytes")
        bpb = f"{bpb:.4f}" if _finite(bpb) else "undefined (not a finite number)"
        n_bytes = f"{n_bytes:,.0f}" if _finite(n_bytes) else "?"
        lines.append(
            f"* **Test bpb**: {bpb} on `{record.get('dataset')}` (block "
            f"{record.get('block_size')}, stride {record.get('eval_stride')}, {n_bytes} bytes), "
            f"from `{metrics_path}`, measured with `python -m bdh_pl test --config {config} "
            f"--ckpt_path {ckpt_path}`"
        )
    else:
        lines.append(
            f"* **Test bpb**: not measured yet: `python -m bdh_pl test --config {config} "
            f"--ckpt_path {ckpt_path}` (then export again)"
        )
    lines += ["", "## Use", "", "```bash"]
    if bdh:
        lines += [
            f"python -m bdh_pl test --config {config} --ckpt_path {out}",
            f'python -m bdh_pl generate --ckpt_path {out} --prompt "To be or "',
            f"python -m bdh_pl lm-eval --model bdh-pl --model_args pretrained={out} --tasks ...",
            "```",
            "",
            "In Python: `from bdh_pl.training.loading import load_bdh; network, config = "
            f"load_bdh('{out}')` (`network(ids)` gives logits).",
        ]
    else:
        lines += [
            f"lm_eval --model hf --model_args pretrained={out} --tasks ...",
            "```",
            "",
            "In Python: `AutoModelForCausalLM.from_pretrained(DIR)`, `AutoTokenizer."
            "from_pretrained(DIR)` (no remote code).",
        ]
    return "\n".join(lines) + "\n"


def read_test_metrics(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, record) of a test_metrics.json; one error line when it is not one."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) else f"not JSON: {err}"
        raise UserError(
            f"--test_metrics {str(path)!r} cannot be read ({why}): give the test_metrics.json a "
            "`test` run wrote, or leave --test_metrics out"
        ) from None
    metrics = record.get("metrics") if isinstance(record, dict) else None
    if not isinstance(metrics, dict):
        raise UserError(
            f'--test_metrics {str(path)!r} has no "metrics" table: give the test_metrics.json '
            "a `test` run wrote"
        )
    return metrics, record


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def export_command(args: Export) -> None:
    out = export(args.ckpt_path, args.out, args.test_metrics, args.data_dir)
    print(f"export: wrote {out}")


def main(argv: list[str]) -> None:
    export_command(**parse(export_command, argv, "export"))
