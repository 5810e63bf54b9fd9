"""How well hybrid search's relevance holds in small indexes (docs/quality.md, "Relevance").

The relevance curves were fitted on hits whose fused score was a sum of z-scores over a window of
100 chunks (82 on ADI). A folder of a dozen notes gives a window of a dozen: no score can stand
far above so few (at most √(n−1) z-units over n), so a fused score there is on another scale.
This builds many small indexes from BEIR collections and measures, for each size, how well each
of the two hybrid curves predicts which hits are relevant: the ``hybrid`` curve (cosine and fused
score) and ``hybrid-unfused`` (cosine and keyword share, which do not depend on the window).

Each small index of ``n`` documents holds the judged-relevant documents (two at most) of a few
judged queries, n/5 of them, and other documents of the collection: drawn at random (a folder
of unrelated documents), or with ``--similar-from`` from those queries' own near misses in an
index of the whole collection (a folder on one subject); each of those queries is then searched
in it (hybrid, one hit per document, the best min(n, 10)). A real
index is built for each, with the bundled model, so IDF and the windows are the small folder's
own.

    .venv/bin/python benchmarks/small_folders.py                     # the first table in docs/quality.md
    .venv/bin/python benchmarks/small_folders.py --sizes 5 10 --documents 200 --datasets adi
    .venv/bin/python benchmarks/small_folders.py --similar-from "/tmp/choices/{name}-fp32-254-32"  # folders on one subject

Prints, per size: hits, the share judged relevant, the mean relevance each curve gives, and each
curve's log loss and expected calibration error (ten bins); lower is better for both.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import semsearch  # noqa: E402
import semsearch.retrieval as retrieval  # noqa: E402
from semsearch.errors import SemsearchError  # noqa: E402
from semsearch.evaluation import Dataset, indexable, load_dataset  # noqa: E402

BEIR = Path(os.environ.get("SEMSEARCH_BEIR", REPO.parent / "shared" / "data" / "beir"))
CURVES = ("hybrid", "hybrid-unfused")


def unfused(signals):  # type: ignore[no-untyped-def]
    """Retriever.signals without the fused score, so that hybrid relevance reads the
    ``hybrid-unfused`` curve (as with fusion settings other than the default)."""

    def without_fused(self, query, mode, ids):  # type: ignore[no-untyped-def]
        return {chunk: dataclasses.replace(found, fused=None) for chunk, found in signals(self, query, mode, ids).items()}

    return without_fused


def neighbours(dataset: Dataset, index: str) -> dict[str, list[str]]:
    """Each judged query's 30 best documents in the whole collection (hybrid search of the index
    ``index`` names, ``{name}`` standing for the collection's), less those judged relevant to it."""
    found = {}
    with semsearch.open(index.format(name=dataset.name), create=False) as engine:
        for qid, query in dataset.queries.items():
            hits = engine.search(query.strip(), limit=30, group_by_document=True)
            found[qid] = [hit.path for hit in hits if dataset.qrels.get(qid, {}).get(hit.path, 0) <= 0]
    return found


def small_indexes(dataset: Dataset, size: int, documents: int, seed: int, similar: dict[str, list[str]] | None = None):
    """(documents, queries) of each small index: about ``documents`` documents in all. The other
    documents are drawn from the whole collection, or with ``similar`` from the queries' own
    near misses (a folder on one subject, where the wrong documents are close to the question)."""
    chance = random.Random(f"{dataset.name}-{size}-{seed}")
    corpus = {document.id: document for document in dataset.corpus if indexable(document) is not None}
    judged = [qid for qid in sorted(dataset.qrels) if any(doc in corpus for doc, grade in dataset.qrels[qid].items() if grade > 0)]
    for _ in range(max(1, documents // size)):
        queries = chance.sample(judged, max(1, size // 5))
        chosen: list[str] = []
        for qid in queries:
            relevant = sorted(doc for doc, grade in dataset.qrels[qid].items() if grade > 0 and doc in corpus)
            chosen += [doc for doc in chance.sample(relevant, min(2, len(relevant))) if doc not in chosen]
        chosen = chosen[:size]
        if similar is not None:
            near = sorted({doc for qid in queries for doc in similar.get(qid, ()) if doc in corpus})
            others = [doc for doc in chance.sample(near, len(near)) if doc not in chosen]
            others += [doc for doc in chance.sample(sorted(corpus), min(len(corpus), size * 4)) if doc not in chosen and doc not in others]
        else:
            others = [doc for doc in chance.sample(sorted(corpus), min(len(corpus), size * 4)) if doc not in chosen]
        chosen += others[: size - len(chosen)]
        yield [corpus[doc] for doc in chosen], [qid for qid in queries if any(dataset.qrels[qid].get(doc, 0) > 0 for doc in chosen)]


def hits(dataset: Dataset, size: int, documents: int, seed: int,
         similar: dict[str, list[str]] | None = None) -> list[tuple[bool, dict[str, float]]]:
    """Each hit: whether it is judged relevant, and its relevance under each curve."""
    found = []
    shipped = retrieval.Retriever.signals
    for corpus, queries in small_indexes(dataset, size, documents, seed, similar):
        with tempfile.TemporaryDirectory(prefix="semsearch-small-") as folder:
            with semsearch.open(folder, create=True) as engine:
                fields = [indexable(document) for document in corpus]
                added = engine.add_texts([text for _, text in fields], ids=[d.id for d in corpus],
                                         titles=[title for title, _ in fields])
                if added.interrupted:  # Ctrl-C while embedding: the engine kept it for us
                    raise KeyboardInterrupt
                for qid in queries:
                    by_curve: dict[str, dict[str, float]] = {}
                    try:
                        for curve in CURVES:
                            retrieval.Retriever.signals = shipped if curve == "hybrid" else unfused(shipped)
                            results = engine.search(dataset.queries[qid], limit=min(size, 10), group_by_document=True)
                            by_curve[curve] = {hit.path: hit.relevance for hit in results}
                    finally:
                        retrieval.Retriever.signals = shipped
                    for doc in by_curve["hybrid"]:
                        found.append((dataset.qrels[qid].get(doc, 0) > 0, {c: by_curve[c][doc] for c in CURVES}))
    return found


def log_loss(pairs: list[tuple[bool, float]]) -> float:
    return -sum(math.log(p if y else 1 - p) for y, p in ((y, min(max(p, 1e-6), 1 - 1e-6)) for y, p in pairs)) / len(pairs)


def calibration_error(pairs: list[tuple[bool, float]]) -> float:
    bins: dict[int, list[tuple[bool, float]]] = {}
    for y, p in pairs:
        bins.setdefault(min(int(p * 10), 9), []).append((y, p))
    return sum(abs(sum(y for y, _ in b) - sum(p for _, p in b)) for b in bins.values()) / len(pairs)


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["scifact", "cranfield", "cisi", "adi"])
    parser.add_argument("--sizes", nargs="+", type=positive, default=[5, 10, 20, 40, 80])
    parser.add_argument("--documents", type=positive, default=400, help="documents indexed per collection and size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--similar-from", metavar="INDEX",
                        help="draw the other documents from each query's near misses in this index of the "
                             "whole collection ({name} is the collection's name), not at random")
    args = parser.parse_args()
    datasets = [load_dataset(BEIR / name) for name in args.datasets]
    similar = {dataset.name: neighbours(dataset, args.similar_from) for dataset in datasets} if args.similar_from else {}
    print("| documents | hits | judged relevant | mean relevance: hybrid / unfused | log loss: hybrid / unfused | ECE: hybrid / unfused |")
    print("|---:|---:|---:|---|---|---|")
    for size in args.sizes:
        found = [hit for dataset in datasets for hit in hits(dataset, size, args.documents, args.seed, similar.get(dataset.name))]
        judged = sum(y for y, _ in found) / len(found)
        cells = {c: [(y, value[c]) for y, value in found] for c in CURVES}
        means = " / ".join(f"{sum(p for _, p in cells[c]) / len(found):.3f}" for c in CURVES)
        losses = " / ".join(f"{log_loss(cells[c]):.3f}" for c in CURVES)
        errors = " / ".join(f"{calibration_error(cells[c]):.3f}" for c in CURVES)
        print(f"| {size} | {len(found)} | {judged:.3f} | {means} | {losses} | {errors} |", flush=True)


if __name__ == "__main__":
    try:
        main()
    except (SemsearchError, OSError) as error:  # a missing index or dataset: one line, not a traceback
        sys.exit(f"small_folders.py: {error}")
    except KeyboardInterrupt:  # the small indexes are temporary folders, removed on the way out
        sys.exit(130)
