"""Segment files: immutable FAISS indexes of (chunk id, vector), opened memory-mapped.

The only module that imports faiss. A segment is written once, atomically (temporary file, fsync,
rename), and never changed; deletions are applied at search time by an id selector, and
:mod:`semsearch.vector_store` decides which segments are live. Every segment is a FAISS
``IndexIVFScalarQuantizer`` with inner-product metric (vectors are L2-normalised: cosine):

- ``flat``: one inverted list (a single zero centroid), so a search scans every vector; vectors
  are stored as float16, so a score is within :data:`FLAT_SCORE_ERROR` of the exact cosine;
- ``ivf``: about 2 sqrt(n) lists trained by k-means on the segment's own vectors, vectors stored
  as 8-bit codes; a search scans the lists nearest the query (approximate).

Segment scores are only for choosing candidates: the vector store rescores candidates with the
float32 vectors kept in SQLite, and uses the error bound to prove a flat search exact. One FAISS
type for both kinds lets FAISS memory-map either (``IO_FLAG_MMAP``): opening a segment reads a few
hundred bytes, and the operating system pages codes in as searches touch them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semsearch.errors import SemsearchError

KINDS = ("flat", "ivf")
# float16 keeps 11 significant bits: |q.v - q.v16| <= 2**-11 * |q| * |v| ~ 4.9e-4 for unit vectors.
FLAT_SCORE_ERROR = 1e-3
# k-means samples per list; FAISS warns below 39 and gains little above ~64.
_TRAIN_PER_LIST = 48
_CORES = os.cpu_count() or 1


class VectorFileError(SemsearchError):
    """A segment file is missing or unreadable; it is rebuilt from the vectors in SQLite."""


def list_count(vectors: int) -> int:
    """Inverted lists for an IVF segment of this many vectors: about 2 sqrt(n), at least 16.

    Measured on real MiniLM vectors (docs/benchmarks.md): at the same share of vectors scanned,
    2 sqrt(n) lists find more true neighbours than sqrt(n) (recall@10 0.947 vs 0.919 scanning 5%),
    and k-means on 48 samples a list still trains in seconds at a million vectors.
    """
    # ...but never fewer than FAISS's 39 training points a list (it warns on stderr below that).
    return max(16, min(int(round(2 * math.sqrt(vectors))), vectors // 39))


def probe_count(lists: int, probes: int | None) -> int:
    """Lists a search scans: ``probes`` of them (all of them when ``None`` or when there are fewer)."""
    return lists if probes is None else max(1, min(lists, probes))


@dataclass(frozen=True)
class SearchResult:
    """The nearest vectors to one query, best first: chunk ids and their cosine similarities."""

    ids: np.ndarray
    scores: np.ndarray


class Selector:
    """Which chunk ids a search may return: all but ``excluded``, or only ``allowed`` (ids), or
    only those whose bit is set in ``bits`` (a bitmap over ids, packed eight to a byte, lowest
    bit first).

    Built once per search (or per revision, for the tombstones) and used for every segment.
    ``allowed`` becomes a bitmap over the id range, so the scan's membership test is one bit
    (a hash set was measured 142 ms a query scanning a million ids for a 1% filter);
    ``excluded`` stays a hash set of the few tombstones.
    """

    def __init__(
        self, *, excluded: np.ndarray | None = None, allowed: np.ndarray | None = None, bits: np.ndarray | None = None
    ) -> None:
        import faiss

        self._keep: list = []  # FAISS selectors hold raw pointers to each other and to the bitmap
        selector = None
        if allowed is not None:
            allowed = _ids(allowed)
            flags = np.zeros(int(allowed.max()) + 1 if len(allowed) else 1, dtype=bool)
            flags[allowed] = True
            bits = np.packbits(flags, bitorder="little")
        if bits is not None:
            bitmap = np.ascontiguousarray(bits, dtype=np.uint8)  # FAISS reads bit (id & 7) of byte id >> 3
            if not len(bitmap):
                bitmap = np.zeros(1, np.uint8)
            self._keep.append(bitmap)
            selector = self._hold(faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap)))  # n: bytes
        elif excluded is not None and len(excluded):
            inner = self._hold(faiss.IDSelectorBatch(_ids(excluded)))
            selector = self._hold(faiss.IDSelectorNot(inner))
        self.faiss_selector = selector

    def _hold(self, selector):
        self._keep.append(selector)
        return selector


class Segment:
    """One open segment file (or an in-memory one built from stored vectors)."""

    def __init__(self, name: str, index, *, path: Path | None = None) -> None:
        self.name = name
        self.path = path
        self._index = index
        self.count = int(index.ntotal)
        self.dimension = int(index.d)
        self.lists = int(index.nlist)
        self.kind = "flat" if self.lists == 1 else "ivf"

    @classmethod
    def open(cls, path: Path, dimension: int) -> Segment:
        """Memory-map a segment file; raises :class:`VectorFileError` if it cannot be used."""
        import faiss

        if not path.is_file():
            raise VectorFileError(f"{path} is missing")
        try:
            with _faiss_name(path) as name:
                index = faiss.read_index(name, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        except Exception as error:  # faiss raises RuntimeError for damaged data
            raise VectorFileError(f"{path!r} is unreadable ({error})") from None
        if not isinstance(index, faiss.IndexIVFScalarQuantizer) or index.d != dimension:
            raise VectorFileError(f"{path} is not a {dimension}-dimensional semsearch segment")
        lists = faiss.downcast_InvertedLists(index.invlists)
        if hasattr(lists, "prefetch_nthread"):
            # Memory-mapped lists would start 32 threads per search to pre-read the probed lists:
            # measured 2.8 ms wall per search of a 37k-vector segment with them, 0.2 ms without.
            lists.prefetch_nthread = 0
        return cls(path.name, index, path=path)

    @classmethod
    def in_memory(cls, name: str, ids: np.ndarray, vectors: np.ndarray) -> Segment:
        """A flat segment held in memory (a reader's stand-in for a file it cannot open)."""
        return cls(name, _build(ids, vectors, "flat"))

    def scan_share(self, probes: int | None) -> float:
        """The share of this segment's vectors a search probing ``probes`` lists reads (about)."""
        return probe_count(self.lists, probes) / self.lists

    def search(self, queries: np.ndarray, limit: int, *, selector: Selector | None = None, probes: int | None = None) -> list[SearchResult]:
        """The ``limit`` best vectors for each query, scanning the ``probes`` lists nearest it (every
        list when ``None``)."""
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dimension)
        width = min(limit, self.count)
        if width <= 0:
            return [SearchResult(np.empty(0, np.int64), np.empty(0, np.float32)) for _ in queries]
        nprobe = probe_count(self.lists, probes)
        params = faiss.SearchParametersIVF(nprobe=nprobe)
        if selector is not None and selector.faiss_selector is not None:
            params.sel = selector.faiss_selector
        faiss.omp_set_num_threads(1)  # one query: threads cost more than they save (FACTS.md)
        scores, ids = self._index.search(queries, width, params=params)
        results = []
        for row_scores, row_ids in zip(scores, ids):
            found = row_ids >= 0  # fewer matches than `width` leave -1 holes at the end
            results.append(SearchResult(row_ids[found].astype(np.int64), row_scores[found]))
        return results

    def ids(self) -> np.ndarray:
        """Every chunk id in the segment (reads the whole id part of the file)."""
        import faiss

        lists = self._index.invlists
        parts = []
        for number in range(self.lists):
            size = lists.list_size(number)
            if size:
                pointer = lists.get_ids(number)
                parts.append(faiss.rev_swig_ptr(pointer, size).copy())
                lists.release_ids(number, pointer)
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)


def top_inner_products(vectors: np.ndarray, query: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``vectors`` (float32, contiguous) with the ``limit`` largest inner products
    with ``query``, and those products (float32), best first: FAISS's SIMD scan on one thread."""
    import faiss

    limit = min(limit, len(vectors))
    if limit <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    faiss.omp_set_num_threads(1)
    scores, rows = faiss.knn(
        np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1),
        np.ascontiguousarray(vectors, dtype=np.float32),
        limit,
        metric=faiss.METRIC_INNER_PRODUCT,
    )
    return rows[0].astype(np.int64), scores[0]


def write_segment(path: Path, ids: np.ndarray, vectors: np.ndarray, *, kind: str) -> None:
    """Build a segment of ``kind`` and write it atomically: readers see no file or a whole one."""
    import faiss

    index = _build(ids, vectors, kind)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            with _faiss_name(temporary) as name:
                faiss.write_index(index, name)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    sync_directory(path.parent)


@contextmanager
def _faiss_name(path: Path) -> Iterator[str]:
    """A name FAISS can open for ``path``: FAISS takes only text that encodes as UTF-8, and a
    folder name that is not (bytes of an old disk) reaches Python as lone surrogates. Then the
    file is opened here and FAISS is given Linux's name for the open file."""
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        handle = os.open(path, os.O_RDWR if path.exists() else os.O_RDWR | os.O_CREAT, 0o644)
        try:
            yield f"/proc/self/fd/{handle}"
        finally:
            os.close(handle)
        return
    yield name


def sync_directory(directory: Path) -> None:
    """fsync a directory, so a rename or unlink inside it survives a power cut."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _build(ids: np.ndarray, vectors: np.ndarray, kind: str):
    import faiss

    if kind not in KINDS:
        raise ValueError(f"segment kind must be one of {', '.join(KINDS)}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = _ids(ids)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise ValueError(f"expected one vector per id, got {vectors.shape} for {len(ids)} ids")
    dimension = vectors.shape[1]
    quantizer = faiss.IndexFlatIP(dimension)
    if kind == "flat" or len(ids) < 16 * _TRAIN_PER_LIST:
        quantizer.add(np.zeros((1, dimension), dtype=np.float32))
        lists, codes = 1, faiss.ScalarQuantizer.QT_fp16
    else:
        lists, codes = list_count(len(ids)), faiss.ScalarQuantizer.QT_8bit
    # by_residual=False: codes encode the vector itself, so one trained range serves every list.
    index = faiss.IndexIVFScalarQuantizer(quantizer, dimension, lists, codes, faiss.METRIC_INNER_PRODUCT, False)
    sample = min(len(ids), max(lists, 16) * _TRAIN_PER_LIST)
    chosen = np.sort(np.random.default_rng(len(ids)).choice(len(ids), size=sample, replace=False))
    faiss.omp_set_num_threads(_CORES)
    index.train(vectors[chosen] if len(chosen) else np.zeros((1, dimension), np.float32))
    index.add_with_ids(vectors, ids)
    return index


def _ids(ids) -> np.ndarray:
    return np.ascontiguousarray(ids, dtype=np.int64)
