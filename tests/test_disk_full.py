"""An index on a real, small file system that fills up in the middle of a run.

The test mounts a tmpfs of a few megabytes (it needs root, or another right to mount; elsewhere it
is skipped and says why), builds an index there, then indexes far more than fits. The run must end
with one line on stderr and a non-zero exit, and what was indexed before must still open, pass
``verify`` and answer searches. Once the file system is made larger, the same run finishes.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_cli import semsearch

SIZE_MB = 3


@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs of SIZE_MB megabytes, unmounted at the end whatever happens."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    if not sys.platform.startswith("linux") or shutil.which("mount") is None:
        pytest.skip("needs Linux's mount command to make a small file system")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip() or 'mount failed'}): needs root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def cli(*args: str) -> subprocess.CompletedProcess:
    return semsearch(*args, timeout=300)


def notes(folder: Path, count: int, words: int, seed: int) -> None:
    rng = random.Random(seed)
    vocabulary = [f"word{i}" for i in range(5000)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        body = "\n\n".join(" ".join(rng.choice(vocabulary) for _ in range(words // 5)) for _ in range(5))
        (folder / f"note{i:04}.txt").write_text(body)


def snapshot(index: Path) -> tuple[dict, list]:
    status = cli("--index", str(index), "status", "--json")
    assert status.returncode == 0, status.stderr
    search = cli("--index", str(index), "search", "tides harbour", "--mode", "semantic", "--json", "--limit", "5")
    assert search.returncode == 0, search.stderr
    return json.loads(status.stdout), json.loads(search.stdout)


def test_a_disk_that_fills_up_mid_run_is_one_line_and_loses_nothing(tmp_path, small_disk):
    index = small_disk / "index"
    before = tmp_path / "before"
    before.mkdir()
    (before / "tides.md").write_text("# Tides\n\nThe moon raises the tides twice a day in the harbour.\n")
    notes(before, 20, 200, seed=1)
    first = cli("--index", str(index), "index", str(before))
    assert first.returncode == 0, first.stderr
    status_before, hits_before = snapshot(index)
    assert hits_before and hits_before[0]["path"].endswith("tides.md")

    more = tmp_path / "more"
    notes(more, 200, 1000, seed=2)  # some 3,300 chunks at 1.5 KB each (text, keyword index, vectors)
    full = cli("--index", str(index), "index", str(before), str(more))
    assert full.returncode == 1
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), full.stderr
    assert "Traceback" not in full.stderr
    assert "space" in lines[0] or "full" in lines[0], lines[0]

    verify = cli("--index", str(index), "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"], verify.stdout + verify.stderr
    status_after, hits_after = snapshot(index)
    # Waves committed before the disk filled stay (as after Ctrl-C); nothing that was there is lost.
    assert status_after["documents"] >= status_before["documents"]
    assert [hit["path"] for hit in hits_after][:1] == [hits_before[0]["path"]]
    assert hits_after[0]["score"] == pytest.approx(hits_before[0]["score"])

    # With room again, the same run finishes and the index is whole.
    grown = subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], capture_output=True, text=True)
    assert grown.returncode == 0, grown.stderr
    again = cli("--index", str(index), "index", str(before), str(more), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 0
    verify = cli("--index", str(index), "verify", "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"], verify.stdout
    final, _ = snapshot(index)
    assert final["documents"] == 21 + 200
