"""Quality ideas tried by replaying an index's own candidate lists (docs/quality.md, "What we tried").

    .venv/bin/python benchmarks/replays.py mixed INDEX_A INDEX_B scifact     # semantic from A, keyword from B
    .venv/bin/python benchmarks/replays.py title INDEX scifact               # the title as a vector of its own
    .venv/bin/python benchmarks/replays.py document-bm25 INDEX scifact       # BM25 over whole documents
    .venv/bin/python benchmarks/replays.py phrases INDEX scifact             # adjacent words as phrases / NEAR
    .venv/bin/python benchmarks/replays.py gap-weight INDEX scifact          # a fusion weight per query
    .venv/bin/python benchmarks/replays.py batch-size                        # onnxruntime texts per call

INDEX is a folder `semsearch eval` or `benchmarks/index_choices.py --work` built for the dataset
(e.g. /tmp/choices/scifact-fp32-254-32). Each side's 100 best documents are taken from the engine
(semantic and keyword, documents scored by their best chunk), turned into z-scores over those 100
and fused 0.5 : 0.5, a document missing from one side getting that side's lowest. This is simpler
than the engine's hybrid (chunk-level fusion, exact scores for one-sided candidates, feedback), so
a replay's level is below the engine's (SciFact 0.7299 against 0.7341): compare replays with the
``baseline`` line each prints, never with the engine's table.

``batch-size`` times ``OnnxEmbedder`` (the cached export of the default model, fp32 unless
``--precision int8``) on the first 400 SciFact abstracts with 1, 4 and 16 texts a call, two workers,
alternating rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
BEIR = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data")) / "beir"

import semsearch  # noqa: E402
from semsearch.errors import SemsearchError  # noqa: E402
from semsearch.evaluation import Dataset, indexable, load_dataset, score_run  # noqa: E402
from semsearch.fts import TOKENIZER  # noqa: E402
from semsearch.words import _WORD, STOPWORDS, keyword_terms  # noqa: E402

Scores = dict[str, dict[str, float]]  # query id -> document id -> score


class Replay:
    """One dataset's queries with the engine's semantic and keyword document lists from an index."""

    def __init__(self, dataset: Dataset, index: Path, *, semantic_from: Path | None = None) -> None:
        self.dataset = dataset
        self.ids = list(dataset.queries)
        self.texts = [dataset.queries[qid].strip() for qid in self.ids]
        self.semantic, self.vectors = self._side(semantic_from or index, "semantic")
        self.keyword, _ = self._side(index, "keyword")

    def _side(self, index: Path, mode: str) -> tuple[Scores, np.ndarray | None]:
        with semsearch.open(index, create=False) as engine:
            vectors = engine.embedder.embed(self.texts) if mode == "semantic" else None
            scores = {
                qid: {
                    hit.path: hit.score
                    for hit in engine.search(
                        text, limit=100, mode=mode, group_by_document=True,
                        vector=None if vectors is None else vectors[position : position + 1],
                    )
                }
                for position, (qid, text) in enumerate(zip(self.ids, self.texts))
            }
        return scores, vectors

    def ndcg(self, ranked: Mapping[str, list[str]]) -> float:
        return round(score_run(self.dataset.qrels, ranked)[0].ndcg_at_10, 4)

    def alone(self, side: Scores) -> float:
        return self.ndcg({qid: sorted(side[qid], key=side[qid].get, reverse=True) for qid in self.ids})

    def fused(self, sides: list[tuple[float, Scores]], weight: Callable[[str], float] | None = None) -> float:
        """nDCG@10 of the z-scored sides added with their weights (``weight(qid)`` replaces the
        first side's weight, the second getting the rest, when given)."""
        ranked = {}
        for qid in self.ids:
            parts = []
            for position, (share, side) in enumerate(sides):
                if weight is not None and len(sides) == 2:
                    share = weight(qid) if position == 0 else 1 - weight(qid)
                parts.append((share, *z_scores(top(side[qid]))))
            documents = set().union(*(part[1] for part in parts))
            total = {doc: sum(share * z.get(doc, low) for share, z, low, _ in parts) for doc in documents}
            ranked[qid] = sorted(total, key=total.get, reverse=True)[:100]
        return self.ndcg(ranked)

    def baseline(self) -> None:
        print(f"baseline: semantic {self.alone(self.semantic)}, keyword {self.alone(self.keyword)}, "
              f"fused 0.5/0.5 {self.fused([(0.5, self.semantic), (0.5, self.keyword)])}")


def top(scores: Mapping[str, float], depth: int = 100) -> dict[str, float]:
    return dict(sorted(scores.items(), key=lambda item: -item[1])[:depth])


def z_scores(scores: Mapping[str, float]) -> tuple[dict[str, float], float, float]:
    """The z-scores, the lowest one (for a document this side did not find), and the gap between
    the first two."""
    if not scores:
        return {}, 0.0, 0.0
    values = np.array(list(scores.values()))
    mean, spread = values.mean(), values.std() or 1.0
    z = {doc: (value - mean) / spread for doc, value in scores.items()}
    first, second = (sorted(z.values(), reverse=True) + [0.0, 0.0])[:2]
    return z, (values.min() - mean) / spread, first - second


def keyword_match(words: list[str]) -> str:
    return " OR ".join(f'"{word}"' for word in words)


def mixed(args: argparse.Namespace) -> None:
    dataset = load_dataset(BEIR / args.dataset)
    Replay(dataset, args.index_b).baseline()  # both sides from INDEX_B
    replay = Replay(dataset, args.index_b, semantic_from=args.index_a)
    for share in (0.4, 0.5, 0.6):
        print(f"semantic from {args.index_a.name}, keyword from {args.index_b.name}, semantic weight {share}: "
              f"{replay.fused([(share, replay.semantic), (1 - share, replay.keyword)])}")


def title(args: argparse.Namespace) -> None:
    dataset = load_dataset(BEIR / args.dataset)
    replay = Replay(dataset, args.index)
    replay.baseline()
    documents = [doc for doc in dataset.corpus if doc.title.strip() and doc.text.strip()]
    with semsearch.open(args.index, create=False) as engine:
        titles = engine.embedder.embed([" ".join(doc.title.split()) for doc in documents])
    similarity = replay.vectors @ titles.T
    by_title = {
        qid: {documents[j].id: float(similarity[i, j]) for j in np.argsort(-similarity[i])[:100]}
        for i, qid in enumerate(replay.ids)
    }
    as_chunk = {qid: dict(replay.semantic[qid]) for qid in replay.ids}
    for qid in replay.ids:
        for doc, value in by_title[qid].items():
            as_chunk[qid][doc] = max(as_chunk[qid].get(doc, -1.0), value)
    print(f"titles alone: {replay.alone(by_title)}")
    print(f"the title as one more chunk: {replay.fused([(0.5, as_chunk), (0.5, replay.keyword)])}")
    for share in (0.1, 0.2, 0.3):
        print(f"the title as a third side, weight {share}: "
              f"{replay.fused([(0.5, replay.semantic), (0.5, replay.keyword), (share, by_title)])}")


def document_bm25(args: argparse.Namespace) -> None:
    dataset = load_dataset(BEIR / args.dataset)
    replay = Replay(dataset, args.index)
    replay.baseline()
    table = sqlite3.connect(":memory:")
    table.execute(f"CREATE VIRTUAL TABLE d USING fts5(id UNINDEXED, title, text, tokenize='{TOKENIZER}')")
    for doc in dataset.corpus:
        fields = indexable(doc)
        if fields:
            table.execute("INSERT INTO d VALUES (?, ?, ?)", (doc.id, *fields))
    whole: Scores = {}
    for qid, text in zip(replay.ids, replay.texts):
        match = keyword_match(keyword_terms(text))
        whole[qid] = dict(table.execute(
            "SELECT id, -bm25(d) FROM d WHERE d MATCH ? ORDER BY bm25(d) LIMIT 100", (match,)
        ).fetchall()) if match else {}
    print(f"keyword over whole documents: {replay.alone(whole)}")
    print(f"fused with semantic: {replay.fused([(0.5, replay.semantic), (0.5, whole)])}")
    print(f"both keyword sides at 0.25: "
          f"{replay.fused([(0.5, replay.semantic), (0.25, replay.keyword), (0.25, whole)])}")


def phrases(args: argparse.Namespace) -> None:
    from semsearch.fts import prepare_connection

    replay = Replay(load_dataset(BEIR / args.dataset), args.index)
    replay.baseline()
    connection = sqlite3.connect(args.index / "semsearch.db")
    prepare_connection(connection)
    path_of = dict(connection.execute("SELECT c.id, d.path FROM chunks c JOIN documents d ON d.id = c.document_id"))

    def bm25(match: str) -> dict[str, float]:
        best: dict[str, float] = {}
        if match:
            for row, score in connection.execute(
                "SELECT rowid, -bm25(chunk_fts) FROM chunk_fts WHERE chunk_fts MATCH ?", (match,)
            ):
                best[path_of[row]] = max(best.get(path_of[row], score), score)
        return best

    def pairs(text: str, near: int) -> str:
        words = [word.lower() for word in _WORD.findall(text)]
        found = [
            f'NEAR("{a}" "{b}", {near})' if near else f'"{a} {b}"'
            for a, b in zip(words, words[1:]) if a not in STOPWORDS and b not in STOPWORDS
        ]
        return " OR ".join(dict.fromkeys(found))

    words = {qid: bm25(keyword_match(keyword_terms(text))) for qid, text in zip(replay.ids, replay.texts)}
    for near in (0, 3, 8):
        found = {qid: bm25(pairs(text, near)) for qid, text in zip(replay.ids, replay.texts)}
        for share in (0.25, 0.5, 1.0):
            side = {qid: {doc: words[qid].get(doc, 0.0) + share * found[qid].get(doc, 0.0)
                          for doc in set(words[qid]) | set(found[qid])} for qid in replay.ids}
            kind = f"NEAR {near}" if near else "phrases"
            print(f"{kind}, weight {share}: keyword {replay.alone(side)}, "
                  f"fused {replay.fused([(0.5, replay.semantic), (0.5, side)])}")


def gap_weight(args: argparse.Namespace) -> None:
    replay = Replay(load_dataset(BEIR / args.dataset), args.index)
    replay.baseline()
    for steep in (0.5, 1.0, 2.0):
        def weight(qid: str, steep: float = steep) -> float:
            semantic_gap = z_scores(top(replay.semantic[qid]))[2]
            keyword_gap = z_scores(top(replay.keyword[qid]))[2]
            return float(1 / (1 + np.exp(-steep * (semantic_gap - keyword_gap))))

        print(f"semantic weight from the top gaps, g = {steep}: "
              f"{replay.fused([(0.5, replay.semantic), (0.5, replay.keyword)], weight)}")


def batch_size(args: argparse.Namespace) -> None:
    from semsearch.embedder import DEFAULT_MODEL
    from semsearch.model_cache import query_model_dir
    from semsearch.onnx_embedder import OnnxEmbedder

    directory = query_model_dir(DEFAULT_MODEL)
    if not OnnxEmbedder.available(directory, args.precision):
        sys.exit(f"no {args.precision} export in {directory}: index anything at that precision first")
    with open(BEIR / "scifact" / "corpus.jsonl", encoding="utf-8") as corpus:
        docs = [json.loads(line) for _, line in zip(range(400), corpus)]
    texts = [f"{doc['title']}\n{doc['text']}" for doc in docs]
    times: dict[int, list[float]] = {1: [], 4: [], 16: []}
    for _ in range(args.rounds):
        for size in times:
            embedder = OnnxEmbedder(directory, precision=args.precision, batch_size=size, workers=2)
            embedder.embed(texts[:8])  # warm-up
            started = time.perf_counter()
            embedder.embed(texts)
            times[size].append(time.perf_counter() - started)
    for size, taken in times.items():
        print(f"{args.precision}, {size} text(s) a call: {statistics.median(taken):.2f} s "
              f"(median of {len(taken)}: {', '.join(f'{t:.2f}' for t in taken)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("mixed")
    command.add_argument("index_a", type=Path)
    command.add_argument("index_b", type=Path)
    command.add_argument("dataset")
    command.set_defaults(run=mixed)
    for name, run in (("title", title), ("document-bm25", document_bm25), ("phrases", phrases),
                      ("gap-weight", gap_weight)):
        command = commands.add_parser(name)
        command.add_argument("index", type=Path)
        command.add_argument("dataset")
        command.set_defaults(run=run)
    command = commands.add_parser("batch-size")
    command.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    command.add_argument("--rounds", type=int, default=2)
    command.set_defaults(run=batch_size)
    args = parser.parse_args()
    try:
        args.run(args)
    except (SemsearchError, OSError) as error:  # a missing index or dataset: one line, not a traceback
        sys.exit(f"replays.py: {error}")


if __name__ == "__main__":
    main()
