"""SQLite storage through SQLAlchemy: documents, chunks, vectors and settings, schema by Alembic.

The only module (with :mod:`semsearch.schema` and the migrations) that imports SQLAlchemy or Alembic.
Every write goes through :meth:`Store.writing`: one transaction that records which chunks it added
and removed (its net change), lets the vector store record its segment files in the same
transaction (:meth:`Store.on_commit`), and bumps the ``revision`` setting that readers watch.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Connection,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.exc import OperationalError

from semsearch import fts
from semsearch.errors import (
    IndexDamagedError,
    IndexLockedError,
    SchemaTooNewError,
    SemsearchError,
    StorageError,
)
from semsearch.filters import allowed_documents, filter_conditions
from semsearch.schema import chunks, documents, segments, settings, tombstones
from semsearch.types import ChunkDraft, Document, DocumentChunk, SearchFilter

SCHEMA_HEAD = "0007"  # the newest migration in migrations/versions/
HEADING_SEPARATOR = " › "  # between the headings of a chunk's heading path, and after its title in its context
TOKEN_COUNTS_KEPT = 100_000  # keyword_statistics forgets its counts past this many tokens
WORDS_KEPT = 100_000  # keyword_tokens forgets the words it tokenised past this many
FILTERS_KEPT = 8  # filtered_chunk_ids remembers the chunk ids of this many filters
BUSY_TIMEOUT_MS = 30_000  # how long a statement waits for another process's lock before failing


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


def _migrations_dir() -> Path:
    import semsearch.migrations

    return Path(semsearch.migrations.__file__).parent


class Store:
    """One SQLite database file, migrated to the current schema when opened."""

    def __init__(self, path: Path, *, migrate: bool = True) -> None:
        self.path = path
        # URL.create keeps the path as it is: in a "sqlite:///..." string, a folder named "a?b"
        # or "100%41" would be read as a query string or a percent-escape.
        self._engine = create_engine(URL.create("sqlite", database=str(path)), future=True)
        event.listen(self._engine, "connect", _configure_connection)
        self._token_rows: tuple[int | None, dict[str, int]] = (None, {})  # see keyword_statistics
        self._word_tokens: dict[str, tuple[str, ...]] = {}  # see keyword_tokens
        self._filtered: tuple[int | None, dict[tuple[SearchFilter, int | None], np.ndarray]] = (None, {})
        self._before_commit: Callable[[Writer], None] | None = None
        self._after_commit: Callable[[Writer], None] | None = None
        event.listen(self._engine, "handle_error", self._raise_typed_error)
        if migrate:
            self._migrate()

    # -- schema -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        # The common case, an index already at the current schema, is answered without importing
        # Alembic (~0.15 s of every CLI call); tests/test_store.py checks SCHEMA_HEAD is the head.
        if self.schema_revision() == SCHEMA_HEAD:
            return
        from alembic.config import Config
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(_migrations_dir()))
        script = ScriptDirectory.from_config(config)
        heads = set(script.get_heads())
        with self._engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
        if current == heads:
            return
        known = {rev.revision for rev in script.walk_revisions()}
        if current - known:
            raise SchemaTooNewError(
                f"the index at {self.path.parent} was written by a newer semsearch "
                f"(schema {', '.join(sorted(current))}); upgrade semsearch to use it"
            )
        from alembic import command

        with self._engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def _raise_typed_error(self, context: ExceptionContext) -> None:
        """Raise a typed error, saying what to do, for SQLite's complaints about the file itself.

        Every statement and connection of this store passes here on failure, wherever in a
        command the damage or the full disk is first noticed; anything else goes on as it was.
        A Ctrl-C that SQLite swallowed inside a function of ours becomes Ctrl-C again.
        """
        if fts.take_interrupt():
            raise KeyboardInterrupt
        error = _storage_error(context.original_exception, self.path)
        if error is not None:
            raise error from context.original_exception

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (``None`` before the first migration)."""
        with self._engine.connect() as connection:
            try:
                return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
            except OperationalError:  # no alembic_version table yet: a new database
                return None

    def close(self) -> None:
        self._engine.dispose()

    # -- settings -----------------------------------------------------------------------------

    def settings(self) -> dict[str, str]:
        with self._engine.connect() as connection:
            return dict(connection.execute(select(settings.c.key, settings.c.value)).all())

    def revision(self) -> int:
        """The revision of the chunks and segments; every search reads it, so it is plain SQL."""
        with self._engine.connect() as connection:
            value = connection.exec_driver_sql("SELECT value FROM settings WHERE key = 'revision'").scalar()
        return int(value or 0)

    # -- reads --------------------------------------------------------------------------------

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A connection whose reads all see one committed state. Python's sqlite3 begins a
        transaction only before a write, so each SELECT would otherwise see the latest commit:
        a writer committing between two reads could pair one revision with another's data."""
        with self._engine.connect() as connection:
            connection.exec_driver_sql("BEGIN")
            try:
                yield connection
            finally:
                connection.rollback()

    def document_count(self) -> int:
        with self._engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(documents)).scalar_one()

    def chunk_count(self) -> int:
        with self._engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(chunks)).scalar_one()

    def documents(self, *, source: str | None = None) -> list[StoredDocument]:
        query = select(*_DOCUMENT_COLUMNS)
        if source is not None:
            query = query.where(documents.c.source == source)
        with self._engine.connect() as connection:
            return [StoredDocument(*row) for row in connection.execute(query)]

    def documents_at(self, paths: Sequence[str]) -> dict[str, StoredDocument]:
        """The stored documents at these paths (or text ids), by path: an index lookup per path."""
        found: dict[str, StoredDocument] = {}
        unique = list(dict.fromkeys(paths))
        with self._engine.connect() as connection:
            for offset in range(0, len(unique), 500):
                part = unique[offset : offset + 500]
                for row in connection.execute(select(*_DOCUMENT_COLUMNS).where(documents.c.path.in_(part))):
                    found[row[1]] = StoredDocument(*row)
        return found

    def documents_under(self, paths: Sequence[str]) -> list[StoredDocument]:
        """Documents at these paths or anywhere under them (as folders): index range scans, so the
        cost follows what matches, not the size of the index."""
        found: dict[int, StoredDocument] = {}
        with self._engine.connect() as connection:
            for path in dict.fromkeys(paths):
                folder = path.rstrip("/") + "/"
                # Everything under "a/b/" sorts between "a/b/" and "a/b0" ("0" follows "/").
                query = select(*_DOCUMENT_COLUMNS).where(
                    or_(
                        documents.c.path == path,
                        (documents.c.path >= folder) & (documents.c.path < folder[:-1] + "0"),
                    )
                )
                for row in connection.execute(query):
                    found[row[0]] = StoredDocument(*row)
        return list(found.values())

    def vectors(self, *, batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids, vectors)`` batches of every stored vector, in id order (see
        :meth:`vectors_of` for some ids)."""
        with self._engine.connect() as connection:
            yield from _vectors_between(connection, None, None, batch)

    def all_vectors(self) -> tuple[int, np.ndarray, np.ndarray]:
        """The revision, and every stored vector with its id (ascending), read in one snapshot."""
        with self._snapshot() as connection:
            revision = connection.exec_driver_sql("SELECT value FROM settings WHERE key = 'revision'").scalar()
            batches = list(_vectors_between(connection, None, None, 20000))
        if not batches:
            return int(revision or 0), np.empty(0, np.int64), np.empty((0, 0), np.float32)
        return int(revision or 0), np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])

    def vectors_of(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of those of ``ids`` that exist: the search hot path, so plain SQL."""
        if not len(ids):
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        wanted = [int(i) for i in ids]
        rows: list[tuple[int, bytes]] = []
        with self._engine.connect() as connection:
            for offset in range(0, len(wanted), 900):
                part = wanted[offset : offset + 900]
                marks = ",".join("?" * len(part))
                rows += connection.exec_driver_sql(f"SELECT id, vector FROM chunks WHERE id IN ({marks})", tuple(part)).all()
        if not rows:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        return _unpack(rows)

    def vectors_between(self, low: int, high: int, *, batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids, vectors)`` of the chunks with ids in ``[low, high]``, in id order."""
        with self._engine.connect() as connection:
            yield from _vectors_between(connection, low, high, batch)

    def vectors_by_embed_hash(self, hashes: Sequence[str]) -> dict[str, bytes]:
        """Stored vectors (raw float32 bytes) for any of these embed hashes that are already known."""
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(hashes))
        with self._engine.connect() as connection:
            for offset in range(0, len(unique), 500):
                part = unique[offset : offset + 500]
                for key, blob in connection.execute(
                    select(chunks.c.embed_hash, chunks.c.vector).where(chunks.c.embed_hash.in_(part))
                ):
                    found.setdefault(key, blob)
        return found

    def chunk_rows(self, ids: Sequence[int]) -> dict[int, ChunkRow]:
        """Chunks joined to their documents, in one query, keyed by chunk id (every search ends
        here, so plain SQL: building the statement with SQLAlchemy cost more than running it)."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if not wanted:
            return {}
        rows = []
        with self._engine.connect() as connection:
            for offset in range(0, len(wanted), 900):
                part = wanted[offset : offset + 900]
                rows += connection.exec_driver_sql(
                    "SELECT c.id, c.document_id, d.path, d.title, d.format, d.metadata, c.text, c.start_line,"
                    " c.end_line, c.page, c.heading FROM chunks c JOIN documents d ON d.id = c.document_id"
                    f" WHERE c.id IN ({','.join('?' * len(part))})",
                    tuple(part),
                ).all()
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
        with self._engine.connect() as connection:
            row = connection.execute(
                select(
                    documents.c.id, documents.c.path, documents.c.source, documents.c.title, documents.c.format,
                    documents.c.size, documents.c.indexed_at, documents.c.metadata,
                ).where(documents.c.id == int(document_id))
            ).first()
            if row is None:
                return None
            parts = connection.execute(
                select(
                    chunks.c.id, chunks.c.ordinal, chunks.c.text, chunks.c.start_line, chunks.c.end_line,
                    chunks.c.page, chunks.c.char_start, chunks.c.char_end,
                )
                .where(chunks.c.document_id == int(document_id))
                .order_by(chunks.c.ordinal)
            ).all()
        return Document(
            id=row[0], path=row[1], source=row[2], title=row[3], format=row[4], size=row[5],
            indexed_at=row[6], metadata=self._metadata(row[7]),
            chunks=tuple(DocumentChunk(*part) for part in parts),
        )

    def document_vectors(self, document_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of one document's chunks, in id order."""
        with self._engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT id, vector FROM chunks WHERE document_id = ? ORDER BY id", (int(document_id),)
            ).all()
        if not rows:
            return np.empty(0, np.int64), np.empty((0, 0), np.float32)
        return _unpack(rows)

    def _metadata(self, stored: str) -> dict[str, Any]:
        try:
            return json.loads(stored)
        except ValueError as error:  # SQLite could read the row, but its bytes were damaged
            reason = f"unreadable metadata: {error}"
            raise IndexDamagedError(_DAMAGED.format(folder=self.path.parent, reason=reason)) from error

    def chunk_documents(self, ids: Sequence[int]) -> dict[int, int]:
        """Map chunk id -> document id."""
        if not len(ids):
            return {}
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(chunks.c.id, chunks.c.document_id).where(chunks.c.id.in_([int(i) for i in ids]))
            ).all()
        return dict(rows)

    def remembered_chunk_ids(self, where: SearchFilter, *, limit: int | None = None, revision: int) -> np.ndarray | None:
        """What :meth:`filtered_chunk_ids` listed for this filter at this revision, if it still
        remembers; else ``None`` (nothing is read)."""
        cached_revision, lists = self._filtered
        if revision != cached_revision or not where.hashable:
            return None
        return lists.get((where, limit))

    def filtered_chunk_ids(self, where: SearchFilter, *, limit: int | None = None, revision: int | None = None) -> np.ndarray:
        """Ids of the chunks whose document passes the filter (at most ``limit`` of them).

        Listing them costs about 4 microseconds a chunk (45 ms for 10,000 of a million), and a
        filter is often reused query after query: given the ``revision`` being searched, the
        last few lists are remembered until it changes.
        """
        cached_revision, lists = self._filtered
        if not where.hashable:
            revision = None
        if revision is None or revision != cached_revision:
            lists = {}
        key = (where, limit)
        if key in lists:
            return lists[key]
        query = select(chunks.c.id).where(chunks.c.document_id.in_(allowed_documents(where)))
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as connection:
            result = connection.execute(query)
            ids = np.fromiter((row[0] for row in result.cursor.fetchall()), dtype=np.int64)  # no Row objects
        ids.flags.writeable = False  # shared by every search of this revision
        if revision is not None:
            lists = {**dict(list(lists.items())[-(FILTERS_KEPT - 1) :]), key: ids}
            self._filtered = (revision, lists)
        return ids

    def passing_chunk_ids(self, where: SearchFilter, ids: Sequence[int]) -> set[int]:
        """Which of these chunks pass the filter (and still exist)."""
        if not len(ids):
            return set()
        query = (
            select(chunks.c.id)
            .join(documents, documents.c.id == chunks.c.document_id)
            .where(chunks.c.id.in_([int(i) for i in ids]), *filter_conditions(where))
        )
        with self._engine.connect() as connection:
            return set(connection.execute(query).scalars().all())

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
        with self._engine.connect() as connection:
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
        with self._engine.connect() as connection:
            stats = fts.statistics(connection, words, counts, tokens)
        if revision is not None:
            counts.update(stats.rows_with)
            self._token_rows = (revision, counts)
        return stats

    def keyword_postings(self, max_tokens: int) -> fts.RawPostings | None:
        """The keyword index's postings and the revision they belong to, read in one snapshot;
        ``None`` if it holds more than ``max_tokens`` tokens (see :mod:`semsearch.postings`)."""
        with self._snapshot() as connection:
            revision = connection.exec_driver_sql("SELECT value FROM settings WHERE key = 'revision'").scalar()
            return fts.read_postings(connection, int(revision or 0), max_tokens)

    def keyword_postings_change(
        self, ids: np.ndarray, lengths: np.ndarray, max_tokens: int, most_changed: int
    ) -> fts.PostingsChange | None:
        """What changed in the keyword index since a copy of its postings holding rows ``ids``
        (of these ``lengths``) was read, with the revision, in one snapshot; ``None`` if it now holds more than
        ``max_tokens`` tokens or more than ``most_changed`` rows changed (see
        :func:`semsearch.fts.read_postings_change`)."""
        with self._snapshot() as connection:
            revision = connection.exec_driver_sql("SELECT value FROM settings WHERE key = 'revision'").scalar()
            return fts.read_postings_change(connection, int(revision or 0), ids, lengths, max_tokens, most_changed)

    def keyword_tokens(self, words: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """Each word's FTS5 tokens (see :func:`semsearch.fts.query_tokens`). The tokenizer never
        changes, so words seen before are answered from memory (up to :data:`WORDS_KEPT`)."""
        known = self._word_tokens
        missing = [word for word in dict.fromkeys(words) if word not in known]
        found: dict[str, tuple[str, ...]] = {}
        if missing:
            with self._engine.connect() as connection:
                found = fts.query_tokens(connection, missing)
        tokens = {word: found[word] if word in found else known[word] for word in words}
        if found:
            if len(known) + len(found) > WORDS_KEPT:
                known = self._word_tokens = {}
            known.update(found)
        return tokens

    def keyword_row_tokens(self, ids: Sequence[int], tokens: Sequence[str]) -> dict[int, fts.RowTokens]:
        """Rows' lengths in tokens and how often each of ``tokens`` occurs in each column."""
        with self._engine.connect() as connection:
            return fts.row_tokens(connection, ids, tokens)

    # -- checks (semsearch verify) --------------------------------------------------------------

    def integrity_problems(self) -> list[str]:
        """What SQLite's own integrity check finds (nothing for a sound file)."""
        with self._engine.connect() as connection:
            rows = [row[0] for row in connection.exec_driver_sql("PRAGMA integrity_check").all()]
        return [] if rows == ["ok"] else rows

    def fts_consistent(self) -> bool:
        """FTS5's integrity check, against the chunks it indexes (external content)."""
        raw = self._engine.raw_connection()  # raw: a failed check is an answer, not an error to type
        try:
            raw.execute("INSERT INTO chunk_fts(chunk_fts, rank) VALUES ('integrity-check', 1)")
            return True
        except sqlite3.DatabaseError:
            return False
        finally:
            raw.rollback()
            raw.close()

    def metadata_index_consistent(self) -> bool:
        """Whether document_meta holds exactly what the documents' metadata says."""
        derived = "SELECT d.id, j.key, j.value, j.type FROM documents d, json_each(d.metadata) j"
        stored = "SELECT document_id, key, value, type FROM document_meta"
        with self._engine.connect() as connection:
            for first, second in ((derived, stored), (stored, derived)):
                if connection.exec_driver_sql(f"SELECT EXISTS ({first} EXCEPT {second})").scalar():
                    return False
        return True

    def chunk_ids(self) -> np.ndarray:
        with self._engine.connect() as connection:
            ids = connection.exec_driver_sql("SELECT id FROM chunks ORDER BY id").scalars().all()
        return np.asarray(ids, dtype=np.int64)

    def chunks_with_wrong_vector_size(self, dimension: int) -> list[int]:
        with self._engine.connect() as connection:
            return list(
                connection.exec_driver_sql(
                    "SELECT id FROM chunks WHERE typeof(vector) != 'blob' OR length(vector) != ? ORDER BY id",
                    (dimension * 4,),
                ).scalars()
            )

    def rebuild_fts(self) -> None:
        """Rebuild the keyword index from the chunks (the caller holds the write lock)."""
        with self._engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO chunk_fts(chunk_fts) VALUES ('rebuild')")

    def rebuild_metadata_index(self) -> None:
        """Rebuild document_meta from the documents' metadata (the caller holds the write lock)."""
        with self._engine.begin() as connection:
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
        """One write transaction; if it changed chunks or segments the revision goes up by one."""
        with self._engine.begin() as connection:
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
        with self._snapshot() as connection:
            values = dict(
                connection.execute(
                    select(settings.c.key, settings.c.value).where(
                        settings.c.key.in_(["revision", "vectors_rebuild", "vector_index"])
                    )
                ).all()
            )
            records = tuple(
                SegmentRecord(*row)
                for row in connection.execute(
                    select(segments.c.name, segments.c.kind, segments.c.count, segments.c.min_id, segments.c.max_id)
                    .order_by(segments.c.min_id)
                )
            )
            dead = connection.exec_driver_sql("SELECT chunk_id FROM tombstones").fetchall()
        return VectorState(
            revision=int(values.get("revision", 0)),
            segments=records,
            tombstones=np.fromiter((row[0] for row in dead), dtype=np.int64, count=len(dead)),
            rebuild="vectors_rebuild" in values,
            kind=values.get("vector_index", "auto"),
        )

    def has_chunks(self) -> bool:
        with self._engine.connect() as connection:
            return connection.exec_driver_sql("SELECT EXISTS (SELECT 1 FROM chunks)").scalar() == 1


class Writer:
    """Write operations inside one transaction (see :meth:`Store.writing`).

    It keeps the transaction's *net* change to the set of chunks: a chunk inserted and deleted in
    the same transaction appears in neither :attr:`added` nor :attr:`removed`, so no vector of it
    can reach a segment file.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._added: dict[int, np.ndarray] = {}  # chunk id -> vector, in insertion order
        self.removed: list[int] = []  # chunks that existed before this transaction
        self._transient: list[int] = []  # inserted and deleted here
        self._segments_changed = False
        self.retired: list[str] = []  # segment files this transaction drops: deleted once it commits
        self.revision = 0  # the revision this transaction commits as

    @property
    def added(self) -> list[int]:
        return list(self._added)

    @property
    def changed(self) -> bool:
        """Whether this transaction changes what a search can find."""
        return bool(self._added or self.removed or self._segments_changed)

    def set_settings(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self._set(key, str(value))

    def setting(self, key: str, default: str) -> str:
        value = self._connection.execute(select(settings.c.value).where(settings.c.key == key)).scalar()
        return default if value is None else str(value)

    def delete_setting(self, key: str) -> None:
        self._connection.execute(delete(settings).where(settings.c.key == key))

    def _set(self, key: str, value: str) -> None:
        self._connection.execute(
            text(
                "INSERT INTO settings(key, value) VALUES (:key, :value) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
            ),
            {"key": key, "value": value},
        )

    def _finish(self) -> None:
        if self._transient:  # the delete trigger tombstoned ids that never reached a segment
            for offset in range(0, len(self._transient), 500):
                part = self._transient[offset : offset + 500]
                self._connection.execute(delete(tombstones).where(tombstones.c.chunk_id.in_(part)))
        current = int(
            self._connection.execute(
                select(settings.c.value).where(settings.c.key == "revision")
            ).scalar()
            or 0
        )
        self.revision = current + 1 if self.changed else current
        if self.revision != current:
            self._set("revision", str(self.revision))
            if self._added or self.removed:
                self._set("last_indexed", time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    # -- segments (used by the vector store inside the transaction) ----------------------------

    def segments(self) -> list[SegmentRecord]:
        rows = self._connection.execute(
            select(segments.c.name, segments.c.kind, segments.c.count, segments.c.min_id, segments.c.max_id)
            .order_by(segments.c.min_id)
        )
        return [SegmentRecord(*row) for row in rows]

    def tombstone_counts(self) -> dict[str, int]:
        """Deleted chunks still held by each segment, by segment name."""
        rows = self._connection.exec_driver_sql(
            "SELECT s.name, COUNT(*) FROM tombstones t JOIN segments s "
            "ON t.chunk_id BETWEEN s.min_id AND s.max_id GROUP BY s.name"
        )
        return dict(rows.all())

    def vectors_between(self, low: int, high: int, *, batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Live chunk vectors with ids in ``[low, high]`` as this transaction sees them."""
        yield from _vectors_between(self._connection, low, high, batch)

    def replace_segments(self, drop: Sequence[str], add: Sequence[SegmentRecord]) -> None:
        """Retire segments and record new ones; tombstones in the dropped ranges are cleared.

        The new segments must hold every live chunk of the ranges they replace.
        """
        dropped = self._connection.execute(
            select(segments.c.min_id, segments.c.max_id).where(segments.c.name.in_(list(drop)))
        ).all()
        for low, high in dropped:
            self._connection.execute(delete(tombstones).where(tombstones.c.chunk_id.between(low, high)))
        if drop:
            self._connection.execute(delete(segments).where(segments.c.name.in_(list(drop))))
            self.retired.extend(drop)
        for record in add:
            self._connection.execute(
                segments.insert().values(
                    name=record.name, kind=record.kind, count=record.count, min_id=record.min_id, max_id=record.max_id
                )
            )
        self._segments_changed = self._segments_changed or bool(drop or add)

    def clear_tombstones(self) -> None:
        """Forget every tombstone (a rebuild writes segments of live chunks only)."""
        self._connection.execute(delete(tombstones))
        self._segments_changed = True

    def max_chunk_id(self) -> int:
        return int(self._connection.execute(select(func.max(chunks.c.id))).scalar() or 0)

    def write_document(
        self,
        *,
        path: str,
        source: str,
        content_hash: str,
        size: int,
        mtime_ns: int,
        title: str,
        format: str,
        metadata: dict[str, Any],
        new_chunks: Sequence[NewChunk],
        ingest_version: int,
    ) -> int:
        """Insert or replace the document at ``path`` with these chunks; returns its id."""
        document = NewDocument(
            path=path,
            source=source,
            content_hash=content_hash,
            size=size,
            mtime_ns=mtime_ns,
            title=title,
            format=format,
            metadata=metadata,
            ingest_version=ingest_version,
            chunks=tuple(new_chunks),
        )
        return self.write_documents([document])[0]

    def write_documents(self, batch: Sequence[NewDocument]) -> list[int]:
        """Insert or replace many documents (distinct paths) with their chunks; returns their ids.

        A handful of statements for the whole batch, whatever its size: indexing writes a wave of
        documents at a time, and per-document statements cost more than everything but the model.
        """
        paths = [document.path for document in batch]
        if len(set(paths)) != len(paths):
            raise ValueError("write_documents needs distinct paths; write a repeated path in its own call")
        existing: dict[str, int] = {}
        for offset in range(0, len(paths), 500):
            part = paths[offset : offset + 500]
            existing.update(self._connection.execute(select(documents.c.path, documents.c.id).where(documents.c.path.in_(part))).all())
        if existing:
            self._delete_chunks(list(existing.values()))
        indexed_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        rows = [_document_row(document, indexed_at) for document in batch]
        replaced = [
            {"document_id": existing[row["path"]], **{f"new_{key}": value for key, value in row.items()}}
            for row in rows
            if row["path"] in existing
        ]
        if replaced:
            self._connection.execute(_UPDATE_DOCUMENT, replaced)
        fresh = [row for row in rows if row["path"] not in existing]
        if fresh:
            new_ids = self._connection.execute(
                documents.insert().returning(documents.c.id, sort_by_parameter_order=True), fresh
            ).scalars().all()
            existing.update(zip((row["path"] for row in fresh), new_ids))
        self._index_metadata([existing[path] for path in paths], replaced=bool(replaced))  # filters read it
        chunk_rows = []
        vectors = []
        for document in batch:
            document_id = existing[document.path]
            for chunk in document.chunks:
                chunk_rows.append(_chunk_row(document_id, chunk))
                vectors.append(chunk.vector)
        if chunk_rows:
            ids = self._connection.execute(
                chunks.insert().returning(chunks.c.id, sort_by_parameter_order=True), chunk_rows
            ).scalars().all()
            for chunk_id, vector in zip(ids, vectors):
                self._added[int(chunk_id)] = np.asarray(vector, dtype=np.float32)
        return [int(existing[path]) for path in paths]

    def _index_metadata(self, document_ids: Sequence[int], *, replaced: bool) -> None:
        """Rewrite the document_meta rows of these documents from their metadata JSON."""
        for offset in range(0, len(document_ids), 500):
            part = [int(i) for i in document_ids[offset : offset + 500]]
            marks = ",".join("?" * len(part))
            if replaced:
                self._connection.exec_driver_sql(f"DELETE FROM document_meta WHERE document_id IN ({marks})", tuple(part))
            self._connection.exec_driver_sql(
                "INSERT INTO document_meta(document_id, key, value, type) "
                f"SELECT d.id, j.key, j.value, j.type FROM documents d, json_each(d.metadata) j WHERE d.id IN ({marks})",
                tuple(part),
            )

    def move_document(self, document_id: int, *, path: str, size: int, mtime_ns: int) -> None:
        """Point a document at a new path (a renamed file); its chunks and vectors stay."""
        self._connection.execute(
            update(documents)
            .where(documents.c.id == document_id)
            .values(path=path, size=size, mtime_ns=mtime_ns)
        )

    def touch_document(self, document_id: int, *, size: int, mtime_ns: int) -> None:
        """Record a new size/mtime for a file whose content did not change."""
        self._connection.execute(
            update(documents).where(documents.c.id == document_id).values(size=size, mtime_ns=mtime_ns)
        )

    def delete_document(self, document_id: int) -> None:
        self._delete_chunks([document_id])
        self._connection.execute(delete(documents).where(documents.c.id == document_id))

    def _delete_chunks(self, document_ids: Sequence[int]) -> None:
        ids: list[int] = []
        for offset in range(0, len(document_ids), 500):
            part = list(document_ids[offset : offset + 500])
            found = self._connection.execute(select(chunks.c.id).where(chunks.c.document_id.in_(part))).scalars().all()
            if found:
                self._connection.execute(delete(chunks).where(chunks.c.document_id.in_(part)))
                ids.extend(found)
        if ids:
            for chunk_id in ids:
                if self._added.pop(chunk_id, None) is not None:
                    self._transient.append(chunk_id)
                else:
                    self.removed.append(chunk_id)

    def added_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the chunks this transaction adds and keeps, in id order."""
        if not self._added:
            return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
        ids = np.fromiter(self._added, dtype=np.int64, count=len(self._added))
        order = np.argsort(ids)
        return ids[order], np.stack(list(self._added.values()))[order]


_DOCUMENT_COLUMNS = (
    documents.c.id,
    documents.c.path,
    documents.c.source,
    documents.c.content_hash,
    documents.c.size,
    documents.c.mtime_ns,
    documents.c.title,
    documents.c.format,
    documents.c.ingest_version,
)


_UPDATE_DOCUMENT = (
    update(documents)
    .where(documents.c.id == bindparam("document_id"))
    .values({name: bindparam(f"new_{name}") for name in (
        "path", "source", "content_hash", "size", "mtime_ns", "title", "format", "metadata", "indexed_at",
        "ingest_version",
    )})
)


def _document_row(document: NewDocument, indexed_at: str) -> dict[str, Any]:
    return {
        "path": document.path,
        "source": document.source,
        "content_hash": document.content_hash,
        "size": document.size,
        "mtime_ns": document.mtime_ns,
        "title": document.title,
        "format": document.format,
        "metadata": json.dumps(document.metadata, sort_keys=True, default=str),
        "indexed_at": indexed_at,
        "ingest_version": document.ingest_version,
    }


def _chunk_row(document_id: int, chunk: NewChunk) -> dict[str, Any]:
    return {
        "document_id": document_id,
        "ordinal": chunk.draft.ordinal,
        "text": chunk.draft.text,
        "context": chunk.context,
        "heading": HEADING_SEPARATOR.join(chunk.draft.headings),
        "char_start": chunk.draft.start,
        "char_end": chunk.draft.end,
        "start_line": chunk.draft.start_line,
        "end_line": chunk.draft.end_line,
        "page": chunk.draft.page,
        "tokens": chunk.draft.tokens,
        "embed_hash": chunk.embed_hash,
        "vector": np.ascontiguousarray(chunk.vector, dtype="<f4").tobytes(),
    }
_DAMAGED = (
    "the index at {folder} is damaged ({reason}); move that folder aside and run semsearch index "
    "again to build a new one"
)
_LOCKED = "the index at {folder} is locked by another process ({reason}); try again when it has finished"
_FULL = "the disk holding the index at {folder} is full; free some space and try again"
_UNUSABLE = (
    "cannot use the index database {path} ({reason}); check that you may read and write its "
    "folder, or use another --index"
)
# SQLite's complaints about the database file itself: its primary result code (if it has one of
# its own), words of its message (Python 3.10 gives no code), and the error that says what to do.
_FILE_PROBLEMS = (
    (11, "malformed", IndexDamagedError, _DAMAGED),  # SQLITE_CORRUPT
    (26, "not a database", IndexDamagedError, _DAMAGED),  # SQLITE_NOTADB
    (None, "unsupported file format", IndexDamagedError, _DAMAGED),  # a damaged header
    (None, "malformed JSON", IndexDamagedError, _DAMAGED),  # damaged metadata, met by a filter
    (None, "Could not decode to UTF-8", IndexDamagedError, _DAMAGED),  # damaged text, met by Python
    (5, "database is locked", IndexLockedError, _LOCKED),  # SQLITE_BUSY
    (6, "table is locked", IndexLockedError, _LOCKED),  # SQLITE_LOCKED
    (13, "is full", StorageError, _FULL),  # SQLITE_FULL
    (14, "unable to open", StorageError, _UNUSABLE),  # SQLITE_CANTOPEN
    (8, "readonly", StorageError, _UNUSABLE),  # SQLITE_READONLY
    (10, "I/O error", StorageError, _UNUSABLE),  # SQLITE_IOERR
)


def _storage_error(error: BaseException, path: Path) -> SemsearchError | None:
    """The typed error for a SQLite error about the database file; ``None`` for any other."""
    code = getattr(error, "sqlite_errorcode", None)
    for number, words, kind, message in _FILE_PROBLEMS:
        known = code is not None and number is not None
        if (code & 0xFF == number) if known else (words in str(error)):
            return kind(message.format(folder=path.parent, path=path, reason=error))
    return None


def _configure_connection(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets searches read while an indexer writes; foreign keys make chunk deletes cascade.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    fts.prepare_connection(cursor)  # scratch tables for keyword statistics
    cursor.close()


def _vectors_between(
    connection: Connection, low: int | None, high: int | None, batch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    query = select(chunks.c.id, chunks.c.vector).order_by(chunks.c.id)
    if low is not None and high is not None:
        query = query.where(chunks.c.id.between(low, high))
    result = connection.execute(query)
    while rows := result.fetchmany(batch):
        yield _unpack(rows)


def _unpack(rows: Sequence[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    sizes = {len(row[1]) if isinstance(row[1], bytes) else -1 for row in rows}
    if len(sizes) > 1:  # a damaged vector (semsearch verify names it): leave it out, keep the rest
        common = max(sizes, key=lambda size: sum(1 for row in rows if isinstance(row[1], bytes) and len(row[1]) == size))
        rows = [row for row in rows if isinstance(row[1], bytes) and len(row[1]) == common]
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), -1)
    return ids, vectors.astype(np.float32, copy=False)


