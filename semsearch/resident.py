"""Copies of an index's data kept in a long-lived process's memory, one revision at a time.

Some of what a search reads is cheaper to hold whole than to ask SQLite for again and again: the
keyword index's postings (:mod:`semsearch.postings`), the float32 vectors of a small index
(:mod:`semsearch.vector_store`). Reading such a copy costs far more than one search, so
:class:`Resident` reads it only for a process that has shown it searches again:

- at the :data:`SEARCHES_BEFORE_READ`-th search at one revision (a server, a web page, an
  assistant's MCP session, a library user's loop; never a one-off ``semsearch search``);
- on a background thread: the search that starts the read, and those during it, go the usual
  way, with the same results;
- after a write, no sooner than :data:`REBUILD_PAUSE` times the last read's duration after that
  read ended, so that an index being written all the time costs at most a fifth of a core;
- never again at a revision whose copy was declined (too large) or failed.

A copy is used only for the revision it was read at: a search at another revision never sees it.
The read is given the copy held until then, so that it can start from it (the postings apply
what changed since; see :meth:`semsearch.postings.Postings.changed`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

REBUILD_PAUSE = 4.0  # after a read of d seconds, the next waits until 4 d after it ended
SEARCHES_BEFORE_READ = 2  # searches at one revision before its copy is read


class Revisioned(Protocol):
    revision: int


Copy = TypeVar("Copy", bound=Revisioned)


class Resident(Generic[Copy]):
    """The copy of the latest revision a process searches (see the module's notes)."""

    def __init__(self, read: Callable[[Copy | None], Copy | None], *, name: str) -> None:
        # The current revision's copy, or None to decline (too large); given the copy held until
        # now (of an older revision, or None), from which it may start.
        self._read = read
        self._name = name  # of the reading thread
        self._lock = threading.Lock()
        self._copy: Copy | None = None
        self._asked: tuple[int | None, int] = (None, 0)  # (revision, searches at it)
        self._reading = False
        self._pause_until = 0.0  # monotonic time before which no read starts
        self._declined: int | None = None  # a revision found too large or unreadable

    def peek(self, revision: int | None) -> Copy | None:
        """The copy of this revision if in memory; reads nothing, counts nothing."""
        copy = self._copy
        return copy if copy is not None and copy.revision == revision else None

    def get(self, revision: int | None) -> Copy | None:
        """Like :meth:`peek`, for a search about to start: it is counted, and it may start the
        read of this revision's copy, for the searches after it."""
        if revision is None:
            return None
        with self._lock:
            copy = self.peek(revision)
            if copy is not None:
                return copy
            asked_revision, times = self._asked
            times = times + 1 if asked_revision == revision else 1
            self._asked = (revision, times)
            if (
                self._reading
                or times < SEARCHES_BEFORE_READ
                or revision == self._declined
                or time.monotonic() < self._pause_until
            ):
                return None
            self._reading = True
        threading.Thread(target=self.load, args=(revision,), daemon=True, name=self._name).start()
        return None

    def read_now(self, revision: int) -> None:
        """Read this revision's copy on the calling thread, for a process that knows it will
        search again (a server as it starts); nothing if it is in memory, being read or declined."""
        with self._lock:
            if self._reading or self.peek(revision) is not None or revision == self._declined:
                return
            self._reading = True
        self.load(revision)

    def load(self, revision: int) -> None:
        """Read the current revision's copy (the background thread's work); ``revision`` is the
        one a search asked for (declined if the read fails or declines)."""
        began = time.monotonic()
        try:
            copy = self._read(self._copy)
        except Exception:  # noqa: BLE001 - an optimisation: searches go on the usual way
            copy = None
        ended = time.monotonic()
        with self._lock:
            self._reading = False
            self._pause_until = ended + REBUILD_PAUSE * (ended - began)
            if copy is None:
                self._declined = revision
            else:
                self._copy = copy
