"""Turning results into text for people: snippets with the query's words marked, sizes, paths.

Pure functions (no printing); only the CLI uses them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from semsearch.retrieval import keyword_terms
from semsearch.types import IndexProgress

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
