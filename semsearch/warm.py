"""Keeping a server of an index warm for the next ``semsearch search``.

A ``semsearch search`` that finds no server of its index (:mod:`semsearch.rendezvous`) answers
in its own process, paying 0.6-1 s for imports and the query model, and then starts
``semsearch serve`` for that index in the background: loopback only, any free port, its own
random token, stopping by itself after :data:`DEFAULT_SECONDS` without a request. The searches
that follow are sent to it and take about a third of a second. ``sccache`` and the Gradle
daemon work the same way.

``SEMSEARCH_KEEP_WARM`` sets the idle time in seconds; ``0`` (or ``off``) turns this off, and
``semsearch search --local`` neither asks nor starts a server.

Standard library only, like the rest of a forwarded search.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from semsearch import rendezvous

ENV_VAR = "SEMSEARCH_KEEP_WARM"
DEFAULT_SECONDS = 600  # sccache's idle time too
STARTING_SECONDS = 60  # a start claimed longer ago than this has failed: the next search tries again


def idle_seconds() -> int:
    """How long a started server waits for a request before it stops; 0: start none."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return DEFAULT_SECONDS
    if value in ("0", "off", "no", "false"):
        return 0
    try:
        return max(0, int(float(value)))
    except (ValueError, OverflowError):  # not a number, or "inf"
        return DEFAULT_SECONDS


def start_server(index_dir: str | os.PathLike[str], launcher: Sequence[str]) -> int | None:
    """Start ``LAUNCHER --index INDEX_DIR serve`` in the background unless a server of the index
    runs or is starting; its pid, or ``None`` if none was started. Never raises: a server that
    cannot start only means the next search is answered locally again."""
    seconds = idle_seconds()
    if not seconds or rendezvous.find(index_dir) is not None:
        return None
    try:
        marker = rendezvous.record_path(index_dir).with_suffix(".starting")
        if not _claim(marker):
            return None
        command = [*launcher, "--index", str(Path(index_dir).expanduser().resolve()), "serve",
                   "--port", "0", "--idle-exit", str(seconds)]
        # The token travels in the environment, not on the command line other users can read.
        environment = {**os.environ, "SEMSEARCH_TOKEN": secrets.token_urlsafe(24)}
        process = subprocess.Popen(
            command, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True, cwd="/",
        )
    except (OSError, ValueError):
        return None
    return process.pid


def started(index_dir: str | os.PathLike[str]) -> None:
    """Called by the server once it announced itself: the start is over."""
    with contextlib.suppress(OSError):
        rendezvous.record_path(index_dir).with_suffix(".starting").unlink()


def _claim(marker: Path) -> bool:
    """Whether this process may start the server (no other start is under way)."""
    marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    for _attempt in range(2):
        try:
            handle = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                if time.time() - marker.stat().st_mtime < STARTING_SECONDS:
                    return False
                marker.unlink()  # an old claim: that start failed
            except FileNotFoundError:
                pass
            continue
        os.write(handle, str(os.getpid()).encode())
        os.close(handle)
        return True
    return False


def launcher() -> list[str]:
    """The command that runs this semsearch (replaced by the tests' fake-model command line)."""
    return [sys.executable, "-m", "semsearch"]
