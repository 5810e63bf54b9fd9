"""``semsearch eval``: score retrieval on a BEIR-layout dataset (see :mod:`semsearch.evaluation`)."""

from __future__ import annotations

import json

import click

from semsearch.cli_base import Settings, index_option, pass_settings, reports_errors
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

    \b
      semsearch eval ../shared/data/beir/scifact
      semsearch eval ../shared/data/beir/adi --mode hybrid --json
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
    reranker = load_reranker(rerank_model) if (rerank or rerank_model) else None
    dataset = load_dataset(dataset_dir)
    location = index_dir or _explicit_group_index() or default_index_dir(dataset.path)

    def indexed(summary) -> None:
        if not as_json and summary.new + summary.changed:
            click.echo(
                f"Indexed {summary.new + summary.changed} documents "
                f"({summary.chunks_embedded} chunks embedded, {summary.elapsed_seconds:.0f} s).",
                err=True,
            )

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
