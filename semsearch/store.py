"""The index's SQLite file: documents, chunks, vectors and settings.

Reads run on the standard library's sqlite3 (:mod:`semsearch.database`), so that a process that
only searches never imports SQLAlchemy; the schema (Alembic migrations) and every write go
through SQLAlchemy in :mod:`semsearch.writer`, imported at the first write or when the schema is
old. Every write goes through :meth:`Store.writing`: one transaction that records which chunks it
added and removed (its net change), lets the vector store record its segment files in the same
transaction (:meth:`Store.on_commit`), and bumps the ``revision`` setting that readers watch.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semsearch import fts
from semsearch.database import Connections, damaged, scalar
from semsearch.filter_members import FilterMembers, Members
from semsearch.filters import allowed_documents, filter_conditions, joined
from semsearch.rows import (
    ChunkRow,
    SegmentRecord,
    StoredDocument,
    VectorState,
    unpack_vectors,
)
from semsearch.types import Document, DocumentChunk, SearchFilter

if TYPE_CHECKING:  # the write side is imported when something is written
    from sqlalchemy import Engine

    from semsearch.writer import Writer

SCHEMA_HEAD = "0007"  # the newest migration in migrations/versions/
TOKEN_COUNTS_KEPT = 100_000  # keyword_statistics forgets its counts past this many tokens
WORDS_KEPT = 100_000  # keyword_tokens forgets the words it tokenised past this many
FILTERS_KEPT = 8  # filtered_chunk_ids remembers the chunk ids of this many filters
_DOCUMENT_COLUMNS = "id, path, source, content_hash, size, mtime_ns, title, format, ingest_version"
_REVISION = "SELECT value FROM settings WHERE key = 'revision'"


def _migrations_dir() -> Path:
    import semsearch.migrations

    return Path(semsearch.migrations.__file__).parent


class Store:
    """One SQLite database file, migrated to the current schema when opened."""

    def __init__(self, path: Path, *, migrate: bool = True) -> None:
        self.path = path
        self._connections = Connections(path, fts.prepare_connection, fts.take_interrupt)
        self._write_engine: Engine | None = None  # SQLAlchemy's, made at the first write
        self._token_rows: tuple[int | None, dict[str, int]] = (None, {})  # see keyword_statistics
        self._word_tokens: dict[str, tuple[str, ...]] = {}  # see keyword_tokens
        self._filtered: tuple[int | None, dict[tuple[tuple, int | None], np.ndarray]] = (None, {})
        self._members = FilterMembers(self._passing_at_revision)  # broad filters' bitmaps, see passing_chunk_ids
        self._before_commit: Callable[[Writer], None] | None = None
        self._after_commit: Callable[[Writer], None] | None = None
        if migrate:
            self._migrate()

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        # The common case, an index already at the current schema, is answered without importing
        # Alembic or SQLAlchemy; tests/test_store.py checks SCHEMA_HEAD is the head.
        if self.schema_revision() == SCHEMA_HEAD:
            return
        from semsearch.writer import migrate

        migrate(self._writes(), _migrations_dir(), self.path.parent)

    def _writes(self) -> Engine:
        """SQLAlchemy's engine for writes and migrations (imported and made on first use)."""
        if self._write_engine is None:
            from semsearch.writer import write_engine

            self._write_engine = write_engine(self.path, self._connections.new, fts.take_interrupt)
        return self._write_engine

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` before the first migration)."""
        with self._connections.reading() as connection:
            try:
                return scalar(connection, "SELECT version_num FROM alembic_version")
            except sqlite3.OperationalError as error:  # no alembic_version table yet: a new database
                if "no such table" not in str(error):
                    raise
                return None

    def close(self) -> None:
        self._connections.close()
        if self._write_engine is not None:
            self._write_engine.dispose()

    # -- settings -----------------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        with self._connections.reading() as connection:
            return dict(connection.execute("SELECT key, value FROM settings").fetchall())

    def revision(self) -> int:
        """The revision of the chunks and segments (every search reads it)."""
        with self._connections.reading() as connection:
            value = scalar(connection, _REVISION)
        return int(value or 0)

    # -- reads --------------------------------------------------------------------------------

    def document_count(self) -> int:
        with self._connections.reading() as connection:
            return int(scalar(connection, "SELECT count(*) FROM documents"))

    def chunk_count(self) -> int:
        with self._connections.reading() as connection:
            return int(scalar(connection, "SELECT count(*) FROM chunks"))

    def documents(self, *, source: str | None = None) -> list[StoredDocument]:
        query = f"SELECT {_DOCUMENT_COLUMNS} FROM documents"
        parameters: tuple[Any, ...] = ()
        if source is not None:
            query += " WHERE source = ?"
            parameters = (source,)
        with self._connections.reading() as connection:
            return [StoredDocument(*row) for row in connection.execute(query, parameters)]

    def documents_at(self, paths: Sequence[str]) -> dict[str, StoredDocument]:
        """The stored documents at these paths (or text ids), by path: an index lookup per path."""
        found: dict[str, StoredDocument] = {}
        unique = list(dict.fromkeys(paths))
        with self._connections.reading() as connection:
            for offset in range(0, len(unique), 500):
                part = unique[offset : offset + 500]
                query = f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE path IN ({','.join('?' * len(part))})"
                for row in connection.execute(query, part):
                    found[row[1]] = StoredDocument(*row)
        return found

    def documents_under(self, paths: Sequence[str]) -> list[StoredDocument]:
        """Documents at these paths or anywhere under them (as folders): index range scans, so the
        cost follows what matches, not the size of the index."""
        found: dict[int, StoredDocument] = {}
        query = f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE path = ? OR (path >= ? AND path < ?)"
        with self._connections.reading() as connection:
            for path in dict.fromkeys(paths):
                folder = path.rstrip("/") + "/"
                # Everything under "a/b/" sorts between "a/b/" and "a/b0" ("0" follows "/").
                for row in connection.execute(query, (path, folder, folder[:-1] + "0")):
                    found[row[0]] = StoredDocument(*row)
        return list(found.values())

    def vectors(self, *, batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids, vectors)`` batches of every stored vector, in id order (see
        :meth:`vectors_of` for some ids)."""
        with self._connections.reading() as connection:
            yield from _vectors_between(connection, None, None, batch)

    def all_vectors(self) -> tuple[int, np.ndarray, np.ndarray]:
        """The revision, and every stored vector with its id (ascending), read in one snapshot."""
        with self._connections.reading(snapshot=True) as connection:
            revision = scalar(connection, _REVISION)
            batches = list(_vectors_between(connection, None, None, 20000))
        if not batches:
            return int(revision or 0), np.empty(0, np.int64), np.empty((0, 0), np.float32)
        return int(revision or 0), np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    def vectors_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of those of ``ids`` that exist (the search hot path)."""
        if not len(ids):
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        wanted = [int(i) for i in ids]
        rows: list[tuple[int, bytes]] = []
        with self._connections.reading() as connection:
            for offset in range(0, len(wanted), 900):
                part = wanted[offset : offset + 900]
                marks = ",".join("?" * len(part))
                rows += connection.execute(f"SELECT id, vector FROM chunks WHERE id IN ({marks})", part).fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        return unpack_vectors(rows)

    def vectors_between(self, low: int, high: int, *, batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids, vectors)`` of the chunks with ids in ``[low, high]``, in id order."""
        with self._connections.reading() as connection:
            yield from _vectors_between(connection, low, high, batch)

    def vectors_by_embed_hash(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored vectors (raw float32 bytes) for any of these embed hashes that are already known."""
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        with self._connections.reading() as connection:
            for offset in range(0, len(unique), 500):
                part = unique[offset : offset + 500]
                query = f"SELECT embed_hash, vector FROM chunks WHERE embed_hash IN ({','.join('?' * len(part))})"
                for key, blob in connection.execute(query, part):
                    found.setdefault(key, blob)
        return found

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        """Chunks joined to their documents, in one query, keyed by chunk id (every search ends here)."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if not wanted:
            return {}
        rows = []
        with self._connections.reading() as connection:
            for offset in range(0, len(wanted), 900):
                part = wanted[offset : offset + 900]
                rows += connection.execute(
                    "SELECT c.id, c.document_id, d.path, d.title, d.format, d.metadata, c.text, c.start_line,"
                    " c.end_line, c.page, c.heading FROM chunks c JOIN documents d ON d.id = c.document_id"
                    f" WHERE c.id IN ({','.join('?' * len(part))})",
                    part,
                ).fetchall()
        return {
            row[0]: ChunkRow(
                chunk_id=row[0],
                document_id=row[1],
                path=row[2],
                title=row[3],
                format=row[4],
                metadata=self._metadata(row[5]),
                text=row[6],
                start_line=row[7],
                end_line=row[8],
                page=row[9],
                heading=row[10],
            )
            for row in rows
        }

    def document(self, document_id: int) -> Document | None:
        """The document with this id and all its chunks in order, or ``None``."""
        with self._connections.reading(snapshot=True) as connection:
            row = connection.execute(
                "SELECT id, path, source, title, format, size, indexed_at, metadata FROM documents WHERE id = ?",
                (int(document_id),),
            ).fetchone()
            if row is None:
                return None
            parts = connection.execute(
                "SELECT id, ordinal, text, start_line, end_line, page, char_start, char_end FROM chunks"
                " WHERE document_id = ? ORDER BY ordinal",
                (int(document_id),),
            ).fetchall()
        return Document(
            id=row[0], path=row[1], source=row[2], title=row[3], format=row[4], size=row[5],
            indexed_at=row[6], metadata=self._metadata(row[7]),
            chunks=tuple(DocumentChunk(*part) for part in parts),
        )

    def document_vectors(self, document_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of one document's chunks, in id order."""
        with self._connections.reading() as connection:
            rows = connection.execute(
                "SELECT id, vector FROM chunks WHERE document_id = ? ORDER BY id", (int(document_id),)
            ).fetchall()
        if not rows:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        return unpack_vectors(rows)

    def _metadata(self, stored: str) -> dict[str, Any]:
        try:
            return json.loads(stored)
        except ValueError as error:  # SQLite could read the row, but its bytes were damaged
            raise damaged(self.path, f"unreadable metadata: {error}") from error

    def chunk_documents(self, ids: Sequence[int]) -> dict[int, int]:
        """Map chunk id -> document id."""
        wanted = [int(i) for i in ids]
        found: dict[int, int] = {}
        with self._connections.reading() as connection:
            for offset in range(0, len(wanted), 900):
                part = wanted[offset : offset + 900]
                query = f"SELECT id, document_id FROM chunks WHERE id IN ({','.join('?' * len(part))})"
                found.update(connection.execute(query, part).fetchall())
        return found

    def remembered_chunk_ids(self, where: SearchFilter, *, limit: int | None = None, revision: int) -> np.ndarray | None:
        """What :meth:`filtered_chunk_ids` listed for this filter at this revision, if it still
        remembers; else ``None`` (nothing is read)."""
        cached_revision, lists = self._filtered
        if revision != cached_revision:
            return None
        return lists.get((where.key, limit))

    def filtered_chunk_ids(self, where: SearchFilter, *, limit: int | None = None, revision: int | None = None) -> np.ndarray:
        """Ids of the chunks whose document passes the filter (at most ``limit`` of them).

        Listing them costs about 4 microseconds a chunk (45 ms for 10,000 of a million), and a
        filter is often reused query after query: given the ``revision`` being searched, the
        last few lists are remembered until it changes.
        """
        cached_revision, lists = self._filtered
        if revision is None or revision != cached_revision:
            lists = {}
        key = (where.key, limit)
        if key in lists:
            return lists[key]
        with self._connections.reading() as connection:
            ids = _passing_ids(connection, where, limit)
        ids.flags.writeable = False  # shared by every search of this revision
        if revision is not None:
            lists = {**dict(list(lists.items())[-(FILTERS_KEPT - 1) :]), key: ids}
            self._filtered = (revision, lists)
        return ids

    def passing_chunk_ids(self, where: SearchFilter, ids: Sequence[int], *, revision: int | None = None) -> set[int]:
        """Which of these chunks pass the filter (and still exist).

        Given the ``revision`` being searched, a filter checked before at that revision is
        answered from a bitmap of the chunks passing it (:meth:`filter_members`).
        """
        wanted = [int(i) for i in ids]
        if not wanted:
            return set()
        members = self._members.get(where, revision)
        if members is not None:
            return set(members.passing(wanted).tolist())
        conditions = joined(filter_conditions(where))
        passing: set[int] = set()
        with self._connections.reading() as connection:
            for offset in range(0, len(wanted), 500):
                part = wanted[offset : offset + 500]
                query = (
                    "SELECT chunks.id FROM chunks JOIN documents ON documents.id = chunks.document_id"
                    f" WHERE chunks.id IN ({','.join('?' * len(part))})"
                )
                if conditions.text:
                    query += f" AND {conditions.text}"
                passing.update(row[0] for row in connection.execute(query, (*part, *conditions.parameters)))
        return passing

    def filter_members(self, where: SearchFilter, revision: int | None) -> Members | None:
        """Every chunk passing ``where`` at the ``revision`` being searched, as a bitmap, if a
        search with it at that revision listed them already (else they are listed in the
        background, :mod:`semsearch.filter_members`)."""
        return self._members.get(where, revision)

    def _passing_at_revision(self, where: SearchFilter) -> tuple[int, np.ndarray]:
        """Every chunk passing ``where``, and the revision they were read at (one snapshot)."""
        with self._connections.reading(snapshot=True) as connection:
            revision = scalar(connection, _REVISION)
            return int(revision or 0), _passing_ids(connection, where, None)

    def keyword_search(
        self,
        match: str,
        limit: int,
        where: SearchFilter,
        *,
        weights: tuple[float, float],
        only: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """BM25 over the FTS5 table, best first (see :func:`semsearch.fts.search`)."""
        with self._connections.reading() as connection:
            return fts.search(connection, match, limit, where, weights=weights, only=only)

    def keyword_statistics(self, words: Sequence[str], *, revision: int | None = None) -> fts.TermStatistics:
        """Row count, average row length, and the words' tokens with how many rows hold each.

        Given the ``revision`` being searched, token counts are remembered until it changes (a
        common word costs a scan of its postings to count; a server asks for it again and again).
        """
        cached_revision, counts = self._token_rows
        if revision is None or revision != cached_revision or len(counts) > TOKEN_COUNTS_KEPT:
            counts = {}
        tokens = self.keyword_tokens(words)
        with self._connections.reading() as connection:
            stats = fts.statistics(connection, words, counts, tokens)
        if revision is not None:
            counts.update(stats.rows_with)
            self._token_rows = (revision, counts)
        return stats

    def keyword_postings(self, max_tokens: int) -> fts.RawPostings | None:
        """The keyword index's postings and the revision they belong to, read in one snapshot;
        ``None`` if it holds more than ``max_tokens`` tokens (see :mod:`semsearch.postings`)."""
        with self._connections.reading(snapshot=True) as connection:
            return fts.read_postings(connection, int(scalar(connection, _REVISION) or 0), max_tokens)

    def keyword_postings_change(
        self, ids: np.ndarray, lengths: np.ndarray, max_tokens: int, most_changed: int
    ) -> fts.PostingsChange | None:
        """What changed in the keyword index since a copy of its postings holding rows ``ids``
        (of these ``lengths``) was read, with the revision, in one snapshot; ``None`` if it now holds more than
        ``max_tokens`` tokens or more than ``most_changed`` rows changed (see
        :func:`semsearch.fts.read_postings_change`)."""
        with self._connections.reading(snapshot=True) as connection:
            revision = int(scalar(connection, _REVISION) or 0)
            return fts.read_postings_change(connection, revision, ids, lengths, max_tokens, most_changed)

    def keyword_tokens(self, words: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Each word's FTS5 tokens (see :func:`semsearch.fts.query_tokens`). The tokenizer never
        changes, so words seen before are answered from memory (up to :data:`WORDS_KEPT`)."""
        known = self._word_tokens
        missing = [word for word in dict.fromkeys(words) if word not in known]
        found: dict[str, tuple[str, ...]] = {}
        if missing:
            with self._connections.reading() as connection:
                found = fts.query_tokens(connection, missing)
        tokens = {word: found[word] if word in found else known[word] for word in words}
        if found:
            if len(known) + len(found) > WORDS_KEPT:
                known = self._word_tokens = {}
            known.update(found)
        return tokens

    def keyword_row_tokens(self, ids: Sequence[int], tokens: Sequence[str]) -> dict[int, fts.RowTokens]:
        """Rows' lengths in tokens and how often each of ``tokens`` occurs in each column."""
        with self._connections.reading() as connection:
            return fts.row_tokens(connection, ids, tokens)

    # -- checks (semsearch verify) --------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """What SQLite's own integrity check finds (nothing for a sound file)."""
        with self._connections.reading() as connection:
            rows = [row[0] for row in connection.execute("PRAGMA integrity_check").fetchall()]
        return [] if rows == ["ok"] else rows

    def fts_consistent(self) -> bool:
        """FTS5's integrity check, against the chunks it indexes (external content)."""
        with self._connections.reading() as connection:
            try:  # a failed check is an answer, not an error to type
                connection.execute("INSERT INTO chunk_fts(chunk_fts, rank) VALUES ('integrity-check', 1)")
                return True
            except sqlite3.DatabaseError:
                return False
            finally:
                connection.rollback()

    def metadata_index_consistent(self) -> bool:
        """Whether document_meta holds exactly what the documents' metadata says."""
        derived = "SELECT d.id, j.key, j.value, j.type FROM documents d, json_each(d.metadata) j"
        stored = "SELECT document_id, key, value, type FROM document_meta"
        with self._connections.reading(snapshot=True) as connection:
            for first, second in ((derived, stored), (stored, derived)):
                if scalar(connection, f"SELECT EXISTS ({first} EXCEPT {second})"):
                    return False
        return True

    def chunk_ids(self) -> np.ndarray:
        with self._connections.reading() as connection:
            ids = [row[0] for row in connection.execute("SELECT id FROM chunks ORDER BY id")]
        return np.asarray(ids, dtype=np.int64)

    def chunks_with_wrong_vector_size(self, dimension: int) -> list[int]:
        with self._connections.reading() as connection:
            return [
                row[0]
                for row in connection.execute(
                    "SELECT id FROM chunks WHERE typeof(vector) != 'blob' OR length(vector) != ? ORDER BY id",
                    (dimension * 4,),
                )
            ]

    def rebuild_fts(self) -> None:
        """Rebuild the keyword index from the chunks (the caller holds the write lock)."""
        with self._writes().begin() as connection:
            connection.exec_driver_sql("INSERT INTO chunk_fts(chunk_fts) VALUES ('rebuild')")

    def rebuild_metadata_index(self) -> None:
        """Rebuild document_meta from the documents' metadata (the caller holds the write lock)."""
        with self._writes().begin() as connection:
            connection.exec_driver_sql("DELETE FROM document_meta")
            connection.exec_driver_sql(
                "INSERT INTO document_meta(document_id, key, value, type) "
                "SELECT d.id, j.key, j.value, j.type FROM documents d, json_each(d.metadata) j"
            )

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            candidate = self.path.with_name(self.path.name + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total

    # -- writes -------------------------------------------------------------------------------

    def on_commit(
        self, before: Callable[[Writer], None] | None, after: Callable[[Writer], None] | None = None
    ) -> None:
        """Run ``before(writer)`` at the end of every write transaction, just before it commits,
        and ``after(writer)`` once it has committed.

        The vector store writes the transaction's segment file in ``before`` and records it
        through the writer, so chunks and their vectors change in one commit or not at all; in
        ``after`` it deletes the files of segments the commit retired.
        """
        self._before_commit = before
        self._after_commit = after

    @contextmanager
    def writing(self) -> Iterator[Writer]:
        """One write transaction (:class:`semsearch.writer.Writer`); if it changed chunks or
        segments the revision goes up by one."""
        from semsearch.writer import Writer

        with self._writes().begin() as connection:
            writer = Writer(connection)
            yield writer
            if self._before_commit is not None:
                self._before_commit(writer)
            writer._finish()
        if self._after_commit is not None:
            self._after_commit(writer)

    # -- the vector side ----------------------------------------------------------------------

    def vector_state(self) -> VectorState:
        """Revision, live segments and tombstones, consistent with each other (one snapshot)."""
        with self._connections.reading(snapshot=True) as connection:
            values = dict(
                connection.execute(
                    "SELECT key, value FROM settings WHERE key IN ('revision', 'vectors_rebuild', 'vector_index')"
                ).fetchall()
            )
            records = tuple(
                SegmentRecord(*row)
                for row in connection.execute("SELECT name, kind, count, min_id, max_id FROM segments ORDER BY min_id")
            )
            dead = connection.execute("SELECT chunk_id FROM tombstones").fetchall()
        return VectorState(
            revision=int(values.get("revision", 0)),
            segments=records,
            tombstones=np.fromiter((row[0] for row in dead), dtype=np.int64, count=len(dead)),
            rebuild="vectors_rebuild" in values,
            kind=values.get("vector_index", "auto"),
        )

    def has_chunks(self) -> bool:
        with self._connections.reading() as connection:
            return scalar(connection, "SELECT EXISTS (SELECT 1 FROM chunks)") == 1


def _vectors_between(
    connection: sqlite3.Connection, low: int | None, high: int | None, batch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    query = "SELECT id, vector FROM chunks"
    parameters: tuple[int, ...] = ()
    if low is not None and high is not None:
        query += " WHERE id BETWEEN ? AND ?"
        parameters = (int(low), int(high))
    cursor = connection.execute(query + " ORDER BY id", parameters)
    while rows := cursor.fetchmany(batch):
        yield unpack_vectors(rows)


def _passing_ids(connection: sqlite3.Connection, where: SearchFilter, limit: int | None) -> np.ndarray:
    allowed = allowed_documents(where)
    query = f"SELECT chunks.id FROM chunks WHERE chunks.document_id IN ({allowed.text})"
    parameters: tuple[Any, ...] = allowed.parameters
    if limit is not None:
        query += " LIMIT ?"
        parameters += (int(limit),)
    return np.fromiter((row[0] for row in connection.execute(query, parameters).fetchall()), dtype=np.int64)
