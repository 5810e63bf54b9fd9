"""Checking an index: is every part consistent with every other, and can the derived parts be
rebuilt from SQLite? (``semsearch verify``)

SQLite's documents and chunks, with their float32 vectors, are the source of truth. Everything
else is derived and can be rebuilt without embedding anything: the vector segment files, the
FTS5 keyword index (which holds the chunks as ``keyword_text`` writes them, CJK runs as bigrams:
FTS5 checks and rebuilds it from the view ``chunk_fts_source``), the ``document_meta`` filter rows. A check names what is wrong in a line a
person can act on; ``repair`` rebuilds what is derived and reports what it did. Damage to the
source of truth itself (SQLite's own integrity check, a vector of the wrong size) cannot be
repaired here: the message says to index the folder again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from semsearch.backends import PRECISIONS
from semsearch.store import Store
from semsearch.vector_index import Segment, VectorFileError
from semsearch.vector_store import SETTINGS, VectorStore

REQUIRED_SETTINGS = ("model", "dimension", "chunk_tokens", "overlap_tokens", "revision")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an index; ``derived`` problems are fixed by :func:`repair`."""

    part: str  # "database", "settings", "vectors", "segments", "keyword index", "metadata index"
    message: str
    derived: bool


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`check` found (and, after a repair, what was done)."""

    problems: tuple[Problem, ...]
    repaired: tuple[str, ...] = ()
    chunks: int = 0
    segments: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "chunks": self.chunks,
            "segments": self.segments,
            "problems": [{"part": p.part, "message": p.message, "repairable": p.derived} for p in self.problems],
            "repaired": list(self.repaired),
        }


def check(store: Store, vectors: VectorStore | None, dimension: int) -> VerifyReport:
    """Every check, read-only. ``vectors`` is None for an index that holds nothing yet."""
    problems: list[Problem] = []
    for message in store.integrity_problems():
        problems.append(Problem("database", f"SQLite integrity check: {message}", derived=False))
    settings = store.settings()
    missing = [key for key in REQUIRED_SETTINGS if key not in settings] if store.has_chunks() else []
    if missing:
        problems.append(Problem("settings", f"settings missing: {', '.join(missing)}", derived=False))
    if settings.get("vector_index", "auto") not in SETTINGS:
        problems.append(Problem("settings", f"unknown vector_index setting {settings['vector_index']!r}", derived=True))
    if settings.get("precision", "fp32") not in PRECISIONS:
        problems.append(Problem("settings", f"unknown precision {settings['precision']!r}", derived=False))
    if not store.fts_consistent():
        problems.append(Problem("keyword index", "the FTS5 index does not match the chunks", derived=True))
    if not store.metadata_index_consistent():
        problems.append(Problem("metadata index", "document_meta does not match the documents' metadata", derived=True))
    chunk_ids = store.chunk_ids()
    segments = 0
    if dimension:
        wrong = store.chunks_with_wrong_vector_size(dimension)
        if wrong:
            problems.append(Problem(
                "vectors", f"{len(wrong)} chunks have no {dimension}-value vector (first: {wrong[:5]})", derived=False
            ))
        found, segment_problems, segments = _segment_contents(store, vectors, dimension)
        problems.extend(segment_problems)
        if found is not None:
            extra = np.setdiff1d(found, chunk_ids)
            absent = np.setdiff1d(chunk_ids, found)
            if len(extra):
                problems.append(Problem("segments", f"{len(extra)} vectors of deleted chunks are not tombstoned", True))
            if len(absent):
                problems.append(Problem("segments", f"{len(absent)} chunks have no vector in any segment", True))
    return VerifyReport(problems=tuple(problems), chunks=len(chunk_ids), segments=segments)


def repair(store: Store, vectors: VectorStore) -> list[str]:
    """Rebuild every derived part from SQLite; returns what was done."""
    done = []
    count = vectors.rebuild()
    done.append(f"rewrote the vector segments from SQLite ({count} vectors)")
    removed = vectors.collect_garbage()
    if removed:
        done.append(f"deleted {removed} stray files")
    store.rebuild_fts()
    done.append("rebuilt the keyword (FTS5) index")
    store.rebuild_metadata_index()
    done.append("rebuilt the metadata filter index")
    return done


def _segment_contents(
    store: Store, vectors: VectorStore | None, dimension: int
) -> tuple[np.ndarray | None, list[Problem], int]:
    """The live ids the segment files hold (None if they cannot all be read), and problems."""
    state = store.vector_state()
    problems: list[Problem] = []
    if state.rebuild:
        problems.append(Problem("segments", "the index predates segment files; they are not written yet", True))
        return None, problems, 0
    if vectors is None:
        return None, problems, len(state.segments)
    parts = []
    readable = True
    for record in state.segments:
        try:
            segment = Segment.open(vectors.directory / record.name, dimension)
        except VectorFileError as error:
            problems.append(Problem("segments", str(error), derived=True))
            readable = False
            continue
        ids = segment.ids()
        if len(ids) != record.count:
            problems.append(Problem(
                "segments", f"{record.name} holds {len(ids)} vectors, the database says {record.count}", True
            ))
        if len(ids) and (ids[0] < record.min_id or ids[-1] > record.max_id):
            problems.append(Problem("segments", f"{record.name} holds ids outside {record.min_id}..{record.max_id}", True))
        parts.append(ids)
    records = sorted(state.segments, key=lambda r: r.min_id)
    for before, after in zip(records, records[1:]):
        if after.min_id <= before.max_id:
            problems.append(Problem("segments", f"{before.name} and {after.name} cover overlapping ids", True))
    if not readable:
        return None, problems, len(state.segments)
    found = np.concatenate(parts) if parts else np.empty(0, np.int64)
    if len(np.unique(found)) != len(found):
        problems.append(Problem("segments", "some chunk ids are in more than one segment", True))
    live = np.setdiff1d(found, state.tombstones)
    strays = np.setdiff1d(state.tombstones, found)
    if len(strays):
        problems.append(Problem("segments", f"{len(strays)} tombstones name ids that no segment holds", True))
    return live, problems, len(state.segments)
