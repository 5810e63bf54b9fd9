"""Asking a running ``semsearch serve`` of the same index instead of loading everything here.

:func:`search` sends the CLI's query to the server :mod:`semsearch.rendezvous` found and returns
its hits (the JSON of ``semsearch search --json``), or ``None`` whenever the server cannot give
the answer a local search would: it is gone, slow to answer, or answered anything but 200 (an
error is then reproduced, with its usual message, by the local search the caller falls back to).

Standard library only, so a forwarded search never imports numpy, SQLAlchemy, FAISS or the model.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from semsearch import rendezvous

TIMEOUT_SECONDS = 10.0  # a busy server (re-indexing beside it) still answers well within this


def search(
    index_dir: str | os.PathLike[str],
    query: str,
    *,
    limit: int,
    mode: str,
    path: str | None = None,
    types: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    group_by_document: bool = False,
    min_score: float | None = None,
) -> list[dict[str, Any]] | None:
    """The hits a server of ``index_dir`` returns for this search, or ``None`` to search locally."""
    server = rendezvous.find(index_dir)
    if server is None:
        return None
    params: list[tuple[str, str]] = [("q", query), ("limit", str(limit)), ("mode", mode)]
    if path is not None:
        params.append(("path", path))
    params += [("type", kind) for kind in types]
    params += [("meta", f"{key}={value}") for key, value in (metadata or {}).items()]
    if group_by_document:
        params.append(("group", "true"))
    if min_score is not None:
        params.append(("min_score", repr(float(min_score))))
    found = _get(server, "/search?" + urlencode(params))
    return found if isinstance(found, list) else None


def _get(server: rendezvous.Announced, target: str) -> Any:
    address = urlsplit(server.url)
    if address.scheme != "http" or not address.hostname or address.port is None:
        return None
    headers = {"Accept": "application/json"}
    if server.token:
        headers["Authorization"] = f"Bearer {server.token}"
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=TIMEOUT_SECONDS)
    try:
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        return json.loads(body)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        connection.close()
