"""FTS5's BM25, and a way to get its exact top results without scoring every match.

FTS5 scores every row that matches any query word. A word in a fifth of the chunks makes that a
fifth of the index, scored at about 2 microseconds a row, though such a word weighs little: its
IDF is small. The shortcut (the idea of "MaxScore" in search engines) splits the words in two:

1. *rare* words are searched by FTS5 as usual, which scores the rows holding them on those words
   alone (their IDF is over the whole table, so each word's part of the score is exactly what it
   is in the full query);
2. the best of those rows get the rest of their score, the *common* words' parts, computed here
   from each row's token counts with FTS5's own formula;
3. a row outside those candidates scores at most the last candidate's rare-word score plus every
   common word's largest possible part, ``idf * (k1 + 1)``. If the ``limit``-th best full score
   is at least that, no other row can enter the top, and the answer is FTS5's; if not, the
   caller runs the full query.

:func:`plan` decides whether a query is worth splitting; :func:`shortcut` does it.
:func:`score_rows` scores given rows the same way (hybrid search scores the chunks only the
semantic side found so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from semsearch.fts import RowTokens, TermStatistics

K1 = 1.2  # FTS5's bm25() constants
B = 0.75
MIN_IDF = 1e-6  # FTS5 clamps the IDF of a word in half the rows or more to this

COMMON_SHARE = 0.02  # a word in more than this share of rows is "common" (its IDF is below ~3.9)
SPLIT_FROM_ROWS = 20_000  # queries whose words match fewer rows than this are scored by FTS5 alone
CANDIDATES = 4  # rows given a full score, per result asked for (at least MIN_CANDIDATES)
MIN_CANDIDATES = 200

Ranked = list[tuple[int, float]]


def idf(rows: int, rows_with: int) -> float:
    """FTS5's IDF of a word held by ``rows_with`` of ``rows`` rows."""
    value = math.log((rows - rows_with + 0.5) / (rows_with + 0.5)) if rows else 0.0
    return value if value > 0.0 else MIN_IDF


def part(word_idf: float, frequency: float, length: int, average_length: float) -> float:
    """One word's part of a row's BM25 score; ``frequency`` is its column-weighted count."""
    if frequency <= 0.0:
        return 0.0
    norm = 1.0 - B + B * (length / average_length if average_length else 1.0)
    return word_idf * frequency * (K1 + 1.0) / (frequency + K1 * norm)


def weightless(words: Sequence[str], stats: TermStatistics) -> set[str]:
    """The words found in at least half the rows: BM25 gives them no weight (IDF clamped to
    1e-6), so they cannot change a ranking, yet matching one means scoring most of the index."""
    return {
        word
        for word in words
        if stats.tokens.get(word) and min(stats.rows_with.get(token, 0) for token in stats.tokens[word]) * 2 >= stats.rows
    }


@dataclass(frozen=True)
class Split:
    """A query's words as the shortcut uses them."""

    rare: list[str]  # searched by FTS5
    common: list[str]  # scored here, for the candidates only
    common_tokens: list[str]  # the common words' FTS5 tokens (one each)
    idf: dict[str, float]  # by token


def plan(words: Sequence[str], stats: TermStatistics) -> Split | None:
    """How to split a query, or ``None`` when FTS5 alone is as cheap or the split would not be
    exact (a word FTS5 reads as more than one token is a phrase, which is not scored per token)."""
    if len(words) < 2 or stats.rows <= 0:
        return None
    if any(len(stats.tokens.get(word, ())) != 1 for word in words):
        return None
    held = {word: stats.rows_with.get(stats.tokens[word][0], 0) for word in words}
    if sum(held.values()) < SPLIT_FROM_ROWS:
        return None
    common = [word for word in words if held[word] > COMMON_SHARE * stats.rows]
    rare = [word for word in words if word not in common and held[word] > 0]
    if not common or not rare:
        return None
    tokens = [stats.tokens[word][0] for word in common]
    return Split(rare, common, tokens, {token: idf(stats.rows, stats.rows_with[token]) for token in tokens})


def score_rows(
    ids: Sequence[int],
    words: Sequence[str],
    stats: TermStatistics,
    *,
    weights: Sequence[float],
    row_tokens: Callable[[Sequence[int], Sequence[str]], Mapping[int, RowTokens]],
) -> Ranked | None:
    """FTS5's BM25 of the query for just these rows (those holding none of its words left out),
    best first, read from the rows themselves instead of matching the whole table; ``None`` when
    a word is a phrase to FTS5 (more than one token)."""
    if any(len(stats.tokens.get(word, ())) != 1 for word in words):
        return None
    tokens = list(dict.fromkeys(stats.tokens[word][0] for word in words))
    idfs = {token: idf(stats.rows, stats.rows_with.get(token, 0)) for token in tokens}
    scored = []
    for row_id, row in row_tokens(ids, tokens).items():
        score = 0.0
        for token in tokens:
            counts = row.counts.get(token)
            if counts:
                frequency = sum(weight * count for weight, count in zip(weights, counts))
                score += part(idfs[token], frequency, row.length, stats.average_length)
        if score > 0.0:
            scored.append((row_id, score))
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored


def shortcut(
    split: Split,
    stats: TermStatistics,
    limit: int,
    *,
    weights: Sequence[float],
    search_rare: Callable[[Sequence[str], int], Ranked],
    row_tokens: Callable[[Sequence[int], Sequence[str]], Mapping[int, RowTokens]],
) -> Ranked | None:
    """The exact BM25 top ``limit`` of the whole query, or ``None`` if it cannot be proven.

    ``search_rare(words, n)`` is FTS5's top ``n`` for those words (with the caller's filter);
    ``row_tokens(ids, tokens)`` reads rows' lengths and token counts. Rows are completed in
    batches, best rare-word score first, and only while one could still enter the top: a row
    whose rare-word score plus every common word's largest part is below the ``limit``-th full
    score found so far cannot, and neither can any row after it.
    """
    partial = search_rare(split.rare, max(limit * CANDIDATES, MIN_CANDIDATES))
    most_added = sum(split.idf[token] * (K1 + 1.0) for token in split.common_tokens)
    scored: list[tuple[int, float]] = []
    threshold = -math.inf  # the limit-th best full score so far
    done, batch = 0, max(2 * limit, 20)
    while done < len(partial) and partial[done][1] + most_added >= threshold:
        chunk = partial[done : done + batch]
        done += len(chunk)
        found = row_tokens([row_id for row_id, _ in chunk], split.common_tokens)
        for row_id, score in chunk:
            row = found.get(row_id)
            if row is None:  # deleted since FTS5 matched it
                continue
            for token in split.common_tokens:
                counts = row.counts.get(token)
                if counts:
                    frequency = sum(weight * count for weight, count in zip(weights, counts))
                    score += part(split.idf[token], frequency, row.length, stats.average_length)
            scored.append((row_id, score))
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        if len(scored) >= limit:
            threshold = scored[limit - 1][1]
        batch = max(limit, 20)
    # A row FTS5 did not return scores at most the last returned rare-word score (or nothing, if
    # every row holding a rare word was returned) plus what the common words can add.
    beyond = most_added + (partial[-1][1] if len(partial) >= max(limit * CANDIDATES, MIN_CANDIDATES) else 0.0)
    if len(scored) < limit or threshold < beyond:
        return None
    return scored[:limit]
