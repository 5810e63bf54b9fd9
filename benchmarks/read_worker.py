"""What parsing files in a worker process costs: index a folder with this checkout and with a
baseline checkout (one that parses in-process), interleaved, and compare the medians.

    git worktree add --detach /tmp/semsearch-before <commit before the worker>
    .venv/bin/python benchmarks/read_worker.py --baseline /tmp/semsearch-before              # fake embedder, 5 rounds
    .venv/bin/python benchmarks/read_worker.py --baseline /tmp/semsearch-before --model --rounds 2

FOLDER defaults to ../shared/data/folders/rust-book. Each run is a new `semsearch index` process
into a fresh index; the time is the summary's own (after imports and the model load). With the
tests' fake embedder (the default) the run is mostly walking, parsing, chunking and SQLite, so the
worker's cost shows; with ``--model`` it is the whole real indexing run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
DEFAULT_FOLDER = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data")) / "folders" / "rust-book"

CHILD = """
import sys
sys.path.insert(0, {checkout!r})
sys.path.insert(1, {tests!r})
import semsearch.cli, semsearch.engine
if {fake!r}:
    from conftest import FakeEmbedder
    fake = FakeEmbedder()
    semsearch.engine.SentenceTransformerEmbedder = lambda name=None: fake
    semsearch.engine.canonical_model_name = lambda name: fake.name
assert semsearch.__file__.startswith({checkout!r}), semsearch.__file__
sys.argv = ['semsearch'] + sys.argv[1:]
semsearch.cli.main()
"""


def run(checkout: Path, folder: Path, index: Path, fake: bool) -> dict:
    code = CHILD.format(checkout=str(checkout), tests=str(TESTS), fake=fake)
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    result = subprocess.run(
        [sys.executable, "-c", code, "--index", str(index), "index", str(folder), "--json"],
        capture_output=True, text=True, env=env, check=False,
    )
    if result.returncode != 0:
        sys.exit(f"{checkout}: exit {result.returncode}\n{result.stderr}")
    return json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout that parses in-process")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", action="store_true", help="the real model instead of the fake embedder")
    args = parser.parse_args()
    checkouts = {"before (in-process)": args.baseline.resolve(), "after (worker)": REPO}
    times: dict[str, list[float]] = {name: [] for name in checkouts}
    counts: dict[str, tuple] = {}
    with tempfile.TemporaryDirectory(prefix="semsearch-read-") as workdir:
        for round_number in range(args.rounds):
            order = list(checkouts.items())
            if round_number % 2:
                order.reverse()
            for name, checkout in order:
                index = Path(workdir) / "index"
                shutil.rmtree(index, ignore_errors=True)
                summary = run(checkout, args.folder, index, fake=not args.model)
                times[name].append(summary["elapsed_seconds"])
                counts[name] = (summary["new"], summary["skipped"], summary["chunks_added"])
                print(f"round {round_number + 1}: {name}: {summary['elapsed_seconds']:.2f} s", flush=True)
    load = os.getloadavg()
    print(f"\nFolder: {args.folder}; embedder: {'the real model' if args.model else 'fake (tests)'}; "
          f"{args.rounds} rounds, interleaved; load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
    print("| parsing | files indexed / skipped | chunks | median seconds | runs |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        new, skipped, chunks = counts[name]
        runs = ", ".join(f"{value:.1f}" for value in values)
        print(f"| {name} | {new} / {skipped} | {chunks} | {statistics.median(values):.2f} | {runs} |")


if __name__ == "__main__":
    main()
