"""Loading a search's query model while the rest of semsearch is still being imported.

A ``semsearch search`` answered in its own process spends a few tenths of a second importing the
search stack (numpy, FAISS, the engine) and about as long importing onnxruntime and building the
session of the query model. onnxruntime builds a session without holding the GIL, so the two can
overlap: this module reads the index's model and precision with :mod:`sqlite3` alone
(read-only, no lock) and loads the model on a thread of its own. Imports hold the GIL, so the
thread's go first (:func:`start` waits for them), and the session then builds while the main
thread imports the rest. The ``semsearch`` command forks a process for it instead
(:mod:`semsearch.query_process`), where the two run on two cores at once. The engine takes it
(:meth:`semsearch.engine.Engine.offer_query_model`) only if it is the model the engine would load
itself; anything unexpected here (no index, no export, a damaged file) only means the engine
loads the model the usual way. Measured: docs/benchmarks.md, "Answering a query".

Imports nothing heavy at module level: numpy and onnxruntime come with the embedder, on the thread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from semsearch import query_process
from semsearch.location import DATABASE_NAME

IMPORTS_WAITED = 2.0  # seconds start() waits for the thread's imports, at most


class LoadingModel(Protocol):
    """A query model on its way (:class:`EarlyQueryModel` on a thread, or
    :class:`semsearch.query_process.QueryProcess` in a process): what the index records, the
    query to embed once it has loaded, and the model itself (``None`` if it could not load)."""

    model: str
    precision: str

    def expect(self, query: str) -> None: ...

    def result(self) -> Any: ...


class EarlyQueryModel:
    """The query model of one index, being loaded on a thread of its own.

    Not a daemon: a search that fails or is interrupted while the session is being built waits
    for it (at most a few tenths of a second) rather than killing the thread inside onnxruntime,
    which aborts the process.
    """

    def __init__(self, model: str, precision: str) -> None:
        self.model = model
        self.precision = precision
        self._embedder = None
        self._imported = threading.Event()  # set once the thread needs the GIL no more (or failed)
        self._thread = threading.Thread(target=self._load, name="semsearch-query-model")
        self._thread.start()

    def _load(self) -> None:
        try:
            from semsearch.model_cache import load_query_model
            from semsearch.onnx_embedder import import_onnxruntime

            import_onnxruntime()
            import tokenizers  # noqa: F401 - imported here, before the imports of the search stack

            self._imported.set()
            self._embedder = load_query_model(self.model, self.precision)
        except Exception:  # noqa: BLE001 - the engine loads it the usual way and reports what is wrong
            self._embedder = None
        finally:
            self._imported.set()

    def wait_for_imports(self, timeout: float) -> None:
        """Return once the thread has imported what it needs and is building the session (which
        holds no GIL), or after ``timeout`` seconds."""
        self._imported.wait(timeout)

    def expect(self, query: str) -> None:
        """The query that will be embedded (as :meth:`semsearch.query_process.QueryProcess.expect`
        takes it); nothing to do ahead here: on a thread, the main thread's imports and the
        embedding would take turns for the GIL anyway."""

    def result(self):
        """The loaded :class:`semsearch.onnx_embedder.OnnxEmbedder`, or ``None`` (waits for the thread)."""
        self._thread.join()
        return self._embedder


# The model semsearch.launch started before the command line was imported, and its database.
_waiting: tuple[Path, LoadingModel] | None = None


def start(index_dir: str | Path, *, for_later: bool = False, fork: bool = False) -> LoadingModel | None:
    """Start loading the query model of the index in ``index_dir``; ``None`` when its settings
    cannot be read (no index yet, an index being created, an unreadable file).

    ``for_later``: keep it for the next call for the same folder, which then returns it instead
    of loading another (the ``semsearch`` command starts it before importing its commands).
    ``fork``: load it in a child process (:class:`semsearch.query_process.QueryProcess`) where
    that is safe (:func:`semsearch.query_process.can_fork`), else on a thread
    (:class:`EarlyQueryModel`).
    """
    global _waiting
    database = Path(index_dir).expanduser() / DATABASE_NAME
    waiting, _waiting = _waiting, None
    if waiting is not None and not for_later:
        if waiting[0] == database.absolute():
            return waiting[1]
    if not database.is_file():
        return None
    try:
        connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=0.2)
        try:
            found = dict(connection.execute("SELECT key, value FROM settings WHERE key IN ('model', 'precision')"))
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    model = found.get("model")
    if not isinstance(model, str) or not model:
        return None
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # as import_onnxruntime does, but here, not on the thread
    precision = found.get("precision") or "fp32"
    precision = precision if isinstance(precision, str) else "fp32"
    early: LoadingModel | None = None
    if fork and query_process.can_fork():
        # Both processes need numpy: imported once here (~0.13 s) and shared, rather than twice side
        # by side, where each took up to 0.24 s (docs/benchmarks.md, "A search from a new process").
        import numpy  # noqa: F401
        try:
            early = query_process.QueryProcess(model, precision)
        except OSError:  # no process to spare: a thread, then
            early = None
    if early is None:
        on_thread = EarlyQueryModel(model, precision)
        # Python imports hold the GIL: imported side by side, the thread's imports and the search
        # stack's would take turns, and the session (the part that runs beside them) would start late.
        on_thread.wait_for_imports(IMPORTS_WAITED)
        early = on_thread
    if for_later:
        _waiting = (database.absolute(), early)
    return early
