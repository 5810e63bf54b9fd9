"""The command line through click's CliRunner, with the fake model (fast) and absolute tmp paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from semsearch import __version__
from semsearch.cli import cli
from semsearch.locking import WriteLock


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, *args, **kwargs):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False, **kwargs)


def test_index_search_status_remove_rebuild(runner, tmp_path, docs, fake_model):
    index = tmp_path / "idx"
    result = run(runner, "--index", index, "index", docs)
    assert result.exit_code == 0, result.output
    assert "4 new" in result.output and "Chunks:" in result.output

    result = run(runner, "--index", index, "search", "knead dough yeast", "-n", "2")
    assert result.exit_code == 0, result.output
    assert "bread.md:" in result.output.splitlines()[0] and "Baking bread" in result.output

    result = run(runner, "search", "knead dough yeast", "--index", index, "--json", "--limit", "3")
    hits = json.loads(result.output)
    assert len(hits) == 3
    assert {"rank", "score", "path", "title", "text", "chunk_id", "document_id", "start_line",
            "end_line", "page"} <= set(hits[0])
    assert hits[0]["path"].endswith("bread.md") and hits[0]["rank"] == 1

    result = run(runner, "--index", index, "status")
    assert "Documents:    4" in result.output and "fake-bag-of-words" in result.output
    status = json.loads(run(runner, "--index", index, "status", "--json").output)
    assert status["documents"] == 4 and status["chunks"] > 0 and status["size_bytes"] > 0

    result = run(runner, "--index", index, "rebuild")
    assert result.exit_code == 0 and f"{status['chunks']} vectors" in result.output

    result = run(runner, "--index", index, "remove", docs / "kitchen")
    assert result.exit_code == 0 and "Removed 2 documents" in result.output
    result = run(runner, "--index", index, "remove", docs / "kitchen")
    assert result.exit_code == 1 and "nothing in the index" in result.output


def test_index_json_summary(runner, tmp_path, docs, fake_model):
    result = run(runner, "index", docs, "--index", tmp_path / "idx", "--json")
    summary = json.loads(result.output)
    assert summary["new"] == 4 and summary["chunks_embedded"] > 0
    (docs / "junk.bin").write_bytes(b"\x00\xff" * 10)
    summary = json.loads(run(runner, "index", docs, "--index", tmp_path / "idx", "--json").output)
    assert summary["unchanged"] == 4 and summary["chunks_embedded"] == 0
    assert summary["skipped"] == 1 and summary["skipped_files"][0]["path"].endswith("junk.bin")


def test_filters_and_grouping_on_the_cli(runner, tmp_path, docs, fake_model):
    index = tmp_path / "idx"
    run(runner, "--index", index, "index", docs)
    hits = json.loads(run(runner, "--index", index, "search", "bread tomatoes roses onions", "--type", "md", "--json").output)
    assert hits and all(h["path"].endswith(".md") for h in hits)
    hits = json.loads(run(runner, "--index", index, "search", "bread tomatoes", "--path", "garden/*", "--json").output)
    assert hits and all("/garden/" in h["path"] for h in hits)
    hits = json.loads(run(runner, "--index", index, "search", "bread", "-d", "--json", "-n", "10").output)
    assert len({h["document_id"] for h in hits}) == len(hits)


def test_environment_variable_chooses_the_index(runner, tmp_path, docs, fake_model):
    index = tmp_path / "from-env"
    result = run(runner, "index", docs, env={"SEMSEARCH_INDEX": str(index)})
    assert result.exit_code == 0 and (index / "semsearch.db").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["search", "anything"], "no semsearch index"),
        (["status"], "no semsearch index"),
        (["index", "/definitely/not/here"], "no such file or folder"),
    ],
)
def test_clear_one_line_errors(runner, tmp_path, args, message, fake_model):
    result = runner.invoke(cli, ["--index", str(tmp_path / "missing"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_empty_query_and_empty_index(runner, tmp_path, docs, fake_model):
    index = tmp_path / "idx"
    empty = tmp_path / "empty"
    empty.mkdir()
    run(runner, "--index", index, "index", empty)
    result = runner.invoke(cli, ["--index", str(index), "search", "hello"])
    assert result.exit_code == 1 and "holds no documents" in result.output
    run(runner, "--index", index, "index", docs)
    result = runner.invoke(cli, ["--index", str(index), "search", "  "])
    assert result.exit_code == 1 and "query is empty" in result.output


def test_second_writer_is_refused(runner, tmp_path, docs, fake_model):
    index = tmp_path / "idx"
    run(runner, "--index", index, "index", docs)
    lock = WriteLock(index)
    lock.acquire()
    try:
        result = runner.invoke(cli, ["--index", str(index), "index", str(docs)])
        assert result.exit_code == 1 and "is writing to the index" in result.output
        assert run(runner, "--index", index, "search", "bread").exit_code == 0
    finally:
        lock.release()


def test_model_mismatch_is_an_error(runner, tmp_path, docs, fake_model):
    index = tmp_path / "idx"
    run(runner, "--index", index, "index", docs)
    result = runner.invoke(cli, ["--index", str(index), "index", str(docs), "--model", "some/other-model"])
    assert result.exit_code == 1 and "was built with model" in result.output


def test_every_command_has_help(runner):
    result = run(runner, "--help")
    commands = [line.split()[0] for line in result.output.split("Commands:")[1].strip().splitlines()]
    assert {"index", "search", "status", "remove", "rebuild"} <= set(commands)
    for command in commands:
        help_text = run(runner, command, "--help").output
        assert "Usage:" in help_text and len(help_text.splitlines()) > 3, command


def test_version_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "semsearch", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and __version__ in result.stdout


def test_help_and_status_do_not_import_the_model(tmp_path):
    code = (
        "import sys; from semsearch.cli import cli\n"
        "try: cli(['--help'])\nexcept SystemExit: pass\n"
        "try: cli(['--index', sys.argv[1], 'status'])\nexcept SystemExit: pass\n"
        "assert 'sentence_transformers' not in sys.modules and 'torch' not in sys.modules, 'heavy import'\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_search_rerank_without_a_model_is_a_clear_error(runner, tmp_path, docs, fake_model):
    index = tmp_path / "idx"
    run(runner, "--index", index, "index", docs)
    result = runner.invoke(cli, ["--index", str(index), "search", "bread", "--rerank"])
    assert result.exit_code == 1 and "no cross-encoder model available" in result.output


def committed_documents(database: Path) -> int:
    import sqlite3

    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            return connection.execute("SELECT count(*) FROM documents").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def test_sigterm_stops_indexing_like_ctrl_c(tmp_path):
    """A real process, killed with SIGTERM mid-run, leaves a consistent index that resumes."""
    import os
    import signal
    import time

    root = tmp_path / "many"
    root.mkdir()
    for i in range(400):
        (root / f"note{i:03}.txt").write_text(f"Note {i}\n\n" + f"Words about topic {i}. " * 60)
    index = tmp_path / "idx"
    script = (
        "import sys, time, numpy as np\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from conftest import FakeEmbedder\n"
        "class Slow(FakeEmbedder):\n"
        "    def embed(self, texts):\n"
        "        time.sleep(0.05)\n"
        "        return super().embed(texts)\n"
        "import semsearch.engine, semsearch.cli\n"
        "slow = Slow()\n"
        "semsearch.engine.SentenceTransformerEmbedder = lambda name=None, device=None: slow\n"
        "semsearch.engine.canonical_model_name = lambda name: slow.name\n"
        "sys.argv = ['semsearch', '--index', sys.argv[1], 'index', sys.argv[2], '--json']\n"
        "semsearch.cli.main()\n"
    )
    tests_dir = str(Path(__file__).parent)
    process = subprocess.Popen([sys.executable, "-c", script, str(index), str(root), tests_dir],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not committed_documents(index / "semsearch.db"):
        time.sleep(0.1)
    time.sleep(0.5)  # a wave or so more, and the run is still far from done
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    summary = json.loads(out)
    assert summary["interrupted"] and 0 < summary["new"] < 400
    from vectors_on_disk import live_vector_ids, stored_chunk_ids

    chunks = stored_chunk_ids(index)
    assert list(live_vector_ids(index, 64)) == list(chunks) and len(chunks) > 0
    assert "Traceback" not in err and os.path.exists(index / "write.lock")


def test_a_ctrl_c_outside_every_command_ends_with_130_not_aborted(tmp_path):
    """A real SIGINT that lands in the group's own callback (before any command's handling, as
    one can while click reads the arguments): "Interrupted." and 130, not click's "Aborted!" and 1."""
    script = (
        "import os, signal, sys\n"
        "import semsearch.cli\n"
        "class Settings:\n"
        "    def __init__(self, index):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "semsearch.cli.Settings = Settings\n"
        "sys.argv = ['semsearch', '--index', sys.argv[1], 'status']\n"
        "semsearch.cli.main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "idx")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "Interrupted.", result.stderr


def test_the_group_keeps_clicks_other_exits(runner, monkeypatch):
    """What the group's own ending handles besides Ctrl-C: a usage mistake (2, with click's
    message), an explicit exit's code, end of input at a prompt ("Aborted!", 1), and a Ctrl-C in a
    program that runs the group (130, no process ended under it)."""
    result = runner.invoke(cli, ["search"])
    assert result.exit_code == 2 and "Missing argument" in result.stderr
    assert runner.invoke(cli, ["--version"]).exit_code == 0

    def interrupt(index):
        raise KeyboardInterrupt

    monkeypatch.setattr("semsearch.cli.Settings", interrupt)
    result = runner.invoke(cli, ["status"])
    assert result.exit_code == 130 and result.stderr.strip() == "Interrupted."

    def end_of_input(index):
        raise EOFError

    monkeypatch.setattr("semsearch.cli.Settings", end_of_input)
    result = runner.invoke(cli, ["status"])
    assert result.exit_code == 1 and result.stderr.strip() == "Aborted!"


@pytest.mark.parametrize("first", ["semsearch.cli_eval", "semsearch.cli", "semsearch.cli_base"])
def test_eval_is_a_command_whichever_module_is_imported_first(first):
    code = f"import {first}\nfrom semsearch.cli import cli\nprint(' '.join(sorted(cli.commands)))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "eval" in result.stdout.split()


def test_nothing_imports_the_command_line_modules_back():
    """Imports go one way: launch -> cli -> cli_eval -> cli_base; the library imports none of them."""
    import ast

    import semsearch

    package = Path(semsearch.__file__).parent
    allowed = {
        "launch": {"semsearch.cli"},
        "cli": {"semsearch.cli_base", "semsearch.cli_eval"},
        "cli_eval": {"semsearch.cli_base"},
    }
    for source in package.rglob("*.py"):
        tree = ast.parse(source.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        command_modules = {name for name in imported if name.startswith("semsearch.cli")}
        assert command_modules <= allowed.get(source.stem if source.parent == package else "", set()), source


def test_file_names_that_are_not_utf8(runner, tmp_path, fake_model, write_file):
    root = tmp_path / "names"
    root.mkdir()
    folder = os.fsencode(root.resolve())
    write_file(folder + b"/notes\xff.txt", b"Tomatoes need full sun and deep watering.\n")
    os.symlink(b"/dev/zero", folder + b"/zero\xfe.txt")
    index = tmp_path / "idx"
    result = run(runner, "--index", index, "index", root, "-v")
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output and "zero\\xfe.txt: not a regular file" in result.output
    summary = json.loads(run(runner, "--index", index, "index", root, "--json").output)
    assert summary["unchanged"] == 1 and summary["skipped_files"][0]["path"].endswith("/zero\\xfe.txt")
    hits = json.loads(run(runner, "--index", index, "search", "tomatoes", "--json").output)
    assert hits[0]["path"].endswith("/notes\\xff.txt")
    result = run(runner, "--index", index, "search", "tomatoes")
    assert result.exit_code == 0 and "notes\\xff.txt:1" in result.output
    result = run(runner, "--index", index, "remove", os.fsdecode(folder + b"/notes\xff.txt"))
    assert result.exit_code == 0 and "Removed 1 document." in result.output


def test_an_index_folder_whose_name_is_not_utf8_is_printed_not_a_crash(tmp_path, docs, fake_embedder):
    import semsearch

    folder = os.fsdecode(os.fsencode(tmp_path) + b"/index\xff")
    with semsearch.open(folder, embedder=fake_embedder) as engine:
        engine.index(docs)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # stdout as on a terminal with a UTF-8 locale
    result = subprocess.run([sys.executable, "-m", "semsearch", "--index", folder, "status"],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "Documents:    4" in result.stdout, result.stderr
    assert "index\\udcff" in result.stdout


def test_meta_matches_numbers_and_booleans_in_metadata(runner, tmp_path, fake_model):
    from pdfgen import make_pdf

    root = tmp_path / "files"
    root.mkdir()
    (root / "three.pdf").write_bytes(make_pdf([["Tomatoes need sun."], ["Water deeply."], ["Pick when red."]]))
    (root / "one.pdf").write_bytes(make_pdf([["Tomatoes in pots."]]))
    (root / "front.md").write_text("---\ntitle: Tomatoes\n---\n\nTomatoes like warm soil.\n")
    index = tmp_path / "idx"
    assert run(runner, "--index", index, "index", root).exit_code == 0

    def paths(*meta: str) -> list[str]:
        result = run(runner, "--index", index, "search", "tomatoes", "--json", "-d", *meta)
        assert result.exit_code == 0, result.output
        return sorted(Path(hit["path"]).name for hit in json.loads(result.output))

    assert paths("--meta", "pages=3") == ["three.pdf"]
    assert paths("--meta", "pages=1") == ["one.pdf"]
    assert paths("--meta", "front_matter=true") == ["front.md"]
    assert paths("--meta", "pages.x=3") == []


def damage(database: Path, how: str) -> None:
    """Overwrite a few bytes of the header, the start of every page after the first, or everything."""
    if how == "not a database":
        database.write_text("These are my notes, not a database.\n")
        return
    with open(database, "r+b") as handle:
        if how == "header":
            handle.write(b"GARBAGE GARBAGE!")
            return
        page, size = 4096, database.stat().st_size
        for offset in range(page, size, page):
            handle.seek(offset)
            handle.write(b"\xde\xad\xbe\xef" * 4)


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("how", ["header", "middle", "not a database"])
def test_a_damaged_index_is_one_line_for_every_command(runner, tmp_path, docs, fake_model, how):
    index = tmp_path / "idx"
    run(runner, "--index", index, "index", docs)
    damage(index / "semsearch.db", how)
    for command in (["status"], ["search", "bread"], ["search", "bread", "--mode", "keyword"],
                    ["index", docs], ["rebuild"], ["remove", docs / "kitchen"]):
        line = one_error_line(run(runner, "--index", index, *command))
        assert f"the index at {index} is damaged" in line and "index again" in line, (command, line)


def test_a_damaged_index_in_a_real_process(tmp_path, docs, fake_embedder):
    import semsearch

    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.index(docs)
    damage(tmp_path / "idx" / "semsearch.db", "header")
    for command in (["status"], ["search", "bread"]):
        result = subprocess.run([sys.executable, "-m", "semsearch", "--index", str(tmp_path / "idx"), *command],
                                capture_output=True, text=True)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.startswith("Error: the index at") and result.stderr.count("\n") == 1, result.stderr


def test_an_index_folder_that_cannot_be_created(runner, tmp_path, docs, fake_model):
    (tmp_path / "a-file").write_text("x")
    line = one_error_line(run(runner, "--index", tmp_path / "a-file" / "idx", "index", docs))
    assert "cannot create the index folder" in line and "--index" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_index_folder_in_a_read_only_folder(runner, tmp_path, docs, fake_model):
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = one_error_line(run(runner, "--index", locked / "idx", "index", docs))
    finally:
        locked.chmod(0o755)
    assert "cannot create the index folder" in line and "Permission denied" in line


def test_database_is_locked_is_one_line(runner, tmp_path, docs, fake_model, monkeypatch):
    import sqlite3

    import semsearch.database

    index = tmp_path / "idx"
    run(runner, "--index", index, "index", docs)
    (docs / "garden" / "roses.txt").write_text("Roses want sun.\n")
    monkeypatch.setattr(semsearch.database, "BUSY_TIMEOUT_MS", 100)
    other = sqlite3.connect(index / "semsearch.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        line = one_error_line(run(runner, "--index", index, "index", docs))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert f"the index at {index} is locked by another process (database is locked)" in line
    assert run(runner, "--index", index, "index", docs).exit_code == 0


def test_file_system_errors_and_bugs_are_one_line_too(runner, tmp_path, docs, fake_model, monkeypatch):
    import errno

    import semsearch.engine
    from semsearch.errors import StorageError

    index = tmp_path / "idx"
    run(runner, "--index", index, "index", docs)

    def disk_full(self, *args):
        raise OSError(errno.ENOSPC, "No space left on device", str(index / "segments" / "new.flat"))

    monkeypatch.setattr(semsearch.engine.Engine, "rebuild", disk_full)
    line = one_error_line(run(runner, "--index", index, "rebuild"))
    assert line == f"Error: {index / 'segments' / 'new.flat'}: No space left on device; free some disk space and try again"

    def full_then_again_while_cleaning_up(self, *paths):
        try:
            raise StorageError(f"the disk holding the index at {index} is full; free some space and try again")
        finally:
            raise OSError(errno.ENOSPC, "No space left on device")  # saving the vector file, say

    monkeypatch.setattr(semsearch.engine.Engine, "remove", full_then_again_while_cleaning_up)
    line = one_error_line(run(runner, "--index", index, "remove", docs))
    assert line == f"Error: the disk holding the index at {index} is full; free some space and try again"

    def bug(self):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(semsearch.engine.Engine, "status", bug)
    line = one_error_line(run(runner, "--index", index, "status"))
    assert "unexpected RuntimeError: something unforeseen" in line and "SEMSEARCH_DEBUG=1" in line
    monkeypatch.setenv("SEMSEARCH_DEBUG", "1")
    with pytest.raises(RuntimeError):
        run(runner, "--index", index, "status")


EVERY_COMMAND = [
    ["index", "DOCS"], ["search", "bread"], ["status"], ["remove", "DOCS"], ["rebuild"], ["verify"], ["eval", "BEIR"],
    ["similar", "DOCS"], ["serve"], ["mcp"], ["watch", "DOCS"],
]


def test_the_list_of_every_command_is_complete():
    assert {command[0] for command in EVERY_COMMAND} == set(cli.commands)


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=[command[0] for command in EVERY_COMMAND])
def test_every_command_has_the_error_boundary(runner, tmp_path, docs, monkeypatch, command):
    import semsearch
    import semsearch.evaluation

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(semsearch, "open", broken)
    monkeypatch.setattr(semsearch.evaluation, "load_dataset", broken)
    beir = tmp_path / "beir"  # shaped like a BEIR dataset, so eval gets as far as loading it
    beir.mkdir()
    (beir / "corpus.jsonl").write_text("")
    args = [{"DOCS": str(docs), "BEIR": str(beir)}.get(arg, arg) for arg in command]
    line = one_error_line(run(runner, "--index", tmp_path / "idx", *args))
    assert line.startswith("Error: unexpected RuntimeError: boom; this is a bug")


def test_output_piped_to_a_reader_that_stops_ends_quietly(tmp_path):
    """`semsearch search ... | head -1`: no "Broken pipe" error, no traceback, SIGPIPE's status."""
    from processes import FAKE_CLI

    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(600):  # hits of ~250 bytes each as printed: more than a pipe holds
        (notes / f"n{i:03}.md").write_text(f"# Tides {i}\n\nThe moon pulls the oceans and makes tides.\n")
    index = tmp_path / "idx"
    env = {**os.environ, "SEMSEARCH_KEEP_WARM": "0"}
    assert subprocess.run([*FAKE_CLI, "--index", str(index), "index", str(notes)], capture_output=True, env=env).returncode == 0
    process = subprocess.Popen([*FAKE_CLI, "--index", str(index), "search", "tides moon", "-n", "600"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert process.stdout.readline()  # more than a pipe holds follows; the reader stops here
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, err
    assert err == ""


def test_a_file_name_or_text_with_escape_sequences_prints_inert(runner, tmp_path, fake_model, write_file):
    # A name with a newline and a window-title escape, and a log with colours: on a terminal
    # (color=True keeps click from stripping styles) nothing of theirs is sent raw.
    root = tmp_path / "logs"
    root.mkdir()
    folder = os.fsencode(root.resolve())
    write_file(folder + b"/build\n\x1b]0;owned\x07.log.txt", b"step 1 \x1b[32mok\x1b[0m\nstep 2 \x1b[31mtomatoes failed\x1b[0m\n")
    os.symlink(b"/dev/zero", folder + b"/zero\x1b[2J.txt")
    index = tmp_path / "idx"
    result = runner.invoke(cli, ["--index", str(index), "index", str(root), "-v"], color=True)
    assert result.exit_code == 0, result.output
    assert "zero\\x1b[2J.txt: not a regular file" in result.output and "\x1b[2J" not in result.output
    result = runner.invoke(cli, ["--index", str(index), "search", "tomatoes failed"], color=True)
    assert result.exit_code == 0, result.output
    assert "build\\n\\x1b]0;owned\\x07.log.txt:1" in result.output
    assert "\x1b]" not in result.output and "\x1b[31m" not in result.output and "\x1b[32m" not in result.output
    assert "step 2 " in result.output  # the text itself is kept
    hits = json.loads(run(runner, "--index", index, "search", "tomatoes", "--json").output)
    assert hits[0]["path"].endswith("/build\n\x1b]0;owned\x07.log.txt")  # JSON keeps the real name


def test_a_query_that_starts_with_a_dash_gets_told_how(runner, tmp_path, docs, fake_model):
    index = tmp_path / "idx"
    run(runner, "--index", index, "index", docs)
    result = runner.invoke(cli, ["--index", str(index), "search", "-v flag meaning"])
    assert result.exit_code == 2
    assert "To search for '-v flag meaning', put -- before it: semsearch search -- '-v flag meaning'" in result.output
    result = runner.invoke(cli, ["--index", str(index), "search", "--limt", "3", "bread"])
    assert result.exit_code == 2 and "--limit" in result.output and "To search for" not in result.output  # a misspelt option
    result = runner.invoke(cli, ["--index", str(index), "search", "--limit", "1", "--", "-sourdough"])
    assert result.exit_code == 0, result.output
