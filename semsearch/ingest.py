"""Indexing: decide what changed, then parse, chunk, embed and store only that.

Work is done in *waves*: pending chunks from many documents are pooled, vectors already stored for
an identical string are reused, the rest are sorted by token count and embedded in fixed-size
batches (measured here: 86 texts/s sorted and pooled, 33 per document in corpus order), and each
wave's documents are written in one transaction. Interrupting therefore loses at most the waves in
flight; the next run picks up from there because finished files are already unchanged.

The model works on its own thread (it releases the GIL while it runs), so while it embeds one
wave this thread writes the wave before it and reads and chunks the wave after it. Everything that
touches SQLite stays on this thread.
"""

from __future__ import annotations

import hashlib
import itertools
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semsearch import loaders, stopping
from semsearch.chunking import chunk_document
from semsearch.embedder import Embedder
from semsearch.reader import Reader, ReadJob, ReadLimits
from semsearch.rows import HEADING_SEPARATOR, NewChunk, NewDocument, StoredDocument, embed_hash
from semsearch.store import Store
from semsearch.types import IndexProgress, IndexSummary, ParsedDocument, Skipped
from semsearch.walker import FileEntry, is_gone, path_text, walk

# Bump when parsing, chunking or what is embedded changes: documents written by an older version
# are then processed again on the next run (vectors whose exact text is unchanged are reused).
# 2: text added without a title is embedded without a made-up one.
# 3: each chunk's heading path is stored, and embedded and keyword-indexed after the title.
INGEST_VERSION = 3
# Formats that a version left as they were, with the version since which they are unchanged: their
# documents are not processed again (plain text and code have no headings, so 3 changed nothing).
UNCHANGED_SINCE = {"text": 2, "code": 2}
WAVE_CHUNKS = 256  # chunks pooled before embedding: enough to sort well; a Ctrl-C loses at most one wave
# Texts handed to the embedder at a time, at least: it cuts them into its own batches (onnxruntime:
# one text each, measured fastest; torch: 16). Between calls a Ctrl-C is noticed
# and progress reported. An embedder that runs more than that at once (a batch per core on many
# cores, a GPU) says how many texts (``texts_at_once``); a call then holds CALL_ROUNDS times that,
# so every core has work and the longest batches, started first, are evened out by the shorter
# ones; a wave holds at least one call. (With a fixed 32, a 16-core machine ran two batches at
# once: docs/benchmarks.md.) On 2 cores a call stays at 32: 64 measured no faster there, and a
# Ctrl-C waits for the call under way. MAX_CALL bounds what one call, and so one wave, holds.
EMBED_CALL = 32
CALL_ROUNDS = 2
MAX_CALL = 2048
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_CONTEXT_CHARS = 200  # of the title, and again of the headings, in a chunk's context
PROGRESS_SECONDS = 0.25  # how often a waiting run reports progress
OVERLAP = True  # embed on a thread of its own while this one writes and chunks (False: one thing at a time)
_SAME_NAME_AS_TEXT = "another file's name reads the same once bytes that are not UTF-8 are escaped"

ProgressCallback = Callable[[IndexProgress], None]


@dataclass
class PendingDocument:
    """A document that needs (re)writing: where it came from and what its loader made of it."""

    path: str
    source: str
    content_hash: str
    size: int
    mtime_ns: int
    parsed: ParsedDocument
    metadata: dict[str, Any] = field(default_factory=dict)
    change: str = "new"  # "new" or "changed": which summary count it adds to
    # What each chunk is embedded under; None means the parsed title. Text added without a title
    # gets none: a made-up one ("untitled", or its own first line again) only adds noise.
    context: str | None = None


@dataclass
class _Tally:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    chunks_added: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    interrupted: bool = False

    def summary(self, started: float) -> IndexSummary:
        return IndexSummary(
            new=self.new,
            changed=self.changed,
            unchanged=self.unchanged,
            moved=self.moved,
            removed=self.removed,
            skipped=tuple(self.skipped),
            chunks_added=self.chunks_added,
            chunks_embedded=self.chunks_embedded,
            chunks_reused=self.chunks_reused,
            elapsed_seconds=time.perf_counter() - started,
            interrupted=self.interrupted,
        )


class Indexer:
    """Brings the store and the vector index up to date with files or texts."""

    def __init__(
        self,
        store: Store,
        embedder: Callable[[], Embedder],
        *,
        chunk_tokens: int,
        overlap_tokens: int,
        skip: Sequence[Path] = (),
    ) -> None:
        self._store = store
        self._embedder_factory = embedder
        self._embedder: Embedder | None = None
        self._chunk_tokens = chunk_tokens
        self._overlap_tokens = overlap_tokens
        self._skip = tuple(skip)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        return self._embedder

    # -- files --------------------------------------------------------------------------------

    def index_paths(
        self,
        roots: Sequence[Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        prune: bool = True,
        progress: ProgressCallback | None = None,
        read_limits: ReadLimits | None = None,
    ) -> IndexSummary:
        started = time.perf_counter()
        tally = _Tally()
        roots = [Path(root).expanduser().resolve() for root in roots]
        known = {doc.path: doc for doc in self._store.documents(source="file")}
        seen: set[str] = set()
        candidates: list[FileEntry] = []
        reader = Reader(read_limits)
        try:
            for item in walk(roots, include=include, exclude=exclude, skip=self._skip):
                if isinstance(item, Skipped):
                    tally.skipped.append(item)
                    continue
                path = item.path_text
                if path in seen:
                    # "a\xffb.txt" spelled out, and "a", byte 0xff, "b.txt": one text, two files.
                    tally.skipped.append(Skipped(path, _SAME_NAME_AS_TEXT))
                    continue
                seen.add(path)
                if not loaders.is_supported(item.path):
                    tally.skipped.append(Skipped(path, loaders.unsupported_reason(item.path)))
                    continue
                if item.size > MAX_FILE_BYTES:
                    tally.skipped.append(Skipped(path, f"larger than {MAX_FILE_BYTES // 2**20} MB"))
                    continue
                stored = known.get(path)
                if (
                    stored
                    and stored.size == item.size
                    and stored.mtime_ns == item.mtime_ns
                    and is_current(stored)
                ):
                    tally.unchanged += 1
                    continue
                if not candidates:
                    reader.start()  # the worker's start-up overlaps the rest of the walk
                candidates.append(item)

            # Not seen is not gone: this run's filters or an unreadable folder may have hidden it.
            missing = {
                doc.path: doc
                for doc in known.values()
                if doc.path not in seen and _under(doc.path, roots) and is_gone(doc.path)
            }
            pending = self._read_changed(candidates, known, missing, tally, reader)
            self._write_waves(pending, tally, progress_total=len(candidates), progress=progress)
            reader.close()
            if prune and missing:
                with self._store.writing() as writer:
                    for doc in missing.values():
                        writer.delete_document(doc.id)
                tally.removed += len(missing)
        except KeyboardInterrupt:
            tally.interrupted = True
        finally:
            reader.close()
        return tally.summary(started)

    def _read_changed(
        self,
        candidates: list[FileEntry],
        known: dict[str, StoredDocument],
        missing: dict[str, StoredDocument],
        tally: _Tally,
        reader: Reader,
    ) -> Iterator[PendingDocument]:
        """Read each candidate once: touch the unchanged, re-point the moved, parse the rest.

        Parsing happens in the reader's worker process, within its limits, one file ahead of
        the caller.
        """
        missing_by_hash: dict[str, StoredDocument] = {}
        for doc in missing.values():
            if is_current(doc):  # an older one is re-processed, not re-pointed
                missing_by_hash.setdefault(doc.content_hash, doc)

        def to_parse() -> Iterator[ReadJob[tuple[FileEntry, str, StoredDocument | None]]]:
            for entry in candidates:
                stopping.check()
                path = entry.path_text
                try:
                    data = entry.path.read_bytes()
                except OSError as error:
                    tally.skipped.append(Skipped(path, f"unreadable file ({error.strerror or error})"))
                    continue
                digest = hashlib.sha256(data).hexdigest()
                stored = known.get(path)
                if stored is not None and stored.content_hash == digest and is_current(stored):
                    with self._store.writing() as writer:
                        writer.touch_document(stored.id, size=entry.size, mtime_ns=entry.mtime_ns)
                    tally.unchanged += 1
                    continue
                origin = missing_by_hash.pop(digest, None)
                if origin is not None:
                    with self._store.writing() as writer:
                        if stored is not None:
                            writer.delete_document(stored.id)
                        writer.move_document(origin.id, path=path, size=entry.size, mtime_ns=entry.mtime_ns)
                    del missing[origin.path]
                    tally.moved += 1
                    continue
                # The title may come from the name, so the loader gets the path as text, not bytes.
                yield ReadJob((entry, digest, stored), path, data)

        for job, parsed in reader.read(to_parse()):
            entry, digest, stored = job.key
            if isinstance(parsed, str):
                tally.skipped.append(Skipped(job.path, parsed))
                continue
            yield PendingDocument(
                path=job.path,
                source="file",
                content_hash=digest,
                size=entry.size,
                mtime_ns=entry.mtime_ns,
                parsed=parsed,
                change="changed" if stored is not None else "new",
            )

    # -- texts --------------------------------------------------------------------------------

    def index_texts(self, documents: Iterable[PendingDocument | Skipped]) -> IndexSummary:
        """Write documents that did not come from files (their ``path`` is the caller's id)."""
        started = time.perf_counter()
        tally = _Tally()

        def looked_up() -> Iterator[tuple[PendingDocument, StoredDocument | None]]:
            # What is stored under each id, a few hundred ids per query: the cost follows the call,
            # not the size of the index.
            batch: list[PendingDocument] = []
            for document in itertools.chain(documents, [None]):
                if isinstance(document, Skipped):
                    tally.skipped.append(document)
                    continue
                if document is not None:
                    batch.append(document)
                if batch and (document is None or len(batch) >= 500):
                    known = self._store.documents_at([pending.path for pending in batch])
                    for pending in batch:
                        stored = known.get(pending.path)
                        yield pending, stored if stored is not None and stored.source == "text" else None
                    batch = []

        def changed() -> Iterator[PendingDocument]:
            for document, stored in looked_up():
                if stored is not None and stored.content_hash == document.content_hash and is_current(stored):
                    tally.unchanged += 1
                    continue
                document.change = "changed" if stored is not None else "new"
                yield document

        try:
            self._write_waves(changed(), tally)
        except KeyboardInterrupt:
            tally.interrupted = True
        return tally.summary(started)

    # -- the shared pipeline ------------------------------------------------------------------

    def _write_waves(
        self,
        documents: Iterable[PendingDocument],
        tally: _Tally,
        *,
        progress_total: int = 0,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Chunk, embed and write ``documents`` in waves, the model one wave ahead of the writes."""
        tracker = _Progress(progress, progress_total, tally)
        stop = threading.Event()  # tells the model's thread that nobody waits for it any more
        model = ThreadPoolExecutor(1, thread_name_prefix="semsearch-embed") if OVERLAP else None
        in_flight: _Wave | None = None
        try:
            for number, documents_of_wave in enumerate(self._waves(documents)):
                stopping.check()
                wave = self._plan(number, documents_of_wave, in_flight)
                if wave.todo:
                    if model is not None:
                        wave.embedding = model.submit(self._embed, wave, stop, tracker)
                    else:
                        wave.embedding = _done(self._embed(wave, stop, tracker))
                if in_flight is not None:
                    self._flush(in_flight, tally, tracker)
                in_flight = wave
            if in_flight is not None:
                self._flush(in_flight, tally, tracker)
        finally:
            stop.set()
            if model is not None:
                model.shutdown(wait=True, cancel_futures=True)
        tracker.report(final=True)

    def _waves(self, documents: Iterable[PendingDocument]) -> Iterator[list[tuple[PendingDocument, list[_Prepared]]]]:
        """Documents with their chunks, in groups of about :data:`WAVE_CHUNKS` chunks, or of one
        embedder call's if that is more."""
        wave: list[tuple[PendingDocument, list[_Prepared]]] = []
        wave_chunks = 0
        enough = 0  # known once a document is prepared (it loads the model; a run with nothing to do never does)
        for document in documents:
            stopping.check()
            prepared = self._prepare(document)
            if not enough:
                call = self._call_size()
                enough = -(-WAVE_CHUNKS // call) * call if call > EMBED_CALL else WAVE_CHUNKS  # whole calls
            wave.append((document, prepared))
            wave_chunks += len(prepared)
            if wave_chunks >= enough:
                yield wave
                wave, wave_chunks = [], 0
        if wave:
            yield wave

    def _prepare(self, document: PendingDocument) -> list[_Prepared]:
        embedder = self.embedder
        parsed = document.parsed
        title = parsed.title if document.context is None else document.context
        title = " ".join(title.split())[:MAX_CONTEXT_CHARS]
        limit = min(self._chunk_tokens, embedder.max_tokens)
        contexts: dict[tuple[str, ...], tuple[str, int]] = {}  # headings -> (context, its tokens)

        def context_of(headings: tuple[str, ...]) -> tuple[str, int]:
            if headings not in contexts:
                context = chunk_context(title, headings)
                contexts[headings] = (context, embedder.counter.count([context])[0] + 1 if context else 0)
            return contexts[headings]

        def reserve(headings: tuple[str, ...]) -> int:
            # At least 32 tokens of text per chunk, whatever the context (as before headings).
            return min(context_of(headings)[1], limit - 32)

        overlap = min(self._overlap_tokens, (limit - reserve(())) // 4)
        drafts = chunk_document(parsed, embedder.counter, max_tokens=limit, overlap_tokens=overlap, reserve=reserve)
        prepared = []
        for draft in drafts:
            context = context_of(draft.headings)[0]
            embed_text = f"{context}\n{draft.text}" if context else draft.text
            prepared.append(_Prepared(draft=draft, context=context, text=embed_text, key=embed_hash(embed_text)))
        return prepared

    def _call_size(self) -> int:
        """Texts per embedder call: :data:`EMBED_CALL`, or :data:`CALL_ROUNDS` rounds of what the
        embedder runs at once (``texts_at_once``) when that is more, up to :data:`MAX_CALL`."""
        try:
            at_once = operator.index(getattr(self.embedder, "texts_at_once", 0))
        except TypeError:  # not an integer: as if it said nothing
            at_once = 0
        return EMBED_CALL if at_once <= EMBED_CALL else min(CALL_ROUNDS * at_once, MAX_CALL)

    def _plan(
        self, number: int, documents: list[tuple[PendingDocument, list[_Prepared]]], earlier: _Wave | None
    ) -> _Wave:
        """What a wave must embed: chunks whose exact text is neither stored already nor being
        embedded by the wave before it, sorted by length so batches hold similar lengths."""
        everything = [item for _, prepared in documents for item in prepared]
        stored = self._store.vectors_by_embed_hash([item.key for item in everything])
        vectors = {key: np.frombuffer(blob, dtype="<f4").astype(np.float32) for key, blob in stored.items()}
        earlier_keys = earlier.todo_keys if earlier is not None else frozenset()
        todo: dict[str, _Prepared] = {}
        borrowed: set[str] = set()
        for item in everything:
            if item.key in vectors or item.key in todo:
                continue
            if item.key in earlier_keys:
                borrowed.add(item.key)
            else:
                todo[item.key] = item
        return _Wave(
            number=number,
            documents=documents,
            vectors=vectors,
            todo=sorted(todo.values(), key=lambda item: item.draft.tokens),
            borrowed=borrowed,
            earlier=earlier if borrowed else None,
        )

    def _embed(self, wave: _Wave, stop: threading.Event, tracker: _Progress) -> np.ndarray:
        """The wave's new vectors, in the order of ``wave.todo`` (runs on the model's thread)."""
        tracker.embedding(wave)
        parts = []
        call = self._call_size()
        for offset in range(0, len(wave.todo), call):
            if stop.is_set():
                raise _Abandoned
            batch = wave.todo[offset : offset + call]
            parts.append(self.embedder.embed([item.text for item in batch]))
            tracker.embedded(len(batch))
        return np.concatenate(parts)

    def _flush(self, wave: _Wave, tally: _Tally, tracker: _Progress) -> None:
        """Wait for the wave's vectors, then write its documents in one transaction."""
        if wave.embedding is not None:
            fresh = _wait(wave.embedding, tracker)
            wave.vectors.update(zip((item.key for item in wave.todo), fresh))
            tally.chunks_embedded += len(wave.todo)
        if wave.earlier is not None:
            for key in wave.borrowed:
                wave.vectors[key] = wave.earlier.vectors[key]
            wave.earlier = None  # written already; let its vectors go
        everything = sum(len(prepared) for _, prepared in wave.documents)
        tally.chunks_reused += everything - len(wave.todo)
        vectors = wave.vectors
        batch = [
            NewDocument(
                path=document.path,
                source=document.source,
                content_hash=document.content_hash,
                size=document.size,
                mtime_ns=document.mtime_ns,
                title=document.parsed.title,
                format=document.parsed.format,
                metadata={**document.parsed.metadata, **document.metadata},
                ingest_version=INGEST_VERSION,
                chunks=tuple(
                    NewChunk(draft=p.draft, context=p.context, embed_hash=p.key, vector=vectors[p.key]) for p in prepared
                ),
            )
            for document, prepared in wave.documents
        ]
        with self._store.writing() as writer:
            writer.write_documents(batch)
        changed = sum(document.change == "changed" for document, _ in wave.documents)
        new = len(wave.documents) - changed
        # Counted once committed: an interrupt inside the transaction rolls all of it back.
        tally.new += new
        tally.changed += changed
        tally.chunks_added += everything
        tracker.written(wave)


@dataclass(frozen=True)
class _Prepared:
    draft: Any
    context: str
    text: str
    key: str


@dataclass
class _Wave:
    """Documents written in one transaction, and the vectors their chunks need."""

    number: int
    documents: list[tuple[PendingDocument, list[_Prepared]]]
    vectors: dict[str, np.ndarray]  # by embed hash: stored ones at first, then the new ones
    todo: list[_Prepared]  # to embed, shortest first
    borrowed: set[str]  # keys the wave before this one embeds
    earlier: _Wave | None = None  # that wave, while its vectors are needed here
    embedding: Future | None = None

    @property
    def todo_keys(self) -> frozenset[str]:
        return frozenset(item.key for item in self.todo)


class _Abandoned(Exception):
    """The run ended while the model's thread still had work; nobody wants the result."""


def _done(value: np.ndarray) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _wait(future: Future, tracker: _Progress) -> np.ndarray:
    """The future's result, reporting progress while waiting (an interrupt still ends the wait)."""
    while True:
        stopping.check()
        try:
            return future.result(timeout=PROGRESS_SECONDS)
        except FutureTimeout:
            tracker.report()


class _Progress:
    """Counts what is done for the progress callback; the model's thread reports its batches."""

    def __init__(self, callback: ProgressCallback | None, total: int, tally: _Tally) -> None:
        self._callback = callback
        self._total = total
        self._tally = tally
        self._settled_before = self._settled()  # files the walk settled before any was read
        self._started: float | None = None
        self._files_written = 0
        self._last_written = -1  # number of the last wave written
        self._chunks_embedded = 0
        self._current: tuple[int, int, int] | None = None  # wave number, files, chunks to embed
        self._current_done = 0

    def embedding(self, wave: _Wave) -> None:
        if self._started is None:
            self._started = time.perf_counter()
        self._current_done = 0
        self._current = (wave.number, len(wave.documents), len(wave.todo))

    def embedded(self, count: int) -> None:
        self._chunks_embedded += count
        self._current_done += count

    def written(self, wave: _Wave) -> None:
        if self._started is None:
            self._started = time.perf_counter()
        self._files_written += len(wave.documents)
        self._last_written = wave.number
        self.report()

    def report(self, *, final: bool = False) -> None:
        if self._callback is None:
            return
        # Files read and found unchanged, moved or unreadable are done too.
        files = self._files_written + self._settled() - self._settled_before
        current = self._current
        if current is not None and current[0] > self._last_written and current[2]:
            # The wave being embedded counts by the share of it embedded, short of done until written.
            files += int(current[1] * min(1.0, self._current_done / current[2]) * 0.99)
        if final:
            files = max(files, self._total)
        seconds = time.perf_counter() - self._started if self._started is not None else 0.0
        self._callback(IndexProgress(min(files, self._total) if self._total else files, self._total,
                                     self._chunks_embedded, seconds))

    def _settled(self) -> int:
        return self._tally.unchanged + self._tally.moved + len(self._tally.skipped)


def is_current(stored: StoredDocument) -> bool:
    """Whether a stored document is what this version's pipeline would write for the same file."""
    return stored.ingest_version >= UNCHANGED_SINCE.get(stored.format, INGEST_VERSION)


def chunk_context(title: str, headings: Sequence[str]) -> str:
    """What goes before a chunk's text when it is embedded, and in the keyword index's weighted
    context column: the title, then the headings above the chunk, ``Title › Section › Subsection``.

    Headings past :data:`MAX_CONTEXT_CHARS` lose the outermost first: the nearest says the most.
    """
    kept: list[str] = []
    length = 0
    for heading in reversed(headings):
        heading = heading[:MAX_CONTEXT_CHARS]
        length += len(heading) + len(HEADING_SEPARATOR)
        if kept and length > MAX_CONTEXT_CHARS:
            break
        kept.append(heading)
    return HEADING_SEPARATOR.join([title, *reversed(kept)] if title else reversed(kept))


def _under(path: str, roots: Sequence[Path]) -> bool:
    for root in roots:
        root_text = path_text(root)
        if path == root_text or path.startswith(root_text.rstrip("/") + "/"):
            return True
    return False
