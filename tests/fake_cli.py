"""The real ``semsearch`` command line in a new process, with the tests' fake embedder.

For tests that need a real process (a server, a watcher, a hang they can time out, a kill, a file
system that fills up) but not the real model. Two ways in:

- ``python tests/fake_cli.py --index DIR serve`` runs the command line (a process the test
  starts and talks to);
- :func:`semsearch` runs one command to its end; ``memory_mb`` caps the whole process's address
  space, so that a test of a memory-hungry file cannot take the machine down with it if the code
  under test fails.

Either way the child patches exactly what the ``fake_model`` fixture patches, then runs
:func:`semsearch.cli.main`. Importing this module patches nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

CHILD = """
import resource, sys
if {memory_mb}:
    resource.setrlimit(resource.RLIMIT_AS, ({memory_mb} * 2**20, resource.RLIM_INFINITY))
sys.path.insert(0, {tests!r})
import fake_cli
sys.argv = ["semsearch"] + sys.argv[1:]
fake_cli.main()
"""


def semsearch(*args: str, timeout: float, memory_mb: int = 0) -> subprocess.CompletedProcess:
    """``semsearch ARGS...`` with the fake embedder; raises ``subprocess.TimeoutExpired`` (after
    killing it) if it runs longer than ``timeout`` seconds."""
    code = CHILD.format(tests=str(TESTS), memory_mb=int(memory_mb))
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def main() -> None:
    """Patch in the fake embedder, then run the command line with this process's arguments."""
    sys.path.insert(0, str(TESTS))
    from conftest import FakeEmbedder

    import semsearch.cli
    import semsearch.embedder
    import semsearch.engine
    import semsearch.warm

    embedder = FakeEmbedder()
    original = semsearch.embedder.canonical_model_name
    semsearch.engine.canonical_model_name = (
        lambda name: embedder.name if name in (None, embedder.name) else original(name)
    )
    semsearch.engine.SentenceTransformerEmbedder = lambda name=None, device=None: embedder
    semsearch.warm.launcher = lambda: [sys.executable, str(TESTS / "fake_cli.py")]  # a server it starts: fake too
    semsearch.cli.main()


if __name__ == "__main__":
    main()
