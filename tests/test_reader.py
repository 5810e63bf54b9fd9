"""Files are parsed in a worker process within a time and a memory limit (semsearch/reader.py).

The two hostile files are made here (tests/hostile_files.py): a PDF whose pages share one long
content stream (pypdf needs about a quarter of an hour for it) and a DOCX decompression bomb (300
MB of XML in 0.7 MB). Each is indexed by the real CLI in a child process with a deadline, so
code that hangs on them fails the test instead of blocking it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_cli import semsearch
from hostile_files import busy_pdf, docx_bomb
from pdfgen import make_pdf
from semsearch.loaders import load
from semsearch.reader import Reader, ReadJob, ReadLimits

DEADLINE = 120  # seconds for a whole CLI run; the old in-process parsing needed far longer


def index_json(index: Path, folder: Path, *options: str, memory_mb: int = 0) -> dict:
    try:
        result = semsearch("--index", str(index), "index", str(folder), "--json", *options,
                           timeout=DEADLINE, memory_mb=memory_mb)
    except subprocess.TimeoutExpired:
        pytest.fail(f"semsearch index did not finish within {DEADLINE} s: a file held the run up")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def reasons(summary: dict) -> dict[str, str]:
    return {Path(item["path"]).name: item["reason"] for item in summary["skipped_files"]}


def test_a_pdf_that_keeps_the_parser_busy_is_skipped_and_the_run_goes_on(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a-before.md").write_text("# Tides\n\nThe moon raises the tides twice a day.\n")
    (folder / "busy.pdf").write_bytes(busy_pdf())
    (folder / "c-after.txt").write_text("Bread rises when the yeast is warm.\n")
    started = time.monotonic()
    summary = index_json(tmp_path / "index", folder, "--max-read-seconds", "2")
    assert reasons(summary) == {"busy.pdf": "took longer than 2 s to read"}
    assert summary["new"] == 2
    assert time.monotonic() - started < DEADLINE / 2
    search = semsearch("--index", str(tmp_path / "index"), "search", "yeast", "--json", timeout=60)
    assert search.returncode == 0 and "c-after.txt" in search.stdout


def test_a_docx_decompression_bomb_is_skipped_and_the_run_goes_on(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a-before.md").write_text("# Tides\n\nThe moon raises the tides twice a day.\n")
    bomb = docx_bomb(300)
    assert len(bomb) < 2**20  # 300 MB of XML in under 1 MB
    (folder / "bomb.docx").write_bytes(bomb)
    (folder / "c-after.txt").write_text("Bread rises when the yeast is warm.\n")
    # The child as a whole may use 4 GB, so a run that parses in-process fails here, not the machine.
    summary = index_json(tmp_path / "index", folder, "--max-read-memory", "512", memory_mb=4096)
    assert reasons(summary) == {"bomb.docx": "needed more than 512 MB to read"}
    assert summary["new"] == 2


def test_the_worker_gives_what_parsing_in_process_gives(tmp_path):
    files = {
        "notes.md": b"# Title\n\nA paragraph.\n\n```\ncode\n```\n",
        "page.html": b"<html><head><title>T</title></head><body><h1>H</h1><p>Text.</p></body></html>",
        "paper.pdf": make_pdf([["First page line"], ["Second page"]], title="A paper"),
        "empty.txt": b"",
        "binary.txt": bytes(range(256)) * 4,
        "broken.pdf": b"%PDF-1.4 not really",
    }
    expected = {}
    for name, data in files.items():
        try:
            expected[name] = load(Path(name), data)
        except Exception as error:
            expected[name] = str(error)
    with Reader() as reader:
        jobs = [ReadJob(name, f"/docs/{name}", data) for name, data in files.items()]
        got = {job.key: outcome for job, outcome in reader.read(jobs)}
    assert got == expected


def test_after_a_file_overruns_the_rest_of_its_batch_is_parsed_by_a_new_worker():
    limits = ReadLimits(seconds=1)
    jobs = [ReadJob(f"before{i}", f"/d/before{i}.txt", b"fine %d" % i) for i in range(3)]
    jobs.append(ReadJob("busy", "/d/busy.pdf", busy_pdf(pages=50)))
    jobs += [ReadJob(f"after{i}", f"/d/after{i}.txt", b"also fine %d" % i) for i in range(3)]
    with Reader(limits) as reader:
        outcomes = {job.key: outcome for job, outcome in reader.read(jobs)}
    assert outcomes.pop("busy") == "took longer than 1 s to read"
    assert [outcome.text for outcome in outcomes.values()] == [
        "fine 0", "fine 1", "fine 2", "also fine 0", "also fine 1", "also fine 2"]


def test_a_worker_that_dies_is_reported_for_its_file_and_replaced():
    with Reader(ReadLimits(seconds=60)) as reader:
        reader.start()
        pid = reader._worker.process.pid
        killer = subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(2); os.kill({pid}, 9)"])
        (_, outcome), (_, parsed) = reader.read([
            ReadJob("busy", "/d/busy.pdf", busy_pdf(pages=50)),
            ReadJob("next", "/d/next.txt", b"still parsed"),
        ])
        killer.wait()
    assert outcome == "the parser crashed (SIGKILL)"
    assert parsed.text == "still parsed"


def test_a_caller_busier_than_the_limit_does_not_make_files_overrun():
    """Found by benchmarks/fuzz.py: while the indexer embedded for longer than the limit, the
    next small file counted as late (and a new worker as not started) without a look at its reply."""
    jobs = [ReadJob(i, f"/d/note{i}.md", b"# Note %d\n\nSmall." % i) for i in range(3)]
    outcomes = []
    with Reader(ReadLimits(seconds=0.5)) as reader:
        for _, outcome in reader.read(jobs):
            outcomes.append(outcome)
            time.sleep(1.5)  # embedding, say
    assert [outcome.title for outcome in outcomes] == ["Note 0", "Note 1", "Note 2"]


def test_a_file_that_finishes_past_the_limit_is_skipped_all_the_same():
    # About 2.7 s of work on a loaded machine, less on an idle one: always more than 0.05 s.
    with Reader(ReadLimits(seconds=0.05)) as reader:
        [(_, outcome)] = reader.read([ReadJob("busy", "/d/busy.pdf", busy_pdf(pages=1))])
    assert outcome == "took longer than 0.05 s to read"


def test_the_worker_does_not_outlive_the_indexing_process(tmp_path):
    """Killed with SIGKILL mid-file, the indexing process leaves no worker behind."""
    pdf = tmp_path / "busy.pdf"
    pdf.write_bytes(busy_pdf())
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from semsearch.reader import Reader, ReadJob\n"
        "reader = Reader()\n"
        "reader.start()\n"
        "print(reader._worker.process.pid, flush=True)\n"
        "next(reader.read([ReadJob(0, sys.argv[1], Path(sys.argv[1]).read_bytes())]))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script, str(pdf)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    time.sleep(1)
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(100):
        if not _alive(worker):
            break
        time.sleep(0.05)
    assert not _alive(worker)


def test_closing_the_reader_stops_its_worker():
    reader = Reader()
    results = reader.read([ReadJob(0, "/d/busy.pdf", busy_pdf())])
    reader.start()
    process = reader._worker.process
    assert process.poll() is None
    reader.close()
    assert process.poll() is not None
    results.close()


def test_limits_are_checked():
    with pytest.raises(ValueError):
        ReadLimits(seconds=0)
    with pytest.raises(ValueError):
        ReadLimits(memory_mb=10)


def test_index_options_reject_nonsense_limits(tmp_path):
    result = semsearch("--index", str(tmp_path / "i"), "index", str(tmp_path), "--max-read-seconds", "0", timeout=60)
    assert result.returncode == 2 and "--max-read-seconds" in result.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return os.path.exists(f"/proc/{pid}")
