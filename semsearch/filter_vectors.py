"""The vectors of a narrow filter's chunks, kept in memory so that searching it is exact and cheap.

An approximate (IVF) index searched with a filter that passes few chunks has to visit every list
of every segment to find the best of those chunks, checking each of the index's ids against the
filter: about 11 ms at a million chunks, twice an unfiltered search. A filter is usually asked
again and again (a server, a web page, a folder someone is working in), so the first search with
it reads its chunks' float32 vectors from SQLite on a background thread (at most
:data:`MAX_CHUNKS` of them: 15 MB for 10,000), and the searches after it compare the query with
each of them directly: exact cosines, under a millisecond. The last :data:`KEPT` filters are
kept until the revision changes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import numpy as np

MAX_CHUNKS = 20_000  # the narrow filters the retriever lists (retrieval.ALLOWED_LIST_MAX)
KEPT = 2  # filters kept at once: at most 60 MB of vectors

Read = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class FilterVectors:
    """Vectors of recently used narrow filters, for one revision of one index."""

    def __init__(self, read: Read) -> None:
        self._read = read  # ids -> (ids found, their float32 vectors), e.g. Store.vectors_of
        self._lock = threading.Lock()
        self._revision: int | None = None
        self._kept: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}  # oldest first
        self._loading: set[bytes] = set()

    def get(self, allowed: np.ndarray, revision: int | None) -> tuple[np.ndarray, np.ndarray] | None:
        """The ids and vectors of these chunks if kept for this revision; else ``None``, and they
        are read in the background (once) for the next search with the same filter."""
        if revision is None or len(allowed) > MAX_CHUNKS:
            return None
        key = _key(allowed)
        with self._lock:
            self._forget_unless(revision)
            kept = self._kept.get(key)
            if kept is not None or key in self._loading:
                return kept
            self._loading.add(key)
        threading.Thread(target=self.load, args=(allowed, revision), daemon=True,
                         name="semsearch-filter-vectors").start()
        return None

    def load(self, allowed: np.ndarray, revision: int) -> None:
        """Read and keep the vectors of ``allowed`` as of ``revision`` (the background thread's work)."""
        key = _key(allowed)
        try:
            ids, vectors = self._read(np.asarray(allowed, dtype=np.int64))
        except Exception:  # noqa: BLE001 - an optimisation: searches go on the slow way
            ids = None
        with self._lock:
            self._loading.discard(key)
            if ids is None or revision != self._revision:
                return
            self._kept[key] = (ids, np.ascontiguousarray(vectors, dtype=np.float32))
            while len(self._kept) > KEPT:
                del self._kept[next(iter(self._kept))]

    def _forget_unless(self, revision: int) -> None:
        if revision != self._revision:
            self._revision, self._kept, self._loading = revision, {}, set()


def _key(allowed: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(allowed, dtype=np.int64).tobytes(), digest_size=16).digest()
