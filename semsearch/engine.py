"""The engine: one index directory, keeping its SQLite store and FAISS file consistent.

Everything the CLI does goes through :class:`Engine`; it is also the library API
(``semsearch.open(...)``). Writes take the index's write lock; searches take none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semsearch import loaders
from semsearch.embedder import (
    Embedder,
    SentenceTransformerEmbedder,
    canonical_model_name,
)
from semsearch.errors import (
    EmptyIndexError,
    EmptyQueryError,
    IndexNotFoundError,
    LoaderError,
    ModelMismatchError,
    SemsearchError,
)
from semsearch.ingest import Indexer, PendingDocument, ProgressCallback
from semsearch.location import default_index_dir
from semsearch.locking import WriteLock
from semsearch.onnx_embedder import OnnxQueryEmbedder
from semsearch.onnx_export import export_query_model, query_model_dir
from semsearch.retrieval import FusionSettings, Ranked, Reranker, Retriever, rerank
from semsearch.store import DATABASE_NAME, Store
from semsearch.types import (
    MODES,
    Hit,
    IndexStatus,
    IndexSummary,
    Mode,
    SearchFilter,
    Skipped,
)
from semsearch.vector_index import VECTORS_NAME, VectorFileError, VectorIndex
from semsearch.walker import path_text

DEFAULT_OVERLAP_TOKENS = 32
RERANK_DEPTH = 50  # results a reranker reorders (it is slow: one model call per passage)


class Engine:
    """A semsearch index on disk. Use :func:`semsearch.open` to get one; close it when done."""

    def __init__(
        self,
        directory: Path,
        store: Store,
        *,
        model: str | None,
        embedder: Embedder | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        fusion: FusionSettings | None = None,
    ) -> None:
        self.directory = directory
        self._store = store
        self._lock = WriteLock(directory)
        self._embedder = embedder
        self._query_embedder: Embedder | None = None  # the ONNX export, when searching without the model
        self._vectors: VectorIndex | None = None
        self._fusion = fusion or FusionSettings()
        recorded = store.settings()
        requested = embedder.name if embedder is not None else (canonical_model_name(model) if model else None)
        if "model" in recorded:
            if requested is not None and requested != recorded["model"]:
                raise ModelMismatchError(
                    f"the index at {directory} was built with model {recorded['model']!r}, not "
                    f"{requested!r}; use another --index for a different model, or leave --model out"
                )
            self.model = recorded["model"]
            self.dimension = int(recorded["dimension"])
            self.chunk_tokens = int(recorded["chunk_tokens"])
            self.overlap_tokens = int(recorded["overlap_tokens"])
        else:
            self.model = requested or canonical_model_name(None)
            self.dimension = 0  # known once the model is loaded, on the first write
            self.chunk_tokens = chunk_tokens or 0
            self.overlap_tokens = overlap_tokens

    # -- opening and closing ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        model: str | None = None,
        create: bool = True,
        embedder: Embedder | None = None,
        chunk_tokens: int | None = None,
        overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
        fusion: FusionSettings | None = None,
    ) -> Engine:
        """Open the index in ``path`` (default: see :mod:`semsearch.location`).

        ``create=False`` refuses to make a new index (what searching commands want).
        ``embedder`` replaces the sentence-transformers model (tests use a fake one).
        ``chunk_tokens``/``overlap_tokens`` apply to a new index only; the default chunk size is
        the model's own limit.
        """
        directory = Path(path).expanduser() if path is not None else default_index_dir()
        database = directory / DATABASE_NAME
        if not database.exists():
            if not create:
                raise IndexNotFoundError(
                    f"no semsearch index at {directory}; create one with: semsearch index FOLDER"
                )
            if directory.exists() and not directory.is_dir():
                raise IndexNotFoundError(f"{directory} is a file, not an index folder")
            directory.mkdir(parents=True, exist_ok=True)
        store = Store(database)
        try:
            return cls(
                directory.resolve(),
                store,
                model=model,
                embedder=embedder,
                chunk_tokens=chunk_tokens,
                overlap_tokens=overlap_tokens,
                fusion=fusion,
            )
        except Exception:
            store.close()
            raise

    def close(self) -> None:
        self._lock.release()
        self._store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # -- the model ----------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The index's model, loaded on first use (this is the slow import)."""
        if self._embedder is None:
            self._embedder = SentenceTransformerEmbedder(self.model)
        return self._embedder

    def _record_settings(self) -> None:
        """Fix the model and chunking of a new index, the first time anything is written."""
        if "model" in self._store.settings():
            return
        embedder = self.embedder
        self.dimension = embedder.dimension
        self.chunk_tokens = min(self.chunk_tokens or embedder.max_tokens, embedder.max_tokens)
        with self._store.writing() as writer:
            writer.set_settings(
                {
                    "model": self.model,
                    "dimension": self.dimension,
                    "chunk_tokens": self.chunk_tokens,
                    "overlap_tokens": self.overlap_tokens,
                }
            )

    # -- the FAISS file -----------------------------------------------------------------------

    @property
    def _vectors_path(self) -> Path:
        return self.directory / VECTORS_NAME

    def vectors(self) -> VectorIndex:
        """The FAISS index, loaded and brought up to date with the database if it fell behind."""
        if self._vectors is None:
            try:
                self._vectors = VectorIndex.load(self._vectors_path, self.dimension)
            except VectorFileError:
                self._vectors = VectorIndex(self.dimension, revision=-1)
        if self._vectors.revision != self._store.revision():
            self._catch_up(self._vectors)
            # Persist the repair if nobody is writing; a running writer will save its own.
            if self._lock.try_acquire():
                try:
                    self._vectors.save(self._vectors_path)
                finally:
                    self._lock.release()
        return self._vectors

    def _catch_up(self, vectors: VectorIndex) -> None:
        """Make the FAISS index hold exactly the database's chunks, embedding nothing."""
        revision = self._store.revision()
        stored = self._store.chunk_ids()
        present = vectors.ids()
        vectors.remove(np.setdiff1d(present, stored, assume_unique=True))
        missing = np.setdiff1d(stored, present, assume_unique=True)
        for ids, batch in self._store.vectors(missing.tolist()):
            vectors.add(ids, batch)
        vectors.revision = revision

    def rebuild(self) -> int:
        """Rewrite the FAISS file from the vectors stored in SQLite; returns how many it holds."""
        with self._lock:
            vectors = VectorIndex(self.dimension or 1, revision=-1)
            if self.dimension:
                self._catch_up(vectors)
                vectors.save(self._vectors_path)
            self._vectors = vectors
            return len(vectors)

    # -- writing ------------------------------------------------------------------------------

    def _indexer(self) -> Indexer:
        return Indexer(
            self._store,
            self.vectors(),
            lambda: self.embedder,
            chunk_tokens=self.chunk_tokens,
            overlap_tokens=self.overlap_tokens,
            skip=[self.directory],
        )

    def index(
        self,
        *paths: str | Path,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        prune: bool = True,
        progress: ProgressCallback | None = None,
    ) -> IndexSummary:
        """Bring the index up to date with these files and folders; returns what was done.

        Unchanged files cost a ``stat``; changed ones are re-chunked and only new chunk text is
        embedded; files gone from under these folders are removed unless ``prune=False``.
        Ctrl-C stops at a consistent point and the summary says ``interrupted``.
        """
        with self._lock:
            self._record_settings()
            indexer = self._indexer()
            try:
                summary = indexer.index_paths(
                    [Path(p) for p in paths], include=include, exclude=exclude, prune=prune, progress=progress
                )
            finally:
                self._save_vectors()
        self._export_query_model()
        return summary

    def add_texts(
        self,
        texts: Iterable[str],
        *,
        ids: Sequence[str] | None = None,
        titles: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> IndexSummary:
        """Index text that is not in files. ``ids`` name the documents (default: a content hash);
        adding a text under an existing id replaces it. ``metadata`` is one mapping for all texts
        or one per text; it can be filtered on in :meth:`search`."""
        texts = list(texts)
        if ids is not None and len(ids) != len(texts):
            raise ValueError("ids must have one entry per text")
        if titles is not None and len(titles) != len(texts):
            raise ValueError("titles must have one entry per text")
        if metadata is not None and not isinstance(metadata, Mapping) and len(metadata) != len(texts):
            raise ValueError("metadata must be one mapping, or one per text")

        def documents() -> Iterable[PendingDocument | Skipped]:
            for position, body in enumerate(texts):
                title = titles[position] if titles is not None else ""
                digest = hashlib.sha256(f"{title}\0{body}".encode()).hexdigest()
                extra = metadata if isinstance(metadata, Mapping) or metadata is None else metadata[position]
                key = str(ids[position]) if ids is not None else f"text:{digest[:16]}"
                try:
                    parsed = loaders.parse_text(body, title=title)
                except LoaderError as error:
                    yield Skipped(key, str(error))
                    continue
                yield PendingDocument(
                    path=key,
                    source="text",
                    content_hash=digest,
                    size=len(body.encode()),
                    mtime_ns=0,
                    parsed=parsed,
                    metadata=dict(extra or {}),
                    context=title,
                )

        with self._lock:
            self._record_settings()
            try:
                summary = self._indexer().index_texts(documents())
            finally:
                self._save_vectors()
        self._export_query_model()
        return summary

    def remove(self, *paths: str | Path) -> int:
        """Forget documents: files at or under these paths, or texts with these ids. Returns how many."""
        with self._lock:
            targets = {path_text(Path(p).expanduser().resolve()) for p in paths} | {str(p) for p in paths}
            doomed = [
                doc
                for doc in self._store.documents()
                if doc.path in targets or any(doc.path.startswith(t.rstrip("/") + "/") for t in targets)
            ]
            if not doomed:
                return 0
            vectors = self.vectors()
            with self._store.writing() as writer:
                for doc in doomed:
                    writer.delete_document(doc.id)
            vectors.remove(writer.removed)
            vectors.revision = writer.revision
            self._save_vectors()
            return len(doomed)

    def _save_vectors(self) -> None:
        if self._vectors is None or not self.dimension:
            return
        if self._vectors.revision != self._store.revision():
            self._catch_up(self._vectors)  # e.g. interrupted between a commit and its FAISS update
        self._vectors.save(self._vectors_path)

    # -- searching ----------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        limit: int = 10,
        mode: Mode = "hybrid",
        path: str | None = None,
        types: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        group_by_document: bool = False,
        vector: np.ndarray | None = None,
        reranker: Reranker | None = None,
    ) -> list[Hit]:
        """The ``limit`` best chunks for ``query`` (or best documents, one chunk each, with
        ``group_by_document``). Filters apply before ranking: ``path`` glob, ``types`` extensions
        or formats, ``metadata`` equalities. ``vector`` is the query's embedding if the caller
        already has it (e.g. embedded many queries in one batch); it must come from this index's
        model. ``reranker`` (e.g. :func:`semsearch.embedder.load_reranker`) reorders the top
        :data:`RERANK_DEPTH` results by its own score, which then becomes the hit's score."""
        if not query or not query.strip():
            raise EmptyQueryError("the query is empty; say what you are looking for")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if not self.dimension or self._store.chunk_count() == 0:
            raise EmptyIndexError(
                f"the index at {self.directory} holds no documents yet; add some with: semsearch index FOLDER"
            )
        where = SearchFilter(
            path=path, types=tuple(types), metadata=tuple(sorted((metadata or {}).items()))
        )
        embed_query = self._embed_query if vector is None else (lambda _query: vector)
        retriever = Retriever(self._store, self.vectors(), embed_query, self._fusion)
        depth = max(limit, RERANK_DEPTH) if reranker is not None else limit
        ranked = self._rank(retriever, query.strip(), depth, mode, where, group_by_document)
        rows = self._store.chunk_rows([chunk_id for chunk_id, _ in ranked])
        if reranker is not None:
            passages = {chunk_id: f"{row.title}\n{row.text}" for chunk_id, row in rows.items()}
            ranked = rerank(reranker, query.strip(), ranked, passages, depth=depth)
        ranked = ranked[:limit]
        hits = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:  # deleted by a writer since we ranked
                continue
            hits.append(
                Hit(
                    rank=len(hits) + 1,
                    score=score,
                    chunk_id=chunk_id,
                    document_id=row.document_id,
                    path=row.path,
                    title=row.title,
                    text=row.text,
                    start_line=row.start_line,
                    end_line=row.end_line,
                    page=row.page,
                    format=row.format,
                    metadata=row.metadata,
                )
            )
        return hits

    def _rank(
        self, retriever: Retriever, query: str, limit: int, mode: Mode, where: SearchFilter, group: bool
    ) -> Ranked:
        if not group:
            return retriever.rank(query, limit, mode, where)
        depth = limit * 4
        while True:
            ranked = retriever.rank(query, depth, mode, where)
            best = best_per_document(ranked, self._store.chunk_documents([c for c, _ in ranked]))
            if len(best) >= limit or len(ranked) < depth:
                return best[:limit]
            depth *= 4

    def _embed_query(self, query: str) -> np.ndarray:
        return self._query_model().embed([query])

    def _query_model(self) -> Embedder:
        """The ONNX export of the index's model when there is one (same vectors, no torch import);
        else the model itself. A loaded or injected embedder always wins."""
        if self._embedder is None and self._query_embedder is None:
            directory = query_model_dir(self.model)
            if OnnxQueryEmbedder.available(directory):
                try:
                    onnx = OnnxQueryEmbedder(directory)
                except SemsearchError:
                    onnx = None
                if onnx is not None and onnx.dimension == self.dimension:
                    self._query_embedder = onnx
        if self._embedder is None and self._query_embedder is not None:
            return self._query_embedder
        return self.embedder

    def _export_query_model(self) -> None:
        """Save an ONNX copy of the model for later searches, while it is loaded anyway.

        Best effort: a model that cannot be exported (or checked) is simply searched with
        sentence-transformers, so nothing is reported.
        """
        model = getattr(self._embedder, "model", None)  # set only on a loaded sentence-transformers model
        if model is None:
            return
        target = query_model_dir(self.model)
        if OnnxQueryEmbedder.available(target):
            return
        try:
            export_query_model(model, target, name=self.model)
        except (Exception, KeyboardInterrupt):  # noqa: BLE001 - an optimisation must not fail indexing
            pass  # the next indexing run tries again; searches use sentence-transformers meanwhile

    # -- describing ---------------------------------------------------------------------------

    def status(self) -> IndexStatus:
        settings = self._store.settings()
        size = self._store.size_bytes()
        if self._vectors_path.exists():
            size += self._vectors_path.stat().st_size
        return IndexStatus(
            location=str(self.directory),
            documents=self._store.document_count(),
            chunks=self._store.chunk_count(),
            model=settings.get("model", self.model),
            dimension=int(settings.get("dimension", 0)),
            chunk_tokens=int(settings.get("chunk_tokens", 0)),
            overlap_tokens=int(settings.get("overlap_tokens", self.overlap_tokens)),
            size_bytes=size,
            last_indexed=settings.get("last_indexed"),
            schema_revision=self._store.schema_revision(),
        )


def best_per_document(ranked: Ranked, documents: Mapping[int, int]) -> Ranked:
    """Keep each document's best chunk (max-pooling), in rank order."""
    seen: set[int] = set()
    best: Ranked = []
    for chunk_id, score in ranked:
        document = documents.get(chunk_id)
        if document is None or document in seen:
            continue
        seen.add(document)
        best.append((chunk_id, score))
    return best
