"""HTML: the readable text of a page, one block per block-level element.

Parsed with BeautifulSoup's ``html.parser`` because it records the source line of every tag. Page
furniture (scripts, styles, navigation, site headers and footers, forms...) is dropped. Each heading,
paragraph, list item, table cell, ``pre`` and run of loose text inside a container becomes one block;
whitespace is collapsed except in ``pre``. :attr:`ParsedDocument.text` is the blocks' texts joined by
blank lines. Source lines of text nodes are estimated from the nearest preceding tag's line plus the
newlines seen since, which is exact for ordinary markup.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

from semsearch.types import Block, ParsedDocument

_DROP = frozenset({
    "script", "style", "noscript", "template", "nav", "footer", "aside", "form", "svg", "iframe",
    "head", "title", "button", "select", "textarea", "object", "embed", "canvas", "math",
})
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = frozenset({
    "p", "li", "blockquote", "td", "th", "dt", "dd", "figcaption", "div", "section", "article",
    "main", "body", "html", "ul", "ol", "dl", "table", "thead", "tbody", "tfoot", "tr", "caption",
    "figure", "address", "details", "summary", "fieldset", "legend", "center", "hgroup", "header",
    "dialog", "menu", "hr", "[document]",
}) | frozenset(_HEADINGS)
# A <header> inside these holds the article's own title, not the site banner.
_CONTENT_CONTAINERS = ("article", "main", "section")


@dataclass
class _Run:
    """Text gathered for one block: segments split by <br>, with the lines of its first/last words."""

    kind: str
    level: int
    segments: list[list[str]] = field(default_factory=lambda: [[]])
    first_line: int = 0
    last_line: int = 0

    def add(self, text: str, line: int) -> None:
        self.segments[-1].append(text)
        stripped = text.rstrip()
        if stripped:
            if not self.first_line:
                self.first_line = line + text[: len(text) - len(text.lstrip())].count("\n")
            self.last_line = line + stripped.count("\n")

    def text(self) -> str:
        lines = (" ".join("".join(segment).split()) for segment in self.segments)
        return "\n".join(line for line in lines if line)


@dataclass(frozen=True)
class _Piece:
    text: str
    first_line: int
    last_line: int
    kind: str
    level: int


def parse_html(text: str, fallback_title: str, encoding: str | None = None) -> ParsedDocument:
    """Parse an HTML page whose newlines are already ``\\n``."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    title = ""
    if soup.title is not None:
        title = " ".join(soup.title.get_text().split())
    pieces = _collect(soup)
    if not title:
        title = next((p.text for p in pieces if p.kind == "heading" and p.level == 1), "")
        title = " ".join(title.split())
    parts: list[str] = []
    blocks: list[Block] = []
    offset = 0
    for piece in pieces:
        if parts:
            parts.append("\n\n")
            offset += 2
        parts.append(piece.text)
        blocks.append(Block(offset, offset + len(piece.text), piece.first_line, piece.last_line,
                            piece.kind, piece.level))
        offset += len(piece.text)
    metadata = {"encoding": encoding} if encoding else {}
    return ParsedDocument("".join(parts), title or fallback_title, "html", tuple(blocks), metadata)


def _collect(soup) -> list[_Piece]:
    """Walk the tree in document order without recursion (pages can nest thousands deep)."""
    from bs4 import NavigableString

    pieces: list[_Piece] = []
    runs = [_Run("paragraph", 0)]
    line = 1
    stack: list[tuple[object, bool]] = [(soup, False)]
    while stack:
        node, closing = stack.pop()
        if closing:
            _emit(runs.pop(), pieces)
            continue
        if isinstance(node, NavigableString):
            if type(node) is NavigableString:  # subclasses are comments, doctypes, CDATA, scripts
                runs[-1].add(str(node), line)
                line += node.count("\n")
            continue
        if node.sourceline:
            line = node.sourceline
        name = node.name
        if name in _DROP or node.get("role") == "navigation" or (
            name == "header" and node.find_parent(_CONTENT_CONTAINERS) is None
        ):
            line += _newlines(node)
            continue
        if name == "br":
            runs[-1].segments.append([])
            continue
        if name == "pre":
            line = _pre(node, line, runs, pieces)
            continue
        if name in _BLOCKS:
            _emit(runs[-1], pieces)
            parent = runs[-1]
            runs[-1] = _Run(parent.kind, parent.level)
            level = _HEADINGS.get(name, 0)
            runs.append(_Run("heading" if level else "paragraph", level))
            stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    while runs:
        _emit(runs.pop(), pieces)
    return pieces


def _pre(node, line: int, runs: list[_Run], pieces: list[_Piece]) -> int:
    """Emit a ``pre`` element as one code block; returns the line after it."""
    from bs4 import NavigableString

    _emit(runs[-1], pieces)
    parent = runs[-1]
    runs[-1] = _Run(parent.kind, parent.level)
    run = _Run("code", 0)
    for child in node.descendants:
        if isinstance(child, NavigableString):
            if type(child) is NavigableString:
                run.add(str(child), line)
                line += child.count("\n")
        elif child.sourceline:
            line = child.sourceline
    code = textwrap.dedent("".join(run.segments[0]).strip("\n")).strip()
    if code:
        pieces.append(_Piece(code, run.first_line, run.last_line, "code", 0))
    return line


def _emit(run: _Run, pieces: list[_Piece]) -> None:
    text = run.text()
    if text:
        pieces.append(_Piece(text, run.first_line, run.last_line, run.kind, run.level))


def _newlines(node) -> int:
    from bs4 import NavigableString

    return sum(child.count("\n") for child in node.descendants if isinstance(child, NavigableString))
