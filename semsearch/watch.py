"""``semsearch watch``: index folders, then keep the index in step with their files.

File events come from watchfiles (inotify on Linux). They are grouped until none has come for
:data:`QUIET_MS` (at most :data:`MAX_WAIT_MS`), so an editor's save (often: write a temporary
file, rename it over the old one, delete a backup), a bulk copy or a bulk delete becomes one
update. An update is an ordinary incremental :meth:`Engine.index` of the watched paths: files
whose size and mtime did not change cost a ``stat``, renames are recognised by content, and
.gitignore rules and ``include``/``exclude`` apply exactly as for ``semsearch index``.

A watched folder that is removed is noticed (its documents are pruned) and watched again once
it is back. Ctrl-C stops between two write transactions: the index stays consistent.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from semsearch.engine import Engine
from semsearch.types import IndexSummary
from semsearch.walker import SKIPPED_FOLDERS

QUIET_MS = 300  # an update waits until no event has come for this long...
MAX_WAIT_MS = 30_000  # ...but never longer than this after the first one
CHECK_MS = 1_000  # how often the watched paths themselves are looked at (removed, back, replaced)


@dataclass(frozen=True)
class Update:
    """One incremental update: why it ran, how many file events it answers, what indexing did."""

    reason: str  # "start", "changes", or "paths" (a watched path was removed, came back or was replaced)
    events: int
    summary: IndexSummary


def watch(
    engine: Engine,
    paths: Sequence[str | Path],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    on_update: Callable[[Update], None] | None = None,
    stop: threading.Event | None = None,
    quiet_ms: int = QUIET_MS,
    max_wait_ms: int = MAX_WAIT_MS,
) -> None:
    """Index ``paths``, then update the index whenever files under them change, until ``stop``
    is set or Ctrl-C (``KeyboardInterrupt`` is raised only between two updates; one that
    interrupts indexing ends the update at a consistent point and this function returns)."""
    import watchfiles

    roots = [Path(os.path.abspath(os.path.expanduser(path))) for path in paths]
    ignore = _Ignore(roots, engine.directory)

    def update(reason: str, events: int) -> bool:
        summary = engine.index(*roots, include=include, exclude=exclude)
        if on_update is not None:
            on_update(Update(reason=reason, events=events, summary=summary))
        return not summary.interrupted

    # An update waits for a watch to be in place, so nothing that happens meanwhile is missed:
    # the first one (the whole index), and one after a watched path was removed or came back.
    pending: str | None = "start"
    while stop is None or not stop.is_set():
        seen = _identities(roots)
        present = [root for root, identity in zip(roots, seen) if identity is not None]
        if not present:  # nothing to watch: look again every CHECK_MS
            if pending is not None:
                if not update(pending, 0):
                    return
                pending = None
            elif _sleep(CHECK_MS, stop) and _identities(roots) != seen:
                pending = "paths"
            continue
        for changes in watchfiles.watch(
            *present,
            watch_filter=lambda _change, path: not ignore(path),
            debounce=max_wait_ms,
            step=quiet_ms,
            rust_timeout=CHECK_MS,
            yield_on_timeout=True,
            stop_event=stop,
            raise_interrupt=True,
        ):
            if _identities(roots) != seen:
                pending = pending or "paths"
                break  # watch what exists now (the old watch died with the old folder), then update
            if pending is not None or changes:
                if not update(pending or "changes", len(changes)):
                    return
                pending = None


def _identities(roots: Sequence[Path]) -> list[tuple[int, int] | None]:
    """Each path's (device, inode), or ``None`` if it is not there: a folder removed and made
    again has a new inode, and its old watch sees nothing."""
    found = []
    for root in roots:
        try:
            info = os.stat(root)
        except OSError:
            found.append(None)
            continue
        found.append((info.st_dev, info.st_ino))
    return found


def _sleep(milliseconds: int, stop: threading.Event | None) -> bool:
    """Wait; ``False`` if ``stop`` was set meanwhile."""
    if stop is None:
        time.sleep(milliseconds / 1000)
        return True
    return not stop.wait(milliseconds / 1000)


class _Ignore:
    """Events that cannot change the index: inside the index folder itself (its own writes
    would wake it forever), in hidden or never-indexed folders, or hidden files other than
    ``.gitignore`` (whose rules do change what is indexed)."""

    def __init__(self, roots: Sequence[Path], index: Path) -> None:
        self._roots = [str(root) for root in roots]
        self._index = str(index)

    def __call__(self, path: str) -> bool:
        if path == self._index or path.startswith(self._index + os.sep):
            return True
        for root in self._roots:
            if path == root or path.startswith(root + os.sep):
                parts = path[len(root) + 1 :].split(os.sep) if path != root else []
                folders, name = parts[:-1], parts[-1] if parts else ""
                if any(part.startswith(".") or part in SKIPPED_FOLDERS for part in folders):
                    return True
                return name.startswith(".") and name != ".gitignore"
        return False
