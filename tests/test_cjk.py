"""Keyword search in Chinese, Japanese and Korean: bigrams in the index and in the query, through
the library, the CLI, an index migrated from before, verify/repair, and the real model."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import semsearch
from semsearch import cjk
from semsearch.cli import cli
from semsearch.retrieval import keyword_terms
from semsearch.store import SCHEMA_HEAD, Store, _migrations_dir

# Sentences written for these tests: each document is about one thing, in one language (the last
# two mix scripts, as technical writing does).
DOCUMENTS = {
    "zh-sqlite": "SQLite 是一个嵌入式数据库，整个数据库保存在一个文件里，不需要单独的服务器进程。",
    "zh-tea": "绿茶要用八十度左右的水冲泡，水太热会让茶叶变苦。",
    "zh-bike": "自行车的链条每个月应该清洗一次，然后涂上一点润滑油。",
    "zh-rain": "明天下午可能有大雨，出门记得带伞，路上注意安全。",
    "zh-asyncio": "用asyncio模块写并发程序时，事件循环负责调度所有协程。",
    "ja-bread": "天然酵母のパンは発酵に一晩かかるので、前の日の夜に生地をこねておきます。",
    "ja-train": "東京駅から新幹線に乗って、二時間半で大阪に着きました。",
    "ja-cat": "うちの猫は朝になると窓のそばで日向ぼっこをしています。",
    "ja-backup": "大事な写真は外付けのハードディスクとクラウドの両方にバックアップしてください。",
    "ko-kimchi": "김치찌개는 잘 익은 김치와 돼지고기를 넣고 오래 끓여야 맛있습니다.",
    "ko-subway": "서울 지하철은 새벽 다섯 시 반부터 운행을 시작합니다.",
    "en-garden": "Tomatoes need full sun, deep watering and a stake to climb.",
    "en-backup": "Back up your photos to an external disk and to the cloud.",
}

# (query, the document that must come first)
QUERIES = [
    ("数据库", "zh-sqlite"),
    ("茶叶", "zh-tea"),
    ("润滑油", "zh-bike"),
    ("带伞", "zh-rain"),
    ("事件循环", "zh-asyncio"),
    ("asyncio", "zh-asyncio"),  # a Latin word written against Chinese is a word of its own
    ("发酵", None),  # simplified Chinese; the Japanese text writes 発酵: no match, and no error
    ("発酵", "ja-bread"),
    ("新幹線で大阪", "ja-train"),
    ("猫", "ja-cat"),  # one character: a prefix query
    ("バックアップ", "ja-backup"),
    ("김치", "ko-kimchi"),  # inside 김치찌개는 and 김치와
    ("지하철", "ko-subway"),
    ("SQLite 数据库", "zh-sqlite"),  # mixed scripts in one query
    ("tomatoes", "en-garden"),
]


@pytest.fixture
def engine(tmp_path, fake_embedder):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as opened:
        opened.add_texts(list(DOCUMENTS.values()), ids=list(DOCUMENTS))
        yield opened


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "notes"
    root.mkdir()
    for name, text in DOCUMENTS.items():
        (root / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    return root


# -- the tokens ---------------------------------------------------------------------------------


def test_cjk_runs_become_bigrams_and_their_last_character():
    assert cjk.keyword_text("数据库") == " 数据 据库 库 "
    assert cjk.keyword_text("SQLite数据库。猫") == "SQLite 数据 据库 库 。 猫 "
    assert cjk.keyword_text("김치찌개는 맛있다") == " 김치 치찌 찌개 개는 는   맛있 있다 다 "
    text = "Running the tests, café au lait, Война и мир."
    assert cjk.keyword_text(text) is text  # no CJK: exactly as it was
    assert cjk.keyword_text(None) is None


def test_query_words_become_the_same_bigrams():
    assert cjk.query_terms("数据库") == ["数据", "据库"]
    assert cjk.query_terms("sqlite数据库") == ["sqlite", "数据", "据库"]
    assert cjk.query_terms("猫") == ["猫*"] and cjk.is_prefix("猫*") and not cjk.is_prefix("a*")
    assert cjk.query_terms("tomatoes") == ["tomatoes"]
    assert keyword_terms("東京 タワー and the 東京") == ["東京", "タワ", "ワー"]


def test_every_cjk_character_pairs_into_one_fts5_token():
    """The character class must hold only what unicode61 keeps in a token, or a bigram would split."""
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61 remove_diacritics 2')")
    connection.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    points = [point for point in range(0x1100, 0x31350) if cjk.has_cjk(chr(point))]
    assert len(points) > 100_000
    connection.executemany(
        "INSERT INTO t(rowid, x) VALUES (?, ?)", [(point, "a" + chr(point) + chr(point)) for point in points]
    )
    tokens: dict[int, list[str]] = {}
    for row, term in connection.execute("SELECT doc, term FROM v"):
        tokens.setdefault(row, []).append(term)
    split = [hex(point) for point in points if tokens.get(point) != ["a" + chr(point) * 2]]
    assert split == []


# -- searching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_keyword_search_finds_cjk_words(engine, query, expected):
    hits = engine.search(query, mode="keyword", limit=3)
    if expected is None:
        assert hits == []
    else:
        assert hits and hits[0].path == expected, [(hit.path, hit.score) for hit in hits]


@pytest.mark.parametrize(("query", "expected"), [pair for pair in QUERIES if pair[1]])
def test_hybrid_search_uses_the_cjk_keyword_matches(engine, query, expected):
    # The fake embedder knows nothing of these languages (a whole CJK run is one "word" to it,
    # hashed into one of 64 buckets, where it may collide with an unrelated document's word), so
    # the keyword side must lift the match: to the top, or beside a collision at worst.
    hybrid = [hit.path for hit in engine.search(query, mode="hybrid", limit=len(DOCUMENTS))]
    semantic = [hit.path for hit in engine.search(query, mode="semantic", limit=len(DOCUMENTS))]
    assert expected in hybrid[:2], hybrid
    assert hybrid.index(expected) < semantic.index(expected) or semantic.index(expected) == 0


def test_a_query_in_two_scripts_finds_a_document_in_each(engine):
    found = [hit.path for hit in engine.search("photos 写真", mode="keyword", limit=5)]
    assert set(found[:2]) == {"ja-backup", "en-backup"}


def test_a_whole_word_outranks_a_part_of_it(engine):
    engine.add_texts(["数据分析需要很多数据。"], ids=["zh-analysis"])  # holds 数据 but not 数据库
    found = [hit.path for hit in engine.search("数据库", mode="keyword", limit=5)]
    assert found[:2] == ["zh-sqlite", "zh-analysis"]


def test_english_keyword_scores_are_exactly_what_they_were(tmp_path, fake_embedder):
    """Text without CJK is indexed as before: FTS5 over the plain columns gives the same scores."""
    texts = [
        "Tomatoes need full sun, deep watering and a stake to climb.",
        "Running runners ran; the runner runs. Café crème, Война и мир.",
        "Prune roses in late winter above an outward facing bud; roses like sun.",
    ]
    with semsearch.open(tmp_path / "en", embedder=fake_embedder) as opened:
        opened.add_texts(texts, ids=["t1", "t2", "t3"], titles=["Tomatoes", "Running", "Roses"])
        with sqlite3.connect(opened.directory / "semsearch.db") as connection:
            rows = connection.execute("SELECT id, context, text FROM chunks").fetchall()
        reference = sqlite3.connect(":memory:")
        reference.execute(
            "CREATE VIRTUAL TABLE r USING fts5(context, text, tokenize='porter unicode61 remove_diacritics 2')"
        )
        reference.executemany("INSERT INTO r(rowid, context, text) VALUES (?, ?, ?)", rows)
        for query in ["running", "tomatoes climbing sun", "roses sun", "creme мир"]:
            expression = " OR ".join(f'"{word}"' for word in keyword_terms(query))
            expected = reference.execute(
                "SELECT rowid, -bm25(r) FROM r WHERE r MATCH ? ORDER BY bm25(r)", (expression,)
            ).fetchall()
            # (rows holding only a word found in half the rows score ~1e-6: keyword search skips them)
            expected = [(chunk, score) for chunk, score in expected if score > 1e-5]
            got = [(hit.chunk_id, hit.score) for hit in opened.search(query, mode="keyword", limit=50)]
            assert expected and [chunk for chunk, _ in got] == [chunk for chunk, _ in expected]
            assert [score for _, score in got] == pytest.approx([score for _, score in expected], abs=1e-5)


def test_hybrid_scores_cjk_chunks_found_only_by_the_semantic_side(engine, monkeypatch):
    """Rows scored from their own tokens (hybrid's cheap path) must read the bigrams too."""
    from semsearch import bm25
    from semsearch.retrieval import Retriever
    from semsearch.types import SearchFilter

    monkeypatch.setattr(bm25, "POSTINGS_PER_ROW_READ", 0)  # always score rows from their tokens
    engine.vectors().refresh()
    retriever = Retriever(engine._store, engine.vectors(), engine._embed_query)
    everything = dict(retriever.keyword("数据库 茶叶", 20, SearchFilter()))
    ids = [hit.chunk_id for hit in engine.search("x", mode="semantic", limit=50)]
    scored = dict(retriever.keyword("数据库 茶叶", len(ids), SearchFilter(), only=ids))
    assert scored.keys() == everything.keys() and len(scored) == 2
    for chunk, score in everything.items():
        assert scored[chunk] == pytest.approx(score, rel=1e-9)


# -- an index from before: migrated, nothing embedded ----------------------------------------------


def test_an_index_from_before_is_migrated_without_embedding(tmp_path, fake_embedder):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    index = tmp_path / "idx"
    with semsearch.open(index, embedder=fake_embedder) as opened:
        opened.add_texts(list(DOCUMENTS.values()), ids=list(DOCUMENTS))
    database = index / "semsearch.db"
    engine = create_engine(f"sqlite:///{database}")
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, _revision_before_bigrams(config))  # the schema every index had before
    engine.dispose()
    with sqlite3.connect(database) as connection:
        vectors_before = connection.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall()
        assert connection.execute("SELECT count(*) FROM chunk_fts WHERE chunk_fts MATCH '\"数据\"'").fetchone()[0] == 0
    fake_embedder.embedded.clear()
    with semsearch.open(index, embedder=fake_embedder) as opened:
        assert opened._store.schema_revision() == SCHEMA_HEAD
        assert opened.search("数据库", mode="keyword", limit=1)[0].path == "zh-sqlite"
        assert opened.search("tomatoes", mode="keyword", limit=1)[0].path == "en-garden"
        assert opened.verify().ok
    assert fake_embedder.embedded == []
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT id, vector FROM chunks ORDER BY id").fetchall() == vectors_before


def _revision_before_bigrams(config) -> str:
    """The revision below the migration that made chunk_fts index bigrams (whatever its number)."""
    from alembic.script import ScriptDirectory

    for revision in ScriptDirectory.from_config(config).walk_revisions():
        if "chunk_fts_source" in Path(revision.path).read_text():
            return revision.down_revision
    raise AssertionError("no migration creates chunk_fts_source")


def test_a_new_store_indexes_through_the_view(tmp_path):
    store = Store(tmp_path / "s.db")
    store.close()
    with sqlite3.connect(tmp_path / "s.db") as connection:
        view = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'chunk_fts_source'").fetchone()[0]
        table = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'chunk_fts'").fetchone()[0]
    assert "keyword_text(text)" in view and "content='chunk_fts_source'" in table


# -- verify and rebuild --------------------------------------------------------------------------


def test_verify_finds_and_repairs_a_damaged_cjk_keyword_row(engine):
    chunk = engine.search("数据库", mode="keyword", limit=1)[0].chunk_id
    with sqlite3.connect(engine.directory / "semsearch.db") as connection:
        # Drop the row's bigrams from the index, as a damaged file or a stray write would.
        text = connection.execute("SELECT text FROM chunks WHERE id = ?", (chunk,)).fetchone()[0]
        connection.execute(
            "INSERT INTO chunk_fts(chunk_fts, rowid, context, text) VALUES ('delete', ?, '', ?)",
            (chunk, cjk.keyword_text(text)),
        )
    assert engine.search("数据库", mode="keyword", limit=1) == []
    report = engine.verify()
    assert [problem.part for problem in report.problems] == ["keyword index"]
    assert engine.verify(repair=True).ok
    assert engine.search("数据库", mode="keyword", limit=1)[0].path == "zh-sqlite"


# -- the CLI ------------------------------------------------------------------------------------


def test_the_cli_indexes_cjk_files_and_finds_them_by_keyword(tmp_path, folder, fake_model):
    runner = CliRunner()
    index = tmp_path / "cli-idx"
    result = runner.invoke(cli, ["--index", str(index), "index", str(folder)])
    assert result.exit_code == 0, result.output
    for query, expected in [("润滑油", "zh-bike"), ("新幹線", "ja-train"), ("지하철", "ko-subway")]:
        for mode in ("keyword", "hybrid"):
            result = runner.invoke(cli, ["--index", str(index), "search", query, "--mode", mode, "--json", "-n", "3"])
            assert result.exit_code == 0, result.output
            found = [Path(hit["path"]).stem for hit in json.loads(result.output)]
            # (hybrid: see test_hybrid_search_uses_the_cjk_keyword_matches on the fake model)
            assert expected in (found[:1] if mode == "keyword" else found[:2]), (query, mode, found)
    result = runner.invoke(cli, ["--index", str(index), "search", "润滑油", "--mode", "keyword", "-n", "1"], color=True)
    assert result.exit_code == 0 and "zh-bike.txt" in result.output
    assert "\x1b[1m润滑油\x1b[0m" in result.output  # the word is marked in the snippet
    result = runner.invoke(cli, ["--index", str(index), "verify"])
    assert result.exit_code == 0, result.output


# -- the real model -------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_real_model_finds_cjk_documents_by_keyword_and_hybrid(tmp_path, folder):
    runner = CliRunner()
    index = tmp_path / "real-idx"
    result = runner.invoke(cli, ["--index", str(index), "index", str(folder)])
    assert result.exit_code == 0, result.output
    for query, expected in QUERIES:
        if expected is None:
            continue
        for mode in ("keyword", "hybrid"):
            result = runner.invoke(cli, ["--index", str(index), "search", query, "--mode", mode, "--json", "-n", "3"])
            assert result.exit_code == 0, result.output
            hits = json.loads(result.output)
            assert Path(hits[0]["path"]).stem == expected, (query, mode, [(h["path"], h["score"]) for h in hits])
    assert np.isfinite([hit["score"] for hit in hits]).all()


# -- BM25's shortcut over bigrams -----------------------------------------------------------------

COMMON_WORDS = ["数据", "系统", "问题"]  # in many of the texts below
RARE_WORDS = [a + b for a in "山水火木金土日月星云" for b in "花鸟鱼虫草竹石门桥路"]  # 100 two-character words


def test_the_shortcut_is_exact_over_cjk_bigrams(tmp_path, fake_embedder, monkeypatch):
    """Bigrams are ordinary tokens to bm25.py: split queries must return exactly FTS5's ranking."""
    import random

    from semsearch import bm25
    from semsearch.bm25 import match_expression
    from semsearch.retrieval import Retriever
    from semsearch.types import SearchFilter

    rng = random.Random(5)
    texts = []
    for _ in range(600):
        words = rng.sample(RARE_WORDS, rng.randint(2, 6)) + [w for w in COMMON_WORDS if rng.random() < 0.3]
        words += rng.choices(words, k=rng.randint(0, 3))
        rng.shuffle(words)
        texts.append("，".join(words) + "。")
    monkeypatch.setattr(bm25, "SPLIT_FROM_ROWS", 0)
    monkeypatch.setattr(bm25, "COMMON_SHARE", 0.1)  # a small index: its rare words are in 4% of it
    proven = []
    original = bm25.shortcut
    monkeypatch.setattr(bm25, "shortcut", lambda *a, **k: proven.append(r := original(*a, **k)) or r)
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as opened:
        opened.add_texts(texts, ids=[f"t{i}" for i in range(len(texts))])
        opened.vectors().refresh()
        retriever = Retriever(opened._store, opened.vectors(), opened._embed_query)
        for _ in range(30):
            query = "，".join(rng.sample(RARE_WORDS, 2) + rng.sample(COMMON_WORDS, 1))
            words, _stats = retriever._keyword_terms(query)
            got = retriever.keyword(query, 10, SearchFilter())
            expected = opened._store.keyword_search(match_expression(words), 10, SearchFilter(), weights=(1.0, 1.0))
            assert [chunk for chunk, _ in got] == [chunk for chunk, _ in expected], query
            assert [score for _, score in got] == pytest.approx([score for _, score in expected], rel=1e-9)
    assert sum(result is not None for result in proven) >= 15  # the shortcut really answered


# -- Ctrl-C inside SQLite's call to keyword_text() --------------------------------------------------


def test_sqlite_calls_python_only_for_text_beyond_ascii(tmp_path, fake_embedder, monkeypatch):
    """ASCII text is its own keyword text: the triggers index it without calling keyword_text()."""
    original, seen = cjk.keyword_text, []
    monkeypatch.setattr(cjk, "keyword_text", lambda text: seen.append(text) or original(text))
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as opened:
        opened.add_texts(["Plain ASCII text about tomatoes."], ids=["ascii"])
        assert seen == []
        opened.add_texts(["Café au lait.", "数据库。"], ids=["latin", "chinese"])
        assert set(seen) >= {"Café au lait.", "数据库。"}
        assert opened.search("tomatoes", mode="keyword", limit=1)[0].path == "ascii"
        assert opened.search("数据库", mode="keyword", limit=1)[0].path == "chinese"


def test_ctrl_c_inside_keyword_text_is_still_ctrl_c(tmp_path, fake_embedder, monkeypatch):
    """SQLite reports an exception in a function as "user-defined function raised exception";
    a KeyboardInterrupt there must still stop the write as Ctrl-C does, the write rolled back."""
    original = cjk.keyword_text

    def interrupted(text):
        if text and "中断" in text:
            raise KeyboardInterrupt
        return original(text)

    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as opened:
        opened.add_texts(["数据库是一个系统。"], ids=["first"])
        monkeypatch.setattr(cjk, "keyword_text", interrupted)
        summary = opened.add_texts(["这里会中断。"], ids=["second"])  # (the engine's way of saying Ctrl-C)
        assert summary.interrupted
        monkeypatch.setattr(cjk, "keyword_text", original)
        assert [doc.path for doc in opened._store.documents()] == ["first"]
        assert opened.verify().ok
        assert opened.search("系统", mode="keyword", limit=1)[0].path == "first"
