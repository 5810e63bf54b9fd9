"""reStructuredText: section titles, literal blocks, code directives, PEP headers, paragraphs.

Heading levels follow the order in which each adornment style (character, with or without overline)
first appears, as docutils does. Comments, link targets, substitution definitions and the bodies of
directives that hold no prose (``image``, ``raw``, ``toctree``...) are left out of the blocks. A PEP's
RFC 822 header (``PEP: 8``, ``Title: ...``) and a leading field list (``:author: ...``) go into the
metadata with lowercased keys instead.
"""

from __future__ import annotations

import re

from semsearch.loaders.lines import SourceLines
from semsearch.types import Block, ParsedDocument

_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")
_HEADER_FIELD = re.compile(r"^([A-Za-z][\w-]*):[ \t]*(.*?)[ \t]*$")
_DOCINFO_FIELD = re.compile(r"^:([\w-]+):(?:[ \t]+(.*?))?[ \t]*$")
_DIRECTIVE = re.compile(r"^[ \t]*\.\.[ \t]+([A-Za-z0-9][\w:+.-]*?)::(?:[ \t]+(.*?))?[ \t]*$")
_FOOTNOTE = re.compile(r"^[ \t]*\.\.[ \t]+\[[^\]]+\]")

_CODE_DIRECTIVES = frozenset({"code", "code-block", "sourcecode", "productionlist", "doctest"})
_SILENT_DIRECTIVES = frozenset({
    "image", "raw", "include", "contents", "toctree", "meta", "highlight", "index", "sectnum",
    "default-role", "role", "target-notes", "only", "csv-table", "literalinclude", "header", "footer",
})
_PROSE_ARGUMENT_DIRECTIVES = frozenset({
    "note", "warning", "tip", "important", "caution", "danger", "attention", "hint", "error",
    "admonition", "seealso", "topic", "sidebar", "rubric", "deprecated", "versionadded",
    "versionchanged",
})


def parse_rst(text: str, fallback_title: str, encoding: str | None = None) -> ParsedDocument:
    """Parse reStructuredText whose newlines are already ``\\n``."""
    source = SourceLines(text)
    lines = source.lines
    n = len(lines)
    metadata: dict = {"encoding": encoding} if encoding else {}
    header_title, i = _pep_header(lines, metadata)
    i = _docinfo(source, i, metadata)

    blocks: list[Block] = []
    styles: dict[tuple[str, bool], int] = {}
    paragraph_start = -1
    literal_indent = -1  # indentation of a just-finished paragraph that ended with "::"

    def flush(end: int) -> None:
        nonlocal paragraph_start, literal_indent
        if paragraph_start < 0:
            return
        last_line = lines[end - 1].rstrip()
        if last_line.endswith("::"):
            literal_indent = _indent(lines[paragraph_start])
        if not (paragraph_start == end - 1 and last_line.strip() == "::"):
            blocks.extend(source.run(paragraph_start, end - 1))
        paragraph_start = -1

    def heading(line_index: int, style: tuple[str, bool]) -> None:
        level = styles.setdefault(style, len(styles) + 1)
        block = source.block(line_index, line_index, "heading", level)
        if block is not None:
            blocks.append(block)

    while i < n:
        line = lines[i]
        if not line or line.isspace():
            flush(i)
            i += 1
            continue
        indent = _indent(line)
        if literal_indent >= 0:
            expected, literal_indent = literal_indent, -1
            if indent > expected:
                end = _indented_end(lines, i + 1, expected)
                blocks.extend(source.run(i, end - 1, kind="code"))
                i = end
                continue
        if paragraph_start < 0:
            overline = _ADORNMENT.match(line)
            if overline and i + 2 < n and lines[i + 2].rstrip() == line.rstrip():
                title = lines[i + 1].strip()
                if title and not _ADORNMENT.match(title):
                    heading(i + 1, (overline.group(1), True))
                    i += 3
                    continue
            if indent == 0 and i + 1 < n and not overline:
                underline = _ADORNMENT.match(lines[i + 1])
                if underline and not line.startswith(".."):
                    width = len(lines[i + 1].rstrip())
                    if width >= len(line.rstrip()) or width >= 4:
                        heading(i, (underline.group(1), False))
                        i += 2
                        continue
            if line.lstrip().startswith("..") and not _FOOTNOTE.match(line):
                i = _explicit_markup(source, i, indent, blocks)
                continue
            if overline and (i + 1 >= n or source.is_blank(i + 1)):
                i += 1  # a transition (horizontal rule)
                continue
            paragraph_start = i
        i += 1
    flush(n)

    title = header_title or _first_heading(text, blocks) or fallback_title
    return ParsedDocument(text, title, "rst", tuple(blocks), metadata)


def _explicit_markup(source: SourceLines, i: int, indent: int, blocks: list[Block]) -> int:
    """Handle a ``..`` construct at line ``i``; returns the index of the first line after it."""
    lines = source.lines
    end = _indented_end(lines, i + 1, indent)
    directive = _DIRECTIVE.match(lines[i])
    if directive is None:
        return end  # a comment, a link target or a substitution definition
    name = directive.group(1).lower()
    body = i + 1
    while body < end and lines[body].lstrip().startswith(":") and not source.is_blank(body):
        body += 1  # directive options
    if name in _CODE_DIRECTIVES:
        blocks.extend(source.run(body, end - 1, kind="code"))
        return end
    if name in _SILENT_DIRECTIVES:
        return end
    if name in _PROSE_ARGUMENT_DIRECTIVES and directive.group(2):
        block = source.span(i, directive.start(2), directive.end(2), "paragraph")
        if block is not None:
            blocks.append(block)
    return body  # the body is ordinary content and goes through the main loop


def _pep_header(lines: list[str], metadata: dict) -> tuple[str, int]:
    """Read a PEP-style RFC 822 header at the top; returns ``(title, first line after it)``."""
    fields: dict[str, str] = {}
    key = ""
    j = 0
    while j < len(lines) and lines[j].strip():
        line = lines[j]
        if line[0] in " \t":
            if not key:
                return "", 0
            fields[key] = f"{fields[key]} {line.strip()}".strip()
        else:
            match = _HEADER_FIELD.match(line)
            if match is None:
                return "", 0
            key = match.group(1)
            fields[key] = match.group(2)
        j += 1
    if "PEP" not in fields and "Title" not in fields:
        return "", 0
    for name, value in fields.items():
        metadata[name.lower()] = value
    return fields.get("Title", ""), j


def _docinfo(source: SourceLines, i: int, metadata: dict) -> int:
    """Skip a leading field list (``:orphan:``, ``:author: ...``), keeping it as metadata."""
    n = len(source)
    while i < n and source.is_blank(i):
        i += 1
    start = i
    while i < n:
        match = _DOCINFO_FIELD.match(source.lines[i])
        if match is None:
            break
        metadata.setdefault(match.group(1).lower(), match.group(2) or "")
        i += 1
    return i if i > start else start


def _indented_end(lines: list[str], start: int, base_indent: int) -> int:
    """First line at or after ``start`` that has text indented ``base_indent`` or less."""
    for j in range(start, len(lines)):
        line = lines[j]
        if line and not line.isspace() and _indent(line) <= base_indent:
            return j
    return len(lines)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _first_heading(text: str, blocks: list[Block]) -> str:
    for block in blocks:
        if block.kind == "heading":
            return " ".join(text[block.start:block.end].split())
    return ""
