"""FTS5's postings kept in memory, so that a process that searches again and again scores BM25
with numpy instead of asking FTS5.

FTS5 ranks a query by calling ``bm25()`` for every row holding a query word, about 2 microseconds
a row: 8 ms for a typical query on SciFact's 10,000 chunks, the largest part of a hybrid search
after the query's embedding. The same scores from arrays in memory take a fraction of a
millisecond, and the keyword scores of the chunks only the vectors found come for free.

:class:`Postings` is one revision of the FTS5 table: for each token, the rows holding it (as
positions in the table's sorted row ids) and how often it occurs in each column; each row's
length; the row count and average length. It is read from FTS5 itself (``fts5vocab``), so the
tokens are the table's own and the scores are FTS5's: :meth:`Postings.rank` returns exactly what
:func:`semsearch.fts.search` does, up to the order of equal scores.

Reading them costs about a second per million tokens indexed (on a background thread) and 8
bytes per (token, row) pair, so a process keeps them only once it has shown it searches again
(:class:`semsearch.resident.Resident` decides when), and only for tables of at most
:data:`MAX_TOKENS` tokens. Until the postings of the revision being searched are in memory,
searches ask FTS5, with the same results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from semsearch.bm25 import B, K1, idf
from semsearch.fts import RawPostings, TermStatistics

MAX_TOKENS = 10_000_000  # largest table kept: ~12 s to read, ~80 MB of arrays (SciFact: 1.3M tokens, 1 s)
QUERIES_KEPT = 16  # the scores of this many recent queries are kept

Ranked = list[tuple[int, float]]


class Postings:
    """One revision of the keyword index, in memory (see the module's notes)."""

    def __init__(self, raw: RawPostings) -> None:
        self.revision = raw.revision
        self.rows = raw.rows
        self._ids = raw.ids
        self.average_length = average = raw.total_tokens / raw.rows if raw.rows else 0.0
        lengths = raw.lengths.astype(np.float64)
        # The part of BM25's denominator that depends on the row only, k1 * (1 - b + b * |D| / avgdl),
        # each operation in FTS5's order, so that the scores are FTS5's to the last bit.
        self._norm = K1 * (1.0 - B + B * lengths / average) if average else np.full(len(lengths), K1)
        self._position = raw.positions
        self._frequency = raw.frequencies
        bounds = np.r_[0, np.cumsum(raw.entries)]
        self._spans = {term: (int(bounds[i]), int(bounds[i + 1])) for i, term in enumerate(raw.terms)}
        self._recent: dict[tuple[tuple[str, ...], tuple[float, ...]], tuple[np.ndarray, np.ndarray]] = {}

    def statistics(self, words: Sequence[str], tokens: Mapping[str, tuple[str, ...]]) -> TermStatistics:
        """What :func:`semsearch.fts.statistics` reads about these words (each with its ``tokens``,
        none a prefix word), from memory."""
        rows_with = {token: self.rows_with(token) for word in words for token in tokens[word]}
        return TermStatistics(self.rows, self.average_length, {word: tokens[word] for word in words}, rows_with)

    def rows_with(self, token: str) -> int:
        """How many rows hold the token (FTS5's count for its IDF)."""
        start, end = self._spans.get(token, (0, 0))
        return end - start

    def rank(
        self,
        tokens: Sequence[str],
        limit: int,
        *,
        weights: Sequence[float],
        within: Sequence[int] | None = None,
    ) -> Ranked:
        """BM25 of an OR query as FTS5 scores it: ``(row_id, score)``, best first (ties by id).

        ``tokens`` holds each query word's one token, in order (a token twice if two words stem
        to it: FTS5 scores each word on its own). ``weights`` are the columns' BM25 weights.
        ``within`` scores only those row ids.
        """
        scored, scores = self._scores(tuple(tokens), tuple(float(weight) for weight in weights))
        if within is not None and len(scored):
            wanted = np.asarray(within, dtype=np.int64).reshape(-1)
            at = np.searchsorted(self._ids, wanted).clip(0, len(self._ids) - 1)
            keep = np.isin(scored, at[self._ids[at] == wanted])
            scored, scores = scored[keep], scores[keep]
        if limit < len(scored):
            # Everything tied with the limit-th score stays in, so ties are broken by id below.
            threshold = np.partition(scores, len(scores) - limit)[len(scores) - limit]
            keep = scores >= threshold
            scored, scores = scored[keep], scores[keep]
        ids = self._ids[scored]
        order = np.lexsort((ids, -scores))[:limit]
        return list(zip(ids[order].tolist(), scores[order].tolist()))

    def _scores(self, tokens: tuple[str, ...], weights: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The positions of the rows the query matches (ascending) and their scores. The last
        few queries' are kept: hybrid search ranks a query, then scores some of its rows."""
        key = (tokens, weights)
        kept = self._recent.get(key)
        if kept is not None:
            return kept
        weight = np.asarray(weights, dtype=np.float64)
        found, parts = [], []  # a row matching only in a column of weight 0 scores 0, as in FTS5
        for token in tokens:
            start, end = self._spans.get(token, (0, 0))
            if start == end:
                continue
            position = self._position[start:end]
            counts = self._frequency[start:end]
            frequency = counts[:, 0] * weight[0]  # (elementwise: a matrix product would start BLAS threads)
            for column in range(1, counts.shape[1]):
                frequency += counts[:, column] * weight[column]
            found.append(position)
            parts.append(idf(self.rows, end - start) * ((frequency * (K1 + 1.0)) / (frequency + self._norm[position])))
        if found:
            positions = np.concatenate(found)
            totals = np.bincount(positions, weights=np.concatenate(parts))
            # The rows matched (a row can match with a score of 0): a sort when they are few, a
            # pass over the table's rows when they are many.
            if len(positions) * 16 < len(totals):
                scored = np.unique(positions)
            else:
                scored = np.flatnonzero(np.bincount(positions))
            kept = (scored, totals[scored])
        else:
            kept = (np.empty(0, np.int64), np.empty(0, np.float64))
        if len(self._recent) >= QUERIES_KEPT:
            self._recent = {}
        self._recent[key] = kept
        return kept
