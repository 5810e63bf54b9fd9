"""Turning results into text for people: snippets with the query's words marked, sizes, paths.

Pure functions (no printing); only the CLI uses them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from semsearch.retrieval import keyword_terms

_WORD = re.compile(r"\w+", re.UNICODE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_ADORNMENT = re.compile(r"^[ \t]*([=\-~^\"'`#*+_:.])\1{2,}[ \t]*$", re.MULTILINE)


def _stem_key(word: str) -> str:
    # A crude, fast stand-in for stemming: "configure", "configuring" and "configured" share a key.
    word = word.lower()
    return word[:5] if len(word) > 5 else word


def snippet(
    text: str,
    query: str,
    *,
    width: int = 240,
    emphasise: Callable[[str], str] = lambda word: word,
) -> str:
    """The ``width``-character window of ``text`` with the most query words, words emphasised."""
    # Paragraphs (and a heading from the text below it) stay apart with a visible separator;
    # reST/Markdown adornment lines (=====, -----) are noise in a one-line snippet.
    text = _ADORNMENT.sub("", text)
    flat = " · ".join(" ".join(part.split()) for part in _PARAGRAPH_BREAK.split(text) if part.strip())
    keys = {_stem_key(term) for term in keyword_terms(query)}
    matches = [m for m in _WORD.finditer(flat) if _stem_key(m.group()) in keys]
    start = 0
    if matches and len(flat) > width:
        best_count = -1
        for first in matches:
            count = sum(1 for m in matches if first.start() <= m.start() < first.start() + width)
            if count > best_count:
                best_count, start = count, first.start()
        start = max(0, min(start - width // 6, len(flat) - width))
        # Do not start in the middle of a word.
        if start > 0:
            space = flat.find(" ", start)
            start = space + 1 if 0 <= space < start + 20 else start
    end = min(len(flat), start + width)
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > start + width // 2 else end
    window = flat[start:end]
    marked = _WORD.sub(lambda m: emphasise(m.group()) if _stem_key(m.group()) in keys else m.group(), window)
    return ("…" if start > 0 else "") + marked + ("…" if end < len(flat) else "")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def display_path(path: str, cwd: str | None = None) -> str:
    """A file path relative to the current directory when it lies below it; ids stay as they are."""
    if not path.startswith("/"):
        return path
    cwd = cwd or os.getcwd()
    if path.startswith(cwd.rstrip("/") + "/"):
        return os.path.relpath(path, cwd)
    return path


def location(path: str, start_line: int, page: int | None) -> str:
    if page is not None:
        return f"{path} (page {page}, line {start_line})"
    return f"{path}:{start_line}"


def count_phrase(counts: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{count} {label}" for label, count in counts)
