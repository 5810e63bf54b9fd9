"""Regenerate the quality tables of docs/quality.md: every mode on every BEIR dataset, and on
the documentation folders with our own questions.

    .venv/bin/python benchmarks/quality.py                 # the BEIR table, as markdown
    .venv/bin/python benchmarks/quality.py --grid          # also the hybrid fusion sweep
    .venv/bin/python benchmarks/quality.py DATA_ROOT scifact adi
    .venv/bin/python benchmarks/quality.py --folders --no-beir --precision int8   # the folders only

The data root defaults to ``../shared/data/beir`` beside the repository (or ``$SEMSEARCH_BEIR``).
Each dataset is indexed once into the user cache (``semsearch eval``'s default) and reused, so
only the first run embeds anything (SciFact: several minutes on two cores).

``--folders`` scores each questions file in ``benchmarks/questions/`` against the folder of the
same name under ``../shared/data/folders`` (or ``$SEMSEARCH_FOLDERS``), as
``semsearch eval FOLDER --questions FILE`` does, and lists the questions hybrid search does not
answer in its top 5. ``--precision`` applies to folder indexes not built yet.
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
from semsearch.folder_evaluation import default_folder_index_dir, evaluate_folder, load_questions
from semsearch.retrieval import FusionSettings

DATASETS = ("scifact", "cranfield", "cisi", "medline", "adi")
QUESTIONS = REPO / "benchmarks" / "questions"  # <folder name>.jsonl: questions about that folder
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
    parser.add_argument("--folders", action="store_true", help="also score the documentation folders")
    parser.add_argument("--no-beir", action="store_true", help="leave the BEIR table out")
    parser.add_argument("--folder-root", type=Path,
                        default=os.environ.get("SEMSEARCH_FOLDERS", REPO.parent / "shared" / "data" / "folders"),
                        help="folder holding the documentation folders")
    parser.add_argument("--precision", choices=("fp32", "int8"), help="vectors of folder indexes built now")
    parser.add_argument("--index-root", type=Path,
                        help="keep each folder's index in INDEX_ROOT/<name> (default: the user cache)")
    args = parser.parse_args()
    if not args.no_beir:
        print_beir(args)
    if args.folders:
        print_folders(args.folder_root, args.precision, args.index_root)


def print_beir(args: argparse.Namespace) -> None:
    """The BEIR table (and the fusion sweep with --grid), as markdown."""
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


def print_folders(root: Path, precision: str | None, index_root: Path | None) -> None:
    """Each documentation folder with its questions: every mode, then the questions missed."""
    sets = []
    for path in sorted(QUESTIONS.glob("*.jsonl")):
        if (root / path.stem).is_dir():
            sets.append(load_questions(path, root / path.stem))
        else:
            print(f"(skipping {path.name}: no folder {root / path.stem})", file=sys.stderr)
    evaluations = []
    print()
    print("| folder | files | questions | mode | MRR@10 | hit@1 | hit@5 | hit@10 | queries/s |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for questions in sets:
        index = index_root / questions.name if index_root else default_folder_index_dir(questions.folder)
        result = evaluate_folder(questions, index=index, precision=precision)
        evaluations.append(result)
        for mode_result in result.results:
            m = mode_result.overall
            print(
                f"| {result.name} | {result.documents} | {result.questions} | {mode_result.mode} | {m.mrr_at_10:.4f} "
                f"| {m.hit_at_1:.3f} | {m.hit_at_5:.3f} | {m.hit_at_10:.3f} | {mode_result.queries_per_second:.0f} |",
                flush=True,
            )
    print()
    print("Questions hybrid search does not answer in its top 5:")
    print()
    print("| question | asked | answer | rank | first found |")
    print("|---|---|---|---:|---|")
    for result in evaluations:
        for answer in result.result("hybrid").missed(5):
            print(
                f"| {answer.question.id} | {answer.question.text} | {', '.join(answer.question.answers)} "
                f"| {answer.rank or '–'} | {answer.found[0] if answer.found else '–'} |"
            )


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
