"""A relevance in [0, 1] on every hit: read from the hit's own signals, the same whatever the
ranking, and ``min_score`` in the library, the CLI (the server's and MCP's are in their tests)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import semsearch
from semsearch.cli import cli
from semsearch.relevance import CURVES, FEATURES, FUSED_CAP, Curve, Signals, relevance
from semsearch.retrieval import FusionSettings, Retriever
from semsearch.types import MODES, SearchFilter

TEXTS = {
    "tomato": "Tomatoes need full sun, deep watering and a stake to climb.",
    "rose": "Prune roses in late winter above an outward facing bud.",
    "bread": "Knead the dough, let the yeast rise, then bake bread in a hot oven.",
    "soup": "Caramelise onions slowly in butter for a rich onion soup.",
    "tides": "The moon pulls the oceans and makes tides twice a day.",
    "bees": "Bees visit tomato flowers less than they visit roses.",
}


@pytest.fixture
def engine(tmp_path, fake_embedder):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as opened:
        opened.add_texts(list(TEXTS.values()), ids=list(TEXTS))
        yield opened


def test_the_fitted_curves_rise_with_each_signal():
    """More similar, holding more of the query, standing out more: never less relevant; values
    stay in [0, 1]; each curve weighs exactly the inputs it was fitted on."""
    for name, curve in CURVES.items():
        weights = {field: getattr(curve, field) for field in ("cosine", "keyword_share", "log_query_words", "fused")}
        assert all(math.isfinite(value) for value in (curve.intercept, *weights.values()))
        assert {field for field, weight in weights.items() if weight} == set(FEATURES[name])
        assert all(weight > 0 for weight in weights.values() if weight)
    for mode in MODES:
        low = relevance(mode, Signals(cosine=0.1, keyword_share=0.1, query_words=3, fused=-1.0))
        high = relevance(mode, Signals(cosine=0.8, keyword_share=1.5, query_words=3, fused=2.0))
        assert 0.0 <= low < high <= 1.0
    # The fused score says nothing more past its cap; without it (other fusion settings) hybrid
    # reads the cosine and the keyword share instead.
    assert relevance("hybrid", Signals(cosine=0.5, fused=FUSED_CAP)) == relevance("hybrid", Signals(cosine=0.5, fused=9.0))
    assert relevance("hybrid", Signals(cosine=0.5, keyword_share=1.0)) == relevance(
        "hybrid", Signals(cosine=0.5, keyword_share=1.0), {**CURVES, "hybrid": CURVES["hybrid-unfused"]}
    )
    assert relevance("semantic", Signals(cosine=1.0), {"semantic": Curve(intercept=-1e6)}) == 0.0


@pytest.mark.parametrize("mode", MODES)
def test_every_hit_has_a_relevance_that_does_not_depend_on_the_ranking(engine, mode):
    hits = engine.search("tomato sun roses", mode=mode, limit=6)
    assert hits and all(0.0 <= hit.relevance <= 1.0 for hit in hits)
    fewer = engine.search("tomato sun roses", mode=mode, limit=2)
    assert {hit.chunk_id: hit.relevance for hit in fewer} == {hit.chunk_id: hit.relevance for hit in hits[:2]}
    assert hits[0].to_dict()["relevance"] == round(hits[0].relevance, 4)
    grouped = engine.search("tomato sun roses", mode=mode, limit=6, group_by_document=True)
    assert {hit.chunk_id: hit.relevance for hit in grouped} == {hit.chunk_id: hit.relevance for hit in hits}


def test_signals_remembered_from_the_search_are_the_ones_looked_up(engine):
    """Hybrid reuses the cosines and BM25 scores it fused; a fresh retriever looks them up."""
    engine.vectors().refresh()
    searched = Retriever(engine._store, engine.vectors(), engine._embed_query)
    ids = [chunk for chunk, _ in searched.rank("bread in the oven", 6, "hybrid", SearchFilter())]
    remembered = searched.signals("bread in the oven", "hybrid", ids)
    fresh = Retriever(engine._store, engine.vectors(), engine._embed_query).signals("bread in the oven", "hybrid", ids)
    for chunk in ids:
        assert remembered[chunk].cosine == pytest.approx(fresh[chunk].cosine, abs=1e-6)
        assert remembered[chunk].keyword_share == pytest.approx(fresh[chunk].keyword_share, rel=1e-9, abs=1e-12)
    assert Retriever(engine._store, engine.vectors(), engine._embed_query).signals("bread", "keyword", ids)[ids[0]].cosine is None


def test_the_keyword_share_of_a_chunk_holding_each_word_once_at_average_length_is_one(tmp_path, fake_embedder):
    texts = ["alpha beta gamma delta", "epsilon zeta eta theta", "iota kappa lambda mu", "nu xi omicron pi"]
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as opened:
        opened.add_texts(texts, ids=["a", "b", "c", "d"])
        hits = opened.search("alpha beta", mode="keyword", limit=1)
        opened.vectors().refresh()
        signals = Retriever(opened._store, opened.vectors(), opened._embed_query).signals(
            "alpha beta", "keyword", [hits[0].chunk_id]
        )
    assert signals[hits[0].chunk_id].keyword_share == pytest.approx(1.0, rel=1e-9)


def test_min_score_leaves_out_the_less_relevant_of_the_best(engine):
    hits = engine.search("tomato sun roses", limit=6)
    floor = sorted(hit.relevance for hit in hits)[3]
    kept = engine.search("tomato sun roses", limit=6, min_score=floor)
    # Compared at 4 places, as shown.
    assert [hit.chunk_id for hit in kept] == [hit.chunk_id for hit in hits if round(hit.relevance, 4) >= round(floor, 4)]
    assert [hit.rank for hit in kept] == list(range(1, len(kept) + 1))
    assert engine.search("tomato sun roses", limit=6, min_score=0.0) == hits
    assert engine.search("tomato sun roses", limit=6, min_score=1.0) == [] or all(
        hit.relevance == 1.0 for hit in engine.search("tomato sun roses", limit=6, min_score=1.0)
    )
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_score must be between 0 and 1"):
            engine.search("tomato", min_score=bad)


def test_similar_hits_have_no_relevance(engine):
    hits = engine.similar("tomato", limit=2)
    assert hits and all(hit.relevance is None for hit in hits) and hits[0].to_dict()["relevance"] is None


def test_the_cli_shows_relevance_and_filters_by_min_score(tmp_path, docs, fake_model):
    runner = CliRunner()
    index = tmp_path / "idx"
    assert runner.invoke(cli, ["--index", str(index), "index", str(docs)]).exit_code == 0
    result = runner.invoke(cli, ["--index", str(index), "search", "tomatoes", "--json", "-n", "5"])
    hits = json.loads(result.output)
    assert hits and all(0.0 <= hit["relevance"] <= 1.0 and "score" in hit for hit in hits)
    shown = runner.invoke(cli, ["--index", str(index), "search", "tomatoes", "-n", "5"])
    assert shown.exit_code == 0 and f" 1. {hits[0]['relevance']:.3f}  " in shown.output
    floor = max(hit["relevance"] for hit in hits) - 1e-4  # (JSON rounds to four places)
    result = runner.invoke(cli, ["--index", str(index), "search", "tomatoes", "--json", "-n", "5", "--min-score", str(floor)])
    kept = json.loads(result.output)
    assert result.exit_code == 0 and kept and all(hit["relevance"] >= floor for hit in kept)
    assert len(kept) == sum(hit["relevance"] >= floor for hit in hits)
    for bad in ("1.5", "-1", "lots"):
        result = runner.invoke(cli, ["--index", str(index), "search", "tomatoes", "--min-score", bad])
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert "Invalid value for '--min-score'" in result.output.strip().splitlines()[-1]


@pytest.mark.parametrize(("settings", "fused"), [(FusionSettings(), True), (FusionSettings(method="rrf"), False),
                                                 (FusionSettings(normalisation="minmax"), False)])
def test_only_the_default_fusion_lends_its_score_to_relevance(tmp_path, fake_embedder, settings, fused):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder, fusion=settings) as opened:
        opened.add_texts(list(TEXTS.values()), ids=list(TEXTS))
        opened.vectors().refresh()
        retriever = Retriever(opened._store, opened.vectors(), opened._embed_query, settings)
        ids = [chunk for chunk, _ in retriever.rank("bread oven", 3, "hybrid", SearchFilter())]
        signals = retriever.signals("bread oven", "hybrid", ids)
        assert all((signal.fused is not None) == fused for signal in signals.values())
        assert all(0.0 < hit.relevance < 1.0 for hit in opened.search("bread oven", limit=3))
