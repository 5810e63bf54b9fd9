"""Which chunks pass a broad filter, kept as a bitmap so that checking a search's candidates is an
array lookup.

A filter that passes many chunks (``--meta group=b`` on half of an index) is searched by ranking
without it, deeper, and keeping the candidates that pass. Asking SQLite which of them pass joins
each candidate's chunk, document and metadata rows: about 20 microseconds a candidate, 8-11 ms
for the 400 a hybrid search checks on each side at a million chunks, which was most of such a
search. A filter is usually asked again and again (a server, a web page), so the first check
with it lists every chunk that passes on a background thread (about a second for half a million
chunks) and the checks after it, at the same revision, look the candidates up in a bitmap over
chunk ids (one byte a chunk id). The vector search takes the same bitmap, packed, as a FAISS
selector: a search with the filter then scans only passing chunks instead of ranking four times
deeper and checking afterwards. The last :data:`KEPT` filters are kept, each used only at the
revision it was listed at; until a bitmap is ready, candidates are checked in SQLite as before.
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from semsearch.types import SearchFilter

KEPT = 4  # filters kept at once: 1 MB each at a million chunk ids

List = Callable[[SearchFilter], tuple[int, np.ndarray]]  # filter -> (revision read, passing chunk ids)


@dataclass(frozen=True)
class Members:
    """The chunks passing one filter at ``revision``: ``flags[id]`` is whether chunk ``id``
    passes (ids past the end do not); ``bits`` the same packed eight to a byte, lowest bit
    first (FAISS's ``IDSelectorBitmap``); ``count`` how many pass."""

    flags: np.ndarray
    bits: np.ndarray
    count: int
    revision: int

    def passing(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Those of ``ids`` that pass, in the order given."""
        wanted = np.asarray(ids, dtype=np.int64).reshape(-1)
        inside = wanted[(wanted >= 0) & (wanted < len(self.flags))]
        return inside[self.flags[inside]]


class FilterMembers:
    """Bitmaps of recently checked filters, each for the revision it was listed at.

    At most one listing of a filter runs at a time, whatever the revision: while writes keep
    coming (``watch`` beside a server), a listing that finishes at a newer revision than the
    searches have reached is kept for when they reach it, and none is started twice.
    """

    def __init__(self, list_passing: List) -> None:
        self._list = list_passing
        self._lock = threading.Lock()
        self._kept: dict[tuple, Members] = {}  # by SearchFilter.key, oldest first
        self._loading: set[tuple] = set()

    def get(self, where: SearchFilter, revision: int | None) -> Members | None:
        """The chunks passing ``where`` at ``revision``, if listed already; else ``None``, and
        they are listed in the background (unless a listing of it is running) for the next
        search with the filter."""
        if revision is None or where.empty:
            return None
        key = where.key
        with self._lock:
            members = self._kept.get(key)
            if members is not None and members.revision == revision:
                return members
            if key not in self._loading and (members is None or members.revision < revision):
                self._loading.add(key)
                threading.Thread(target=self.load, args=(where,), daemon=True, name="semsearch-filter-members").start()
            return None

    def load(self, where: SearchFilter) -> None:
        """List the chunks passing ``where`` and keep their bitmap for the revision it was read at
        (the background thread's work)."""
        members = None
        try:
            revision, ids = self._list(where)
            flags = np.zeros(int(ids.max()) + 1 if len(ids) else 0, dtype=bool)
            flags[ids] = True
            members = Members(flags, np.packbits(flags, bitorder="little"), int(flags.sum()), revision)
        except KeyboardInterrupt:  # a Ctrl-C SQLite took in this thread belongs to the main one
            _thread.interrupt_main()
        except Exception:  # noqa: BLE001 - an optimisation: checks go on in SQLite
            pass
        finally:
            with self._lock:
                self._loading.discard(where.key)
                if members is not None:  # (read at the latest revision: newer than any kept)
                    self._kept.pop(where.key, None)
                    self._kept[where.key] = members
                    while len(self._kept) > KEPT:
                        del self._kept[next(iter(self._kept))]
