"""Measure retrieval on a folder of documents against written questions: MRR@10, hit@1 and hit@5.

BEIR collections (:mod:`semsearch.evaluation`) are corpora of short abstracts with no structure.
Documentation folders are what people index: Markdown chapters and reST specifications, one topic
cut into sections. A *questions file* holds questions about such a folder, each with the files
that answer it, one JSON object a line::

    {"id": "rust-01", "question": "how do I install Rust on Linux", "answers": ["src/ch01-01-installation.md"]}

``answers`` are paths relative to the folder; any of them counts as the answer (a question may
be answered in several places). The folder is indexed as ``semsearch index`` indexes it, into a
per-folder index in the user cache unless told otherwise (a rerun costs a ``stat`` per file and
embeds nothing). Every question is then searched by document (``group_by_document``: a document
scores by its best chunk), and scores by the rank of the first answer file among the top 10
documents: reciprocal rank (MRR@10), and whether it is first (hit@1), in the top 5 or top 10.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from semsearch.errors import DatasetError
from semsearch.types import MODES, IndexSummary, Mode
from semsearch.walker import path_text

if TYPE_CHECKING:
    from semsearch.engine import Engine

DEPTH = 10  # documents looked at per question: what MRR@10 and hit@10 are computed over


@dataclass(frozen=True)
class Question:
    """A question about a folder, and the files (relative to it) that answer it."""

    id: str
    text: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class QuestionSet:
    """The questions of one questions file, about one folder."""

    name: str  # the questions file's name without .jsonl
    path: Path  # the questions file
    folder: Path  # the folder its answers are relative to, resolved
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Answer:
    """How one question did: the rank of its first answer file (``None`` if not in the top 10),
    and the documents that came first, relative to the folder, best first."""

    question: Question
    rank: int | None
    found: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"question": self.question.text, "answers": list(self.question.answers), "rank": self.rank,
                "found": list(self.found)}


@dataclass(frozen=True)
class Scores:
    """Mean reciprocal rank of the first answer within the top 10, and the share of questions
    answered first, in the top 5 and in the top 10."""

    mrr_at_10: float
    hit_at_1: float
    hit_at_5: float
    hit_at_10: float

    @classmethod
    def of(cls, ranks: Sequence[int | None]) -> Scores:
        """The scores of questions whose first answers came at these ranks (``None``: not found)."""
        count = len(ranks) or 1
        found = [rank for rank in ranks if rank is not None and rank <= DEPTH]
        return cls(
            mrr_at_10=sum(1.0 / rank for rank in found) / count,
            hit_at_1=sum(rank <= 1 for rank in found) / count,
            hit_at_5=sum(rank <= 5 for rank in found) / count,
            hit_at_10=len(found) / count,
        )

    def to_dict(self) -> dict[str, float]:
        return {
            "mrr@10": round(self.mrr_at_10, 5),
            "hit@1": round(self.hit_at_1, 5),
            "hit@5": round(self.hit_at_5, 5),
            "hit@10": round(self.hit_at_10, 5),
        }


@dataclass(frozen=True)
class FolderModeResult:
    """One mode on one question set: the scores, each question's outcome, and speed."""

    mode: Mode
    overall: Scores
    answers: tuple[Answer, ...]
    queries_per_second: float

    def missed(self, within: int = DEPTH) -> list[Answer]:
        """The questions whose first answer is not in the top ``within`` documents."""
        return [answer for answer in self.answers if answer.rank is None or answer.rank > within]


@dataclass(frozen=True)
class FolderEvaluation:
    """The outcome of :func:`evaluate_folder`: one :class:`FolderModeResult` per mode asked for."""

    name: str
    folder: str
    questions_path: str
    index: str
    documents: int
    questions: int
    results: tuple[FolderModeResult, ...]
    indexing: IndexSummary = field(default_factory=IndexSummary)

    def result(self, mode: Mode) -> FolderModeResult:
        """The result for ``mode`` (raises ``KeyError`` if it was not evaluated)."""
        for result in self.results:
            if result.mode == mode:
                return result
        raise KeyError(mode)

    def to_dict(self, *, per_question: bool = True) -> dict:
        """Plain JSON-ready values (the shape of ``semsearch eval FOLDER --questions FILE --json``)."""
        return {
            "questions_file": self.questions_path,
            "name": self.name,
            "folder": self.folder,
            "index": self.index,
            "documents": self.documents,
            "questions": self.questions,
            "depth": DEPTH,
            "note": NOTE,
            "modes": {
                result.mode: {
                    "overall": result.overall.to_dict(),
                    "queries_per_second": round(result.queries_per_second, 2),
                    **(
                        {"per_question": {a.question.id: a.to_dict() for a in result.answers}}
                        if per_question
                        else {}
                    ),
                }
                for result in self.results
            },
        }


NOTE = (
    "documents ranked by their best chunk; a question scores by the rank of the first of its "
    "answer files in the top 10"
)


# -- reading a questions file -------------------------------------------------------------------


def load_questions(path: str | Path, folder: str | Path) -> QuestionSet:
    """Read a questions file about ``folder``; raises :class:`DatasetError` naming the line at fault.

    Every answer must be a file inside the folder, so a typo is caught before anything is indexed.
    """
    path = Path(path).expanduser()
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"no folder at {root}; give the folder of documents the questions are about")
    root = root.resolve()
    if not path.is_file():
        raise DatasetError(f"no questions file at {path}; give a JSON Lines file of questions and answer files")
    questions: list[Question] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{where} is not JSON ({error.msg})") from None
            question = _question(record, where, root)
            if question.id in seen:
                raise DatasetError(f"{where} repeats the id {question.id!r}")
            seen.add(question.id)
            questions.append(question)
    if not questions:
        raise DatasetError(f"{path} holds no questions")
    return QuestionSet(name=path.stem, path=path.resolve(), folder=root, questions=tuple(questions))


def _question(record: object, where: str, root: Path) -> Question:
    if not isinstance(record, dict) or not {"id", "question", "answers"} <= record.keys():
        raise DatasetError(f"{where} needs \"id\", \"question\" and \"answers\"")
    text = str(record["question"] or "").strip()
    if not text:
        raise DatasetError(f"{where} has an empty question")
    answers = record["answers"]
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise DatasetError(f"{where}: \"answers\" must be a list of file paths relative to {root}")
    normalised = tuple(dict.fromkeys(os.path.normpath(answer.strip()) for answer in answers))
    for answer in normalised:
        target = root / answer
        if answer.startswith("..") or os.path.isabs(answer) or not target.is_file():
            raise DatasetError(f"{where}: the answer {answer!r} is not a file in {root}")
    return Question(id=str(record["id"]), text=text, answers=normalised)


# -- indexing -----------------------------------------------------------------------------------


def default_folder_index_dir(folder: str | Path) -> Path:
    """Where a folder is indexed for evaluation unless told otherwise: the user cache (never the
    folder itself, which may be read-only), one index per folder location."""
    from platformdirs import user_cache_dir

    resolved = Path(folder).expanduser().resolve()
    digest = hashlib.sha256(f"folder:{resolved}".encode()).hexdigest()[:10]
    return Path(user_cache_dir("semsearch", appauthor=False)) / "eval" / f"{resolved.name}-{digest}"


def index_folder(engine: Engine, folder: Path) -> IndexSummary:
    """Bring ``engine`` up to date with ``folder`` (files already indexed and unchanged cost a stat).

    Raises :class:`DatasetError` if the index holds files from elsewhere too: they would be
    ranked alongside the folder's and skew every figure. Ctrl-C keeps what was indexed and
    re-raises ``KeyboardInterrupt``.
    """
    root = path_text(folder)
    elsewhere = [held for held in engine.folders() if not _inside(held, root)]
    if elsewhere:
        raise DatasetError(
            f"the index at {engine.directory} holds files from {elsewhere[0]}, outside {root}; "
            "evaluate in an index of this folder alone (or leave --index out)"
        )
    summary = engine.index(folder)
    if summary.interrupted:
        raise KeyboardInterrupt
    return summary


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# -- running and scoring ------------------------------------------------------------------------


def first_answer_rank(found: Sequence[str], answers: Sequence[str]) -> int | None:
    """The 1-based rank of the first of ``answers`` in ``found``, or ``None``."""
    wanted = set(answers)
    for rank, document in enumerate(found, start=1):
        if document in wanted:
            return rank
    return None


def run_questions(engine: Engine, questions: QuestionSet, mode: Mode) -> tuple[tuple[Answer, ...], float]:
    """Search every question by document; returns each one's outcome and questions per second.

    Question vectors are embedded in one batch first; the time covers embedding and searching.
    """
    texts = [question.text for question in questions.questions]
    embedder = engine.embedder if mode != "keyword" else None  # loaded before the clock starts
    root = path_text(questions.folder)
    started = time.perf_counter()
    vectors = embedder.embed(texts) if embedder is not None else None
    answers = []
    for position, question in enumerate(questions.questions):
        hits = engine.search(
            question.text,
            limit=DEPTH,
            mode=mode,
            group_by_document=True,
            vector=None if vectors is None else vectors[position : position + 1],
        )
        found = tuple(os.path.relpath(hit.path, root) if _inside(hit.path, root) else hit.path for hit in hits)
        answers.append(Answer(question, first_answer_rank(found, question.answers), found))
    elapsed = time.perf_counter() - started
    return tuple(answers), len(texts) / elapsed if elapsed > 0 else float("inf")


def evaluate_folder(
    questions: QuestionSet | str | Path,
    folder: str | Path | None = None,
    *,
    index: str | Path | None = None,
    modes: Sequence[Mode] = MODES,
    engine: Engine | None = None,
    on_indexed: Callable[[IndexSummary], None] | None = None,
    precision: str | None = None,
) -> FolderEvaluation:
    """Index the folder (if needed) and score every mode on the questions about it.

    ``questions`` is a :class:`QuestionSet` or the path of a questions file about ``folder``.
    ``index`` is the index folder (default: :func:`default_folder_index_dir`); ``engine`` uses
    an already open engine instead (tests pass one with a fake model). ``on_indexed`` is told
    what indexing did before the questions run. ``precision`` is that of a new index's vectors.
    """
    if not isinstance(questions, QuestionSet):
        if folder is None:
            raise ValueError("give the folder the questions are about")
        questions = load_questions(questions, folder)
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
    if engine is None:
        import semsearch

        location = index if index is not None else default_folder_index_dir(questions.folder)
        with semsearch.open(location, precision=precision) as opened:
            return evaluate_folder(questions, modes=modes, engine=opened, on_indexed=on_indexed)
    summary = index_folder(engine, questions.folder)
    if on_indexed is not None:
        on_indexed(summary)
    results = []
    for mode in dict.fromkeys(modes):
        answers, speed = run_questions(engine, questions, mode)
        overall = Scores.of([answer.rank for answer in answers])
        results.append(FolderModeResult(mode=mode, overall=overall, answers=answers, queries_per_second=speed))
    return FolderEvaluation(
        name=questions.name,
        folder=str(questions.folder),
        questions_path=str(questions.path),
        index=str(engine.directory),
        documents=engine.status().documents,
        questions=len(questions.questions),
        results=tuple(results),
        indexing=summary,
    )
