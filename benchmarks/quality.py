"""Regenerate the quality table of docs/quality.md: every mode on every BEIR dataset.

    .venv/bin/python benchmarks/quality.py                 # the table, as markdown
    .venv/bin/python benchmarks/quality.py --grid          # also the hybrid fusion sweep
    .venv/bin/python benchmarks/quality.py DATA_ROOT scifact adi

The data root defaults to ``../shared/data/beir`` beside the repository (or ``$SEMSEARCH_BEIR``).
Each dataset is indexed once into the user cache (``semsearch eval``'s default) and reused, so
only the first run embeds anything (SciFact: several minutes on two cores).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from semsearch.evaluation import default_index_dir, evaluate, load_dataset
from semsearch.retrieval import FusionSettings

DATASETS = ("scifact", "cranfield", "cisi", "medline", "adi")
# Published nDCG@10 to compare with: only figures whose source we could check.
ANCHORS = {
    ("scifact", "keyword"): "0.665 (BM25, BEIR paper); 0.679 (Anserini BM25 flat)",
    ("scifact", "semantic"): "0.645 (MTEB, all-MiniLM-L6-v2)",
}
# The fusion settings swept by --grid (each row changes one thing from the defaults).
GRID = (
    ("defaults", {}),
    ("rrf k=60 (the old default)", {"method": "rrf", "rrf_k": 60.0}),
    ("rrf k=10", {"method": "rrf", "rrf_k": 10.0}),
    ("min-max normalisation", {"normalisation": "minmax"}),
    ("semantic weight 0.4", {"semantic_weight": 0.4}),
    ("semantic weight 0.6", {"semantic_weight": 0.6}),
    ("semantic weight 0.7", {"semantic_weight": 0.7}),
    ("candidates 50", {"candidates": 50}),
    ("candidates 200", {"candidates": 200}),
    ("title weight 2 (keyword / hybrid)", {"keyword_weights": (2.0, 1.0)}),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default=os.environ.get("SEMSEARCH_BEIR", REPO.parent / "shared" / "data" / "beir"),
                        type=Path, help="folder holding the BEIR datasets")
    parser.add_argument("datasets", nargs="*", default=DATASETS, help="which datasets (default: all five)")
    parser.add_argument("--grid", action="store_true", help="also sweep the hybrid fusion settings")
    args = parser.parse_args()

    present = [name for name in args.datasets if (args.root / name / "corpus.jsonl").exists()]
    missing = sorted(set(args.datasets) - set(present))
    if missing:
        print(f"(skipping {', '.join(missing)}: not found under {args.root})", file=sys.stderr)

    print("| dataset | docs | queries | mode | nDCG@10 | Recall@100 | MRR@10 | MAP | queries/s | published nDCG@10 |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for name in present:
        result = evaluate(args.root / name)
        for mode_result in result.results:
            m = mode_result.overall
            print(
                f"| {name} | {result.documents} | {result.queries} | {mode_result.mode} | {m.ndcg_at_10:.4f} "
                f"| {m.recall_at_100:.4f} | {m.mrr_at_10:.4f} | {m.map:.4f} | {mode_result.queries_per_second:.0f} "
                f"| {ANCHORS.get((name, mode_result.mode), '')} |",
                flush=True,
            )
    if args.grid:
        print_grid(args.root, present)


def print_grid(root: Path, names: list[str]) -> None:
    """Hybrid nDCG@10 for each row of GRID on each dataset, as a markdown table."""
    from semsearch.engine import Engine

    print()
    print("| hybrid fusion | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    datasets = {name: load_dataset(root / name) for name in names}
    for label, change in GRID:
        settings = replace(FusionSettings(), **change)
        cells = []
        for dataset in datasets.values():
            with Engine.open(default_index_dir(dataset.path), fusion=settings) as engine:
                modes = ("keyword", "hybrid") if "keyword_weights" in change else ("hybrid",)
                result = evaluate(dataset, engine=engine, modes=modes)
            cells.append(" / ".join(f"{r.overall.ndcg_at_10:.4f}" for r in result.results))
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
