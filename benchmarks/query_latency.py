"""What one query costs: sentence-transformers (torch) against the ONNX query model (onnxruntime).

    .venv/bin/python benchmarks/query_latency.py              # 5 processes per backend
    .venv/bin/python benchmarks/query_latency.py --runs 9 --warm 200

Each run is a fresh process that imports what the backend needs, loads the model, embeds one query
(the "cold" figure is that process's wall time, start to exit, less the warm loop) and then embeds
``--warm`` more queries one at a time (the "warm" figure is their median). Backends alternate run by
run, so a busy machine slows both alike. The ONNX export is made first if the cache lacks it
(``SEMSEARCH_CACHE`` moves the cache), and is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from semsearch.embedder import DEFAULT_MODEL  # noqa: E402
from semsearch.onnx_embedder import OnnxQueryEmbedder  # noqa: E402
from semsearch.model_cache import query_model_dir  # noqa: E402

QUERIES = (
    "how do I reset my password",
    "tomato plants turning yellow",
    "what does the error 'database is locked' mean",
    "Wie kann ich die Suche auf PDF-Dateien beschränken?",
    "configure logging to a file",
    "difference between a process and a thread",
    "best time of year to prune roses",
    "why is my sourdough bread so dense",
    "exact search versus approximate nearest neighbours recall",
    "who wrote the original BM25 paper",
)

# Run in the child: load one backend, embed one query, then time warm queries one by one.
CHILD = """
import json, os, sys, time
started = time.perf_counter()
backend, directory, warm = sys.argv[1], sys.argv[2], int(sys.argv[3])
queries = json.loads(sys.argv[4])
if backend == "onnx":
    from semsearch.onnx_embedder import OnnxQueryEmbedder
    embedder = OnnxQueryEmbedder(directory)
else:
    from semsearch.embedder import SentenceTransformerEmbedder
    embedder = SentenceTransformerEmbedder()
loaded = time.perf_counter()
embedder.embed([queries[0]])
first = time.perf_counter()
times = []
for i in range(warm):
    query = queries[i % len(queries)]
    tick = time.perf_counter()
    embedder.embed([query])
    times.append(time.perf_counter() - tick)
times.sort()
heavy = [m for m in ("torch", "sentence_transformers") if m in sys.modules]
print(json.dumps({"load": loaded - started, "first": first - loaded, "warm": times[len(times) // 2] if times else None,
                  "warm_total": sum(times), "heavy": heavy}))
"""

LABELS = {"st": "sentence-transformers (torch)", "onnx": "onnxruntime (ONNX export)"}


def ensure_export(directory: Path) -> None:
    if OnnxQueryEmbedder.available(directory):
        return
    print(f"(exporting {DEFAULT_MODEL} to {directory}; not timed)", file=sys.stderr)
    from semsearch.embedder import SentenceTransformerEmbedder
    from semsearch.onnx_export import export_query_model

    export_query_model(SentenceTransformerEmbedder()._model, directory, name=DEFAULT_MODEL)


def run_once(backend: str, directory: Path, warm: int) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", CHILD, backend, str(directory), str(warm), json.dumps(QUERIES)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{backend} run failed:\n{result.stderr}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    # Cold: the whole process (start to exit) less the warm loop, which it would not have run.
    return {**measured, "cold": wall - measured["warm_total"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="processes per backend (default 5)")
    parser.add_argument("--warm", type=int, default=100, help="warm queries per process (default 100)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    directory = query_model_dir(DEFAULT_MODEL)
    ensure_export(directory)
    results: dict[str, list[dict]] = {"st": [], "onnx": []}
    load_before = os.getloadavg()[0]
    run_once("onnx", directory, 0)  # warm the page cache for both, untimed
    run_once("st", directory, 0)
    for _ in range(args.runs):
        for backend in ("st", "onnx"):
            results[backend].append(run_once(backend, directory, args.warm))
    load_after = os.getloadavg()[0]

    def median(backend: str, key: str) -> float:
        return statistics.median(run[key] for run in results[backend])

    print(f"Command: `{shlex.join([Path(sys.executable).name, *sys.argv])}` "
          f"({os.cpu_count()} cores, load average {load_before:.1f} before, {load_after:.1f} after)\n")
    print("| backend | one-query process, wall | import + load | first query | warm query (median) |")
    print("|---|---:|---:|---:|---:|")
    for backend in ("st", "onnx"):
        print(
            f"| {LABELS[backend]} | {median(backend, 'cold'):.2f} s | {median(backend, 'load'):.2f} s "
            f"| {median(backend, 'first') * 1000:.1f} ms | {median(backend, 'warm') * 1000:.2f} ms |"
        )
    print(f"\nMedians of {args.runs} processes each; warm = median of {args.warm} one-query calls per process.")
    heavy = {module for run in results["onnx"] for module in run["heavy"]}
    if heavy:
        print(f"WARNING: the ONNX processes imported {', '.join(sorted(heavy))}")


if __name__ == "__main__":
    main()
