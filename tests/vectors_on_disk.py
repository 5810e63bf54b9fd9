"""What the vector segment files of an index hold, read independently of the engine's state."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from semsearch.vector_index import Segment
from semsearch.vector_store import SEGMENTS_DIR


def live_vector_ids(index_dir: Path, dimension: int) -> np.ndarray:
    """Chunk ids a fresh reader would find: every id in a recorded segment, minus tombstones."""
    with sqlite3.connect(index_dir / "semsearch.db") as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM segments")]
        dead = {row[0] for row in connection.execute("SELECT chunk_id FROM tombstones")}
    ids = [Segment.open(index_dir / SEGMENTS_DIR / name, dimension).ids() for name in names]
    found = np.concatenate(ids) if ids else np.empty(0, np.int64)
    assert len(found) == len(set(found.tolist())), "a chunk id is in two segments"
    return np.asarray(sorted(set(found.tolist()) - dead), dtype=np.int64)


def stored_chunk_ids(index_dir: Path) -> np.ndarray:
    with sqlite3.connect(index_dir / "semsearch.db") as connection:
        return np.asarray([row[0] for row in connection.execute("SELECT id FROM chunks ORDER BY id")], dtype=np.int64)


def segment_files(index_dir: Path) -> list[Path]:
    folder = index_dir / SEGMENTS_DIR
    return sorted(folder.iterdir()) if folder.is_dir() else []
