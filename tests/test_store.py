"""The SQLite store: migrations from empty, model/migration agreement, refusing newer schemas,
and an installed (wheel) copy of the package migrating a new database."""

from __future__ import annotations

import os
import subprocess
import sys
import sqlite3
import zipfile
from pathlib import Path

import pytest

from semsearch.errors import IndexDamagedError, SchemaTooNewError
from semsearch.store import SCHEMA_HEAD, Store
from conftest import database_at

REPO = Path(__file__).resolve().parent.parent


def test_migrating_an_empty_database_creates_every_table(tmp_path):
    store = Store(tmp_path / "s.db")
    assert store.schema_revision() is not None
    store.close()
    with sqlite3.connect(tmp_path / "s.db") as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert {"settings", "documents", "chunks", "chunk_fts", "alembic_version"} <= names
    assert {"chunks_fts_insert", "chunks_fts_delete", "chunks_fts_update"} <= names
    assert mode == "wal"


def test_reopening_is_idempotent(tmp_path):
    Store(tmp_path / "s.db").close()
    store = Store(tmp_path / "s.db")
    assert store.document_count() == 0
    store.close()


def test_schema_models_match_migrations(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    from semsearch.schema import metadata

    Store(tmp_path / "s.db").close()
    engine = create_engine(f"sqlite:///{tmp_path / 's.db'}")
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"include_name": lambda name, kind, parent: not (name or "").startswith("chunk_fts")},
        )
        differences = compare_metadata(context, metadata)
    engine.dispose()
    assert differences == []


def test_schema_head_constant_is_the_newest_migration():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from semsearch.store import SCHEMA_HEAD, _migrations_dir

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    assert ScriptDirectory.from_config(config).get_heads() == [SCHEMA_HEAD]


def test_newer_schema_is_refused(tmp_path):
    Store(tmp_path / "s.db").close()
    with sqlite3.connect(tmp_path / "s.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(SchemaTooNewError, match="newer semsearch"):
        Store(tmp_path / "s.db")


def test_fts_follows_chunk_writes(tmp_path):
    import numpy as np

    from semsearch.rows import NewChunk
    from semsearch.types import ChunkDraft, SearchFilter

    store = Store(tmp_path / "s.db")
    draft = ChunkDraft(0, "running foxes jumped", 0, 20, 1, 1, None, 3)
    chunk = NewChunk(draft=draft, context="Foxes", embed_hash="h", vector=np.ones(4, np.float32))
    with store.writing() as writer:
        doc_id = writer.write_document(path="/a.txt", source="file", content_hash="x", size=1, mtime_ns=1,
                                       title="Foxes", format="text", metadata={}, new_chunks=[chunk],
                                       ingest_version=1)
    hits = store.keyword_search('"run"', 5, SearchFilter(), weights=(1.0, 1.0))  # stemmed match
    assert [chunk_id for chunk_id, _ in hits] == writer.added
    with store.writing() as writer:
        writer.delete_document(doc_id)
    assert store.keyword_search('"run"', 5, SearchFilter(), weights=(1.0, 1.0)) == []
    assert store.revision() == 2
    store.close()


@pytest.mark.slow
def test_installed_wheel_ships_and_runs_the_migrations(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path / "wheel"), str(REPO)],
        check=True,
        capture_output=True,
    )
    wheel = next((tmp_path / "wheel").glob("semsearch-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "semsearch/migrations/env.py" in names
    assert "semsearch/migrations/script.py.mako" in names
    assert any(n.startswith("semsearch/migrations/versions/0001") for n in names)
    # A wheel is a zip of the installed layout: unpack it and use it instead of the source tree.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import sys, semsearch, semsearch.store as s; from pathlib import Path;"
        f"assert semsearch.__file__.startswith({str(site)!r}), semsearch.__file__;"
        "st = s.Store(Path(sys.argv[1])); print(st.schema_revision())"
    )
    environment = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "new.db")],
        capture_output=True, text=True, env=environment, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == SCHEMA_HEAD


def test_upgrading_a_populated_0001_database_keeps_everything(tmp_path):
    """An index written by the first schema opens with today's code: nothing is lost, and its
    documents are marked as written by ingest version 1 (so they will be processed again)."""
    path = database_at(tmp_path / "old.db", "0001")
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute(
            "INSERT INTO documents(path, source, content_hash, size, mtime_ns, title, format, metadata, indexed_at) "
            "VALUES ('/a.txt', 'file', 'h', 1, 1, 'A', 'text', '{}', 'then')"
        )
        connection.execute(
            "INSERT INTO chunks(document_id, ordinal, text, context, char_start, char_end, start_line, end_line, "
            "page, tokens, embed_hash, vector) VALUES (1, 0, 'badgers dig setts', 'A', 0, 17, 1, 1, NULL, 3, 'e', x'00')"
        )
    store = Store(path)
    assert store.schema_revision() == SCHEMA_HEAD
    assert [(d.path, d.ingest_version) for d in store.documents()] == [("/a.txt", 1)]
    assert store.chunk_count() == 1
    from semsearch.types import SearchFilter

    assert len(store.keyword_search('"badger"', 5, SearchFilter(), weights=(1.0, 1.0))) == 1
    store.close()


def test_a_file_that_is_not_a_database_raises_a_typed_error(tmp_path):
    path = tmp_path / "semsearch.db"
    path.write_text("These are my notes, not a database.\n")
    with pytest.raises(IndexDamagedError, match=f"the index at {tmp_path} is damaged \\(file is not a database\\)"):
        Store(path)


def test_damaged_metadata_raises_a_typed_error(tmp_path, fake_embedder):
    import semsearch

    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(["Comets have icy tails."], ids=["comet"], metadata={"topic": "space"})
        with sqlite3.connect(tmp_path / "idx" / "semsearch.db") as connection:
            connection.execute("UPDATE documents SET metadata = '{\"topic\": \"sp'")
        with pytest.raises(IndexDamagedError, match="is damaged"):
            engine.search("comets", limit=1)
        with pytest.raises(IndexDamagedError, match="is damaged"):
            engine.search("comets", limit=1, metadata={"topic": "space"})


def test_a_reader_sees_the_revision_and_the_segments_of_one_commit(tmp_path, fake_embedder):
    """vector_state (and the copies read into memory) read in one snapshot: a commit landing
    between two of its reads is not seen by the second."""
    import semsearch
    from semsearch.database import scalar

    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(["one note about herons"], ids=["a"])
        store = engine._store
        with store._connections.reading(snapshot=True) as connection:
            before = scalar(connection, "SELECT value FROM settings WHERE key = 'revision'")
            engine.add_texts(["another note about kestrels"], ids=["b"])  # another connection commits
            again = scalar(connection, "SELECT value FROM settings WHERE key = 'revision'")
            segments = scalar(connection, "SELECT count(*) FROM segments")
        assert again == before
        state = store.vector_state()
        assert state.revision == int(before) + 1 and len(state.segments) == segments + 1
