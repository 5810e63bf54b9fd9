"""A search's query model in a process of its own, forked before anything heavy is imported.

A ``semsearch search`` answered in its own process imports numpy, onnxruntime and tokenizers and
builds the model's session (~0.35 s here) and, apart from that, imports the command line, the
engine, numpy and FAISS (~0.3 s). Python imports hold the GIL, so on threads of one process these
add up whatever the order (:mod:`semsearch.early_model`). In two processes they run on two cores
at once: the ``semsearch`` entry point (:mod:`semsearch.launch`) imports numpy (which both need)
and then forks this child, before it runs any thread or imports anything else heavy; the child
loads the model while the parent imports the rest. The parent sends the query as soon as it knows
it (:meth:`QueryProcess.expect`) and reads the vector when the engine asks for it.

The child answers the texts its parent sends, one request at a time, and ends when the parent
closes the pipe or ends itself. It runs the same :class:`semsearch.onnx_embedder.OnnxEmbedder`
the parent would load, so the vectors are the same. Its standard streams are ``/dev/null`` (it
never writes to the parent's output, nor keeps a reader of that output waiting) and Ctrl-C ends it
quietly. Anything that goes wrong in it (no export, a damaged file, a crash) only means the parent
loads the model itself, as it would have without the child.

Wire format, both ways: a 4-byte big-endian length, then that many bytes. The child first sends
its model's description (JSON) or an error; then, per request (a JSON list of texts), ``V``
followed by the float32 vectors, or ``E`` followed by a message.

Imports nothing heavy at module level: numpy only when vectors arrive.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import threading
import warnings
from collections.abc import Sequence
from typing import Any

LENGTH = struct.Struct(">I")


def can_fork() -> bool:
    """Whether a child can be forked safely here: on Linux, in a process running no other thread."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and threading.active_count() == 1


class QueryProcess:
    """The parent's side: a forked child loading the query model of one index.

    ``model`` and ``precision`` are what the index records; :meth:`result` gives the model once
    the child has loaded it (an embedder whose :meth:`RemoteEmbedder.embed` asks the child).
    """

    def __init__(self, model: str, precision: str) -> None:
        self.model = model
        self.precision = precision
        self._embedder: RemoteEmbedder | None = None
        self._answered = False
        self._expected: list[str] | None = None  # the texts of a request sent ahead, not yet read
        self._turn = threading.Lock()  # one request on the pipe at a time
        requests_read, requests_write = os.pipe()
        answers_read, answers_write = os.pipe()
        with warnings.catch_warnings():
            # Python 3.12+ warns of a fork beside other OS threads: numpy's BLAS has started its idle
            # workers by now, which hold no lock a child needs (glibc's allocator forks safely), and
            # the child never uses BLAS threads (onnxruntime brings its own, started after the fork).
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(requests_write)
            os.close(answers_read)
            _child(model, precision, requests_read, answers_write)
        os.close(requests_read)
        os.close(answers_write)
        self.pid = pid
        self._requests = requests_write
        self._answers = answers_read

    def result(self) -> RemoteEmbedder | None:
        """The child's model once it has loaded, or ``None`` if it could not (waits for it)."""
        if not self._answered:
            self._answered = True
            try:
                hello = json.loads(_receive(self._answers))
                self._embedder = RemoteEmbedder(self, hello)
            except (OSError, EOFError, ValueError, KeyError, TypeError):  # it failed or ended: load here
                self.close()
        return self._embedder

    def expect(self, query: str) -> None:
        """Have the child embed ``query`` as soon as it has loaded, before it is asked for: the
        command knows its query long before the search stack is imported and asks."""
        with self._turn:
            if self._expected is None and self._requests >= 0:
                try:
                    _send(self._requests, json.dumps([query]).encode())
                    self._expected = [query]
                except OSError:  # it is gone: result() and ask() find out
                    pass

    def ask(self, texts: Sequence[str]) -> bytes:
        """The child's answer to ``texts`` (its raw vectors); raises :class:`EOFError` or
        :class:`OSError` when it is gone, :class:`RuntimeError` when it failed."""
        with self._turn:
            expected, self._expected = self._expected, None
            answer = _receive(self._answers) if expected is not None else None
            if expected != list(texts):  # (nothing asked ahead, or another text: that answer is dropped)
                _send(self._requests, json.dumps(list(texts)).encode())
                answer = _receive(self._answers)
        if answer[:1] != b"V":
            raise RuntimeError(answer[1:].decode(errors="replace"))
        return answer[1:]

    def close(self) -> None:
        """Let the child end (it sees the pipe closed); reaps it if it already has."""
        for descriptor in (self._requests, self._answers):
            try:
                os.close(descriptor)
            except OSError:
                pass
        self._requests = self._answers = -1
        try:
            os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pass


class RemoteEmbedder:
    """The query model in the child, as an :class:`semsearch.embedder.Embedder`.

    If the child fails or ends, the model is loaded here (the same files) and used from then on;
    so is a token counter, which only texts chunked like documents need (``similar`` to a text).
    """

    def __init__(self, process: QueryProcess, hello: dict[str, Any]) -> None:
        self._process: QueryProcess | None = process
        self._model = process.model  # the index's name for it, as the cache knows it
        self.name: str = hello["name"]
        self.precision: str = hello["precision"]
        self.dimension: int = int(hello["dimension"])
        self.max_tokens: int = int(hello["max_tokens"])
        self.optimized: bool = bool(hello["optimized"])  # whether the child loaded the query graph
        self._own: Any = None

    def embed(self, texts: Sequence[str]):
        import numpy as np

        if self._process is not None:
            try:
                raw = self._process.ask(texts)
                return np.frombuffer(bytearray(raw), dtype=np.float32).reshape(len(texts), self.dimension)
            except (OSError, EOFError, RuntimeError, ValueError):
                self._process.close()
                self._process = None
        return self._local().embed(texts)

    @property
    def counter(self):
        return self._local().counter

    def _local(self):
        if self._own is None:
            from semsearch.model_cache import load_query_model
            from semsearch.onnx_embedder import QueryModelError

            self._own = load_query_model(self._model, self.precision)
            if self._own is None:
                raise QueryModelError(f"the ONNX query model of {self._model} is gone from the cache; run: semsearch index")
        return self._own


def _child(model: str, precision: str, requests: int, answers: int) -> None:
    """Load the model and answer requests until the parent closes its end; never returns."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C reaches the whole group: end, no traceback
        quiet = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(quiet, stream)
        embedder = _load(model, precision, answers)
        if embedder is not None:
            while True:
                texts = json.loads(_receive(requests))
                try:
                    vectors = embedder.embed(texts)
                    answer = b"V" + vectors.astype("<f4", copy=False).tobytes()
                except Exception as error:  # noqa: BLE001 - told to the parent, which embeds it itself
                    answer = b"E" + str(error).encode(errors="replace")
                _send(answers, answer)
    except BaseException:  # noqa: BLE001 - the parent gone (EOF, broken pipe) or anything else: end
        pass
    os._exit(0)


def _load(model: str, precision: str, answers: int) -> Any:
    """The model, after telling the parent what it is; ``None`` (and an error sent) if it cannot load."""
    try:
        from semsearch.model_cache import load_query_model

        # One query to embed, mostly: a session that builds sooner beats one that runs faster.
        embedder = load_query_model(model, precision, prepack=False)
        if embedder is None:
            raise FileNotFoundError(f"no {precision} export of {model} in the cache")
    except Exception as error:  # noqa: BLE001 - the parent loads it itself and reports what is wrong
        _send(answers, json.dumps({"error": str(error)}).encode())
        return None
    hello = {"name": embedder.name, "precision": embedder.precision, "dimension": embedder.dimension,
             "max_tokens": embedder.max_tokens, "optimized": embedder.optimized}
    _send(answers, json.dumps(hello).encode())
    return embedder


def _send(descriptor: int, payload: bytes) -> None:
    view = memoryview(LENGTH.pack(len(payload)) + payload)
    while view:
        view = view[os.write(descriptor, view):]


def _receive(descriptor: int) -> bytes:
    (length,) = LENGTH.unpack(_read_exactly(descriptor, LENGTH.size))
    return _read_exactly(descriptor, length)


def _read_exactly(descriptor: int, size: int) -> bytes:
    parts: list[bytes] = []
    left = size
    while left:
        part = os.read(descriptor, min(left, 1 << 20))
        if not part:
            raise EOFError("the query model's process ended")
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
