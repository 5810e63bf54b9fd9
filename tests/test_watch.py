"""`semsearch watch` as a real process on real file changes: a save, an editor's save-by-rename,
a bulk copy and a bulk delete are one update each; a removed and recreated folder is followed;
Ctrl-C leaves an index that verifies. The fake embedder (tests/fake_cli.py) keeps it quick; the
last test runs the real command with the real model."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import time
from pathlib import Path

import pytest

import semsearch
from processes import FAKE_CLI, REAL_CLI, Process


class Watcher:
    """``semsearch watch --json`` on a folder, with its updates as dicts."""

    def __init__(self, cli, index: Path, *paths: Path) -> None:
        self.process = Process([*cli, "--index", str(index), "watch", *map(str, paths), "--json"])
        self.start = self.next(timeout=180)
        assert self.start["reason"] == "start", self.start

    def next(self, timeout: float = 60) -> dict:
        return json.loads(self.process.wait_for(r"^\{", timeout=timeout, stream="out").string)

    def quiet(self, seconds: float = 1.5) -> None:
        """Assert that no further update comes within ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                name, line = self.process.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.process.output.append((name, line))
            assert not (name == "out" and line.startswith("{")), f"an extra update: {line}"

    def stop(self) -> int:
        return self.process.interrupt()


def searchable(index: Path, fake_embedder, query: str) -> list[str]:
    with semsearch.open(index, embedder=fake_embedder, create=False) as engine:
        return [Path(hit.path).name for hit in engine.search(query, mode="keyword", limit=50)]


def test_saves_renames_bulk_copies_and_deletes_are_one_update_each(tmp_path, fake_embedder):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("lighthouse keepers trim the lamp\n")
    index = tmp_path / "idx"
    watcher = Watcher(FAKE_CLI, index, notes)
    try:
        assert watcher.start["new"] == 1

        (notes / "b.md").write_text("# Tides\n\nThe moon makes the tides.\n")
        update = watcher.next()
        assert (update["reason"], update["new"], update["changed"]) == ("changes", 1, 0)
        assert "b.md" in searchable(index, fake_embedder, "tides")

        # Save-by-rename, as vim does: keep a backup, write a new file, rename it over, drop the backup.
        (notes / ".a.txt.swp").write_text("swap")
        (notes / "a.txt").rename(notes / "a.txt~")
        (notes / "4913").write_text("")
        (notes / "4913").unlink()
        (notes / "a.txt.new").write_text("lighthouse keepers polish the brass\n")
        (notes / "a.txt.new").rename(notes / "a.txt")
        (notes / "a.txt~").unlink()
        (notes / ".a.txt.swp").unlink()
        update = watcher.next()
        assert (update["changed"], update["new"], update["removed"]) == (1, 0, 0), update
        watcher.quiet()
        assert "a.txt" in searchable(index, fake_embedder, "brass")

        # A bulk copy, then a bulk delete.
        source = tmp_path / "bulk"
        source.mkdir()
        for i in range(150):
            (source / f"note{i:03}.txt").write_text(f"bulk note {i} about harbour number{i}\n")
        shutil.copytree(source, notes / "bulk")
        update = watcher.next()
        assert update["new"] == 150, update
        watcher.quiet()
        assert "note149.txt" in searchable(index, fake_embedder, "number149")
        shutil.rmtree(notes / "bulk")
        update = watcher.next()
        assert update["removed"] == 150, update
        watcher.quiet()

        # Hidden files and folders are never indexed, so they wake nothing.
        (notes / ".cache").mkdir()
        (notes / ".cache" / "x.txt").write_text("hidden")
        watcher.quiet()
    finally:
        assert watcher.stop() == 0
    assert "Stopped." in watcher.process.text()
    with semsearch.open(index, embedder=fake_embedder, create=False) as engine:
        assert engine.verify().ok
        assert engine.status().documents == 2


def test_a_watched_folder_removed_and_made_again_is_followed(tmp_path, fake_embedder):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("orchard apples\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "o.txt").write_text("other folder pears\n")
    index = tmp_path / "idx"
    watcher = Watcher(FAKE_CLI, index, notes, other)
    try:
        shutil.rmtree(notes)
        update = watcher.next()
        assert update["removed"] == 1, update
        assert searchable(index, fake_embedder, "apples") == []
        notes.mkdir()
        (notes / "c.txt").write_text("cherries in the orchard\n")
        update = watcher.next()
        if update["new"] == 0:  # the folder came back empty first; its file is the next update
            update = watcher.next()
        assert update["new"] == 1, update
        (notes / "d.txt").write_text("damsons in the orchard\n")  # and the new folder is watched
        assert watcher.next()["new"] == 1
        (other / "o2.txt").write_text("other folder quinces\n")  # the other folder all along
        assert watcher.next()["new"] == 1
        assert set(searchable(index, fake_embedder, "orchard")) == {"c.txt", "d.txt"}
    finally:
        assert watcher.stop() == 0


def test_its_own_index_inside_the_folder_wakes_nothing(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("alpha\n")
    watcher = Watcher(FAKE_CLI, notes / "index", notes)  # the index's own writes are inside
    try:
        (notes / "b.txt").write_text("beta\n")
        assert watcher.next()["new"] == 1
        watcher.quiet(2.0)
    finally:
        assert watcher.stop() == 0


@pytest.mark.parametrize("moment", ["idle", "indexing"])
def test_ctrl_c_leaves_a_consistent_index(tmp_path, fake_embedder, moment):
    notes = tmp_path / "notes"
    notes.mkdir()
    files = 3000 if moment == "indexing" else 5
    for i in range(files):
        (notes / f"n{i:04}.txt").write_text(f"note {i} with words word{i} " * 20 + "\n")
    index = tmp_path / "idx"
    process = Process([*FAKE_CLI, "--index", str(index), "watch", str(notes)])
    if moment == "idle":
        process.wait_for(r"files indexed", stream="out", timeout=120)
        status = process.interrupt()
        assert status == 0
    else:
        process.wait_for(r"^Watching ", stream="out", timeout=120)
        time.sleep(2.0)  # well inside the first update: thousands of files to embed
        process.popen.send_signal(signal.SIGINT)
        status = process.popen.wait(timeout=60)
        assert status in (0, 130), process.text()
    assert "Traceback" not in process.text()
    with semsearch.open(index, embedder=fake_embedder, create=False) as engine:
        report = engine.verify()
        assert report.ok, report.problems
        if moment == "indexing" and status == 130:
            assert engine.status().documents < files  # stopped part way: whole waves or nothing


@pytest.mark.slow
def test_the_real_command_with_the_real_model(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "kites.md").write_text("# Kites\n\nA kite needs steady wind and a long line.\n")
    index = tmp_path / "idx"
    watcher = Watcher(REAL_CLI, index, notes)
    try:
        (notes / "bread.md").write_text("# Bread\n\nKnead the dough and let the yeast rise.\n")
        assert watcher.next(timeout=120)["new"] == 1
        with semsearch.open(index, create=False) as engine:
            hits = engine.search("how do I make dough rise", limit=1, mode="semantic")
        assert hits[0].path.endswith("bread.md")
    finally:
        assert watcher.stop() == 0
    assert os.path.exists(index / "semsearch.db")
