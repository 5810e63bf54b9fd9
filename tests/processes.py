"""Running semsearch as a real process in tests: a server that prints its address, a watcher."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

TESTS = Path(__file__).resolve().parent
FAKE_CLI = [sys.executable, str(TESTS / "fake_cli.py")]
REAL_CLI = [sys.executable, "-m", "semsearch"]


def _default_ctrl_c() -> None:
    """In the child: SIGINT does what Ctrl-C does, even when the tests run from a background job
    (a non-interactive shell starts those with SIGINT ignored, and children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Process:
    """A child process whose output lines are collected by threads, so a test can wait for one."""

    def __init__(self, command: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 stdin: int | None = subprocess.DEVNULL) -> None:
        self.popen = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin, text=True,
            env={**os.environ, **(env or {})}, cwd=cwd, preexec_fn=_default_ctrl_c,
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.output: list[tuple[str, str]] = []
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in (("out", self.popen.stdout), ("err", self.popen.stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream) -> None:
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))

    def wait_for(self, pattern: str, *, timeout: float = 120, stream: str | None = None) -> re.Match:
        """The first new output line matching ``pattern`` (fails the test on timeout or exit)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; output: {self.text()}")
            try:
                name, line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.popen.poll() is not None and self.lines.empty():
                    time.sleep(0.2)
                    if self.lines.empty():
                        raise AssertionError(
                            f"process exited ({self.popen.returncode}) before {pattern!r}; output: {self.text()}"
                        ) from None
                continue
            self.output.append((name, line))
            found = re.search(pattern, line)
            if found and (stream is None or stream == name):
                return found

    def finish(self, *, timeout: float = 120) -> int:
        """Wait for the process to exit and for all its output; its exit status."""
        status = self.popen.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=timeout)
        return status

    def stdout(self) -> str:
        """Everything written to standard output (call :meth:`finish` first)."""
        self.text()
        return "\n".join(line for name, line in self.output if name == "out")

    def text(self) -> str:
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "\n".join(f"[{name}] {line}" for name, line in self.output)

    def interrupt(self, *, timeout: float = 60) -> int:
        """Ctrl-C, then wait for the exit status (SIGKILL if it does not stop)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"the process ignored Ctrl-C for {timeout} s; output: {self.text()}") from None


@contextmanager
def server(cli: Sequence[str], index: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Process]]:
    """``semsearch serve --port 0`` on ``index``: yields its URL and the process; Ctrl-C at the end."""
    process = Process([*cli, "--index", str(index), "serve", "--port", "0", *args], env=env)
    try:
        url = process.wait_for(r"(http://\S+/) ", timeout=180).group(1)
        yield url, process
    finally:
        process.interrupt()
