"""Unit tests of ranking: keyword query building, fusion functions, reranking, and the hybrid path."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from semsearch.engine import Engine
from semsearch.embedder import load_reranker
from semsearch.errors import ModelLoadError
from semsearch.retrieval import (
    FusionSettings,
    convex_fusion,
    keyword_terms,
    keyword_window,
    match_expression,
    normaliser,
    reciprocal_rank_fusion,
    rerank,
)

# -- keyword queries ----------------------------------------------------------------------------


def test_keyword_terms_drop_stopwords_lowercase_and_deduplicate():
    assert keyword_terms("What is the Effect of the effect of Aspirin?") == ["effect", "aspirin"]


def test_keyword_terms_keep_stopwords_when_nothing_else_is_left():
    assert keyword_terms("to be or not to be") == ["to", "be", "or", "not"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Война и мир", ["война", "и", "мир"]),
        ("φωτοσύνθεση φυτά", ["φωτοσύνθεση", "φυτά"]),
        ("café crème brûlée", ["café", "crème", "brûlée"]),
        ("東京 タワー", ["東京", "タワ", "ワー"]),  # CJK as bigrams (semsearch/cjk.py)
        ("snake_case names", ["snake", "case", "names"]),
        ("C++ & co-op: 3.14", ["c", "co", "op", "3", "14"]),
    ],
)
def test_keyword_terms_split_words_of_any_script_like_fts5(query, expected):
    assert keyword_terms(query) == expected


def test_keyword_terms_of_punctuation_only_is_empty():
    assert keyword_terms("?!... --- ***") == []


@pytest.mark.parametrize(
    "query",
    ['say "hello"', "NEAR(a b)", "a AND NOT b", "prefix*", "col:value", "^start", "(unbalanced", 'a"b'],
)
def test_match_expression_never_reads_words_as_fts5_syntax(query):
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE t USING fts5(context, text, tokenize='porter unicode61')")
    connection.execute("INSERT INTO t VALUES ('', 'hello near start prefix value col and not')")
    terms = keyword_terms(query)
    rows = connection.execute("SELECT count(*) FROM t WHERE t MATCH ?", (match_expression(terms),)).fetchone()
    assert rows[0] in (0, 1)


def test_match_expression_quotes_each_term_and_doubles_quotes():
    assert match_expression(["a", 'b"c']) == '"a" OR "b""c"'


# -- fusion -------------------------------------------------------------------------------------


def test_reciprocal_rank_fusion_sums_inverse_ranks():
    fused = reciprocal_rank_fusion([[(1, 0.9), (2, 0.8)], [(2, 5.0), (3, 4.0)]], k=10)
    scores = dict(fused)
    assert scores[2] == pytest.approx(1 / 12 + 1 / 11)
    assert scores[1] == pytest.approx(1 / 11)
    assert scores[3] == pytest.approx(1 / 12)
    assert [item for item, _ in fused] == [2, 1, 3]


def test_minmax_normaliser_maps_best_to_one_and_worst_to_zero():
    scale = normaliser([(1, 10.0), (2, 6.0), (3, 2.0)], "minmax")
    assert [scale(10.0), scale(6.0), scale(2.0), scale(0.0)] == pytest.approx([1.0, 0.5, 0.0, -0.25])


def test_zscore_normaliser_centres_and_scales():
    scale = normaliser([(1, 3.0), (2, 1.0)], "zscore")
    assert [scale(3.0), scale(1.0), scale(2.0)] == pytest.approx([1.0, -1.0, 0.0])


def test_normalisers_of_constant_or_empty_rankings_do_not_divide_by_zero():
    assert normaliser([(1, 2.0), (2, 2.0)], "minmax")(2.0) == 1.0
    assert normaliser([(1, 2.0), (2, 2.0)], "zscore")(2.0) == 0.0
    assert normaliser([], "zscore")(5.0) == 0.0


def test_a_keyword_ranking_shorter_than_the_window_is_filled_with_zeros():
    """Chunks holding no query word score 0 in BM25, so a lone match stands out from them instead
    of having no spread to be scaled by (a rare name, a Chinese word)."""
    window = keyword_window([(7, 3.5)], 4)
    assert [score for _, score in window] == [3.5, 0.0, 0.0, 0.0]
    scale = normaliser(window, "zscore")
    assert scale(3.5) > 1.5 and scale(0.0) < 0
    assert keyword_window([(1, 2.0), (2, 1.0)], 1) == [(1, 2.0)]


def test_convex_fusion_weights_normalised_scores():
    identity = float
    fused = convex_fusion(
        {1: 1.0, 2: 0.5},
        {1: 0.0, 2: 1.0, 3: 1.0},
        semantic_weight=0.75,
        semantic_scale=identity,
        keyword_scale=identity,
    )
    scores = dict(fused)
    assert scores[1] == pytest.approx(0.75)
    assert scores[2] == pytest.approx(0.75 * 0.5 + 0.25)
    # Item 3 has no semantic score: it takes the lowest one given (0.5).
    assert scores[3] == pytest.approx(0.75 * 0.5 + 0.25)
    assert fused[0][0] == 1
    assert [item for item, _ in fused[1:]] == [2, 3]  # ties broken by id, so the order is stable


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_convex_fusion_at_the_extremes_is_one_retriever(weight):
    semantic = {1: 0.9, 2: 0.1, 3: 0.5}
    keyword = {1: 0.0, 2: 9.0, 3: 1.0}
    fused = convex_fusion(semantic, keyword, semantic_weight=weight, semantic_scale=float, keyword_scale=float)
    expected = sorted(semantic if weight else keyword, key=lambda i: -(semantic if weight else keyword)[i])
    assert [item for item, _ in fused] == expected


def test_fusion_settings_reject_nonsense():
    with pytest.raises(ValueError):
        FusionSettings(method="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FusionSettings(semantic_weight=1.5)
    with pytest.raises(ValueError):
        FusionSettings(normalisation="rank")  # type: ignore[arg-type]


# -- reranking ----------------------------------------------------------------------------------


class LengthReranker:
    """Prefers longer passages: deterministic and model-free."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def score(self, query, passages):
        self.seen.append(list(passages))
        return np.array([len(p) for p in passages], dtype=np.float32)


def test_rerank_reorders_the_head_and_keeps_the_tail():
    reranker = LengthReranker()
    ranked = [(1, 0.9), (2, 0.8), (3, 0.7), (4, 0.6)]
    passages = {1: "a", 2: "ccc", 3: "bb", 4: "dddddd"}
    result = rerank(reranker, "q", ranked, passages, depth=3)
    assert [item for item, _ in result] == [2, 3, 1, 4]
    assert result[0][1] == 3.0
    assert reranker.seen == [["a", "ccc", "bb"]]


def test_load_reranker_without_a_model_says_what_to_give():
    with pytest.raises(ModelLoadError, match="--rerank-model PATH"):
        load_reranker(None)


def test_load_reranker_from_a_missing_folder_is_a_clean_error(tmp_path):
    with pytest.raises(ModelLoadError, match="no cross-encoder at"):
        load_reranker(str(tmp_path / "nothing-here"))


# -- hybrid search through the engine -----------------------------------------------------------

TEXTS = {
    "tomato": "Tomatoes need full sun, deep watering and a stake to climb.",
    "rose": "Prune roses in late winter above an outward facing bud.",
    "bread": "Knead the dough, let the yeast rise, then bake bread in a hot oven.",
    "soup": "Caramelise onions slowly in butter for a rich onion soup.",
    "greek": "Η φωτοσύνθεση μετατρέπει το φως σε χημική ενέργεια στα φυτά.",
    "russian": "Война и мир — роман Льва Толстого о войне 1812 года.",
    "french": "La crème brûlée se sert froide avec du sucre caramélisé.",
}


@pytest.fixture
def engine(tmp_path, fake_embedder):
    opened = Engine.open(tmp_path / "index", embedder=fake_embedder)
    opened.add_texts(list(TEXTS.values()), ids=list(TEXTS), titles=[name.title() for name in TEXTS])
    yield opened
    opened.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [("photosynthesis φωτοσύνθεση", "greek"), ("Толстого роман", "russian"), ("creme brulee", "french"),
     ("kneading breads", "bread")],
)
def test_keyword_search_handles_stemming_and_other_scripts(engine, query, expected):
    hits = engine.search(query, mode="keyword", limit=3)
    assert hits and hits[0].path == expected


@pytest.mark.parametrize("method", ["convex", "rrf"])
def test_hybrid_top_results_do_not_depend_on_the_limit(tmp_path, fake_embedder, method):
    settings = FusionSettings(method=method, candidates=4)
    with Engine.open(tmp_path / f"index-{method}", embedder=fake_embedder, fusion=settings) as opened:
        opened.add_texts(list(TEXTS.values()), ids=list(TEXTS))
        short = [hit.chunk_id for hit in opened.search("onion soup in the oven", limit=2)]
        long = [hit.chunk_id for hit in opened.search("onion soup in the oven", limit=7)]
    assert long[:2] == short


def test_hybrid_scores_chunks_found_by_one_side_with_their_real_other_score(engine):
    """A chunk that only BM25 finds must get its true cosine, and vice versa, before fusing."""
    from semsearch.retrieval import Retriever
    from semsearch.types import SearchFilter

    engine.vectors().refresh()
    # No feedback here: the semantic scores below are the query's own (feedback is tested apart).
    retriever = Retriever(engine._store, engine.vectors(), engine._embed_query,
                          FusionSettings(candidates=2, feedback_depth=0))
    semantic = dict(retriever.semantic("bread oven", 100, SearchFilter()))
    keyword = dict(retriever.keyword("bread oven", 100, SearchFilter()))
    fused = retriever.hybrid("bread oven", 7, SearchFilter())
    semantic_top = retriever.semantic("bread oven", 2, SearchFilter())
    keyword_top = retriever.keyword("bread oven", 2, SearchFilter())
    s_scale = normaliser(semantic_top, retriever.settings.normalisation)
    k_scale = normaliser(keyword_window(keyword_top, len(semantic_top)), retriever.settings.normalisation)
    for chunk, score in fused:
        weight = retriever.settings.semantic_weight
        expected = weight * s_scale(semantic[chunk]) + (1 - weight) * k_scale(keyword.get(chunk, 0.0))
        assert math.isclose(score, expected, rel_tol=1e-6, abs_tol=1e-9)


def test_hybrid_feedback_ranks_its_candidates_again_with_the_query_moved_towards_its_first_hits(engine):
    from semsearch.retrieval import Retriever
    from semsearch.types import SearchFilter

    engine.vectors().refresh()
    settings = FusionSettings(feedback_depth=2, feedback_weight=0.5)
    plain = Retriever(engine._store, engine.vectors(), engine._embed_query, FusionSettings(feedback_depth=0))
    candidates = plain.semantic("bread oven", 5, SearchFilter())
    query = np.asarray(engine._embed_query("bread oven"), dtype=np.float32).reshape(-1)
    _ids, top = engine._store.vectors_of(np.asarray([chunk for chunk, _ in candidates[:2]]))
    moved = query + 0.5 * top.mean(axis=0)
    moved /= np.linalg.norm(moved)
    ids, vectors = engine._store.vectors_of(np.asarray([chunk for chunk, _ in candidates]))
    cosines = vectors @ moved  # the first search's five, scored against the moved vector: the oracle
    expected = sorted(zip(ids.tolist(), cosines.tolist()), key=lambda pair: (-pair[1], pair[0]))
    assert [chunk for chunk, _ in expected] != [chunk for chunk, _ in candidates]  # feedback moved something

    retriever = Retriever(engine._store, engine.vectors(), engine._embed_query, settings)
    for _ in range(2):  # a grouped search asks again, deeper: the vector moves once
        found = retriever.semantic_with_feedback("bread oven", 5, SearchFilter())
        assert [chunk for chunk, _ in found] == [chunk for chunk, _ in expected]
        assert np.allclose([score for _, score in found], [score for _, score in expected], atol=1e-5)
    # Off, it is the plain semantic ranking; semantic mode never uses it.
    off = Retriever(engine._store, engine.vectors(), engine._embed_query, FusionSettings(feedback_depth=0))
    assert off.semantic_with_feedback("bread oven", 5, SearchFilter()) == plain.semantic("bread oven", 5, SearchFilter())
    with pytest.raises(ValueError, match="must not be negative"):
        FusionSettings(feedback_weight=-1)


def test_words_in_half_the_chunks_are_not_matched_and_change_no_score(tmp_path, fake_embedder):
    """BM25 gives a word found in half the chunks or more no weight; matching it only costs time."""
    import semsearch
    from semsearch.bm25 import weightless
    from semsearch.retrieval import Retriever, match_expression
    from semsearch.types import SearchFilter

    texts = [f"shared words in note {i} about {'kestrels' if i < 3 else 'owls'}" for i in range(10)]
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as opened:
        opened.add_texts(texts, ids=[f"n{i}" for i in range(10)])
        store = opened._store
        words = ["shared", "kestrels", "owls", "absent"]
        assert weightless(words, store.keyword_statistics(words)) == {"shared", "owls"}
        assert weightless(["sharing"], store.keyword_statistics(["sharing"])) == {"sharing"}  # FTS5 stems it "share"
        opened.vectors().refresh()
        retriever = Retriever(store, opened.vectors(), opened._embed_query)
        pruned = retriever.keyword("shared kestrels", 10, SearchFilter())
        full = store.keyword_search(match_expression(["shared", "kestrels"]), 10, SearchFilter(), weights=(1.0, 1.0))
        assert len(pruned) == 3 and len(full) == 10  # the notes without "kestrels" scored ~0 anyway
        assert [chunk for chunk, _ in pruned] == [chunk for chunk, _ in full[:3]]
        assert [score for _, score in pruned] == pytest.approx([score for _, score in full[:3]], abs=1e-4)
        assert len(retriever.keyword("shared", 10, SearchFilter())) == 10  # nothing else left: kept
