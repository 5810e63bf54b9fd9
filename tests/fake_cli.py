"""Run the real ``semsearch`` command line in a new process, with the tests' fake embedder.

Used where a test needs a real process (a hang it can time out, a kill, a file system that fills
up) without loading the model. ``memory_mb`` caps the whole process's address space, so that a
test of a memory-hungry file cannot take the machine down with it if the code under test fails.
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
from conftest import FakeEmbedder
import semsearch.cli, semsearch.engine
fake = FakeEmbedder()
semsearch.engine.SentenceTransformerEmbedder = lambda name=None: fake
semsearch.engine.canonical_model_name = lambda name: fake.name
sys.argv = ["semsearch"] + sys.argv[1:]
semsearch.cli.main()
"""


def semsearch(*args: str, timeout: float, memory_mb: int = 0) -> subprocess.CompletedProcess:
    """``semsearch ARGS...`` with the fake embedder; raises ``subprocess.TimeoutExpired`` (after
    killing it) if it runs longer than ``timeout`` seconds."""
    code = CHILD.format(tests=str(TESTS), memory_mb=int(memory_mb))
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
