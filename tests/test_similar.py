""""More like this" (Engine.similar, semsearch similar) and reading a stored document back
(Engine.document): against a brute-force oracle over the stored vectors, by path, id and text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import semsearch
from semsearch import similarity
from semsearch.cli import cli
from semsearch.errors import DocumentNotFoundError, EmptyQueryError

TOPICS = {
    "tomato-sun.md": "# Tomatoes\n\nTomato plants want sun, warm soil and deep watering in the garden.\n",
    "tomato-pests.md": "# Tomato pests\n\nHornworms and aphids eat tomato plants in the garden; pick them off.\n",
    "tomato-harvest.txt": "Harvest tomatoes when ripe; tomato plants in a sunny garden give more.\n",
    "bread-oven.md": "# Bread\n\nA hot oven and steam give bread a crisp crust; knead the dough well.\n",
    "bread-yeast.txt": "Yeast makes bread dough rise; knead it, then bake in a hot oven.\n",
    "tides.md": "# Tides\n\nThe moon pulls the oceans and makes tides twice a day.\n",
}


@pytest.fixture
def topics(tmp_path: Path) -> Path:
    root = tmp_path / "topics"
    root.mkdir()
    for name, text in TOPICS.items():
        (root / name).write_text(text)
    # A long document: many chunks, so its centroid is not any one chunk.
    (root / "long-garden.md").write_text(
        "\n\n".join(f"## Part {i}\n\n" + "tomato garden sun watering plants soil " * 8 for i in range(6))
    )
    return root


@pytest.fixture
def engine(tmp_path: Path, topics: Path, fake_embedder):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder, chunk_tokens=24) as opened:
        opened.index(topics)
        yield opened


def brute_force(engine, source_id: int) -> list[tuple[int, float]]:
    """Every other document by its best chunk's cosine to the source's centroid, from SQLite."""
    profile = similarity.centroid(engine._store.document_vectors(source_id)[1])
    scores = []
    for doc in engine._store.documents():
        if doc.id == source_id:
            continue
        _, vectors = engine._store.document_vectors(doc.id)
        scores.append((doc.id, float((vectors @ profile).max())))
    return sorted(scores, key=lambda pair: (-pair[1], pair[0]))


def test_similar_matches_brute_force_and_leaves_the_document_out(engine, topics):
    for name in (*TOPICS, "long-garden.md"):
        source = engine.document(topics / name)
        hits = engine.similar(topics / name, limit=4)
        expected = brute_force(engine, source.id)[:4]
        assert source.id not in [hit.document_id for hit in hits]
        assert [hit.document_id for hit in hits] == [doc for doc, _ in expected], name
        assert [hit.score for hit in hits] == pytest.approx([score for _, score in expected], abs=1e-5)
        assert [hit.rank for hit in hits] == [1, 2, 3, 4]
        assert len({hit.document_id for hit in hits}) == len(hits)


def test_like_documents_come_first(engine, topics):
    tomato = [Path(hit.path).name for hit in engine.similar(topics / "tomato-sun.md", limit=3)]
    assert set(tomato) <= {"tomato-pests.md", "tomato-harvest.txt", "long-garden.md"}
    bread = [Path(hit.path).name for hit in engine.similar(topics / "bread-oven.md", limit=1)]
    assert bread == ["bread-yeast.txt"]


def test_the_document_by_id_by_digits_and_by_relative_path(engine, topics, monkeypatch):
    source = engine.document(topics / "bread-oven.md")
    by_path = engine.similar(topics / "bread-oven.md", limit=3)
    assert engine.similar(source.id, limit=3) == by_path
    assert engine.similar(str(source.id), limit=3) == by_path
    monkeypatch.chdir(topics)
    assert engine.similar("bread-oven.md", limit=3) == by_path


def test_a_text_finds_documents_like_it(engine):
    hits = engine.similar(text="Kneading dough and baking bread in a hot oven", limit=2)
    assert {Path(hit.path).name for hit in hits} == {"bread-oven.md", "bread-yeast.txt"}
    # A long text is cut into chunks like a document and summed up the same way.
    long = engine.similar(text="tomato garden sun watering plants soil " * 200, limit=1)
    assert Path(long[0].path).name == "long-garden.md"


def test_filters_and_limits(engine, topics):
    hits = engine.similar(topics / "tomato-sun.md", limit=10, types=["txt"])
    assert {Path(hit.path).suffix for hit in hits} == {".txt"}
    everything = engine.similar(topics / "tomato-sun.md", limit=100)
    assert len(everything) == len(TOPICS)  # every other document once: 7 in all, less itself


def test_text_documents_are_found_by_their_id(tmp_path, fake_embedder):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(
            ["red apples and green apples", "apples and pears in an orchard", "ships at sea"],
            ids=["a", "b", "c"],
        )
        assert [hit.path for hit in engine.similar("a", limit=1)] == ["b"]


def test_mistakes_are_clear_errors(engine, topics):
    with pytest.raises(DocumentNotFoundError, match="no document at"):
        engine.similar(topics / "nope.md")
    with pytest.raises(DocumentNotFoundError, match="no document with id 999"):
        engine.similar(999)
    with pytest.raises(EmptyQueryError):
        engine.similar(text="   ")
    with pytest.raises(ValueError):
        engine.similar(topics / "tides.md", text="tides")
    with pytest.raises(ValueError):
        engine.similar()


def test_a_document_reads_back_with_its_chunks(engine, topics):
    document = engine.document(topics / "long-garden.md")
    assert document.path == str((topics / "long-garden.md").resolve())
    assert document.source == "file" and document.format == "markdown"
    assert len(document.chunks) > 1
    assert [chunk.ordinal for chunk in document.chunks] == sorted(chunk.ordinal for chunk in document.chunks)
    for i in range(6):
        assert f"Part {i}" in document.text
    # Overlapping chunks are laid once: the text is no longer than the file.
    assert len(document.text) <= len((topics / "long-garden.md").read_text())
    assert engine.document(document.id) == document
    as_json = json.loads(json.dumps(document.to_dict()))
    assert as_json["id"] == document.id and len(as_json["chunks"]) == len(document.chunks)


def test_document_text_is_the_file_text_for_a_one_chunk_file(engine, topics):
    document = engine.document(topics / "bread-yeast.txt")
    assert document.text == (topics / "bread-yeast.txt").read_text().strip()


def test_centroid():
    vectors = np.array([[1, 0], [0, 1]], dtype=np.float32)
    assert similarity.centroid(vectors) == pytest.approx([0.70710677, 0.70710677])
    opposite = np.array([[1, 0], [-1, 0]], dtype=np.float32)
    assert similarity.centroid(opposite) == pytest.approx([1, 0])  # cancelled out: the first chunk
    with pytest.raises(ValueError):
        similarity.centroid(np.empty((0, 2), np.float32))


# -- the command -------------------------------------------------------------------------------


def index_with_cli(tmp_path: Path, topics: Path) -> Path:
    index = tmp_path / "cli-idx"
    result = CliRunner().invoke(cli, ["--index", str(index), "index", str(topics)])
    assert result.exit_code == 0, result.output
    return index


def test_similar_command(tmp_path, topics, fake_model):
    index = index_with_cli(tmp_path, topics)
    runner = CliRunner()
    result = runner.invoke(cli, ["--index", str(index), "similar", str(topics / "bread-oven.md"), "--json", "-n", "2"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert Path(hits[0]["path"]).name == "bread-yeast.txt"
    assert set(hits[0]) == {"rank", "score", "path", "title", "heading", "text", "chunk_id", "document_id",
                            "start_line", "end_line", "page", "format", "metadata"}
    # By the document id printed in --json, and human output with path:line.
    by_id = runner.invoke(cli, ["--index", str(index), "similar", str(hits[0]["document_id"]), "-n", "1"])
    assert by_id.exit_code == 0, by_id.output
    assert "bread-oven.md:1" in by_id.output


def test_similar_command_reads_a_text_from_stdin(tmp_path, topics, fake_model):
    index = index_with_cli(tmp_path, topics)
    result = CliRunner().invoke(
        cli, ["--index", str(index), "similar", "-", "--json", "-n", "1"], input="the moon and ocean tides\n"
    )
    assert result.exit_code == 0, result.output
    assert Path(json.loads(result.output)[0]["path"]).name == "tides.md"


@pytest.mark.parametrize("args", [["nope.md"], ["12345"], ["-"]])
def test_similar_command_errors_are_one_line(tmp_path, topics, fake_model, args):
    index = index_with_cli(tmp_path, topics)
    result = CliRunner().invoke(cli, ["--index", str(index), "similar", *args], input="")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output


def test_document_text_of_many_overlapping_chunks_is_the_file_text(tmp_path, fake_embedder):
    root = tmp_path / "long"
    root.mkdir()
    paragraphs = [" ".join(f"word{i}x{j}" for j in range(30)) + "." for i in range(12)]
    (root / "long.txt").write_text("\n\n".join(paragraphs) + "\n")
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder, chunk_tokens=40) as engine:
        engine.index(root)
        document = engine.document(root / "long.txt")
    assert len(document.chunks) > 6
    assert any(a.char_end > b.char_start for a, b in zip(document.chunks, document.chunks[1:]))  # overlaps
    assert document.text == "\n\n".join(paragraphs)
