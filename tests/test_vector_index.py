"""Segment files: checked against brute force, selectors, memory-mapped reopening and damage.

Segments store compressed vectors, so their scores are within a known error of the exact cosine
(flat: float16); the vector store rescores them exactly (tests/test_vector_store.py)."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.vector_index import (
    FLAT_SCORE_ERROR,
    Segment,
    Selector,
    VectorFileError,
    list_count,
    probe_count,
    write_segment,
)


def random_unit(rng, n, dim):
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def clustered_unit(rng, n, dim, centres=40, spread=0.5):
    """Vectors around a few dozen centres, like real embeddings (not uniform noise)."""
    middle = rng.standard_normal((centres, dim)).astype(np.float32)
    vectors = middle[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(vectors, ids, query, limit):
    scores = vectors @ query
    order = np.lexsort((ids, -scores))[:limit]
    return ids[order], scores[order]


@pytest.mark.parametrize("n,limit", [(1, 1), (7, 3), (97, 10), (1001, 17), (50, 80)])
def test_flat_segment_matches_brute_force(tmp_path, n, limit):
    rng = np.random.default_rng(n)
    vectors = random_unit(rng, n, 24)
    ids = np.sort(rng.choice(10_000_000, size=n, replace=False)).astype(np.int64)
    write_segment(tmp_path / "s.flat", ids, vectors, kind="flat")
    segment = Segment.open(tmp_path / "s.flat", 24)
    assert (segment.kind, segment.count) == ("flat", n)
    for query in random_unit(rng, 5, 24):
        found = segment.search(query, limit)[0]
        expected_ids, expected_scores = brute_force(vectors, ids, query, limit)
        assert np.allclose(found.scores, expected_scores, atol=FLAT_SCORE_ERROR)
        exact = dict(zip(ids.tolist(), (vectors @ query).tolist()))
        assert np.allclose([exact[i] for i in found.ids], found.scores, atol=FLAT_SCORE_ERROR)
        assert len(found.ids) == min(limit, n)


def test_selectors_exclude_or_allow_before_ranking(tmp_path):
    rng = np.random.default_rng(3)
    vectors = random_unit(rng, 200, 16)
    ids = np.arange(1000, 1200, dtype=np.int64)
    write_segment(tmp_path / "s.flat", ids, vectors, kind="flat")
    segment = Segment.open(tmp_path / "s.flat", 16)
    query = random_unit(rng, 1, 16)[0]
    allowed = ids[::9]
    found = segment.search(query, 5, selector=Selector(allowed=allowed))[0]
    assert np.allclose(found.scores, np.sort((vectors @ query)[::9])[::-1][:5], atol=FLAT_SCORE_ERROR)
    assert set(found.ids) <= set(allowed.tolist())
    found = segment.search(query, 500, selector=Selector(allowed=allowed))[0]
    assert sorted(found.ids) == sorted(allowed)  # asking for more returns just the allowed set
    excluded = brute_force(vectors, ids, query, 3)[0]
    found = segment.search(query, 10, selector=Selector(excluded=excluded))[0]
    assert not set(found.ids) & set(excluded.tolist())
    assert np.allclose(found.scores, brute_force(vectors, ids, query, 13)[1][3:], atol=FLAT_SCORE_ERROR)


def test_ivf_segment_recall_on_clustered_vectors(tmp_path):
    rng = np.random.default_rng(11)
    n, dim = 20_000, 32
    everything = clustered_unit(rng, n + 50, dim)
    vectors, queries = everything[:n], everything[n:]
    ids = np.arange(5, 5 + n, dtype=np.int64)
    write_segment(tmp_path / "s.ivf", ids, vectors, kind="ivf")
    segment = Segment.open(tmp_path / "s.ivf", dim)
    assert segment.kind == "ivf" and segment.lists == list_count(n)
    recall = []
    for query in queries:
        found = segment.search(query, 10, probes=24)[0]
        recall.append(len(set(found.ids.tolist()) & set(brute_force(vectors, ids, query, 10)[0].tolist())) / 10)
    assert np.mean(recall) >= 0.9
    # Probing every list finds the true neighbours (8-bit codes: scores within 2%).
    for query in queries[:5]:
        found = segment.search(query, 10)[0]
        assert np.allclose(found.scores, brute_force(vectors, ids, query, 10)[1], atol=0.02)
    assert np.array_equal(segment.ids(), ids)


def test_probe_count_bounds():
    assert probe_count(1, 24) == 1
    assert probe_count(100, 24) == 24 and probe_count(10, 24) == 10
    assert probe_count(1000, None) == 1000 and probe_count(1000, 0) == 1


def test_scan_share_follows_the_probed_lists(tmp_path):
    rng = np.random.default_rng(5)
    vectors = clustered_unit(rng, 4_000, 16)
    write_segment(tmp_path / "s.ivf", np.arange(4_000), vectors, kind="ivf")
    segment = Segment.open(tmp_path / "s.ivf", 16)
    assert segment.scan_share(None) == 1.0
    assert segment.scan_share(8) == pytest.approx(8 / segment.lists)
    write_segment(tmp_path / "s.flat", np.arange(100), vectors[:100], kind="flat")
    assert Segment.open(tmp_path / "s.flat", 16).scan_share(8) == 1.0


def test_in_memory_segment_searches_like_a_file(tmp_path):
    rng = np.random.default_rng(4)
    vectors = random_unit(rng, 30, 8)
    ids = np.arange(30, dtype=np.int64) * 2
    write_segment(tmp_path / "s.flat", ids, vectors, kind="flat")
    query = random_unit(rng, 1, 8)[0]
    on_disk = Segment.open(tmp_path / "s.flat", 8).search(query, 4)[0]
    in_memory = Segment.in_memory("m", ids, vectors).search(query, 4)[0]
    assert np.array_equal(on_disk.ids, in_memory.ids)
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "wrong-dimension"])
def test_unusable_files_raise(tmp_path, damage):
    path = tmp_path / "s.flat"
    write_segment(path, np.arange(3), np.eye(8, dtype=np.float32)[:3], kind="flat")
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 50)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-20])
    dimension = 16 if damage == "wrong-dimension" else 8
    with pytest.raises(VectorFileError):
        Segment.open(path, dimension)


@pytest.mark.parametrize("n", [1024, 2048, 5000])
def test_ivf_segments_train_quietly_on_enough_points(tmp_path, capfd, n):
    rng = np.random.default_rng(n)
    write_segment(tmp_path / "s.ivf", np.arange(n), clustered_unit(rng, n, 16), kind="ivf")
    assert Segment.open(tmp_path / "s.ivf", 16).lists * 39 <= n
    assert "WARNING" not in capfd.readouterr().err  # FAISS complains on stderr when lists are starved


def test_allowed_ids_far_apart_and_at_the_ends(tmp_path):
    rng = np.random.default_rng(9)
    ids = np.array([0, 7, 8, 9, 4_000_001, 9_999_999], dtype=np.int64)
    vectors = random_unit(rng, len(ids), 8)
    write_segment(tmp_path / "s.flat", ids, vectors, kind="flat")
    segment = Segment.open(tmp_path / "s.flat", 8)
    query = random_unit(rng, 1, 8)[0]
    for allowed in ([0], [9_999_999], [8, 4_000_001], [7, 9, 12_000_000]):
        found = segment.search(query, 10, selector=Selector(allowed=np.array(allowed)))[0]
        assert sorted(found.ids.tolist()) == sorted(set(allowed) & set(ids.tolist()))


def test_segments_searched_on_several_threads_find_what_one_thread_finds(tmp_path, monkeypatch):
    """Segments are split into groups by the vectors each search reads (an IVF segment's probed
    lists, a flat segment whole), searched on worker threads; the merged result is the same."""
    from semsearch import vector_store

    rng = np.random.default_rng(9)
    vectors = clustered_unit(rng, 9_000, 16)
    segments = []
    for number, (start, end, kind) in enumerate([(0, 5_000, "ivf"), (5_000, 8_000, "ivf"), (8_000, 8_900, "flat"), (8_900, 9_000, "flat")]):
        path = tmp_path / f"{number}.{kind}"
        write_segment(path, np.arange(start, end), vectors[start:end], kind=kind)
        segments.append(Segment.open(path, 16))
    queries = clustered_unit(rng, 20, 16)
    monkeypatch.setattr(vector_store, "_CORES", 1)
    alone = [vector_store.merge_results(vector_store._search_segments(segments, q, 15, None, 24), 15) for q in queries]
    monkeypatch.setattr(vector_store, "_CORES", 3)
    monkeypatch.setattr(vector_store, "PARALLEL_FROM", 0)
    shared = [vector_store.merge_results(vector_store._search_segments(segments, q, 15, None, 24), 15) for q in queries]
    for one, other in zip(alone, shared):
        assert np.array_equal(one.ids, other.ids) and np.allclose(one.scores, other.scores)
        assert len(one.ids) == 15
