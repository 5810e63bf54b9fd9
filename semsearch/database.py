"""Connections to an index's SQLite file, with the standard library's sqlite3 alone.

Every connection, the readers' and the writer's, is made by :func:`connect`, so all of them are
set up alike (WAL, foreign keys, the busy timeout, the keyword functions). Searches read through
a :class:`Connections` pool; the write side (:mod:`semsearch.writer`, SQLAlchemy) is handed
:func:`connect` as its way to make connections. A search therefore never imports SQLAlchemy,
which costs a new process 0.2-0.5 s on this project's machines.

SQLite's complaints about the file itself (damaged, locked, full, unreadable) become typed
errors that say what to do (:func:`storage_error`), wherever they are first noticed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from semsearch.errors import IndexDamagedError, IndexLockedError, SemsearchError, StorageError

BUSY_TIMEOUT_MS = 30_000  # how long a statement waits for another process's lock before failing
IDLE_KEPT = 8  # idle connections a pool keeps for the next read (a server reads on many threads)

_DAMAGED = (
    "the index at {folder} is damaged ({reason}); move that folder aside and run semsearch index "
    "again to build a new one"
)
_LOCKED = "the index at {folder} is locked by another process ({reason}); try again when it has finished"
_FULL = "the disk holding the index at {folder} is full; free some space and try again"
_UNUSABLE = (
    "cannot use the index database {path} ({reason}); check that you may read and write its "
    "folder, or use another --index"
)
# SQLite's complaints about the database file itself: its primary result code (if it has one of
# its own), words of its message (Python 3.10 gives no code), and the error that says what to do.
_FILE_PROBLEMS = (
    (11, "malformed", IndexDamagedError, _DAMAGED),  # SQLITE_CORRUPT
    (26, "not a database", IndexDamagedError, _DAMAGED),  # SQLITE_NOTADB
    (None, "unsupported file format", IndexDamagedError, _DAMAGED),  # a damaged header
    (None, "malformed JSON", IndexDamagedError, _DAMAGED),  # damaged metadata, met by a filter
    (None, "Could not decode to UTF-8", IndexDamagedError, _DAMAGED),  # damaged text, met by Python
    (5, "database is locked", IndexLockedError, _LOCKED),  # SQLITE_BUSY
    (6, "table is locked", IndexLockedError, _LOCKED),  # SQLITE_LOCKED
    (13, "is full", StorageError, _FULL),  # SQLITE_FULL
    (14, "unable to open", StorageError, _UNUSABLE),  # SQLITE_CANTOPEN
    (8, "readonly", StorageError, _UNUSABLE),  # SQLITE_READONLY
    (10, "I/O error", StorageError, _UNUSABLE),  # SQLITE_IOERR
)


def damaged(path: Path, reason: str) -> IndexDamagedError:
    """The error for an index whose database holds something unreadable."""
    return IndexDamagedError(_DAMAGED.format(folder=path.parent, reason=reason))


def storage_error(error: BaseException, path: Path) -> SemsearchError | None:
    """The typed error for a SQLite error about the database file; ``None`` for any other."""
    code = getattr(error, "sqlite_errorcode", None)
    for number, words, kind, message in _FILE_PROBLEMS:
        known = code is not None and number is not None
        if (code & 0xFF == number) if known else (words in str(error)):
            return kind(message.format(folder=path.parent, path=path, reason=error))
    return None


def connect(path: Path, prepare: Callable[[sqlite3.Connection], None] | None = None) -> sqlite3.Connection:
    """A new connection to the database at ``path``, set up as every connection of an index is.

    ``prepare`` adds what the keyword search needs (:func:`semsearch.fts.prepare_connection`).
    Usable from any thread, one at a time (the pool and SQLAlchemy's each hand a connection to
    one user at once).
    """
    try:
        connection = sqlite3.connect(str(path), check_same_thread=False)
        try:
            # WAL lets searches read while an indexer writes; foreign keys make chunk deletes cascade.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA synchronous=NORMAL")
            if prepare is not None:
                prepare(connection)
        except BaseException:
            connection.close()
            raise
    except sqlite3.Error as error:
        typed = storage_error(error, path)
        if typed is None:
            raise
        raise typed from error
    return connection


class Connections:
    """A pool of read connections to one database file, and the typed errors of what they run.

    ``interrupted`` says whether a Ctrl-C was swallowed by SQLite inside a function of ours
    (:func:`semsearch.fts.take_interrupt`); such a failure becomes ``KeyboardInterrupt`` again.
    """

    def __init__(
        self,
        path: Path,
        prepare: Callable[[sqlite3.Connection], None] | None = None,
        interrupted: Callable[[], bool] = lambda: False,
    ) -> None:
        self.path = path
        self._prepare = prepare
        self._interrupted = interrupted
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def new(self) -> sqlite3.Connection:
        """A connection of its own (the write side makes its connections here)."""
        return connect(self.path, self._prepare)

    @contextmanager
    def reading(self, *, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        """A connection for a few reads, back in the pool afterwards.

        ``snapshot``: every read sees one committed state. Python's sqlite3 begins a transaction
        only before a write, so each SELECT would otherwise see the latest commit: a writer
        committing between two reads could pair one revision with another's data.
        """
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        try:
            if connection is None:
                connection = self.new()
            if snapshot:
                connection.execute("BEGIN")
            yield connection
        except sqlite3.Error as error:
            if self._interrupted():
                raise KeyboardInterrupt from error
            typed = storage_error(error, self.path)
            if typed is None:
                raise
            raise typed from error
        finally:
            if connection is not None:
                self._give_back(connection)

    def _give_back(self, connection: sqlite3.Connection) -> None:
        try:
            if connection.in_transaction:
                connection.rollback()
        except sqlite3.Error:
            connection.close()
            return
        with self._lock:
            if not self._closed and len(self._idle) < IDLE_KEPT:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        """Close the idle connections; any still in use close when given back (reads still work
        afterwards, each on a connection of its own)."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._closed = True
        for connection in idle:
            connection.close()


def scalar(connection: sqlite3.Connection, statement: str, parameters: Any = ()) -> Any:
    """The first column of the first row, or ``None`` when there is no row."""
    row = connection.execute(statement, parameters).fetchone()
    return None if row is None else row[0]
