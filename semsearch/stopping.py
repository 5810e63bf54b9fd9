"""A stop asked for by a signal, kept where an exception cannot lose it.

Ctrl-C and SIGTERM reach Python as ``KeyboardInterrupt`` raised wherever the main thread happens
to be. When that is inside a garbage-collector or weakref callback (SQLAlchemy has some), Python
prints "Exception ignored" and carries on, and an index run that was told to stop would not.
The CLI's signal handlers therefore also record the request here, and long-running work checks
it at its safe points (between files and between waves), so the stop happens either way.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request() -> None:
    """Record that the process was asked to stop (called from a signal handler)."""
    _requested.set()


def requested() -> bool:
    return _requested.is_set()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a stop was asked for: call only at a consistent point."""
    if _requested.is_set():
        raise KeyboardInterrupt


def clear() -> None:
    """Forget a recorded stop, for a process that goes on after one (a REPL, a test)."""
    _requested.clear()
