"""The vector side of an index: a set of immutable segment files, kept in step with SQLite.

SQLite is the source of truth (every chunk's float32 vector is stored with it); segment files are
derived, and each write costs what it changed:

- every write transaction that adds chunks writes one new segment file holding just their
  vectors, *before* it commits, and records it in the ``segments`` table in the same
  transaction, so a crash leaves the old set of segments or the new one; a file that no commit
  recorded is garbage, deleted by the next writer;
- deleting a chunk leaves a tombstone (a trigger on ``chunks``, same transaction); searches skip
  tombstoned ids until a merge rewrites their segment;
- merges (in the same transaction as the write that triggers them) combine runs of adjacent
  segments of similar size, and rewrite alone a segment that is mostly tombstones, so the number
  of segments stays small and each vector is rewritten a logarithmic number of times;
- readers never write and never lock: they watch the ``revision`` setting and, when it moves,
  re-read the (small) segment and tombstone tables and memory-map only the new files.

An index of at least :data:`APPROXIMATE_FROM` chunks is searched approximately: its segments are
FAISS IVF indexes (see :mod:`semsearch.vector_index`), each searched in its :data:`PROBES` lists
nearest the query, whatever its size; below that
every segment is flat and search is exact. The ``vector_index`` setting (``auto``, ``exact``,
``ivf``) overrides the choice; ``rebuild`` applies a new one.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from semsearch.filter_members import Members
from semsearch.filter_vectors import MAX_CHUNKS as FILTER_VECTORS_MAX
from semsearch.filter_vectors import FilterVectors
from semsearch.memory_vectors import MAX_BYTES as MEMORY_VECTORS_MAX_BYTES
from semsearch.memory_vectors import MemoryVectors, cosines, nearest
from semsearch.recent_vectors import RecentVectors
from semsearch.resident import Resident
from semsearch.rows import SegmentRecord, VectorState
from semsearch.store import Store
from semsearch.vector_index import (
    FLAT_SCORE_ERROR,
    SearchResult,
    Segment,
    Selector,
    VectorFileError,
    sync_directory,
    write_segment,
)

if TYPE_CHECKING:  # the write side is imported when something is written
    from semsearch.writer import Writer

SEGMENTS_DIR = "segments"
LEGACY_FILE = "vectors.faiss"  # the single FAISS file of schema 0002 and before
SETTINGS = ("auto", "exact", "ivf")

# Chosen by measurement (docs/benchmarks.md, benchmarks/ann_recall.py): exact search grows
# linearly (a few ms per 100k vectors), and IVF probing a fixed number of lists keeps recall@10
# at 0.985-0.99 on real MiniLM vectors from 6,000 to 49,000 of them (with 2 sqrt(n) lists a
# segment, recall at a given number of probed lists does not fall as the segment grows).
APPROXIMATE_FROM = 100_000
LEAVE_APPROXIMATE_BELOW = 75_000  # hysteresis: an index hovering at the threshold is not rewritten back and forth
MIN_IVF_SEGMENT = 1_024  # smaller segments stay flat: too few vectors to train lists on, and cheap to scan
PROBES = 24
RESCORE_EXTRA = 32  # candidates rescored beyond those asked for (at least half as many again)...
# ...in an approximate search, at least this many: IVF's 8-bit scores rank well enough that
# recall@10 on real vectors is the same rescoring 15 candidates as 100 (docs/benchmarks.md).
APPROXIMATE_EXTRA = 5

# A small index held in memory searches a filter passing at least this share of it deeper and
# keeps what passes; fewer passing chunks are compared with the query one by one.
MEMORY_PASSING_FROM = 0.1

MERGE_FACTOR = 8  # merge this many adjacent segments of similar size
MERGE_SKEW = 2.0 / MERGE_FACTOR  # ... when none holds more than this share of their vectors
MAX_SEGMENTS = 24  # past this, merge the cheapest run even if unbalanced
TOMBSTONE_SHARE = 0.25  # rewrite a segment alone once this share of it is deleted
REBUILD_SLICE = 1_000_000  # a rebuild writes segments of at most this many vectors

# FAISS releases the GIL while it scans, so segments are searched on every core at once when the
# search reads enough vectors for that to pay (~1 ms of scanning; handing work to a thread costs
# ~0.05 ms).
PARALLEL_FROM = 10_000
_CORES = os.cpu_count() or 1
_workers: ThreadPoolExecutor | None = None
_workers_lock = threading.Lock()


class VectorStore:
    """The live segments of one index, for searching (any process) and writing (the lock holder)."""

    def __init__(self, directory: Path, store: Store, dimension: int) -> None:
        self.directory = directory / SEGMENTS_DIR
        self._index_directory = directory
        self._store = store
        self.dimension = dimension
        self.revision: int | None = None
        self._segments: dict[str, Segment] = {}
        self._excluded: Selector | None = None
        self._live = 0
        self._damaged: tuple[str, ...] = ()  # segments a reader had to rebuild in memory
        self.probes: int | None = PROBES
        self._refreshing = threading.Lock()  # a server's threads share one store
        self._filter_vectors = FilterVectors(store.vectors_of)  # narrow filters' vectors, by revision
        self._memory: Resident[MemoryVectors] = Resident(self._read_memory, name="semsearch-vectors")
        self._recent = RecentVectors(store.vectors_of, dimension)  # else, the vectors searches read lately

    # -- reading ------------------------------------------------------------------------------

    @property
    def live(self) -> int:
        """Live vectors at the revision last read (see :meth:`refresh`)."""
        return self._live

    def count(self) -> int:
        """Live vectors now."""
        self.refresh()
        return self._live

    def refresh(self) -> None:
        """Pick up a newer revision: open new segments, forget retired ones, reload tombstones.

        Costs one small query when nothing changed. A segment file that a concurrent merge
        deleted after this reader read the table is handled by reading the table again.
        """
        revision = self._store.revision()
        if revision == self.revision:
            return
        with self._refreshing:
            if self._store.revision() != self.revision:
                self._reload()

    def _reload(self) -> None:
        for _attempt in range(5):
            state = self._store.vector_state()
            try:
                self._load(state, stand_in=False)
                return
            except VectorFileError:
                continue
        self._load(self._store.vector_state(), stand_in=True)

    def _load(self, state: VectorState, *, stand_in: bool) -> None:
        if state.rebuild:  # an index from before segments: its vectors are only in SQLite
            ids, vectors = _collect(self._store.vectors())
            segments = {"sqlite": Segment.in_memory("sqlite", ids, vectors)} if len(ids) else {}
            self._install(state, segments, damaged=())
            return
        segments: dict[str, Segment] = {}
        damaged = []
        for record in state.segments:
            segment = self._segments.get(record.name)
            if segment is None or segment.path is None:
                try:
                    segment = Segment.open(self.directory / record.name, self.dimension)
                except VectorFileError:
                    if not stand_in:
                        raise
                    # Readers never write: search this range from SQLite until a writer repairs it.
                    ids, vectors = _collect(self._store.vectors_between(record.min_id, record.max_id))
                    damaged.append(record.name)
                    if not len(ids):
                        continue
                    segment = Segment.in_memory(record.name, ids, vectors)
            segments[record.name] = segment
        self._install(state, segments, damaged=tuple(damaged))

    def _install(self, state: VectorState, segments: dict[str, Segment], *, damaged: tuple[str, ...]) -> None:
        self._segments = segments
        self._excluded = Selector(excluded=state.tombstones) if len(state.tombstones) else None
        held = sum(segment.count for segment in segments.values())
        self._live = held if state.rebuild else held - len(state.tombstones)  # no tombstones apply before segments
        self._damaged = damaged
        self.revision = state.revision

    @property
    def damaged(self) -> tuple[str, ...]:
        """Segments whose files could not be opened (searched from SQLite until a writer repairs them)."""
        self.refresh()
        return self._damaged

    def segments(self) -> list[Segment]:
        self.refresh()
        return list(self._segments.values())

    def search(
        self, query: np.ndarray, limit: int, *, allowed: np.ndarray | None = None, members: Members | None = None
    ) -> SearchResult:
        """The ``limit`` nearest live chunks to one query vector, best first, with exact cosines.

        Segments store compressed vectors, so their scores only pick candidates: a few more than
        ``limit`` are rescored with the float32 vectors in SQLite. When every segment is flat,
        the result is provably what brute force returns: a vector left out scored at most the last
        candidate's compressed score, so its cosine is at most that plus the compression error;
        if the ``limit``-th rescored cosine is not above that bound, the search goes deeper.
        ``allowed`` restricts the search to those chunk ids, scanning every list of every segment;
        on an approximate index, a narrow filter searched before is compared with each of its
        chunks' float32 vectors instead (exact; :mod:`semsearch.filter_vectors`). ``members``
        (a broad filter's bitmap, :mod:`semsearch.filter_members`) restricts it the same way, an
        IVF segment then probing more lists the fewer chunks pass (1/sqrt(share) times as many).
        Searches the revision last read: call :meth:`refresh` first to see new writes.
        """
        segments, excluded, revision = list(self._segments.values()), self._excluded, self.revision
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if allowed is not None and len(allowed) == 0:
            return SearchResult(np.empty(0, np.int64), np.empty(0, np.float32))
        memory = self._memory.peek(revision)
        if memory is not None:
            if members is not None and members.count < len(memory.ids) * MEMORY_PASSING_FROM:
                allowed, members = members.passing(memory.ids), None  # few: compare with each of them
            return SearchResult(*memory.search(query[0], limit, allowed, None if members is None else members.flags))
        if members is not None and members.count <= FILTER_VECTORS_MAX:
            # As narrow as the filters the retriever lists (a bitmap made by a search that never
            # listed it: keyword-only, or one near its chunks): searched exactly, as those are.
            allowed, members = np.flatnonzero(members.flags), None
            if not len(allowed):
                return SearchResult(np.empty(0, np.int64), np.empty(0, np.float32))
        # Provable only where every code is float16 (flat); 8-bit IVF codes have no tight bound.
        exact = all(segment.kind == "flat" for segment in segments)
        if allowed is not None:
            held = None if exact else self._filter_vectors.get(allowed, revision)
            if held is not None:
                return SearchResult(*nearest(query[0], *held, limit))
            selector, probes = Selector(allowed=allowed), None
        elif members is not None:
            if not members.count:
                return SearchResult(np.empty(0, np.int64), np.empty(0, np.float32))
            share = members.count / max(self._live, members.count)
            # The k-th passing neighbour lies deeper the fewer pass; probing 1/sqrt(share) times the
            # lists keeps recall@10 at or above an unfiltered search's (benchmarks.md, "filters").
            probes = int(np.ceil(self.probes / np.sqrt(share))) if self.probes else None
            selector = Selector(bits=members.bits)
        else:
            selector, probes = excluded, self.probes
        depth = limit + max(limit // 2, RESCORE_EXTRA if exact else APPROXIMATE_EXTRA)
        while True:
            parts = _search_segments(segments, query, depth, selector, probes)
            candidates = merge_results(parts, depth)
            exhausted = len(candidates.ids) < depth
            if exhausted and probes is not None and members is not None and members.count > len(candidates.ids):
                probes = None  # too few passing chunks in the lists probed: scan every list
                continue
            rescored = self._rescore(query[0], candidates.ids)
            proven = (
                exact
                and len(rescored.ids) >= limit
                and rescored.scores[limit - 1] >= candidates.scores[-1] + FLAT_SCORE_ERROR
            )
            if exhausted or proven or not exact:
                return SearchResult(rescored.ids[:limit], rescored.scores[:limit])
            depth *= 4

    def stored_vectors(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, float32 vectors)`` of those chunks that exist, as SQLite stores them; from
        memory when this process holds them all (:mod:`semsearch.memory_vectors`)."""
        memory = self._memory.peek(self.revision)
        if memory is not None:
            return memory.get(ids)
        return self._recent.get(ids, self.revision)

    def read_ahead(self, ids: Sequence[int] | np.ndarray) -> None:
        """Read these chunks' stored vectors now, for a :meth:`stored_vectors` soon after (nothing
        when this process holds every vector)."""
        if self._memory.peek(self.revision) is None:
            self._recent.get(ids, self.revision)

    def count_search(self) -> None:
        """Say that a search is starting: a process that searches again at one revision comes to
        hold a small index's vectors in memory (:class:`semsearch.resident.Resident`)."""
        self._memory.get(self.revision)

    def preload(self) -> None:
        """Read a small index's vectors into memory now, on this thread (see :meth:`count_search`)."""
        self._memory.read_now(self.revision)

    def _read_memory(self, _previous: MemoryVectors | None) -> MemoryVectors | None:
        if self._live * max(self.dimension, 1) * 4 > MEMORY_VECTORS_MAX_BYTES:
            return None
        revision, ids, vectors = self._store.all_vectors()
        if len(ids) and vectors.shape[1] != self.dimension:
            return None
        return MemoryVectors(revision, ids, np.ascontiguousarray(vectors, dtype=np.float32))

    def _rescore(self, query: np.ndarray, ids: np.ndarray) -> SearchResult:
        """Exact cosines from the stored float32 vectors, best first (ties by id); ids deleted
        since the segments were read drop out."""
        found_ids, vectors = self._recent.get(ids, self.revision)
        if not len(found_ids):
            return SearchResult(np.empty(0, np.int64), np.empty(0, np.float32))
        scores = cosines(vectors, query)
        order = np.lexsort((found_ids, -scores))
        return SearchResult(found_ids[order], scores[order])

    # -- writing (the caller holds the index's write lock) -------------------------------------

    def attach(self) -> None:
        """Make every write transaction of the store keep the segments in step."""
        self._store.on_commit(self._before_commit, self._after_commit)

    def prepare_writer(self) -> list[str]:
        """Bring the files in line with the database before writing; says what it repaired.

        Converts an index from before segments, rewrites segment files that are missing or
        damaged (from SQLite, embedding nothing), and deletes files no commit recorded (left by
        a crash).
        """
        repaired: list[str] = []
        self.directory.mkdir(parents=True, exist_ok=True)
        state = self._store.vector_state()
        if state.rebuild:
            self.rebuild()
            repaired.append("wrote segments for an index from an older semsearch")
        else:
            broken = []
            for record in state.segments:
                try:
                    Segment.open(self.directory / record.name, self.dimension)
                except VectorFileError:
                    broken.append(record)
            if broken:
                with self._store.writing() as writer:
                    for record in broken:
                        self._rewrite(writer, [record], kind=record.kind)
                repaired.extend(f"rewrote damaged segment {record.name}" for record in broken)
        self.collect_garbage()
        return repaired

    def collect_garbage(self) -> int:
        """Delete files in the segments folder that no committed transaction recorded (and the
        single FAISS file of indexes from before segments)."""
        live = {record.name for record in self._store.vector_state().segments}
        removed = 0
        for path in self.directory.iterdir() if self.directory.is_dir() else ():
            if path.name not in live:
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            sync_directory(self.directory)
        legacy = self._index_directory / LEGACY_FILE
        if legacy.exists():
            legacy.unlink()
            removed += 1
        return removed

    def rebuild(self, setting: str | None = None) -> int:
        """Rewrite every segment from the vectors in SQLite; ``setting`` changes ``vector_index``.

        Returns how many vectors the new segments hold.
        """
        if setting is not None and setting not in SETTINGS:
            raise ValueError(f"vector index must be one of {', '.join(SETTINGS)}")
        self.directory.mkdir(parents=True, exist_ok=True)
        total = 0
        with self._store.writing() as writer:
            if setting is not None:
                writer.set_settings({"vector_index": setting})
            mode = setting or writer.setting("vector_index", "auto")
            old = [record.name for record in writer.segments()]
            high = writer.max_chunk_id()
            records = []
            buffer_ids: list[np.ndarray] = []
            buffer_vectors: list[np.ndarray] = []
            buffered = 0
            for ids, vectors in writer.vectors_between(0, high):
                buffer_ids.append(ids)
                buffer_vectors.append(vectors)
                buffered += len(ids)
                total += len(ids)
                if buffered >= REBUILD_SLICE:
                    records.append((np.concatenate(buffer_ids), np.concatenate(buffer_vectors)))
                    buffer_ids, buffer_vectors, buffered = [], [], 0
            if buffered:
                records.append((np.concatenate(buffer_ids), np.concatenate(buffer_vectors)))
            approximate = _approximate(mode, total, currently=False)
            new = [self._write(ids, vectors, approximate=approximate) for ids, vectors in records]
            writer.clear_tombstones()
            writer.replace_segments(old, new)
            writer.delete_setting("vectors_rebuild")
        return total

    def _before_commit(self, writer: Writer) -> None:
        if not writer.changed:
            return
        ids, vectors = writer.added_vectors()
        approximate = self._approximate_now(writer, extra=len(ids))
        if len(ids):
            writer.replace_segments([], [self._write(ids, vectors, approximate=approximate)])
        self._merge(writer, approximate)

    def _after_commit(self, writer: Writer) -> None:
        # Only a committed transaction's retired files go: a rolled-back one's are still live.
        for name in writer.retired:
            (self.directory / name).unlink(missing_ok=True)
        if writer.retired:
            sync_directory(self.directory)

    def _approximate_now(self, writer: Writer, *, extra: int = 0) -> bool:
        records = writer.segments()
        total = sum(record.count for record in records) + extra
        mode = writer.setting("vector_index", "auto")
        return _approximate(mode, total, currently=any(record.kind == "ivf" for record in records))

    def _merge(self, writer: Writer, approximate: bool) -> None:
        """Merge until the plan says the segments are in shape (each step in this transaction)."""
        for _step in range(64):
            records = writer.segments()
            runs = plan_merges(records, writer.tombstone_counts(), approximate=approximate)
            if not runs:
                return
            for run in runs:
                self._rewrite(writer, run, kind="ivf" if approximate else "flat")

    def _rewrite(self, writer: Writer, run: Sequence[SegmentRecord], *, kind: str) -> None:
        ids, vectors = _collect(writer.vectors_between(run[0].min_id, run[-1].max_id))
        new = [self._write(ids, vectors, approximate=kind == "ivf")] if len(ids) else []
        writer.replace_segments([record.name for record in run], new)

    def _write(self, ids: np.ndarray, vectors: np.ndarray, *, approximate: bool) -> SegmentRecord:
        kind = "ivf" if approximate and len(ids) >= MIN_IVF_SEGMENT else "flat"
        name = f"{uuid.uuid4().hex}.{kind}"
        write_segment(self.directory / name, ids, vectors, kind=kind)
        return SegmentRecord(name=name, kind=kind, count=len(ids), min_id=int(ids[0]), max_id=int(ids[-1]))


def plan_merges(
    records: Sequence[SegmentRecord], dead: Mapping[str, int], *, approximate: bool
) -> list[list[SegmentRecord]]:
    """Which runs of adjacent segments to rewrite now (each run becomes one segment).

    In order of precedence: a segment that is mostly tombstones, or of the wrong kind for the
    index's size, is rewritten alone; else the most balanced window of :data:`MERGE_FACTOR`
    adjacent segments is merged if no segment holds more than :data:`MERGE_SKEW` of it; else,
    past :data:`MAX_SEGMENTS`, the cheapest window is merged anyway.
    """
    live = [max(0, record.count - dead.get(record.name, 0)) for record in records]
    for record, alive in zip(records, live):
        if alive == 0 or dead.get(record.name, 0) >= TOMBSTONE_SHARE * record.count:
            return [[record]]
        wanted = "ivf" if approximate and alive >= MIN_IVF_SEGMENT else "flat"
        if record.kind != wanted and (record.kind == "ivf" or alive >= MIN_IVF_SEGMENT):
            return [[record]]
    if len(records) < MERGE_FACTOR:
        return []
    windows = []
    for start in range(len(records) - MERGE_FACTOR + 1):
        sizes = live[start : start + MERGE_FACTOR]
        total = sum(sizes)
        windows.append((max(sizes) / max(total, 1), total, start))
    skew, _total, start = min(windows)
    if skew <= MERGE_SKEW:
        return [list(records[start : start + MERGE_FACTOR])]
    if len(records) > MAX_SEGMENTS:
        _total, start = min((total, start) for _skew, total, start in windows)
        return [list(records[start : start + MERGE_FACTOR])]
    return []


def _search_segments(
    segments: Sequence[Segment], query: np.ndarray, depth: int, selector: Selector | None, probes: int | None
) -> list[SearchResult]:
    """Each segment's best ``depth``: on this thread for a small search, else split into one
    group of segments per core (by the vectors each search reads, costliest first, each to the
    lightest group), one group searched here and the others by worker threads."""
    def search(group: Sequence[Segment]) -> list[SearchResult]:
        return [segment.search(query, depth, selector=selector, probes=probes)[0] for segment in group]

    costs = {segment.name: segment.count * segment.scan_share(probes) for segment in segments}
    if _CORES < 2 or len(segments) < 2 or sum(costs.values()) < PARALLEL_FROM:
        return search(segments)
    groups: list[list[Segment]] = [[] for _ in range(min(_CORES, len(segments)))]
    loads = [0.0] * len(groups)
    for segment in sorted(segments, key=lambda s: -costs[s.name]):
        lightest = loads.index(min(loads))
        groups[lightest].append(segment)
        loads[lightest] += costs[segment.name]
    futures = [_worker_pool().submit(search, group) for group in groups[1:]]
    parts = search(groups[0])
    for future in futures:
        parts += future.result()
    return parts


def _worker_pool() -> ThreadPoolExecutor:
    global _workers
    with _workers_lock:
        if _workers is None:
            _workers = ThreadPoolExecutor(max_workers=max(1, _CORES - 1), thread_name_prefix="semsearch-segments")
        return _workers


def merge_results(parts: Sequence[SearchResult], limit: int) -> SearchResult:
    """The best ``limit`` of several segments' results (ties broken by chunk id)."""
    parts = [part for part in parts if len(part.ids)]
    if not parts:
        return SearchResult(np.empty(0, np.int64), np.empty(0, np.float32))
    if len(parts) == 1:
        return SearchResult(parts[0].ids[:limit], parts[0].scores[:limit])
    ids = np.concatenate([part.ids for part in parts])
    scores = np.concatenate([part.scores for part in parts])
    order = np.lexsort((ids, -scores))[:limit]
    return SearchResult(ids[order], scores[order])


def _approximate(mode: str, total: int, *, currently: bool) -> bool:
    if mode == "exact":
        return False
    if mode == "ivf":
        return True
    return total >= (LEAVE_APPROXIMATE_BELOW if currently else APPROXIMATE_FROM)


def _collect(batches) -> tuple[np.ndarray, np.ndarray]:
    ids, vectors = [], []
    for batch_ids, batch_vectors in batches:
        ids.append(batch_ids)
        vectors.append(batch_vectors)
    if not ids:
        return np.empty(0, np.int64), np.empty((0, 0), np.float32)
    return np.concatenate(ids), np.concatenate(vectors)


def index_bytes(directory: Path) -> int:
    """Bytes of the segment files of the index in ``directory``."""
    folder = directory / SEGMENTS_DIR
    if not folder.is_dir():
        return 0
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
