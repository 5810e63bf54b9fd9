"""One writer per index: an advisory lock on a file inside the index directory.

``flock`` locks vanish with the process that held them, so a crashed or killed indexer never leaves
a stale lock behind. Readers take no lock (SQLite's WAL mode lets them read during a write).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from semsearch.errors import IndexLockedError

LOCK_NAME = "write.lock"


class WriteLock:
    """Held while a process changes the index; a second writer fails at once."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._handle = None
        self._depth = 0

    @property
    def held(self) -> bool:
        return self._handle is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free; ``False`` (and no error) if another process holds it."""
        if self._handle is not None:
            self._depth += 1
            return True
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        self._depth = 1
        return True

    def acquire(self) -> None:
        if not self.try_acquire():
            holder = ""
            try:
                pid = self.path.read_text().strip()
                holder = f" (process {pid})" if pid else ""
            except OSError:
                pass
            raise IndexLockedError(
                f"another semsearch process{holder} is writing to the index at {self.path.parent}; "
                "wait for it to finish (searches still work meanwhile)"
            )

    def release(self) -> None:
        if self._handle is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    def __enter__(self) -> WriteLock:
        self.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()
