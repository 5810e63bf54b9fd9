"""The stored vectors a process read lately (semsearch/recent_vectors.py), and hybrid search
reading each stored vector once."""

from __future__ import annotations

import threading

import numpy as np

import semsearch
from semsearch import recent_vectors as recent_module
from semsearch.recent_vectors import RecentVectors
from semsearch.store import Store


class _Table:
    """A stand-in for Store.vectors_of: ids 1..n with vector [id, 0, ...]; counts what it reads."""

    def __init__(self, count: int) -> None:
        self.live = set(range(1, count + 1))
        self.read: list[int] = []

    def __call__(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.read += ids.tolist()
        found = np.asarray(sorted(i for i in ids.tolist() if i in self.live), dtype=np.int64)
        vectors = np.zeros((len(found), 4), dtype=np.float32)
        vectors[:, 0] = found
        return found, vectors


def test_vectors_read_once_are_kept_for_the_revision_and_in_the_order_asked():
    table = _Table(50)
    recent = RecentVectors(table, 4)
    ids, vectors = recent.get([7, 3, 99, 7], revision=1)  # 99 does not exist; 7 asked twice
    assert ids.tolist() == [7, 3] and vectors[:, 0].tolist() == [7.0, 3.0]
    assert sorted(table.read) == [3, 7, 99]
    table.read.clear()
    ids, vectors = recent.get([3, 8, 7], revision=1)
    assert ids.tolist() == [3, 8, 7] and vectors[:, 0].tolist() == [3.0, 8.0, 7.0]
    assert table.read == [8]  # only the new one


def test_a_new_revision_forgets_them_so_a_deleted_chunk_is_not_found():
    table = _Table(10)
    recent = RecentVectors(table, 4)
    assert recent.get([4, 5], revision=1)[0].tolist() == [4, 5]
    table.live.discard(4)  # deleted by a write: the revision goes up
    assert recent.get([4, 5], revision=2)[0].tolist() == [5]
    assert recent.get([], revision=2)[0].tolist() == []


def test_a_damaged_vector_read_alone_is_left_out():
    """Store.vectors_of keeps a batch's most common size: a damaged vector read on its own comes
    back alone, of another size; it must not break the next read that joins kept vectors."""

    def read(ids):
        found = np.asarray(sorted(ids.tolist()), dtype=np.int64)
        if found.tolist() == [13]:
            return found, np.zeros((1, 3), dtype=np.float32)  # damaged: 3 values, not 4
        found = found[found != 13]
        return found, np.ones((len(found), 4), dtype=np.float32)

    recent = RecentVectors(read, 4)
    assert recent.get([13], revision=1)[0].tolist() == []
    ids, vectors = recent.get([12, 13, 14], revision=1)
    assert ids.tolist() == [12, 14] and vectors.shape == (2, 4)


def test_the_memory_is_bounded(monkeypatch):
    monkeypatch.setattr(recent_module, "KEPT", 8)
    table = _Table(100)
    recent = RecentVectors(table, 4)
    for start in range(1, 100, 5):
        recent.get(list(range(start, start + 5)), revision=1)
        assert len(recent._kept) <= 8
    table.read.clear()
    assert recent.get([99], revision=1)[0].tolist() == [99]  # still answered, read again if forgotten


def test_threads_sharing_it_get_what_they_asked(monkeypatch):
    monkeypatch.setattr(recent_module, "KEPT", 64)
    table = _Table(1000)
    recent = RecentVectors(table, 4)
    errors = []

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(200):
            wanted = rng.integers(1, 1200, 20)
            ids, vectors = recent.get(wanted, revision=1)
            expected = [i for i in dict.fromkeys(wanted.tolist()) if i <= 1000]
            if ids.tolist() != expected or vectors[:, 0].tolist() != [float(i) for i in expected]:
                errors.append(seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


def test_a_hybrid_search_reads_stored_vectors_from_sqlite_once_not_three_times(tmp_path, fake_embedder, monkeypatch):
    """On an index too large to hold whole (forced here), rescoring, feedback and the keyword-only
    hits' cosines share what was read; the results are those of a process that keeps nothing."""
    from semsearch import vector_store as vector_store_module

    monkeypatch.setattr(vector_store_module, "MEMORY_VECTORS_MAX_BYTES", 0)
    rng = np.random.default_rng(5)
    words = "kestrel owl heron falcon river stone bread oven yeast flour dough crust meadow".split()
    texts = [" ".join(rng.choice(words, 12)) for _ in range(300)]
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(texts, ids=[f"t{i}" for i in range(len(texts))])
    queries = ["kestrel river", "bread oven crust", "owl meadow stone"]
    read = []
    original = Store.vectors_of
    monkeypatch.setattr(Store, "vectors_of", lambda self, ids: read.extend(ids.tolist()) or original(self, ids))
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.preload()  # the keyword postings: the keyword side reads its hits' vectors early
        assert engine._postings.peek(engine.revision()) is not None
        read.clear()
        kept = [[(hit.chunk_id, hit.score) for hit in engine.search(query, limit=10, mode="hybrid")] for query in queries]
        kept_reads = len(read)
    monkeypatch.setattr(recent_module, "KEPT", 0)  # keeps nothing
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.preload()
        read.clear()
        fresh = [[(hit.chunk_id, hit.score) for hit in engine.search(query, limit=10, mode="hybrid")] for query in queries]
    assert kept == fresh
    # Without it, feedback and the keyword-only hits read again what rescoring read. (With it, a
    # vector can still be read twice: by the keyword side's early read and the vector search at once.)
    assert 0 < kept_reads < 0.75 * len(read)
