"""Ranking: semantic (FAISS), keyword (BM25 over SQLite FTS5) and their fusion.

Each retriever returns ``(chunk_id, score)`` pairs, best first. A filtered search still returns
the best ``limit`` matching chunks: the keyword side filters in SQL; the semantic side first
searches deeper and keeps the chunks that pass (cheap when the filter passes many), and when too
few pass, searches only the allowed chunks, which SQL lists (cheap when the filter passes few).

Hybrid search fuses the two rankings with a convex combination of normalised scores (the
defaults in :class:`FusionSettings` were chosen by measurement on five BEIR datasets; see
docs/quality.md). Reciprocal rank fusion stays available as ``method="rrf"``. An optional
cross-encoder can rerank the fused top (:class:`Reranker`); none ships with semsearch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from semsearch import bm25, cjk
from semsearch.bm25 import match_expression
from semsearch.fts import TermStatistics
from semsearch.memory_vectors import cosines
from semsearch.postings import Postings
from semsearch.relevance import Signals
from semsearch.store import Store
from semsearch.types import Mode, SearchFilter
from semsearch.vector_index import SearchResult
from semsearch.vector_store import VectorStore
from semsearch.words import STOPWORDS, keyword_terms  # noqa: F401 - part of this module's API

Ranked = list[tuple[int, float]]
# A filter passing at most this many chunks is searched exactly over the chunks it allows.
ALLOWED_LIST_MAX = 20_000
POST_FILTER_DEPTH = 4  # first try: this many times the wanted results, filtered afterwards
FusionMethod = Literal["convex", "rrf"]
Normalisation = Literal["minmax", "zscore"]



@dataclass(frozen=True)
class FusionSettings:
    """How hybrid search combines the two rankings (chosen by measurement: docs/quality.md).

    ``method="convex"`` scores a chunk ``semantic_weight * s + (1 - semantic_weight) * k`` where
    ``s`` and ``k`` are its semantic and BM25 scores normalised over the top ``candidates`` of
    each ranking (``normalisation``); a chunk found by only one retriever has its other score
    looked up exactly, not guessed. ``method="rrf"`` sums ``1 / (rrf_k + rank)`` instead.
    ``keyword_weights`` are the BM25 weights of the (title, text) columns for every keyword search.
    ``feedback_depth`` and ``feedback_weight``: hybrid search's semantic side ranks its candidates
    again with the query vector moved towards its first ``feedback_depth`` hits (Rocchio:
    ``q + feedback_weight * mean(hits)``, normalised); 0 turns it off. Semantic search alone
    does not (measured: docs/quality.md, "Pseudo-relevance feedback").
    """

    method: FusionMethod = "convex"
    candidates: int = 100
    semantic_weight: float = 0.5
    normalisation: Normalisation = "zscore"
    rrf_k: float = 60.0
    keyword_weights: tuple[float, float] = (1.0, 1.0)
    feedback_depth: int = 5
    feedback_weight: float = 0.3

    def __post_init__(self) -> None:
        if self.method not in ("convex", "rrf"):
            raise ValueError(f"fusion method must be 'convex' or 'rrf', not {self.method!r}")
        if self.normalisation not in ("minmax", "zscore"):
            raise ValueError(f"normalisation must be 'minmax' or 'zscore', not {self.normalisation!r}")
        if not 0.0 <= self.semantic_weight <= 1.0:
            raise ValueError("semantic_weight must be between 0 and 1")
        if self.candidates < 1:
            raise ValueError("candidates must be at least 1")
        if self.feedback_depth < 0 or self.feedback_weight < 0:
            raise ValueError("feedback_depth and feedback_weight must not be negative")


# -- fusion -------------------------------------------------------------------------------------


def reciprocal_rank_fusion(rankings: Sequence[Ranked], *, k: float) -> Ranked:
    """Sum of 1/(k + rank) over the rankings each item appears in, best first."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for position, (item, _score) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + position)
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))


def normaliser(ranked: Ranked, method: Normalisation) -> Callable[[float], float]:
    """A function that maps this ranking's scores onto a common scale.

    ``minmax`` sends the best score to 1 and the worst in ``ranked`` to 0; ``zscore`` subtracts
    the mean and divides by the standard deviation. Statistics come from ``ranked`` only, so
    pass the same fixed-size window whatever the caller's limit, and the scale is stable.
    """
    if not ranked:
        return lambda score: 0.0
    scores = np.fromiter((score for _, score in ranked), dtype=np.float64, count=len(ranked))
    if method == "minmax":
        low, span = float(scores.min()), float(scores.max() - scores.min())
        return lambda score: (score - low) / span if span > 0 else 1.0
    mean, spread = float(scores.mean()), float(scores.std())
    return lambda score: (score - mean) / spread if spread > 0 else 0.0


def keyword_window(keyword: Ranked, size: int) -> Ranked:
    """The BM25 scores hybrid search normalises over: the best ``size`` of *all* chunks, as for
    the semantic side. Chunks holding no query word score 0, so a query matching fewer chunks
    than that fills the window with zeros; without them a query matching one chunk (a rare
    word, a name, a word in Chinese) would have no spread to scale by, and its match would
    weigh nothing against the semantic side."""
    window = keyword[:size]
    return window + [(-1, 0.0)] * (size - len(window))


def convex_fusion(
    semantic: Mapping[int, float],
    keyword: Mapping[int, float],
    *,
    semantic_weight: float,
    semantic_scale: Callable[[float], float],
    keyword_scale: Callable[[float], float],
) -> Ranked:
    """``w * scale(semantic) + (1 - w) * scale(keyword)`` for every item in either mapping.

    Both mappings should hold a score for every item (see :meth:`Retriever.hybrid`); an item
    missing from one takes that side's lowest score in the mapping.
    """
    floor_semantic = min(semantic.values(), default=0.0)
    floor_keyword = min(keyword.values(), default=0.0)
    fused = {
        item: semantic_weight * semantic_scale(semantic.get(item, floor_semantic))
        + (1.0 - semantic_weight) * keyword_scale(keyword.get(item, floor_keyword))
        for item in semantic.keys() | keyword.keys()
    }
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))


# -- reranking ----------------------------------------------------------------------------------


class Reranker(Protocol):
    """A model that scores (query, passage) pairs directly, e.g. a cross-encoder.

    Higher is better. None ships with semsearch (no cross-encoder's weights are on PyPI); give
    a local model folder to :func:`semsearch.embedder.load_reranker`.
    """

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray: ...


def rerank(reranker: Reranker, query: str, ranked: Ranked, passages: Mapping[int, str], *, depth: int) -> Ranked:
    """Reorder the first ``depth`` items by the reranker's score; the rest keep their order below."""
    head, tail = ranked[:depth], ranked[depth:]
    if not head:
        return list(ranked)
    scores = np.asarray(reranker.score(query, [passages.get(item, "") for item, _ in head]), dtype=np.float64)
    order = sorted(range(len(head)), key=lambda i: (-scores[i], i))
    return [(head[i][0], float(scores[i])) for i in order] + list(tail)


# -- the retriever ------------------------------------------------------------------------------


class Retriever:
    """Runs one query in one mode against the store and the vector index."""

    def __init__(
        self,
        store: Store,
        vectors: VectorStore,
        embed_query: Callable[[str], np.ndarray],
        settings: FusionSettings | None = None,
        *,
        postings: Postings | None = None,
    ) -> None:
        self._store = store
        self._postings = postings  # the keyword index in memory at this revision, if kept
        self._vectors = vectors
        self._embed_query = embed_query
        self._query_vectors: dict[str, np.ndarray] = {}
        self._fed: set[str] = set()  # queries whose vector feedback has moved
        self._unmoved: dict[str, np.ndarray] = {}  # and their own vectors
        self._terms: dict[str, tuple[list[str], TermStatistics | None]] = {}
        # Cosines and BM25 scores this retriever has computed, per query (read by signals()).
        self._cosines: dict[str, dict[int, float]] = {}
        self._keyword_scores: dict[str, dict[int, float]] = {}
        self._fused: dict[str, dict[int, float]] = {}  # hybrid's scores, default fusion only
        self.settings = settings or FusionSettings()

    def rank(self, query: str, depth: int, mode: Mode, where: SearchFilter) -> Ranked:
        if mode == "semantic":
            ranked = self.semantic(query, depth, where)
            self._cosines.setdefault(query, {}).update(ranked)
            return ranked
        if mode == "keyword":
            ranked = self.keyword(query, depth, where)
            self._keyword_scores.setdefault(query, {}).update(ranked)
            return ranked
        return self.hybrid(query, depth, where)

    def signals(self, query: str, mode: Mode, ids: Sequence[int]) -> dict[int, Signals]:
        """What each chunk's relevance is read from (see :mod:`semsearch.relevance`): its cosine
        (semantic and hybrid), and its BM25 score as a share of the query's whole-query score
        (keyword and hybrid); in hybrid search with the default fusion (convex, z-scores), its
        fused score. Scores this retriever already computed are reused; the others are looked up
        (stored vectors; the chunks' own tokens), never searched for; a fused score is known for
        the chunks a hybrid search of this query ranked, and for no other."""
        cosines = keyword_scores = None
        if mode != "keyword":
            cosines = self._cosines.setdefault(query, {})
            missing = [chunk for chunk in ids if chunk not in cosines]
            if missing:
                cosines.update(self.semantic_scores(query, missing, unmoved=True))
        share, words = 0.0, None
        if mode != "semantic":
            words = len(keyword_terms(query))
            keyword_scores = self._keyword_scores.setdefault(query, {})
            missing = [chunk for chunk in ids if chunk not in keyword_scores]
            if missing:
                found = dict(self.keyword(query, len(missing), SearchFilter(), only=missing))
                keyword_scores.update({chunk: found.get(chunk, 0.0) for chunk in missing})
            terms, stats = self._keyword_terms(query)
            whole = bm25.whole_query_score(terms, stats) if stats is not None else 0.0
            share = 1.0 / whole if whole > 0 else 0.0
        fused = self._fused.get(query, {}) if mode == "hybrid" else {}
        return {
            chunk: Signals(
                cosine=None if cosines is None else cosines.get(chunk, 0.0),
                keyword_share=None if keyword_scores is None else keyword_scores.get(chunk, 0.0) * share,
                query_words=words,
                fused=fused.get(chunk),
            )
            for chunk in ids
        }

    def _keyword_terms(self, query: str) -> tuple[list[str], TermStatistics | None]:
        """The query's words, less those in half the chunks or more (they weigh nothing in BM25
        and cost a scan of most of the index), unless nothing else is left; and the statistics
        BM25 needs about them."""
        if query not in self._terms:
            terms = keyword_terms(query)
            stats = None
            if terms and self._postings is not None and not any(cjk.is_prefix(term) for term in terms):
                stats = self._postings.statistics(terms, self._store.keyword_tokens(terms))
            elif terms:
                stats = self._store.keyword_statistics(terms, revision=self._vectors.revision)
            common = bm25.weightless(terms, stats) if stats else set()
            self._terms[query] = ([term for term in terms if term not in common] or terms, stats)
        return self._terms[query]

    def _narrow_filter_chunks(self, where: SearchFilter) -> np.ndarray | None:
        """The chunk ids of a filter already found narrow at this revision (the store remembers
        what it listed); ``None`` if unknown or broad. Reads nothing."""
        listed = self._store.remembered_chunk_ids(where, limit=ALLOWED_LIST_MAX + 1, revision=self._vectors.revision)
        return listed if listed is not None and len(listed) <= ALLOWED_LIST_MAX else None

    def _vector(self, query: str) -> np.ndarray:
        # Embedded once per query, however many times a grouped search deepens.
        if query not in self._query_vectors:
            self._query_vectors[query] = np.asarray(self._embed_query(query), dtype=np.float32).reshape(-1)
        return self._query_vectors[query]

    def semantic(self, query: str, depth: int, where: SearchFilter) -> Ranked:
        """Chunks by cosine similarity to the query, only those passing ``where``."""
        vector = self._vector(query)
        if where.empty:
            return self._ranked(self._vectors.search(vector, depth))
        listed = self._narrow_filter_chunks(where)
        if listed is not None:  # known to be narrow: no first try
            return self._ranked(self._vectors.search(vector, depth, allowed=listed))
        members = self._store.filter_members(where, self._vectors.revision)
        if members is not None:  # listed before at this revision (else now, in the background)
            return self._ranked(self._vectors.search(vector, depth, members=members))
        # Broad filters: search deeper, keep what passes. Exact search stays exact this way: if
        # enough of the true top `pool` pass, they are the true top `depth` of what passes.
        pool = max(depth * POST_FILTER_DEPTH, 40)
        found = self._vectors.search(vector, pool)
        passing = self._store.passing_chunk_ids(where, found.ids.tolist(), revision=self._vectors.revision)
        kept = [(int(i), float(s)) for i, s in zip(found.ids, found.scores) if int(i) in passing]
        if len(kept) >= depth or len(found.ids) < pool:
            return kept[:depth]
        # Narrow filters: list the allowed chunks and search only those.
        allowed = self._store.filtered_chunk_ids(where, limit=ALLOWED_LIST_MAX + 1, revision=self._vectors.revision)
        if len(allowed) <= ALLOWED_LIST_MAX:
            return self._ranked(self._vectors.search(vector, depth, allowed=allowed))
        # In between: deepen the post-filtered search until enough pass.
        total = max(self._vectors.live, 1)
        while True:
            pool = min(total, pool * 4)
            found = self._vectors.search(vector, pool)
            passing = self._store.passing_chunk_ids(where, found.ids.tolist(), revision=self._vectors.revision)
            kept = [(int(i), float(s)) for i, s in zip(found.ids, found.scores) if int(i) in passing]
            if len(kept) >= depth or len(found.ids) < pool or pool >= total:
                return kept[:depth]

    @staticmethod
    def _ranked(found: SearchResult) -> Ranked:
        return list(zip(found.ids.tolist(), found.scores.tolist()))

    def semantic_with_feedback(self, query: str, depth: int, where: SearchFilter) -> Ranked:
        """:meth:`semantic`, ranked again with the query vector moved towards its first
        ``feedback_depth`` hits (pseudo-relevance feedback); from then on this retriever scores
        chunks against the moved vector (:meth:`semantic_scores` too)."""
        settings = self.settings
        if query in self._fed or not settings.feedback_depth or not settings.feedback_weight:
            return self.semantic(query, depth, where)  # (a grouped search deepening: moved once)
        self._fed.add(query)
        first = self.semantic(query, max(depth, settings.feedback_depth), where)
        if not first:
            return first
        self._cosines.setdefault(query, {}).update(first)  # cosines to the query's own vector
        ids, vectors = self._vectors.stored_vectors([chunk for chunk, _ in first])
        row = {chunk: position for position, chunk in enumerate(ids.tolist())}
        top = [row[chunk] for chunk, _ in first[: settings.feedback_depth] if chunk in row]
        if not top:
            return first[:depth]
        own = self._unmoved[query] = self._vector(query)
        moved = own + settings.feedback_weight * vectors[top].mean(axis=0)
        norm = float(np.linalg.norm(moved))
        if not norm:
            return first[:depth]
        self._query_vectors[query] = (moved / norm).astype(np.float32)
        # The first search's candidates, ranked again by the moved vector: no second search.
        # Searching again finds the same top `depth` (all 100 of 100 SciFact queries, and the
        # same nDCG@10 on the five BEIR sets: docs/quality.md) for a third of the time.
        scores = cosines(vectors, self._query_vectors[query])
        return sorted(zip(ids.tolist(), scores.tolist()), key=lambda pair: (-pair[1], pair[0]))[:depth]

    def semantic_scores(self, query: str, ids: Sequence[int], *, unmoved: bool = False) -> dict[int, float]:
        """Cosine similarity of the query to these chunks, from their stored vectors (no search);
        ``unmoved``: of the query's own vector, even where feedback has moved it."""
        found, vectors = self._vectors.stored_vectors([int(chunk) for chunk in ids])
        if not len(found):
            return {}
        vector = self._unmoved.get(query) if unmoved else None
        return dict(zip(found.tolist(), cosines(vectors, self._vector(query) if vector is None else vector).tolist()))

    def keyword(self, query: str, depth: int, where: SearchFilter, *, only: Sequence[int] | None = None) -> Ranked:
        """Chunks by BM25 over their title and text, exactly as FTS5 ranks them.

        ``only`` scores just those chunk ids (chunks already known to pass ``where``: hybrid
        search scores the chunks only the semantic side found), from the rows themselves. A
        query with both rare and common words is first tried with :func:`semsearch.bm25.shortcut`,
        which proves FTS5's answer without scoring the rows that hold only common words.
        """
        terms, stats = self._keyword_terms(query)
        if not terms:
            return []
        weights = self.settings.keyword_weights
        row_tokens = self._store.keyword_row_tokens
        within = only
        listed = self._narrow_filter_chunks(where) if only is None and not where.empty else None
        if listed is not None:
            # A narrow filter already listed (by the semantic side): keep FTS5's matches among
            # those chunks (a set lookup each) instead of looking each match's document up.
            within, where = listed.tolist(), SearchFilter()
        elif only is None and not where.empty:
            # Other filters: rank without it, deeper, and keep what passes. If enough of the true
            # top `pool` pass, they are the true top `depth` of what passes (as for semantic).
            pool = max(depth * POST_FILTER_DEPTH, 40)
            unfiltered = self.keyword(query, pool, SearchFilter())
            passing = self._store.passing_chunk_ids(
                where, [chunk for chunk, _ in unfiltered], revision=self._vectors.revision
            )
            kept = [(chunk, score) for chunk, score in unfiltered if chunk in passing]
            if len(kept) >= depth or len(unfiltered) < pool:
                return kept[:depth]

        def search(expression: str, limit: int) -> Ranked:
            return self._store.keyword_search(expression, limit, where, weights=weights, only=within)

        tokens = _single_tokens(terms, stats)
        if self._postings is not None and tokens is not None and (where.empty or only is not None):
            # (`only` chunks already pass the filter.) FTS5's scores, from memory.
            return self._postings.rank(tokens, depth, weights=weights, within=within)
        if stats is not None and only is not None:
            # Reading a row's tokens costs about as much as FTS5 walking 100 postings: pick the cheaper.
            matched = sum(stats.rows_with.get(token, 0) for word in terms for token in stats.tokens.get(word, ()))
            if matched > bm25.POSTINGS_PER_ROW_READ * len(only):
                scored = bm25.score_rows(only, terms, stats, weights=weights, row_tokens=row_tokens)
                if scored is not None:
                    return scored[:depth]
        elif stats is not None and (split := bm25.plan(terms, stats)) is not None:
            ranked = bm25.shortcut(split, depth, search=search)
            if ranked is not None:
                return ranked
        return search(match_expression(terms), depth)

    def hybrid(self, query: str, depth: int, where: SearchFilter) -> Ranked:
        settings = self.settings
        pool = max(depth, settings.candidates)
        # The two sides run at once: onnxruntime, FAISS and SQLite each release the GIL, so the
        # query's embedding and vector search overlap its FTS5 search (each SQLite read takes its
        # own pooled connection). A filter not yet listed at this revision is left to the
        # semantic side first, which lists it once for both (see keyword()).
        if self._postings is not None:
            # Keyword search from memory takes a millisecond or two: started beside the query's
            # embedding it would only slow the embedding down (two cores), so it waits for it;
            # only the query's words are looked up meanwhile (FTS5 stems them: ~1 ms).
            terms = _companion().submit(self._keyword_terms, query)
            self._vector(query)
            terms.result()
        if where.empty or self._narrow_filter_chunks(where) is not None:
            semantic_side = _companion().submit(self.semantic_with_feedback, query, pool, where)
            keyword = self.keyword(query, pool, where)
            if self._postings is not None:
                # The keyword side finishes first: it reads its hits' vectors meanwhile, for the
                # cosines of those the semantic side will not find (kept: semsearch.recent_vectors).
                self._vectors.read_ahead([chunk for chunk, _ in keyword])
            semantic = semantic_side.result()
        else:
            semantic = self.semantic_with_feedback(query, pool, where)
            keyword = self.keyword(query, pool, where)
        if settings.method == "rrf":
            return reciprocal_rank_fusion([semantic, keyword], k=settings.rrf_k)[:depth]
        # A chunk found by one retriever only gets its real score from the other (BM25 of a chunk
        # sharing no word with the query is 0), so nothing is ranked on a guess. The semantic
        # score comes from the chunk's stored vector: one vector search per query, not two.
        semantic_scores, keyword_scores = dict(semantic), dict(keyword)
        missing_semantic = [item for item in keyword_scores if item not in semantic_scores]
        missing_keyword = [item for item in semantic_scores if item not in keyword_scores]
        looked_up: Future[dict[int, float]] | None = None
        if missing_semantic:
            looked_up = _companion().submit(self.semantic_scores, query, missing_semantic)
        if missing_keyword:
            keyword_scores.update(self.keyword(query, len(missing_keyword), where, only=missing_keyword))
        if looked_up is not None:
            semantic_scores.update(looked_up.result())
        for item in missing_keyword:
            keyword_scores.setdefault(item, 0.0)
        if query not in self._unmoved:  # relevance reads cosines to the query's own vector
            self._cosines.setdefault(query, {}).update(semantic_scores)
        self._keyword_scores.setdefault(query, {}).update(keyword_scores)
        semantic_window = semantic[: settings.candidates]
        fused = convex_fusion(
            semantic_scores,
            keyword_scores,
            semantic_weight=settings.semantic_weight,
            semantic_scale=normaliser(semantic_window, settings.normalisation),
            keyword_scale=normaliser(keyword_window(keyword, len(semantic_window)), settings.normalisation),
        )
        if settings.normalisation == "zscore":  # the scale semsearch.relevance was fitted on
            self._fused.setdefault(query, {}).update(fused)
        return fused[:depth]


def _single_tokens(terms: Sequence[str], stats: TermStatistics | None) -> list[str] | None:
    """Each word's one FTS5 token, in order; ``None`` if a word is none or several (a prefix
    word, or one FTS5 reads as a phrase): only FTS5 itself matches those."""
    if stats is None or any(len(stats.tokens.get(term, ())) != 1 for term in terms):
        return None
    return [stats.tokens[term][0] for term in terms]


_companion_pool: ThreadPoolExecutor | None = None
_companion_lock = threading.Lock()


def _companion() -> ThreadPoolExecutor:
    """The threads that run a hybrid search's semantic side beside its keyword side (one per
    search a process runs at once is enough; the server's request threads share them)."""
    global _companion_pool
    with _companion_lock:
        if _companion_pool is None:
            _companion_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="semsearch-semantic")
        return _companion_pool
