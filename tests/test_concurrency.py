"""Four reader processes search in a loop while a writer indexes, edits, removes and merges:
no reader ever fails, every hit names a document that was written, readers take no lock, a
second writer is refused at once, and a writer killed with SIGKILL blocks nobody."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

READER = """
import json, sys, time
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder
import semsearch
index, seconds = sys.argv[1], float(sys.argv[2])
report = {{"searches": 0, "errors": [], "paths": []}}
with semsearch.open(index, embedder=FakeEmbedder(), create=False) as engine:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for mode in ("semantic", "keyword", "hybrid"):
            try:
                hits = engine.search("tides bread roses", limit=5, mode=mode)
                report["searches"] += 1
                if any(not hit.text for hit in hits):
                    report["errors"].append("a hit without its chunk text")
                report["paths"] += [hit.path for hit in hits]
            except Exception as error:
                report["errors"].append(f"{{type(error).__name__}}: {{error}}")
        assert not engine._lock.held
print(json.dumps(report))
"""

WRITER = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder
import semsearch
class Stuck(FakeEmbedder):
    def embed(self, texts):
        print("locked", flush=True)  # called inside index(), which holds the write lock
        time.sleep(float(sys.argv[3]))
        return super().embed(texts)
with semsearch.open(sys.argv[1], embedder=Stuck()) as engine:
    engine.index(sys.argv[2])
"""


def write_notes(root: Path, round_: int) -> None:
    for i in range(12):
        (root / f"note{i:02}.txt").write_text(
            f"Note {i} round {round_}\\n\\n" + f"tides bread roses topic{i} round{round_} " * (5 + i)
        )


@pytest.mark.slow
def test_readers_never_fail_while_a_writer_changes_everything(tmp_path, fake_embedder):
    import semsearch

    root = tmp_path / "notes"
    root.mkdir()
    write_notes(root, 0)
    index = tmp_path / "idx"
    with semsearch.open(index, embedder=fake_embedder) as engine:
        engine.index(root)
    readers = [
        subprocess.Popen([sys.executable, "-c", READER.format(tests=str(TESTS)), str(index), "12"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    written = {str((root / f"note{i:02}.txt").resolve()) for i in range(12)}
    deadline = time.monotonic() + 10
    round_ = 0
    with semsearch.open(index, embedder=fake_embedder) as engine:
        while time.monotonic() < deadline:
            round_ += 1
            write_notes(root, round_)
            engine.index(root)
            engine.add_texts([f"tides text {round_}"], ids=[f"text-{round_ % 3}"])
            written |= {f"text-{round_ % 3}"}
            if round_ % 3 == 0:
                engine.remove(root / "note00.txt")
            if round_ % 5 == 0:
                engine.rebuild()
    for reader in readers:
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        report = json.loads(out)
        assert report["errors"] == [] and report["searches"] > 10, report
        assert set(report["paths"]) <= written
    assert semsearch.open(index, embedder=fake_embedder).verify().ok


@pytest.mark.slow
def test_a_second_writer_is_refused_and_a_killed_writer_blocks_nobody(tmp_path, docs, fake_embedder):
    import semsearch
    from semsearch.errors import IndexLockedError

    index = tmp_path / "idx"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER.format(tests=str(TESTS)), str(index), str(docs), "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert writer.stdout.readline().strip() == "locked"
    time.sleep(0.5)
    with semsearch.open(index, embedder=fake_embedder) as engine:
        started = time.monotonic()
        with pytest.raises(IndexLockedError, match="another semsearch process"):
            engine.index(docs)
        assert time.monotonic() - started < 2
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        summary = engine.index(docs)  # the lock died with its process
        assert summary.new == 4
        assert engine.verify().ok
