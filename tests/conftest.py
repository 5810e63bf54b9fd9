"""Shared fixtures: a deterministic fake embedder (no model, no network) and data locations."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from semsearch.tokens import WordTokenCounter  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data"))


class FakeEmbedder:
    """Bag-of-words vectors by feature hashing: texts sharing words are close, and it is instant.

    Records every text it embeds, so tests can assert what was (not) sent to the model.
    """

    name = "fake-bag-of-words"
    dimension = 64
    _WORD = re.compile(r"\w+")

    def __init__(self, max_tokens: int = 60) -> None:
        self.max_tokens = max_tokens
        self.counter = WordTokenCounter()
        self.embedded: list[str] = []
        self.fail_after: int | None = None  # raise KeyboardInterrupt once this many texts are done

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            if self.fail_after is not None and len(self.embedded) >= self.fail_after:
                raise KeyboardInterrupt
            self.embedded.append(text)
            for word in self._WORD.findall(text.lower()):
                bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                vectors[row, bucket % self.dimension] += 1.0
            norm = np.linalg.norm(vectors[row])
            vectors[row] = vectors[row] / norm if norm else vectors[row]
            if not norm:
                vectors[row, 0] = 1.0
        return vectors


def database_at(path: Path, revision: str) -> Path:
    """A new SQLite database at ``path`` with the schema as migration ``revision`` left it (for
    tests of what later migrations do to older indexes)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from semsearch.store import _migrations_dir

    engine = create_engine(f"sqlite:///{path}")
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()
    return path


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def fake_model(monkeypatch) -> FakeEmbedder:
    """Make every engine opened by name (as the CLI does) use one shared fake embedder."""
    embedder = FakeEmbedder()
    import semsearch.embedder
    import semsearch.engine

    original = semsearch.embedder.canonical_model_name

    def canonical(name):
        return embedder.name if name in (None, embedder.name) else original(name)

    monkeypatch.setattr(semsearch.engine, "canonical_model_name", canonical)
    monkeypatch.setattr(semsearch.engine, "SentenceTransformerEmbedder", lambda name=None, device=None: embedder)
    return embedder


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A small folder of documents on distinct topics."""
    root = tmp_path / "docs"
    (root / "garden").mkdir(parents=True)
    (root / "kitchen").mkdir()
    (root / "garden" / "tomatoes.md").write_text(
        "# Growing tomatoes\n\nTomatoes need full sun and deep watering.\n\n"
        "## Pests\n\nAphids and hornworms attack tomato plants; pick hornworms by hand.\n"
    )
    (root / "garden" / "roses.txt").write_text(
        "Pruning roses\n\nPrune roses in late winter, cutting above an outward facing bud.\n"
    )
    (root / "kitchen" / "bread.md").write_text(
        "# Baking bread\n\nKnead the dough for ten minutes, then let the yeast rise for an hour.\n\n"
        "## Crust\n\nA hot oven and steam give bread a crisp crust.\n"
    )
    (root / "kitchen" / "soup.rst").write_text(
        "Onion soup\n==========\n\nCaramelise the onions slowly in butter for forty minutes.\n"
    )
    return root


@pytest.fixture
def write_file():
    """Write a file whose name is given as bytes, so it need not be valid UTF-8 (``Path`` needs text)."""

    def write(path: bytes, content: bytes) -> None:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(handle, content)
        finally:
            os.close(handle)

    return write


@pytest.fixture(scope="session", autouse=True)
def no_warm_servers():
    """A search answered locally starts a server in the background (semsearch.warm): not in
    tests, except those that ask for it (their processes would outlive the test otherwise). Set
    here, not at import: tests/fake_cli.py imports this module in processes that may ask."""
    previous = os.environ.get("SEMSEARCH_KEEP_WARM")
    os.environ["SEMSEARCH_KEEP_WARM"] = "0"
    yield
    if previous is None:
        os.environ.pop("SEMSEARCH_KEEP_WARM", None)
    else:
        os.environ["SEMSEARCH_KEEP_WARM"] = previous


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Keep the ONNX query-model exports of real-model tests out of the user's cache."""
    previous = os.environ.get("SEMSEARCH_CACHE")
    os.environ["SEMSEARCH_CACHE"] = str(tmp_path_factory.mktemp("semsearch-cache"))
    yield
    if previous is None:
        os.environ.pop("SEMSEARCH_CACHE", None)
    else:
        os.environ["SEMSEARCH_CACHE"] = previous


@pytest.fixture(scope="session")
def real_corpus_index(tmp_path_factory) -> Path:
    """corpora/ indexed once with the real bundled model (its ONNX query model exported too).

    Shared by the whole session: tests only read it; one that writes copies it first.
    """
    import semsearch

    index = tmp_path_factory.mktemp("real-corpus") / "index"
    with semsearch.open(index) as engine:
        summary = engine.index(REPO / "corpora")
    assert summary.new >= 25 and not summary.skipped, summary
    return index
