"""Index a real folder from scratch, then again unchanged, then after editing one file.

    python benchmarks/index_folder.py [FOLDER] [--compare-batching]

FOLDER defaults to ../shared/data/folders/rust-book (beside the repository). Prints a markdown
table for docs/benchmarks.md. With --compare-batching it also embeds the same sample of chunks in
two orders — pooled and sorted by token count (what semsearch does) vs. one document at a time in
corpus order — and reports the median texts/second of three runs of each, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data")) / "folders" / "rust-book"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--compare-batching", action="store_true")
    parser.add_argument("--sample", type=int, default=384, help="chunks for --compare-batching")
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"no folder at {args.folder}")

    import semsearch

    workdir = Path(tempfile.mkdtemp(prefix="semsearch-bench-"))
    corpus = workdir / "corpus"
    shutil.copytree(args.folder, corpus, symlinks=True)  # a copy, so one file can be edited
    rows = []
    try:
        started = time.perf_counter()
        engine = semsearch.open(workdir / "index")
        engine.embedder  # noqa: B018 - load the model outside the timed indexing
        load_seconds = time.perf_counter() - started
        first = engine.index(corpus)
        rows.append(("first run", first, load_seconds))
        again = engine.index(corpus)
        rows.append(("re-run, nothing changed", again, 0.0))
        edited = _edit_one_file(corpus)
        third = engine.index(corpus)
        rows.append((f"re-run after editing {edited.name}", third, 0.0))
        status = engine.status()

        print(f"Folder: {args.folder} ({status.documents} documents indexed, {status.chunks} chunks, "
              f"index {status.size_bytes / 2**20:.1f} MB)")
        print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
              f"model load {load_seconds:.1f} s (not included below)\n")
        print("| run | files new / changed / unchanged / skipped | chunks embedded | seconds |")
        print("|---|---|---|---|")
        for label, summary, _ in rows:
            print(f"| {label} | {summary.new} / {summary.changed} / {summary.unchanged} / "
                  f"{len(summary.skipped)} | {summary.chunks_embedded} | {summary.elapsed_seconds:.1f} |")
        reasons = first.skipped_by_reason()
        if reasons:
            print("\nSkipped on the first run: " + "; ".join(f"{n} {r}" for r, n in reasons.items()))
        if args.compare_batching:
            _compare_batching(engine, args.sample)
        engine.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _edit_one_file(corpus: Path) -> Path:
    candidates = sorted(corpus.rglob("*.md")) or sorted(p for p in corpus.rglob("*") if p.is_file())
    target = candidates[len(candidates) // 2]
    with open(target, "a", encoding="utf-8") as handle:
        handle.write("\n\nAn added closing paragraph, written by the benchmark to change this file.\n")
    return target


def _compare_batching(engine, sample: int) -> None:
    """Texts/second for the same chunks: pooled+sorted by tokens vs per document in corpus order."""
    with engine._store._connections.reading() as connection:
        rows = connection.execute(
            "SELECT document_id, context, text, tokens FROM chunks ORDER BY document_id, ordinal LIMIT ?", (sample,)
        ).fetchall()
    texts = [(doc, f"{context}\n{body}" if context else body, tokens) for doc, context, body, tokens in rows]
    embedder = engine.embedder

    def pooled_sorted() -> None:
        embedder.embed([t for _, t, _ in sorted(texts, key=lambda item: item[2])])

    def per_document() -> None:
        by_document: dict[int, list[str]] = {}
        for doc, body, _ in texts:
            by_document.setdefault(doc, []).append(body)
        for bodies in by_document.values():
            embedder.embed(bodies)

    results = {}
    for name, run in (("per document, corpus order (baseline)", per_document), ("pooled, sorted by tokens (semsearch)", pooled_sorted)):
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            run()
            rates.append(len(texts) / (time.perf_counter() - started))
        results[name] = statistics.median(rates)
    print(f"\nBatching, {len(texts)} chunks, median of 3 runs each, same process:\n")
    print("| order | texts/second |")
    print("|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:.1f} |")


if __name__ == "__main__":
    main()
