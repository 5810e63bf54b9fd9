"""Loading a search's query model while the rest of semsearch is still being imported.

A ``semsearch search`` answered in its own process spends about 0.3 s importing SQLAlchemy and the
search stack and another 0.3 s building the onnxruntime session of the query model, one after
the other. onnxruntime builds a session without holding the GIL, so the two can overlap: this
module reads the index's model and precision with :mod:`sqlite3` alone (read-only, no
SQLAlchemy, no lock) and builds the session on a thread of its own. The engine takes it
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

from semsearch.location import DATABASE_NAME


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
        self._thread = threading.Thread(target=self._load, name="semsearch-query-model")
        self._thread.start()

    def _load(self) -> None:
        try:
            from semsearch.onnx_embedder import OnnxEmbedder
            from semsearch.model_cache import query_model_dir

            directory = query_model_dir(self.model)
            if OnnxEmbedder.available(directory, self.precision):
                self._embedder = OnnxEmbedder(directory, precision=self.precision, batch_size=1)
        except Exception:  # noqa: BLE001 - the engine loads it the usual way and reports what is wrong
            self._embedder = None

    def result(self):
        """The loaded :class:`semsearch.onnx_embedder.OnnxEmbedder`, or ``None`` (waits for the thread)."""
        self._thread.join()
        return self._embedder


def start(index_dir: str | Path) -> EarlyQueryModel | None:
    """Start loading the query model of the index in ``index_dir``; ``None`` when its settings
    cannot be read (no index yet, an index being created, an unreadable file)."""
    database = Path(index_dir).expanduser() / DATABASE_NAME
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
    return EarlyQueryModel(model, precision if isinstance(precision, str) else "fp32")
