"""The indexing pipeline: the model embeds on its own thread while waves are written and chunked,
with the same results as one thing at a time; and the progress it reports."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

import semsearch
import semsearch.engine
import semsearch.ingest
from semsearch.cli import cli
from semsearch.display import duration, progress_line
from semsearch.types import IndexProgress


class TimedEmbedder:
    """Wraps the fake embedder: slow enough to overlap, and records which thread embedded when."""

    def __init__(self, inner, seconds: float = 0.02) -> None:
        self.inner, self.seconds = inner, seconds
        self.name, self.dimension, self.max_tokens, self.counter = inner.name, inner.dimension, inner.max_tokens, inner.counter
        self.calls: list[tuple[str, float, float]] = []

    def embed(self, texts):
        started = time.perf_counter()
        time.sleep(self.seconds)
        vectors = self.inner.embed(texts)
        self.calls.append((threading.current_thread().name, started, time.perf_counter()))
        return vectors


def notes(count: int) -> list[str]:
    return [f"Note {i} about topic {i % 7}. " + f"Words about subject {i} and more words. " * 20 for i in range(count)]


def stored(index) -> list[tuple[str, str, bytes]]:
    with sqlite3.connect(index / "semsearch.db") as connection:
        return connection.execute(
            "SELECT d.path, c.text, c.vector FROM chunks c JOIN documents d ON d.id = c.document_id "
            "ORDER BY d.path, c.ordinal"
        ).fetchall()


def test_overlapped_waves_store_exactly_what_one_at_a_time_stores(tmp_path, fake_embedder, monkeypatch):
    monkeypatch.setattr(semsearch.ingest, "WAVE_CHUNKS", 7)
    texts = notes(40) + notes(5)  # the last five repeat earlier texts: their vectors are reused
    results = {}
    for overlap in (True, False):
        monkeypatch.setattr(semsearch.ingest, "OVERLAP", overlap)
        fake_embedder.embedded.clear()
        with semsearch.open(tmp_path / f"idx-{overlap}", embedder=fake_embedder) as engine:
            summary = engine.add_texts(texts, ids=[f"t{i}" for i in range(len(texts))])
        results[overlap] = (stored(tmp_path / f"idx-{overlap}"), summary, list(fake_embedder.embedded))
    (rows_on, summary_on, embedded_on), (rows_off, summary_off, embedded_off) = results[True], results[False]
    assert rows_on == rows_off
    assert sorted(embedded_on) == sorted(embedded_off)
    assert len(embedded_on) == len(set(embedded_on))  # no text embedded twice, across waves either
    for field in ("new", "chunks_added", "chunks_embedded", "chunks_reused"):
        assert getattr(summary_on, field) == getattr(summary_off, field)


def test_a_text_repeated_in_the_next_wave_borrows_the_vector_being_embedded(tmp_path, fake_embedder, monkeypatch):
    monkeypatch.setattr(semsearch.ingest, "WAVE_CHUNKS", 1)  # one document per wave
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        summary = engine.add_texts(["the same words", "the same words", "other words"], ids=["a", "b", "c"])
    assert fake_embedder.embedded == ["the same words", "other words"]
    assert (summary.chunks_embedded, summary.chunks_reused, summary.chunks_added) == (2, 1, 3)
    rows = {path: vector for path, _, vector in stored(tmp_path / "idx")}
    assert rows["a"] == rows["b"]


def test_the_model_embeds_on_its_own_thread_while_waves_are_written(tmp_path, fake_embedder, monkeypatch):
    monkeypatch.setattr(semsearch.ingest, "WAVE_CHUNKS", 8)
    embedder = TimedEmbedder(fake_embedder, seconds=0.03)
    writes: list[tuple[float, float]] = []
    original = semsearch.ingest.Indexer._flush

    def timed_flush(self, wave, tally, tracker):
        started = time.perf_counter()
        original(self, wave, tally, tracker)
        writes.append((started, time.perf_counter()))

    monkeypatch.setattr(semsearch.ingest.Indexer, "_flush", timed_flush)
    with semsearch.open(tmp_path / "idx", embedder=embedder) as engine:
        engine.add_texts(notes(60))
    assert {name for name, _, _ in embedder.calls} == {"semsearch-embed_0"}
    # Some wave's write (which waits for its own vectors first) ran while the next wave was embedded.
    overlapped = [
        (w_start, w_end) for w_start, w_end in writes
        if any(e_start < w_end and w_start < e_end for _, e_start, e_end in embedder.calls)
    ]
    assert len(overlapped) >= len(writes) // 2, (writes, embedder.calls)


def test_an_interrupt_while_the_model_works_keeps_finished_waves(tmp_path, fake_embedder, monkeypatch):
    monkeypatch.setattr(semsearch.ingest, "WAVE_CHUNKS", 5)
    fake_embedder.fail_after = 12
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        summary = engine.add_texts(notes(30), ids=[f"t{i}" for i in range(30)])
        assert summary.interrupted
        assert 0 < engine.status().documents == summary.new < 30
        assert engine.verify().ok
        fake_embedder.fail_after = None
        again = engine.add_texts(notes(30), ids=[f"t{i}" for i in range(30)])
    assert again.unchanged == summary.new and again.new == 30 - summary.new


def test_progress_reports_files_chunks_and_time_left(tmp_path, fake_embedder, monkeypatch):
    monkeypatch.setattr(semsearch.ingest, "WAVE_CHUNKS", 8)
    monkeypatch.setattr(semsearch.ingest, "PROGRESS_SECONDS", 0.01)
    folder = tmp_path / "notes"
    folder.mkdir()
    for i, text in enumerate(notes(30)):
        (folder / f"note{i:02}.txt").write_text(text)
    (folder / "picture.png").write_bytes(b"\x89PNG\r\n")
    seen: list[IndexProgress] = []
    with semsearch.open(tmp_path / "idx", embedder=TimedEmbedder(fake_embedder, 0.02)) as engine:
        summary = engine.index(folder, progress=seen.append)
    assert seen and all(p.files_total == 30 for p in seen)
    done = [p.files_done for p in seen]
    assert done == sorted(done) and done[-1] == 30
    assert any(0 < d < 30 for d in done)  # it moved before the end
    chunks = [p.chunks_embedded for p in seen]
    assert chunks == sorted(chunks) and chunks[-1] == summary.chunks_embedded
    middle = next(p for p in seen if 0 < p.files_done < 30 and p.seconds > 0)
    assert middle.files_per_second > 0 and middle.chunks_per_second > 0
    assert middle.eta_seconds == pytest.approx((30 - middle.files_done) / middle.files_per_second)
    assert seen[0].eta_seconds is None or seen[0].files_done > 0


def test_the_progress_line_says_rates_and_time_left():
    line = progress_line(IndexProgress(files_done=50, files_total=200, chunks_embedded=400, seconds=10.0))
    assert line == "Indexing  [######------------------]  50/200 files  5.0 files/s  40 chunks/s  ETA 30s"
    assert progress_line(IndexProgress(0, 0, 0, 0.0)) == "Indexing  0 files"
    assert [duration(s) for s in (4.2, 185, 3725)] == ["4s", "3m05s", "1h02m"]


def test_the_cli_shows_progress_only_when_asked_or_on_a_terminal(tmp_path, docs, fake_model):
    runner = CliRunner()
    shown = runner.invoke(cli, ["--index", str(tmp_path / "a"), "index", str(docs), "--progress"])
    assert shown.exit_code == 0, shown.output
    assert "Indexing  [" in shown.stderr and "4/4 files" in shown.stderr
    quiet = runner.invoke(cli, ["--index", str(tmp_path / "b"), "index", str(docs)])
    assert quiet.exit_code == 0 and "Indexing" not in quiet.stderr  # CliRunner's stderr is no terminal



class ManyAtOnceEmbedder(TimedEmbedder):
    """Says it runs ``at_once`` texts at once (as an ONNX embedder with one batch per core does)."""

    def __init__(self, inner, at_once: int) -> None:
        super().__init__(inner, seconds=0)
        self.texts_at_once = at_once
        self.sizes: list[int] = []

    def embed(self, texts):
        self.sizes.append(len(texts))
        return super().embed(texts)


@pytest.mark.parametrize(("at_once", "call"), [(4, 32), (32, 32), (np.int64(48), 96), (16 * 16, 512), (10**6, 2048)])
def test_each_call_gives_an_embedder_enough_texts_to_keep_every_core_busy(tmp_path, fake_embedder, at_once, call):
    # A 16-core machine runs 16 batches of 16 at once; with calls of 32 texts it ran two (issue 8).
    embedder = ManyAtOnceEmbedder(fake_embedder, at_once)
    texts = [f"Note number {i} on its own subject {i * 7919}." for i in range(2500)]
    with semsearch.open(tmp_path / "idx", embedder=embedder) as engine:
        summary = engine.add_texts(texts, ids=[f"t{i}" for i in range(len(texts))])
        found = engine.search("Note number 1234 on its own subject", limit=1, mode="keyword")
    assert summary.chunks_embedded == len(texts) == sum(embedder.sizes)
    assert found[0].path == "t1234"
    assert max(embedder.sizes) == call
    assert sum(size < call for size in embedder.sizes) <= 1  # only the last call of the run is short


def test_nothing_to_do_never_loads_the_model(tmp_path, fake_embedder, monkeypatch):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("Some words to index.")
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.index(folder)
    loads = []

    def load(self, precision, device):
        loads.append(device)
        return fake_embedder

    monkeypatch.setattr(semsearch.engine.Engine, "_load_embedder", load)
    with semsearch.open(tmp_path / "idx") as engine:
        assert engine.index(folder).unchanged == 1
        assert loads == []
        (folder / "b.txt").write_text("Other words.")
        assert engine.index(folder).new == 1
    assert len(loads) == 1  # the check can fail: a changed file does load it
