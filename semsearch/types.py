"""Values that cross module boundaries. All are frozen dataclasses; nothing here imports a library."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["semantic", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = ("semantic", "keyword", "hybrid")


@dataclass(frozen=True)
class Block:
    """One structural unit of a parsed document: a heading, a paragraph, a list item, a code block.

    ``start``/``end`` are character offsets into :attr:`ParsedDocument.text`. Lines are 1-based lines of
    the source file (for DOCX: paragraph numbers); ``page`` is the 1-based PDF page, else ``None``.
    """

    start: int
    end: int
    start_line: int
    end_line: int
    kind: Literal["heading", "paragraph", "code"] = "paragraph"
    level: int = 0
    page: int | None = None


@dataclass(frozen=True)
class ParsedDocument:
    """The text a loader extracted from one file, with its structure."""

    text: str
    title: str
    format: str
    blocks: tuple[Block, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkDraft:
    """A chunk cut from a parsed document, before it is stored or embedded.

    ``headings`` is the chain of section headings above the chunk, outermost first (empty before
    the first heading); a first heading that only repeats the document's title is left out.
    """

    ordinal: int
    text: str
    start: int
    end: int
    start_line: int
    end_line: int
    page: int | None
    tokens: int
    headings: tuple[str, ...] = ()

    @property
    def heading(self) -> str:
        """The nearest section heading above the chunk, or ``""``."""
        return self.headings[-1] if self.headings else ""


@dataclass(frozen=True)
class Hit:
    """One search result: a chunk joined back to its document.

    ``heading`` is the chain of section headings above the chunk, joined by `` › ``
    (``"Memory and Allocation › Stack-Only Data: Copy"``), below the document's title; ``""`` before
    a document's first heading, in formats without headings, and in chunks indexed before
    semsearch stored headings (until their document is indexed again).
    """

    rank: int
    score: float
    chunk_id: int
    document_id: int
    path: str
    title: str
    text: str
    start_line: int
    end_line: int
    page: int | None
    format: str
    metadata: dict[str, Any] = field(default_factory=dict)
    heading: str = ""
    # How relevant the hit is, in [0, 1], comparable across queries (semsearch.relevance); None
    # where it is not estimated ("more like this"). ``score`` is the ranking's own number.
    relevance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The hit as plain JSON-ready values: the shape of ``semsearch search --json`` and of
        the HTTP server's ``/search``."""
        return {
            "rank": self.rank, "score": round(self.score, 6),
            "relevance": None if self.relevance is None else round(self.relevance, 4),
            "path": self.path, "title": self.title, "heading": self.heading,
            "text": self.text, "chunk_id": self.chunk_id, "document_id": self.document_id,
            "start_line": self.start_line, "end_line": self.end_line, "page": self.page,
            "format": self.format, "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Hit:
        """The hit :meth:`to_dict` described (e.g. as a server sent it)."""
        return cls(
            rank=int(data["rank"]), score=float(data["score"]), chunk_id=int(data["chunk_id"]),
            document_id=int(data["document_id"]), path=str(data["path"]), title=str(data["title"]),
            text=str(data["text"]), start_line=int(data["start_line"]), end_line=int(data["end_line"]),
            page=None if data.get("page") is None else int(data["page"]), format=str(data["format"]),
            metadata=dict(data.get("metadata") or {}), heading=str(data.get("heading") or ""),
            relevance=None if data.get("relevance") is None else float(data["relevance"]),
        )


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class IndexSummary:
    """What one indexing run did."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    skipped: tuple[Skipped, ...] = ()
    chunks_added: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    elapsed_seconds: float = 0.0
    interrupted: bool = False
    notes: tuple[str, ...] = ()  # what the run did differently from what was asked, and why

    def skipped_by_reason(self) -> dict[str, int]:
        """How many files were skipped for each reason."""
        counts: dict[str, int] = {}
        for item in self.skipped:
            counts[item.reason] = counts.get(item.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-ready values (the shape of ``semsearch index --json``)."""
        return {
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "moved": self.moved,
            "removed": self.removed,
            "skipped": len(self.skipped),
            "skipped_reasons": self.skipped_by_reason(),
            "skipped_files": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "chunks_added": self.chunks_added,
            "chunks_embedded": self.chunks_embedded,
            "chunks_reused": self.chunks_reused,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "interrupted": self.interrupted,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class IndexProgress:
    """Where an indexing run is; given to ``Engine.index(progress=...)`` a few times a second.

    ``files_done`` counts files whose chunks are written, plus the embedded share of the wave the
    model is working on, so it moves while the model works. ``seconds`` runs from the first wave
    sent to the model (walking the folders and loading the model come before).
    """

    files_done: int
    files_total: int
    chunks_embedded: int
    seconds: float

    @property
    def files_per_second(self) -> float:
        return self.files_done / self.seconds if self.seconds > 0 else 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_embedded / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the average rate so far; ``None`` until a file is done."""
        if self.files_done <= 0 or self.files_total <= 0:
            return None
        return max(0.0, self.files_total - self.files_done) / self.files_per_second


@dataclass(frozen=True)
class IndexStatus:
    """A description of an index on disk (``semsearch status``)."""

    location: str
    documents: int
    chunks: int
    model: str
    dimension: int
    chunk_tokens: int
    overlap_tokens: int
    size_bytes: int
    last_indexed: str | None
    schema_revision: str | None
    vector_index: str = "auto"  # the setting: auto, exact or ivf
    vector_search: str = "exact"  # what searches do now: exact, or approximate (IVF)
    segments: int = 0  # vector segment files
    precision: str = "fp32"  # of the stored vectors: fp32 (the model's own) or int8 (quantised model)


@dataclass(frozen=True)
class SearchFilter:
    """Restricts a search to some documents; applied before ranking.

    ``path`` is a glob matched against the document path (``*`` crosses folders; a relative pattern
    matches the end of the path, so ``*.md`` and ``docs/*`` work). ``types`` are file extensions or
    format names (``md``, ``pdf``, ``markdown``). ``metadata`` keys must equal the given values.
    """

    path: str | None = None
    types: tuple[str, ...] = ()
    metadata: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> tuple:
        """What keys a cache of this filter's results: equal only for filters that pass the same
        chunks (``True == 1`` in Python, but the two match different stored values; a list
        value, unhashable, keys by its text)."""
        return (self.path, self.types, tuple((name, type(value).__name__, repr(value)) for name, value in self.metadata))

    @property
    def empty(self) -> bool:
        return not (self.path or self.types or self.metadata)


@dataclass(frozen=True)
class DocumentChunk:
    """One chunk of a stored document, in document order. ``char_start``/``char_end`` are offsets
    into the document's extracted text (chunks of one section overlap a little)."""

    chunk_id: int
    ordinal: int
    text: str
    start_line: int
    end_line: int
    page: int | None
    char_start: int
    char_end: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id, "ordinal": self.ordinal, "text": self.text,
            "start_line": self.start_line, "end_line": self.end_line, "page": self.page,
            "char_start": self.char_start, "char_end": self.char_end,
        }


@dataclass(frozen=True)
class Document:
    """A stored document with its chunks (:meth:`semsearch.engine.Engine.document`).

    ``path`` is the file's absolute path, or the caller's id for text added with ``add_texts``.
    """

    id: int
    path: str
    source: str  # "file" or "text"
    title: str
    format: str
    size: int
    indexed_at: str
    metadata: dict[str, Any]
    chunks: tuple[DocumentChunk, ...]

    @property
    def text(self) -> str:
        """The document's text as indexed: its chunks laid at their offsets, overlaps once.

        Only what chunking kept is stored (blank lines between blocks, for one, are not), so a
        gap between two chunks becomes a line break.
        """
        parts: list[str] = []
        end = 0
        for chunk in sorted(self.chunks, key=lambda c: (c.char_start, c.ordinal)):
            if chunk.char_end <= end:
                continue  # wholly inside what is already laid
            if chunk.char_start >= end:
                if parts:
                    parts.append("\n\n" if chunk.char_start > end else "")
                parts.append(chunk.text)
            else:
                parts.append(chunk.text[end - chunk.char_start :])
            end = chunk.char_end
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values: the shape of the HTTP server's ``GET /documents/{id}``."""
        return {
            "id": self.id, "path": self.path, "source": self.source, "title": self.title,
            "format": self.format, "size": self.size, "indexed_at": self.indexed_at,
            "metadata": self.metadata, "text": self.text, "chunks": [chunk.to_dict() for chunk in self.chunks],
        }
