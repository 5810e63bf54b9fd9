"""How to find "more like this": four ways of ranking documents by likeness to one document,
scored on documents whose relatedness is known.

    .venv/bin/python benchmarks/similar_quality.py                  # all three sets
    .venv/bin/python benchmarks/similar_quality.py --sets peps      # one

Sets (from ``../shared/data``, or ``$SEMSEARCH_DATA``):

- ``peps``: the Python PEPs that declare a ``Topic:`` (Packaging, Typing, Release, Governance);
  two PEPs are related when they share a topic. Long documents, tens of chunks each.
- ``cranfield``, ``medline``: BEIR abstracts; two documents are related when some query judges
  both relevant (co-relevance). Short documents, mostly one chunk.

Methods, each returning the 10 documents most like a document, itself left out:

- ``centroid`` (what ``Engine.similar`` does): search with the normalised mean of the document's
  chunk vectors; each document scores by its chunk nearest that mean. One vector search.
- ``best-pair``: search with every chunk; a document scores by its best chunk-to-chunk cosine.
  One search per chunk.
- ``mean-best``: the same searches; a document scores by the mean, over the source's chunks, of
  its best match to each (a chunk it did not match in the top 50 counts that search's 50th score).
- ``centroid-pair``: the centroid's top 50 documents, reranked by the cosine of the two
  documents' centroids (every candidate's chunk vectors read from SQLite).

Each set is indexed once with the real model into ``--work`` (default: the user cache) and
reused. Figures: P@10, nDCG@10 and MAP@10 against the related set, and the median time of one call.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import semsearch  # noqa: E402
from semsearch import similarity  # noqa: E402
from semsearch.evaluation import index_dataset, load_dataset  # noqa: E402

DATA = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data"))
LIMIT = 10
DEPTH = 50  # chunks each per-chunk search returns, and candidates centroid-pair reranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="*", default=["peps", "cranfield", "medline"])
    parser.add_argument("--work", type=Path, default=None, help="where the indexes are kept")
    args = parser.parse_args()
    from platformdirs import user_cache_dir

    work = args.work or Path(user_cache_dir("semsearch", appauthor=False)) / "bench-similar"
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| set | docs | evaluated | method | P@10 | nDCG@10 | MAP@10 | ms per call (median) |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for name in args.sets:
        engine, related = (peps if name == "peps" else beir)(name, work / name)
        with engine:
            evaluate(name, engine, related)


def peps(_name: str, index: Path):
    folder = DATA / "folders" / "python-peps" / "peps"
    topics: dict[str, set[str]] = {}
    for path in sorted(folder.glob("pep-*.rst")):
        header = path.read_text(encoding="utf-8", errors="replace").split("\n\n", 1)[0]
        found = re.search(r"^Topic:\s*(.+)$", header, re.MULTILINE)
        if found and "<" not in found.group(1):
            topics[str(path.resolve())] = {t.strip() for t in found.group(1).split(",")}
    engine = semsearch.open(index)
    engine.index(*topics)
    ids = {doc.path: doc.id for doc in engine._store.documents()}
    by_id = {ids[path]: names for path, names in topics.items() if path in ids}
    related = {
        doc: {other for other, theirs in by_id.items() if other != doc and theirs & mine}
        for doc, mine in by_id.items()
    }
    return engine, related


def beir(name: str, index: Path):
    dataset = load_dataset(DATA / "beir" / name)
    engine = semsearch.open(index)
    index_dataset(engine, dataset)
    ids = {doc.path: doc.id for doc in engine._store.documents()}
    judged: dict[str, set[int]] = defaultdict(set)
    for query, grades in dataset.qrels.items():
        for doc, grade in grades.items():
            if grade > 0 and doc in ids:
                judged[query].add(ids[doc])
    related: dict[int, set[int]] = defaultdict(set)
    for docs in judged.values():
        for doc in docs:
            related[doc] |= docs - {doc}
    return engine, {doc: others for doc, others in related.items() if others}


def evaluate(name: str, engine, related: dict[int, set[int]]) -> None:
    store, vectors = engine._store, engine.vectors()
    owners_cache: dict[int, int] = {}
    centroids: dict[int, np.ndarray] = {}

    def owners(chunk_ids) -> list[int]:
        missing = [c for c in chunk_ids if c not in owners_cache]
        owners_cache.update(store.chunk_documents(missing))
        return [owners_cache[c] for c in chunk_ids]

    def centroid_of(doc: int) -> np.ndarray:
        if doc not in centroids:
            centroids[doc] = similarity.centroid(store.document_vectors(doc)[1])
        return centroids[doc]

    def by_centroid(doc: int) -> list[int]:
        return [hit.document_id for hit in engine.similar(doc, limit=LIMIT)]

    def per_chunk(doc: int, combine: str) -> list[int]:
        chunk_vectors = store.document_vectors(doc)[1]
        best: dict[int, list[float]] = defaultdict(lambda: [math.nan] * len(chunk_vectors))
        floors = []
        for row, vector in enumerate(chunk_vectors):
            found = vectors.search(vector, DEPTH)
            floors.append(float(found.scores[-1]) if len(found.scores) else 0.0)
            for owner, score in zip(owners(found.ids.tolist()), found.scores.tolist()):
                if owner != doc and not score <= best[owner][row]:
                    best[owner][row] = score
        scores = {}
        for owner, row_scores in best.items():
            if combine == "max":
                scores[owner] = np.nanmax(row_scores)
            else:
                scores[owner] = float(np.mean([floors[i] if math.isnan(s) else s for i, s in enumerate(row_scores)]))
        return sorted(scores, key=lambda owner: -scores[owner])[:LIMIT]

    def centroid_pair(doc: int) -> list[int]:
        candidates = [hit.document_id for hit in engine.similar(doc, limit=DEPTH)]
        mine = centroid_of(doc)
        return sorted(candidates, key=lambda other: -float(centroid_of(other) @ mine))[:LIMIT]

    methods = {
        "centroid": by_centroid,
        "best-pair": lambda doc: per_chunk(doc, "max"),
        "mean-best": lambda doc: per_chunk(doc, "mean"),
        "centroid-pair": centroid_pair,
    }
    documents = engine.status().documents
    for method, rank in methods.items():
        precision, ndcg, average_precision, times = [], [], [], []
        for doc, truth in sorted(related.items()):
            started = time.perf_counter()
            ranked = rank(doc)
            times.append(time.perf_counter() - started)
            gains = [1.0 if other in truth else 0.0 for other in ranked[:LIMIT]]
            precision.append(sum(gains) / LIMIT)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(truth), LIMIT)))
            ndcg.append(sum(g / math.log2(i + 2) for i, g in enumerate(gains)) / ideal)
            hits, total = 0, 0.0
            for i, gain in enumerate(gains):
                if gain:
                    hits += 1
                    total += hits / (i + 1)
            average_precision.append(total / min(len(truth), LIMIT))
        print(
            f"| {name} | {documents} | {len(related)} | {method} | {statistics.mean(precision):.4f} "
            f"| {statistics.mean(ndcg):.4f} | {statistics.mean(average_precision):.4f} "
            f"| {statistics.median(times) * 1000:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
