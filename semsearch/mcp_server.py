"""``semsearch mcp``: a Model Context Protocol server over stdio, for AI assistants.

Built on the official ``mcp`` Python SDK. Three tools, each answering with plain text an
assistant can quote and cite: every passage is headed by where it is, ``path:start-end`` (a PDF
adds its page), and by the document id the other tools take.

- ``search(query, limit, mode, path, type)``: the best passages for a question;
- ``get_document(document, start_line, max_chars)``: a document's text, passage by passage;
- ``similar(document, limit)``: the documents most like one ("more like this").

The process keeps one :class:`~semsearch.engine.Engine` open and never writes: documents that an
``index`` or ``watch`` process adds are found without a restart. Only the protocol is written to
standard output; errors come back as tool errors with semsearch's one-line message.
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations at run time.
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Literal

from pydantic import Field

from semsearch import __version__
from semsearch.engine import Engine
from semsearch.errors import SemsearchError
from semsearch.types import Document, Hit

MAX_QUERY_CHARS = 1_000
MAX_LIMIT = 50
PASSAGE_CHARS = 1_200  # of each hit's text shown by search and similar
DOCUMENT_CHARS = 20_000  # get_document's default page

INSTRUCTIONS = (
    "semsearch searches the user's own indexed documents (notes, docs, PDFs, code) by meaning and "
    "by keywords. Use `search` with a plain-language question; cite passages by the path:line shown "
    "above each. `get_document` reads a whole document by the id or path a result names; `similar` "
    "finds documents like one."
)


def where(path: str, start_line: int, end_line: int, page: int | None) -> str:
    """``path:start-end``, or ``path (page N, lines start-end)`` for a PDF: what to cite."""
    lines = f"{start_line}-{end_line}" if end_line > start_line else f"{start_line}"
    if page is not None:
        return f"{path} (page {page}, lines {lines})"
    return f"{path}:{lines}"


def format_hits(hits: list[Hit], heading: str) -> str:
    if not hits:
        return f"{heading}: nothing found."
    parts = [f"{heading}:"]
    for hit in hits:
        text = hit.text if len(hit.text) <= PASSAGE_CHARS else hit.text[:PASSAGE_CHARS].rstrip() + " …"
        title = f" — {hit.title}" if hit.title else ""
        if hit.heading:
            title += f" › {hit.heading}"
        parts.append(
            f"[{hit.rank}] {where(hit.path, hit.start_line, hit.end_line, hit.page)}{title} "
            f"(document {hit.document_id}, {_strength(hit)})\n{text}"
        )
    return "\n\n".join(parts)


def _strength(hit: Hit) -> str:
    if hit.relevance is None:  # similar(): the cosine to the document
        return f"score {hit.score:.3f}"
    return f"relevance {hit.relevance:.2f}"


def format_document(document: Document, *, start_line: int, max_chars: int) -> str:
    header = f"{document.title or document.path}\n{document.path} (document {document.id}, {document.format}, " \
             f"{len(document.chunks)} passages)"
    parts = [header]
    used = len(header)
    last = None
    for chunk in document.chunks:
        if chunk.end_line < start_line:
            continue
        block = f"--- {where(document.path, chunk.start_line, chunk.end_line, chunk.page)}\n{chunk.text}"
        if used + len(block) > max_chars and last is not None:
            parts.append(f"… more from line {chunk.start_line}: call get_document with start_line={chunk.start_line}")
            break
        parts.append(block)
        used += len(block)
        last = chunk
    if last is None:
        parts.append(f"(no passage at or after line {start_line})")
    return "\n\n".join(parts)


@contextmanager
def reported() -> Iterator[None]:
    """semsearch's own errors reach the assistant as its one-line message (the SDK would hide
    any other exception's text behind "Error executing tool")."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        yield
    except (SemsearchError, ValueError) as error:
        raise ToolError(" ".join(str(error).split())) from None


def build(engine: Engine):
    """The MCP server for ``engine`` (not yet running)."""
    from mcp.server.mcpserver import MCPServer

    server = MCPServer(name="semsearch", version=__version__, instructions=INSTRUCTIONS)

    @server.tool(structured_output=False)
    def search(
        query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="A question or topic in plain words.")],
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="How many passages.")] = 8,
        mode: Annotated[
            Literal["hybrid", "semantic", "keyword"],
            Field(description="hybrid (default) fuses meaning and keywords; semantic: meaning only; keyword: exact words (BM25)."),
        ] = "hybrid",
        path: Annotated[str | None, Field(max_length=MAX_QUERY_CHARS, description="Only paths matching this glob, e.g. *.md or docs/*.")] = None,
        type: Annotated[list[str] | None, Field(max_length=20, description="Only these file types, e.g. [\"pdf\", \"md\"].")] = None,  # noqa: A002
        min_score: Annotated[float | None, Field(ge=0.0, le=1.0, description="Leave out passages whose relevance (0 to 1) is below this.")] = None,
    ) -> str:
        """Search the user's indexed documents. Returns the best passages, each headed by
        path:line to cite, by its document id (for get_document and similar) and by its
        relevance (0 to 1: about how often a passage like it was judged relevant)."""
        with reported():
            hits = engine.search(query, limit=limit, mode=mode, path=path, types=type or (), min_score=min_score)
        return format_hits(hits, f"Results for {query!r} ({mode})")

    @server.tool(structured_output=False)
    def get_document(
        document: Annotated[str, Field(min_length=1, max_length=4096, description="A document id from a result, or its path.")],
        start_line: Annotated[int, Field(ge=1, description="Start at the passage holding this line.")] = 1,
        max_chars: Annotated[int, Field(ge=1_000, le=200_000, description="At most this much text.")] = DOCUMENT_CHARS,
    ) -> str:
        """Read a document as indexed, passage by passage, each headed by path:lines. Long
        documents come in pages: the last line says which start_line continues."""
        with reported():
            found = engine.document(document)
        return format_document(found, start_line=start_line, max_chars=max_chars)

    @server.tool(structured_output=False)
    def similar(
        document: Annotated[str, Field(min_length=1, max_length=4096, description="A document id from a result, or its path.")],
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="How many documents.")] = 8,
    ) -> str:
        """Documents most like this one ("more like this"), each with its passage most like it."""
        with reported():
            source = engine.document(document)
            hits = engine.similar(source.id, limit=limit)
        return format_hits(hits, f"Documents like {source.title or source.path!r} ({source.path})")

    return server


def run(engine: Engine) -> None:
    """Serve ``engine`` over stdio until the client closes the connection."""
    import contextlib
    import threading

    from semsearch.errors import EmptyIndexError

    with contextlib.suppress(EmptyIndexError):
        engine.search("warm up", limit=1, mode="semantic")  # load the query model before the first call
    # An assistant's session searches again and again: its copies in memory are read now, beside it.
    threading.Thread(target=engine.preload, daemon=True, name="semsearch-preload").start()
    build(engine).run("stdio")
