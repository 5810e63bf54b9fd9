"""The keyword index kept in memory (semsearch/postings.py): FTS5's own scores; and when a copy
of an index is read into memory (semsearch/resident.py)."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

import semsearch
from semsearch import postings as postings_module
from semsearch import resident as resident_module
from semsearch.bm25 import match_expression
from semsearch.postings import Postings
from semsearch.resident import Resident
from semsearch.retrieval import Retriever
from semsearch.types import SearchFilter

WORDS = (
    "kestrel owl heron falcon river stone bread oven yeast flour dough crust meadow hedge "
    "running runner runs lantern harbour ferry tide anchor compass"
).split()


def _texts(count: int, seed: int = 7) -> tuple[list[str], list[str]]:
    """Notes of varied length, with repeated words and words that stem alike (runs, running)."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))) for _ in range(count)]
    titles = [" ".join(rng.sample(WORDS, rng.randint(1, 3))) for _ in range(count)]
    return texts, titles


@pytest.fixture
def index(tmp_path, fake_embedder):
    texts, titles = _texts(120)
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(texts, ids=[f"n{i}" for i in range(len(texts))], titles=titles)
        engine.remove("n5", "n17")  # deleted rows must be gone from the postings too
        yield engine


def _postings(engine) -> Postings:
    raw = engine._store.keyword_postings(postings_module.MAX_TOKENS)
    assert raw is not None
    return Postings(raw)


def _tokens(engine, words):
    stats = engine._store.keyword_statistics(words)
    return [stats.tokens[word][0] for word in words], stats


@pytest.mark.parametrize("weights", [(1.0, 1.0), (2.5, 0.5), (0.0, 1.0), (0.3, 0.7), (1.0, 0.1)])
def test_postings_rank_exactly_as_fts5_does(index, weights):
    postings = _postings(index)
    rng = random.Random(3)
    for _ in range(60):
        words = rng.sample(WORDS, rng.randint(1, 5))
        if rng.random() < 0.3:
            words.append(words[0] + "s")  # two words, one token: FTS5 scores it twice
        tokens, stats = _tokens(index, words)
        within = rng.sample(range(1, 170), 25) if rng.random() < 0.4 else None
        limit = rng.choice([1, 5, 200])
        mine = postings.rank(tokens, limit, weights=weights, within=within)
        reference = index._store.keyword_search(match_expression(words), limit, SearchFilter(), weights=weights, only=within)
        reference = sorted(reference, key=lambda pair: (-pair[1], pair[0]))
        assert len(mine) == len(reference)
        # To the last bit (relevance is read from these scores, and must not depend on the path).
        assert [score for _, score in mine] == [score for _, score in reference]
        assert dict(mine) == dict(reference)
        assert postings.statistics(words, index._store.keyword_tokens(words)) == stats
    assert postings.rank(["absentword"], 10, weights=(1.0, 1.0)) == []


def test_postings_skip_rows_of_only_common_words_and_rank_exactly_as_fts5_does(tmp_path, fake_embedder, monkeypatch):
    """A vocabulary like real text's: a few common words in many rows, many rare ones in few.
    Queries mixing both are answered without scoring the rows that hold only common words
    (the shortcut), with FTS5's ids and scores to the last bit; when the rare words' rows cannot
    prove the top (too few, or scoring too low), every row is scored."""
    monkeypatch.setattr(postings_module, "SKIPPED_AT_LEAST", 0)  # (a table this small is scored whole)
    rng = random.Random(11)
    common = ["alpha", "beta", "gamma"]
    rare = [f"rare{i}" for i in range(400)]
    texts = [
        " ".join(rng.choice(common) for _ in range(rng.randint(2, 30)))
        + " "
        + " ".join(rng.choice(rare) for _ in range(rng.randint(0, 4)))
        for _ in range(600)
    ]
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(texts, ids=[f"t{i}" for i in range(len(texts))], titles=[rng.choice(common) for _ in texts])
        postings = _postings(engine)
        full = []
        original = Postings._scores_all
        monkeypatch.setattr(Postings, "_scores_all", lambda self, *a: full.append(1) or original(self, *a))
        shortcuts = 0
        for round_ in range(80):
            words = rng.sample(rare, rng.randint(1, 3)) + rng.sample(common, rng.randint(1, 2))
            rng.shuffle(words)
            weights = rng.choice([(1.0, 1.0), (3.0, 0.5), (0.0, 1.0)])
            limit = rng.choice([1, 3, 10, 50])
            tokens, _ = _tokens(engine, words)
            before = len(full)
            mine = postings.rank(tokens, limit, weights=weights)
            shortcuts += len(full) == before
            reference = engine._store.keyword_search(match_expression(words), limit, SearchFilter(), weights=weights)
            reference = sorted(reference, key=lambda pair: (-pair[1], pair[0]))
            assert mine == reference, (words, weights, limit)
        assert shortcuts >= 20  # most small limits are proven from the rare words' rows
        assert len(full) >= 5  # and the rest fall back to scoring every row
        monkeypatch.setattr(postings_module, "SKIPPED_AT_LEAST", 10**9)
        before = len(full)
        postings.rank(tokens, 1, weights=(1.0, 1.0))
        assert len(full) == before + 1  # on a small table, every row is scored: that is faster


def test_postings_of_an_empty_index_rank_nothing(tmp_path, fake_embedder):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        assert _postings(engine).rank(["kestrel"], 10, weights=(1.0, 1.0)) == []


def test_postings_are_not_read_for_a_table_over_the_limit(index):
    assert index._store.keyword_postings(max_tokens=10) is None


def test_postings_and_their_revision_are_one_snapshot(index):
    raw = index._store.keyword_postings(postings_module.MAX_TOKENS)
    assert raw.revision == index.revision()
    assert raw.rows == len(raw.ids) == index._store.chunk_count()


class _Reads:
    """A read function for Resident that counts its calls and can be held."""

    def __init__(self, revisions, seconds=0.0):
        self.revisions = revisions  # the revision each read finds
        self.seconds = seconds  # how long each read takes
        self.calls = 0
        self.previous = []
        self.release = threading.Event()
        self.release.set()
        self.done = threading.Event()

    def __call__(self, previous):
        self.previous.append(None if previous is None else previous.revision)  # the copy it may start from
        self.calls += 1
        self.release.wait(5)
        time.sleep(self.seconds)
        revision = self.revisions[min(self.calls, len(self.revisions)) - 1]
        self.done.set()
        if revision is None:
            return None
        return _FakePostings(revision)


class _FakePostings:
    def __init__(self, revision):
        self.revision = revision


def _wait(reads):
    assert reads.done.wait(5)
    reads.done.clear()
    time.sleep(0.05)


def test_postings_are_read_once_a_process_searches_a_second_time_at_a_revision(monkeypatch):
    monkeypatch.setattr(resident_module, "REBUILD_PAUSE", 0.0)
    reads = _Reads([4, 5])
    kept = Resident(reads, name="test")
    assert kept.get(4) is None and reads.calls == 0  # one search: a one-off `semsearch search` reads nothing
    assert kept.get(4) is None  # the second starts the read, and does not wait for it
    _wait(reads)
    assert reads.calls == 1
    assert kept.get(4).revision == 4
    # A write: the kept postings are of an older revision, never used for the new one.
    assert kept.get(5) is None
    assert kept.get(5) is None
    _wait(reads)
    assert kept.get(5).revision == 5 and reads.calls == 2
    assert reads.previous == [None, 4]  # the second read is given the first copy, to start from


def test_a_read_while_one_runs_is_not_started_twice(monkeypatch):
    monkeypatch.setattr(resident_module, "REBUILD_PAUSE", 0.0)
    reads = _Reads([1])
    reads.release.clear()
    kept = Resident(reads, name="test")
    for _ in range(5):
        assert kept.get(1) is None
    reads.release.set()
    _wait(reads)
    assert reads.calls == 1 and kept.get(1).revision == 1


def test_a_table_too_large_is_not_read_again_at_that_revision(monkeypatch):
    monkeypatch.setattr(resident_module, "REBUILD_PAUSE", 0.0)
    reads = _Reads([None, 3])
    kept = Resident(reads, name="test")
    kept.get(2), kept.get(2)
    _wait(reads)
    for _ in range(3):
        assert kept.get(2) is None
    assert reads.calls == 1
    kept.get(3), kept.get(3)
    _wait(reads)
    assert kept.get(3).revision == 3


def test_reads_after_writes_wait_in_proportion_to_the_last_read(monkeypatch):
    monkeypatch.setattr(resident_module, "REBUILD_PAUSE", 1000.0)
    reads = _Reads([1, 2], seconds=0.02)  # the next read waits 20 s
    kept = Resident(reads, name="test")
    kept.get(1), kept.get(1)
    _wait(reads)
    for _ in range(3):
        assert kept.get(2) is None  # the index is being written: FTS5 answers meanwhile
    assert reads.calls == 1


def test_searches_use_the_postings_once_read_and_give_what_fts5_gives(index, monkeypatch):
    """Through the engine: hybrid and keyword results are the same with and without them, and a
    write is seen at once (the postings of the old revision are not used)."""
    queries = ["kestrel harbour", "running owls by the river", "bread oven crust", "compass"]

    def results():
        return [
            [(hit.chunk_id, round(hit.score, 6)) for hit in index.search(query, limit=8, mode=mode)]
            for query in queries for mode in ("hybrid", "keyword")
        ]

    reads = []
    original = index._read_postings
    monkeypatch.setattr(index._postings, "_read", lambda previous: reads.append(1) or original(previous))
    without = results()  # the first searches ask FTS5 and start the read
    deadline = time.monotonic() + 10
    while index._postings.get(index.vectors().revision) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reads and index._postings.get(index.vectors().revision) is not None
    used = []
    original_rank = Postings.rank
    monkeypatch.setattr(Postings, "rank", lambda self, *a, **k: used.append(1) or original_rank(self, *a, **k))
    assert results() == without
    assert used
    index.add_texts(["zeppelin zeppelin kestrel"], ids=["new"])
    used.clear()
    hits = index.search("zeppelin", limit=3, mode="keyword")
    assert [hit.path for hit in hits] == ["new"] and not used


def test_a_filtered_keyword_search_with_postings_keeps_only_what_passes(index):
    index.vectors().refresh()
    postings = _postings(index)
    retriever = Retriever(index._store, index.vectors(), index._embed_query, postings=postings)
    plain = Retriever(index._store, index.vectors(), index._embed_query)
    where = SearchFilter(path="n1*")
    with_postings = retriever.keyword("kestrel river", 10, where)
    without = plain.keyword("kestrel river", 10, where)
    assert [chunk for chunk, _ in with_postings] == [chunk for chunk, _ in without]
    assert np.allclose([s for _, s in with_postings], [s for _, s in without])


def test_words_tokenised_once_are_answered_from_memory_and_the_memory_is_bounded(index, monkeypatch):
    from semsearch import store as store_module

    store = index._store
    monkeypatch.setattr(store_module, "WORDS_KEPT", 3)
    expected = {"running": ("run",), "owls": ("owl",), "tide": ("tide",), "猫*": ()}
    assert store.keyword_tokens(["running", "owls"]) == {"running": ("run",), "owls": ("owl",)}
    calls = []
    original = store_module.fts.query_tokens
    monkeypatch.setattr(store_module.fts, "query_tokens", lambda c, w: calls.append(list(w)) or original(c, w))
    assert store.keyword_tokens(["owls", "running"]) == {"owls": ("owl",), "running": ("run",)} and not calls
    # Past the bound the memory starts again; words known before are still answered right.
    assert store.keyword_tokens(["owls", "tide", "猫*"]) == {word: expected[word] for word in ("owls", "tide", "猫*")}
    assert calls == [["tide", "猫*"]]
    assert store.keyword_tokens(["running"]) == {"running": ("run",)}


def test_postings_read_in_small_batches_are_the_same(index, monkeypatch):
    from semsearch import fts

    whole = _postings(index)
    monkeypatch.setattr(fts, "POSTINGS_BATCH", 3)  # tokens decoded three at a time
    batched = _postings(index)
    for words in (["kestrel", "owl"], ["running", "tide", "compass", "bread"], ["anchor"]):
        tokens, _ = _tokens(index, words)
        assert batched.rank(tokens, 50, weights=(1.0, 1.0)) == whole.rank(tokens, 50, weights=(1.0, 1.0))
        assert [batched.rows_with(token) for token in tokens] == [whole.rows_with(token) for token in tokens]


def test_preload_reads_the_copies_at_once_and_does_nothing_on_an_empty_index(tmp_path, fake_embedder):
    with semsearch.open(tmp_path / "empty", embedder=fake_embedder) as engine:
        engine.preload()  # nothing indexed: nothing to read, no error
        assert engine._postings.peek(engine.revision()) is None
    texts, titles = _texts(30)
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(texts, ids=[f"n{i}" for i in range(len(texts))], titles=titles)
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        first = engine.search("kestrel harbour", limit=5, mode="keyword")  # one search: FTS5 answers
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.preload()  # before any search (a server starting)
        revision = engine.revision()
        assert engine._postings.peek(revision) is not None
        assert engine.vectors()._memory.peek(revision) is not None
        assert engine.search("kestrel harbour", limit=5, mode="keyword") == first


def _same(updated: Postings, fresh: Postings) -> None:
    assert updated.revision == fresh.revision and updated.rows == fresh.rows
    assert updated.average_length == fresh.average_length
    assert np.array_equal(updated.ids, fresh.ids)
    assert np.array_equal(updated.lengths, fresh.lengths)
    assert updated._terms == fresh._terms
    for name in ("_term_ends", "_bounds", "_position", "_frequency", "_norm"):
        assert np.array_equal(getattr(updated, name), getattr(fresh, name)), name


@pytest.mark.parametrize("merged", [False, True])
def test_postings_brought_up_to_date_are_those_read_again(tmp_path, fake_embedder, monkeypatch, merged):
    """Writes that add rows (new tokens and known ones, accents, CJK) and remove rows, in every
    mix: the copy with each change applied holds exactly what reading the table again gives, and
    ranks exactly as FTS5 does. ``merged``: the removed rows' tombstones are gone (a merge of
    their segment clears them), so they are found by listing the rows; and the entries are
    filtered a few at a time."""
    if merged:
        monkeypatch.setattr(postings_module, "SLICE", 7)
    rng = random.Random(5)
    extra = ["café", "naïve", "zeppelin", "quartz", "東京の天気", "猫が好き", "Ωmega", "x" * 40]

    def text() -> str:
        return " ".join(rng.choice(WORDS + extra) for _ in range(rng.randint(1, 25)))

    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts([text() for _ in range(60)], ids=[f"a{i}" for i in range(60)])
        postings = _postings(engine)
        alive, number = [f"a{i}" for i in range(60)], 0
        for round_ in range(14):
            kind = round_ % 3  # add only, remove only, both
            if kind != 1:
                new = [f"b{number + i}" for i in range(rng.randint(1, 6))]
                number += len(new)
                engine.add_texts([text() for _ in new], ids=new, titles=[rng.choice(extra) for _ in new])
                alive += new
            if round_ % 4 == 3:  # a token only the removed rows hold goes with them
                engine.add_texts([f"onlyhere{round_} kestrel"], ids=[f"only{round_}"])
                change = engine._store.keyword_postings_change(postings.ids, postings.lengths, postings_module.MAX_TOKENS, 10**9)
                postings = postings.changed(change)
                assert postings.rows_with(f"onlyhere{round_}") == 1
                engine.remove(f"only{round_}")
            if kind != 0:
                gone = rng.sample(alive, rng.randint(1, 5))
                engine.remove(*gone)
                alive = [key for key in alive if key not in gone]
            if merged:
                with engine._store._writes().begin() as connection:
                    connection.exec_driver_sql("DELETE FROM tombstones")
            change = engine._store.keyword_postings_change(postings.ids, postings.lengths, postings_module.MAX_TOKENS, 10**9)
            updated = postings.changed(change)
            _same(updated, _postings(engine))
            for _ in range(5):
                words = rng.sample(WORDS + ["zeppelin", "quartz", "cafe"], rng.randint(1, 4))
                tokens, _stats = _tokens(engine, words)
                reference = engine._store.keyword_search(match_expression(words), 10, SearchFilter(), weights=(1.0, 1.0))
                assert updated.rank(tokens, 10, weights=(1.0, 1.0)) == sorted(reference, key=lambda p: (-p[1], p[0]))
            postings = updated
        engine.add_texts(["a revision that changes no text"], ids=["same"])
        engine.add_texts(["a revision that changes no text"], ids=["same"])  # unchanged: no new row
        nothing = engine._store.keyword_postings_change(postings.ids, postings.lengths, postings_module.MAX_TOKENS, 10**9)
        postings = postings.changed(nothing)
        _same(postings, _postings(engine))
        # No row changed since (a revision that moved only the vector side, say): no copy is made.
        again = postings.changed(
            engine._store.keyword_postings_change(postings.ids, postings.lengths, postings_module.MAX_TOKENS, 10**9)
        )
        assert again._position is postings._position and again._terms is postings._terms
        _same(again, _postings(engine))
        alive.append("same")
        engine.remove(*alive)  # every row gone
        change = engine._store.keyword_postings_change(postings.ids, postings.lengths, postings_module.MAX_TOKENS, 10**9)
        emptied = postings.changed(change)
        assert emptied.rows == 0 and emptied.rank(["kestrel"], 10, weights=(1.0, 1.0)) == []


def test_a_large_change_is_read_whole_and_a_server_follows_writes_cheaply(index, monkeypatch):
    """Through the engine: after a small write the copy is brought up to date (the table is not
    read again) and gives what FTS5 gives; a change of more than a tenth of the rows is read
    whole."""
    monkeypatch.setattr(resident_module, "REBUILD_PAUSE", 0.0)
    whole = []
    original = type(index._store).keyword_postings
    monkeypatch.setattr(type(index._store), "keyword_postings", lambda self, m: whole.append(1) or original(self, m))

    def held():
        revision = index.vectors().revision
        deadline = time.monotonic() + 10
        while index._postings.get(revision) is None and time.monotonic() < deadline:
            time.sleep(0.02)
            index.vectors().refresh()
        return index._postings.peek(revision)

    index.preload()
    assert whole == [1] and held() is not None
    index.add_texts(["zeppelin kestrel harbour"], ids=["new"])
    index.remove("n7")
    index.search("warm", limit=1, mode="keyword")  # a search at the new revision starts the read
    updated = held()
    assert updated is not None and whole == [1]  # brought up to date, not read again
    _same(updated, Postings(original(index._store, postings_module.MAX_TOKENS)))  # (read again, not counted)
    assert [hit.path for hit in index.search("zeppelin", limit=1, mode="keyword")] == ["new"]
    texts, _titles = _texts(60, seed=9)
    index.add_texts(texts, ids=[f"m{i}" for i in range(len(texts))])  # half as many rows again
    index.search("warm", limit=1, mode="keyword")
    assert held() is not None and whole == [1, 1]


def test_rows_that_changed_under_their_ids_make_the_table_read_whole(tmp_path, fake_embedder):
    """An index deleted and made again at its path reuses chunk ids for other text: a copy of the
    old one's postings is not "brought up to date" with it."""
    with semsearch.open(tmp_path / "old", embedder=fake_embedder) as old:
        old.add_texts([f"kestrel {'owl ' * i}" for i in range(1, 31)], ids=[f"n{i}" for i in range(30)])
        postings = _postings(old)
    with semsearch.open(tmp_path / "new", embedder=fake_embedder) as new:
        new.add_texts([f"heron {'river ' * (i + 2)}" for i in range(1, 31)], ids=[f"n{i}" for i in range(30)])
        assert np.array_equal(_postings(new).ids, postings.ids)  # the same ids, other rows
        with pytest.raises(ValueError, match="changed under their ids"):
            new._store.keyword_postings_change(postings.ids, postings.lengths, postings_module.MAX_TOKENS, 10**9)
        fresh = new._read_postings(postings)  # the engine reads the table whole instead
        _same(fresh, _postings(new))
