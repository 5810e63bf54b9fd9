"""Every float32 vector of a small index, in memory: exact search without segments or SQLite.

A vector search reads its candidates' float32 vectors from SQLite to rescore them (segments hold
float16 or 8-bit codes), and hybrid search reads most of them again (its feedback, the cosines
of the chunks only the keyword side found): 1.4 ms for 150 vectors alone, about 3 ms beside the
rest of a search. For an index whose vectors take at most :data:`MAX_BYTES` (about 43,000
chunks of 384 dimensions; SciFact's 10,387 take 16 MB) a process that searches again and again
holds them all instead (:class:`semsearch.resident.Resident` decides when), and a search is one
matrix-vector product over them: exact cosines, as brute force gives them, since it is brute
force.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from semsearch.vector_index import top_inner_products

MAX_BYTES = 64 << 20
RESCORE_MARGIN = 32  # candidates picked beyond those asked for


def cosines(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Each row's dot product with ``query`` (cosines: both are normalised), summed in float64
    and rounded to float32. float32 sums depend on how they are split (BLAS can score the same
    vector differently as the 3rd and the 4th row of a batch), so two ways of reaching one chunk
    would disagree in the last bits; this way each score is the same whichever path read it."""
    # einsum, not BLAS: BLAS would also start threads that spin on after it (see nearest()).
    products = np.einsum("ij,j->i", np.asarray(vectors, dtype=np.float64), np.asarray(query, dtype=np.float64).reshape(-1))
    return products.astype(np.float32)


@dataclass(frozen=True)
class MemoryVectors:
    """The live chunks' vectors at one revision; ``ids`` ascending, one row of ``vectors`` each."""

    revision: int
    ids: np.ndarray
    vectors: np.ndarray

    def search(
        self, query: np.ndarray, limit: int, allowed: np.ndarray | None = None, passing: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``limit`` nearest ``(ids, cosines)``, best first, ties by id; ``allowed``: only
        among those ids; ``passing``: only ids whose flag is set (a broad filter's bitmap over
        ids), found by searching deeper and keeping those, which is exact: once ``limit`` of the
        true top ``depth`` pass, they are the true top ``limit`` of what passes."""
        if passing is not None:
            depth = limit * 4
            while True:
                ids, scores = nearest(query, self.ids, self.vectors, depth)
                keep = np.zeros(len(ids), dtype=bool)
                inside = ids < len(passing)
                keep[inside] = passing[ids[inside]]
                if keep.sum() >= limit or len(ids) < depth:
                    return ids[keep][:limit], scores[keep][:limit]
                depth *= 4
        if allowed is None:
            return nearest(query, self.ids, self.vectors, limit)
        rows = self._rows(allowed)
        return nearest(query, self.ids[rows], self.vectors[rows], limit)

    def get(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of those of ``ids`` that are live, in the order asked."""
        rows = self._rows(ids, keep_order=True)
        return self.ids[rows], self.vectors[rows]

    def _rows(self, ids: Sequence[int] | np.ndarray, *, keep_order: bool = False) -> np.ndarray:
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(self.ids) or not len(wanted):
            return np.empty(0, np.int64)
        if keep_order:
            wanted = wanted[np.sort(np.unique(wanted, return_index=True)[1])]
        else:
            wanted = np.unique(wanted)
        at = np.searchsorted(self.ids, wanted).clip(0, len(self.ids) - 1)
        return at[self.ids[at] == wanted]


def nearest(query: np.ndarray, ids: np.ndarray, vectors: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``limit`` best ``(ids, cosines)`` by brute force, best first, ties by id.

    FAISS's float32 scan (one thread: numpy's BLAS would start threads that spin on, taking the
    cores from the query's embedding) picks candidates, which are then scored with
    :func:`cosines`, as everywhere else. A float32 dot product of unit vectors is off by at most
    ``d * 2**-23``; while the ``limit``-th cosine is not that far above the candidates' lowest
    float32 score, a vector left out might belong, and more candidates are taken."""
    if not len(ids) or limit < 1:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
    error = len(query) * 2.0**-23
    wanted = limit + RESCORE_MARGIN
    while True:
        rows, rough = top_inner_products(vectors, query, min(wanted, len(ids)))
        scores = cosines(vectors[rows], query)
        order = np.lexsort((ids[rows], -scores))[:limit]
        proven = len(order) == limit and scores[order[-1]] >= rough.min() + error
        if proven or len(rows) == len(ids):
            return ids[rows][order], scores[order]
        wanted *= 4
