"""The malformed-files campaign of benchmarks/fuzz.py, reduced for CI: about 100 files of every
kind, indexed by the real CLI (with the fake embedder) under a deadline; see that script."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import fuzz  # noqa: E402

FILES = int(os.environ.get("SEMSEARCH_FUZZ_FILES", "100"))


@pytest.mark.slow
def test_malformed_files_are_indexed_or_skipped_with_a_reason_and_nothing_crashes(tmp_path):
    tally = fuzz.campaign(tmp_path, FILES, fake=True, timeout=600)
    assert tally["files"] >= FILES
    assert tally["indexed"] > 0 and tally["skipped"] > 0
    assert "took longer than 30 s to read" in tally["skipped_reasons"]
    assert "needed more than 512 MB to read" in tally["skipped_reasons"]
