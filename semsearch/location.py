"""Where an index lives when none is named.

Order: ``SEMSEARCH_INDEX``; else the nearest ``.semsearch/`` folder in the current directory or any
parent (as git finds ``.git``), so a project can keep its own index; else one per-user index in the
platform's data directory (``~/.local/share/semsearch/default`` on Linux).
"""

from __future__ import annotations

import os
from pathlib import Path

INDEX_DIR_NAME = ".semsearch"
ENV_VAR = "SEMSEARCH_INDEX"
DATABASE_NAME = "semsearch.db"  # the index's SQLite file, inside its folder


def user_index_dir() -> Path:
    """The per-user default index."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("semsearch", appauthor=False)) / "default"


def find_project_index(start: Path | None = None) -> Path | None:
    """The nearest ``.semsearch/`` folder at or above ``start`` (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / INDEX_DIR_NAME
        if candidate.is_dir():
            return candidate
    return None


def default_index_dir(start: Path | None = None) -> Path:
    """The index to use when none is given (see the module docstring for the order)."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return find_project_index(start) or user_index_dir()
