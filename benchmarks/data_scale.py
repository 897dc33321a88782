"""Peak memory of data preparation on a corpus far larger than tiny Shakespeare.

    python benchmarks/data_scale.py                       # 500 MB byte-level + 50 MB GPT-2 BPE
    python benchmarks/data_scale.py --mb 100 --bpe-mb 10  # quicker

Generates a text file (tiny Shakespeare repeated, each copy numbered) in a temp folder,
then, in a fresh process per tokenizer, does what `fit` does before training: tokenize every
split into the cache, memory-map it, build the evaluation windows with their byte/word counts,
and draw training batches. Reports the process's peak RSS (VmHWM) and wall time, and writes
results/data-scale/data_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_corpus(path: Path, megabytes: int, seed_text: bytes) -> int:
    written, copy = 0, 0
    with open(path, "wb") as f:
        while written < megabytes * 2**20:
            chunk = f"\n= Copy {copy} =\n".encode() + seed_text
            f.write(chunk)
            written += len(chunk)
            copy += 1
    return written


def prepare(path: str, tokenizer: str, cache_dir: str) -> dict:
    """Runs in a fresh process: everything `fit` does with the data before the first step."""
    from bdh_pl.data import TextFile
    from bdh_pl.training.glue.callbacks import peak_memory_mb

    start = time.perf_counter()
    dm = TextFile(
        path=path, tokenizer=tokenizer, cache_dir=cache_dir, block_size=512, batch_size=32
    )
    tokens = {split: len(dm.split_tokens(split)) for split in ("train", "val", "test")}
    windows = {split: len(dm.eval_windows(split)) for split in ("val", "test")}
    loader = iter(dm.train_dataloader())
    for _ in range(10):
        next(loader)
    import torch

    return {
        "tokenizer": tokenizer,
        "tokens": tokens,
        "eval_windows": windows,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(peak_memory_mb(torch.device("cpu")), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=500, help="size of the byte-level corpus")
    parser.add_argument("--bpe-mb", type=int, default=50, help="size of the GPT-2 BPE corpus")
    parser.add_argument("--out", default=str(REPO / "results" / "data-scale" / "data_scale.json"))
    parser.add_argument("--_prepare", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._prepare:
        print(json.dumps(prepare(*args._prepare)))
        return

    data_dir = Path(os.environ.get("BDH_PL_DATA_DIR", REPO.parent / "shared" / "data"))
    seed_text = (data_dir / "tinyshakespeare" / "input.txt").read_bytes()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for tokenizer, megabytes in (("byte", args.mb), ("gpt2", args.bpe_mb)):
            corpus = Path(tmp) / f"corpus-{megabytes}mb.txt"
            size = make_corpus(corpus, megabytes, seed_text)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--_prepare",
                    str(corpus),
                    tokenizer,
                    str(Path(tmp) / "cache"),
                ],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "BDH_PL_DATA_DIR": str(data_dir)},
            ).stdout
            record = {
                "corpus_mb": round(size / 2**20, 1),
                **json.loads(out.strip().splitlines()[-1]),
            }
            print(json.dumps(record))
            records.append(record)
            corpus.unlink()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"command": "python benchmarks/data_scale.py", "runs": records}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
