"""A small index's vectors held in memory (semsearch/memory_vectors.py): brute force's answers,
the same as the segments give, and only for the revision they were read at."""

from __future__ import annotations

import time

import numpy as np
import pytest

import semsearch
from semsearch.memory_vectors import MemoryVectors, cosines, nearest
from test_vector_store import ClusteredEmbedder, brute_force


def _oracle(ids, vectors, query, limit):
    scores = (vectors.astype(np.float64) @ query.astype(np.float64)).astype(np.float32)
    order = np.lexsort((ids, -scores))[:limit]
    return ids[order].tolist(), scores[order].tolist()


@pytest.mark.parametrize(("n", "limit"), [(0, 5), (1, 1), (7, 3), (500, 10), (500, 600), (2000, 100)])
def test_memory_vectors_search_is_brute_force(n, limit):
    rng = np.random.default_rng(n)
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    ids = np.sort(rng.choice(1_000_000, size=n, replace=False)).astype(np.int64)
    held = MemoryVectors(3, ids, vectors)
    for query in rng.standard_normal((4, 16)).astype(np.float32):
        query /= np.linalg.norm(query)
        found, scores = held.search(query, limit)
        assert (found.tolist(), scores.tolist()) == _oracle(ids, vectors, query, limit)
        allowed = rng.choice(ids, size=n // 3, replace=False) if n else np.empty(0, np.int64)
        allowed = np.concatenate([allowed, [-5, 2_000_000]])  # ids it does not hold are ignored
        found, scores = held.search(query, limit, allowed)
        keep = np.isin(ids, allowed)
        assert (found.tolist(), scores.tolist()) == _oracle(ids[keep], vectors[keep], query, limit)
        for share in (0.5, 0.05, 0.0):  # a broad filter's bitmap: searched deeper, kept if passing
            flags = np.zeros(1_000_000 if n % 2 else 10, dtype=bool)  # (shorter than the ids: the rest fail)
            chosen = ids[ids < len(flags)]
            flags[rng.choice(chosen, size=int(len(chosen) * share), replace=False)] = True
            found, scores = held.search(query, limit, passing=flags)
            keep = (ids < len(flags)) & flags[np.minimum(ids, len(flags) - 1)]
            assert (found.tolist(), scores.tolist()) == _oracle(ids[keep], vectors[keep], query, limit)


def test_memory_vectors_give_the_vectors_asked_for_in_order():
    ids = np.array([2, 5, 9, 12], dtype=np.int64)
    vectors = np.arange(16, dtype=np.float32).reshape(4, 4)
    held = MemoryVectors(1, ids, vectors)
    found, rows = held.get([12, 3, 2, 12, 9])
    assert found.tolist() == [12, 2, 9]
    assert rows.tolist() == [vectors[3].tolist(), vectors[0].tolist(), vectors[2].tolist()]
    assert held.get([]) [0].tolist() == []


def test_cosines_do_not_depend_on_where_a_vector_sits_in_the_batch():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((37, 384)).astype(np.float32)
    query = rng.standard_normal(384).astype(np.float32)
    whole = cosines(vectors, query)
    for start in range(5):
        assert cosines(vectors[start::3], query).tolist() == whole[start::3].tolist()
    assert nearest(query, np.arange(37), vectors, 5)[1].tolist() == sorted(whole.tolist(), reverse=True)[:5]


def _wait_for_memory(engine, seconds=10.0):
    deadline = time.monotonic() + seconds
    vectors = engine.vectors()
    while vectors._memory.peek(vectors.revision) is None and time.monotonic() < deadline:
        engine.search("anything", limit=1, mode="semantic")
        time.sleep(0.05)
    return vectors._memory.peek(vectors.revision)


def test_a_process_searching_again_holds_the_vectors_and_finds_what_the_segments_find(tmp_path):
    embedder = ClusteredEmbedder()
    index_dir = tmp_path / "idx"
    with semsearch.open(index_dir, embedder=embedder) as engine:
        engine.add_texts([f"note {i}" for i in range(400)], ids=[f"n{i}" for i in range(400)])
        engine.remove("n3", "n77")
        queries = ["note 5", "note 300", "something else", "note 77"]
        before = [[(h.chunk_id, h.score, h.relevance) for h in engine.search(q, limit=12, mode=m)]
                  for q in queries for m in ("semantic", "hybrid")]
        held = _wait_for_memory(engine)
        assert held is not None and len(held.ids) == 398
        after = [[(h.chunk_id, h.score, h.relevance) for h in engine.search(q, limit=12, mode=m)]
                 for q in queries for m in ("semantic", "hybrid")]
        assert after == before  # to the last bit
        query = embedder.embed(["note 5"])[0]
        assert [(h.chunk_id, pytest.approx(h.score, abs=1e-6)) for h in engine.search("note 5", limit=10, mode="semantic")] \
            == brute_force(index_dir, query, 10)
        # A filter is searched among the vectors held too.
        filtered = engine.search("note 5", limit=5, mode="semantic", path="n1*")
        assert filtered and all(h.path.startswith("n1") for h in filtered)
        # A write: the vectors held are of the old revision, never used for the new one.
        engine.add_texts(["a brand new note"], ids=["fresh"])
        hits = engine.search("a brand new note", limit=1, mode="semantic")
        assert hits[0].path == "fresh"
        assert engine.vectors()._memory.peek(engine.vectors().revision) is None


def test_an_index_too_large_to_hold_is_searched_through_its_segments(tmp_path, monkeypatch):
    monkeypatch.setattr("semsearch.vector_store.MEMORY_VECTORS_MAX_BYTES", 1000)
    with semsearch.open(tmp_path / "idx", embedder=ClusteredEmbedder()) as engine:
        engine.add_texts([f"note {i}" for i in range(100)], ids=[f"n{i}" for i in range(100)])
        assert _wait_for_memory(engine, seconds=1.0) is None
        assert engine.search("note 5", limit=3, mode="semantic")


def test_nearest_is_exact_among_near_ties():
    """Vectors a hair apart: float32 alone cannot order them, so more candidates are scored."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal(64).astype(np.float32)
    vectors = base + 3e-5 * rng.standard_normal((3000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(10, 3010, dtype=np.int64)
    query = base / np.linalg.norm(base)
    for limit in (1, 10, 100):
        found, scores = nearest(query, ids, vectors, limit)
        assert (found.tolist(), scores.tolist()) == _oracle(ids, vectors, query, limit)
