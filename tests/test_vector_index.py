"""FAISS vector index: checked against brute force, filters, persistence and damage."""

from __future__ import annotations

import numpy as np
import pytest

from semsearch.vector_index import VectorFileError, VectorIndex


def random_unit(rng, n, dim):
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("n,limit", [(1, 1), (7, 3), (97, 10), (1001, 17), (50, 80)])
def test_search_matches_brute_force(n, limit):
    rng = np.random.default_rng(n)
    vectors = random_unit(rng, n, 24)
    ids = rng.choice(10_000_000, size=n, replace=False).astype(np.int64)
    index = VectorIndex(24)
    index.add(ids, vectors)
    queries = random_unit(rng, 5, 24)
    scores, found = index.search(queries, limit)
    assert scores.shape == (5, min(limit, n))
    exact = queries @ vectors.T
    for row in range(5):
        order = np.argsort(-exact[row], kind="stable")[: min(limit, n)]
        assert np.allclose(scores[row], exact[row][order], atol=1e-5)
        assert set(found[row]) == set(ids[order]) or np.allclose(np.sort(scores[row]), np.sort(exact[row][order]))


def test_filtered_search_returns_best_allowed():
    rng = np.random.default_rng(3)
    vectors = random_unit(rng, 200, 16)
    ids = np.arange(1000, 1200, dtype=np.int64)
    index = VectorIndex(16)
    index.add(ids, vectors)
    allowed = ids[::9]
    query = random_unit(rng, 1, 16)
    scores, found = index.search(query, 5, allowed=allowed)
    exact = (vectors @ query[0])[::9]
    assert np.allclose(scores[0], np.sort(exact)[::-1][:5], atol=1e-5)
    assert set(found[0]) <= set(allowed)
    # Asking for more than the allowed set returns just the allowed set.
    scores, found = index.search(query, 500, allowed=allowed)
    assert sorted(found[0]) == sorted(allowed)


def test_remove_and_ids():
    index = VectorIndex(4)
    index.add(np.array([5, 6, 7]), np.eye(4, dtype=np.float32)[:3])
    index.remove([6])
    assert sorted(index.ids()) == [5, 7] and len(index) == 2
    _, found = index.search(np.eye(4, dtype=np.float32)[1:2], 3)
    assert 6 not in found[0]


def test_save_load_round_trip(tmp_path):
    index = VectorIndex(8, revision=42)
    rng = np.random.default_rng(0)
    index.add(np.arange(10), random_unit(rng, 10, 8))
    path = tmp_path / "v.faiss"
    index.save(path)
    loaded = VectorIndex.load(path, 8)
    assert loaded.revision == 42 and len(loaded) == 10
    query = random_unit(rng, 1, 8)
    assert np.array_equal(index.search(query, 4)[1], loaded.search(query, 4)[1])
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "wrong-dimension"])
def test_unusable_files_raise(tmp_path, damage):
    path = tmp_path / "v.faiss"
    index = VectorIndex(8)
    index.add(np.arange(3), np.eye(8, dtype=np.float32)[:3])
    index.save(path)
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage" * 50)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-20])
    dimension = 16 if damage == "wrong-dimension" else 8
    with pytest.raises(VectorFileError):
        VectorIndex.load(path, dimension)
