"""The float32 vectors a process read from SQLite lately, kept for the searches that follow.

One hybrid search reads the same stored vectors up to three times: the vector search rescores its
candidates with them, its feedback moves the query towards the first of those candidates, and
the keyword-only hits need their cosines. At a million chunks each read of a hundred vectors
from SQLite costs about a millisecond. :class:`RecentVectors` keeps up to :data:`KEPT` of the
vectors read (all forgotten at once when full), for one revision at a time (a chunk's vector never changes, but a
chunk deleted at a later revision must not be found), so the second and third reads are
dictionary lookups.

An index small enough to be held whole (:mod:`semsearch.memory_vectors`) never comes here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

KEPT = 4096  # vectors kept: 6 MB at 384 dimensions

Read = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class RecentVectors:
    """Stored vectors by chunk id, read through ``read`` (``ids -> (ids found, vectors)``); only
    vectors of ``dimension`` values are kept and returned (a damaged one is left out, as
    :meth:`semsearch.store.Store.vectors_of` leaves it out of a larger read)."""

    def __init__(self, read: Read, dimension: int) -> None:
        self._read = read
        self._dimension = dimension
        self._lock = threading.Lock()  # a server's threads share it
        self._revision: int | None = None
        self._kept: dict[int, np.ndarray] = {}

    def get(self, ids: Sequence[int] | np.ndarray, revision: int | None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of those of ``ids`` that exist, each once, in the order asked."""
        wanted = list(dict.fromkeys(int(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1)))
        with self._lock:
            if revision != self._revision:
                self._revision, self._kept = revision, {}
            kept = self._kept
            found = {i: kept[i] for i in wanted if i in kept}
        missing = [i for i in wanted if i not in found]
        if missing:
            read_ids, vectors = self._read(np.asarray(missing, dtype=np.int64))
            fresh = dict(zip(read_ids.tolist(), vectors)) if vectors.ndim == 2 and vectors.shape[1] == self._dimension else {}
            found.update(fresh)
            with self._lock:
                if self._revision == revision:
                    if len(self._kept) + len(fresh) > KEPT:
                        self._kept = {}
                    self._kept.update(fresh)
        present = [i for i in wanted if i in found]
        if not present:
            return np.empty(0, np.int64), np.empty((0, self._dimension), np.float32)
        return np.asarray(present, dtype=np.int64), np.stack([found[i] for i in present])
