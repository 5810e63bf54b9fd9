"""``semsearch eval``: score retrieval on a BEIR-layout dataset (see :mod:`semsearch.evaluation`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from semsearch.cli_base import Settings, index_option, pass_settings, reports_errors
from semsearch.errors import DatasetError
from semsearch.types import MODES

_METRICS = (("ndcg@10", "nDCG@10"), ("recall@100", "Recall@100"), ("mrr@10", "MRR@10"), ("map", "MAP"))


def _explicit_group_index() -> str | None:
    """The group's ``--index`` only if typed on the command line: an ``$SEMSEARCH_INDEX`` meant
    for everyday searching must never receive a benchmark corpus."""
    from click.core import ParameterSource

    parent = click.get_current_context().parent
    if parent is None or parent.get_parameter_source("index_dir") != ParameterSource.COMMANDLINE:
        return None
    return parent.params.get("index_dir")


@click.command("eval")
@click.argument("dataset_dir", type=click.Path(file_okay=False, path_type=str))
@click.option(
    "--questions",
    "questions_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=str),
    help="Score a folder of documents instead: DATASET_DIR is the folder, FILE holds questions "
    "about it with the files that answer them (JSON Lines; see docs/quality.md).",
)
@index_option(
    help="Index folder for this dataset. Default: a per-dataset folder in the user cache "
    "(~/.cache/semsearch/eval/NAME-HASH on Linux); $SEMSEARCH_INDEX is ignored here."
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice([*MODES, "all"]),
    help="Mode to score (repeatable); default: all three.",
)
@click.option("--precision", type=click.Choice(["int8", "fp32"]),
              help="Vectors of a new index: fp32 (the model's own; the default) or int8 (faster on a CPU, slightly less accurate).")
@click.option("--rerank", is_flag=True, help="Rerank with a cross-encoder (needs --rerank-model).")
@click.option("--rerank-model", metavar="PATH", help="A local cross-encoder model folder.")
@click.option("--json", "as_json", is_flag=True, help="Print overall and per-query metrics as JSON.")
@pass_settings
@reports_errors
def eval_command(
    settings: Settings,
    dataset_dir: str,
    questions_file: str | None,
    index_dir: str | None,
    modes: tuple[str, ...],
    precision: str | None,
    rerank: bool,
    rerank_model: str | None,
    as_json: bool,
) -> None:
    """Score search quality on a BEIR-layout dataset: nDCG@10, Recall@100, MRR@10 and MAP.

    DATASET_DIR holds corpus.jsonl, queries.jsonl and qrels/test.tsv. The corpus is indexed
    under its ids (into a per-dataset folder in the user cache unless --index is given; a later
    run reuses it and embeds nothing), then every judged query is run. Documents longer than one
    chunk score by their best chunk (max-pooling).

    With --questions, DATASET_DIR is a folder of documents, indexed as `semsearch index` would
    (cached the same way), and each question scores by the rank of its first answer file among
    the top 10 documents: MRR@10, hit@1, hit@5 and hit@10.

    \b
      semsearch eval ../shared/data/beir/scifact
      semsearch eval ../shared/data/beir/adi --mode hybrid --json
      semsearch eval ../shared/data/folders/rust-book --questions benchmarks/questions/rust-book.jsonl
    """
    import semsearch
    from semsearch.embedder import load_reranker
    from semsearch.evaluation import (
        POOLING_NOTE,
        default_index_dir,
        evaluate,
        indexable_count,
        load_dataset,
    )

    chosen = MODES if not modes or "all" in modes else tuple(dict.fromkeys(modes))
    if questions_file is not None:
        if rerank or rerank_model:
            raise click.UsageError("--rerank applies to BEIR datasets, not to --questions")
        _eval_folder(dataset_dir, questions_file, index_dir, chosen, precision, as_json)
        return
    reranker = load_reranker(rerank_model) if (rerank or rerank_model) else None
    try:
        dataset = load_dataset(dataset_dir)
    except DatasetError:
        folder = Path(dataset_dir).expanduser()
        if folder.is_dir() and not (folder / "corpus.jsonl").exists():
            raise DatasetError(
                f"{folder} holds no corpus.jsonl, so it is not a BEIR dataset; to score a folder of "
                "documents, give --questions FILE"
            ) from None
        raise
    location = index_dir or _explicit_group_index() or default_index_dir(dataset.path)

    indexed = _indexing_report(as_json, "documents")

    with semsearch.open(location, precision=precision) as engine:
        if not as_json and engine.status().documents < indexable_count(dataset):
            click.echo(f"Indexing {dataset.name} into {engine.directory} (first run only)...", err=True)
        evaluation = evaluate(dataset, modes=chosen, engine=engine, on_indexed=indexed, reranker=reranker)
    if as_json:
        click.echo(json.dumps(evaluation.to_dict(), indent=2))
        return
    click.echo(f"Dataset: {evaluation.dataset} ({evaluation.documents} documents, "
               f"{evaluation.queries} judged queries)")
    click.echo(f"Index:   {evaluation.index}")
    click.echo(f"Ranking: {POOLING_NOTE}; top 100 per query.")
    click.echo()
    header = f"{'mode':<16}" + "".join(f"{label:>12}" for _, label in _METRICS) + f"{'queries/s':>12}"
    click.echo(header)
    for result in evaluation.results:
        values = result.overall.to_dict()
        name = result.mode + ("+rerank" if evaluation.reranked else "")
        click.echo(
            f"{name:<16}" + "".join(f"{values[key]:>12.4f}" for key, _ in _METRICS)
            + f"{result.queries_per_second:>12.1f}"
        )


_FOLDER_METRICS = (("mrr@10", "MRR@10"), ("hit@1", "hit@1"), ("hit@5", "hit@5"), ("hit@10", "hit@10"))


def _eval_folder(
    folder: str, questions_file: str, index_dir: str | None, modes: tuple, precision: str | None, as_json: bool
) -> None:
    """``eval FOLDER --questions FILE``: index the folder if needed, then score the questions."""
    import semsearch
    from semsearch.folder_evaluation import NOTE, default_folder_index_dir, evaluate_folder, load_questions

    questions = load_questions(questions_file, folder)
    location = index_dir or _explicit_group_index() or default_folder_index_dir(questions.folder)

    indexed = _indexing_report(as_json, "files")

    with semsearch.open(location, precision=precision) as engine:
        if not as_json:
            click.echo(f"Bringing the index at {engine.directory} up to date with {questions.folder}...", err=True)
        evaluation = evaluate_folder(questions, modes=modes, engine=engine, on_indexed=indexed)
    if as_json:
        click.echo(json.dumps(evaluation.to_dict(), indent=2))
        return
    click.echo(f"Folder:    {evaluation.folder} ({evaluation.documents} documents indexed)")
    click.echo(f"Questions: {evaluation.questions_path} ({evaluation.questions} questions)")
    click.echo(f"Index:     {evaluation.index}")
    click.echo(f"Ranking:   {NOTE}.")
    click.echo()
    click.echo(f"{'mode':<16}" + "".join(f"{label:>10}" for _, label in _FOLDER_METRICS) + f"{'queries/s':>12}")
    for result in evaluation.results:
        values = result.overall.to_dict()
        click.echo(
            f"{result.mode:<16}" + "".join(f"{values[key]:>10.4f}" for key, _ in _FOLDER_METRICS)
            + f"{result.queries_per_second:>12.1f}"
        )
    for result in evaluation.results:
        missed = result.missed()
        if missed:
            click.echo(f"\n{result.mode}: {len(missed)} not answered in the top 10: "
                       + ", ".join(answer.question.id for answer in missed))


def _indexing_report(as_json: bool, noun: str):
    """What eval says after bringing its index up to date (nothing with --json or if nothing changed)."""
    def indexed(summary) -> None:
        if not as_json and summary.new + summary.changed:
            click.echo(
                f"Indexed {summary.new + summary.changed} {noun} "
                f"({summary.chunks_embedded} chunks embedded, {summary.elapsed_seconds:.0f} s).",
                err=True,
            )

    return indexed
