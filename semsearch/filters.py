"""Search filters (path glob, file types, metadata) as SQL over the documents.

Two forms of each condition, because SQLite plans them very differently: *listing* every document
that passes (driven by an index: document_meta by key and value) and *testing* documents a query
already has (a correlated EXISTS, one index lookup each). Used by :mod:`semsearch.store` only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import Float, Integer, String, and_, exists, func, intersect, literal, or_, select

from semsearch.schema import document_meta, documents
from semsearch.types import SearchFilter


def allowed_documents(where: SearchFilter) -> Any:
    """A query listing the ids of the documents that pass the filter. Metadata alone is answered
    from document_meta's index without touching the documents table (6 ms instead of 14-20 ms
    for 1,000 documents of 100,000)."""
    if where.path or where.types:
        return select(documents.c.id).where(*filter_conditions(where, listing=True))
    matching = [_metadata_documents(key, value) for key, value in where.metadata]
    return matching[0] if len(matching) == 1 else intersect(*matching)


def filter_conditions(where: SearchFilter, *, listing: bool = False) -> list[Any]:
    """SQL conditions on ``documents`` for a filter. ``listing``: the query lists every document
    that passes (so metadata is looked up by key and value); else it tests documents it already
    has (so metadata is looked up by document)."""
    conditions: list[Any] = []
    if where.path:
        pattern = where.path
        glob = documents.c.path.op("GLOB")
        conditions.append(glob(pattern) if pattern.startswith("/") else or_(glob(pattern), glob("*/" + pattern)))
    if where.types:
        options = []
        for kind in where.types:
            kind = kind.lower().lstrip(".")
            options.append(documents.c.format == kind)
            options.append(func.lower(documents.c.path).like(f"%.{kind}"))
        conditions.append(or_(*options))
    conditions.extend(_metadata_matches(key, value, listing=listing) for key, value in where.metadata)
    return conditions


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _metadata_documents(key: str, value: Any) -> Any:
    """The ids of the documents whose metadata has ``key`` with this value (see _metadata_matches)."""
    meta = document_meta.c
    wanted = value if isinstance(value, str) else json.dumps(value)
    options = [and_(meta.type == "text", meta.value == literal(wanted, String))]
    number = _JSON_NUMBER.fullmatch(wanted)
    if number is not None:
        parsed = float(wanted) if number.group(1) or number.group(2) else int(wanted)
        typed = literal(parsed, Integer() if isinstance(parsed, int) else Float())
        options.append(and_(meta.type.in_(("integer", "real")), meta.value == typed))
    if wanted.lower() in ("true", "false", "null"):
        options.append(meta.type == wanted.lower())
    return select(meta.document_id).where(meta.key == key, or_(*options))


def _metadata_matches(key: str, value: Any, *, listing: bool) -> Any:
    """The document's metadata has ``key`` with this value, compared as text is typed on the CLI.

    ``"3"`` matches the number 3 (and 3.0) as well as the string ``"3"``; ``"true"``, ``"false"``
    and ``"null"`` match those JSON values; a value that is not a string (``3``, ``True``,
    ``None``) is first written as JSON. The key is compared as a name, so no key (dots, quotes,
    ``$``) is read as JSON path syntax. An index lookup in ``document_meta``, not a scan.
    """
    matching = _metadata_documents(key, value)
    if listing:  # drive the query from the index: every document with this key and value
        return documents.c.id.in_(matching)
    # test given documents one by one (an index lookup each), never list them all
    return exists(matching.where(document_meta.c.document_id == documents.c.id))
