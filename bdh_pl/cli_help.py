"""The top-level `python -m bdh_pl --help`: every subcommand, LightningCLI's and the tools', one
line each (a test keeps the list equal to the subcommands that exist)."""

PROG = "python -m bdh_pl"
# The top-level --help: every subcommand, LightningCLI's and the tools, one line each.
SUBCOMMAND_HELP = {
    "fit": "train a model (LightningCLI: --config, --model, --data, --trainer, ...)",
    "validate": "score a model or checkpoint on the validation split",
    "test": "score on the test split: loss, ppl, bits per byte, word ppl -> test_metrics.json",
    "generate": "sample text from a checkpoint (top-k, top-p, several samples)",
    "benchmark": "train and test every model of a benchmark config on the same budget",
    "plot": "chart the loss curves of a run",
    "export": "write a checkpoint as a folder other tools read",
    "mauve": "MAUVE of a model's continuations against the true text",
    "lm-eval": "lm-evaluation-harness tasks on a checkpoint",
    "context-curve": "bits per byte by context length (BDH's carried state, sliding windows)",
    "inspect": "what a BDH learned: sparsity, selective neurons, neuron graph, against controls",
    "merge": "two BDHs fine-tuned from one base as one (neurons concatenated, the rest averaged)",
    "download-data": "build a local data root from the Hugging Face hub",
}


def top_level_help() -> str:
    lines = [
        f"usage: {PROG} SUBCOMMAND [options]",
        "",
        "BDH (Baby Dragon Hatchling) against GPT-2 and LLaMA: train, score, sample, compare.",
        "",
        "subcommands (each has its own --help):",
        *(f"  {name:<15}{text}" for name, text in SUBCOMMAND_HELP.items()),
        "",
        f"example: {PROG} fit --config configs/shakespeare.yaml",
    ]
    return "\n".join(lines) + "\n"
