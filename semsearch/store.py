"""SQLite storage through SQLAlchemy: documents, chunks, vectors and settings, schema by Alembic.

The only module (with :mod:`semsearch.schema` and the migrations) that imports SQLAlchemy or Alembic.
Every write goes through :meth:`Store.writing`, one transaction that also bumps the ``revision``
setting, which the FAISS file is stamped with so a stale vector file can be recognised.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Connection,
    and_,
    column,
    create_engine,
    delete,
    event,
    exists,
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
from semsearch.schema import chunks, documents, settings
from semsearch.types import ChunkDraft, SearchFilter

DATABASE_NAME = "semsearch.db"
SCHEMA_HEAD = "0002"  # the newest migration in migrations/versions/
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
        with self._engine.connect() as connection:
            value = connection.execute(
                select(settings.c.value).where(settings.c.key == "revision")
            ).scalar()
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

    def chunk_ids(self) -> np.ndarray:
        with self._engine.connect() as connection:
            ids = connection.execute(select(chunks.c.id).order_by(chunks.c.id)).scalars().all()
        return np.asarray(ids, dtype=np.int64)

    def vectors(self, ids: Sequence[int] | None = None, *, batch: int = 20000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids, vectors)`` batches of stored vectors: all of them, or those of ``ids``."""
        with self._engine.connect() as connection:
            if ids is None:
                result = connection.execute(
                    select(chunks.c.id, chunks.c.vector).order_by(chunks.c.id)
                )
                while rows := result.fetchmany(batch):
                    yield _unpack(rows)
            else:
                wanted = list(ids)
                for offset in range(0, len(wanted), 500):
                    part = wanted[offset : offset + 500]
                    rows = connection.execute(
                        select(chunks.c.id, chunks.c.vector).where(chunks.c.id.in_(part))
                    ).all()
                    if rows:
                        yield _unpack(rows)

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

    def filtered_chunk_ids(self, where: SearchFilter) -> np.ndarray:
        """Ids of every chunk whose document passes the filter."""
        query = select(chunks.c.id).join(documents, documents.c.id == chunks.c.document_id)
        query = query.where(*_filter_conditions(where))
        with self._engine.connect() as connection:
            ids = connection.execute(query).scalars().all()
        return np.asarray(ids, dtype=np.int64)

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
            allowed = (
                select(chunks.c.id)
                .join(documents, documents.c.id == chunks.c.document_id)
                .where(*_filter_conditions(where))
            )
            # "rowid + 0", not "rowid", here and below: a bare rowid IN (...) makes SQLite seek
            # FTS5 once per id, 60-170 times slower than matching once and filtering (SciFact:
            # 1.8 s vs 10 ms per query with a path filter).
            query = query.where((fts.c.rowid + 0).in_(allowed))
        if only is not None:
            query = query.where((fts.c.rowid + 0).in_([int(i) for i in only]))
        query = query.order_by(rank).limit(limit)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [(int(row[0]), -float(row[1])) for row in rows]

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            candidate = self.path.with_name(self.path.name + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total

    # -- writes -------------------------------------------------------------------------------

    @contextmanager
    def writing(self) -> Iterator[Writer]:
        """One write transaction; on success the index revision goes up by one."""
        with self._engine.begin() as connection:
            writer = Writer(connection)
            yield writer
            writer._bump_revision()


class Writer:
    """Write operations inside one transaction (see :meth:`Store.writing`)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.added: list[int] = []
        self.removed: list[int] = []
        self.vectors: list[np.ndarray] = []
        self.revision = 0  # the revision this transaction commits as

    def set_settings(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self._set(key, str(value))

    def _set(self, key: str, value: str) -> None:
        self._connection.execute(
            text(
                "INSERT INTO settings(key, value) VALUES (:key, :value) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
            ),
            {"key": key, "value": value},
        )

    def _bump_revision(self) -> None:
        current = int(
            self._connection.execute(
                select(settings.c.value).where(settings.c.key == "revision")
            ).scalar()
            or 0
        )
        # Only a change to the set of chunks makes the FAISS file stale.
        self.revision = current + 1 if (self.added or self.removed) else current
        if self.revision != current:
            self._set("revision", str(self.revision))
            self._set("last_indexed", time.strftime("%Y-%m-%dT%H:%M:%S%z"))

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
        row = {
            "path": path,
            "source": source,
            "content_hash": content_hash,
            "size": size,
            "mtime_ns": mtime_ns,
            "title": title,
            "format": format,
            "metadata": json.dumps(metadata, sort_keys=True, default=str),
            "indexed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "ingest_version": ingest_version,
        }
        existing = self._connection.execute(
            select(documents.c.id).where(documents.c.path == path)
        ).scalar()
        if existing is None:
            document_id = self._connection.execute(documents.insert().values(**row)).inserted_primary_key[0]
        else:
            document_id = existing
            self._delete_chunks(document_id)
            self._connection.execute(update(documents).where(documents.c.id == document_id).values(**row))
        if new_chunks:
            rows = [
                {
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
                for chunk in new_chunks
            ]
            ids = self._connection.execute(
                chunks.insert().returning(chunks.c.id, sort_by_parameter_order=True), rows
            ).scalars().all()
            self.added.extend(ids)
            self.vectors.append(np.stack([np.asarray(c.vector, dtype=np.float32) for c in new_chunks]))
        return int(document_id)

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
        self._delete_chunks(document_id)
        self._connection.execute(delete(documents).where(documents.c.id == document_id))

    def _delete_chunks(self, document_id: int) -> None:
        ids = self._connection.execute(
            select(chunks.c.id).where(chunks.c.document_id == document_id)
        ).scalars().all()
        if ids:
            self._connection.execute(delete(chunks).where(chunks.c.document_id == document_id))
            self.removed.extend(ids)

    def added_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every chunk added in this transaction."""
        if not self.added:
            return np.empty(0, dtype=np.int64), np.empty((0, 0), dtype=np.float32)
        return np.asarray(self.added, dtype=np.int64), np.concatenate(self.vectors)


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
    cursor.close()


def _unpack(rows: Sequence[tuple[int, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), -1)
    return ids, vectors.astype(np.float32, copy=False)


def _filter_conditions(where: SearchFilter) -> list[Any]:
    conditions: list[Any] = []
    if where.path:
        pattern = where.path
        glob = documents.c.path.op("GLOB")
        conditions.append(glob(pattern) if pattern.startswith("/") else or_(glob(pattern), glob("*/" + pattern)))
    if where.types:
        options = []
        for kind in where.types:
            kind = kind.lower().lstrip(".")
            options.append(documents.c.format == kind)
            options.append(func.lower(documents.c.path).like(f"%.{kind}"))
        conditions.append(or_(*options))
    conditions.extend(_metadata_matches(key, value) for key, value in where.metadata)
    return conditions


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _metadata_matches(key: str, value: Any) -> Any:
    """The document's metadata has ``key`` with this value, compared as text is typed on the CLI.

    ``"3"`` matches the number 3 (and 3.0) as well as the string ``"3"``; ``"true"``, ``"false"``
    and ``"null"`` match those JSON values; a value that is not a string (``3``, ``True``,
    ``None``) is first written as JSON. The key is compared as a name, row by row of
    ``json_each``, so no key (dots, quotes, ``$``) can be read as JSON path syntax.
    """
    wanted = value if isinstance(value, str) else json.dumps(value)
    field = func.json_each(documents.c.metadata).table_valued("key", "value", "type")
    options = [and_(field.c.type == "text", field.c.value == wanted)]
    number = _JSON_NUMBER.fullmatch(wanted)
    if number is not None:
        parsed = float(wanted) if number.group(1) or number.group(2) else int(wanted)
        options.append(and_(field.c.type.in_(("integer", "real")), field.c.value == parsed))
    if wanted.lower() in ("true", "false", "null"):
        options.append(field.c.type == wanted.lower())
    return exists().select_from(field).where(field.c.key == key, or_(*options))
