"""The store's write side, through SQLAlchemy: schema migrations (Alembic) and write transactions.

Imported only when something is written or the schema is old (:meth:`semsearch.store.Store.writing`),
so that a search never pays for importing SQLAlchemy. Its connections are made by
:func:`semsearch.database.connect`, like the readers'; SQLite's complaints about the file become
the same typed errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.pool import QueuePool

from semsearch.database import storage_error
from semsearch.errors import SchemaTooNewError
from semsearch.rows import HEADING_SEPARATOR, NewChunk, NewDocument, SegmentRecord, unpack_vectors
from semsearch.schema import chunks, documents, segments, settings, tombstones


def write_engine(path: Path, connect: Callable[[], Any], interrupted: Callable[[], bool]) -> Engine:
    """A SQLAlchemy engine over the database at ``path`` whose connections ``connect`` makes.

    A failing statement raises the typed error for SQLite's complaints about the file itself,
    wherever in a command the damage or the full disk is first noticed; a Ctrl-C that SQLite
    swallowed inside a function of ours (``interrupted``) becomes Ctrl-C again.
    """
    # URL.create keeps the path as it is: in a "sqlite:///..." string, a folder named "a?b"
    # or "100%41" would be read as a query string or a percent-escape.
    engine = create_engine(URL.create("sqlite", database=str(path)), creator=connect, poolclass=QueuePool)

    def raise_typed_error(context: ExceptionContext) -> None:
        if interrupted():
            raise KeyboardInterrupt
        error = storage_error(context.original_exception, path)
        if error is not None:
            raise error from context.original_exception

    event.listen(engine, "handle_error", raise_typed_error)
    return engine


def migrate(engine: Engine, migrations: Path, folder: Path) -> None:
    """Bring the database to the newest schema with Alembic (it knows which migrations to run)."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations))
    script = ScriptDirectory.from_config(config)
    heads = set(script.get_heads())
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    if current == heads:
        return
    known = {rev.revision for rev in script.walk_revisions()}
    if current - known:
        raise SchemaTooNewError(
            f"the index at {folder} was written by a newer semsearch "
            f"(schema {', '.join(sorted(current))}); upgrade semsearch to use it"
        )
    from alembic import command

    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def vectors_between(
    connection: Connection, low: int | None, high: int | None, batch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(ids, vectors)`` batches of the live chunks with ids in ``[low, high]`` (all of them
    when not given), in id order, as this connection sees them."""
    query = select(chunks.c.id, chunks.c.vector).order_by(chunks.c.id)
    if low is not None and high is not None:
        query = query.where(chunks.c.id.between(low, high))
    result = connection.execute(query)
    while rows := result.fetchmany(batch):
        yield unpack_vectors(rows)


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
        self._documents_moved = False  # a renamed file: what path and type filters pass changes
        self.retired: list[str] = []  # segment files this transaction drops: deleted once it commits
        self.revision = 0  # the revision this transaction commits as

    @property
    def added(self) -> list[int]:
        return list(self._added)

    @property
    def changed(self) -> bool:
        """Whether this transaction changes what a search can find (or where a hit says it is)."""
        return bool(self._added or self.removed or self._segments_changed or self._documents_moved)

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
        yield from vectors_between(self._connection, low, high, batch)

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
        self._documents_moved = True
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
