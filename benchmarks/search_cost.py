"""Warm search latency of this checkout against another, on one BEIR collection's queries.

    git worktree add /tmp/semsearch-baseline main
    .venv/bin/python benchmarks/search_cost.py --baseline-src /tmp/semsearch-baseline --work /tmp/cost

Each checkout searches its own copy of the collection's cached index (``semsearch eval``'s, made
first if missing; copied because opening an index migrates it to that checkout's schema). A
round is one fresh process per checkout, in alternating order: it embeds every query in one
batch, runs ``--warm`` searches untimed, then times ``Engine.search(limit=10)`` for every query in
each mode. Reported: the median over rounds of each process's p50 and p90 (ms), and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODES = ("semantic", "keyword", "hybrid")

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import semsearch
from semsearch.evaluation import load_dataset
dataset = load_dataset(sys.argv[2])
ids = list(dataset.queries)
texts = [dataset.queries[qid].strip() for qid in ids]
warm = int(sys.argv[4])
with semsearch.open(sys.argv[3]) as engine:
    vectors = engine.embedder.embed(texts)
    for position in range(min(warm, len(texts))):
        engine.search(texts[position], limit=10, vector=vectors[position : position + 1])
    result = {"file": semsearch.__file__}
    for mode in ("semantic", "keyword", "hybrid"):
        times = []
        for position, text in enumerate(texts):
            started = time.perf_counter()
            engine.search(text, limit=10, mode=mode, vector=vectors[position : position + 1])
            times.append((time.perf_counter() - started) * 1000)
        result[mode] = [float(np.percentile(times, 50)), float(np.percentile(times, 90))]
print(json.dumps(result))
"""


def prepared_index(source: Path, dataset: Path, work: Path, label: str) -> Path:
    """A copy of the collection's cached index for one checkout (indexed by that checkout if absent)."""
    sys.path.insert(0, str(REPO))
    from semsearch.evaluation import default_index_dir

    cached = default_index_dir(dataset)
    copy = work / f"{label}-{cached.name}"
    if not copy.exists():
        if cached.exists():
            shutil.copytree(cached, copy)
        else:
            subprocess.run([sys.executable, "-m", "semsearch", "eval", str(dataset), "--index", str(copy)],
                           cwd=source, env={**os.environ, "PYTHONPATH": str(source)}, check=True,
                           stdout=subprocess.DEVNULL)
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-src", type=Path, required=True, help="another checkout of semsearch")
    parser.add_argument("--dataset", type=Path,
                        default=Path(os.environ.get("SEMSEARCH_BEIR", REPO.parent / "shared" / "data" / "beir")) / "scifact")
    parser.add_argument("--work", type=Path, required=True, help="folder for the index copies")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=30)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    sources = {"current": REPO, "baseline": args.baseline_src.resolve()}
    indexes = {label: prepared_index(source, args.dataset, args.work, label) for label, source in sources.items()}
    results: dict[str, list[dict]] = {label: [] for label in sources}
    for round_number in range(args.rounds):
        order = list(sources) if round_number % 2 == 0 else list(reversed(sources))
        for label in order:
            output = subprocess.run(
                [sys.executable, "-c", CHILD, str(sources[label]), str(args.dataset), str(indexes[label]), str(args.warm)],
                env={**os.environ, "PYTHONPATH": str(sources[label])}, check=True, capture_output=True, text=True,
            ).stdout
            results[label].append(json.loads(output.strip().splitlines()[-1]))
            print(f"round {round_number + 1} {label}: {results[label][-1]}", file=sys.stderr, flush=True)
    print(f"load average after: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print("| checkout | " + " | ".join(f"{mode} p50 / p90 (ms)" for mode in MODES) + " |")
    print("|---|" + "---:|" * len(MODES))
    for label, runs in results.items():
        cells = [f"{statistics.median(run[mode][0] for run in runs):.1f} / {statistics.median(run[mode][1] for run in runs):.1f}"
                 for mode in MODES]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
