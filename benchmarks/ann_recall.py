"""Approximate search: recall@10 and time per query of semsearch's IVF segments, and what exact
search costs as an index grows, to choose the defaults (docs/benchmarks.md).

    # real MiniLM vectors: any semsearch index (its float32 vectors are read from SQLite)
    .venv/bin/python benchmarks/ann_recall.py --index ~/.local/share/semsearch/default
    # a million synthetic vectors clustered like real embeddings (benchmarks/scale.py's generator)
    .venv/bin/python benchmarks/ann_recall.py --synthetic 1000000

Queries are held-out vectors of the same kind (``--queries`` of them, removed from the indexed
set): for real data, real chunks' embeddings, so the queries have the distribution of real text.
The ground truth is exact cosine top-10 by numpy. Each approximate search goes through
:class:`semsearch.vector_index.Segment` as the engine does (IVF lists, 8-bit codes) and then
rescoring the best ``10 + 5`` candidates with their float32 vectors, which is what
``VectorStore.search`` does. Also measured: recall at a fixed number of probed lists as the
segment grows (random subsets of an eighth, a quarter and half of the vectors), how many
candidates need rescoring, recall with a filter that passes a share of the chunks (a bitmap
selector, as a broad filter searched again is searched) for three rules of how many lists to
probe, 16-bit codes instead of 8-bit (size and recall), and the time of an
exact (flat, float16) scan at several sizes. Time is CPU time of this process per query, median,
one thread.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS.parent))

from semsearch.vector_index import Segment, Selector, list_count, write_segment  # noqa: E402
from semsearch.vector_store import PROBES as DEFAULT_PROBES  # noqa: E402

LIMIT = 10
RESCORED = LIMIT + 5  # VectorStore.search rescores limit + max(limit // 2, 5) candidates (IVF)
PROBES = (8, 12, 16, 24, 32, 48)  # lists probed a segment (semsearch's default: DEFAULT_PROBES)
DEPTHS = (10, 15, 42, 100)


def real_vectors(index: Path) -> np.ndarray:
    with sqlite3.connect(f"file:{index / 'semsearch.db'}?mode=ro", uri=True) as connection:
        blobs = [row[0] for row in connection.execute("SELECT vector FROM chunks ORDER BY id")]
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).astype(np.float32)


def synthetic_vectors(count: int) -> np.ndarray:
    sys.path.insert(0, str(BENCHMARKS))
    import scale

    embedder = scale.ClusteredEmbedder("synthetic")
    parts = []
    for start in range(0, count, 20_000):
        _ids, _titles, texts, _metadata = scale.documents(start, min(count, start + 20_000))
        parts.append(embedder.embed(texts))
    return np.concatenate(parts)


def split(vectors: np.ndarray, queries: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    held = np.random.default_rng(seed).choice(len(vectors), size=queries, replace=False)
    keep = np.ones(len(vectors), dtype=bool)
    keep[held] = False
    return vectors[keep], vectors[held]


def exact_top(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    tops = []
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ base.T
        tops.append(np.argsort(-scores, axis=1)[:, :LIMIT])
    return np.concatenate(tops) + 1  # ids are 1-based, as chunk ids are


def measure(
    segment: Segment, base: np.ndarray, queries: np.ndarray, truth: np.ndarray, probes: int, depth: int = RESCORED
) -> tuple[float, float]:
    recalls, seconds = [], []
    for query, expected in zip(queries, truth):
        started = time.process_time()
        candidates = segment.search(query, depth, probes=probes)[0].ids
        exact = base[candidates - 1] @ query  # the engine reads these float32 vectors from SQLite
        found = candidates[np.argsort(-exact)[:LIMIT]]
        seconds.append(time.process_time() - started)
        recalls.append(len(set(found.tolist()) & set(expected.tolist())) / LIMIT)
    return float(np.mean(recalls)), statistics.median(seconds)


def fp16_ivf(path: Path, base: np.ndarray) -> Segment:
    """An IVF segment with 16-bit codes (the alternative to semsearch's 8-bit ones)."""
    import faiss

    dimension = base.shape[1]
    lists = list_count(len(base))
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dimension), dimension, lists, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT, False
    )
    sample = np.random.default_rng(0).choice(len(base), size=min(len(base), lists * 48), replace=False)
    index.train(base[np.sort(sample)])
    index.add_with_ids(base, np.arange(1, len(base) + 1, dtype=np.int64))
    faiss.write_index(index, str(path))
    return Segment.open(path, dimension)


def growth(vectors: np.ndarray, queries: int, folder: Path) -> list[tuple[int, int, list[float]]]:
    """Recall@10 at each of :data:`PROBES` for random subsets of the vectors, smallest first:
    whether a fixed number of probed lists keeps its recall as a segment grows."""
    rows = []
    for share in (8, 4, 2, 1):
        count = len(vectors) // share
        subset = vectors[np.sort(np.random.default_rng(share).choice(len(vectors), size=count, replace=False))]
        base, held = split(subset, queries, seed=share)
        truth = exact_top(base, held)
        path = folder / f"growth-{share}"
        write_segment(path, np.arange(1, len(base) + 1, dtype=np.int64), base, kind="ivf")
        segment = Segment.open(path, base.shape[1])
        rows.append((len(base), segment.lists, [measure(segment, base, held, truth, probes)[0] for probes in PROBES]))
        path.unlink()
    return rows


def filtered(segment: Segment, base: np.ndarray, queries: np.ndarray, share: float, probes: int) -> float:
    """Recall@10 among the chunks a random filter passing ``share`` of them lets through."""
    flags = np.zeros(len(base) + 1, dtype=bool)
    flags[1:] = np.random.default_rng(round(share * 1000)).random(len(base)) < share
    selector = Selector(bits=np.packbits(flags, bitorder="little"))
    passing = np.flatnonzero(flags)
    recalls = []
    for query in queries:
        expected = passing[np.argsort(-(base[passing - 1] @ query))[:LIMIT]]
        candidates = segment.search(query, RESCORED, selector=selector, probes=probes)[0].ids
        found = candidates[np.argsort(-(base[candidates - 1] @ query))[:LIMIT]]
        recalls.append(len(set(found.tolist()) & set(expected.tolist())) / LIMIT)
    return float(np.mean(recalls))


def exact_scan_costs(base: np.ndarray, queries: np.ndarray, folder: Path) -> list[tuple[int, float]]:
    costs = []
    for size in (25_000, 50_000, 100_000, 200_000, 400_000):
        if size > len(base):
            break
        path = folder / f"flat-{size}"
        write_segment(path, np.arange(1, size + 1, dtype=np.int64), base[:size], kind="flat")
        segment = Segment.open(path, base.shape[1])
        seconds = []
        for query in queries[:50]:
            started = time.process_time()
            segment.search(query, RESCORED)
            seconds.append(time.process_time() - started)
        costs.append((size, statistics.median(seconds)))
        path.unlink()
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--index", type=Path, help="a semsearch index whose vectors to use")
    source.add_argument("--synthetic", type=int, help="this many synthetic clustered vectors")
    parser.add_argument("--queries", type=int, default=500, help="held-out vectors used as queries")
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    print(f"Command: `python {' '.join(sys.argv)}`")
    vectors = real_vectors(args.index) if args.index else synthetic_vectors(args.synthetic)
    base, queries = split(vectors, args.queries)
    truth = exact_top(base, queries)
    kind = f"real vectors from {args.index}" if args.index else "synthetic clustered vectors"
    print(f"{len(base):,} {kind} ({base.shape[1]} dimensions), {len(queries)} held-out queries\n")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        started = time.perf_counter()
        write_segment(folder / "ivf", np.arange(1, len(base) + 1, dtype=np.int64), base, kind="ivf")
        built = time.perf_counter() - started
        segment = Segment.open(folder / "ivf", base.shape[1])
        size8 = (folder / "ivf").stat().st_size
        print(f"IVF segment: {segment.lists} lists, 8-bit codes, {size8 / len(base):.0f} bytes per vector, "
              f"built in {built:.1f} s\n")
        print("| codes | lists probed | share of lists probed | recall@10 | CPU per query |")
        print("|---|---|---|---|---|")
        for probes in PROBES:
            recall, seconds = measure(segment, base, queries, truth, probes)
            print(f"| 8-bit | {probes} | {probes / segment.lists:.1%} | {recall:.3f} | {seconds * 1000:.2f} ms |")
        half = fp16_ivf(folder / "ivf16", base)
        size16 = (folder / "ivf16").stat().st_size
        for probes in (16, 24):
            recall, seconds = measure(half, base, queries, truth, probes)
            print(f"| 16-bit ({size16 / len(base):.0f} B/vector) | {probes} | {probes / half.lists:.1%} | {recall:.3f} | {seconds * 1000:.2f} ms |")
        print(f"\nCandidates rescored with float32 vectors (8-bit codes, {DEFAULT_PROBES} lists probed):\n")
        print("| candidates rescored | recall@10 | CPU per query |")
        print("|---|---|---|")
        for depth in DEPTHS:
            recall, seconds = measure(segment, base, queries, truth, DEFAULT_PROBES, depth)
            print(f"| {depth} | {recall:.3f} | {seconds * 1000:.2f} ms |")
        print("\nRecall@10 with a filter passing a share of the chunks (random), by lists probed:\n")
        print(f"| share passing | {DEFAULT_PROBES} lists | {DEFAULT_PROBES} / sqrt(share) (the default) | {DEFAULT_PROBES} / share |")
        print("|---|---|---|---|")
        for share in (0.5, 0.2, 0.05):
            rules = (DEFAULT_PROBES, math.ceil(DEFAULT_PROBES / math.sqrt(share)), math.ceil(DEFAULT_PROBES / share))
            cells = [f"{filtered(segment, base, queries, share, probes):.3f} ({probes})" for probes in rules]
            print(f"| {share:.0%} | " + " | ".join(cells) + " |")
        print("\nRecall@10 at a fixed number of probed lists as the segment grows (random subsets):\n")
        print("| vectors | lists | " + " | ".join(f"{probes} probed" for probes in PROBES) + " |")
        print("|---" * (2 + len(PROBES)) + "|")
        for count, lists, recalls in growth(vectors, args.queries, folder):
            print(f"| {count:,} | {lists} | " + " | ".join(f"{recall:.3f}" for recall in recalls) + " |")
        print("\nExact search (one flat segment, float16), CPU per query:\n")
        print("| vectors | CPU per query |")
        print("|---|---|")
        for size, seconds in exact_scan_costs(base, queries, folder):
            print(f"| {size:,} | {seconds * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
