"""The SIGKILL campaign of benchmarks/crash.py, small enough for CI (12 processes started and
killed at random moments: indexing, rebuilding, removing; see that script for the guarantees)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import crash  # noqa: E402

KILLS = int(os.environ.get("SEMSEARCH_CRASH_KILLS", "12"))


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_or_corrupts_anything(tmp_path):
    tally = crash.campaign(tmp_path, KILLS)
    assert tally["kills"] >= KILLS // 3  # most processes really were killed mid-way
    assert tally["verified"] == KILLS
