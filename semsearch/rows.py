"""The rows the store reads and writes, as frozen dataclasses (no database library here).

Shared by the read side (:mod:`semsearch.store`, sqlite3) and the write side
(:mod:`semsearch.writer`, SQLAlchemy), and by the pipeline that fills them (:mod:`semsearch.ingest`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semsearch.types import ChunkDraft

HEADING_SEPARATOR = " › "  # between the headings of a chunk's heading path, and after its title in its context


@dataclass(frozen=True)
class StoredDocument:
    """A row of the documents table (without its chunks)."""

    id: int
    path: str
    source: str
    content_hash: str
    size: int
    mtime_ns: int
    title: str
    format: str
    ingest_version: int


@dataclass(frozen=True)
class NewChunk:
    """A chunk ready to be written: its draft, the context it was embedded with, and its vector."""

    draft: ChunkDraft
    context: str
    embed_hash: str
    vector: np.ndarray


@dataclass(frozen=True)
class NewDocument:
    """A document ready to be written with its chunks (:meth:`Writer.write_documents`)."""

    path: str
    source: str
    content_hash: str
    size: int
    mtime_ns: int
    title: str
    format: str
    metadata: dict[str, Any]
    ingest_version: int
    chunks: tuple[NewChunk, ...]


@dataclass(frozen=True)
class ChunkRow:
    """A chunk joined to its document, as search results need it."""

    chunk_id: int
    document_id: int
    path: str
    title: str
    format: str
    metadata: dict[str, Any]
    text: str
    start_line: int
    end_line: int
    page: int | None
    heading: str = ""


@dataclass(frozen=True)
class SegmentRecord:
    """A live segment file: its name, kind, vector count and the chunk-id range it covers."""

    name: str
    kind: str
    count: int
    min_id: int
    max_id: int


@dataclass(frozen=True)
class VectorState:
    """What a reader needs to search the vectors at one revision, read in one transaction."""

    revision: int
    segments: tuple[SegmentRecord, ...]
    tombstones: np.ndarray  # ids of deleted chunks that some segment still holds
    rebuild: bool  # an index from before segments: vectors are only in SQLite until a writer runs
    kind: str  # the vector_index setting: "auto", "exact" or "ivf"


def embed_hash(text_to_embed: str) -> str:
    """The key under which a vector is reused: a hash of the exact string given to the model."""
    return hashlib.sha256(text_to_embed.encode("utf-8")).hexdigest()


def unpack_vectors(rows: Sequence[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, vectors)`` from rows of ``(id, float32 bytes)``."""
    sizes = {len(row[1]) if isinstance(row[1], bytes) else -1 for row in rows}
    if len(sizes) > 1:  # a damaged vector (semsearch verify names it): leave it out, keep the rest
        common = max(sizes, key=lambda size: sum(1 for row in rows if isinstance(row[1], bytes) and len(row[1]) == size))
        rows = [row for row in rows if isinstance(row[1], bytes) and len(row[1]) == common]
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), -1)
    return ids, vectors.astype(np.float32, copy=False)


