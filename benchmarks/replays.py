"""Quality ideas tried by replaying an index's own candidate lists (docs/quality.md, "What we tried").

    .venv/bin/python benchmarks/replays.py mixed INDEX_A INDEX_B scifact     # semantic from A, keyword from B
    .venv/bin/python benchmarks/replays.py title INDEX scifact               # the title as a vector of its own
    .venv/bin/python benchmarks/replays.py document-bm25 INDEX scifact       # BM25 over whole documents
    .venv/bin/python benchmarks/replays.py phrases INDEX scifact             # adjacent words as phrases / NEAR
    .venv/bin/python benchmarks/replays.py gap-weight INDEX scifact          # a fusion weight per query
    .venv/bin/python benchmarks/replays.py engine-variants INDEX scifact     # changes patched into the engine's hybrid
    .venv/bin/python benchmarks/replays.py granularity INDEX INDEX_128 scifact  # 128- and 254-token vectors, document BM25
    .venv/bin/python benchmarks/replays.py engine-granularity INDEX INDEX_128 scifact  # its best mix, through the engine
    .venv/bin/python benchmarks/replays.py centring INDEX scifact            # cosines less the collection's mean, hubs
    .venv/bin/python benchmarks/replays.py adapter INDEX scifact             # a query map fitted on the train split
    .venv/bin/python benchmarks/replays.py sentences INDEX scifact           # one vector per sentence
    .venv/bin/python benchmarks/replays.py pooling INDEX scifact             # IDF-weighted pooling of the query
    .venv/bin/python benchmarks/replays.py rewrite INDEX scifact             # the query's rarer words said again
    .venv/bin/python benchmarks/replays.py stress-cost INDEX scifact         # what saying them costs a search
    .venv/bin/python benchmarks/replays.py batch-size                        # onnxruntime texts per call

INDEX is a folder `semsearch eval` or `benchmarks/index_choices.py --work` built for the dataset
(e.g. /tmp/choices/scifact-fp32-254-32). Each side's 100 best documents are taken from the engine
(semantic and keyword, documents scored by their best chunk), turned into z-scores over those 100
and fused 0.5 : 0.5, a document missing from one side getting that side's lowest. This is simpler
than the engine's hybrid (chunk-level fusion, exact scores for one-sided candidates, feedback), so
a replay's level is below the engine's (SciFact 0.7299 against 0.7341): compare replays with the
``baseline`` line each prints, never with the engine's table.

``batch-size`` times ``OnnxEmbedder`` (the cached export of the default model, fp32 unless
``--precision int8``) on the first 400 SciFact abstracts with 1, 4 and 16 texts a call, two workers,
alternating rounds.

``engine-variants`` is not a replay: it runs ``semsearch eval``'s hybrid search through the engine
with one change patched into :class:`semsearch.retrieval.Retriever` at a time (so its baseline is
the engine's own figure): Rocchio feedback from the *fused* top chunks, BM25 with other k1 and b
(computed from the candidates' own tokens, exactly FTS5's formula), two extra terms added to
the fused score, the share of the query's IDF a chunk holds and its raw cosine, and each query
word's BM25 weighted by how much of the query's vector it carries. ``granularity``
and ``sentences`` score documents from the stored vectors of two indexes (or from sentences
embedded here, cached in ``--cache``) and from BM25 over whole documents.

``pooling`` and ``rewrite`` run ``semsearch eval``'s semantic and hybrid searches through the
engine with the query's vector made another way (:meth:`Retriever._vector` patched); their first
line is the engine as shipped. ``stress-cost`` times what ``rewrite`` would add to a semantic search.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BEIR = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data")) / "beir"

import semsearch  # noqa: E402
import semsearch.retrieval as retrieval  # noqa: E402
from semsearch import bm25 as fts_bm25  # noqa: E402
from semsearch.errors import SemsearchError  # noqa: E402
from semsearch.evaluation import Dataset, evaluate, indexable, load_dataset, score_run  # noqa: E402
from semsearch.fts import TOKENIZER  # noqa: E402
from semsearch.words import _WORD, STOPWORDS, keyword_terms  # noqa: E402

Scores = dict[str, dict[str, float]]  # query id -> document id -> score


class Replay:
    """One dataset's queries with the engine's semantic and keyword document lists from an index."""

    def __init__(self, dataset: Dataset, index: Path, *, semantic_from: Path | None = None) -> None:
        self.dataset = dataset
        self.ids = list(dataset.queries)
        self.texts = [dataset.queries[qid].strip() for qid in self.ids]
        self.semantic, self.vectors = self._side(semantic_from or index, "semantic")
        self.keyword, _ = self._side(index, "keyword")

    def _side(self, index: Path, mode: str) -> tuple[Scores, np.ndarray | None]:
        with semsearch.open(index, create=False) as engine:
            vectors = engine.embedder.embed(self.texts) if mode == "semantic" else None
            scores = {
                qid: {
                    hit.path: hit.score
                    for hit in engine.search(
                        text, limit=100, mode=mode, group_by_document=True,
                        vector=None if vectors is None else vectors[position : position + 1],
                    )
                }
                for position, (qid, text) in enumerate(zip(self.ids, self.texts))
            }
        return scores, vectors

    def ndcg(self, ranked: Mapping[str, list[str]]) -> float:
        return round(score_run(self.dataset.qrels, ranked)[0].ndcg_at_10, 4)

    def alone(self, side: Scores) -> float:
        return self.ndcg({qid: sorted(side[qid], key=side[qid].get, reverse=True) for qid in self.ids})

    def fused(self, sides: list[tuple[float, Scores]], weight: Callable[[str], float] | None = None) -> float:
        """nDCG@10 of the z-scored sides added with their weights (``weight(qid)`` replaces the
        first side's weight, the second getting the rest, when given)."""
        ranked = {}
        for qid in self.ids:
            parts = []
            for position, (share, side) in enumerate(sides):
                if weight is not None and len(sides) == 2:
                    share = weight(qid) if position == 0 else 1 - weight(qid)
                parts.append((share, *z_scores(top(side[qid]))))
            documents = set().union(*(part[1] for part in parts))
            total = {doc: sum(share * z.get(doc, low) for share, z, low, _ in parts) for doc in documents}
            ranked[qid] = sorted(total, key=total.get, reverse=True)[:100]
        return self.ndcg(ranked)

    def baseline(self) -> None:
        print(f"baseline: semantic {self.alone(self.semantic)}, keyword {self.alone(self.keyword)}, "
              f"fused 0.5/0.5 {self.fused([(0.5, self.semantic), (0.5, self.keyword)])}")


def database(index: Path) -> sqlite3.Connection:
    """The index's SQLite file, read-only; a missing one is an OSError naming it (one line)."""
    path = index / "semsearch.db"
    if not path.is_file():
        raise FileNotFoundError(f"no semsearch index at {index}")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def replayed(args: argparse.Namespace) -> Replay:
    """The replay of ``args.index`` on ``args.dataset``, its baseline printed."""
    replay = Replay(load_dataset(BEIR / args.dataset), args.index)
    replay.baseline()
    return replay


def top(scores: Mapping[str, float], depth: int = 100) -> dict[str, float]:
    return dict(sorted(scores.items(), key=lambda item: -item[1])[:depth])


def z_scores(scores: Mapping[str, float]) -> tuple[dict[str, float], float, float]:
    """The z-scores, the lowest one (for a document this side did not find), and the gap between
    the first two."""
    if not scores:
        return {}, 0.0, 0.0
    values = np.array(list(scores.values()))
    mean, spread = values.mean(), values.std() or 1.0
    z = {doc: (value - mean) / spread for doc, value in scores.items()}
    first, second = (sorted(z.values(), reverse=True) + [0.0, 0.0])[:2]
    return z, (values.min() - mean) / spread, first - second


def keyword_match(words: list[str]) -> str:
    return " OR ".join(f'"{word}"' for word in words)


def mixed(args: argparse.Namespace) -> None:
    dataset = load_dataset(BEIR / args.dataset)
    Replay(dataset, args.index_b).baseline()  # both sides from INDEX_B
    replay = Replay(dataset, args.index_b, semantic_from=args.index_a)
    for share in (0.4, 0.5, 0.6):
        print(f"semantic from {args.index_a.name}, keyword from {args.index_b.name}, semantic weight {share}: "
              f"{replay.fused([(share, replay.semantic), (1 - share, replay.keyword)])}")


def title(args: argparse.Namespace) -> None:
    replay = replayed(args)
    documents = [doc for doc in replay.dataset.corpus if doc.title.strip() and doc.text.strip()]
    with semsearch.open(args.index, create=False) as engine:
        titles = engine.embedder.embed([" ".join(doc.title.split()) for doc in documents])
    similarity = replay.vectors @ titles.T
    by_title = {
        qid: {documents[j].id: float(similarity[i, j]) for j in np.argsort(-similarity[i])[:100]}
        for i, qid in enumerate(replay.ids)
    }
    as_chunk = {qid: dict(replay.semantic[qid]) for qid in replay.ids}
    for qid in replay.ids:
        for doc, value in by_title[qid].items():
            as_chunk[qid][doc] = max(as_chunk[qid].get(doc, -1.0), value)
    print(f"titles alone: {replay.alone(by_title)}")
    print(f"the title as one more chunk: {replay.fused([(0.5, as_chunk), (0.5, replay.keyword)])}")
    for share in (0.1, 0.2, 0.3):
        print(f"the title as a third side, weight {share}: "
              f"{replay.fused([(0.5, replay.semantic), (0.5, replay.keyword), (share, by_title)])}")


def document_bm25(args: argparse.Namespace) -> None:
    replay = replayed(args)
    whole = whole_documents_bm25(replay.dataset, dict(zip(replay.ids, replay.texts)))
    print(f"keyword over whole documents: {replay.alone(whole)}")
    print(f"fused with semantic: {replay.fused([(0.5, replay.semantic), (0.5, whole)])}")
    print(f"both keyword sides at 0.25: "
          f"{replay.fused([(0.5, replay.semantic), (0.25, replay.keyword), (0.25, whole)])}")


def phrases(args: argparse.Namespace) -> None:
    from semsearch.fts import prepare_connection

    replay = replayed(args)
    connection = database(args.index)
    prepare_connection(connection)
    path_of = dict(connection.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id"))

    def bm25(match: str) -> dict[str, float]:
        best: dict[str, float] = {}
        if match:
            for row, score in connection.execute(
                "SELECT rowid, -bm25(chunk_fts) FROM chunk_fts WHERE chunk_fts MATCH ?", (match,)
            ):
                best[path_of[row]] = max(best.get(path_of[row], score), score)
        return best

    def pairs(text: str, near: int) -> str:
        words = [word.lower() for word in _WORD.findall(text)]
        found = [
            f'NEAR("{a}" "{b}", {near})' if near else f'"{a} {b}"'
            for a, b in zip(words, words[1:]) if a not in STOPWORDS and b not in STOPWORDS
        ]
        return " OR ".join(dict.fromkeys(found))

    words = {qid: bm25(keyword_match(keyword_terms(text))) for qid, text in zip(replay.ids, replay.texts)}
    for near in (0, 3, 8):
        found = {qid: bm25(pairs(text, near)) for qid, text in zip(replay.ids, replay.texts)}
        for share in (0.25, 0.5, 1.0):
            side = {qid: {doc: words[qid].get(doc, 0.0) + share * found[qid].get(doc, 0.0)
                          for doc in set(words[qid]) | set(found[qid])} for qid in replay.ids}
            kind = f"NEAR {near}" if near else "phrases"
            print(f"{kind}, weight {share}: keyword {replay.alone(side)}, "
                  f"fused {replay.fused([(0.5, replay.semantic), (0.5, side)])}")


def gap_weight(args: argparse.Namespace) -> None:
    replay = replayed(args)
    for steep in (0.5, 1.0, 2.0):
        def weight(qid: str, steep: float = steep) -> float:
            semantic_gap = z_scores(top(replay.semantic[qid]))[2]
            keyword_gap = z_scores(top(replay.keyword[qid]))[2]
            return float(1 / (1 + np.exp(-steep * (semantic_gap - keyword_gap))))

        print(f"semantic weight from the top gaps, g = {steep}: "
              f"{replay.fused([(0.5, replay.semantic), (0.5, replay.keyword)], weight)}")


def whole_documents_bm25(dataset: Dataset, queries: Mapping[str, str], depth: int | None = 100) -> Scores:
    """Each query's (id -> text) ``depth`` best documents (all that match: ``None``) by BM25 over
    the whole title + text (a scratch FTS5 table, the index's tokenizer)."""
    table = sqlite3.connect(":memory:")
    table.execute(f"CREATE VIRTUAL TABLE d USING fts5(id UNINDEXED, title, text, tokenize='{TOKENIZER}')")
    for doc in dataset.corpus:
        fields = indexable(doc)
        if fields:
            table.execute("INSERT INTO d VALUES (?, ?, ?)", (doc.id, *fields))
    whole: Scores = {}
    for qid, text in queries.items():
        match = keyword_match(keyword_terms(text))
        whole[qid] = dict(table.execute(
            "SELECT id, -bm25(d) FROM d WHERE d MATCH ? ORDER BY bm25(d) LIMIT ?", (match, depth or -1)
        ).fetchall()) if match else {}
    return whole


def per_document(
    replay: Replay, owners: list[str], vectors: np.ndarray, *, similarity: np.ndarray | None = None
) -> tuple[Scores, Scores]:
    """From vectors each belonging to a document: each query's 100 best documents by their best
    vector's cosine (or ``similarity``, queries × vectors, when given), and by the cosine of their
    vectors' normalised mean."""
    names = sorted(set(owners))
    number = {name: position for position, name in enumerate(names)}
    owner = np.array([number[name] for name in owners])
    order = np.argsort(owner, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(owner[order])) + 1]
    similarity = replay.vectors @ vectors.T if similarity is None else similarity
    best = np.maximum.reduceat(similarity[:, order], starts, axis=1)
    means = np.add.reduceat(vectors[order], starts, axis=0)
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    centroid = replay.vectors @ means.T
    documents = [names[owner[order][start]] for start in starts]

    def tops(matrix: np.ndarray) -> Scores:
        return {qid: {documents[j]: float(matrix[i, j]) for j in np.argsort(-matrix[i])[:100]}
                for i, qid in enumerate(replay.ids)}

    return tops(best), tops(centroid)


def stored_vectors(index: Path) -> tuple[list[str], np.ndarray]:
    """Every chunk's document and stored vector (float32, as SQLite keeps them)."""
    connection = database(index)
    rows = connection.execute(
        "SELECT d.path, c.vector FROM chunks c JOIN documents d ON d.id = c.document_id ORDER BY c.id"
    ).fetchall()
    return [path for path, _ in rows], np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in rows])


def centring(args: argparse.Namespace) -> None:
    """Cosines corrected for the collection's shape, from the stored vectors: less a share of each
    chunk's similarity to the mean vector, both sides centred on it, or less a share of the chunk's
    mean cosine to its 10 nearest chunks (hubness, as CSLS corrects it; sets up to 12,000 chunks)."""
    replay = replayed(args)
    owners, vectors = stored_vectors(args.index)
    mean = vectors.mean(axis=0)

    def report(name: str, similarity: np.ndarray) -> None:
        side, _ = per_document(replay, owners, vectors, similarity=similarity)
        print(f"{name}: semantic {replay.alone(side)}, fused {replay.fused([(0.5, side), (0.5, replay.keyword)])}")

    for share in (0.5, 1.0):
        report(f"less {share} × the similarity to the mean", replay.vectors @ vectors.T - share * (vectors @ mean))
    centred = vectors - mean
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    queries = replay.vectors - mean
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    report("query and chunks centred", queries @ centred.T)
    if len(vectors) <= 12_000:
        neighbours = vectors @ vectors.T
        np.fill_diagonal(neighbours, -1.0)
        hub = np.sort(neighbours, axis=1)[:, -10:].mean(axis=1)
        for share in (0.25, 0.5):
            report(f"less {share} × the mean cosine to the 10 nearest chunks", replay.vectors @ vectors.T - share * hub)


def granularity(args: argparse.Namespace) -> None:
    replay = replayed(args)
    chunk_best, chunk_mean = per_document(replay, *stored_vectors(args.index))
    window_best, window_mean = per_document(replay, *stored_vectors(args.index_128))
    whole = whole_documents_bm25(replay.dataset, dict(zip(replay.ids, replay.texts)))
    chunk_bm25 = replay.keyword
    print(f"alone: best chunk {replay.alone(chunk_best)}, chunks' mean {replay.alone(chunk_mean)}, "
          f"best 128-token window {replay.alone(window_best)}, windows' mean {replay.alone(window_mean)}, "
          f"BM25 per chunk {replay.alone(chunk_bm25)}, BM25 per document {replay.alone(whole)}")
    mixes = {
        "chunks + BM25 per chunk (the baseline)": [(0.5, chunk_best), (0.5, chunk_bm25)],
        "windows + BM25 per chunk": [(0.5, window_best), (0.5, chunk_bm25)],
        "chunks + BM25 per document": [(0.5, chunk_best), (0.5, whole)],
        "windows + BM25 per document": [(0.5, window_best), (0.5, whole)],
        "windows + chunks + BM25 per document": [(0.25, window_best), (0.25, chunk_best), (0.5, whole)],
        "windows + windows' mean + BM25 per chunk": [(0.25, window_best), (0.25, window_mean), (0.5, chunk_bm25)],
        "windows + windows' mean + BM25 per document": [(0.25, window_best), (0.25, window_mean), (0.5, whole)],
        "chunks + chunks' mean + BM25 per document": [(0.25, chunk_best), (0.25, chunk_mean), (0.5, whole)],
    }
    for name, sides in mixes.items():
        print(f"{name}: {replay.fused(sides)}")


SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")


def sentences(args: argparse.Namespace) -> None:
    replay = replayed(args)
    texts, owners = [], []
    for doc in replay.dataset.corpus:
        fields = indexable(doc)
        for sentence in SENTENCE_END.split(" ".join(fields[1].split())) if fields else ():
            texts.append(sentence)
            owners.append(doc.id)
    cache = args.cache / f"sentences-{args.dataset}.npy"
    if cache.exists():
        vectors = np.load(cache)
    else:
        started = time.perf_counter()
        with semsearch.open(args.index, create=False) as engine:
            vectors = engine.embedder.embed(texts)
        args.cache.mkdir(parents=True, exist_ok=True)
        np.save(cache, vectors)
        print(f"embedded {len(texts)} sentences in {time.perf_counter() - started:.0f} s")
    best, _ = per_document(replay, owners, vectors)
    print(f"best sentence alone: {replay.alone(best)}")
    for name, sides in {
        "sentences + BM25": [(0.5, best), (0.5, replay.keyword)],
        "sentences + chunks + BM25": [(0.25, best), (0.25, replay.semantic), (0.5, replay.keyword)],
        "sentences 0.3 + chunks 0.3 + BM25 0.4": [(0.3, best), (0.3, replay.semantic), (0.4, replay.keyword)],
    }.items():
        print(f"{name}: {replay.fused(sides)}")


# -- changes patched into the engine's hybrid search (engine-variants) ----------------------------


_engine: list = []  # the engine engine_hybrid has open, for a variant that embeds more than the query


def engine_hybrid(index: Path, dataset: Dataset) -> float:
    with semsearch.open(index, create=False) as engine:
        _engine[:] = [engine]
        found = evaluate(dataset, modes=("hybrid",), engine=engine)
    return round(found.results[0].overall.ndcg_at_10, 4)


def fused_feedback(depth: int, weight: float) -> Callable:
    """Hybrid search, then the query vector moved towards the fused top ``depth`` chunks (Rocchio,
    ``weight``), the candidates' cosines taken again from their stored vectors and fused again."""
    shipped = retrieval.Retriever.hybrid

    def hybrid(self, query, depth_asked, where):  # type: ignore[no-untyped-def]
        first = shipped(self, query, depth_asked, where)
        settings = self.settings
        if not first:
            return first
        _, best = self._vectors.stored_vectors([chunk for chunk, _ in first[:depth]])
        own = self._unmoved.get(query, self._vector(query))
        moved = own + weight * best.mean(axis=0)
        moved = (moved / np.linalg.norm(moved)).astype(np.float32)
        keyword = self._keyword_scores[query]
        ids, vectors = self._vectors.stored_vectors(sorted({chunk for chunk, _ in first} | set(keyword)))
        semantic = dict(zip(ids.tolist(), retrieval.cosines(vectors, moved).tolist()))
        keyword_ranked = sorted(((chunk, keyword.get(chunk, 0.0)) for chunk in semantic), key=lambda p: -p[1])
        return retrieval.convex_fusion(
            semantic, dict(keyword_ranked), semantic_weight=settings.semantic_weight,
            semantic_scale=retrieval.normaliser(sorted(semantic.items(), key=lambda p: -p[1])[: settings.candidates], "zscore"),
            keyword_scale=retrieval.normaliser(retrieval.keyword_window(keyword_ranked, settings.candidates), "zscore"),
        )[:depth_asked]

    return hybrid


def word_importance(retriever, query: str, terms: list[str]) -> list[float]:  # type: ignore[no-untyped-def]
    """How much each of the query's words carries of its meaning, by the model's own reading: one
    minus the cosine between the query's vector and the vector of the query without that word,
    scaled so that the words' mean is 1."""
    whole = retriever._vector(query)
    drops = []
    for term in terms:
        without = re.sub(rf"(?i)\b{re.escape(term)}\b", " ", query)
        vector = np.asarray(_engine[0]._embed_query(" ".join(without.split()) or query), dtype=np.float32).reshape(-1)
        drops.append(max(1.0 - float(vector @ whole), 1e-6))
    mean = sum(drops) / len(drops)
    return [drop / mean for drop in drops]


def rescored(*, k1: float = fts_bm25.K1, b: float = fts_bm25.B, coverage: float = 0.0, cosine: float = 0.0,
             importance: float = 0.0) -> Callable:
    """convex_fusion with BM25 computed again for every candidate with ``k1`` and ``b`` (the
    rows' own token counts, FTS5's formula: k1 1.2, b 0.75 gives the engine's scores back), plus
    ``coverage`` × the share of the query's IDF the chunk holds and ``cosine`` × its cosine;
    ``importance``: each word's BM25 term weighted by ``1 - importance + importance ×`` its
    :func:`word_importance`."""
    current: dict = {}
    shipped_hybrid = retrieval.Retriever.hybrid

    def hybrid(self, query, depth, where):  # type: ignore[no-untyped-def]
        current["retriever"], current["query"] = self, query
        return shipped_hybrid(self, query, depth, where)

    def fusion(semantic, keyword, *, semantic_weight, semantic_scale, keyword_scale):  # type: ignore[no-untyped-def]
        retriever, query = current["retriever"], current["query"]
        items = list(semantic.keys() | keyword.keys())
        terms, stats = retriever._keyword_terms(query)
        tokens = retrieval._single_tokens(terms, stats) or []
        rows = retriever._store.keyword_row_tokens(items, list(dict.fromkeys(tokens))) if tokens else {}
        idf = {token: fts_bm25.idf(stats.rows, stats.rows_with.get(token, 0)) for token in tokens}
        keyword = dict(keyword)
        if ((k1, b) != (fts_bm25.K1, fts_bm25.B) or importance) and tokens:
            weight = dict.fromkeys(tokens, 1.0)
            if importance:
                for token, carried in zip(tokens, word_importance(retriever, query, terms)):
                    weight[token] = 1 - importance + importance * carried
            for item in items:
                row, total = rows.get(item), 0.0
                for token in tokens:
                    counts = row.counts.get(token) if row else None
                    if counts:
                        count = fts_bm25.frequency((1.0, 1.0), counts)
                        total += weight[token] * idf[token] * count * (k1 + 1) / (
                            count + k1 * (1 - b + b * row.length / stats.average_length))
                keyword[item] = total
            ranked = sorted(keyword.items(), key=lambda p: -p[1])
            keyword_scale = retrieval.normaliser(retrieval.keyword_window(ranked, 100), "zscore")
        whole = sum(idf[token] for token in tokens)
        fused = {}
        for item in items:
            score = semantic_weight * semantic_scale(semantic[item]) + (1 - semantic_weight) * keyword_scale(keyword[item])
            if coverage and whole > 0:
                row = rows.get(item)
                score += coverage * sum(idf[token] for token in tokens if row and row.counts.get(token)) / whole
            fused[item] = score + cosine * semantic[item]
        return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))

    return hybrid, fusion


def engine_variants(args: argparse.Namespace) -> None:
    dataset = load_dataset(BEIR / args.dataset)
    shipped_hybrid, shipped_fusion = retrieval.Retriever.hybrid, retrieval.convex_fusion
    print(f"engine, as shipped: hybrid {engine_hybrid(args.index, dataset)}")
    variants: list[tuple[str, Callable, Callable]] = []
    for depth, weight in ((2, 0.5), (3, 0.3), (3, 0.5), (3, 0.7), (5, 0.3), (5, 1.0), (10, 1.0)):
        variants.append((f"feedback from the fused top {depth}, weight {weight}", fused_feedback(depth, weight), shipped_fusion))
    for k1, b in ((0.6, 0.4), (0.6, 0.3), (0.5, 0.4), (0.8, 0.4), (0.9, 0.4), (1.2, 0.5), (0.6, 0.75)):
        variants.append((f"BM25 k1 {k1}, b {b}", *rescored(k1=k1, b=b)))
    for share in (0.5, 1.0, 2.0):
        variants.append((f"plus {share} × the query IDF share held", *rescored(coverage=share)))
    for share in (2.0, 4.0):
        variants.append((f"plus {share} × the cosine", *rescored(cosine=share)))
    for share in (1.0, 0.5, 0.25, -0.25, -0.5):
        variants.append((f"each word's BM25 weighted by its importance to the query's vector, share {share}",
                         *rescored(importance=share)))
    for name, hybrid, fusion in variants:
        retrieval.Retriever.hybrid, retrieval.convex_fusion = hybrid, fusion
        try:
            print(f"{name}: hybrid {engine_hybrid(args.index, dataset)}", flush=True)
        finally:
            retrieval.Retriever.hybrid, retrieval.convex_fusion = shipped_hybrid, shipped_fusion


def engine_granularity(args: argparse.Namespace) -> None:
    """The best mix of ``granularity`` through the engine: each candidate chunk of hybrid search
    also scored by the best 128-token window of its document overlapping it (the second index's
    stored vectors, by character range) and by BM25 over its whole document; z-scores over the
    top 100 as the engine takes them. Only hybrid's own candidates are scored (a document only
    these sides would find is not added), so read it as an estimate."""
    dataset = load_dataset(BEIR / args.dataset)

    def chunks(index: Path) -> list[tuple]:
        connection = database(index)
        return connection.execute(
            "SELECT c.id, d.path, c.char_start, c.char_end, c.vector FROM chunks c JOIN documents d ON d.id = c.document_id"
        ).fetchall()

    where = {chunk: (path, start, end) for chunk, path, start, end, _ in chunks(args.index)}
    windows: dict[str, list[tuple[int, int, np.ndarray]]] = {}
    for _, path, start, end, blob in chunks(args.index_128):
        windows.setdefault(path, []).append((start, end, np.frombuffer(blob, dtype=np.float32)))
    texts = {qid: text.strip() for qid, text in dataset.queries.items()}
    whole = {texts[qid]: found for qid, found in whole_documents_bm25(dataset, texts, depth=None).items()}
    current: dict = {}
    shipped_hybrid, shipped_fusion = retrieval.Retriever.hybrid, retrieval.convex_fusion

    def hybrid(self, query, depth, where_):  # type: ignore[no-untyped-def]
        current["retriever"], current["query"] = self, query
        return shipped_hybrid(self, query, depth, where_)

    def scaled(values: Mapping, window: list[float]) -> Callable[[float], float]:
        top_values = (sorted(window, reverse=True)[:100] + [0.0] * 100)[:100]
        mean, spread = float(np.mean(top_values)), float(np.std(top_values)) or 1.0
        return lambda value: (value - mean) / spread

    def mix(chunk_semantic: float, window_semantic: float, chunk_keyword: float, document_keyword: float) -> Callable:
        def fusion(semantic, keyword, *, semantic_weight, semantic_scale, keyword_scale):  # type: ignore[no-untyped-def]
            retriever, query = current["retriever"], current["query"]
            items = list(semantic.keys() | keyword.keys())
            vector = retriever._unmoved.get(query, retriever._vector(query))
            best_window = {}
            for item in items:
                path, start, end = where[item]
                found = [float(v @ vector) for s, e, v in windows.get(path, []) if s < end and e > start]
                best_window[item] = max(found, default=-1.0)
            documents = whole.get(query.strip(), {})
            window_scale = scaled(best_window, list(best_window.values()))
            document_scale = scaled(documents, list(documents.values()))
            fused = {
                item: chunk_semantic * semantic_scale(semantic[item]) + window_semantic * window_scale(best_window[item])
                + chunk_keyword * keyword_scale(keyword[item])
                + document_keyword * document_scale(documents.get(where[item][0], 0.0))
                for item in items
            }
            return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))

        return fusion

    for weights in ((0.5, 0, 0.5, 0), (0.5, 0, 0, 0.5), (0.25, 0.25, 0.5, 0), (0.25, 0.25, 0, 0.5), (0.25, 0.25, 0.25, 0.25)):
        retrieval.Retriever.hybrid, retrieval.convex_fusion = hybrid, mix(*weights)
        try:
            print(f"chunk cosine {weights[0]}, window cosine {weights[1]}, chunk BM25 {weights[2]}, "
                  f"document BM25 {weights[3]}: hybrid {engine_hybrid(args.index, dataset)}", flush=True)
        finally:
            retrieval.Retriever.hybrid, retrieval.convex_fusion = shipped_hybrid, shipped_fusion


def adapter(args: argparse.Namespace) -> None:
    """A linear map on query vectors (384 × 384, from the identity) fitted on the dataset's
    ``train`` split: each train query's relevant documents' chunks against every chunk (softmax
    over cosines × 20), ``decay`` × its squared distance from the identity; then the test split
    through the engine with the map applied to every query vector. Also counts the documents both
    splits judge relevant: what such a fit can learn by heart."""
    import torch

    train = load_dataset(BEIR / args.dataset, split="train")
    test = load_dataset(BEIR / args.dataset)
    shared = {doc for judged in train.qrels.values() for doc, grade in judged.items() if grade > 0} & {
        doc for judged in test.qrels.values() for doc, grade in judged.items() if grade > 0}
    relevant_to_test = {doc for judged in test.qrels.values() for doc, grade in judged.items() if grade > 0}
    print(f"{len(shared)} of the {len(relevant_to_test)} documents relevant to a test query are relevant to a train query too")
    unseen = {qid for qid, judged in test.qrels.items() if not shared & {doc for doc, grade in judged.items() if grade > 0}}
    owners, vectors = stored_vectors(args.index)
    rows: dict[str, list[int]] = {}
    for row, owner in enumerate(owners):
        rows.setdefault(owner, []).append(row)
    ids = list(train.queries)
    with semsearch.open(args.index, create=False) as engine:
        queries = torch.tensor(engine.embedder.embed([train.queries[qid] for qid in ids]))
    positive = torch.zeros(len(ids), len(vectors), dtype=torch.bool)
    for position, qid in enumerate(ids):
        for doc, grade in train.qrels[qid].items():
            if grade > 0:
                positive[position, rows.get(doc, [])] = True
    kept = positive.any(dim=1)
    queries, positive, chunks = queries[kept], positive[kept], torch.tensor(vectors)
    identity = torch.eye(chunks.shape[1])
    shipped = retrieval.Retriever._vector
    print(f"as shipped: {engine_modes(args.index, test, unseen)}")
    for decay in args.decay:
        torch.manual_seed(0)
        weights = identity.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([weights], lr=1e-3)
        for _ in range(400):
            moved = queries @ weights
            logits = 20.0 * (moved / moved.norm(dim=1, keepdim=True)) @ chunks.T
            loss = (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~positive, -1e9), 1)).mean()
            loss = loss + decay * ((weights - identity) ** 2).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        fitted = weights.detach().numpy().astype(np.float32)

        def vector(self, query, fitted=fitted):  # type: ignore[no-untyped-def]
            if query not in self._query_vectors:
                moved = np.asarray(self._embed_query(query), dtype=np.float32).reshape(-1) @ fitted
                self._query_vectors[query] = (moved / np.linalg.norm(moved)).astype(np.float32)
            return self._query_vectors[query]

        retrieval.Retriever._vector = vector
        try:
            print(f"fitted on {int(kept.sum())} train queries, decay {decay}: {engine_modes(args.index, test, unseen)}", flush=True)
        finally:
            retrieval.Retriever._vector = shipped


def pooling(args: argparse.Namespace) -> None:
    """Query vectors pooled with each word piece weighted by an IDF (to the power ``p``) instead
    of the plain mean the model was trained with; documents keep theirs. ``--idf pieces``: the
    piece's own, counted over the collection's documents (the special tokens at the query's mean
    weight); ``--idf words``: BM25's IDF of the word the piece belongs to, from the index's
    keyword statistics as the keyword side reads them (a stopword or a sign weighs 0, the special
    tokens the query's mean). Through the engine, like ``adapter``."""
    from collections import Counter

    from semsearch.onnx_embedder import pool

    dataset = load_dataset(BEIR / args.dataset)
    with semsearch.open(args.index, create=False) as engine:
        model = engine._query_model()
    tokenizer = model._tokenizer
    texts = [" ".join(fields) for fields in map(indexable, dataset.corpus) if fields]
    frequency: Counter = Counter()
    if args.idf == "pieces":
        for encoding in tokenizer.encode_batch(texts):
            frequency.update(set(encoding.ids))
    (sample,) = tokenizer.encode_batch(["a"])
    specials = {sample.ids[0], sample.ids[-1]}

    def piece_weights(retriever, query: str, encoding) -> np.ndarray:  # type: ignore[no-untyped-def]
        if args.idf == "pieces":
            return np.asarray([math.log((len(texts) + 1) / (frequency[i] + 0.5)) for i in encoding.ids], dtype=np.float32)
        terms, stats = retriever._keyword_terms(query)
        weights = np.zeros(len(encoding.ids), dtype=np.float32)
        for position, word in enumerate(encoding.word_ids):
            if word is None:
                continue
            start, end = encoding.word_to_chars(word)
            found = keyword_terms(query[start:end])
            tokens = stats.tokens.get(found[0], ()) if found and stats is not None else ()
            if len(tokens) == 1:
                weights[position] = fts_bm25.idf(stats.rows, stats.rows_with.get(tokens[0], 0))
        return weights

    shipped = retrieval.Retriever._vector
    print(f"as shipped: {engine_modes(args.index, dataset)}")
    for power in args.power:
        pooled: dict[str, np.ndarray] = {}

        def vector(self, query, pooled=pooled, power=power):  # type: ignore[no-untyped-def]
            if query not in pooled:
                (encoding,) = tokenizer.encode_batch([query])
                ids = np.asarray([encoding.ids], dtype=np.int64)
                inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
                (tokens,) = model._session.run(["token_embeddings"], {name: inputs[name] for name in model._inputs})
                weights = np.clip(piece_weights(self, query, encoding), 0.0, None) ** power
                plain = [position for position, i in enumerate(encoding.ids) if i not in specials]
                mean = float(weights[plain].mean()) if plain and weights[plain].sum() > 0 else 1.0
                weights[[position for position in range(len(weights)) if position not in plain]] = mean
                if weights.sum() <= 0:
                    weights[:] = 1.0
                vector = pool(tokens, weights[None, :], ("mean",))[0]
                pooled[query] = (vector / np.linalg.norm(vector)).astype(np.float32)
            return pooled[query]

        retrieval.Retriever._vector = vector
        try:
            print(f"IDF^{power} ({args.idf}) pooling of the query: {engine_modes(args.index, dataset)}", flush=True)
        finally:
            retrieval.Retriever._vector = shipped


def rarer_words(retriever, query: str, share: float) -> list[str]:  # type: ignore[no-untyped-def]
    """The query's words whose BM25 IDF in the index is at least ``share`` × the query's mean,
    from the keyword statistics hybrid search reads."""
    terms, stats = retriever._keyword_terms(query)
    if stats is None:
        return []
    weights = {}
    for term in dict.fromkeys(terms):
        held = fts_bm25.rows_holding(term, stats)
        if held is not None:
            weights[term] = fts_bm25.idf(stats.rows, held)
    mean = sum(weights.values()) / len(weights) if weights else 0.0
    return [term for term, weight in weights.items() if mean > 0 and weight >= share * mean]


def rewrite(args: argparse.Namespace) -> None:
    """The query's rarer words said again: the query's vector is that of the query followed by
    its :func:`rarer_words` (so a plain mean pooling leans towards them, as IDF-weighted pooling
    does, through any embedder). Through the engine, like ``adapter``."""
    dataset = load_dataset(BEIR / args.dataset)
    with semsearch.open(args.index, create=False) as engine:
        model = engine._query_model()
    shipped = retrieval.Retriever._vector
    print(f"as shipped: {engine_modes(args.index, dataset)}")
    for share in args.share:
        rewritten: dict[str, np.ndarray] = {}

        def vector(self, query, rewritten=rewritten, share=share):  # type: ignore[no-untyped-def]
            if query not in rewritten:
                rare = rarer_words(self, query, share)
                rewritten[query] = model.embed([f"{query} {' '.join(rare)}" if rare else query])[0]
            return rewritten[query]

        retrieval.Retriever._vector = vector
        try:
            print(f"words at or above {share} × the mean IDF said again: {engine_modes(args.index, dataset)}", flush=True)
        finally:
            retrieval.Retriever._vector = shipped


def stress_cost(args: argparse.Namespace) -> None:
    """What ``rewrite --share 1`` would cost a semantic search built into the engine: each query
    searched (``limit=10``, nothing kept from before) as it is, and with its vector made as a
    search would make it (the query embedded, for relevance, whose curve was fitted on it; the
    keyword statistics; the query with its rarer words embedded), in alternating order, in one
    warm process; the median and 90th percentile in ms."""
    dataset = load_dataset(BEIR / args.dataset)
    texts = [text.strip() for text in dataset.queries.values()][: args.queries]
    shipped = retrieval.Retriever._vector

    def stressed(self, query):  # type: ignore[no-untyped-def]
        if query not in self._query_vectors:
            shipped(self, query)
            rare = rarer_words(self, query, 1.0)
            if rare:
                self._query_vectors[query] = np.asarray(
                    self._embed_query(f"{query} {' '.join(rare)}"), dtype=np.float32).reshape(-1)
        return self._query_vectors[query]

    times: dict[str, list[float]] = {"with": [], "without": []}
    with semsearch.open(args.index, create=False) as engine:
        for text in texts[:20]:  # warm: the model, the vectors, SQLite's pages
            engine.search(text, limit=10, mode="semantic")
        for position, text in enumerate(texts):
            for label in (("with", "without") if position % 2 else ("without", "with")):
                engine._query_vectors.clear()
                retrieval.Retriever._vector = stressed if label == "with" else shipped
                try:
                    started = time.perf_counter()
                    engine.search(text, limit=10, mode="semantic")
                    times[label].append((time.perf_counter() - started) * 1000)
                finally:
                    retrieval.Retriever._vector = shipped
    for label, found in times.items():
        print(f"semantic search {label} the rarer words: p50 {np.percentile(found, 50):.1f} ms, "
              f"p90 {np.percentile(found, 90):.1f} ms over {len(found)} queries")


def engine_modes(index: Path, dataset: Dataset, unseen: set[str] | None = None) -> str:
    """nDCG@10 per mode, and over the ``unseen`` queries alone when given."""
    with semsearch.open(index, create=False) as engine:
        found = evaluate(dataset, modes=("semantic", "hybrid"), engine=engine)
    parts = []
    for result in found.results:
        part = f"{result.mode} {result.overall.ndcg_at_10:.4f}"
        if unseen:
            alone = [metrics.ndcg_at_10 for qid, metrics in result.per_query.items() if qid in unseen]
            part += f" ({float(np.mean(alone)):.4f} over the {len(alone)} with no such document)"
        parts.append(part)
    return ", ".join(parts)


def batch_size(args: argparse.Namespace) -> None:
    from semsearch.embedder import DEFAULT_MODEL
    from semsearch.model_cache import query_model_dir
    from semsearch.onnx_embedder import OnnxEmbedder

    directory = query_model_dir(DEFAULT_MODEL)
    if not OnnxEmbedder.available(directory, args.precision):
        sys.exit(f"no {args.precision} export in {directory}: index anything at that precision first")
    with open(BEIR / "scifact" / "corpus.jsonl", encoding="utf-8") as corpus:
        docs = [json.loads(line) for _, line in zip(range(400), corpus)]
    texts = [f"{doc['title']}\n{doc['text']}" for doc in docs]
    times: dict[int, list[float]] = {1: [], 4: [], 16: []}
    for _ in range(args.rounds):
        for size in times:
            embedder = OnnxEmbedder(directory, precision=args.precision, batch_size=size, workers=2)
            embedder.embed(texts[:8])  # warm-up
            started = time.perf_counter()
            embedder.embed(texts)
            times[size].append(time.perf_counter() - started)
    for size, taken in times.items():
        print(f"{args.precision}, {size} text(s) a call: {statistics.median(taken):.2f} s "
              f"(median of {len(taken)}: {', '.join(f'{t:.2f}' for t in taken)})")


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    def subcommand(name: str, run: Callable, *indexes: str) -> argparse.ArgumentParser:
        """A subcommand taking the index folders named (none: no dataset either), then the dataset."""
        command = commands.add_parser(name)
        for index in indexes:
            command.add_argument(index, type=Path)
        if indexes:
            command.add_argument("dataset")
        command.set_defaults(run=run)
        return command

    subcommand("mixed", mixed, "index_a", "index_b")
    for name, run in (("title", title), ("document-bm25", document_bm25), ("phrases", phrases),
                      ("gap-weight", gap_weight), ("engine-variants", engine_variants), ("centring", centring)):
        subcommand(name, run, "index")
    subcommand("granularity", granularity, "index", "index_128")
    subcommand("engine-granularity", engine_granularity, "index", "index_128")
    subcommand("adapter", adapter, "index").add_argument("--decay", type=float, nargs="+", default=[1.0, 0.1, 0.01])
    command = subcommand("pooling", pooling, "index")
    command.add_argument("--power", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    command.add_argument("--idf", choices=("pieces", "words"), default="pieces")
    subcommand("rewrite", rewrite, "index").add_argument("--share", type=float, nargs="+", default=[0.0, 1.0, 1.5])
    subcommand("stress-cost", stress_cost, "index").add_argument("--queries", type=positive, default=300)
    subcommand("sentences", sentences, "index").add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "semsearch-replays")
    command = subcommand("batch-size", batch_size)
    command.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    command.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    try:
        args.run(args)
    except (SemsearchError, OSError) as error:  # a missing index or dataset: one line, not a traceback
        sys.exit(f"replays.py: {error}")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
