import subprocess
from pathlib import Path

from bdh_pl.bench.record import environment


def _repo(tmp_path: Path) -> Path:
    def run(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    run("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.md").write_text("old\n")
    run("add", ".")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return tmp_path


def test_results_rewritten_by_the_run_do_not_mark_the_code_dirty(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "results" / "summary.md").write_text("rewritten by the benchmark\n")
    assert environment(repo)["git_dirty"] is False


def test_a_changed_code_file_marks_the_code_dirty(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "code.py").write_text("x = 2\n")
    assert environment(repo)["git_dirty"] is True
