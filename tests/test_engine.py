"""The engine with the fake embedder: indexing, incremental updates, search, consistency."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import semsearch
from semsearch.errors import (
    EmptyIndexError,
    EmptyQueryError,
    IndexLockedError,
    IndexNotFoundError,
    ModelMismatchError,
)
from semsearch.locking import WriteLock
from vectors_on_disk import live_vector_ids, segment_files, stored_chunk_ids


def open_engine(path: Path, embedder, **options):
    return semsearch.open(path, embedder=embedder, **options)


def bump_mtime(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_index_then_search_finds_the_right_document(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        summary = engine.index(docs)
        assert (summary.new, summary.changed, summary.unchanged) == (4, 0, 0)
        assert summary.chunks_embedded == summary.chunks_added > 0
        for mode in ("semantic", "keyword", "hybrid"):
            hits = engine.search("knead the dough and let the yeast rise", limit=3, mode=mode)
            assert hits[0].path.endswith("kitchen/bread.md"), mode
            assert hits[0].rank == 1 and hits[0].title == "Baking bread"
            assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_hits_carry_line_numbers_of_the_source(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        hit = engine.search("aphids hornworms", limit=1, mode="keyword")[0]
    lines = Path(hit.path).read_text().splitlines()
    assert "hornworms" in "\n".join(lines[hit.start_line - 1 : hit.end_line])


def test_unchanged_files_cost_no_embedding(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        fake_embedder.embedded.clear()
        summary = engine.index(docs)
    assert summary.unchanged == 4 and summary.new == summary.changed == 0
    assert summary.chunks_embedded == 0 and fake_embedder.embedded == []


def test_touched_but_identical_file_is_unchanged(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        bump_mtime(docs / "garden" / "roses.txt")
        fake_embedder.embedded.clear()
        summary = engine.index(docs)
    assert summary.unchanged == 4 and fake_embedder.embedded == []


def test_editing_one_file_embeds_only_its_new_chunks(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        target = docs / "garden" / "tomatoes.md"
        target.write_text(target.read_text() + "\n## Harvest\n\nPick tomatoes when they are fully red.\n")
        bump_mtime(target)
        fake_embedder.embedded.clear()
        summary = engine.index(docs)
        assert (summary.changed, summary.unchanged) == (1, 3)
        # Only the new section was embedded; the unchanged chunks of the file reused their vectors.
        assert summary.chunks_embedded == len(fake_embedder.embedded) == 1
        assert "fully red" in fake_embedder.embedded[0]
        assert summary.chunks_reused >= 2
        assert engine.search("fully red harvest", limit=1, mode="keyword")[0].path == str(target.resolve())


def test_deleted_file_is_removed_everywhere(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        (docs / "kitchen" / "soup.rst").unlink()
        summary = engine.index(docs)
        assert summary.removed == 1
        assert all("soup" not in h.path for h in engine.search("onions butter", limit=10, mode="semantic"))
        assert engine.status().documents == 3
        assert engine.vectors().count() == engine.status().chunks


def test_no_prune_keeps_deleted_files(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        (docs / "kitchen" / "soup.rst").unlink()
        summary = engine.index(docs, prune=False)
        assert summary.removed == 0 and engine.status().documents == 4


def test_files_this_run_did_not_select_are_not_pruned(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        assert engine.index(docs, include=["*.md"]).removed == 0
        assert engine.index(docs, exclude=["kitchen/"]).removed == 0
        (docs / ".gitignore").write_text("*.txt\n")
        assert engine.index(docs).removed == 0
        assert engine.status().documents == 4
        # A file that is really gone goes, selected by this run or not.
        (docs / "kitchen" / "soup.rst").unlink()
        summary = engine.index(docs, include=["*.md"])
        assert summary.removed == 1 and engine.status().documents == 3


def test_a_copy_outside_include_is_not_mistaken_for_a_move(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        (docs / "garden" / "roses.md").write_bytes((docs / "garden" / "roses.txt").read_bytes())
        summary = engine.index(docs, include=["*.md"])
        assert (summary.new, summary.moved, summary.removed) == (1, 0, 0)
        assert engine.status().documents == 5


def test_files_that_cannot_be_looked_at_this_time_are_not_pruned(tmp_path, docs, fake_embedder, monkeypatch):
    kitchen = str((docs / "kitchen").resolve())
    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == kitchen:
            raise PermissionError(13, "Permission denied", kitchen)
        return real_scandir(path)

    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        monkeypatch.setattr(os, "scandir", scandir)
        summary = engine.index(docs)
        assert summary.removed == 0 and engine.status().documents == 4
        assert [(s.path, s.reason) for s in summary.skipped] == [(kitchen, "unreadable folder")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_unreadable_folder_is_not_pruned(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        (docs / "kitchen").chmod(0)
        try:
            summary = engine.index(docs)
        finally:
            (docs / "kitchen").chmod(0o755)
        assert summary.removed == 0 and engine.status().documents == 4


def test_file_names_that_are_not_utf8_are_indexed_and_the_run_goes_on(tmp_path, fake_embedder, write_file):
    root = tmp_path / "names"
    root.mkdir()
    folder = os.fsencode(root.resolve())
    write_file(folder + b"/notes\xff.txt", b"Tomatoes need full sun and deep watering.\n")
    write_file(folder + b"/tomato\xe9s.py", b"def water_tomatoes():\n    return 'deep watering'\n")
    (root / "z.txt").write_text("Bread needs yeast and a hot oven.\n")
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        summary = engine.index(root)
        assert (summary.new, summary.skipped) == (3, ())
        hits = engine.search("tomatoes watering", limit=3, mode="keyword")
        # Stray bytes are shown as escapes, as `ls -b` does: valid text for SQLite, JSON and terminals.
        assert {Path(hit.path).name for hit in hits} == {"notes\\xff.txt", "tomato\\xe9s.py"}
        assert {hit.title for hit in hits} == {"Tomatoes need full sun and deep watering.", "tomato\\xe9s.py"}
        assert engine.index(root).unchanged == 3
        assert engine.index(root, include=["*.md"]).removed == 0
        assert engine.remove(os.fsdecode(folder + b"/notes\xff.txt")) == 1
        os.unlink(folder + b"/tomato\xe9s.py")
        summary = engine.index(root)
        assert (summary.new, summary.removed) == (1, 1)
        assert engine.status().documents == 2


def test_a_name_that_spells_out_another_names_escape_is_skipped_not_a_crash(tmp_path, fake_embedder, write_file):
    """Found by benchmarks/fuzz.py: both names become ".../a\\xffb.txt" as text, and the run
    stopped with "write_documents needs distinct paths"."""
    root = tmp_path / "names"
    root.mkdir()
    folder = os.fsencode(root.resolve())
    write_file(folder + b"/a\xffb.txt", b"Written with the byte itself.\n")
    write_file(folder + b"/a\\xffb.txt", b"Spelled out with a backslash.\n")
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        summary = engine.index(root)
        assert summary.new == 1
        assert [s.reason for s in summary.skipped] == [
            "another file's name reads the same once bytes that are not UTF-8 are escaped"]
        again = engine.index(root)
        assert (again.new, again.changed, again.unchanged, len(again.skipped)) == (0, 0, 1, 1)


def test_renamed_file_is_repointed_without_embedding(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        before = engine.status().chunks
        (docs / "garden" / "roses.txt").rename(docs / "kitchen" / "roses-moved.txt")
        fake_embedder.embedded.clear()
        summary = engine.index(docs)
        assert (summary.moved, summary.new, summary.removed) == (1, 0, 0)
        assert fake_embedder.embedded == []
        assert engine.status().chunks == before
        hit = engine.search("prune roses winter bud", limit=1, mode="keyword")[0]
        assert hit.path.endswith("kitchen/roses-moved.txt")


def test_filters_apply_before_ranking(tmp_path, fake_embedder):
    # 30 "noise" documents match the query far better than the 5 that pass the filter: a
    # filter applied after ranking would return nothing for limit=5.
    root = tmp_path / "many"
    root.mkdir()
    for i in range(30):
        (root / f"noise{i:02}.txt").write_text(f"Volcano eruption lava magma ash number {i}.\n")
    for i in range(5):
        (root / f"wanted{i}.md").write_text(f"# Note {i}\n\nA quiet note about paper and ink, item {i}.\n")
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(root)
        for mode in ("semantic", "keyword", "hybrid"):
            by_type = engine.search("volcano lava magma", limit=5, mode=mode, types=["md"])
            if mode != "keyword":  # keyword search only returns chunks containing a query word
                assert len(by_type) == 5, mode
            assert all(h.path.endswith(".md") for h in by_type)
            by_path = engine.search("volcano lava magma note", limit=5, mode=mode, path="wanted*")
            assert len(by_path) == 5 and all("/wanted" in h.path for h in by_path), mode
        assert engine.search("volcano", limit=3, path="*.pdf") == []


def test_group_by_document_returns_each_document_once(tmp_path, fake_embedder):
    root = tmp_path / "long"
    root.mkdir()
    paragraphs = "\n\n".join(f"Sailing boats paragraph {i} about wind, sails and knots." for i in range(40))
    (root / "sailing.txt").write_text("Sailing\n\n" + paragraphs)
    (root / "other.txt").write_text("Other\n\nA short note about sails.")
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(root)
        assert len(engine.search("sails wind knots", limit=5, mode="semantic")) == 5
        grouped = engine.search("sails wind knots", limit=5, mode="semantic", group_by_document=True)
    assert sorted(Path(h.path).name for h in grouped) == ["other.txt", "sailing.txt"]


def test_bad_files_are_skipped_with_reasons(tmp_path, fake_embedder):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "good.txt").write_text("A perfectly good file about lighthouses.")
    (root / "empty.txt").write_text("")
    (root / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 100)
    (root / "garbage.txt").write_bytes(bytes(range(128, 256)) * 20 + b"\x00")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    from tests.pdfgen import make_pdf

    pdf = make_pdf([["Lighthouse keepers kept the lamp lit."], ["Second page text."]])
    (root / "truncated.pdf").write_bytes(pdf[: len(pdf) // 2])
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        summary = engine.index(root)
    reasons = {Path(s.path).name: s.reason for s in summary.skipped}
    assert summary.new == 1
    assert set(reasons) == {"empty.txt", "binary.txt", "garbage.txt", "image.png", "truncated.pdf"}
    assert reasons["empty.txt"] == "empty file"
    assert reasons["binary.txt"] == "binary file"
    assert "png" in reasons["image.png"]
    assert "pdf" in reasons["truncated.pdf"]


def test_damaged_segment_files_are_searched_from_sqlite_then_repaired(tmp_path, docs, fake_embedder):
    index_dir = tmp_path / "idx"
    with open_engine(index_dir, fake_embedder) as engine:
        engine.index(docs)
        expected = [(h.chunk_id, round(h.score, 5)) for h in engine.search("bread crust oven", mode="semantic")]
    for damage in ("delete", "corrupt", "truncate"):
        files = segment_files(index_dir)
        assert files
        for path in files:
            if damage == "delete":
                path.unlink()
            elif damage == "corrupt":
                path.write_bytes(b"not a faiss file at all" * 10)
            else:
                path.write_bytes(path.read_bytes()[:100])
        fake_embedder.embedded.clear()
        with open_engine(index_dir, fake_embedder) as engine:
            got = [(h.chunk_id, round(h.score, 5)) for h in engine.search("bread crust oven", mode="semantic")]
            assert got == expected, damage
            assert engine.vectors().damaged  # a reader notices, and writes nothing
            assert all(not path.exists() or path.stat().st_size <= 230 for path in files)
            engine.index(docs)  # the next writer repairs
            assert not engine.vectors().damaged
        assert fake_embedder.embedded == ["bread crust oven"]  # only the query, nothing re-embedded
        assert list(live_vector_ids(index_dir, fake_embedder.dimension)) == list(stored_chunk_ids(index_dir))


def test_a_crash_before_commit_leaves_garbage_that_the_next_writer_deletes(tmp_path, docs, fake_embedder):
    index_dir = tmp_path / "idx"
    with open_engine(index_dir, fake_embedder) as engine:
        engine.index(docs / "garden")
    before = segment_files(index_dir)
    stray = index_dir / "segments" / "0123456789abcdef.flat"
    stray.write_bytes(before[0].read_bytes())  # a segment written whose transaction never committed
    (index_dir / "segments" / ".x.flat.99.tmp").write_bytes(b"half a file")
    with open_engine(index_dir, fake_embedder) as engine:
        assert {h.chunk_id for h in engine.search("tomato", limit=50, mode="semantic")} <= set(
            stored_chunk_ids(index_dir).tolist()
        )
        assert stray.exists()  # readers never delete
        engine.index(docs / "kitchen")
        expected = [h.chunk_id for h in engine.search("onion soup butter", mode="semantic")]
    assert not stray.exists() and not (index_dir / "segments" / ".x.flat.99.tmp").exists()
    assert list(live_vector_ids(index_dir, fake_embedder.dimension)) == list(stored_chunk_ids(index_dir))
    with open_engine(index_dir, fake_embedder) as engine:
        assert [h.chunk_id for h in engine.search("onion soup butter", mode="semantic")] == expected


def test_an_open_reader_sees_new_revisions_without_reopening(tmp_path, docs, fake_embedder):
    index_dir = tmp_path / "idx"
    with open_engine(index_dir, fake_embedder) as writer, open_engine(index_dir, fake_embedder) as reader:
        writer.index(docs / "garden")
        assert {Path(h.path).name for h in reader.search("tomatoes roses", limit=10)} == {"tomatoes.md", "roses.txt"}
        writer.index(docs)
        assert "soup.rst" in {Path(h.path).name for h in reader.search("onion soup", limit=3)}
        writer.remove(docs / "kitchen")
        assert all("kitchen" not in h.path for h in reader.search("onion soup bread", limit=10))
        assert not reader._lock.held


def test_rebuild_gives_identical_results(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        before = [(h.chunk_id, h.score) for h in engine.search("roses winter", mode="semantic")]
        assert engine.rebuild() == engine.status().chunks
        after = [(h.chunk_id, h.score) for h in engine.search("roses winter", mode="semantic")]
    assert before == after


def test_second_writer_is_refused_while_searches_work(tmp_path, docs, fake_embedder):
    index_dir = tmp_path / "idx"
    with open_engine(index_dir, fake_embedder) as engine:
        engine.index(docs)
    holder = WriteLock(index_dir)
    holder.acquire()
    try:
        with open_engine(index_dir, fake_embedder) as engine:
            started = time.monotonic()
            with pytest.raises(IndexLockedError, match="another semsearch process"):
                engine.index(docs)
            assert time.monotonic() - started < 2  # fails at once, does not wait
            with pytest.raises(IndexLockedError):
                engine.remove(docs)
            assert engine.search("bread", limit=1, mode="keyword")
    finally:
        holder.release()


def test_interrupted_run_leaves_a_consistent_index_and_resumes(tmp_path, fake_embedder, monkeypatch):
    import semsearch.ingest

    monkeypatch.setattr(semsearch.ingest, "WAVE_CHUNKS", 5)
    root = tmp_path / "many"
    root.mkdir()
    for i in range(20):
        (root / f"note{i:02}.txt").write_text(f"Note {i}\n\nThe subject of note {i} is topic{i}.\n")
    index_dir = tmp_path / "idx"
    fake_embedder.fail_after = 8
    with open_engine(index_dir, fake_embedder) as engine:
        summary = engine.index(root)
        assert summary.interrupted
        partial = engine.status()
        assert 0 < partial.documents < 20
        assert engine.vectors().count() == partial.chunks
    fake_embedder.fail_after = None
    fake_embedder.embedded.clear()
    with open_engine(index_dir, fake_embedder) as engine:
        summary = engine.index(root)
        assert not summary.interrupted
        assert summary.unchanged == partial.documents and summary.new == 20 - partial.documents
        assert engine.status().documents == 20
        assert list(live_vector_ids(index_dir, fake_embedder.dimension)) == list(stored_chunk_ids(index_dir))


def test_a_stop_recorded_by_a_signal_ends_the_run_even_if_its_exception_was_lost(tmp_path, fake_embedder, monkeypatch):
    """Python drops a Ctrl-C raised inside a garbage-collector callback; the stop the CLI's signal
    handler records must still end the run at the next wave, consistently."""
    import semsearch.ingest
    from semsearch import stopping

    monkeypatch.setattr(semsearch.ingest, "WAVE_CHUNKS", 5)
    root = tmp_path / "many"
    root.mkdir()
    for i in range(20):
        (root / f"note{i:02}.txt").write_text(f"Note {i}\n\nThe subject of note {i} is topic{i}.\n")
    embed = fake_embedder.embed

    def embed_then_lose_a_stop(texts):
        if len(fake_embedder.embedded) >= 8:
            stopping.request()  # as the handler does; the KeyboardInterrupt itself went nowhere
        return embed(texts)

    monkeypatch.setattr(fake_embedder, "embed", embed_then_lose_a_stop)
    try:
        with open_engine(tmp_path / "idx", fake_embedder) as engine:
            summary = engine.index(root)
            assert summary.interrupted and 0 < summary.new < 20
            assert engine.vectors().count() == engine.status().chunks
    finally:
        stopping.clear()
    monkeypatch.setattr(fake_embedder, "embed", embed)
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        resumed = engine.index(root)
        assert not resumed.interrupted and resumed.new == 20 - summary.new


def test_add_texts_search_metadata_and_replace(tmp_path, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        summary = engine.add_texts(
            ["Comets have icy nuclei and long tails.", "Glaciers carve valleys over millennia."],
            ids=["comet", "glacier"],
            titles=["Comets", "Glaciers"],
            metadata=[{"topic": "space"}, {"topic": "earth"}],
        )
        assert summary.new == 2
        hit = engine.search("icy tails", limit=1)[0]
        assert (hit.path, hit.title, hit.metadata["topic"]) == ("comet", "Comets", "space")
        only_earth = engine.search("icy tails comets", limit=5, metadata={"topic": "earth"})
        assert [h.path for h in only_earth] == ["glacier"]
        same = engine.add_texts(
            ["Comets have icy nuclei and long tails."], ids=["comet"], titles=["Comets"], metadata={"topic": "space"}
        )
        assert same.unchanged == 1
        moved = engine.add_texts(
            ["Comets have icy nuclei and long tails."], ids=["comet"], titles=["Comets"], metadata={"topic": "sky"}
        )
        assert moved.changed == 1 and engine.search("comets", limit=1, metadata={"topic": "sky"})[0].path == "comet"
        engine.add_texts(["Comets are made of dust."], ids=["comet"], titles=["Comets"])
        assert engine.status().documents == 2
        assert "dust" in engine.search("comet", limit=1, mode="keyword")[0].text


def test_metadata_filters_match_values_as_written_and_any_key(tmp_path, fake_embedder):
    odd = 'say "hi", then .dots [0] $'
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.add_texts(
            ["a report on tomatoes", "a report on roses", "a report on bread", "a report on soup"],
            ids=["tomatoes", "roses", "bread", "soup"],
            metadata=[
                {"pages": 3, "draft": True, "rating": 4.5, "odd.key": "x", odd: "y"},
                {"pages": "3", "draft": False, "odd key": "z"},
                {"pages": 30, "draft": None, "$.pages": "3"},
                {"nested": {"pages": 3}},
            ],
        )

        def found(metadata) -> list[str]:
            results = {}
            for mode in ("semantic", "keyword", "hybrid"):
                hits = engine.search("report", limit=10, mode=mode, metadata=metadata)
                results[mode] = sorted(hit.path for hit in hits)
            assert results["semantic"] == results["keyword"] == results["hybrid"], results
            return results["keyword"]

        # Text, as typed on the command line, matches the number, the boolean or the null it spells.
        assert found({"pages": "3"}) == ["roses", "tomatoes"]
        assert found({"pages": "3.0"}) == ["tomatoes"]
        assert found({"rating": "4.5"}) == ["tomatoes"]
        assert found({"draft": "true"}) == ["tomatoes"]
        assert found({"draft": "false"}) == ["roses"]
        assert found({"draft": "null"}) == ["bread"]
        # Library callers may pass the value itself.
        assert found({"pages": 3}) == ["roses", "tomatoes"]
        assert found({"pages": 30, "draft": None}) == ["bread"]
        assert found({"draft": True}) == ["tomatoes"]
        # Keys are names, never JSON path syntax.
        assert found({"odd.key": "x"}) == ["tomatoes"]
        assert found({odd: "y"}) == ["tomatoes"]
        assert found({"odd key": "z"}) == ["roses"]
        assert found({"$.pages": "3"}) == ["bread"]
        assert found({"nested.pages": 3}) == []
        assert found({"pages": "three"}) == []


def test_remove_paths(tmp_path, docs, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        assert engine.remove(docs / "garden") == 2
        assert engine.status().documents == 2
        assert engine.vectors().count() == engine.status().chunks
        assert engine.remove(docs / "garden") == 0


def test_errors_for_bad_use(tmp_path, docs, fake_embedder):
    with pytest.raises(IndexNotFoundError):
        semsearch.open(tmp_path / "nowhere", create=False)
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        with pytest.raises(EmptyIndexError):
            engine.search("anything")
        engine.index(docs)
        with pytest.raises(EmptyQueryError):
            engine.search("   ")
    other = type(fake_embedder)()
    other.name = "another-model"
    with pytest.raises(ModelMismatchError, match="fake-bag-of-words"):
        semsearch.open(tmp_path / "idx", embedder=other)


def test_index_is_not_indexed_into_itself(tmp_path, fake_embedder):
    root = tmp_path / "project"
    root.mkdir()
    (root / "readme.md").write_text("# Project\n\nThe project readme.\n")
    with open_engine(root / "index-here", fake_embedder) as engine:
        engine.index(root)
        engine.index(root)
        assert engine.status().documents == 1


def test_search_oracle_matches_brute_force(tmp_path, fake_embedder):
    root = tmp_path / "oracle"
    root.mkdir()
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
    rng = np.random.default_rng(7)
    for i in range(23):
        (root / f"d{i}.txt").write_text(f"Doc {i}\n\n" + " ".join(rng.choice(words, size=12)))
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(root)
        hits = engine.search("gamma theta kappa", limit=7, mode="semantic")
        ids, vectors = zip(*[(int(i), v) for batch_ids, batch in engine._store.vectors() for i, v in zip(batch_ids, batch)])
    query = fake_embedder.embed(["gamma theta kappa"])[0]
    scores = np.stack(vectors) @ query
    order = np.argsort(-scores, kind="stable")[:7]
    assert np.allclose([h.score for h in hits], scores[order], atol=1e-5)


def test_add_texts_skips_blank_texts(tmp_path, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        summary = engine.add_texts(["Real text about owls.", "   "], ids=["owls", "blank"])
    assert summary.new == 1
    assert [(s.path, s.reason) for s in summary.skipped] == [("blank", "empty text")]


def test_texts_without_a_title_are_embedded_without_one(tmp_path, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.add_texts(["Plain body text about herons."], ids=["h"])
        engine.add_texts(["Body about egrets."], ids=["e"], titles=["Egrets"])
    assert fake_embedder.embedded == ["Plain body text about herons.", "Egrets\nBody about egrets."]


def test_a_reranker_reorders_the_results(tmp_path, docs, fake_embedder):
    class PrefersRoses:
        def score(self, query, passages):
            return np.array([1.0 if "roses" in passage.lower() else 0.0 for passage in passages])

    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        plain = engine.search("bread dough yeast", limit=2, mode="semantic")
        reranked = engine.search("bread dough yeast", limit=2, mode="semantic", reranker=PrefersRoses())
    assert "bread" in plain[0].path
    assert reranked[0].path.endswith("roses.txt") and reranked[0].score == 1.0
    assert len(reranked) == 2


def test_a_new_ingest_version_reprocesses_documents_reusing_vectors(tmp_path, docs, fake_embedder, monkeypatch):
    import semsearch.ingest

    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.index(docs)
        engine.add_texts(["A text about kites."], ids=["kites"], titles=["Kites"])
        monkeypatch.setattr(semsearch.ingest, "INGEST_VERSION", semsearch.ingest.INGEST_VERSION + 1)
        monkeypatch.setattr(semsearch.ingest, "UNCHANGED_SINCE", {})  # a version that changes every format
        fake_embedder.embedded.clear()
        files = engine.index(docs)
        texts = engine.add_texts(["A text about kites."], ids=["kites"], titles=["Kites"])
        assert (files.changed, files.unchanged, texts.changed) == (4, 0, 1)
        assert fake_embedder.embedded == []  # same chunks: every vector reused
        again = engine.index(docs)
        assert again.unchanged == 4 and again.changed == 0


def test_metadata_filters_match_numbers_text_and_odd_keys(tmp_path, fake_embedder):
    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.add_texts(
            ["pages about owls", "pages about larks", "pages about crows", "pages about wrens"],
            ids=["owls", "larks", "crows", "wrens"],
            metadata=[
                {"pages": 3, "draft": True, "a.b": "x"},
                {"pages": "3", "draft": False, 'q"uote': "y"},
                {"pages": 3.0, "draft": None},
                {"pages": 4},
            ],
        )

        def found(**metadata):
            return sorted(h.path for h in engine.search("pages", limit=10, mode="keyword", metadata=metadata))

        assert found(pages="3") == ["crows", "larks", "owls"]  # text typed on the CLI matches 3, 3.0 and "3"
        assert found(pages=3) == ["crows", "larks", "owls"]  # a library caller's 3 is read as the text "3"
        assert found(pages="4") == ["wrens"]
        assert found(draft="true") == ["owls"] and found(draft=False) == ["larks"] and found(draft="null") == ["crows"]
        assert found(**{"a.b": "x"}) == ["owls"]  # a key with a dot is a name, not a JSON path
        assert found(**{'q"uote': "y"}) == ["larks"]
        assert found(pages="100000000000000000000") == []  # past SQLite's integers: no match, no error
        assert found(pages="-9223372036854775809") == []
        assert sorted(h.path for h in engine.search("pages", limit=10, mode="semantic", metadata={"pages": "3"})) == [
            "crows", "larks", "owls"
        ]
        engine.add_texts(["pages about owls"], ids=["owls"], metadata={"pages": 5})  # replaced: old rows go
        assert found(pages="3") == ["crows", "larks"] and found(pages="5") == ["owls"]
        engine.remove("crows")
        assert found(pages="3") == ["larks"]


def test_a_document_tested_against_a_metadata_filter_is_looked_up_by_id(tmp_path, fake_embedder):
    """Keyword search tests each match's document against the filter: by document id (one index
    lookup), never by the filter's key, which scanned every document holding the key for each
    match (minutes for a narrow filter on 40,000 documents)."""
    from semsearch.filters import filter_conditions, joined
    from semsearch.types import SearchFilter

    with open_engine(tmp_path / "idx", fake_embedder) as engine:
        engine.add_texts([f"tomato note {i}" for i in range(50)], metadata=[{"n": i % 7} for i in range(50)])
        condition = joined(filter_conditions(SearchFilter(metadata=(("n", "3"),))))
        with engine._store._connections.reading() as connection:
            plan = connection.execute(
                "EXPLAIN QUERY PLAN SELECT chunks.id FROM chunk_fts JOIN chunks ON chunks.id = chunk_fts.rowid"
                f" JOIN documents ON documents.id = chunks.document_id WHERE chunk_fts MATCH 'tomato' AND {condition.text}",
                condition.parameters,
            ).fetchall()
        lookups = " ".join(row[-1] for row in plan if "document_meta" in row[-1])
        assert "ix_document_meta_document_id" in lookups and "key_value" not in lookups, plan
        assert len(engine.search("tomato", limit=50, mode="keyword", metadata={"n": "3"})) == 7


def test_a_query_asked_again_is_not_embedded_again(tmp_path, fake_embedder):
    import semsearch
    from semsearch import engine as engine_module

    calls = []
    original = fake_embedder.embed
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(["herons wade in the shallows", "kestrels hover over fields"], ids=["a", "b"])
        fake_embedder.embed = lambda texts: calls.append(list(texts)) or original(texts)
        first = engine.search("hovering birds", limit=2, mode="semantic")
        for mode in ("hybrid", "semantic"):
            engine.search("hovering birds", limit=1, mode=mode, group_by_document=True)
        assert calls == [["hovering birds"]]
        assert [(h.chunk_id, h.score) for h in engine.search("hovering birds", limit=2, mode="semantic")] == [
            (h.chunk_id, h.score) for h in first
        ]
        for number in range(engine_module.QUERIES_KEPT + 1):  # the oldest is forgotten
            engine.search(f"query {number}", limit=1, mode="semantic")
        calls.clear()
        engine.search("hovering birds", limit=1, mode="semantic")
        assert calls == [["hovering birds"]]


def test_query_vectors_kept_by_an_engine_searched_from_many_threads(tmp_path, fake_embedder, monkeypatch):
    import threading

    import semsearch
    from semsearch import engine as engine_module

    monkeypatch.setattr(engine_module, "QUERIES_KEPT", 3)  # forgetting all the time
    errors = []
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(["herons wade in the shallows", "kestrels hover over fields"], ids=["a", "b"])

        def search(worker):
            try:
                for number in range(40):
                    assert engine.search(f"birds {worker} {number % 7}", limit=1, mode="semantic")
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=search, args=(worker,)) for worker in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and len(engine._query_vectors) <= 3


def test_an_index_folder_named_like_a_url_works(tmp_path, fake_embedder):
    # The database URL once took "?" for a query string and "%41" for an escaped "A".
    folder = tmp_path / "what? 100%41 #1"
    with semsearch.open(folder, embedder=fake_embedder) as engine:
        engine.add_texts(["the quick brown fox"], ids=["fox"])
    assert (folder / "semsearch.db").is_file()
    assert not (tmp_path / "what").exists()
    with semsearch.open(folder, embedder=fake_embedder, create=False) as engine:
        assert [hit.path for hit in engine.search("quick fox", mode="keyword")] == ["fox"]
