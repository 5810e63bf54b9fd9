"""Turning results into text for people: snippets with the query's words marked, sizes, paths.

Pure functions (no printing); only the CLI uses them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from semsearch import cjk
from semsearch.words import keyword_terms
from semsearch.types import IndexProgress

_WORD = re.compile(r"\w+", re.UNICODE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_ADORNMENT = re.compile(r"^[ \t]*([=\-~^\"'`#*+_:.])\1{2,}[ \t]*$", re.MULTILINE)
# What a terminal acts on instead of showing: C0 and C1 control characters and DEL. File names and
# file contents never reach a terminal raw (ESC starts colours, window titles, cursor moves).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves (a log's "\x1b[31m")
    r"|[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, DCS, SOS, PM, APC strings: a title, a link
    r"|[ -/]*[0-~])?"  # the rest (two or three characters); a lone ESC
)
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


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
    """The ``width``-character window of ``text`` with the most query words, words emphasised.

    Chinese, Japanese and Korean have no spaces to find words by: there every stretch of text
    made of the query's bigrams (as keyword search matches them) is emphasised.
    """
    # Paragraphs (and a heading from the text below it) stay apart with a visible separator;
    # reST/Markdown adornment lines (=====, -----) are noise in a one-line snippet.
    text = _ADORNMENT.sub("", _printable(text, keep="\n"))
    flat = " · ".join(" ".join(part.split()) for part in _PARAGRAPH_BREAK.split(text) if part.strip())
    find = _query_spans(query)
    matches = find(flat)
    start = 0
    if matches and len(flat) > width:
        best_count = -1
        for first, _ in matches:
            count = sum(1 for m, _ in matches if first <= m < first + width)
            if count > best_count:
                best_count, start = count, first
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
    pieces, last = [], 0
    for first, after in find(window):
        pieces += [window[last:first], emphasise(window[first:after])]
        last = after
    marked = "".join(pieces) + window[last:]
    return ("…" if start > 0 else "") + marked + ("…" if end < len(flat) else "")


def _query_spans(query: str) -> Callable[[str], list[tuple[int, int]]]:
    """A function giving the (start, end) spans of a text to emphasise for ``query``, in order:
    words sharing a query word's stem key, and CJK stretches covered by the query's bigrams."""
    terms = keyword_terms(query)
    keys = {_stem_key(term) for term in terms if not cjk.has_cjk(term)}
    pieces = sorted({term.rstrip("*") for term in terms if cjk.has_cjk(term)}, key=len, reverse=True)
    # A lookahead finds every occurrence, overlapping ones too (数据 and 据库 in 数据库).
    overlapping = re.compile("(?=(" + "|".join(map(re.escape, pieces)) + "))") if pieces else None

    def spans(text: str) -> list[tuple[int, int]]:
        found = [m.span() for m in _WORD.finditer(text) if _stem_key(m.group()) in keys]
        if overlapping is not None:
            found += [(m.start(), m.start() + len(m.group(1))) for m in overlapping.finditer(text)]
        merged: list[tuple[int, int]] = []
        for first, after in sorted(found):
            if merged and first <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], after))
            else:
                merged.append((first, after))
        return merged

    return spans


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def display_path(path: str, cwd: str | None = None) -> str:
    """A file path relative to the current directory when it lies below it (ids stay as they
    are), its control characters spelled out (:func:`spelled_out`)."""
    if path.startswith("/"):
        cwd = cwd or os.getcwd()
        if path.startswith(cwd.rstrip("/") + "/"):
            path = os.path.relpath(path, cwd)
    return spelled_out(path)


def spelled_out(path: str) -> str:
    """A path with its control characters spelled out (``\\n``, ``\\t``, ``\\x1b``), as ``ls -b``
    shows them: a file name holding a newline or an escape sequence prints as one line, inert."""
    return _CONTROL.sub(lambda found: _NAMED.get(found[0], f"\\x{ord(found[0]):02x}"), path)


def display_text(text: str) -> str:
    """A title or heading for one line of a terminal: escape sequences (a log's colours) dropped,
    other control characters, newlines and tabs as spaces."""
    return _printable(text, keep="")


def _printable(text: str, *, keep: str) -> str:
    if not _CONTROL.search(text):
        return text
    text = _ESCAPE_SEQUENCE.sub("", text)
    return _CONTROL.sub(lambda found: found[0] if found[0] in keep else " ", text)


def location(path: str, start_line: int, page: int | None) -> str:
    if page is not None:
        return f"{path} (page {page}, line {start_line})"
    return f"{path}:{start_line}"


def count_phrase(counts: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{count} {label}" for label, count in counts)


def progress_line(progress: IndexProgress, *, bar_width: int = 24) -> str:
    """One line for an indexing run: a bar, files done, files and chunks per second, time left."""
    parts = ["Indexing"]
    if progress.files_total > 0:
        filled = round(bar_width * min(1.0, progress.files_done / progress.files_total))
        parts.append("[" + "#" * filled + "-" * (bar_width - filled) + "]")
        parts.append(f"{progress.files_done}/{progress.files_total} files")
    else:
        parts.append(f"{progress.files_done} files")
    if progress.seconds >= 1:
        parts.append(f"{progress.files_per_second:.1f} files/s")
        parts.append(f"{progress.chunks_per_second:.0f} chunks/s")
        eta = progress.eta_seconds
        if eta is not None and progress.files_done < progress.files_total:
            parts.append(f"ETA {duration(eta)}")
    return "  ".join(parts)


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
