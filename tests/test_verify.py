"""semsearch verify: a sound index passes; each kind of damage is named, and --repair rebuilds what
is derived from SQLite without embedding anything."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

import semsearch
from semsearch.cli import cli
from vectors_on_disk import segment_files


@pytest.fixture
def indexed(tmp_path, docs, fake_model):
    index = tmp_path / "idx"
    result = CliRunner().invoke(cli, ["--index", str(index), "index", str(docs)])
    assert result.exit_code == 0, result.output
    with semsearch.open(index) as engine:
        birds = ["kites", "owls", "larks", "wrens", "crows"]
        engine.add_texts([f"a note about {bird}" for bird in birds], ids=birds, metadata={"kind": "note", "pages": 2})
        engine.remove("kites")  # a fifth of that segment: it stays, with a tombstone
    with sqlite3.connect(index / "semsearch.db") as connection:
        assert connection.execute("SELECT count(*) FROM tombstones").fetchone()[0] == 1
    return index


def verify(index, *options):
    result = CliRunner().invoke(cli, ["--index", str(index), "verify", "--json", *options])
    return result.exit_code, json.loads(result.output)


def sql(index, statement):
    with sqlite3.connect(index / "semsearch.db") as connection:
        connection.execute(statement)


def test_a_sound_index_passes(indexed):
    code, report = verify(indexed)
    assert code == 0 and report["ok"] and report["chunks"] > 0 and report["problems"] == []
    result = CliRunner().invoke(cli, ["--index", str(indexed), "verify"])
    assert result.exit_code == 0 and result.output.startswith("OK: ")


@pytest.mark.parametrize(
    "damage,part",
    [
        ("delete a segment file", "segments"),
        ("truncate a segment file", "segments"),
        ("forget a tombstone", "segments"),
        ("forget a segment row", "segments"),
        ("damage the keyword index", "keyword index"),
        ("lose a metadata row", "metadata index"),
    ],
)
def test_damage_to_derived_parts_is_found_and_repaired(indexed, fake_model, damage, part):
    if damage == "delete a segment file":
        segment_files(indexed)[0].unlink()
    elif damage == "truncate a segment file":
        path = segment_files(indexed)[0]
        path.write_bytes(path.read_bytes()[:64])
    elif damage == "forget a tombstone":
        sql(indexed, "DELETE FROM tombstones")
    elif damage == "forget a segment row":
        sql(indexed, "DELETE FROM segments WHERE name = (SELECT name FROM segments ORDER BY count DESC LIMIT 1)")
    elif damage == "damage the keyword index":
        sql(indexed, "INSERT INTO chunk_fts(chunk_fts, rowid, context, text) VALUES ('delete', 1, 'x', 'not the text')")
    else:
        sql(indexed, "DELETE FROM document_meta WHERE key = 'kind'")
    code, report = verify(indexed)
    assert code == 1 and not report["ok"]
    assert part in {p["part"] for p in report["problems"]} and all(p["repairable"] for p in report["problems"])
    fake_model.embedded.clear()
    code, report = verify(indexed, "--repair")
    assert code == 0 and report["ok"] and report["repaired"], report
    assert fake_model.embedded == []  # nothing re-embedded
    assert verify(indexed)[0] == 0
    with semsearch.open(indexed) as engine:
        assert engine.search("owls", limit=1, metadata={"kind": "note"})[0].path == "owls"


def test_damage_to_the_source_of_truth_is_named_not_hidden(indexed):
    sql(indexed, "UPDATE chunks SET vector = x'00' WHERE id = (SELECT min(id) FROM chunks)")
    code, report = verify(indexed, "--repair")
    assert code == 1
    assert [p["part"] for p in report["problems"] if not p["repairable"]] == ["vectors"]
    result = CliRunner().invoke(cli, ["--index", str(indexed), "verify"])
    assert result.exit_code == 1 and "index the folder again" in result.output
