"""Parse files in a worker process, with a time and a memory limit for each file.

A loader is third-party code fed whatever is on the user's disk. A PDF of 60 KB whose 400 pages
share one long content stream keeps pypdf busy for a quarter of an hour; a DOCX of 0.7 MB can
unzip to 300 MB of XML. A thread cannot be stopped, so files are parsed in a separate process:

- its address space is capped (``RLIMIT_AS``), so a file that needs more memory fails inside the
  worker instead of exhausting the machine;
- a file not parsed in time is abandoned by killing the worker, which is started again for the
  next file.

Either way the file comes back as a reason (``"took longer than 120 s to read"``, ``"needed more
than 2048 MB to read"``) and the run goes on. The worker is started with ``exec`` (``subprocess``,
never ``fork``), so it is safe to start after the model has loaded torch and its threads, and it
imports only the loaders.

:meth:`Reader.read` parses ahead of the caller: while the caller chunks and embeds one document,
the worker is already parsing the next ones.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from semsearch.errors import ReaderError
from semsearch.types import ParsedDocument

DEFAULT_SECONDS = 120.0
DEFAULT_MEMORY_MB = 2048
_STARTUP_SECONDS = 60.0  # a worker that cannot import the loaders in this long is broken
_MB = 2**20
# The worker's own parse time in seconds, the reply's length, and whether the worker is about to
# exit (its heap has grown past half the cap, or a file hit the cap): what it has not answered
# goes to a new worker.
_HEADER = struct.Struct("!dQ?")
_READY = b"R"
_PIPE_BYTES = 2**20
_MAX_BATCH = 256  # requests sent at once (small files: one wake-up of the worker for many)
_OUT_OF_MEMORY = "out of memory"  # what a worker replies for a file that hit its memory cap
_AGAIN = "\0again"  # a file to parse once more, in a new worker (no loader's reason starts with NUL)
DEBUG_VAR = "SEMSEARCH_DEBUG"  # set: the worker's stderr is shown (it is silent otherwise)

Key = TypeVar("Key")


@dataclass(frozen=True)
class ReadLimits:
    """How long and how much memory parsing one file may take before it is skipped.

    ``seconds`` is wall-clock time; ``memory_mb`` caps the worker process's whole address space
    (about 50 MB of it is Python and the loaders).
    """

    seconds: float = DEFAULT_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError("the time limit for reading a file must be more than 0 seconds")
        if self.memory_mb < 100:
            raise ValueError("the memory limit for reading a file must be at least 100 MB")

    def time_reason(self) -> str:
        return f"took longer than {self.seconds:g} s to read"

    def memory_reason(self) -> str:
        return f"needed more than {self.memory_mb} MB to read"


@dataclass(frozen=True)
class ReadJob(Generic[Key]):
    """One file to parse: ``path`` as text (it picks the loader and the fallback title), its bytes,
    and whatever the caller needs to find its place again."""

    key: Key
    path: str
    data: bytes


class Reader:
    """Parses files in a worker process within :class:`ReadLimits`; close it when done."""

    def __init__(self, limits: ReadLimits | None = None) -> None:
        self.limits = limits or ReadLimits()
        self._worker: _Worker | None = None

    def read(self, jobs: Iterable[ReadJob[Key]]) -> Iterator[tuple[ReadJob[Key], ParsedDocument | str]]:
        """Parse each job, in order: the document, or the reason it was skipped.

        Jobs go to the worker in batches that fit in the pipe (so that writing one never waits
        for the worker), and the next batch is sent before the last result of this one is
        yielded: the worker parses while the caller works on what it got.
        """
        source = iter(jobs)
        waiting: deque[tuple[ReadJob[Key], bytes]] = deque()  # taken from jobs, not sent (or sent again)
        in_flight: deque[ReadJob[Key]] = deque()

        def send_batch() -> None:
            requests: list[bytes] = []
            size = 0
            while len(requests) < _MAX_BATCH:
                if waiting:
                    job, request = waiting.popleft()
                else:
                    job = next(source, None)
                    if job is None:
                        break
                    request = _request(job)
                if requests and size + len(request) > self._capacity():
                    waiting.appendleft((job, request))
                    break
                requests.append(request)
                in_flight.append(job)
                size += len(request)
            if requests:
                self._send(b"".join(requests))

        send_batch()
        while in_flight:
            job = in_flight.popleft()
            outcome = self._receive()
            if self._worker is None:  # it stopped: what it had not answered goes to the next one
                again = [job, *in_flight] if outcome is _AGAIN else list(in_flight)
                waiting.extendleft((queued, _request(queued)) for queued in reversed(again))
                in_flight.clear()
            if not in_flight:
                send_batch()
            if outcome is not _AGAIN:
                yield job, outcome

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the worker now (it is started by :meth:`read` otherwise), so that its start-up,
        half a second or more, overlaps the caller's own work."""
        if self._worker is None:
            self._worker = _Worker(self.limits.memory_mb)

    def _capacity(self) -> int:
        self.start()
        assert self._worker is not None
        return self._worker.capacity

    def _send(self, requests: bytes) -> None:
        for attempt in (1, 2):
            if self._worker is None:
                self._worker = _Worker(self.limits.memory_mb)
            try:
                self._worker.send(requests)
                return
            except OSError:  # it died between files (the kernel's OOM killer, say): start another once
                self._worker.stop()
                self._worker = None
                if attempt == 2:
                    raise ReaderError(
                        f"the worker process that parses files keeps dying; set {DEBUG_VAR}=1 to see why"
                    ) from None

    def _receive(self) -> ParsedDocument | str:
        """The outcome of the oldest job in flight (or ``_AGAIN``); stops the worker if it overran,
        died or retires."""
        worker = self._worker
        assert worker is not None
        fresh = worker.answered == 0
        reply = worker.receive(self.limits.seconds)
        if isinstance(reply, _Failure):
            worker.stop()
            self._worker = None
            return self.limits.time_reason() if reply.overran else reply.reason
        seconds, outcome, retiring = reply
        if retiring:
            worker.stop()
            self._worker = None
        if outcome == _OUT_OF_MEMORY:
            # What earlier files left in a worker's heap is not this file's: only a file that
            # fails in a new worker is too big.
            return self.limits.memory_reason() if fresh else _AGAIN
        if seconds > self.limits.seconds:  # finished, but late: the same file is skipped every time
            return self.limits.time_reason()
        return outcome


def _request(job: ReadJob) -> bytes:
    body = pickle.dumps((job.path, job.data), protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack("!Q", len(body)) + body


@dataclass(frozen=True)
class _Failure:
    """The worker gave no reply: it ran past the deadline, or it died."""

    overran: bool
    reason: str = ""


class _Worker:
    """One worker process and the two pipes to it (unbuffered: select() must see every byte)."""

    def __init__(self, memory_mb: int) -> None:
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        import subprocess  # (here: a search imports this module for its limits, not its workers)

        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "semsearch.reader", str(memory_mb), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None if os.environ.get(DEBUG_VAR) else subprocess.DEVNULL,
                bufsize=0,
                env=env,
            )
        except OSError as error:
            raise ReaderError(
                f"cannot start the worker process that parses files ({error.strerror or error}); "
                f"check that {sys.executable} runs"
            ) from error
        assert self.process.stdin is not None and self.process.stdout is not None
        self._input = self.process.stdin.fileno()
        self._output = self.process.stdout.fileno()
        #: Bytes of requests that fit in the pipe at once, so that sending a batch never blocks.
        self.capacity = _widen(self._input)
        _widen(self._output)
        self.ready = False
        self.started = time.monotonic()
        # The latest moment the oldest unanswered request can have started: when it was sent, or
        # when the reply before it had been read (the worker had written it by then), whichever is
        # later. Time since then is the least it has run.
        self.since = 0.0
        self.answered = 0

    def send(self, requests: bytes) -> None:
        _write_all(self._input, requests)
        self.since = time.monotonic()

    def receive(self, seconds: float) -> tuple[float, ParsedDocument | str, bool] | _Failure:
        """The reply to the oldest unanswered request, or why there is none.

        The deadline counts from ``since``, so a request is given up on only once it has surely
        run that long; reading late (while the caller was busy) only makes it longer.
        """
        if not self.ready:
            if not self._readable(self.started + _STARTUP_SECONDS):
                raise ReaderError(
                    "the worker process that parses files did not start within a minute; is the machine overloaded?"
                )
            if _read_exactly(self._output, 1) != _READY:
                raise ReaderError(
                    f"the worker process that parses files could not start; set {DEBUG_VAR}=1 to see why"
                )
            self.ready = True
            self.since = max(self.since, time.monotonic())  # starting it took no file's time
        if not self._readable(self.since + seconds):
            return _Failure(overran=True)
        header = _read_exactly(self._output, _HEADER.size)
        if header is None:
            return _Failure(overran=False, reason=self._death())
        parse_seconds, length, retiring = _HEADER.unpack(header)
        body = _read_exactly(self._output, length)
        if body is None:
            return _Failure(overran=False, reason=self._death())
        self.since = max(self.since, time.monotonic())
        self.answered += 1
        return parse_seconds, pickle.loads(body), retiring

    def _readable(self, deadline: float) -> bool:
        """Wait until the worker's reply starts arriving (or it dies); False past ``deadline``.

        A reply already waiting counts even past the deadline: the caller may have been busy.
        """
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._output], [], [], max(0.0, remaining))
            if ready:
                return True
            if remaining <= 0:
                return False

    def _death(self) -> str:
        """Why the worker stopped answering, as a skip reason."""
        import subprocess

        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "the parser stopped answering"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the parser crashed ({name})"
        return f"the parser crashed (exit status {code})"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        self.process.wait()


def _widen(descriptor: int) -> int:
    """Make a pipe hold up to 1 MB (Linux; the default is 64 KB); returns what it holds, 0 if unknown."""
    try:
        import fcntl

        try:
            fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        except OSError:  # above /proc/sys/fs/pipe-max-size: keep what it has
            pass
        return fcntl.fcntl(descriptor, fcntl.F_GETPIPE_SZ)
    except (ImportError, AttributeError, OSError):
        return 0  # not Linux: one request at a time


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def _read_exactly(descriptor: int, size: int) -> bytearray | None:
    """``size`` bytes from the pipe, or None if it ends first."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    done = 0
    while done < size:
        count = os.readv(descriptor, [view[done:]])
        if count == 0:
            return None
        done += count
    return buffer


# -- the worker process ---------------------------------------------------------------------------


def _serve(memory_mb: int, parent: int) -> None:
    """The worker's loop: read a request, parse it, reply; exit at the end of input."""
    import resource

    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the indexing process's to handle
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    # A library that prints must not corrupt the replies: file descriptor 1 becomes stderr.
    os.dup2(2, 1)
    cap = memory_mb * _MB
    try:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    except (ValueError, OSError):  # a system that does not enforce it (macOS): no cap, time still counts
        pass
    replies.write(_READY)
    replies.flush()

    from semsearch.errors import LoaderError
    from semsearch.loaders import load

    while True:
        size = requests.read(8)
        if len(size) < 8:
            return
        (length,) = struct.unpack("!Q", size)
        try:
            path, data = pickle.loads(requests.read(length))
        except MemoryError:
            return  # the parent sees it die and says so
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.monotonic()
        outcome: ParsedDocument | str
        try:
            outcome = load(Path(path), data)
        except LoaderError as error:
            outcome = _OUT_OF_MEMORY if _out_of_memory(error, peak, cap) else str(error)
        except MemoryError:
            outcome = _OUT_OF_MEMORY
        seconds = time.monotonic() - started
        del data
        try:
            body = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            outcome = _OUT_OF_MEMORY
            body = pickle.dumps(outcome)
        retiring = outcome == _OUT_OF_MEMORY or _address_space() > cap // 2
        replies.write(_HEADER.pack(seconds, len(body), retiring))
        replies.write(body)
        replies.flush()
        if retiring:
            return


def _address_space() -> int:
    """Bytes of address space this process holds now (what RLIMIT_AS counts); 0 if unknown."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _out_of_memory(error: BaseException, peak_before: int, cap: int) -> bool:
    """Whether a file failed because it hit the memory cap.

    Python says so with a MemoryError; libxml2 (under python-docx) only says "unknown error", so
    a failure during which the worker's peak memory rose to three quarters of the cap counts too.
    """
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, MemoryError):
            return True
        cause = cause.__cause__ or cause.__context__
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes
    return peak > peak_before and peak * 1024 > cap * 3 // 4


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the indexing process dies (a worker stuck in a parser
    never reads the end of its input)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
