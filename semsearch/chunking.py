"""Cut a parsed document into chunks that fit the embedding model.

Structure comes first: whole blocks are packed in order, a heading starts a new chunk and stays with the
text below it, and only a block too large for a chunk is cut, at sentences (lines for code), then at
token windows. Chunks after the first of a section start with the last sentences of the chunk before
(``overlap_tokens``), so a passage cut in two can still be found whole.

Each chunk knows its *heading path*: the chain of headings above it, outermost first (a heading
of level n closes every open heading of level n or deeper). A document is chunked one section at a
time (a section runs from a run of headings to the next heading that follows other text; no chunk
ever crossed that line), so a caller that embeds the path with each chunk can keep room for it in
that section's chunks alone (``reserve``).

The token budget is checked with the model's own tokenizer through :class:`semsearch.tokens.TokenCounter`, counting in
batches: every block of a section in one call, the parts of oversized blocks in one more, overlap
tails in one, and the assembled chunks in a last one unless the counter promises that sums are exact.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import pairwise

from semsearch.tokens import Span, TokenCounter
from semsearch.types import Block, ChunkDraft, ParsedDocument


Headings = tuple[str, ...]


def chunk_document(
    doc: ParsedDocument,
    counter: TokenCounter,
    *,
    max_tokens: int,
    overlap_tokens: int,
    reserve: Callable[[Headings], int] | None = None,
) -> list[ChunkDraft]:
    """Split ``doc`` into chunks of at most ``max_tokens`` tokens, in document order.

    Every non-blank character of every block is in at least one chunk; a chunk's text is
    ``doc.text[start:end]``. Chunks in the same section overlap by at most ``overlap_tokens`` tokens
    (0 turns overlap off); no overlap crosses a heading. ``reserve(headings)`` is how many of the
    ``max_tokens`` to leave free in the chunks under that heading path (for text the caller puts
    with them); it must leave at least one.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, not {max_tokens}")
    if overlap_tokens < 0:
        raise ValueError(f"overlap_tokens must be 0 or more, not {overlap_tokens}")
    drafts: list[ChunkDraft] = []
    newlines = _Newlines(doc.text)
    for headings, blocks in _sections(doc):
        limit = max_tokens - (reserve(headings) if reserve is not None else 0)
        if limit < 1:
            raise ValueError(f"reserve({headings!r}) leaves no room in {max_tokens} tokens")
        # More overlap than half a chunk would make every chunk mostly a copy of the one before.
        overlap = min(overlap_tokens, limit // 2)
        section = ParsedDocument(doc.text, doc.title, doc.format, blocks)
        for draft in _Chunker(section, counter, limit, overlap, headings, newlines).run():
            drafts.append(replace(draft, ordinal=len(drafts)))
    return drafts


def _sections(doc: ParsedDocument) -> Iterator[tuple[Headings, tuple[Block, ...]]]:
    """The document's blocks in sections, each with the heading path in force in it.

    A section starts at a heading that follows anything but a heading, so a run of headings
    (a chapter title and its first section's) stays with the text below it. Its path is the one
    in force after its headings; a first heading that only repeats the document's title is left
    out, since the title goes with every chunk anyway.
    """
    title = _comparable(doc.title)
    open_headings: list[tuple[int, str]] = []  # (level, text), outermost first
    section: list[Block] = []
    after_heading = False
    for block in doc.blocks:
        is_heading = block.kind == "heading"
        if is_heading and not after_heading and section:
            yield _path(open_headings, title), tuple(section)
            section = []
        if is_heading:
            text = _heading_text(doc.text[block.start : block.end])
            if text:
                level = block.level if block.level > 0 else 1
                while open_headings and open_headings[-1][0] >= level:
                    open_headings.pop()
                open_headings.append((level, text))
        section.append(block)
        # Blank blocks are invisible to the chunker, so they do not end a run of headings.
        if doc.text[block.start : block.end].strip():
            after_heading = is_heading
    if section:
        yield _path(open_headings, title), tuple(section)


def _path(open_headings: list[tuple[int, str]], title: str) -> Headings:
    path = tuple(text for _, text in open_headings)
    if path and title and _comparable(path[0]) == title:
        path = path[1:]
    return path


def _comparable(text: str) -> str:
    """A heading or title as compared: letters and digits only, without case (a PDF's first
    heading often carries a footnote mark its title has not)."""
    return "".join(c for c in text.casefold() if c.isalnum())


# --------------------------------------------------------------------------------------------------
# Splitting text into smaller spans

_SENTENCE_END = re.compile(r"""[.!?]+['"”’)\]]*(?=\s)""")
_SENTENCE_OPENERS = "\"'“‘«([_*"
_ABBREVIATIONS = frozenset(
    """e.g i.e eg ie etc vs cf al mr mrs ms mx dr prof sr jr st mt rev hon gen col capt lt sgt
    fig figs no nos vol vols pp ch sec eq approx dept est inc ltd co corp jan feb mar apr jun jul
    aug sep sept oct nov dec""".split()
)


def _trimmed(text: str, start: int, end: int) -> Span | None:
    """The span without surrounding whitespace, or ``None`` if it is blank."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def split_sentences(text: str, start: int, end: int) -> list[Span]:
    """Sentence spans inside ``text[start:end]``, without the whitespace between them.

    A sentence ends at ``.``, ``!`` or ``?`` (and any closing quotes) followed by whitespace and a
    capital letter, digit or opening quote, unless the word before the full stop is a common
    abbreviation or a single initial.
    """
    spans: list[Span] = []
    begin = start
    for match in _SENTENCE_END.finditer(text, start, end):
        stop = match.end()
        following = stop
        while following < end and text[following].isspace():
            following += 1
        if following >= end:
            break
        nxt = text[following]
        if not (nxt.isupper() or nxt.isdigit() or nxt in _SENTENCE_OPENERS):
            continue
        if text[match.start()] == "." and _is_abbreviation(text, begin, match.start()):
            continue
        piece = _trimmed(text, begin, stop)
        if piece is not None:
            spans.append(piece)
        begin = following
    piece = _trimmed(text, begin, end)
    if piece is not None:
        spans.append(piece)
    return spans


def _is_abbreviation(text: str, floor: int, dot: int) -> bool:
    word_start = dot
    while word_start > floor and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:dot].lstrip("\"'“‘([").lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_lines(text: str, start: int, end: int) -> list[Span]:
    """Non-blank lines inside ``text[start:end]``, keeping indentation, without trailing whitespace."""
    spans: list[Span] = []
    begin = start
    while begin < end:
        stop = text.find("\n", begin, end)
        stop = end if stop == -1 else stop
        line_end = stop
        while line_end > begin and text[line_end - 1].isspace():
            line_end -= 1
        if text[begin:line_end].strip():
            spans.append((begin, line_end))
        begin = stop + 1
    return spans


def _split_halves(text: str, start: int, end: int) -> list[Span]:
    """Two spans cut at the whitespace nearest the middle: the last resort when nothing else fits."""
    middle = (start + end) // 2
    cut = middle
    for distance in range((end - start) // 2):
        if text[middle - distance].isspace():
            cut = middle - distance
            break
        if middle + distance < end and text[middle + distance].isspace():
            cut = middle + distance
            break
    return [s for s in (_trimmed(text, start, cut), _trimmed(text, cut, end)) if s is not None]


# --------------------------------------------------------------------------------------------------
# The chunker

Splitter = Callable[[str, int, int], list[Span]]


@dataclass(slots=True)
class _Piece:
    """A span packed into chunks: a whole block, or a part of an oversized one."""

    start: int
    end: int
    tokens: int
    block: int
    whole: bool
    is_heading: bool = False
    starts_section: bool = False


@dataclass
class _Plan:
    """One chunk before it becomes a :class:`ChunkDraft`."""

    pieces: list[_Piece]
    receives_overlap: bool = False
    tail: list[_Piece] = field(default_factory=list)  # the overlap repeated from the chunk before
    tokens: int | None = None  # the exact count, once known

    @property
    def start(self) -> int:
        return (self.tail or self.pieces)[0].start

    @property
    def end(self) -> int:
        return self.pieces[-1].end


_HEADING_MARKS = re.compile(r"^\s*#{1,6}\s+|\s+#+\s*$")


class _Newlines:
    """Where a text's line breaks are, found once per document when a chunk first needs a line."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._positions: list[int] | None = None

    @property
    def positions(self) -> list[int]:
        if self._positions is None:
            self._positions = [m.start() for m in re.finditer("\n", self._text)]
        return self._positions


class _Chunker:
    """Chunking one section of a document (see :func:`chunk_document`)."""

    def __init__(
        self, doc: ParsedDocument, counter: TokenCounter, max_tokens: int, overlap: int, headings: Headings,
        newlines: _Newlines,
    ):
        self.doc = doc
        self.text = doc.text
        self.counter = counter
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.headings = headings
        # Chunks that may start with an overlap tail keep room for it, so pieces are cut to this size.
        self.budget = max_tokens - overlap
        self._newlines = newlines

    def run(self) -> list[ChunkDraft]:
        blocks = [
            (index, span)
            for index, block in enumerate(self.doc.blocks)
            if (span := _trimmed(self.text, block.start, block.end)) is not None
        ]
        if not blocks:
            return []
        plans = self._pack(self._pieces(blocks))
        if self.overlap:
            self._add_tails(plans)
        plans = self._enforce_limit(plans)
        return [self._draft(ordinal, plan) for ordinal, plan in enumerate(plans)]

    # -- pieces ------------------------------------------------------------------------------------

    def _pieces(self, blocks: list[tuple[int, Span]]) -> list[_Piece]:
        """Whole blocks where they fit, the parts of oversized blocks where they do not."""
        counts = self.counter.count([self.text[s:e] for _, (s, e) in blocks])
        pieces: list[_Piece] = []
        oversized: list[tuple[int, Span, list[Splitter]]] = []  # (position in pieces, span, splitters)
        crowded: dict[int, int] = {}  # position -> tokens of the headings its first part must join
        heading_run = 0  # tokens of the headings right above the current block
        for (index, (start, end)), tokens in zip(blocks, counts):
            kind = self.doc.blocks[index].kind
            is_heading = kind == "heading"
            # A block that fits a chunk only without its heading is cut, so the heading keeps company.
            fits = tokens <= self.budget and (is_heading or heading_run + tokens <= self.max_tokens)
            if not fits:
                oversized.append((len(pieces), (start, end), _splitters(kind)))
                if heading_run and not is_heading:
                    crowded[len(pieces)] = heading_run
            pieces.append(_Piece(start, end, tokens, index, fits, is_heading and fits, is_heading))
            heading_run = heading_run + tokens if is_heading else 0
        if not oversized:
            return pieces
        cut = dict(zip((position for position, _, _ in oversized), self._fit([item[1:] for item in oversized])))
        self._make_room(cut, crowded)
        result: list[_Piece] = []
        for position, piece in enumerate(pieces):
            if position not in cut:
                result.append(piece)
                continue
            for n, (start, end, tokens) in enumerate(cut[position]):
                starts_section = piece.starts_section and n == 0
                result.append(_Piece(start, end, tokens, piece.block, False, False, starts_section))
        return result

    def _fit(self, items: list[tuple[Span, list[Splitter]]]) -> list[list[tuple[int, int, int]]]:
        """Cut each span with its splitters, in order, until every part fits the budget.

        After the splitters come token windows, then halving (for a counter whose windows and counts
        disagree). All parts made in one round are counted in one call. Returns each span's parts as
        ``(start, end, tokens)`` in document order.
        """
        done: list[list[tuple[int, int, int]]] = [[] for _ in items]
        pending = [(owner, span, 0) for owner, (span, _) in enumerate(items)]
        while pending:
            fresh: list[tuple[int, Span, int]] = []
            for owner, (start, end), level in pending:
                splitters = [*items[owner][1], self._windows]
                parts = [(start, end)]
                while parts == [(start, end)] and end - start > 1:  # skip splitters that find no cut
                    parts = (splitters[level] if level < len(splitters) else _split_halves)(self.text, start, end)
                    level += 1
                fresh.extend((owner, part, level) for part in parts)
            counts = self.counter.count([self.text[s:e] for _, (s, e), _ in fresh])
            pending = []
            for (owner, (start, end), level), tokens in zip(fresh, counts):
                if tokens <= self.budget or end - start <= 1:
                    done[owner].append((start, end, tokens))
                else:
                    pending.append((owner, (start, end), level))
        for parts in done:
            parts.sort()
        return done

    def _windows(self, text: str, start: int, end: int, max_tokens: int | None = None) -> list[Span]:
        max_tokens = self.budget if max_tokens is None else max_tokens
        # Overlap of at most half a window keeps the windows moving forward.
        spans = self.counter.windows(text[start:end], max_tokens, min(self.overlap, max_tokens // 2))
        return [t for s, e in spans if (t := _trimmed(text, start + s, start + e)) is not None]

    def _make_room(self, cut: dict[int, list[tuple[int, int, int]]], crowded: dict[int, int]) -> None:
        """Cut the first part of a block finer where it would not fit in one chunk with its headings."""
        firsts: list[tuple[int, int, list[Span]]] = []  # (position, room, windows)
        for position, headings in crowded.items():
            room = min(self.max_tokens - headings, self.budget)
            start, end, tokens = cut[position][0]
            if tokens > room >= 1:
                firsts.append((position, room, self._windows(self.text, start, end, room)))
        if not firsts:
            return
        counts = iter(self.counter.count([self.text[s:e] for _, _, spans in firsts for s, e in spans]))
        for position, room, spans in firsts:
            parts = [(start, end, next(counts)) for start, end in spans]
            if parts[0][2] <= room and all(tokens <= self.budget for _, _, tokens in parts):
                cut[position][:1] = parts

    # -- packing -----------------------------------------------------------------------------------

    def _pack(self, pieces: list[_Piece]) -> list[_Plan]:
        """Greedy packing in order; a heading starts a chunk and is never left at the end of one."""
        plans: list[_Plan] = []
        current: list[_Piece] = []
        used = 0
        receives = False
        for piece in pieces:
            limit = self.budget if receives else self.max_tokens
            new_section = piece.starts_section and not all(p.is_heading for p in current)
            if current and (new_section or used + piece.tokens > limit):
                plans.append(_Plan(current, receives))
                # Overlap repeats the text just closed, so never after a heading or across one.
                receives = self.overlap > 0 and not current[-1].is_heading and not piece.starts_section
                current, used = [], 0
            current.append(piece)
            used += piece.tokens
        plans.append(_Plan(current, receives))
        return plans

    # -- overlap -----------------------------------------------------------------------------------

    def _add_tails(self, plans: list[_Plan]) -> None:
        """Start each continuing chunk with the last sentences (or lines) of the chunk before it."""
        to_count: list[tuple[_Plan, _Piece, list[Span]]] = []  # tails of whole blocks, counted together
        for before, plan in zip(plans, plans[1:]):
            if not plan.receives_overlap:
                continue
            last = before.pieces[-1]
            if not last.whole:
                # The chunk before ends inside a cut block: its parts are counted already.
                same_block = []
                for piece in reversed(before.pieces):
                    if piece.block != last.block:
                        break
                    same_block.append(piece)
                self._set_tail(plan, same_block)
                continue
            parts = _splitters(self.doc.blocks[last.block].kind)[0](self.text, last.start, last.end)
            if len(parts) == 1:
                self._set_tail(plan, [last])
                continue
            # Count only the parts that could fit, judged by the block's tokens per character.
            per_char = last.tokens / (last.end - last.start)
            candidates: list[Span] = []
            estimate = 0.0
            for start, end in reversed(parts):
                candidates.append((start, end))
                estimate += (end - start) * per_char
                if estimate > 1.5 * self.overlap:
                    break
            to_count.append((plan, last, candidates))
        if not to_count:
            return
        counts = iter(self.counter.count([self.text[s:e] for _, _, spans in to_count for s, e in spans]))
        for plan, last, candidates in to_count:
            parts = [_Piece(s, e, next(counts), last.block, False) for s, e in candidates]
            self._set_tail(plan, parts)

    def _set_tail(self, plan: _Plan, parts_from_end: list[_Piece]) -> None:
        """Give ``plan`` the longest run of trailing parts that fits in the overlap."""
        tokens = 0
        taken = 0
        for part in parts_from_end:
            if tokens + part.tokens > self.overlap:
                break
            tokens += part.tokens
            taken += 1
        plan.tail = parts_from_end[:taken][::-1]

    # -- the limit ---------------------------------------------------------------------------------

    def _enforce_limit(self, plans: list[_Plan]) -> list[_Plan]:
        """Count every assembled chunk, and cut again any whose whole counts more than its parts.

        A chunk of one part was counted exactly already; so was one whose parts are joined by plain
        whitespace, when the counter says such joins add no tokens (``additive``).
        """
        additive = bool(getattr(self.counter, "additive", False))
        while True:
            for plan in plans:
                if plan.tokens is None:
                    parts = plan.tail + plan.pieces
                    if len(parts) == 1 or (additive and self._joined_by_whitespace(parts)):
                        plan.tokens = sum(part.tokens for part in parts)
            unknown = [plan for plan in plans if plan.tokens is None]
            if not unknown:
                return plans
            counts = self.counter.count([self.text[plan.start : plan.end] for plan in unknown])
            for plan, tokens in zip(unknown, counts):
                plan.tokens = tokens
            if all(tokens <= self.max_tokens for tokens in counts):
                return plans
            plans = [part for plan in plans for part in self._recut(plan)]

    def _joined_by_whitespace(self, parts: list[_Piece]) -> bool:
        return all(
            before.end < after.start and not self.text[before.end : after.start].strip(" \t\r\n")
            for before, after in pairwise(parts)
        )

    def _recut(self, plan: _Plan) -> list[_Plan]:
        assert plan.tokens is not None
        if plan.tokens <= self.max_tokens:
            return [plan]
        if plan.tail:
            return [_Plan(plan.pieces)]
        if len(plan.pieces) > 1:
            middle = len(plan.pieces) // 2
            return [_Plan(plan.pieces[:middle]), _Plan(plan.pieces[middle:])]
        return [plan]  # one piece counted on its own: only a single character can be over the limit

    # -- output ------------------------------------------------------------------------------------

    def _draft(self, ordinal: int, plan: _Plan) -> ChunkDraft:
        last = plan.pieces[-1]
        start_block = (plan.tail or plan.pieces)[0].block
        assert plan.tokens is not None
        return ChunkDraft(
            ordinal=ordinal,
            text=self.text[plan.start : plan.end],
            start=plan.start,
            end=plan.end,
            start_line=self._line(start_block, plan.start),
            end_line=self._line(last.block, plan.end - 1),
            page=self.doc.blocks[start_block].page,
            headings=self.headings,
            tokens=plan.tokens,
        )

    def _line(self, index: int, position: int) -> int:
        """The source line of ``position``, counting newlines from the start of its block."""
        block: Block = self.doc.blocks[index]
        span = _trimmed(self.text, block.start, block.end) or (block.start, block.end)
        if position <= span[0]:
            return block.start_line
        if position >= span[1] - 1:
            return block.end_line
        breaks = self._newlines.positions
        newlines = bisect.bisect_left(breaks, position) - bisect.bisect_left(breaks, block.start)
        return max(block.start_line, min(block.end_line, block.start_line + newlines))


def _splitters(kind: str) -> list[Splitter]:
    """How a block of this kind is cut when it is too large, coarsest first."""
    if kind == "code":
        return [split_lines]
    return [split_sentences, split_lines]


def _heading_text(raw: str) -> str:
    """A heading block's title: Markdown ``#`` marks removed and whitespace collapsed."""
    return " ".join(_HEADING_MARKS.sub("", raw).split())
