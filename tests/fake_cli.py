"""The semsearch command line with conftest's fake embedder, for tests that need a real process
(a server, a watcher) but not the real model: ``python tests/fake_cli.py --index DIR serve``.

It patches exactly what the ``fake_model`` fixture patches, then runs :func:`semsearch.cli.main`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import FakeEmbedder  # noqa: E402

import semsearch.embedder  # noqa: E402
import semsearch.engine  # noqa: E402

embedder = FakeEmbedder()
original = semsearch.embedder.canonical_model_name
semsearch.engine.canonical_model_name = lambda name: embedder.name if name in (None, embedder.name) else original(name)
semsearch.engine.SentenceTransformerEmbedder = lambda name=None: embedder

from semsearch.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
