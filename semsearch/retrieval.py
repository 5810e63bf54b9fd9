"""Ranking: semantic (FAISS), keyword (BM25 over SQLite FTS5) and their fusion.

Each retriever returns ``(chunk_id, score)`` pairs, best first. Filters are applied inside each
retriever (FAISS id selector, SQL condition), never afterwards, so a filtered search still returns
the best ``limit`` matching chunks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from semsearch.store import Store
from semsearch.types import Mode, SearchFilter
from semsearch.vector_index import VectorIndex

Ranked = list[tuple[int, float]]

_WORD = re.compile(r"\w+", re.UNICODE)
# Common English function words: they carry no topic and only slow BM25 down.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves""".split()
)


@dataclass(frozen=True)
class FusionSettings:
    """How hybrid search combines the two rankings (chosen by measurement: docs/quality.md)."""

    candidates: int = 100  # chunks taken from each retriever before fusing
    rrf_k: float = 60.0
    keyword_weights: tuple[float, float] = (1.0, 1.0)  # BM25 weights of (context/title, text)


def keyword_terms(query: str) -> list[str]:
    """The words of a query that keyword search looks for (stopwords dropped unless nothing is left)."""
    words = [word.lower() for word in _WORD.findall(query)]
    content = [word for word in words if word not in STOPWORDS]
    return list(dict.fromkeys(content or words))


def match_expression(terms: list[str]) -> str:
    """An FTS5 query matching any of the terms; each is quoted so no word is read as syntax."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


class Retriever:
    """Runs one query in one mode against the store and the vector index."""

    def __init__(
        self,
        store: Store,
        vectors: VectorIndex,
        embed_query: Callable[[str], np.ndarray],
        settings: FusionSettings | None = None,
    ) -> None:
        self._store = store
        self._vectors = vectors
        self._embed_query = embed_query
        self.settings = settings or FusionSettings()

    def rank(self, query: str, depth: int, mode: Mode, where: SearchFilter) -> Ranked:
        if mode == "semantic":
            return self.semantic(query, depth, where)
        if mode == "keyword":
            return self.keyword(query, depth, where)
        return self.hybrid(query, depth, where)

    def semantic(self, query: str, depth: int, where: SearchFilter) -> Ranked:
        allowed = None if where.empty else self._store.filtered_chunk_ids(where)
        if allowed is not None and len(allowed) == 0:
            return []
        scores, ids = self._vectors.search(self._embed_query(query), depth, allowed=allowed)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0])]

    def keyword(self, query: str, depth: int, where: SearchFilter) -> Ranked:
        terms = keyword_terms(query)
        if not terms:
            return []
        return self._store.keyword_search(
            match_expression(terms), depth, where, weights=self.settings.keyword_weights
        )

    def hybrid(self, query: str, depth: int, where: SearchFilter) -> Ranked:
        pool = max(depth, self.settings.candidates)
        return reciprocal_rank_fusion(
            [self.semantic(query, pool, where), self.keyword(query, pool, where)], k=self.settings.rrf_k
        )[:depth]


def reciprocal_rank_fusion(rankings: list[Ranked], *, k: float) -> Ranked:
    """Sum of 1/(k + rank) over the rankings each item appears in."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for position, (item, _score) in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + position)
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))
