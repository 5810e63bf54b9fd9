"""semsearch: local semantic search over a folder of documents.

>>> import semsearch
>>> with semsearch.open("my-index") as engine:          # doctest: +SKIP
...     engine.index("docs/")
...     for hit in engine.search("how do I configure logging?", limit=5):
...         print(hit.score, hit.path, hit.start_line)
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from semsearch.engine import Engine
    from semsearch.errors import SemsearchError
    from semsearch.reader import ReadLimits
    from semsearch.types import Hit, IndexProgress, IndexStatus, IndexSummary, Mode, Skipped

# Imported when first used (PEP 562), so that `import semsearch.<anything>` costs nothing here:
# the `semsearch` command starts a search's model before it imports the rest (semsearch.launch).
_LAZY = {
    "Engine": "semsearch.engine",
    "SemsearchError": "semsearch.errors",
    "ReadLimits": "semsearch.reader",
    **{name: "semsearch.types" for name in ("Hit", "IndexProgress", "IndexStatus", "IndexSummary", "Mode", "Skipped")},
}

__all__ = [
    "__version__",
    "open",
    "Engine",
    "Hit",
    "IndexProgress",
    "IndexStatus",
    "IndexSummary",
    "Mode",
    "Skipped",
    "SemsearchError",
    "ReadLimits",
]


def open(path: str | None = None, model: str | None = None, **options):  # noqa: A001 - mirrors builtins.open on purpose
    """Open (creating if needed) the index at ``path`` and return an :class:`Engine`.

    ``path=None`` picks the default index (see :func:`semsearch.location.default_index_dir`).
    ``model`` is a sentence-transformers name or local path; ``None`` keeps the index's model, or the
    bundled all-MiniLM-L6-v2 for a new index.
    """
    from semsearch.engine import Engine

    return Engine.open(path, model=model, **options)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'semsearch' has no attribute {name!r}")
