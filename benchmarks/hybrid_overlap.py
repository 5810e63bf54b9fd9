"""Hybrid search with its semantic and keyword sides at once, against one after the other.

    .venv/bin/python benchmarks/hybrid_overlap.py --index INDEX [--queries 300]

INDEX is a real-model index of SciFact's corpus (e.g. made by ``semsearch --index INDEX eval
../shared/data/beir/scifact``). One process, one open engine; for each of SciFact's test queries
the two ways run back to back (so load changes hit both alike), then semantic and keyword search
alone for scale. "One after the other" swaps the pool hybrid search hands its semantic side to
(``semsearch.retrieval._companion``) for one that runs the task on the calling thread. Prints
p50 and p90 of each, and checks that both ways return the same hits.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import Future
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import semsearch  # noqa: E402
import semsearch.retrieval as retrieval  # noqa: E402

DATA = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data"))


class Inline:
    """An executor that runs each task at once, on the caller's thread."""

    def submit(self, function, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the caller, as a pool would
            future.set_exception(error)
        return future


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    with open(DATA / "beir" / "scifact" / "queries.jsonl", encoding="utf-8") as file:
        queries = [json.loads(line)["text"] for line in file][: args.queries]
    at_once = retrieval._companion
    one_after_the_other = Inline()
    times: dict[str, list[float]] = {"one after the other": [], "at once": [], "semantic alone": [], "keyword alone": []}
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with semsearch.open(args.index, create=False) as engine:
        for query in queries[:20]:  # warm up: the model, the segments, SQLite's cache
            engine.search(query, mode="hybrid")
        for query in queries:
            results = {}
            for name, pool in (("one after the other", lambda: one_after_the_other), ("at once", at_once)):
                retrieval._companion = pool
                started = time.perf_counter()
                results[name] = [hit.chunk_id for hit in engine.search(query, mode="hybrid")]
                times[name].append(time.perf_counter() - started)
            if results["one after the other"] != results["at once"]:
                raise SystemExit(f"the two ways disagree on {query!r}")
            for mode in ("semantic", "keyword"):
                started = time.perf_counter()
                engine.search(query, mode=mode)
                times[f"{mode} alone"].append(time.perf_counter() - started)
    retrieval._companion = at_once
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("| hybrid, in-process | p50 | p90 |\n|---|---:|---:|")
    for name, values in times.items():
        ordered = sorted(values)
        print(f"| {name} | {statistics.median(ordered) * 1000:.1f} ms | {ordered[int(len(ordered) * 0.9)] * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
