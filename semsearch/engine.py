"""The engine: one index directory, its SQLite store and its vector segments.

Everything the CLI does goes through :class:`Engine`; it is also the library API
(``semsearch.open(...)``). Writes take the index's write lock; searches take none and write
nothing: an open engine picks up what writers commit, without being reopened.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semsearch import loaders, similarity
from semsearch.backends import (
    PRECISIONS,
    PrecisionMismatchError,
    choose_device,
    default_precision,
    load_embedder,
)
from semsearch.chunking import chunk_document
from semsearch.embedder import (
    Embedder,
    SentenceTransformerEmbedder,
    canonical_model_name,
)
from semsearch.errors import (
    DocumentNotFoundError,
    EmptyIndexError,
    EmptyQueryError,
    IndexNotFoundError,
    LoaderError,
    ModelMismatchError,
    SemsearchError,
)
from semsearch.location import DATABASE_NAME, default_index_dir
from semsearch.locking import WriteLock
from semsearch.onnx_embedder import OnnxEmbedder
from semsearch.model_cache import load_query_model, query_model_dir
from semsearch.postings import CHANGED_SHARE as POSTINGS_CHANGED_SHARE
from semsearch.postings import MAX_TOKENS as POSTINGS_MAX_TOKENS
from semsearch.postings import Postings
from semsearch.resident import Resident
from semsearch.reader import ReadLimits
from semsearch.relevance import relevance as estimate_relevance
from semsearch.retrieval import FusionSettings, Ranked, Reranker, Retriever, rerank
from semsearch.store import Store
from semsearch.types import (
    MODES,
    Document,
    Hit,
    IndexStatus,
    IndexSummary,
    Mode,
    SearchFilter,
    Skipped,
)
from semsearch.verify import VerifyReport
from semsearch.vector_store import SETTINGS as VECTOR_INDEX_SETTINGS
from semsearch.vector_store import VectorStore, index_bytes
from semsearch.walker import path_text

if TYPE_CHECKING:  # indexing's modules are imported when an engine indexes: a search never needs them
    from semsearch.ingest import Indexer, PendingDocument, ProgressCallback

DEFAULT_OVERLAP_TOKENS = 32
RERANK_DEPTH = 50  # results a reranker reorders (it is slow: one model call per passage)
QUERIES_KEPT = 256  # query vectors kept by an engine (1.5 KB each at 384 dimensions)


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
        precision: str | None = None,
        device: str | None = None,
    ) -> None:
        if precision is not None and precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        self.directory = directory
        self._store = store
        self._lock = WriteLock(directory)
        self._embedder = embedder
        self._query_embedder: Embedder | None = None  # the ONNX export, when searching without the model
        self._offered_query_model: Any = None  # an EarlyQueryModel still loading (see offer_query_model)
        self._vectors: VectorStore | None = None
        self._fusion = fusion or FusionSettings()
        self._requested = embedder.name if embedder is not None else (canonical_model_name(model) if model else None)
        self.model = self._requested or canonical_model_name(None)
        self.dimension = 0  # known once the model is loaded, on the first write
        self.chunk_tokens = chunk_tokens or 0
        self.overlap_tokens = overlap_tokens
        self._requested_precision = precision
        self.precision = precision  # None until known: the index's, or what the first write picks
        self._requested_device = device
        self._notes: list[str] = []  # fallbacks taken while loading the model, for the summary
        self._postings: Resident[Postings] = Resident(self._read_postings, name="semsearch-postings")
        self._query_vectors: dict[str, np.ndarray] = {}  # recent queries' vectors, oldest first
        self._query_vectors_lock = threading.Lock()
        self._adopt_settings()

    def _adopt_settings(self) -> None:
        """Take the model and chunking the index was built with, once it has them.

        Called on open, and again by a reader opened on a new, empty index, which a writer may
        have filled since.
        """
        recorded = self._store.settings()
        if "model" not in recorded:
            return
        if self._requested is not None and self._requested != recorded["model"]:
            raise ModelMismatchError(
                f"the index at {self.directory} was built with model {recorded['model']!r}, not "
                f"{self._requested!r}; use another --index for a different model, or leave --model out"
            )
        # Indexes from before precisions existed hold the model's own vectors (migration 0005 says so).
        precision = recorded.get("precision", "fp32")
        if self._requested_precision is not None and self._requested_precision != precision:
            raise PrecisionMismatchError(
                f"the index at {self.directory} holds {precision} vectors, not {self._requested_precision}; "
                "vectors of two precisions never share an index, so leave --precision out, or build "
                f"{self._requested_precision} vectors into another --index"
            )
        self.model = recorded["model"]
        self.dimension = int(recorded["dimension"])
        self.chunk_tokens = int(recorded["chunk_tokens"])
        self.overlap_tokens = int(recorded["overlap_tokens"])
        self.precision = precision
        with self._query_vectors_lock:  # (a model adopted now embeds queries from now on)
            self._query_vectors.clear()

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
        precision: str | None = None,
        device: str | None = None,
    ) -> Engine:
        """Open the index in ``path`` (default: see :mod:`semsearch.location`).

        ``create=False`` refuses to make a new index (what searching commands want).
        ``embedder`` replaces the sentence-transformers model (tests use a fake one).
        ``chunk_tokens``/``overlap_tokens`` apply to a new index only; the default chunk size is
        the model's own limit. ``precision`` (``int8`` or ``fp32``) too: the default is fp32 (see
        :mod:`semsearch.backends`); an existing index keeps its own and refuses another.
        ``device`` (``cpu``, ``cuda``, ...) is where the model runs when it embeds; the default is
        a CUDA GPU if torch can use one, else the CPU.
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
                precision=precision,
                device=device,
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
        """The index's model at the index's precision, loaded on first use (see :mod:`semsearch.backends`)."""
        if self._embedder is None:
            if self.precision == "int8" and self._requested_device is None:
                device = "cpu"  # int8 runs on onnxruntime's CPU kernels; a GPU found would go unused
            else:
                device = choose_device(self._requested_device)
            precision = self.precision or default_precision(device)
            try:
                self._embedder = self._load_embedder(precision, device)
            except SemsearchError:
                if self._requested_device is not None or device == "cpu":
                    raise
                # A GPU that torch turns out not to reach (a driver mismatch, say): the CPU still works.
                self._notes.append(f"the {device} GPU could not be used; embedded on the CPU")
                precision = self.precision or default_precision("cpu")
                self._embedder = self._load_embedder(precision, "cpu")
        return self._embedder

    def _load_embedder(self, precision: str, device: str) -> Embedder:
        def torch_model(on: str) -> Embedder:
            # Called as SentenceTransformerEmbedder(name) on the CPU: tests replace it with fakes.
            if on == "cpu":
                return SentenceTransformerEmbedder(self.model)
            return SentenceTransformerEmbedder(self.model, device=on)

        return load_embedder(self.model, precision=precision, device=device, load_torch=torch_model)

    def _record_settings(self) -> None:
        """Fix the model and chunking of a new index, the first time anything is written."""
        self._adopt_settings()
        if self.dimension:
            return
        embedder = self.embedder
        self.dimension = embedder.dimension
        self.chunk_tokens = min(self.chunk_tokens or embedder.max_tokens, embedder.max_tokens)
        self.precision = getattr(embedder, "precision", None) or "fp32"
        with self._store.writing() as writer:
            writer.set_settings(
                {
                    "model": self.model,
                    "dimension": self.dimension,
                    "chunk_tokens": self.chunk_tokens,
                    "overlap_tokens": self.overlap_tokens,
                    "precision": self.precision,
                }
            )

    # -- the vectors ------------------------------------------------------------------------

    def vectors(self) -> VectorStore:
        """The index's vector segments (opened on first use; they follow new revisions by themselves)."""
        if self._vectors is None:
            if not self.dimension:
                raise EmptyIndexError(
                    f"the index at {self.directory} holds no documents yet; add some with: semsearch index FOLDER"
                )
            self._vectors = VectorStore(self.directory, self._store, self.dimension)
            self._vectors.attach()
        return self._vectors

    @contextmanager
    def _writing(self) -> Iterator[VectorStore]:
        """Hold the write lock, with the model's settings recorded and the segment files sound."""
        with self._lock:
            self._record_settings()
            vectors = self.vectors()
            vectors.prepare_writer()
            yield vectors

    def rebuild(self, vector_index: str | None = None) -> int:
        """Rewrite the vector segments from the vectors stored in SQLite; returns how many they hold.

        ``vector_index`` (``auto``, ``exact`` or ``ivf``) changes how the index is searched from
        now on: ``auto`` searches exactly below 100,000 chunks and approximately (IVF) above.
        """
        if vector_index is not None and vector_index not in VECTOR_INDEX_SETTINGS:
            raise ValueError(f"vector index must be one of {', '.join(VECTOR_INDEX_SETTINGS)}")
        with self._lock:
            if not self.dimension:
                return 0
            vectors = self.vectors()
            vectors.directory.mkdir(parents=True, exist_ok=True)
            count = vectors.rebuild(vector_index)
            vectors.collect_garbage()
            return count

    # -- writing ------------------------------------------------------------------------------

    def _indexer(self) -> Indexer:
        from semsearch.ingest import Indexer

        return Indexer(
            self._store,
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
        read_limits: ReadLimits | None = None,
    ) -> IndexSummary:
        """Bring the index up to date with these files and folders; returns what was done.

        Unchanged files cost a ``stat``; changed ones are re-chunked and only new chunk text is
        embedded; files gone from under these folders are removed unless ``prune=False``.
        Files are parsed in a worker process; one that takes longer or needs more memory than
        ``read_limits`` allow (default: 120 s, 2048 MB) is skipped with that reason.
        Ctrl-C stops at a consistent point and the summary says ``interrupted``.
        """
        with self._writing():
            summary = self._indexer().index_paths(
                [Path(p) for p in paths], include=include, exclude=exclude, prune=prune, progress=progress,
                read_limits=read_limits,
            )
        self._export_query_model()
        return self._with_notes(summary)

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
        or one per text; it can be filtered on in :meth:`search`. If ``ids`` repeats an id, the
        last text given under it wins (the same text given twice without ids is added once)."""
        texts = list(texts)
        if ids is not None and len(ids) != len(texts):
            raise ValueError("ids must have one entry per text")
        if titles is not None and len(titles) != len(texts):
            raise ValueError("titles must have one entry per text")
        if metadata is not None and not isinstance(metadata, Mapping) and len(metadata) != len(texts):
            raise ValueError("metadata must be one mapping, or one per text")

        def title_of(position: int) -> str:
            return titles[position] if titles is not None else ""

        def digest_of(position: int) -> str:
            return hashlib.sha256(f"{title_of(position)}\0{texts[position]}".encode()).hexdigest()

        keys = [str(ids[p]) if ids is not None else f"text:{digest_of(p)[:16]}" for p in range(len(texts))]
        last = {key: position for position, key in enumerate(keys)}  # a repeated id: the last one wins

        from semsearch.ingest import PendingDocument

        def documents() -> Iterable[PendingDocument | Skipped]:
            for position, body in enumerate(texts):
                key = keys[position]
                if last[key] != position:
                    continue
                title = title_of(position)
                extra = metadata if isinstance(metadata, Mapping) or metadata is None else metadata[position]
                # New metadata on the same text is a change too (filters must see it).
                described = json.dumps(dict(extra or {}), sort_keys=True, default=str)
                digest = hashlib.sha256(f"{digest_of(position)}\0{described}".encode()).hexdigest()
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

        with self._writing():
            summary = self._indexer().index_texts(documents())
        self._export_query_model()
        return self._with_notes(summary)

    def _with_notes(self, summary: IndexSummary) -> IndexSummary:
        notes, self._notes[:] = tuple(self._notes), []
        return dataclasses.replace(summary, notes=summary.notes + notes) if notes else summary

    def remove(self, *paths: str | Path) -> int:
        """Forget documents: files at or under these paths, or texts with these ids. Returns how many."""
        with self._lock:
            # Files by their absolute path, texts by their id; both as stored (see path_text).
            targets = [path_text(Path(p).expanduser().resolve()) for p in paths] + [path_text(str(p)) for p in paths]
            doomed = self._store.documents_under(targets)
            if not doomed:
                return 0
            self.vectors().prepare_writer()
            with self._store.writing() as writer:
                for doc in doomed:
                    writer.delete_document(doc.id)
            return len(doomed)

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
        min_score: float | None = None,
    ) -> list[Hit]:
        """The ``limit`` best chunks for ``query`` (or best documents, one chunk each, with
        ``group_by_document``). Filters apply before ranking: ``path`` glob, ``types`` extensions
        or formats, ``metadata`` equalities. ``vector`` is the query's embedding if the caller
        already has it (e.g. embedded many queries in one batch); it must come from this index's
        model. ``reranker`` (e.g. :func:`semsearch.embedder.load_reranker`) reorders the top
        :data:`RERANK_DEPTH` results by its own score, which then becomes the hit's score.

        Every hit has a ``relevance`` in [0, 1] (see :mod:`semsearch.relevance`); ``min_score``
        leaves out those of the ``limit`` best whose relevance is below it (both compared at four
        decimal places, as JSON shows relevance)."""
        if not query or not query.strip():
            raise EmptyQueryError("the query is empty; say what you are looking for")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if min_score is not None and not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be between 0 and 1 (a relevance), not {min_score}")
        self._ready_to_search()  # refreshes once per search: every part of it sees the same revision
        where = SearchFilter(
            path=path, types=tuple(types), metadata=tuple(sorted((metadata or {}).items()))
        )
        embed_query = self._embed_query if vector is None else (lambda _query: vector)
        vectors = self.vectors()
        vectors.count_search()  # a process searching again comes to hold a small index's vectors,
        # and its keyword postings (semsearch.resident)
        postings = self._postings.get(vectors.revision) if mode != "semantic" else None
        retriever = Retriever(self._store, vectors, embed_query, self._fusion, postings=postings)
        depth = max(limit, RERANK_DEPTH) if reranker is not None else limit
        ranked = self._rank(retriever, query.strip(), depth, mode, where, group_by_document)
        if reranker is not None:
            rows = self._store.chunk_rows([chunk_id for chunk_id, _ in ranked])
            passages = {chunk_id: f"{row.title}\n{row.text}" for chunk_id, row in rows.items()}
            ranked = rerank(reranker, query.strip(), ranked, passages, depth=depth)
        ranked = ranked[:limit]
        signals = retriever.signals(query.strip(), mode, [chunk_id for chunk_id, _ in ranked])
        relevance = {chunk_id: estimate_relevance(mode, signals[chunk_id]) for chunk_id, _ in ranked}
        if min_score is not None:
            # Compared at the 4 places JSON and the server show: a hit shown with relevance
            # 0.2975 passes --min-score 0.2975, whatever digits lie beyond.
            floor = round(min_score, 4)
            ranked = [(chunk_id, score) for chunk_id, score in ranked if round(relevance[chunk_id], 4) >= floor]
        return self._hits(ranked, relevance)

    def preload(self) -> None:
        """Read now, on this thread, what a process that searches again and again keeps in memory
        for the current revision: the keyword postings, and a small index's vectors (design.md,
        "Copies in memory"). Searches read them on their own from the second one at a revision;
        a server calls this as it starts, so that its first searches need not wait for that.
        Nothing is read for an empty index, or one whose copies are too large; it never raises:
        a copy that cannot be read is left out, and searches go the usual way."""
        try:
            self._ready_to_search()
        except Exception:  # noqa: BLE001 - an optimisation (an empty index, or one being replaced)
            return
        vectors = self.vectors()
        vectors.preload()
        self._postings.read_now(vectors.revision)

    def _read_postings(self, previous: Postings | None) -> Postings | None:
        """The current revision's postings: the copy held until now with what changed since,
        when that is a small part (an index being written: watch beside a server), else the
        whole table read again."""
        if previous is not None:
            most = int(len(previous.ids) * POSTINGS_CHANGED_SHARE)
            try:
                change = self._store.keyword_postings_change(previous.ids, previous.lengths, POSTINGS_MAX_TOKENS, most)
                if change is not None:
                    return previous.changed(change)
            except ValueError:
                pass  # (it does not add up, or rows changed under their ids: read it whole)
        raw = self._store.keyword_postings(POSTINGS_MAX_TOKENS)
        return Postings(raw) if raw is not None else None

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
        """The query's vector; the last :data:`QUERIES_KEPT` are kept, since a query is often
        asked again (another mode or filter on the search page, a grouped search, an assistant
        repeating itself), and embedding it is most of a search's time."""
        kept = self._query_vectors.get(query)
        if kept is None:
            kept = self._query_model().embed([query])
            kept.flags.writeable = False  # shared by every search of this query
            with self._query_vectors_lock:  # (a server searches on several threads)
                if len(self._query_vectors) >= QUERIES_KEPT:
                    self._query_vectors.pop(next(iter(self._query_vectors)), None)
                self._query_vectors[query] = kept
        return kept

    def offer_query_model(self, early: Any) -> None:
        """Offer a query model that was being loaded before this engine was opened
        (:class:`semsearch.early_model.EarlyQueryModel`). The first search takes it if it is this
        index's model at this index's precision, and loads its own otherwise."""
        self._offered_query_model = early

    def _query_model(self) -> Embedder:
        """The ONNX export of the index's model at the index's precision when there is one (no
        torch import); else the index's embedder (see :attr:`embedder`). A loaded or injected
        embedder always wins."""
        offered, self._offered_query_model = self._offered_query_model, None
        if offered is not None and self._embedder is None and self._query_embedder is None:
            onnx = offered.result()
            if (
                onnx is not None
                and onnx.name == self.model
                and onnx.precision == (self.precision or "fp32")
                and onnx.dimension == self.dimension
            ):
                self._query_embedder = onnx
        if self._embedder is None and self._query_embedder is None:
            try:
                onnx = load_query_model(self.model, self.precision or "fp32")
            except SemsearchError:
                onnx = None
            if onnx is not None and onnx.dimension == self.dimension:
                self._query_embedder = onnx
        if self._embedder is None and self._query_embedder is not None:
            return self._query_embedder
        return self.embedder

    def _export_query_model(self) -> None:
        """Save an ONNX copy of the model for later searches, while it is loaded anyway, and the
        copy's optimised query graph (:func:`semsearch.export_upkeep.save_query_graph`).

        Best effort: a model that cannot be exported (or checked) is simply searched with
        sentence-transformers, so nothing is reported.
        """
        model = getattr(self._embedder, "model", None)  # set only on a loaded sentence-transformers model
        if model is None:
            return
        from semsearch.export_upkeep import save_query_graph  # (a search never needs the exporter)
        from semsearch.onnx_export import export_query_model

        target = query_model_dir(self.model)
        try:
            if not OnnxEmbedder.available(target):
                export_query_model(model, target, name=self.model)
            save_query_graph(target)
        except (Exception, KeyboardInterrupt):  # noqa: BLE001 - an optimisation must not fail indexing
            pass  # the next indexing run tries again; searches use sentence-transformers meanwhile

    # -- documents and "more like this" ------------------------------------------------------

    def document(self, document: int | str | Path) -> Document:
        """A stored document with its chunks: by id (an ``int``), or by path or text id.

        A path is looked up as given (text ids, absolute paths), then as a file path resolved
        against the current directory, and a string of digits that names no path is read as an
        id. Raises :class:`DocumentNotFoundError`.
        """
        found = self._store.document(self._document_id(document))
        if found is None:  # removed by a writer just now
            raise DocumentNotFoundError(f"no document {document!r} in the index at {self.directory}")
        return found

    def _document_id(self, document: int | str | Path) -> int:
        if isinstance(document, (int, np.integer)) and not isinstance(document, bool):
            if self._store.document(int(document)) is None:
                raise DocumentNotFoundError(
                    f"no document with id {int(document)} in the index at {self.directory}; "
                    "ids are the document_id of search results"
                )
            return int(document)
        given = str(document)
        candidates = [path_text(given)]
        try:
            candidates.append(path_text(Path(given).expanduser().resolve()))
        except (OSError, RuntimeError):  # an unresolvable path (a symlink loop): only the text form
            pass
        found = self._store.documents_at(candidates)
        for candidate in candidates:
            if candidate in found:
                return found[candidate].id
        if given.isascii() and given.isdigit():  # typed on a command line or in a URL: an id
            return self._document_id(int(given))
        raise DocumentNotFoundError(
            f"no document at {given!r} in the index at {self.directory}; give an indexed file, "
            "a text id, or a document id from search results"
        )

    def similar(
        self,
        document: int | str | Path | None = None,
        *,
        text: str | None = None,
        limit: int = 10,
        path: str | None = None,
        types: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """The ``limit`` documents most like ``document`` (an id, a path or a text id) or like
        ``text``, best first; the document itself is left out. Each comes back as a :class:`Hit`
        holding its chunk most like the whole; ``score`` is that chunk's cosine similarity to the
        document's centroid (see :mod:`semsearch.similarity`). Filters as in :meth:`search`."""
        if (document is None) == (text is None):
            raise ValueError("give either a document or a text, not both or neither")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._ready_to_search()
        if document is not None:
            source = self._document_id(document)
            _ids, vectors = self._store.document_vectors(source)
            if not len(vectors):
                raise DocumentNotFoundError(f"the document {document!r} has no text indexed, so nothing is like it")
        else:
            source = None
            vectors = self._text_vectors(text or "")
        profile = similarity.centroid(vectors)
        where = SearchFilter(path=path, types=tuple(types), metadata=tuple(sorted((metadata or {}).items())))
        retriever = Retriever(self._store, self.vectors(), lambda _key: profile, self._fusion)
        wanted = limit + (source is not None)  # the document itself is usually its own best match
        ranked = self._rank(retriever, "similar", wanted, "semantic", where, True)
        owners = self._store.chunk_documents([chunk_id for chunk_id, _ in ranked])
        ranked = [(chunk_id, score) for chunk_id, score in ranked if owners.get(chunk_id) != source][:limit]
        return self._hits(ranked)

    def revision(self) -> int:
        """The index's revision: it goes up with every committed write that changes what a search finds."""
        return self._store.revision()

    def folders(self) -> list[str]:
        """The folders that directly hold the index's files, less any inside another one.

        Indexing them again brings every indexed file up to date; a new file outside them (at
        the top of a folder that held only subfolders, say) is not seen."""
        parents = sorted({os.path.dirname(doc.path) for doc in self._store.documents(source="file")})
        kept: list[str] = []
        for folder in parents:
            if not kept or not (folder == kept[-1] or folder.startswith(kept[-1].rstrip("/") + "/")):
                kept.append(folder)
        return kept

    def _ready_to_search(self) -> None:
        """Refresh to the newest revision; raise :class:`EmptyIndexError` if nothing is indexed."""
        if not self.dimension:
            self._adopt_settings()
        if self.dimension:
            self.vectors().refresh()
        if not self.dimension or self.vectors().live <= 0:
            raise EmptyIndexError(
                f"the index at {self.directory} holds no documents yet; add some with: semsearch index FOLDER"
            )

    def _text_vectors(self, text: str) -> np.ndarray:
        """A text cut into chunks as an untitled document would be, each embedded with the query model."""
        if not text.strip():
            raise EmptyQueryError("the text is empty; give the text to find documents like")
        model = self._query_model()
        parsed = loaders.parse_text(text)
        budget = max(32, min(self.chunk_tokens or model.max_tokens, model.max_tokens))
        drafts = chunk_document(
            parsed, model.counter, max_tokens=budget, overlap_tokens=min(self.overlap_tokens, budget // 4)
        )
        if not drafts:
            raise EmptyQueryError("the text has no words to compare; give the text to find documents like")
        return model.embed([draft.text for draft in drafts])

    def _hits(self, ranked: Ranked, relevance: Mapping[int, float] | None = None) -> list[Hit]:
        """Ranked chunks joined back to their documents (chunks deleted meanwhile drop out)."""
        rows = self._store.chunk_rows([chunk_id for chunk_id, _ in ranked])
        hits: list[Hit] = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:
                continue
            hits.append(
                Hit(
                    rank=len(hits) + 1, score=score, chunk_id=chunk_id, document_id=row.document_id,
                    path=row.path, title=row.title, text=row.text, start_line=row.start_line,
                    end_line=row.end_line, page=row.page, format=row.format, metadata=row.metadata,
                    relevance=None if relevance is None else relevance[chunk_id],
                    heading=row.heading,
                )
            )
        return hits

    # -- describing ---------------------------------------------------------------------------

    def verify(self, *, repair: bool = False) -> VerifyReport:
        """Check that SQLite, the keyword index, the metadata index and the vector segments agree.

        Read-only, and takes no lock, unless ``repair``: then the write lock is taken, everything
        derived is rebuilt from SQLite (nothing is embedded), and the report is of the index after
        the repair, listing what was done in ``repaired``.
        """
        from semsearch import verify

        if not self.dimension:
            self._adopt_settings()
        vectors = self.vectors() if self.dimension else None
        report = verify.check(self._store, vectors, self.dimension)
        if not repair or vectors is None:
            return report
        with self._lock:
            done = verify.repair(self._store, vectors)
        after = verify.check(self._store, vectors, self.dimension)
        return VerifyReport(problems=after.problems, repaired=tuple(done), chunks=after.chunks, segments=after.segments)

    def status(self) -> IndexStatus:
        settings = self._store.settings()
        size = self._store.size_bytes() + index_bytes(self.directory)
        segments = self.vectors().segments() if self.dimension else []
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
            vector_index=settings.get("vector_index", "auto"),
            vector_search="approximate" if any(s.kind == "ivf" for s in segments) else "exact",
            segments=len(segments),
            precision=settings.get("precision", "fp32"),
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
