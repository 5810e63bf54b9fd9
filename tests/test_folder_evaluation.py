"""Evaluation on a folder of documents with written questions: reading a questions file, the
scores against hand-computed values and against trec_eval, the whole run with the fake model, the
CLI, and one run with the real model on the sample corpus."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from semsearch.cli import cli
from semsearch.engine import Engine
from semsearch.errors import DatasetError
from semsearch.evaluation import score_run
from semsearch.folder_evaluation import (
    Scores,
    default_folder_index_dir,
    evaluate_folder,
    first_answer_rank,
    load_questions,
)

REPO = Path(__file__).resolve().parent.parent

QUESTIONS = [
    {"id": "q1", "question": "aphids and hornworms on tomato plants", "answers": ["garden/tomatoes.md"]},
    {"id": "q2", "question": "knead the dough and let the yeast rise", "answers": ["kitchen/bread.md"]},
    {"id": "q3", "question": "when to prune roses", "answers": ["garden/roses.txt", "garden/tomatoes.md"]},
    {"id": "q4", "question": "caramelise onions in butter", "answers": ["kitchen/soup.rst"]},
]


def write_questions(path: Path, records=QUESTIONS) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    return write_questions(tmp_path / "garden-and-kitchen.jsonl")


# -- reading a questions file -------------------------------------------------------------------


def test_load_questions_reads_ids_texts_and_answer_files(docs, questions_file):
    questions = load_questions(questions_file, docs)
    assert questions.name == "garden-and-kitchen"
    assert questions.folder == docs.resolve()
    assert [q.id for q in questions.questions] == ["q1", "q2", "q3", "q4"]
    assert questions.questions[2].answers == ("garden/roses.txt", "garden/tomatoes.md")


def test_answer_paths_are_normalised_and_a_single_string_is_one_answer(docs, tmp_path):
    path = write_questions(tmp_path / "q.jsonl", [{"id": 1, "question": " roses ", "answers": "./garden//roses.txt"}])
    question = load_questions(path, docs).questions[0]
    assert (question.id, question.text, question.answers) == ("1", "roses", ("garden/roses.txt",))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 1 is not JSON"),
        ('{"id": "a", "question": "x"}', 'needs "id", "question" and "answers"'),
        ('{"id": "a", "question": " ", "answers": ["garden/roses.txt"]}', "empty question"),
        ('{"id": "a", "question": "x", "answers": []}', '"answers" must be a list'),
        ('{"id": "a", "question": "x", "answers": ["garden/lilies.md"]}', "'garden/lilies.md' is not a file"),
        ('{"id": "a", "question": "x", "answers": ["../docs/garden/roses.txt"]}', "is not a file in"),
        ('{"id": "a", "question": "x", "answers": ["garden"]}', "'garden' is not a file"),
    ],
)
def test_malformed_questions_raise_dataset_error_naming_the_line(docs, tmp_path, line, message):
    path = tmp_path / "q.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_questions(path, docs)


def test_repeated_ids_missing_files_and_empty_files_are_errors(docs, tmp_path):
    path = write_questions(tmp_path / "q.jsonl", [QUESTIONS[0], QUESTIONS[0]])
    with pytest.raises(DatasetError, match="line 2 repeats the id 'q1'"):
        load_questions(path, docs)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="holds no questions"):
        load_questions(tmp_path / "empty.jsonl", docs)
    with pytest.raises(DatasetError, match="no questions file"):
        load_questions(tmp_path / "nope.jsonl", docs)
    with pytest.raises(DatasetError, match="no folder"):
        load_questions(path, tmp_path / "nowhere")


def test_default_index_is_in_the_user_cache_one_per_folder(docs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    location = default_folder_index_dir(docs)
    assert location.parent == tmp_path / "cache" / "semsearch" / "eval"
    assert location.name.startswith("docs-")
    assert default_folder_index_dir(tmp_path / "other" / "docs") != location


# -- scoring ------------------------------------------------------------------------------------


def test_first_answer_rank_is_the_best_placed_answer_file():
    assert first_answer_rank(["a", "b", "c"], ["c", "b"]) == 2
    assert first_answer_rank(["a", "b"], ["z"]) is None
    assert first_answer_rank([], ["a"]) is None


def test_scores_match_hand_computed_values():
    scores = Scores.of([1, 3, None, 12, 2])  # a rank past 10 is not found
    assert scores.mrr_at_10 == pytest.approx((1 + 1 / 3 + 1 / 2) / 5)
    assert scores.hit_at_1 == pytest.approx(1 / 5)
    assert scores.hit_at_5 == pytest.approx(3 / 5)
    assert scores.hit_at_10 == pytest.approx(3 / 5)
    assert Scores.of([6, 10]).to_dict() == {"mrr@10": 0.13333, "hit@1": 0.0, "hit@5": 0.0, "hit@10": 1.0}


def test_mrr_agrees_with_trec_eval_on_the_same_run():
    found = {
        "q1": ["d3", "d1", "d9"],
        "q2": ["d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9", "d10", "d11"],
        "q3": ["d5"],
        "q4": ["d2", "d8", "d4"],
    }
    answers = {"q1": ["d1"], "q2": ["d11"], "q3": ["d5", "d6"], "q4": ["d4", "d8"]}
    ours = Scores.of([first_answer_rank(found[q], answers[q]) for q in found])
    overall, _ = score_run({q: {doc: 1 for doc in docs} for q, docs in answers.items()}, found)
    assert ours.mrr_at_10 == pytest.approx(overall.mrr_at_10)


# -- a whole run with the fake model ------------------------------------------------------------


def test_evaluate_folder_scores_every_mode_and_reuses_the_index(docs, questions_file, tmp_path, fake_embedder):
    with Engine.open(tmp_path / "index", embedder=fake_embedder) as engine:
        first = evaluate_folder(questions_file, docs, engine=engine)
        embedded = len(fake_embedder.embedded)
        second = evaluate_folder(questions_file, docs, engine=engine, modes=("keyword",))
    assert first.indexing.new == 4 and first.indexing.chunks_embedded > 0
    assert (second.indexing.new, second.indexing.changed, second.indexing.chunks_embedded) == (0, 0, 0)
    assert len(fake_embedder.embedded) == embedded  # keyword questions embed nothing, nor does indexing
    assert [r.mode for r in first.results] == ["semantic", "keyword", "hybrid"]
    assert first.documents == 4 and first.questions == 4
    keyword = first.result("keyword")
    q1 = next(a for a in keyword.answers if a.question.id == "q1")
    assert q1.rank == 1 and q1.found[0] == "garden/tomatoes.md"
    assert keyword.overall == Scores.of([a.rank for a in keyword.answers])
    assert keyword.overall.hit_at_1 == 1.0
    report = first.to_dict()
    assert set(report["modes"]) == {"semantic", "keyword", "hybrid"}
    assert report["modes"]["hybrid"]["per_question"]["q3"]["answers"] == ["garden/roses.txt", "garden/tomatoes.md"]
    assert "per_question" not in first.to_dict(per_question=False)["modes"]["hybrid"]


def test_a_question_whose_answer_is_not_found_scores_zero(docs, tmp_path, fake_embedder):
    path = write_questions(tmp_path / "q.jsonl", [{"id": "x", "question": "hornworms", "answers": ["kitchen/soup.rst"]}])
    with Engine.open(tmp_path / "index", embedder=fake_embedder) as engine:
        result = evaluate_folder(path, docs, engine=engine, modes=("keyword",)).result("keyword")
    assert result.answers[0].rank is None and result.answers[0].found == ("garden/tomatoes.md",)
    assert result.overall == Scores(0.0, 0.0, 0.0, 0.0)
    assert [a.question.id for a in result.missed()] == ["x"]


def test_files_removed_from_the_folder_leave_the_index(docs, questions_file, tmp_path, fake_embedder):
    with Engine.open(tmp_path / "index", embedder=fake_embedder) as engine:
        evaluate_folder(questions_file, docs, engine=engine, modes=("keyword",))
        (docs / "garden" / "roses.txt").unlink()
        path = write_questions(tmp_path / "q.jsonl", QUESTIONS[:2])
        evaluation = evaluate_folder(path, docs, engine=engine, modes=("keyword",))
    assert evaluation.indexing.removed == 1 and evaluation.documents == 3


def test_evaluate_folder_refuses_an_index_holding_other_files(docs, questions_file, tmp_path, fake_embedder):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "note.txt").write_text("A note about something else entirely.\n")
    with Engine.open(tmp_path / "index", embedder=fake_embedder) as engine:
        engine.index(elsewhere)
        with pytest.raises(DatasetError, match="holds files from .*elsewhere"):
            evaluate_folder(questions_file, docs, engine=engine)
        assert engine.status().documents == 1


# -- the command line ---------------------------------------------------------------------------


def test_cli_eval_questions_json(docs, questions_file, tmp_path, fake_model):
    index = tmp_path / "eval-index"
    result = CliRunner().invoke(
        cli, ["eval", str(docs), "--questions", str(questions_file), "--index", str(index), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["folder"] == str(docs.resolve()) and report["index"] == str(index.resolve())
    assert report["questions"] == 4 and report["documents"] == 4 and report["depth"] == 10
    assert set(report["modes"]["keyword"]["overall"]) == {"mrr@10", "hit@1", "hit@5", "hit@10"}
    assert report["modes"]["keyword"]["per_question"]["q1"]["rank"] == 1


def test_cli_eval_questions_prints_a_table_and_the_questions_missed(docs, tmp_path, fake_model):
    path = write_questions(tmp_path / "q.jsonl", [*QUESTIONS, {"id": "odd", "question": "hornworms", "answers": ["kitchen/soup.rst"]}])
    result = CliRunner().invoke(
        cli, ["eval", str(docs), "--questions", str(path), "--index", str(tmp_path / "i"), "--mode", "keyword"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("keyword") for line in lines)
    assert not any(line.startswith("semantic") for line in lines)
    assert "MRR@10" in result.output and "hit@5" in result.output
    assert "keyword: 1 not answered in the top 10: odd" in result.output


def test_cli_eval_questions_errors_are_one_line(docs, tmp_path, fake_model):
    path = write_questions(tmp_path / "q.jsonl", [{"id": "a", "question": "x", "answers": ["missing.md"]}])
    result = CliRunner().invoke(cli, ["eval", str(docs), "--questions", str(path), "--index", str(tmp_path / "i")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "'missing.md' is not a file" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "i").exists()  # nothing indexed for a broken questions file


def test_cli_eval_on_a_plain_folder_without_questions_says_what_to_give(docs, tmp_path, fake_model):
    result = CliRunner().invoke(cli, ["eval", str(docs), "--index", str(tmp_path / "i")])
    assert result.exit_code == 1
    assert "not a BEIR dataset" in result.output and "--questions FILE" in result.output


def test_cli_eval_questions_refuses_rerank(docs, questions_file, tmp_path, fake_model):
    result = CliRunner().invoke(cli, ["eval", str(docs), "--questions", str(questions_file), "--rerank"])
    assert result.exit_code == 2 and "--rerank applies to BEIR datasets" in result.output


# -- the real model -----------------------------------------------------------------------------

CORPUS_QUESTIONS = [
    {"id": "c1", "question": "how do I fix a flat tyre on my bike", "answers": ["everyday/bicycle-flat-tyre.md"]},
    {"id": "c2", "question": "why does the sky look blue", "answers": ["science/why-is-the-sky-blue.md"]},
    {"id": "c3", "question": "how many vacation days do employees get", "answers": ["larkspur-handbook/vacation-policy.md"]},
    {"id": "c4", "question": "what makes the sea rise and fall twice a day", "answers": ["science/ocean-tides.html"]},
    {"id": "c5", "question": "make a starter for sourdough", "answers": ["everyday/sourdough-bread.md"]},
]


@pytest.mark.slow
def test_real_model_answers_everyday_questions_on_the_sample_corpus(real_corpus_index, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(real_corpus_index, index)  # the shared index is only read
    path = write_questions(tmp_path / "corpus.jsonl", CORPUS_QUESTIONS)
    evaluation = evaluate_folder(path, REPO / "corpora", index=index)
    assert evaluation.indexing.chunks_embedded == 0  # the folder was indexed already
    for result in evaluation.results:
        assert result.overall.hit_at_5 == 1.0, (result.mode, [a.to_dict() for a in result.missed(5)])
    assert evaluation.result("hybrid").overall.mrr_at_10 >= 0.9
