"""Keyword search without scoring every match: the answers must be exactly FTS5's."""

from __future__ import annotations

import random

import pytest

import semsearch
from semsearch import bm25
from semsearch.fts import _varints
from semsearch.retrieval import FusionSettings, Retriever, match_expression
from semsearch.types import SearchFilter

COMMON = ["harbour", "engine", "market", "garden"]  # each in a large share of the chunks
RARE = [f"word{number}" for number in range(1000)]  # each in a few chunks


def corpus(count: int, seed: int = 7) -> tuple[list[str], list[str], list[dict]]:
    """Texts whose words follow a skewed distribution, titles that repeat some of them (the
    weighted context column), and a metadata field to filter on."""
    rng = random.Random(seed)
    texts, titles, metadata = [], [], []
    for number in range(count):
        words = rng.sample(RARE, rng.randint(3, 12))
        words += [word for word in COMMON if rng.random() < 0.25 + 0.1 * COMMON.index(word)]
        words += rng.choices(words, k=rng.randint(0, 6))  # repeats: term frequencies above 1
        rng.shuffle(words)
        texts.append(" ".join(words) + ".")
        titles.append(" ".join(rng.sample(words, min(2, len(words)))).title())
        metadata.append({"part": "odd" if number % 2 else "even", "few": number % 40 == 0})
    return texts, titles, metadata


def queries(count: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.sample(RARE, rng.randint(2, 4)) + rng.sample(COMMON, rng.randint(1, 2))) for _ in range(count)]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from tests.conftest import FakeEmbedder

    texts, titles, metadata = corpus(3000)
    engine = semsearch.open(tmp_path_factory.mktemp("bm25") / "idx", embedder=FakeEmbedder())
    engine.add_texts(texts, ids=[f"t{i}" for i in range(len(texts))], titles=titles, metadata=metadata)
    engine.remove(*[f"t{i}" for i in range(0, 3000, 97)])  # deleted rows must not come back
    engine.vectors().refresh()
    yield engine
    engine.close()


def full_fts5(engine, words, depth, where, weights):
    return engine._store.keyword_search(match_expression(words), depth, where, weights=weights)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (2.5, 1.0)])
@pytest.mark.parametrize("where", [SearchFilter(), SearchFilter(metadata=(("part", "odd"),))])
def test_the_shortcut_returns_exactly_what_fts5_returns(index, monkeypatch, weights, where):
    monkeypatch.setattr(bm25, "SPLIT_FROM_ROWS", 0)  # a small index: split every query that can be
    proven = []  # (depth, whether the shortcut proved its answer)
    original = bm25.shortcut

    def spy(split, limit, **options):
        result = original(split, limit, **options)
        proven.append((limit, result is not None))
        return result

    monkeypatch.setattr(bm25, "shortcut", spy)
    retriever = Retriever(index._store, index.vectors(), index._embed_query, FusionSettings(keyword_weights=weights))
    for query in queries(40):
        for depth in (10, 100):
            words, _stats = retriever._keyword_terms(query)
            got = retriever.keyword(query, depth, where)
            expected = full_fts5(index, words, depth, where, weights)
            assert [chunk for chunk, _ in got] == [chunk for chunk, _ in expected], query
            assert [score for _, score in got] == pytest.approx([score for _, score in expected], rel=1e-9)
    # The shortcut really answered most top-10s (else this test would only test FTS5 itself); a
    # top 100 is often more than the rare words match, and then only FTS5 can say what follows.
    tens = [ok for depth, ok in proven if depth <= 40]  # a filtered top 10 ranks 40 unfiltered first
    assert len(tens) >= 25 and sum(tens) >= 0.6 * len(tens)


@pytest.mark.parametrize("weights", [(2.0, 1.0), (0.3, 0.7)])  # (0.3: FTS5 adds it once per occurrence)
def test_rows_are_scored_from_their_tokens_exactly_as_fts5_scores_them(index, monkeypatch, weights):
    retriever = Retriever(index._store, index.vectors(), index._embed_query, FusionSettings(keyword_weights=weights))
    ids = list(range(1, 3000, 7))
    # The last two have words that stem alike: FTS5 scores the shared token once per word.
    for query in [*queries(30, seed=3), "harbours harbour word17 word18s", "engine engines engineering word5"]:
        words, stats = retriever._keyword_terms(query)
        got = bm25.score_rows(ids, words, stats, weights=weights, row_tokens=index._store.keyword_row_tokens)
        expected = index._store.keyword_search(match_expression(words), len(ids), SearchFilter(), weights=weights, only=ids)
        assert dict(got) == dict(expected)  # to the last bit
        for read_rows in (0, 10**9):  # hybrid's choice: read the rows' tokens, or let FTS5 walk its postings
            monkeypatch.setattr(bm25, "POSTINGS_PER_ROW_READ", read_rows)
            chosen = retriever.keyword(query, len(ids), SearchFilter(), only=ids)
            assert [chunk for chunk, _ in chosen] == [chunk for chunk, _ in got]
            assert [score for _, score in chosen] == pytest.approx([score for _, score in got], rel=1e-9)


def test_a_query_the_shortcut_cannot_prove_falls_back_to_fts5(index, monkeypatch):
    monkeypatch.setattr(bm25, "SPLIT_FROM_ROWS", 0)
    retriever = Retriever(index._store, index.vectors(), index._embed_query)
    query = "word1 word2 harbour engine"  # two rare words: fewer rows hold them than the 80 asked for
    words, stats = retriever._keyword_terms(query)
    split = bm25.plan(words, stats)
    assert split is not None and split.rare == ["word1", "word2"]

    def search(expression, limit):
        return index._store.keyword_search(expression, limit, SearchFilter(), weights=(1.0, 1.0))

    assert bm25.shortcut(split, 80, search=search) is None
    assert bm25.shortcut(split, 5, search=search) is not None
    assert retriever.keyword(query, 80, SearchFilter()) == full_fts5(index, words, 80, SearchFilter(), (1.0, 1.0))


def test_a_narrow_filter_listed_by_the_semantic_side_ranks_keywords_as_the_join_does(index):
    narrow = SearchFilter(metadata=(("few", True),))
    retriever = Retriever(index._store, index.vectors(), index._embed_query)
    for query in queries(15, seed=5):
        retriever.semantic(query, 100, narrow)  # too few pass a deeper search: the chunks are listed
        assert retriever._narrow_filter_chunks(narrow) is not None  # the store remembers the list
        words, _stats = retriever._keyword_terms(query)
        got = retriever.keyword(query, 20, narrow)
        expected = full_fts5(index, words, 20, narrow, (1.0, 1.0))  # FTS5 joined to documents
        assert got and [chunk for chunk, _ in got] == [chunk for chunk, _ in expected]
        assert [score for _, score in got] == pytest.approx([score for _, score in expected], rel=1e-9)


def test_a_phrase_word_is_left_to_fts5():
    from semsearch.fts import TermStatistics

    stats = TermStatistics(1000, 10.0, {"e-mail": ("e", "mail"), "harbour": ("harbour",)}, {"e": 10, "mail": 10, "harbour": 900})
    assert bm25.plan(["e-mail", "harbour"], stats) is None
    assert bm25.score_rows([1], ["e-mail"], stats, weights=(1.0, 1.0), row_tokens=lambda ids, tokens: {}) is None


def test_idf_of_counts_read_across_a_write_is_the_minimum():
    """Rows counted before a write and a word's rows after it: no error, the weight of a word in every row."""
    assert bm25.idf(10, 12) == bm25.MIN_IDF and bm25.idf(10, 10) == bm25.MIN_IDF and bm25.idf(0, 3) == bm25.MIN_IDF
    assert bm25.idf(1000, 10) > 4


def test_sqlite_varints_decode():
    assert _varints(bytes([0x05])) == [5]
    assert _varints(bytes([0x81, 0x00, 0x7F])) == [128, 127]
    assert _varints(bytes([0xFF] * 8 + [0x01])) == [(1 << 64) - 255]

