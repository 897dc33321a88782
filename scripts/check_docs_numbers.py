"""Every measured number in README.md and docs/ against the committed result files.

    python scripts/check_docs_numbers.py          # lists each number no result file holds

A number in the text (outside code) with a decimal point or thousands separators (3.439,
1,290,590, 1.85M, 1.05e13) must round from a number in the result files its text names, or be
listed in COMPUTED with the arithmetic on result numbers that gives it. The files a number is
tied to are those under the results/ paths (files or folders, in links or code) named by its
sentence (a table counts as one); where that names none, by its paragraph and its section (from
its heading to the next); where those name none either, every file under results/ (JSON, CSV,
Markdown, YAML). So a number whose sentence cites results/interpretability/bdh must be in that
folder's files: one that matches only some other file fails. Integers without separators (400 steps, 2 cores) are settings, not
results, and are not checked. Exit 1 when a number is unaccounted for. tests/integration/test_docs_numbers.py
runs it.
"""

from __future__ import annotations

import csv
import functools
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md"))]
SCALE = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
NUMBER = re.compile(
    r"(?<![\w.\-/])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+)(e1\d|e[2-9]|[kKMGT](?![a-zA-Z]))?"
)
FILE_NUMBER = re.compile(r"-?(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)([kMGT](?![a-zA-Z]))?")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    return re.sub(r"`[^`]*`", " ", text)


def doc_numbers(text: str) -> list[tuple[str, float, float]]:
    """(as written, value, half a unit of its last digit) for each checked number."""
    found = []
    for match in NUMBER.finditer(prose(text)):
        digits, suffix = match.group(1), match.group(2) or ""
        plain = digits.replace(",", "")
        decimals = len(plain.split(".")[1]) if "." in plain else 0
        scale = 10 ** int(suffix[1:]) if suffix.startswith("e") else SCALE.get(suffix, 1)
        found.append((match.group(0), float(plain) * scale, 0.5 * 10**-decimals * scale))
    return found


def result_numbers(paths: list[Path] | None = None) -> list[float]:
    """Every number in the result files `paths` (default: all under results/); of a run's
    metrics CSV only the validation and test columns (the per-step training columns would
    match almost any number by chance)."""
    files = result_files() if paths is None else paths
    return sorted(set().union(*(_file_numbers(path) for path in files)))


@functools.cache  # a file is read once per check, however many sentences name it
def _file_numbers(path: Path) -> frozenset[float]:
    if path.suffix == ".csv" and path.name.startswith("metrics"):
        return frozenset(_evaluation_columns(path))
    values = set()
    text = path.read_text(errors="ignore")
    if path.suffix != ".csv":  # 1,290,590 -> 1290590 (in a CSV a comma is a cell)
        text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)
    for token, suffix in FILE_NUMBER.findall(text):
        values.add(abs(float(token)) * SCALE.get(suffix, 1))
        if suffix:
            values.add(abs(float(token)))
    return frozenset(values)


def result_files(under: Path | None = None) -> list[Path]:
    return list(_result_files(under or REPO / "results"))


@functools.cache
def _result_files(root: Path) -> tuple[Path, ...]:
    paths = [root] if root.is_file() else sorted(root.rglob("*"))
    return tuple(p for p in paths if p.is_file() and p.suffix in (".json", ".csv", ".md", ".yaml"))


RESULT_PATH = re.compile(r"results/[\w.\-/]*[\w\-/]")


def named_results(text: str) -> list[Path]:
    """The result files under each results/ path a piece of text names (that exists)."""
    files: list[Path] = []
    for name in RESULT_PATH.findall(text):
        path = REPO / name.rstrip("/")
        if path.exists():
            files += result_files(path)
    return files


SENTENCE_END = re.compile(r"(?<=[.;!?])\s+(?=[A-Z*(\[`])")


def scopes(text: str) -> list[tuple[str, str]]:
    """(sentence, its paragraph and section) of the page: a table is one sentence and one
    paragraph; a number looks for the result files it is tied to in the first, else the
    second."""
    sections = re.split(r"\n(?=#{1,6} )", text)
    found = []
    for section in sections:
        for block in re.split(r"\n\s*\n", section):
            around = block + "\n\n" + section
            sentences = [block] if block.lstrip().startswith("|") else SENTENCE_END.split(block)
            found += [(sentence, around) for sentence in sentences]
    return found


def _evaluation_columns(path: Path) -> set[float]:
    with open(path, newline="", encoding="utf-8", errors="ignore") as f:
        rows = list(csv.DictReader(f))
    return {
        abs(float(value))
        for row in rows
        for key, value in row.items()
        if key
        and key.split("/")[0] in ("val", "test")
        and value not in (None, "")
        and FILE_NUMBER.fullmatch(value.strip())
    }


def held(value: float, half: float, pool: list[float]) -> bool:
    import bisect

    i = bisect.bisect_left(pool, value - half * 1.0000001)
    return i < len(pool) and pool[i] <= value + half * 1.0000001


def unaccounted(pages: list[str] = PAGES) -> list[str]:
    everything = result_numbers()
    return [p for page in pages for p in page_problems(page, (REPO / page).read_text(), everything)]


@functools.cache
def _numbers_of(paths: tuple[Path, ...]) -> list[float]:
    return result_numbers(list(paths))


def page_problems(page: str, text: str, everything: list[float]) -> list[str]:
    """Each number of `text` (the page `page`) that the result files it is tied to lack."""
    explained = {**COMPUTED.get(page, {}), **NOT_RESULTS.get(page, {})}
    problems = []
    for sentence, around in scopes(text):
        named = named_results(sentence) or named_results(around)
        pool = _numbers_of(tuple(named)) if named else everything
        for written, value, half in doc_numbers(sentence):
            if held(value, half, pool) or written in explained or written in SIZES:
                continue
            where = "the files its text names" if named else "any result file"
            problems.append(f"{page}: {written} (not in {where})")
    return problems


# Numbers that are arithmetic on result numbers, with the arithmetic (checked: each operand
# is in a result file, the result rounds to the number as written).
COMPUTED: dict[str, dict[str, str]] = {
    "docs/results.md": {
        "0.33": "3.235 - 2.901",
        "0.20": "3.439 - 3.235",
        "5.2": "5034 / 973",
        "4.5": "18186240 / 4030464",
        "4.2": "51412992 / 12288000",
        "0.12": "3.3256 - 3.2021",
        "6.1": "150 * 4096 / 100385",
        "18.4": "450 * 4096 / 100385",
        "0.033": "3.2131 - 3.1806",
        "0.005": "3.1926 - 3.1873",
        "0.016": "3.2021 - 3.1864",
        "0.028": "3.202 - 3.174",
        "0.083": "3.465 - 3.382",
        "2.46": "1345536 / 546816",  # the frontier's measured training / forward per token
        "2.72": "11354112 / 4177920",
        "3.07": "3612672 / 1175552",
        "3.17": "311296 / 98304",
        "8.2": "200 * 4096 / 100385",
        "7.1": "175 * 4096 / 100385",
        "13.3": "325 * 4096 / 100385",
        "9.5": "20 / 210 * 100",
    },
    "docs/long-context.md": {"1.64M": "400 * 16 * 256"},
    "README.md": {"4.2": "51412992 / 12288000", "3.5": "208.38 / 60", "2.7": "400 / 150"},
    "docs/interpretability.md": {
        "2.7": "400 / 150",
        "0.01": "3.406 - 3.394",  # merge: averaging behind concatenation, on Y
        "0.02": "3.325 - 3.306",  # and on Z
        "0.016": "3.366 - 3.350",  # and on X
    },
    "docs/fair_comparison.md": {"4.51": "1290590 / 286221"},
}
# Numbers that are not results of this project, each with what it is.
NOT_RESULTS: dict[str, dict[str, str]] = {
    "README.md": {"2509.26507": "the paper's arXiv id"},
    "docs/interpretability.md": {
        "2509.26507": "the paper's arXiv id",
        "16,384": "positions scored for selectivity (inspect's default, a setting)",
        "5.5": "the paper's section", "6.2": "the paper's section", "7.1": "the paper's section",
    },
    "docs/long-context.md": {
        "2,048": "the carried state's reset interval in bytes (a setting)",
        "1,000": "a round bound, not a result",
    },
    "docs/benchmark.md": {
        "1,000": "bootstrap fits (a setting)",
        "1.5": "the machine's load average seen during the smoke run (in no result file)",
        "2.1e13": "the budget first written (a setting)",
        "1.53": "the reference run's own figure, quoted from its notes (SEED.md)",
    },
    "docs/fair_comparison.md": {
        "29.41": "GPT-2 paper, quoted", "22.76": "GPT-2 paper, quoted",
        "19.44": "Hugging Face guide, quoted", "16.44": "Hugging Face guide, quoted",
        "1,290,590": "bytes of wiki.test.raw (tests/integration/test_fair_comparison.py)",
        "241,211": "words of wiki.test.raw (tests/integration/test_fair_comparison.py)",
        "241,213": "lm-evaluation-harness's word count of it (re.split)",
        "286,221": "GPT-2 tokens of wiki.test.raw (tests/{unit,integration}/data/test_datamodule.py)",
    },
}  # fmt: skip
# Parameter counts of the models at their configs/model/*.yaml size (facts of the code).
SIZES = {"25.3M", "25.2M", "25.4M", "25.6M", "124.4M", "85.1M", "354.8M", "302.3M"}


def wrong_arithmetic() -> list[str]:
    """Each COMPUTED entry whose operands are not result numbers or whose value is off."""
    pool = result_numbers()
    facts = {k.replace(",", "") for page in NOT_RESULTS.values() for k in page}
    problems = []
    for page, entries in COMPUTED.items():
        for written, expression in entries.items():
            operands = re.findall(r"\d+(?:\.\d+)?", expression)
            slack = sum(0.5 * 10 ** -len((o.split(".") + [""])[1]) for o in operands)
            for operand in operands:
                decimals = len((operand.split(".") + [""])[1])
                if operand not in facts and not held(float(operand), 0.5 * 10**-decimals, pool):
                    problems.append(f"{page}: {operand} in {expression} is in no result file")
            ((_, shown, half),) = doc_numbers(written)
            if abs(eval(expression) - shown) > half + slack:  # noqa: S307 (our own table)
                problems.append(f"{page}: {expression} = {eval(expression):.4g}, not {written}")  # noqa: S307
    return problems


if __name__ == "__main__":
    missing = unaccounted() + wrong_arithmetic()
    print("\n".join(missing) or "every number is in a result file")
    sys.exit(1 if missing else 0)
