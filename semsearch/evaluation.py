"""Measure retrieval quality on a BEIR-layout dataset: nDCG@10, Recall@100, MRR@10 and MAP.

A dataset folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/<split>.tsv`` (query id, document id, graded relevance, with a
header line). The corpus is indexed with :meth:`Engine.add_texts` under its ``_id``s, so a hit's
``path`` is the document id the judgments use; an index that already holds the corpus is reused
and nothing is embedded again.

Results are ranked by document: a document longer than one chunk scores by its best chunk
(max-pooling), exactly as ``search --group-by-document`` shows it. The metrics are computed by
``pytrec_eval`` (the trec_eval code behind published BEIR figures), never by hand here.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from semsearch.errors import DatasetError
from semsearch.types import MODES, IndexSummary, Mode

if TYPE_CHECKING:
    from semsearch.engine import Engine
    from semsearch.retrieval import Reranker

DEPTH = 100  # documents retrieved per query: what Recall@100 and MAP are computed over
RERANK_DEPTH = 50  # documents a reranker reorders per query
POOLING = "max"  # a document scores by its best chunk
POOLING_NOTE = "documents longer than one chunk score by their best chunk (max-pooling)"
_MEASURES = ("ndcg_cut_10", "recall_100", "map")


@dataclass(frozen=True)
class CorpusDocument:
    """One document of a dataset's corpus."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Dataset:
    """A BEIR-layout dataset: its corpus, the judged queries of one split, and their judgments.

    ``queries`` holds only queries with at least one judgment in ``qrels``; ``qrels`` maps
    query id -> document id -> graded relevance (0 means judged not relevant).
    """

    name: str
    path: Path
    corpus: tuple[CorpusDocument, ...]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Metrics:
    """The four measures for one query, or their mean over all queries."""

    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    map: float

    def to_dict(self) -> dict[str, float]:
        return {
            "ndcg@10": round(self.ndcg_at_10, 5),
            "recall@100": round(self.recall_at_100, 5),
            "mrr@10": round(self.mrr_at_10, 5),
            "map": round(self.map, 5),
        }


@dataclass(frozen=True)
class ModeResult:
    """How one retrieval mode did: the mean over queries, each query's own figures, and speed."""

    mode: Mode
    overall: Metrics
    per_query: dict[str, Metrics]
    queries_per_second: float


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`evaluate`: one :class:`ModeResult` per mode asked for."""

    dataset: str
    dataset_path: str
    index: str
    documents: int
    queries: int
    results: tuple[ModeResult, ...]
    indexing: IndexSummary = field(default_factory=IndexSummary)
    pooling: str = POOLING
    reranked: bool = False  # whether a reranker reordered each mode's top RERANK_DEPTH

    def result(self, mode: Mode) -> ModeResult:
        """The result for ``mode`` (raises ``KeyError`` if it was not evaluated)."""
        for result in self.results:
            if result.mode == mode:
                return result
        raise KeyError(mode)

    def to_dict(self, *, per_query: bool = True) -> dict:
        """Plain JSON-ready values (the shape of ``semsearch eval --json``)."""
        return {
            "dataset": self.dataset,
            "dataset_path": self.dataset_path,
            "index": self.index,
            "documents": self.documents,
            "queries": self.queries,
            "pooling": self.pooling,
            "note": POOLING_NOTE,
            "depth": DEPTH,
            "reranked": self.reranked,
            "modes": {
                result.mode: {
                    "overall": result.overall.to_dict(),
                    "queries_per_second": round(result.queries_per_second, 2),
                    **(
                        {"per_query": {qid: m.to_dict() for qid, m in result.per_query.items()}}
                        if per_query
                        else {}
                    ),
                }
                for result in self.results
            },
        }


# -- reading a dataset --------------------------------------------------------------------------


def load_dataset(path: str | Path, *, split: str = "test") -> Dataset:
    """Read a BEIR-layout folder; raises :class:`DatasetError` naming the file that is wrong."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"no dataset folder at {folder}; give a folder holding corpus.jsonl, "
                           f"queries.jsonl and qrels/{split}.tsv")
    qrels = _read_qrels(folder / "qrels" / f"{split}.tsv")
    all_queries = {
        record["_id"]: str(record.get("text") or "")
        for record in _read_jsonl(folder / "queries.jsonl", required=("_id", "text"))
    }
    unknown = sorted(set(qrels) - set(all_queries))
    if unknown:
        raise DatasetError(
            f"{folder / 'qrels' / f'{split}.tsv'} judges {len(unknown)} queries that are not in "
            f"queries.jsonl (e.g. {unknown[0]!r})"
        )
    corpus = tuple(
        CorpusDocument(id=record["_id"], title=str(record.get("title") or ""), text=str(record.get("text") or ""))
        for record in _read_jsonl(folder / "corpus.jsonl", required=("_id",))
    )
    if not corpus:
        raise DatasetError(f"{folder / 'corpus.jsonl'} holds no documents")
    queries = {qid: all_queries[qid] for qid in qrels if all_queries[qid].strip()}
    if not queries:
        raise DatasetError(f"no judged query in {folder} has any text")
    return Dataset(
        name=folder.resolve().name,
        path=folder.resolve(),
        corpus=corpus,
        queries=queries,
        qrels={qid: judged for qid, judged in qrels.items() if qid in queries},
    )


def _read_jsonl(path: Path, *, required: Sequence[str]) -> Iterable[dict]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing; a BEIR dataset needs corpus.jsonl, queries.jsonl and qrels/")
    seen: set[str] = set()
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path} line {number} is not JSON ({error.msg})") from None
            if not isinstance(record, dict) or any(key not in record for key in required):
                raise DatasetError(f"{path} line {number} lacks {' or '.join(required)}")
            record["_id"] = str(record["_id"])
            if record["_id"] in seen:
                raise DatasetError(f"{path} line {number} repeats the id {record['_id']!r}")
            seen.add(record["_id"])
            records.append(record)
    return records


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing; judgments go in qrels/<split>.tsv")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if number == 1 and row[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
            if len(row) < 3:
                raise DatasetError(f"{path} line {number}: expected query-id, corpus-id and score")
            try:
                score = int(float(row[2]))
            except ValueError:
                raise DatasetError(f"{path} line {number}: the score {row[2]!r} is not a number") from None
            qrels.setdefault(row[0].strip(), {})[row[1].strip()] = score
    if not qrels:
        raise DatasetError(f"{path} holds no judgments")
    return qrels


# -- indexing -----------------------------------------------------------------------------------


def default_index_dir(dataset_path: str | Path) -> Path:
    """Where a dataset is indexed unless told otherwise: the user cache, never the dataset folder
    (shared data may be read-only), one folder per dataset location."""
    from platformdirs import user_cache_dir

    resolved = Path(dataset_path).expanduser().resolve()
    digest = hashlib.sha256(str(resolved / "corpus.jsonl").encode()).hexdigest()[:10]
    return Path(user_cache_dir("semsearch", appauthor=False)) / "eval" / f"{resolved.name}-{digest}"


def indexable(document: CorpusDocument) -> tuple[str, str] | None:
    """(title, text) as indexed, or ``None`` for a document with no words at all.

    A document with a title and no text is indexed as its title, so it can still be found.
    """
    title, text = " ".join(document.title.split()), document.text.strip()
    if not text:
        text, title = title, ""
    return (title, text) if text else None


def index_dataset(engine: Engine, dataset: Dataset) -> IndexSummary:
    """Add the corpus to ``engine`` under its ids; documents already there unchanged cost nothing.

    Raises :class:`DatasetError` if the index holds other documents too, since they would be
    ranked alongside the corpus and skew every figure (checked before writing when the count
    alone shows it). Ctrl-C keeps what was indexed and re-raises ``KeyboardInterrupt``.
    """
    ids, titles, texts = [], [], []
    for document in dataset.corpus:
        fields = indexable(document)
        if fields is None:
            continue
        ids.append(document.id)
        titles.append(fields[0])
        texts.append(fields[1])

    def refuse(held: int) -> DatasetError:
        return DatasetError(
            f"the index at {engine.directory} holds {held} documents, but {dataset.name} has "
            f"{len(ids)}; evaluate in an empty index folder (or leave --index out)"
        )

    if engine.status().documents > len(ids):
        raise refuse(engine.status().documents)
    summary = engine.add_texts(texts, ids=ids, titles=titles)
    if summary.interrupted:
        raise KeyboardInterrupt
    held = engine.status().documents
    if held != len(ids):
        raise refuse(held)
    return summary


def indexable_count(dataset: Dataset) -> int:
    """How many of the corpus's documents get indexed (those with any words)."""
    return sum(1 for document in dataset.corpus if indexable(document) is not None)


# -- running and scoring ------------------------------------------------------------------------

Run = dict[str, list[str]]  # query id -> document ids, best first


def run_queries(
    engine: Engine, dataset: Dataset, mode: Mode, *, depth: int = DEPTH, reranker: Reranker | None = None
) -> tuple[Run, float]:
    """Rank the corpus for every judged query; returns the run and queries per second.

    Query vectors are embedded in one batch first; the time reported covers embedding,
    searching and reranking (the first :data:`RERANK_DEPTH` documents, by their best chunk).
    """
    from semsearch.retrieval import rerank

    ids = list(dataset.queries)
    texts = [dataset.queries[qid].strip() for qid in ids]
    # Load the model before the clock starts: its start-up is not query time.
    embedder = engine.embedder if mode != "keyword" else None
    started = time.perf_counter()
    vectors = embedder.embed(texts) if embedder is not None else None
    run: Run = {}
    for position, (qid, text) in enumerate(zip(ids, texts)):
        hits = engine.search(
            text,
            limit=depth,
            mode=mode,
            group_by_document=True,
            vector=None if vectors is None else vectors[position : position + 1],
        )
        if reranker is not None:
            ranked = rerank(
                reranker,
                text,
                [(position, hit.score) for position, hit in enumerate(hits)],
                {position: f"{hit.title}\n{hit.text}" for position, hit in enumerate(hits)},
                depth=RERANK_DEPTH,
            )
            hits = [hits[position] for position, _ in ranked]
        run[qid] = [hit.path for hit in hits]
    elapsed = time.perf_counter() - started
    return run, len(ids) / elapsed if elapsed > 0 else float("inf")


def score_run(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Sequence[str]]) -> tuple[Metrics, dict[str, Metrics]]:
    """nDCG@10, Recall@100, MRR@10 and MAP of ``run`` against ``qrels``, with ``pytrec_eval``.

    trec_eval re-sorts each query's documents by score (ties broken by document id), so the run
    is given strictly decreasing scores that keep our order. Its ``recip_rank`` is not cut off,
    so MRR@10 is ``recip_rank`` over the run truncated to ten. A judged query missing from the
    run counts as zero for every measure (trec_eval's ``-c``), as published figures do.
    """
    try:
        import pytrec_eval
    except ImportError:
        raise DatasetError(
            "pytrec_eval is not installed; run: pip install pytrec-eval-terrier"
        ) from None

    judged = {qid: {doc: int(score) for doc, score in docs.items()} for qid, docs in qrels.items()}

    def scored(limit: int | None) -> dict[str, dict[str, float]]:
        table: dict[str, dict[str, float]] = {}
        for qid in judged:
            docs = list(dict.fromkeys(run.get(qid, ())))[:limit]
            table[qid] = {doc: float(len(docs) - rank) for rank, doc in enumerate(docs)}
        return table

    full = pytrec_eval.RelevanceEvaluator(judged, set(_MEASURES)).evaluate(scored(None))
    top = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(scored(10))
    per_query = {
        qid: Metrics(
            ndcg_at_10=full.get(qid, {}).get("ndcg_cut_10", 0.0),
            recall_at_100=full.get(qid, {}).get("recall_100", 0.0),
            mrr_at_10=top.get(qid, {}).get("recip_rank", 0.0),
            map=full.get(qid, {}).get("map", 0.0),
        )
        for qid in judged
    }
    count = len(per_query) or 1
    overall = Metrics(
        ndcg_at_10=sum(m.ndcg_at_10 for m in per_query.values()) / count,
        recall_at_100=sum(m.recall_at_100 for m in per_query.values()) / count,
        mrr_at_10=sum(m.mrr_at_10 for m in per_query.values()) / count,
        map=sum(m.map for m in per_query.values()) / count,
    )
    return overall, per_query


def evaluate(
    dataset: Dataset | str | Path,
    *,
    index: str | Path | None = None,
    modes: Sequence[Mode] = MODES,
    engine: Engine | None = None,
    on_indexed: Callable[[IndexSummary], None] | None = None,
    reranker: Reranker | None = None,
) -> Evaluation:
    """Index ``dataset`` (if needed) and score every mode on its judged queries.

    ``index`` is the index folder (default: :func:`default_index_dir`); ``engine`` uses an
    already open engine instead (tests pass one with a fake model). ``on_indexed`` is told what
    indexing did before the queries run. ``reranker`` reorders each mode's top documents.
    """
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if engine is None:
        import semsearch

        with semsearch.open(index if index is not None else default_index_dir(dataset.path)) as opened:
            return evaluate(dataset, modes=modes, engine=opened, on_indexed=on_indexed, reranker=reranker)
    summary = index_dataset(engine, dataset)
    if on_indexed is not None:
        on_indexed(summary)
    results = []
    for mode in dict.fromkeys(modes):
        run, speed = run_queries(engine, dataset, mode, reranker=reranker)
        overall, per_query = score_run(dataset.qrels, run)
        results.append(ModeResult(mode=mode, overall=overall, per_query=per_query, queries_per_second=speed))
    return Evaluation(
        dataset=dataset.name,
        dataset_path=str(dataset.path),
        index=str(engine.directory),
        documents=engine.status().documents,
        queries=len(dataset.queries),
        results=tuple(results),
        indexing=summary,
        reranked=reranker is not None,
    )
