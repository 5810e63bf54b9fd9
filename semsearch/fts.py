"""Keyword search over the FTS5 table ``chunk_fts``: ranked matches, and what BM25 is made of.

Used by :class:`semsearch.store.Store` (each function takes one of its connections). FTS5's
``bm25()`` scores every row that matches any word of a query, about 2 microseconds a row, so a
word found in a fifth of a million chunks costs 0.4 s. :mod:`semsearch.bm25` avoids that where
it can prove the answer is the same; it needs the parts of the score this module reads:

- the table's row count and average row length (FTS5's "averages" record);
- each query word's FTS5 tokens (stemmed exactly as the table stems them) and how many rows hold
  each token (the ``fts5vocab`` view of the table);
- for a few rows, their length in tokens (``chunk_fts_docsize``) and how often each token occurs
  in each column, found by tokenising those rows again in a scratch FTS5 table.

What the table indexes is each chunk's context and text as :func:`semsearch.cjk.keyword_text`
writes them (CJK runs as bigrams; any other text as it is): the view ``chunk_fts_source`` is its
external content, and the triggers that keep it in step call that function, which
:func:`prepare_connection` registers on every connection as ``keyword_text``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from semsearch import cjk
from semsearch.database import scalar
from semsearch.filters import Sql, filter_conditions, joined
from semsearch.types import SearchFilter

TOKENIZER = "porter unicode61 remove_diacritics 2"  # as migration 0001 made chunk_fts
COLUMNS = ("context", "text")  # chunk_fts's columns, in order (bm25 weights follow this order)
SOURCE = "chunk_fts_source"  # the view chunk_fts indexes (migration 0006): chunks as keyword text
KEYWORD_TEXT = "keyword_text"  # the SQL function the view and the triggers call
_AVERAGES_ROWID = 1  # FTS5 keeps the row count and per-column token totals in this %_data row


@dataclass(frozen=True)
class TermStatistics:
    """What BM25 needs to know about a query's words in the whole table."""

    rows: int  # rows in the table
    average_length: float  # tokens per row, all columns together
    tokens: dict[str, tuple[str, ...]]  # each query word's tokens, as FTS5 indexed them
    rows_with: dict[str, int]  # each of those tokens (and each prefix word): how many rows hold it


@dataclass(frozen=True)
class RowTokens:
    """One row's length and, for some tokens, how often each occurs in each column."""

    length: int
    counts: dict[str, tuple[int, ...]]


def prepare_connection(connection: sqlite3.Connection) -> None:
    """The ``keyword_text`` function, and scratch tables of one connection (in memory): query
    words and candidate rows tokenised exactly as chunk_fts tokenises, and the vocabularies of both."""
    # Deterministic: SQLite may then use it in indexes and views, and call it once per value.
    connection.create_function(KEYWORD_TEXT, 1, _keyword_text, deterministic=True)
    connection.execute(f"CREATE VIRTUAL TABLE temp.query_words USING fts5(word, tokenize='{TOKENIZER}')")
    connection.execute("CREATE VIRTUAL TABLE temp.query_terms USING fts5vocab(temp, 'query_words', 'instance')")
    connection.execute("CREATE VIRTUAL TABLE temp.chunk_terms USING fts5vocab(main, 'chunk_fts', 'row')")
    connection.execute("CREATE VIRTUAL TABLE temp.chunk_instances USING fts5vocab(main, 'chunk_fts', 'instance')")
    connection.execute(f"CREATE VIRTUAL TABLE temp.scratch_rows USING fts5({', '.join(COLUMNS)}, tokenize='{TOKENIZER}')")
    connection.execute("CREATE VIRTUAL TABLE temp.scratch_terms USING fts5vocab(temp, 'scratch_rows', 'instance')")


def search(
    connection: sqlite3.Connection,
    match: str,
    limit: int,
    where: SearchFilter,
    *,
    weights: tuple[float, float],
    only: Sequence[int] | None = None,
) -> list[tuple[int, float]]:
    """BM25 over the FTS5 table: ``(chunk_id, score)``, best first (higher is better).

    ``match`` is an FTS5 query string; ``weights`` are the BM25 column weights for
    (context, text); ``only`` restricts the search to these chunk ids.
    """
    query = ["SELECT chunk_fts.rowid, bm25(chunk_fts, ?, ?) AS rank FROM chunk_fts"]
    conditions = [Sql("chunk_fts MATCH ?", (match,))]
    if not where.empty:
        # Match first, then look each matching chunk's document up and test the filter: the
        # cost follows the matches. (Listing the allowed chunks first costs as many as the
        # filter allows: 0.4 s a query at 100k chunks with a filter passing half of them.)
        query.append("JOIN chunks ON chunks.id = chunk_fts.rowid JOIN documents ON documents.id = chunks.document_id")
        conditions += filter_conditions(where)
    if only is not None:
        # "rowid + 0", not "rowid": a bare rowid IN (...) makes SQLite seek FTS5 once per id,
        # 60-170 times slower than matching once and filtering. The ids are written into the
        # SQL as numbers: SQLite allows only so many bound parameters.
        conditions.append(Sql(f"chunk_fts.rowid + 0 IN ({','.join(str(int(i)) for i in only) or 'NULL'})"))
    condition = joined(conditions)
    query.append(f"WHERE {condition.text} ORDER BY rank LIMIT ?")
    parameters = (float(weights[0]), float(weights[1]), *condition.parameters, int(limit))
    rows = connection.execute(" ".join(query), parameters).fetchall()
    return [(int(row[0]), -float(row[1])) for row in rows]


def query_tokens(connection: sqlite3.Connection, words: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Each word's tokens, stemmed exactly as the table stems them; a prefix word (a single CJK
    character, ``"猫*"``) has none: FTS5 expands it itself."""
    plain = [word for word in words if not cjk.is_prefix(word)]
    connection.execute("DELETE FROM temp.query_words")
    if plain:
        connection.executemany(
            "INSERT INTO temp.query_words(rowid, word) VALUES (?, ?)", list(enumerate(plain, start=1))
        )
    found = connection.execute("SELECT doc, term FROM temp.query_terms ORDER BY doc, offset").fetchall()
    connection.commit()
    tokens: dict[str, list[str]] = {word: [] for word in words}
    for position, token in found:
        tokens[plain[int(position) - 1]].append(token)
    return {word: tuple(found) for word, found in tokens.items()}


def statistics(
    connection: sqlite3.Connection,
    words: Sequence[str],
    known: Mapping[str, int] | None = None,
    tokens: Mapping[str, tuple[str, ...]] | None = None,
) -> TermStatistics:
    """Row count, average length, and each word's tokens with the rows holding each token.

    Counting the rows that hold a token reads its whole posting list (about 75 ns a row, so 70 ms
    for a word in most of a million chunks); ``known`` counts (of the same revision) are reused,
    and so are ``tokens`` (:func:`query_tokens` of these words).

    A prefix word (a single CJK character, ``"猫*"``) stands for every token that starts with it,
    which FTS5 expands itself: it has no tokens here, and ``rows_with`` counts the rows matching
    it under the word itself.
    """
    rows, total_tokens = _averages(connection)
    if tokens is None:
        tokens = query_tokens(connection, words)
    found = [token for word in words for token in tokens[word]]
    known = known or {}
    rows_with = {token: known[token] for token in found if token in known}
    unknown = list(dict.fromkeys(token for token in found if token not in known))
    for token in unknown:  # one lookup each: fts5vocab answers "term = ?" without a scan of the vocabulary
        count = scalar(connection, "SELECT doc FROM temp.chunk_terms WHERE term = ?", (token,))
        rows_with[token] = int(count or 0)
    for word in words:
        if cjk.is_prefix(word):
            rows_with[word] = known[word] if word in known else _rows_matching(connection, word)
    average = total_tokens / rows if rows else 0.0
    return TermStatistics(rows, average, {word: tuple(tokens[word]) for word in words}, rows_with)


@dataclass(frozen=True)
class RawPostings:
    """The whole table's postings as :func:`read_postings` reads them (for
    :class:`semsearch.postings.Postings`): one entry per (token, row), token by token, rows
    ascending within a token."""

    revision: int  # of the index, read in the same snapshot
    rows: int  # FTS5's row count
    total_tokens: int  # over all rows and columns
    ids: np.ndarray  # int64, each row's id, ascending
    lengths: np.ndarray  # int64, each row's length in tokens (all columns), in the order of ids
    terms: list[str]  # every token, in FTS5's order (its bytes' order)
    entries: np.ndarray  # int64, each token's number of entries
    positions: np.ndarray  # int32, each entry's row, as its place in ids
    frequencies: np.ndarray  # uint16 (entries, len(COLUMNS)), each entry's count in each column


POSTINGS_BATCH = 2_000  # tokens read and decoded at a time (bounds the memory a read needs)
LENGTHS_STEP = 4_000_000  # entries summed at a time into the rows' lengths
CHANGE_SAMPLE = 64  # rows of a copy checked to be unchanged when a change is read


def read_postings(connection: sqlite3.Connection, revision: int, max_tokens: int) -> RawPostings | None:
    """Every token's rows and counts, and every row's length; ``None`` if the table holds more
    than ``max_tokens`` tokens. The caller holds one read transaction around it (and the revision).

    About half a second per million tokens, most of it in SQLite: one row per token from
    ``fts5vocab``, its occurrences joined into one string that numpy parses, a batch of tokens
    at a time. A row's length is its number of occurrences (what ``chunk_fts_docsize`` holds),
    checked against FTS5's total."""
    rows, total_tokens = _averages(connection)
    if total_tokens > max_tokens:
        return None
    listed = scalar(connection, "SELECT group_concat(id) FROM chunk_fts_docsize")
    row_ids = np.unique(np.fromstring(listed or "", dtype=np.int64, sep=","))
    raw = _read_instances(connection, "temp.chunk_instances", revision, row_ids, total_tokens)
    if len(row_ids) != rows or raw.total_tokens != total_tokens:
        raise ValueError("the keyword index's postings do not add up to its row count and length")
    return raw


@dataclass(frozen=True)
class PostingsChange:
    """What changed in the table since a copy of its postings was read (for
    :meth:`semsearch.postings.Postings.changed`): rows are only ever added with higher ids
    than any before (chunk ids only grow) or removed."""

    revision: int
    rows: int  # FTS5's row count now
    total_tokens: int  # and its tokens
    removed: np.ndarray  # int64, ids of the copy's rows no longer in the table
    added: RawPostings  # the postings of the rows added since, as read_postings reads a table


def read_postings_change(
    connection: sqlite3.Connection, revision: int, ids: np.ndarray, lengths: np.ndarray, max_tokens: int, most_changed: int
) -> PostingsChange | None:
    """The change since a copy of the postings holding rows ``ids`` (ascending) was read; ``None``
    if the table now holds more than ``max_tokens`` tokens or more than ``most_changed`` rows were
    added and removed (then read it whole). The caller holds one read transaction.

    Costs what changed, plus a count of the rows up to the copy's last (and, if that shows some
    were removed, a list of them): the added rows are tokenised again in a scratch FTS5 table,
    as :func:`row_tokens` does, and its postings read as the table's are. Some of the rows the
    copy holds (``lengths``: theirs) are checked to be the same length still: an index deleted
    and made again at its path reuses ids for other rows."""
    rows, total_tokens = _averages(connection)
    if total_tokens > max_tokens:
        return None
    last = int(ids[-1]) if len(ids) else 0
    still = scalar(connection, "SELECT count(*) FROM chunk_fts_docsize WHERE id <= ?", (last,)) or 0
    if len(ids) - still + rows - still > most_changed:  # (removed, added)
        return None
    removed = np.empty(0, np.int64)
    if still != len(ids):
        # Every deleted chunk is recorded in `tombstones` until a merge of its segment: those the
        # copy holds are the rows removed since, if they are all of them.
        tombs = connection.execute("SELECT chunk_id FROM tombstones WHERE chunk_id <= ?", (last,)).fetchall()
        removed = _among(np.unique(np.asarray([row[0] for row in tombs], dtype=np.int64)), ids)
        if len(removed) != len(ids) - still:
            listed = scalar(connection, "SELECT group_concat(id) FROM chunk_fts_docsize WHERE id <= ?", (last,))
            remaining = np.unique(np.fromstring(listed or "", dtype=np.int64, sep=","))
            if len(_among(remaining, ids)) != len(remaining):  # a row of an old id that the copy never held
                raise ValueError("the keyword index holds rows the copy of its postings never saw")
            held = np.zeros(len(ids), dtype=bool)
            held[np.searchsorted(ids, remaining)] = True
            removed = ids[~held]
    sample = np.unique(np.random.default_rng().choice(len(ids), min(len(ids), CHANGE_SAMPLE)))
    now = _row_lengths(connection, ids[sample].tolist())
    if any(now.get(int(ids[at]), int(lengths[at])) != int(lengths[at]) for at in sample.tolist()):
        raise ValueError("rows of the keyword index changed under their ids")
    connection.execute("DELETE FROM temp.scratch_rows")
    added = connection.execute(f"SELECT id, {', '.join(COLUMNS)} FROM {SOURCE} WHERE id > ? ORDER BY id", (last,)).fetchall()
    _into_scratch(connection, added)
    added_ids = np.asarray([row[0] for row in added], dtype=np.int64)
    most = sum(len(str(value or "")) for row in added for value in row[1:]) + 1  # tokens are never more than characters
    raw = _read_instances(connection, "temp.scratch_terms", revision, added_ids, most)
    connection.execute("DELETE FROM temp.scratch_rows")
    return PostingsChange(revision, rows, total_tokens, removed, raw)


def _among(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Those of ``values`` (ascending) that ``ids`` (ascending) holds."""
    if not len(values) or not len(ids):
        return values[:0]
    at = np.searchsorted(ids, values).clip(0, len(ids) - 1)
    return values[ids[at] == values]


def _read_instances(connection: sqlite3.Connection, vocabulary: str, revision: int, row_ids: np.ndarray, most: int) -> RawPostings:
    """The postings of rows ``row_ids`` (ascending) from an ``fts5vocab`` instance table over
    them, which holds at most ``most`` occurrences."""
    place = _places(row_ids)
    column = "CASE col " + " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(COLUMNS)) + " END"
    result = connection.execute(
        f"SELECT term, count(*), group_concat(doc * {len(COLUMNS)} + {column}) FROM {vocabulary} GROUP BY term"
    )
    terms: list[str] = []
    entries: list[np.ndarray] = []
    # Each (token, row) pair is at least one occurrence: filled in place, no copies.
    positions = np.empty(most, dtype=np.int32)
    frequencies = np.empty((most, len(COLUMNS)), dtype=np.uint16)
    filled = 0
    while batch := result.fetchmany(POSTINGS_BATCH):
        terms += [row[0] for row in batch]
        occurrences = np.fromstring(",".join(row[2] for row in batch), dtype=np.int64, sep=",")
        counts, at, times = _entries(np.asarray([row[1] for row in batch], dtype=np.int64), occurrences, place)
        if filled + len(at) > most:
            raise ValueError("the keyword index holds more postings than tokens")
        entries.append(counts)
        positions[filled : filled + len(at)] = at
        frequencies[filled : filled + len(at)] = times
        filled += len(at)
    positions, frequencies = positions[:filled], frequencies[:filled]
    lengths = np.zeros(len(row_ids), dtype=np.float64)
    for start in range(0, filled, LENGTHS_STEP):  # (in steps: a pass over all at once doubles the memory)
        part = frequencies[start : start + LENGTHS_STEP].sum(axis=1, dtype=np.float64)
        lengths += np.bincount(positions[start : start + LENGTHS_STEP], weights=part, minlength=len(row_ids))
    return RawPostings(
        revision=revision,
        rows=len(row_ids),
        total_tokens=int(lengths.sum()),
        ids=row_ids,
        lengths=lengths.astype(np.int64),
        terms=terms,
        entries=np.concatenate(entries) if entries else np.empty(0, np.int64),
        positions=positions,
        frequencies=frequencies,
    )


def _places(ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function from row ids to their places in ``ids`` (ascending), -1 for any other id: a
    table lookup when the ids are dense enough (they are: chunk ids only grow), else a search."""
    if len(ids) and int(ids[-1]) <= 4 * len(ids) + 1024:
        table = np.full(int(ids[-1]) + 2, -1, dtype=np.int64)  # its last entry stays -1: any id beyond
        table[ids] = np.arange(len(ids))
        return lambda wanted: table[np.minimum(wanted, len(table) - 1)]

    def search(wanted: np.ndarray) -> np.ndarray:
        if not len(ids):
            return np.full(len(wanted), -1, dtype=np.int64)
        at = np.searchsorted(ids, wanted).clip(0, len(ids) - 1)
        return np.where(ids[at] == wanted, at, -1)

    return search


def _entries(
    counts: np.ndarray, occurrences: np.ndarray, place: Callable[[np.ndarray], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Some tokens' occurrences (``counts[i]`` for the i-th, each ``row_id * len(COLUMNS) +
    column``) as entries: each token's number of entries, and each entry's row (its place in
    the table's ids, by ``place``) and count per column."""
    columns = len(COLUMNS)
    token = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    row_stride = int(occurrences.max(initial=0)) // columns + 1
    keys = token * (row_stride * columns) + occurrences  # (token, row, column); fts5vocab's order
    if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
        keys = np.sort(keys)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.empty(0, np.int64)
    times = np.diff(np.r_[starts, len(keys)])
    unique = keys[starts]
    pair, column = unique // columns, unique % columns
    new_pair = np.r_[True, pair[1:] != pair[:-1]] if len(pair) else np.empty(0, bool)
    frequencies = np.zeros((int(new_pair.sum()), columns), dtype=np.uint16)
    frequencies[np.cumsum(new_pair) - 1, column] = np.minimum(times, np.iinfo(np.uint16).max)
    pairs = pair[new_pair]
    at = place(pairs % row_stride)
    if len(at) and int(at.min()) < 0:
        raise ValueError("the keyword index holds a row it has no length for")
    return np.bincount(pairs // row_stride, minlength=len(counts)), at.astype(np.int32), frequencies


def row_tokens(connection: sqlite3.Connection, ids: Sequence[int], tokens: Sequence[str]) -> dict[int, RowTokens]:
    """For each of ``ids`` still in the table: its length, and per column how often each of
    ``tokens`` occurs in it."""
    wanted = list(dict.fromkeys(int(i) for i in ids))
    if not wanted:
        return {}
    lengths = _row_lengths(connection, wanted)
    connection.execute("DELETE FROM temp.scratch_rows")
    for offset in range(0, len(wanted), 900):
        part = wanted[offset : offset + 900]
        texts = connection.execute(
            f"SELECT id, {', '.join(COLUMNS)} FROM {SOURCE} WHERE id IN ({','.join('?' * len(part))})", tuple(part)
        ).fetchall()
        _into_scratch(connection, texts)
    counts: dict[int, dict[str, list[int]]] = {row_id: {} for row_id in lengths}
    wanted_tokens = list(dict.fromkeys(tokens))
    for row_id, token, name, count in connection.execute(
        "SELECT doc, term, col, count(*) FROM temp.scratch_terms "
        f"WHERE term IN ({','.join('?' * len(wanted_tokens))}) GROUP BY doc, term, col",
        tuple(wanted_tokens),
    ).fetchall():
        if int(row_id) in counts:
            per_column = counts[int(row_id)].setdefault(token, [0] * len(COLUMNS))
            per_column[COLUMNS.index(name)] = int(count)
    connection.execute("DELETE FROM temp.scratch_rows")
    connection.commit()
    return {
        row_id: RowTokens(lengths[row_id], {token: tuple(c) for token, c in counts[row_id].items()})
        for row_id in lengths
    }


def _row_lengths(connection: sqlite3.Connection, ids: Sequence[int]) -> dict[int, int]:
    """The length in tokens (all columns) of each of ``ids`` still in the table."""
    lengths: dict[int, int] = {}
    for offset in range(0, len(ids), 900):
        part = [int(i) for i in ids[offset : offset + 900]]
        for row_id, sizes in connection.execute(
            f"SELECT id, sz FROM chunk_fts_docsize WHERE id IN ({','.join('?' * len(part))})", tuple(part)
        ).fetchall():
            lengths[int(row_id)] = sum(_varints(sizes))
    return lengths


def _into_scratch(connection: sqlite3.Connection, rows: Sequence[Sequence]) -> None:
    """Rows of ``(id, *COLUMNS)`` (as read from the table's source) into the scratch table, which
    tokenises them exactly as the table does. (Inserting fetched rows measured 1.5x faster than
    INSERT ... SELECT.)"""
    if rows:
        marks = ", ".join("?" * (1 + len(COLUMNS)))
        connection.executemany(
            f"INSERT INTO temp.scratch_rows(rowid, {', '.join(COLUMNS)}) VALUES ({marks})", [tuple(row) for row in rows]
        )


_interrupted = threading.Event()  # a Ctrl-C arrived while SQLite was running keyword_text()


def _keyword_text(value):
    """:func:`semsearch.cjk.keyword_text` as SQLite calls it. sqlite3 turns any exception raised
    in it into "user-defined function raised exception" and drops the original, so a Ctrl-C
    arriving here is noted, for :func:`take_interrupt` to turn back into ``KeyboardInterrupt``."""
    try:
        return cjk.keyword_text(value) if isinstance(value, str) else value
    except KeyboardInterrupt:
        _interrupted.set()
        raise


def take_interrupt() -> bool:
    """Whether a Ctrl-C was swallowed by SQLite inside ``keyword_text`` since the last call."""
    if _interrupted.is_set():
        _interrupted.clear()
        return True
    return False


def quoted(word: str) -> str:
    """One query word as an FTS5 string, quoted so it is never read as syntax; a prefix word
    (``猫*``) as FTS5's prefix query (``"猫"*``)."""
    if cjk.is_prefix(word):
        return quoted(word[:-1]) + "*"
    return '"' + word.replace('"', '""') + '"'


def _rows_matching(connection: sqlite3.Connection, word: str) -> int:
    """How many rows FTS5 finds for one query word (its IDF counts these rows)."""
    statement = "SELECT count(*) FROM chunk_fts WHERE chunk_fts MATCH ?"
    return int(scalar(connection, statement, (quoted(word),)) or 0)


def _averages(connection: sqlite3.Connection) -> tuple[int, int]:
    """FTS5's row count and total tokens (all columns), from its averages record."""
    blob = scalar(connection, 
        "SELECT block FROM chunk_fts_data WHERE id = ?", (_AVERAGES_ROWID,)
    )
    if not blob:
        return 0, 0
    numbers = _varints(blob)
    return numbers[0], sum(numbers[1 : 1 + len(COLUMNS)])


def _varints(blob: bytes) -> list[int]:
    """SQLite's variable-length integers (big-endian, 7 bits a byte, the ninth byte whole)."""
    numbers, position = [], 0
    while position < len(blob):
        value = 0
        for index in range(9):
            byte = blob[position]
            position += 1
            if index == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        numbers.append(value)
    return numbers
