"""FTS5's BM25, and a way to get its exact top results without scoring every match.

FTS5 scores every row that matches any query word. A word in a fifth of the chunks makes that a
fifth of the index, scored at 2-5 microseconds a row, though such a word weighs little: its
IDF is small. The shortcut (the idea of "MaxScore" in search engines) splits the words in two:

1. FTS5 ranks the rows holding the *rare* words on those words alone (each word's IDF is over
   the whole table, so its part of a row's score is what it is in the full query); for a row
   without a common word that is its full score, and for any row a lower bound of it;
2. FTS5 ranks the rows holding a rare word *and* a *common* one on every word of the query
   (``(rare ...) AND (common ...)``): full scores, and only for rows holding a rare word;
3. merged, the best ``limit`` hold every row holding a rare word that belongs in the top: a row
   whose full score is missing either lacks common words (then step 1 has it) or was beaten by
   ``limit`` rows of step 2; an underestimated row ranks below those ``limit`` rows too;
4. a row holding only common words scores at most ``idf * (k1 + 1)`` per common word. If the
   ``limit``-th merged score is at least that, the answer is FTS5's; else the caller runs the
   full query.

What is saved is scoring the rows that hold only common words, usually nearly all of them; what
is left is FTS5 counting each word's rows for its IDF (about 75 ns a row).

:func:`plan` decides whether a query is worth splitting; :func:`shortcut` does it.
:func:`score_rows` scores given rows the same way (hybrid search scores the chunks only the
semantic side found so).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from semsearch.fts import RowTokens, TermStatistics, quoted

K1 = 1.2  # FTS5's bm25() constants
B = 0.75
MIN_IDF = 1e-6  # FTS5 clamps the IDF of a word in half the rows or more to this

COMMON_SHARE = 0.01  # a word in more than this share of rows is "common" (its IDF is below ~4.6)
SPLIT_FROM_ROWS = 20_000  # queries whose words match fewer rows than this are scored by FTS5 alone
POSTINGS_PER_ROW_READ = 100  # score_rows reads a row's tokens in the time FTS5 walks this many postings

Ranked = list[tuple[int, float]]


def idf(rows: int, rows_with: int) -> float:
    """FTS5's IDF of a word held by ``rows_with`` of ``rows`` rows."""
    if not rows:
        return MIN_IDF
    # A writer committing between reading the row count and a word's count can leave the word
    # in more rows than the table seems to hold; FTS5 never sees that, its floor applies.
    ratio = (rows - rows_with + 0.5) / (rows_with + 0.5)
    value = math.log(ratio) if ratio > 0.0 else 0.0
    return value if value > 0.0 else MIN_IDF


def part(word_idf: float, frequency: float, length: int, average_length: float) -> float:
    """One word's part of a row's BM25 score; ``frequency`` is its column-weighted count."""
    if frequency <= 0.0:
        return 0.0
    # Each operation in FTS5's order (sqlite's fts5_aux.c), so the score is FTS5's to the last bit.
    norm = K1 * (1.0 - B + B * length / average_length) if average_length else K1
    return word_idf * ((frequency * (K1 + 1.0)) / (frequency + norm))


def frequency(weights: Sequence[float], counts: Sequence[int]) -> float:
    """A word's column-weighted count in a row, as FTS5 sums it: each column's weight added once
    per occurrence, column by column (``count * weight`` can differ in the last bit: 3 * 0.1)."""
    total = 0.0
    for weight, count in zip(weights, counts):
        for _ in range(int(count)):
            total += weight
    return total


def weightless(words: Sequence[str], stats: TermStatistics) -> set[str]:
    """The words found in at least half the rows: BM25 gives them no weight (IDF clamped to
    1e-6), so they cannot change a ranking, yet matching one means scoring most of the index."""
    return {word for word in words if (held := rows_holding(word, stats)) is not None and held * 2 >= stats.rows}


def rows_holding(word: str, stats: TermStatistics) -> int | None:
    """How many rows hold the word (for a phrase, its rarest token, an upper bound); ``None`` for
    a word with no tokens."""
    if word in stats.rows_with and not stats.tokens.get(word):  # a prefix word: FTS5 counted its rows
        return stats.rows_with[word]
    if not stats.tokens.get(word):
        return None
    return min(stats.rows_with.get(token, 0) for token in stats.tokens[word])


def whole_query_score(words: Sequence[str], stats: TermStatistics) -> float:
    """The BM25 score of a row of average length holding each word once (in one column of weight
    1): the sum of the words' IDFs. A row's score over this is how much of the query it holds,
    whatever the query's length (see :mod:`semsearch.relevance`)."""
    return sum(idf(stats.rows, held) for word in words if (held := rows_holding(word, stats)) is not None)


@dataclass(frozen=True)
class Split:
    """A query's words as the shortcut uses them."""

    rare: list[str]  # searched by FTS5
    common: list[str]  # scored here, for the candidates only
    common_tokens: list[str]  # the common words' FTS5 tokens (one each)
    idf: dict[str, float]  # by token


def plan(words: Sequence[str], stats: TermStatistics) -> Split | None:
    """How to split a query, or ``None`` when FTS5 alone is as cheap or the split would not be
    exact (a word FTS5 reads as more than one token is a phrase, which is not scored per token;
    a prefix word has no single token either)."""
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
    a word is not one token to FTS5 (a phrase, or a prefix word)."""
    if any(len(stats.tokens.get(word, ())) != 1 for word in words):
        return None
    # One token per word, repeated where two words stem alike ("cell cells"): FTS5 scores each
    # word of an OR query on its own, so such a token counts once per word.
    word_tokens = [stats.tokens[word][0] for word in words]
    tokens = list(dict.fromkeys(word_tokens))
    idfs = {token: idf(stats.rows, stats.rows_with.get(token, 0)) for token in tokens}
    scored = []
    for row_id, row in row_tokens(ids, tokens).items():
        score = 0.0
        for token in word_tokens:
            counts = row.counts.get(token)
            if counts:
                score += part(idfs[token], frequency(weights, counts), row.length, stats.average_length)
        if score > 0.0:
            scored.append((row_id, score))
    scored.sort(key=lambda pair: (-pair[1], pair[0]))
    return scored


def shortcut(split: Split, limit: int, *, search: Callable[[str, int], Ranked]) -> Ranked | None:
    """The exact BM25 top ``limit`` of the whole query, or ``None`` if it cannot be proven.

    ``search(expression, n)`` is FTS5's top ``n`` for an FTS5 query expression (with the
    caller's filter and weights). Two cheap searches replace the full one:

    - the rare words alone: each row's score on them (a lower bound of its full score, and its
      full score when it holds no common word);
    - rows holding a rare word *and* a common one: FTS5 scores them on every word of the query,
      so their scores are full ones; only rows holding a rare word are scored.

    Every row holding a rare word then has its full score, or is beaten by ``limit`` rows that
    do (see the module's notes). A row holding only common words scores at most what they can
    add, ``idf * (k1 + 1)`` each: if the ``limit``-th score found is at least that, the top is
    FTS5's.
    """
    rare = match_expression(split.rare)
    best = dict(search(rare, limit))
    best.update(search(f"({rare}) AND ({match_expression(split.common)})", limit))  # full scores, never lower
    ranked = sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))[:limit]
    most_common_only = sum(split.idf[token] * (K1 + 1.0) for token in split.common_tokens)
    if len(ranked) < limit or ranked[-1][1] < most_common_only:
        return None
    return ranked


def match_expression(words: Sequence[str]) -> str:
    """An FTS5 query matching any of the words; each is quoted so no word is read as syntax
    (a prefix word, ``猫*``, becomes FTS5's prefix query ``"猫"*``)."""
    return " OR ".join(quoted(word) for word in words)
