"""The ``semsearch`` command's entry point: a search's query model starts loading first of all.

A search answered in its own process waits mostly for the query model (importing onnxruntime and
building its session, :mod:`semsearch.early_model`); importing the command line itself (click,
every command's options) takes another 0.1 s. So before importing it, this looks at the
arguments: if they ask for a search that may embed its query (not ``--mode keyword``) of an
index that no running server will answer (:mod:`semsearch.rendezvous`), the model starts
loading, and the command line is imported while it does. The search command then finds the
model already on its way (:func:`semsearch.early_model.start` gives the same one for the same
folder).

Only a guess, made from the arguments as click will read them: a wrong one costs a model loaded
for nothing, never a wrong result (the engine takes a model only if it is its index's own).
Imports nothing heavy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

SEARCH = "search"


def main() -> None:
    """Run the ``semsearch`` command (the console script and ``python -m semsearch``)."""
    try:
        index_dir = search_index(sys.argv[1:])
        if index_dir is not None:
            from semsearch import early_model, rendezvous

            if "--local" in sys.argv[1:] or rendezvous.find(index_dir) is None:
                early_model.start(index_dir, for_later=True, fork=True)
        from semsearch.cli import main as run

        run()
    except KeyboardInterrupt:
        # Before the command line's own handling is in place (nothing started to save), or in the
        # few lines around it that no handler covers.
        sys.stderr.write("Interrupted.\n")
        sys.stderr.flush()
        os._exit(130)


def search_index(arguments: Sequence[str]) -> Path | None:
    """The index folder of a search whose query is embedded here, if ``arguments`` (without the
    program name) ask for one; else ``None``.

    ``--index DIR`` (or ``--index=DIR``) may come before or after the command name, and the last
    one wins, as click reads them; without one, the folder :mod:`semsearch.location` picks.
    """
    index: str | None = None
    command: str | None = None
    keyword = False
    words = list(arguments)
    position = 0
    while position < len(words):
        word = words[position]
        if word == "--":
            break
        if word == "--index" and position + 1 < len(words):
            index = words[position + 1]
            position += 2
            continue
        if word.startswith("--index="):
            index = word[len("--index="):]
        elif command is None and not word.startswith("-"):
            command = word
            if command != SEARCH:
                return None
        elif word == "--mode" and position + 1 < len(words):
            keyword = words[position + 1] == "keyword"
            position += 2
            continue
        elif word.startswith("--mode="):
            keyword = word[len("--mode="):] == "keyword"
        elif word in ("-h", "--help", "--version"):
            return None
        position += 1
    if command != SEARCH or keyword:
        return None
    if index:
        return Path(index).expanduser()
    from semsearch.location import default_index_dir

    return default_index_dir()
