"""Where a running ``semsearch serve`` of an index can be found by other processes on this machine.

A new ``semsearch search`` process spends 0.6-1 s importing numpy, SQLAlchemy, FAISS and
onnxruntime and loading the query model before it can answer; a server of the same index has all
of that loaded already. So a server leaves a small record while it runs, and the CLI asks it
instead when one is there (see :mod:`semsearch.client`).

The record is a JSON file in the user's cache directory (``~/.cache/semsearch/servers`` on
Linux), named after the index's resolved path; it is not in the index folder, which a server may
only be able to read. It holds the server's pid, version, address and
token (the file is readable by its owner only). A record whose process is gone, or that an older
or newer semsearch wrote, is ignored; a server removes its own record when it stops.

Standard library only: the CLI reads this before it imports anything heavy.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from semsearch import __version__
from semsearch.location import DATABASE_NAME


class Announced(NamedTuple):
    """A server of an index, as its record describes it. (A named tuple, not a dataclass: the
    `semsearch` command reads records before anything else is imported; see semsearch.launch.)"""

    url: str  # http://HOST:PORT/, an address of this machine
    token: str | None
    pid: int


def records_dir() -> Path:
    """The folder holding the records (created by :func:`announce`)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("semsearch", appauthor=False)) / "servers"


def record_path(index_dir: str | os.PathLike[str]) -> Path:
    """Where the record of a server of ``index_dir`` is (one per index)."""
    resolved = str(Path(index_dir).expanduser().resolve())
    return records_dir() / f"{hashlib.sha256(os.fsencode(resolved)).hexdigest()[:24]}.json"


def announce(index_dir: str | os.PathLike[str], url: str, token: str | None) -> Callable[[], None]:
    """Record that this process serves ``index_dir`` at ``url`` (a local address); return the
    function that removes the record again. Best effort: a record that cannot be written only
    means searches do not find this server."""
    path = record_path(index_dir)
    body = {"version": __version__, "pid": os.getpid(), "url": url, "token": token,
            "index": str(Path(index_dir).expanduser().resolve()), "database": identity(index_dir)}
    import tempfile  # (here: a search that only reads records starts without it, ~8 ms)

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".record-")  # mode 0600
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(body, file)
        os.replace(temporary, path)
    except OSError:
        return lambda: None

    def withdraw() -> None:
        found = _read(path)
        if found is not None and found.get("pid") == os.getpid():
            with contextlib.suppress(OSError):
                path.unlink()

    return withdraw


def find(index_dir: str | os.PathLike[str]) -> Announced | None:
    """The server of ``index_dir`` that is running now, if one left its record."""
    try:
        path = record_path(index_dir)
    except OSError:
        return None
    found = _read(path)
    if not found or found.get("version") != __version__:
        return None
    pid, url, token = found.get("pid"), found.get("url"), found.get("token")
    if not isinstance(pid, int) or not isinstance(url, str) or not (token is None or isinstance(token, str)):
        return None
    if not _alive(pid):
        return None
    if found.get("database") != identity(index_dir):
        return None  # the index was deleted and made again since: that server reads the old one
    return Announced(url=url, token=token, pid=pid)


def identity(index_dir: str | os.PathLike[str]) -> list[int] | None:
    """Which file the index's database is (device and inode): a server keeps the file it opened
    even when the index is deleted and made again at the same path."""
    try:
        found = os.stat(Path(index_dir) / DATABASE_NAME)
    except (OSError, ValueError):
        return None
    return [found.st_dev, found.st_ino]


def _read(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as file:
            found = json.load(file)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the pid
        return False
    except OSError:
        return False
    return True
