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
    column,
    create_engine,
    delete,
    event,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import OperationalError

from semsearch.errors import (
    IndexDamagedError,
    IndexLockedError,
    SchemaTooNewError,
    SemsearchError,
    StorageError,
)
from semsearch.filters import allowed_documents, filter_conditions
from semsearch.schema import chunks, documents, segments, settings, tombstones
from semsearch.types import ChunkDraft, SearchFilter

DATABASE_NAME = "semsearch.db"
FTS_TOKENIZER = "porter unicode61 remove_diacritics 2"  # as migration 0001 made chunk_fts
SCHEMA_HEAD = "0005"  # the newest migration in migrations/versions/
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
        self._engine = create_engine(f"sqlite:///{path}", future=True)
        event.listen(self._engine, "connect", _configure_connection)
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
        """
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
        """Chunks joined to their documents, in one query, keyed by chunk id."""
        if not ids:
            return {}
        query = (
            select(
                chunks.c.id,
                chunks.c.document_id,
                documents.c.path,
                documents.c.title,
                documents.c.format,
                documents.c.metadata,
                chunks.c.text,
                chunks.c.start_line,
                chunks.c.end_line,
                chunks.c.page,
            )
            .join(documents, documents.c.id == chunks.c.document_id)
            .where(chunks.c.id.in_(list(ids)))
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
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
            )
            for row in rows
        }

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

    def filtered_chunk_ids(self, where: SearchFilter, *, limit: int | None = None) -> np.ndarray:
        """Ids of the chunks whose document passes the filter (at most ``limit`` of them)."""
        query = select(chunks.c.id).where(chunks.c.document_id.in_(allowed_documents(where)))
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as connection:
            ids = connection.execute(query).scalars().all()
        return np.asarray(ids, dtype=np.int64)

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
        """BM25 over the FTS5 table: ``(chunk_id, score)``, best first (higher is better).

        ``match`` is an FTS5 query string; ``weights`` are the BM25 column weights for
        (context, text); ``only`` restricts the search to these chunk ids (hybrid search scores
        the chunks only the semantic side found this way).
        """
        fts = table("chunk_fts", column("rowid"))
        fts_name = literal_column("chunk_fts")
        rank = func.bm25(fts_name, weights[0], weights[1]).label("rank")
        query = select(fts.c.rowid, rank).select_from(fts).where(fts_name.op("MATCH")(match))
        if not where.empty:
            # Match first, then look each matching chunk's document up and test the filter: the
            # cost follows the matches. (Listing the allowed chunks first costs as many as the
            # filter allows: 0.4 s a query at 100k chunks with a filter passing half of them.)
            query = (
                query.join(chunks, chunks.c.id == fts.c.rowid)
                .join(documents, documents.c.id == chunks.c.document_id)
                .where(*filter_conditions(where))
            )
        if only is not None:
            # "rowid + 0", not "rowid": a bare rowid IN (...) makes SQLite seek FTS5 once per id,
            # 60-170 times slower than matching once and filtering.
            query = query.where((fts.c.rowid + 0).in_([int(i) for i in only]))
        query = query.order_by(rank).limit(limit)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [(int(row[0]), -float(row[1])) for row in rows]

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

    def common_terms(self, terms: Sequence[str], total: int) -> set[str]:
        """The query words found in at least half of ``total`` chunks.

        FTS5's BM25 gives such a word no weight (its IDF, log((N - n + 0.5) / (n + 0.5)), is at
        most 0 and clamped to 1e-6), so it cannot change a ranking, yet matching it means reading
        a posting for most of the index. Words are stemmed by FTS5 itself, so they are counted
        exactly as chunk_fts indexed them.
        """
        if not terms or total <= 0:
            return set()
        with self._engine.connect() as connection:
            connection.exec_driver_sql("DELETE FROM temp.query_words")
            connection.exec_driver_sql(
                "INSERT INTO temp.query_words(rowid, word) VALUES (?, ?)", list(enumerate(terms, start=1))
            )
            rows = connection.exec_driver_sql(
                "SELECT q.doc, coalesce(c.doc, 0) FROM temp.query_terms q "
                "LEFT JOIN temp.chunk_terms c ON c.term = q.term"
            ).all()
            connection.commit()
        counts: dict[int, list[int]] = {}
        for position, found in rows:
            counts.setdefault(int(position), []).append(int(found))
        return {
            terms[position - 1]
            for position, found in counts.items()
            if found and min(found) * 2 >= total
        }

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
        with self._engine.connect() as connection, connection.begin():
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
    # For Store.common_terms: a scratch FTS5 table (in memory) that stems query words exactly as
    # chunk_fts does, and the two tables' vocabularies.
    cursor.execute(f"CREATE VIRTUAL TABLE temp.query_words USING fts5(word, tokenize='{FTS_TOKENIZER}')")
    cursor.execute("CREATE VIRTUAL TABLE temp.query_terms USING fts5vocab(temp, 'query_words', 'instance')")
    cursor.execute("CREATE VIRTUAL TABLE temp.chunk_terms USING fts5vocab(main, 'chunk_fts', 'row')")
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


