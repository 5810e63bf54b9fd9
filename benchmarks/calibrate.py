"""Fit the relevance curves of semsearch/relevance.py on BEIR judgements, and check each
collection with curves fitted on the other four (the tables in docs/quality.md#relevance).

    .venv/bin/python benchmarks/calibrate.py                      # collect, fit, print the tables
    .venv/bin/python benchmarks/calibrate.py --write              # and rewrite CURVES in semsearch/relevance.py
    .venv/bin/python benchmarks/calibrate.py --copy-to /tmp/cal   # search copies of the cached indexes
    .venv/bin/python benchmarks/calibrate.py --rows rows.json     # keep (or reuse) the collected hits

For every judged query of each collection and each mode: its best ``--depth`` documents (one chunk
each, as ``semsearch eval`` ranks them), each hit's signals (cosine; BM25 over the query's
whole-query score; in hybrid search its fused score) and whether its document is judged relevant
(an unjudged document is not, as trec_eval counts it). A logistic curve per mode is fitted by
Newton's method (iteratively reweighted least squares), each hit weighing the same, so each
judged query about the same.

The data root defaults to ``../shared/data/beir`` beside the repository (or ``$SEMSEARCH_BEIR``);
each collection is indexed once into the user cache (``semsearch eval``'s default) and reused.
``--copy-to`` searches a copy of each cached index instead, leaving the cache as it is (opening an
index migrates it to this version's schema, which an older semsearch then refuses).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from semsearch.evaluation import default_index_dir, index_dataset, load_dataset  # noqa: E402
from semsearch.relevance import FEATURES, Curve, Signals, inputs  # noqa: E402
from semsearch.types import MODES  # noqa: E402

DATASETS = ("scifact", "cranfield", "cisi", "medline", "adi")
# Each curve of semsearch/relevance.py is fitted on one mode's hits, weighing the inputs that
# relevance.FEATURES names. For comparison only, the tables also show mapping the hit's own
# score alone ("score"; in hybrid search, the fused score uncapped).
MODE_OF = {"semantic": "semantic", "keyword": "keyword", "hybrid": "hybrid", "hybrid-unfused": "hybrid"}
BINS = np.linspace(0.0, 1.0, 11)


@dataclass(frozen=True)
class Row:
    dataset: str
    mode: str
    query: str
    rank: int
    relevant: bool
    cosine: float
    keyword_share: float
    query_words: int
    score: float

    def value(self, feature: str) -> float:
        if feature == "score":
            return self.score
        fused = self.score if self.mode == "hybrid" else None
        return inputs(Signals(self.cosine, self.keyword_share, self.query_words, fused))[feature]


def collect(root: Path, names: list[str], depth: int, copy_to: Path | None) -> list[Row]:
    import semsearch
    from semsearch.retrieval import Retriever

    rows: list[Row] = []
    for name in names:
        dataset = load_dataset(root / name)
        index = default_index_dir(dataset.path)
        if copy_to is not None:
            copy = copy_to / index.name
            if not copy.exists() and index.exists():
                shutil.copytree(index, copy)
            index = copy
        with semsearch.open(index) as engine:
            index_dataset(engine, dataset)
            ids = list(dataset.queries)
            texts = [dataset.queries[qid].strip() for qid in ids]
            vectors = engine.embedder.embed(texts)
            for mode in MODES:
                for position, (qid, text) in enumerate(zip(ids, texts)):
                    vector = vectors[position : position + 1]
                    hits = engine.search(text, limit=depth, mode=mode, group_by_document=True, vector=vector)
                    # The signals of every hit, whatever the mode (the alternatives need them all).
                    retriever = Retriever(engine._store, engine.vectors(), lambda _query: vector, engine._fusion)
                    signals = retriever.signals(text, "hybrid", [hit.chunk_id for hit in hits])
                    judged = dataset.qrels.get(qid, {})
                    for hit in hits:
                        found = signals[hit.chunk_id]
                        rows.append(Row(name, mode, qid, hit.rank, judged.get(hit.path, 0) > 0,
                                        float(found.cosine or 0.0), float(found.keyword_share or 0.0),
                                        int(found.query_words or 0), hit.score))
                print(f"collected {name} {mode}: {len(ids)} queries", file=sys.stderr, flush=True)
    return rows


def design(rows: list[Row], features: tuple[str, ...]) -> np.ndarray:
    return np.array([[1.0] + [row.value(feature) for feature in features] for row in rows])


def fit(rows: list[Row], features: tuple[str, ...]) -> np.ndarray:
    """Logistic regression (intercept first) by Newton's method, each hit weighing the same."""
    x = design(rows, features)
    y = np.array([row.relevant for row in rows], dtype=float)
    weights = np.full(len(rows), 1.0 / len(rows))
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        gradient = x.T @ (weights * (p - y)) + 1e-6 * beta
        hessian = (x * (weights * p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def predict(rows: list[Row], features: tuple[str, ...], beta: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(design(rows, features) @ beta)))


def held_out(rows: list[Row], features: tuple[str, ...], names: list[str]) -> np.ndarray:
    """Each row's prediction from the curve fitted on the other datasets."""
    predicted = np.zeros(len(rows))
    for name in names:
        inside = [i for i, row in enumerate(rows) if row.dataset == name]
        beta = fit([row for row in rows if row.dataset != name], features)
        predicted[inside] = predict([rows[i] for i in inside], features, beta)
    return predicted


def measures(predicted: np.ndarray, relevant: np.ndarray) -> tuple[float, float, float]:
    """Log loss, Brier score and expected calibration error (10 equal-width bins)."""
    clipped = np.clip(predicted, 1e-9, 1 - 1e-9)
    log_loss = float(-np.mean(relevant * np.log(clipped) + (1 - relevant) * np.log(1 - clipped)))
    brier = float(np.mean((predicted - relevant) ** 2))
    which = np.clip(np.digitize(predicted, BINS) - 1, 0, len(BINS) - 2)
    ece = sum(abs(predicted[which == b].mean() - relevant[which == b].mean()) * np.sum(which == b)
              for b in range(len(BINS) - 1) if np.any(which == b)) / len(predicted)
    return log_loss, brier, float(ece)


def reliability(predicted: np.ndarray, relevant: np.ndarray) -> list[tuple[str, int, float, float]]:
    which = np.clip(np.digitize(predicted, BINS) - 1, 0, len(BINS) - 2)
    table = []
    for b in range(len(BINS) - 1):
        inside = which == b
        if np.any(inside):
            table.append((f"{BINS[b]:.1f}–{BINS[b + 1]:.1f}", int(inside.sum()),
                          float(predicted[inside].mean()), float(relevant[inside].mean())))
    return table


def auc(predicted: np.ndarray, relevant: np.ndarray) -> float:
    """How often a relevant hit has a higher value than an irrelevant one (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(predicted)
    positives = relevant == 1
    count, others = int(positives.sum()), int((~positives).sum())
    if not count or not others:
        return float("nan")
    return float((ranks[positives].sum() - count * (count + 1) / 2) / (count * others))


def report(rows: list[Row], names: list[str]) -> dict[str, Curve]:
    curves = {}
    for key, features in FEATURES.items():
        mode = MODE_OF[key]
        mine = [row for row in rows if row.mode == mode]
        relevant = np.array([row.relevant for row in mine], dtype=float)
        beta = fit(mine, features)
        curves[key] = Curve(intercept=float(beta[0]), **{feature: float(beta[1 + i]) for i, feature in enumerate(features)})
        print(f"\n### {key}: relevance from {', '.join(features)} ({mode} hits)\n")
        print(f"Fitted on all five: {curves[key]}\n")
        predicted = held_out(mine, features, names)
        alternative = held_out(mine, ("score",), names)
        print("| held-out collection | hits | judged relevant | mean relevance | log loss | ECE | AUC "
              "| ECE / AUC mapping `score` alone |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in names + ["all"]:
            inside = np.array([name in ("all", row.dataset) for row in mine])
            log_loss, _brier, ece = measures(predicted[inside], relevant[inside])
            ece_alt = measures(alternative[inside], relevant[inside])[2]
            print(f"| {name} | {int(inside.sum())} | {relevant[inside].mean():.3f} | {predicted[inside].mean():.3f} "
                  f"| {log_loss:.3f} | {ece:.3f} | {auc(predicted[inside], relevant[inside]):.3f} "
                  f"| {ece_alt:.3f} / {auc(alternative[inside], relevant[inside]):.3f} |")
        print("\n| relevance (held out) | hits | mean relevance | judged relevant |")
        print("|---|---:|---:|---:|")
        for label, count, mean, observed in reliability(predicted, relevant):
            print(f"| {label} | {count} | {mean:.3f} | {observed:.3f} |")
    return curves


def write_curves(curves: dict[str, Curve], command: str) -> None:
    path = REPO / "semsearch" / "relevance.py"
    source = path.read_text()
    lines = [f"# Written by: {command}", "CURVES: dict[str, Curve] = {"]
    for key, curve in curves.items():
        parts = [f"intercept={curve.intercept:.4f}"]
        for field in ("cosine", "keyword_share", "log_query_words", "fused"):
            if getattr(curve, field):
                parts.append(f"{field}={getattr(curve, field):.4f}")
        lines.append(f'    "{key}": Curve({", ".join(parts)}),')
    lines.append("}")
    updated, count = re.subn(r"# Written by: .*?\n}\n", "\n".join(lines) + "\n", source, count=1, flags=re.S)
    if count != 1:
        raise SystemExit("could not find the CURVES block in semsearch/relevance.py")
    path.write_text(updated)
    print(f"\nwrote {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default=os.environ.get("SEMSEARCH_BEIR", REPO.parent / "shared" / "data" / "beir"),
                        type=Path, help="folder holding the BEIR datasets")
    parser.add_argument("datasets", nargs="*", default=DATASETS, help="which datasets (default: all five)")
    parser.add_argument("--depth", type=int, default=10, help="hits per query and mode (default: 10)")
    parser.add_argument("--copy-to", type=Path, help="search copies of the cached indexes, made in this folder")
    parser.add_argument("--rows", type=Path, help="JSON file of collected hits: read if it exists, else written")
    parser.add_argument("--write", action="store_true", help="rewrite CURVES in semsearch/relevance.py")
    args = parser.parse_args()

    names = [name for name in args.datasets if (args.root / name / "corpus.jsonl").exists()]
    if args.rows is not None and args.rows.exists():
        rows = [Row(**item) for item in json.loads(args.rows.read_text())]
        names = [name for name in names if any(row.dataset == name for row in rows)]
    else:
        rows = collect(args.root, names, args.depth, args.copy_to)
        if args.rows is not None:
            args.rows.write_text(json.dumps([row.__dict__ for row in rows]))
    curves = report(rows, names)
    if args.write:
        write_curves(curves, ".venv/bin/python benchmarks/calibrate.py --write" + (
            f" --depth {args.depth}" if args.depth != 10 else ""))
    assert all(math.isfinite(value) for curve in curves.values() for value in curve.__dict__.values())


if __name__ == "__main__":
    main()
