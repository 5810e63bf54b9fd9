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

When a query holds a common word, the rows holding only common words are skipped where that is
proven not to change the best results (:meth:`Postings._best`, the shortcut of
:mod:`semsearch.bm25` done on arrays): at a million chunks a query's common word is in a fifth of
them.

Reading them costs half a second to a second per million tokens indexed (on a background thread)
and about 8 bytes per (token, row) pair, so a process keeps them only once it has shown it searches
again (:class:`semsearch.resident.Resident` decides when), and only for tables of at most
:data:`MAX_TOKENS` tokens. Until the postings of the revision being searched are in memory,
searches ask FTS5, with the same results. After a write, :meth:`Postings.changed` brings a copy
up to date with the rows added and removed since, at the cost of what changed and one copy of
the arrays, instead of reading the table again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from semsearch.bm25 import B, COMMON_SHARE, K1, idf
from semsearch.fts import PostingsChange, RawPostings, TermStatistics

SKIPPED_AT_LEAST = 20_000  # postings a shortcut must skip to be tried (scoring them takes ~0.2 ms)
TRIES = 4  # shortcuts tried per query before every row is scored
SPANS_KEPT = 100_000  # tokens whose place is remembered (a few MB)
SLICE = 4_000_000  # entries filtered at a time when rows are removed
CHANGED_SHARE = 0.1  # a copy is brought up to date if at most this share of its rows changed, else read again
MAX_TOKENS = 40_000_000  # largest table kept: ~25 s to read, ~300 MB (SciFact: 1.3M tokens, 1 s; 1M chunks: 31M)

Ranked = list[tuple[int, float]]
Span = tuple[int, int]  # a token's entries: [start, end) in the entry arrays


class Postings:
    """One revision of the keyword index, in memory (see the module's notes)."""

    def __init__(self, raw: RawPostings) -> None:
        # The tokens as one string of UTF-8 and where each ends: a million tokens take ~15 MB so,
        # ten times that as a dictionary of Python strings. FTS5 lists them in their bytes' order,
        # which a binary search needs.
        encoded = [term.encode() for term in raw.terms]
        if any(encoded[i] >= encoded[i + 1] for i in range(len(encoded) - 1)):
            raise ValueError("the keyword index's tokens are not in order")
        self._hold(
            raw.revision, raw.rows, raw.total_tokens, raw.ids, raw.lengths, b"".join(encoded),
            np.cumsum([len(term) for term in encoded], dtype=np.int64), np.r_[0, np.cumsum(raw.entries)],
            raw.positions, raw.frequencies,
        )

    def _hold(
        self, revision: int, rows: int, total_tokens: int, ids: np.ndarray, lengths: np.ndarray, terms: bytes,
        term_ends: np.ndarray, bounds: np.ndarray, positions: np.ndarray, frequencies: np.ndarray,
    ) -> None:
        self.revision = revision
        self.rows = rows
        self.ids = ids  # each row's id, ascending
        self.lengths = lengths  # each row's length in tokens
        self.average_length = average = total_tokens / rows if rows else 0.0
        # The part of BM25's denominator that depends on the row only, k1 * (1 - b + b * |D| / avgdl),
        # each operation in FTS5's order, so that the scores are FTS5's to the last bit.
        self._norm = K1 * (1.0 - B + B * lengths.astype(np.float64) / average) if average else np.full(len(lengths), K1)
        self._terms = terms
        self._term_ends = term_ends
        self._bounds = bounds  # token i's entries are [bounds[i], bounds[i + 1])
        self._position = positions  # each entry's row, as its place in ids
        self._frequency = frequencies  # each entry's count in each column
        self._spans: dict[str, Span] = {}  # tokens looked up lately (see _span)

    def changed(self, change: PostingsChange) -> Postings:
        """These postings with a later revision's changes applied: rows removed, rows added
        (their ids above every row here). Costs a copy of the arrays (about a second at a
        million chunks) instead of reading the table again (about twenty)."""
        removed, added = change.removed, change.added
        if len(added.ids) and len(self.ids) and added.ids[0] <= self.ids[-1]:
            raise ValueError("rows were added below the last row of the postings")
        if not len(removed) and not len(added.ids):  # a write that changed no text: the same arrays
            if change.rows != self.rows or change.total_tokens != int(self.lengths.sum()):
                raise ValueError("the keyword index changed though no row did")
            unchanged = Postings.__new__(Postings)
            unchanged._hold(
                change.revision, self.rows, change.total_tokens, self.ids, self.lengths, self._terms,
                self._term_ends, self._bounds, self._position, self._frequency,
            )
            return unchanged
        if len(removed):
            alive_rows = ~np.isin(self.ids, removed)
            positions, frequencies, counts = self._without(alive_rows)
            ids, lengths = self.ids[alive_rows], self.lengths[alive_rows]
        else:
            positions, frequencies, counts = self._position, self._frequency, np.diff(self._bounds)
            ids, lengths = self.ids, self.lengths
        old_to_new, added_to_new, terms, term_ends = self._with_terms(added.terms)
        bounds, new_positions, new_frequencies = _interleave(
            len(term_ends), old_to_new, counts, positions, frequencies,
            added_to_new, added.entries, added.positions.astype(np.int32) + len(ids), added.frequencies,
        )
        terms, term_ends, bounds = _without_empty(terms, term_ends, bounds)  # tokens whose rows all went
        ids = np.concatenate([ids, added.ids])
        lengths = np.concatenate([lengths, added.lengths])
        if len(ids) != change.rows or int(lengths.sum()) != change.total_tokens:
            raise ValueError("the changed postings do not add up to the table's row count and length")
        updated = Postings.__new__(Postings)
        updated._hold(
            change.revision, change.rows, change.total_tokens, ids, lengths, terms, term_ends, bounds,
            new_positions, new_frequencies,
        )
        return updated

    def _without(self, alive_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The entries of the rows still alive, their rows renumbered, and each token's count of
        them; a slice at a time, so that the copy is the only large allocation."""
        place = (np.cumsum(alive_rows, dtype=np.int64) - 1).astype(np.int32)
        total = len(self._position)
        before_bounds = np.zeros(len(self._bounds), dtype=np.int64)  # alive entries before each token's first
        slices = []
        kept = 0
        for start in range(0, total, SLICE):
            alive = alive_rows[self._position[start : start + SLICE]]
            ahead = np.r_[0, np.cumsum(alive, dtype=np.int64)]
            inside = np.flatnonzero((self._bounds >= start) & (self._bounds < start + len(alive)))
            before_bounds[inside] = kept + ahead[self._bounds[inside] - start]
            slices.append((start, kept))
            kept += int(ahead[-1])
        before_bounds[self._bounds >= total] = kept
        positions = np.empty(kept, dtype=np.int32)
        frequencies = np.empty((kept, self._frequency.shape[1]), dtype=self._frequency.dtype)
        for start, first in slices:
            part = self._position[start : start + SLICE]
            alive = alive_rows[part]
            positions[first : first + int(alive.sum())] = place[part[alive]]
            frequencies[first : first + int(alive.sum())] = self._frequency[start : start + SLICE][alive]
        return positions, frequencies, np.diff(before_bounds)

    def _with_terms(self, added: Sequence[str]) -> tuple[np.ndarray, np.ndarray, bytes, np.ndarray]:
        """The tokens with ``added`` (in FTS5's order) among them: where each old and each added
        token goes, and the merged tokens' string and ends."""
        found, missing, inserted_at = [], [], []
        for term in added:
            key = term.encode()
            index, exact = self._locate(key)
            found.append((index, exact))
            if not exact:
                missing.append(key)
                inserted_at.append(index)
        old_count = len(self._term_ends)
        points = np.asarray(inserted_at, dtype=np.int64)
        old_to_new = np.arange(old_count) + np.searchsorted(points, np.arange(old_count), side="right")
        added_to_new, inserted = np.empty(len(added), dtype=np.int64), 0
        for j, (index, exact) in enumerate(found):
            if exact:
                added_to_new[j] = old_to_new[index]
            else:
                added_to_new[j] = index + inserted
                inserted += 1
        lengths = np.empty(old_count + len(missing), dtype=np.int64)
        lengths[old_to_new] = np.diff(np.r_[0, self._term_ends])
        lengths[added_to_new[[not exact for _, exact in found]]] = [len(key) for key in missing]
        pieces, start = [], 0
        for key, point in zip(missing, inserted_at):
            cut = int(self._term_ends[point - 1]) if point else 0
            pieces += [self._terms[start:cut], key]
            start = cut
        pieces.append(self._terms[start:])
        return old_to_new, added_to_new, b"".join(pieces), np.cumsum(lengths)

    def statistics(self, words: Sequence[str], tokens: Mapping[str, tuple[str, ...]]) -> TermStatistics:
        """What :func:`semsearch.fts.statistics` reads about these words (each with its ``tokens``,
        none a prefix word), from memory."""
        rows_with = {token: self.rows_with(token) for word in words for token in tokens[word]}
        return TermStatistics(self.rows, self.average_length, {word: tokens[word] for word in words}, rows_with)

    def rows_with(self, token: str) -> int:
        """How many rows hold the token (FTS5's count for its IDF)."""
        start, end = self._span(token)
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
        spans = [self._span(token) for token in tokens]
        weight = np.asarray(weights, dtype=np.float64)
        if within is not None:
            wanted = np.unique(np.asarray(within, dtype=np.int64).reshape(-1))
            at = np.searchsorted(self.ids, wanted).clip(0, max(len(self.ids) - 1, 0))
            places = at[self.ids[at] == wanted] if len(self.ids) else np.empty(0, np.int64)
            scored, scores = self._scores_of(places, spans, weight)
        else:
            scored, scores = self._best(spans, limit, weight)
        if limit < len(scored):
            # Everything tied with the limit-th score stays in, so ties are broken by id below.
            threshold = np.partition(scores, len(scores) - limit)[len(scores) - limit]
            keep = scores >= threshold
            scored, scores = scored[keep], scores[keep]
        ids = self.ids[scored]
        order = np.lexsort((ids, -scores))[:limit]
        return list(zip(ids[order].tolist(), scores[order].tolist()))

    def _span(self, token: str) -> Span:
        """Where the token's entries lie; ``(0, 0)`` if no row holds it. Tokens looked up before
        are answered from a dictionary (queries repeat their words), at most :data:`SPANS_KEPT`."""
        found = self._spans.get(token)
        if found is None:
            found = self._search(token)
            if len(self._spans) >= SPANS_KEPT:
                self._spans = {}
            self._spans[token] = found
        return found

    def _search(self, token: str) -> Span:
        """:meth:`_span` by bisection of the tokens (40 microseconds in Python at a million)."""
        index, exact = self._locate(token.encode())
        return (int(self._bounds[index]), int(self._bounds[index + 1])) if exact else (0, 0)

    def _locate(self, key: bytes) -> tuple[int, bool]:
        """The place of the first token not below ``key`` (UTF-8), and whether it is ``key``."""
        ends, terms = self._term_ends, self._terms
        low, high = 0, len(ends)
        while low < high:
            middle = (low + high) // 2
            if terms[(int(ends[middle - 1]) if middle else 0) : int(ends[middle])] < key:
                low = middle + 1
            else:
                high = middle
        exact = low < len(ends) and terms[(int(ends[low - 1]) if low else 0) : int(ends[low])] == key
        return low, exact

    def _best(self, spans: list[Span], limit: int, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows the query matches and their scores, or a part of them that holds its best
        ``limit`` (with every row tied with the last).

        The shortcut of :mod:`semsearch.bm25` ("MaxScore"), on arrays: the rows holding a rarer
        word are scored on every word; a row holding none of them scores below the sum of the
        other words' largest possible parts (``idf * (k1 + 1)`` each). If ``limit`` rows holding a
        rare word score above that, the rows holding only common words are never looked at: at a
        million chunks, that is most of the rows a query matches. The rare words are first those
        in at most 1% of rows; if their rows do not prove the top, the next rarest word joins
        them, as long as that still skips half of the query's postings, and at least
        :data:`SKIPPED_AT_LEAST` of them: on a small index scoring every row is the faster way."""
        present = [span for span in spans if span[1] > span[0]]
        rarest_first = sorted(set(present), key=lambda span: span[1] - span[0])
        common_from = next(
            (k for k, (start, end) in enumerate(rarest_first) if end - start > COMMON_SHARE * self.rows),
            len(rarest_first),
        )
        bound = {span: present.count(span) * idf(self.rows, span[1] - span[0]) * (K1 + 1.0) for span in rarest_first}
        postings = sum(end - start for start, end in present)
        places: np.ndarray = np.empty(0, np.int64)
        read = tries = 0
        for k, (start, end) in enumerate(rarest_first[:-1]):
            places = _union(places, self._position[start:end])
            read += end - start
            if read * 2 > postings or postings - read < SKIPPED_AT_LEAST or tries == TRIES:
                break  # (each try costs a binary search per word: worth it only for much skipped)
            if k + 1 < max(common_from, 1) or len(places) < limit:
                continue
            tries += 1
            scored, scores = self._scores_of(places, spans, weight)
            best = np.partition(scores, len(scores) - limit)[len(scores) - limit] if len(scores) >= limit else -1.0
            rest = sum(bound[span] for span in rarest_first[k + 1 :])
            if best > rest * (1.0 + 1e-9):  # (a margin for rounding: the bound itself is never reached)
                return scored, scores
        return self._scores_all(spans, weight)

    def _part(self, start: int, end: int, entries: np.ndarray | slice, places: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """One token's part of the score of the rows at ``places``, from its ``entries`` there."""
        frequency = _weighted(self._frequency[start:end][entries], weight)
        return idf(self.rows, end - start) * ((frequency * (K1 + 1.0)) / (frequency + self._norm[places]))

    def _scores_all(self, spans: list[Span], weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every row the query matches (ascending places; a row matching only in a column of
        weight 0 scores 0, as in FTS5) and its score."""
        found, parts = [], []
        for start, end in spans:
            if start == end:
                continue
            position = self._position[start:end]
            found.append(position)
            parts.append(self._part(start, end, slice(None), position, weight))
        if not found:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        positions = np.concatenate(found)
        # (Summed in the query's order, as FTS5 sums: each row's parts arrive in token order.)
        totals = np.bincount(positions, weights=np.concatenate(parts))
        # The rows matched: a sort when they are few, a pass over the table's rows when many.
        if len(positions) * 16 < len(totals):
            scored = np.unique(positions)
        else:
            scored = np.flatnonzero(np.bincount(positions))
        return scored, totals[scored]

    def _scores_of(self, places: np.ndarray, spans: list[Span], weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows at ``places`` (ascending, distinct) that the query matches, and their scores:
        each token's entries for them found by a binary search of its rows."""
        totals = np.zeros(len(places), dtype=np.float64)
        matched = np.zeros(len(places), dtype=bool)
        keys = places.astype(self._position.dtype)  # (of another type, numpy would convert the postings)
        for start, end in spans:
            if start == end or not len(places):
                continue
            position = self._position[start:end]
            at = np.searchsorted(position, keys).clip(0, end - start - 1)
            hit = np.flatnonzero(position[at] == keys)
            totals[hit] += self._part(start, end, at[hit], places[hit], weight)
            matched[hit] = True
        return places[matched], totals[matched]


def _union(sorted_places: np.ndarray, more: np.ndarray) -> np.ndarray:
    """Two ascending arrays of distinct places as one."""
    if not len(sorted_places):
        return more.astype(np.int64)
    joined = np.sort(np.concatenate([sorted_places, more]))
    return joined[np.r_[True, joined[1:] != joined[:-1]]]


def _interleave(
    tokens: int, old_to_new: np.ndarray, counts: np.ndarray, positions: np.ndarray, frequencies: np.ndarray,
    added_to_new: np.ndarray, added_counts: np.ndarray, added_positions: np.ndarray, added_frequencies: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two sets of postings as one of ``tokens`` tokens: each token's old entries, then its added
    ones (whose rows sort last). Token i of each set goes to place ``old_to_new[i]`` /
    ``added_to_new[i]`` (both ascending); the old tokens between two added ones move as one block."""
    merged = np.zeros(tokens, dtype=np.int64)
    merged[old_to_new] = counts
    merged[added_to_new] += added_counts
    bounds = np.r_[0, np.cumsum(merged)]
    new_positions = np.empty(int(bounds[-1]), dtype=np.int32)
    new_frequencies = np.empty((int(bounds[-1]), frequencies.shape[1]), dtype=frequencies.dtype)
    old_bounds = np.r_[0, np.cumsum(counts)]
    added_bounds = np.r_[0, np.cumsum(added_counts)]

    def copy_old(first: int, stop: int) -> None:  # old tokens [first, stop): one block, in order
        if stop > first:
            source, end, target = int(old_bounds[first]), int(old_bounds[stop]), int(bounds[old_to_new[first]])
            new_positions[target : target + end - source] = positions[source:end]
            new_frequencies[target : target + end - source] = frequencies[source:end]

    copied = 0
    for j, token in enumerate(added_to_new.tolist()):  # in order: the old tokens up to each, then its entries
        upto = int(np.searchsorted(old_to_new, token, side="right"))
        copy_old(copied, upto)
        copied = max(copied, upto)
        first, stop = int(added_bounds[j]), int(added_bounds[j + 1])
        target = int(bounds[token + 1]) - (stop - first)  # after the token's old entries
        new_positions[target : target + stop - first] = added_positions[first:stop]
        new_frequencies[target : target + stop - first] = added_frequencies[first:stop]
    copy_old(copied, len(old_to_new))
    return bounds, new_positions, new_frequencies


def _weighted(counts: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Each entry's column-weighted count, as FTS5 sums it (:func:`semsearch.bm25.frequency`):
    ``count * weight`` where that is the same number (weights that are whole or halves,
    quarters...), else the weight added once per occurrence."""
    if all((float(value) * 1024).is_integer() for value in weight):  # then every product and sum is exact
        frequency = counts[:, 0] * weight[0]  # (elementwise: a matrix product would start BLAS threads)
        for column in range(1, counts.shape[1]):
            frequency += counts[:, column] * weight[column]
        return frequency
    frequency = np.zeros(len(counts), dtype=np.float64)
    for column in range(counts.shape[1]):
        count, value = counts[:, column], float(weight[column])
        for times in range(1, int(count.max(initial=0)) + 1):
            frequency += np.where(count >= times, value, 0.0)
    return frequency


def _without_empty(terms: bytes, term_ends: np.ndarray, bounds: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The tokens that still have entries (as a read of the table lists them)."""
    empty = np.flatnonzero(bounds[1:] == bounds[:-1])
    if not len(empty):
        return terms, term_ends, bounds
    starts = np.r_[0, term_ends[:-1]]
    keep_bytes = np.ones(len(terms), dtype=bool)
    for token in empty.tolist():
        keep_bytes[int(starts[token]) : int(term_ends[token])] = False
    kept = np.ones(len(term_ends), dtype=bool)
    kept[empty] = False
    lengths = (term_ends - starts)[kept]
    return np.frombuffer(terms, dtype=np.uint8)[keep_bytes].tobytes(), np.cumsum(lengths), np.r_[0, np.cumsum(np.diff(bounds)[kept])]
