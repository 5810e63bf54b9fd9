"""The ``semsearch`` command line. The only module that prints or reads flags; it calls the library.

Library errors become one ``Error:`` line and exit status 1; Ctrl-C exits with 130. Heavy
imports (the model) happen only inside the commands that embed, so ``--help``, ``--version`` and
``status`` answer at once.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from semsearch import __version__, stopping
from semsearch.cli_base import Settings, index_option, pass_settings, reports_errors
from semsearch.cli_eval import eval_command
from semsearch.location import ENV_VAR
from semsearch.reader import DEFAULT_MEMORY_MB as DEFAULT_READ_MEMORY_MB
from semsearch.reader import DEFAULT_SECONDS as DEFAULT_READ_SECONDS
from semsearch.reader import ReadLimits
from semsearch.types import MODES, Hit


def _open(settings: Settings, index_dir: str | None, *, create: bool, model: str | None = None, **options):
    import semsearch

    try:
        return semsearch.open(index_dir or settings.index, model=model, create=create, **options)
    except OSError as error:  # the folder itself: under a file, in a read-only place
        raise click.ClickException(
            f"cannot create the index folder {error.filename} ({error.strerror or error}); "
            "choose another with --index"
        ) from None


class _Commands(click.Group):
    """semsearch's command group. Every command handles its own Ctrl-C (:func:`reports_errors`),
    but one can land outside them: while click reads the arguments, or in the search command's
    first lines, which start the query model (a race the tests once lost). click alone turns that
    into "Aborted!" and exit status 1; here it ends as every other Ctrl-C does, with 130."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort as abort:
            if isinstance(abort.__cause__, KeyboardInterrupt):
                _interrupted()
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        # Without standalone mode, click returns an explicit exit's code, or what the command
        # returned: None for every command here, which is success.
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="semsearch")
@index_option(envvar=ENV_VAR)
@click.pass_context
def cli(context: click.Context, index_dir: str | None) -> None:
    """Local semantic search: index a folder of documents, then ask it questions.

    \b
      semsearch index ~/notes          # index (or update) a folder
      semsearch search "how do I …"    # ask it a question
      semsearch status                 # what is in the index
    """
    context.obj = Settings(index_dir)


@cli.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@index_option
@click.option("--model", help="Sentence-transformers model name or local path (new index only). "
              "Default: the bundled all-MiniLM-L6-v2.")
@click.option("--include", multiple=True, metavar="GLOB", help="Only index files matching GLOB (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching GLOB (repeatable).")
@click.option("--prune/--no-prune", default=True, show_default=True,
              help="Remove indexed files that are gone from the given folders.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("-v", "--verbose", is_flag=True, help="List every skipped file with its reason.")
@click.option("--max-read-seconds", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_READ_SECONDS,
              show_default=True, metavar="SECONDS", help="Skip a file that takes longer than this to read.")
@click.option("--max-read-memory", type=click.IntRange(min=100), default=DEFAULT_READ_MEMORY_MB,
              show_default=True, metavar="MB", help="Skip a file that needs more memory than this to read.")
@click.option("--precision", type=click.Choice(["int8", "fp32"]),
              help="Vectors of a new index: fp32 (the model's own; the default) or int8 (a quantised copy "
              "of the model, faster on a CPU, slightly less accurate). An index keeps its own.")
@click.option("--device", metavar="DEVICE", help="Where the model runs: cpu, cuda, cuda:N, mps. "
              "Default: a CUDA GPU if torch can use one, else the CPU.")
@click.option("--progress/--no-progress", default=None,
              help="Show progress on stderr (files/s, chunks/s, time left). Default: only on a terminal.")
@pass_settings
@reports_errors
def index_command(settings: Settings, paths: tuple[str, ...], index_dir: str | None, model: str | None,
                  include: tuple[str, ...], exclude: tuple[str, ...], prune: bool, as_json: bool,
                  verbose: bool, max_read_seconds: float, max_read_memory: int, precision: str | None,
                  device: str | None, progress: bool | None) -> None:
    """Index files and folders (only what changed since the last run).

    Reads text, Markdown, reST, HTML, PDF, DOCX and source files; honours .gitignore and skips
    hidden folders. Binary and unreadable files are skipped and counted, and so is a file that
    takes too long or too much memory to read (see --max-read-seconds, --max-read-memory).
    """
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise click.ClickException(f"no such file or folder: {missing[0]}")
    with _open(settings, index_dir, create=True, model=model, precision=precision, device=device) as engine:
        terminal = sys.stderr.isatty()
        show, finish = _progress_bar(enabled=progress if progress is not None else terminal and not as_json,
                                     terminal=terminal)
        try:
            limits = ReadLimits(seconds=max_read_seconds, memory_mb=max_read_memory)
            summary = engine.index(*paths, include=include, exclude=exclude, prune=prune, progress=show,
                                   read_limits=limits)
        finally:
            finish()
        if as_json:
            click.echo(json.dumps({"index": str(engine.directory), **summary.to_dict()}))
        else:
            _print_summary(summary, engine.directory, verbose)
    if summary.interrupted:
        click.echo("Interrupted: what was finished is saved; run the same command again to resume.", err=True)
        sys.exit(130)


def _progress_bar(*, enabled: bool, terminal: bool):
    """A progress callback for Engine.index and a function to end its output. On a terminal one
    line is redrawn a few times a second; elsewhere (a log file) a line is added every 10 s."""
    if not enabled:
        return None, lambda: None
    from semsearch.display import progress_line

    state: dict[str, Any] = {"shown": None, "width": 0, "line": ""}

    def update(progress) -> None:
        now = time.monotonic()
        finished = progress.files_total and progress.files_done >= progress.files_total
        if state["shown"] is not None and now - state["shown"] < (0.25 if terminal else 10.0) and not finished:
            return
        line = progress_line(progress)
        if line == state["line"]:
            return
        state["shown"], state["line"] = now, line
        if terminal:
            sys.stderr.write("\r" + line.ljust(state["width"]))
            state["width"] = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def finish() -> None:
        if terminal and state["width"]:
            sys.stderr.write("\n")
            sys.stderr.flush()

    return update, finish


def _print_summary(summary, directory: Path, verbose: bool) -> None:
    from semsearch.display import count_phrase, spelled_out

    files = count_phrase([
        ("new", summary.new), ("changed", summary.changed), ("unchanged", summary.unchanged),
        ("moved", summary.moved), ("removed", summary.removed), ("skipped", len(summary.skipped)),
    ])
    click.echo(f"Files: {files}")
    click.echo(
        f"Chunks: {summary.chunks_added} written, {summary.chunks_embedded} embedded, "
        f"{summary.chunks_reused} reused"
    )
    reasons = summary.skipped_by_reason()
    if reasons:
        click.echo("Skipped: " + "; ".join(f"{count} {reason}" for reason, count in reasons.items()))
        if verbose:
            for item in summary.skipped:
                click.echo(f"  {spelled_out(item.path)}: {item.reason}")
        elif len(summary.skipped) > 0:
            click.echo("  (use -v to list them)")
    for note in summary.notes:
        click.echo(f"Note: {note}")
    click.echo(f"Index: {directory} ({summary.elapsed_seconds:.1f} s)")


class _QueryCommand(click.Command):
    """A command whose argument is free text: a query starting with "-" reads to click as an
    unknown option, so the error says how to pass one."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        typed = list(args)  # (the parser consumes its list)
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as error:
            query = next((arg for arg in typed if arg.startswith(error.option_name)), None)
            if query is not None and not error.possibilities:  # (not a misspelt option)
                error.message = (error.message.rstrip(".") + f". To search for {query!r}, put -- before it: "
                                 f"semsearch {self.name} -- {query!r}")
            raise


@cli.command("search", cls=_QueryCommand)
@click.argument("query")
@index_option
@click.option("-n", "--limit", default=10, show_default=True, type=click.IntRange(min=1),
              help="How many results.")
@click.option("--mode", type=click.Choice(MODES), default="hybrid", show_default=True,
              help="semantic (meaning), keyword (BM25 words) or hybrid (both, fused).")
@click.option("--path", "path_glob", metavar="GLOB", help="Only documents whose path matches GLOB (e.g. '*.md', 'docs/*').")
@click.option("--type", "types", multiple=True, metavar="EXT", help="Only this file type, e.g. md or pdf (repeatable).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Only documents with this metadata value (repeatable).")
@click.option("-d", "--group-by-document", is_flag=True, help="Each document once, with its best chunk.")
@click.option("--rerank", is_flag=True, help="Rerank the top 50 with a local cross-encoder (needs --rerank-model).")
@click.option("--rerank-model", metavar="PATH", help="Folder of a local sentence-transformers cross-encoder.")
@click.option("--min-score", type=click.FloatRange(0.0, 1.0), metavar="0..1",
              help="Leave out hits whose relevance is below this (e.g. 0.5).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of hits.")
@click.option("--local", is_flag=True,
              help="Search in this process even when a `semsearch serve` of the index is running, and start none.")
@pass_settings
@reports_errors
def search_command(settings: Settings, query: str, index_dir: str | None, limit: int, mode: str,
                   path_glob: str | None, types: tuple[str, ...], meta: tuple[str, ...],
                   group_by_document: bool, rerank: bool, rerank_model: str | None, min_score: float | None,
                   as_json: bool, local: bool) -> None:
    """Ask the index a question in plain words.

    Each hit is shown with its relevance, from 0 to 1: about how often a hit like it was judged
    relevant when semsearch was calibrated (0.6: about 60% of the time; see docs/quality.md).
    If a `semsearch serve` of the same index is running on this machine, the search is sent to
    it (no model to load here: about 0.3 s instead of 0.5-0.8 s). A search answered here starts
    one in the background, which stops after 10 minutes without a search
    ($SEMSEARCH_KEEP_WARM=SECONDS sets that time, 0 turns it off). --local does neither.
    """
    metadata = _metadata_filter(meta)
    reranker = None
    if rerank or rerank_model:
        from semsearch.embedder import load_reranker

        reranker = load_reranker(rerank_model)
    forwarded = None
    shared = reranker is None and not local  # a search a server of the index can answer
    if shared:
        from semsearch import client
        from semsearch.location import default_index_dir

        forwarded = client.search(index_dir or settings.index or default_index_dir(), query, limit=limit,
                                  mode=mode, path=path_glob, types=types, metadata=metadata,
                                  group_by_document=group_by_document, min_score=min_score)
    if forwarded is not None:
        hits = [Hit.from_dict(item) for item in forwarded]
    else:
        early = None
        if mode != "keyword":  # the query model loads while the search stack is imported (semsearch.early_model)
            from semsearch import early_model
            from semsearch.location import default_index_dir

            early = early_model.start(index_dir or settings.index or default_index_dir())
            if early is not None:
                early.expect(query)
        try:
            with _open(settings, index_dir, create=False) as engine:
                engine.offer_query_model(early)
                hits = engine.search(query, limit=limit, mode=mode, path=path_glob, types=types,
                                     metadata=metadata, group_by_document=group_by_document, reranker=reranker,
                                     min_score=min_score)
                directory = engine.directory
        except KeyboardInterrupt:
            _interrupted()
        if shared:  # answered here: keep a server warm for the next search (semsearch.warm)
            from semsearch import warm

            warm.start_server(directory, warm.launcher())
    if as_json:
        click.echo(json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False, indent=2))
    elif not hits:
        click.echo("No results.", err=True)
    else:
        _print_hits(hits, query)
    _exit_at_once_when_done()


# Set by main(): this process is the `semsearch` command itself, not a caller of the click group.
_COMMAND_PROCESS = False


def _interrupted() -> NoReturn:
    """A Ctrl-C during a search, or outside any command's own handling: "Interrupted." and exit
    status 130. Neither has anything left to save. The `semsearch` process ends at once: ending
    the usual way waits for the query model's thread, which a Ctrl-C landing inside an import
    could leave waiting for that import's lock for ever. A program running the click group
    (tests, scripts) gets the usual ``SystemExit``."""
    if not _COMMAND_PROCESS:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        sys.stderr.write("Interrupted.\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def _exit_at_once_when_done() -> None:
    """End the process without tearing the interpreter down, once the command has returned.

    A search has nothing left to do after printing: its index is closed, its threads are done.
    Freeing every module and object (SQLAlchemy's, onnxruntime's) took another 0.2-0.3 s of a
    one-second search (docs/benchmarks.md). Only in the `semsearch` process itself: a program
    that runs the click group (tests, scripts) goes on as usual.
    """
    if _COMMAND_PROCESS:
        atexit.register(_flush_and_exit)  # registered last, so it runs first


def _flush_and_exit() -> None:
    code = 0
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is None:  # started with the stream closed (`>&-`)
                continue
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: what Python's own exit reports as 120
                code = 120
    finally:
        os._exit(code)


def _metadata_filter(meta: tuple[str, ...]) -> dict[str, str]:
    """``--meta KEY=VALUE`` options as a mapping."""
    metadata = {}
    for item in meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--meta")
        metadata[key] = value
    return metadata


@cli.command("similar")
@click.argument("target", metavar="PATH_OR_ID")
@index_option
@click.option("-n", "--limit", default=10, show_default=True, type=click.IntRange(min=1),
              help="How many documents.")
@click.option("--path", "path_glob", metavar="GLOB", help="Only documents whose path matches GLOB.")
@click.option("--type", "types", multiple=True, metavar="EXT", help="Only this file type (repeatable).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Only documents with this metadata value (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of hits, one per document.")
@pass_settings
@reports_errors
def similar_command(settings: Settings, target: str, index_dir: str | None, limit: int, path_glob: str | None,
                    types: tuple[str, ...], meta: tuple[str, ...], as_json: bool) -> None:
    """Documents most like one document ("more like this"), the document itself left out.

    PATH_OR_ID is an indexed file, a text id, or a document id from search results
    (document_id in --json); - reads a text from standard input instead. Each document is
    shown with its passage most like the whole.
    """
    metadata = _metadata_filter(meta)
    text = None
    if target == "-":
        text = sys.stdin.read()
    with _open(settings, index_dir, create=False) as engine:
        hits = engine.similar(None if text is not None else target, text=text, limit=limit,
                              path=path_glob, types=types, metadata=metadata)
    if as_json:
        click.echo(json.dumps([hit.to_dict() for hit in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        click.echo("No similar documents.", err=True)
        return
    _print_hits(hits, "")


def _print_hits(hits, query: str) -> None:
    from semsearch.display import display_path, display_text, location, snippet

    def emphasise(word: str) -> str:
        return click.style(word, bold=True, fg="yellow")

    for hit in hits:
        where = location(display_path(hit.path), hit.start_line, hit.page)
        heading = f" › {display_text(hit.heading)}" if hit.heading else ""
        # Rounded as --json rounds them first, so a hit a server sent prints the same digits.
        value = round(hit.score, 6) if hit.relevance is None else round(hit.relevance, 4)  # (similar: the cosine)
        click.echo(f"{hit.rank:>2}. {value:.3f}  " + click.style(where, fg="cyan") + f"  {display_text(hit.title)}{heading}")
        click.echo("    " + snippet(hit.text, query, emphasise=emphasise))
        click.echo()


@cli.command("status")
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_settings
@reports_errors
def status_command(settings: Settings, index_dir: str | None, as_json: bool) -> None:
    """Show what an index holds: documents, chunks, model, size."""
    from dataclasses import asdict

    from semsearch.display import human_size

    with _open(settings, index_dir, create=False) as engine:
        status = engine.status()
    if as_json:
        click.echo(json.dumps(asdict(status)))
        return
    rows = [
        ("Index", status.location),
        ("Documents", str(status.documents)),
        ("Chunks", str(status.chunks)),
        ("Model", f"{status.model} ({status.dimension} dimensions, {status.precision} vectors)"
                  if status.dimension else status.model),
        ("Chunking", f"up to {status.chunk_tokens} tokens, {status.overlap_tokens} overlap"),
        ("Vectors", f"{status.vector_search} search, {status.segments} segment{'s' if status.segments != 1 else ''} "
                    f"(vector index: {status.vector_index})"),
        ("Size on disk", human_size(status.size_bytes)),
        ("Last indexed", status.last_indexed or "never"),
    ]
    from semsearch import rendezvous

    server = rendezvous.find(status.location)
    if server is not None:  # searches go to it (a `serve`, or the one a search keeps warm)
        rows.append(("Server", f"{server.url} (pid {server.pid}); `semsearch search` asks it"))
    for label, value in rows:
        click.echo(f"{label + ':':<14}{value}")


@cli.command("remove")
@click.argument("paths", nargs=-1, required=True)
@index_option
@pass_settings
@reports_errors
def remove_command(settings: Settings, paths: tuple[str, ...], index_dir: str | None) -> None:
    """Remove files, folders (everything under them) or text ids from the index."""
    with _open(settings, index_dir, create=False) as engine:
        removed = engine.remove(*paths)
    if removed == 0:
        raise click.ClickException(f"nothing in the index at or under {', '.join(paths)}")
    click.echo(f"Removed {removed} document{'s' if removed != 1 else ''}.")


@cli.command("verify")
@index_option
@click.option("--repair", is_flag=True, help="Rebuild everything derived from SQLite (segments, keyword and "
              "metadata indexes) and say what was done. Nothing is re-embedded.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@pass_settings
@reports_errors
def verify_command(settings: Settings, index_dir: str | None, repair: bool, as_json: bool) -> None:
    """Check that the index's parts agree with each other; exit 1 if anything is wrong."""
    with _open(settings, index_dir, create=False) as engine:
        report = engine.verify(repair=repair)
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    else:
        for line in report.repaired:
            click.echo(f"Repaired: {line}")
        for problem in report.problems:
            fix = "semsearch verify --repair fixes this" if problem.derived else "index the folder again into a new index"
            click.echo(f"Problem ({problem.part}): {problem.message} ({fix})")
        if report.ok:
            files = f"{report.segments} segment file{'s' if report.segments != 1 else ''}"
            click.echo(f"OK: {report.chunks} chunks, {files}, every part agrees.")
    if not report.ok:
        sys.exit(1)


@cli.command("rebuild")
@index_option
@click.option(
    "--vector-index",
    type=click.Choice(["auto", "exact", "ivf"]),
    help="How to search vectors from now on: exact (brute force), ivf (approximate), or auto "
    "(exact below 100,000 chunks, IVF above; the default).",
)
@pass_settings
@reports_errors
def rebuild_command(settings: Settings, index_dir: str | None, vector_index: str | None) -> None:
    """Rewrite the vector segment files from the vectors stored in SQLite (nothing is re-embedded)."""
    with _open(settings, index_dir, create=False) as engine:
        count = engine.rebuild(vector_index)
    click.echo(f"Rebuilt the vector index: {count} vectors.")


@cli.command("serve")
@index_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs --allow-remote and a token.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port; the address is printed).")
@click.option("--token", envvar="SEMSEARCH_TOKEN", metavar="TOKEN",
              help="Require this token on every request (Authorization: Bearer TOKEN). Default: $SEMSEARCH_TOKEN.")
@click.option("--allow-remote", is_flag=True, help="Allow a --host other machines can reach (needs a token).")
@click.option("--idle-exit", type=click.FloatRange(min=1.0), metavar="SECONDS",
              help="Stop after SECONDS without a request (the server `search` keeps warm uses this).")
@pass_settings
@reports_errors
def serve_command(settings: Settings, index_dir: str | None, host: str, port: int, token: str | None,
                  allow_remote: bool, idle_exit: float | None) -> None:
    """Serve the index over HTTP: a JSON API, a search page at / and the API's reference at /docs.

    One long-lived process: the model and the index stay open, and documents that an `index`
    or `watch` process adds meanwhile are found without a restart. Ctrl-C stops it.
    """
    from semsearch.server import serve

    with _open(settings, index_dir, create=False) as engine:
        def ready(url: str) -> None:
            click.echo(f"Serving {engine.directory} at {url} (API reference: {url}docs; Ctrl-C stops)")
            sys.stdout.flush()

        why = serve(engine, host=host, port=port, token=token or None, allow_remote=allow_remote, ready=ready,
                    idle_exit=idle_exit)
    if why:
        click.echo(f"Stopped: {why}.")


@cli.command("mcp")
@index_option
@pass_settings
@reports_errors
def mcp_command(settings: Settings, index_dir: str | None) -> None:
    """Serve the index to AI assistants: a Model Context Protocol server on stdin/stdout.

    Tools: search, get_document, similar; answers are text citing path:line. Register it in
    the assistant's MCP settings as the command `semsearch --index DIR mcp` (see the README).
    """
    from semsearch.mcp_server import run

    with _open(settings, index_dir, create=False) as engine:
        run(engine)


@cli.command("watch")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@index_option
@click.option("--model", help="Sentence-transformers model name or local path (new index only).")
@click.option("--include", multiple=True, metavar="GLOB", help="Only index files matching GLOB (repeatable).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip files matching GLOB (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print each update as one JSON object per line.")
@pass_settings
@reports_errors
def watch_command(settings: Settings, paths: tuple[str, ...], index_dir: str | None, model: str | None,
                  include: tuple[str, ...], exclude: tuple[str, ...], as_json: bool) -> None:
    """Index files and folders, then keep the index up to date as they change (Ctrl-C stops).

    Changes are grouped until the files are quiet for a moment, so a save, a bulk copy or a bulk
    delete is one update. A watched folder that is removed and made again is followed. Searches,
    `serve` and `mcp` see each update as soon as it is written.
    """
    from semsearch.display import count_phrase
    from semsearch.watch import watch

    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise click.ClickException(f"no such file or folder: {missing[0]}")

    def report(update) -> None:
        summary = update.summary
        if as_json:
            click.echo(json.dumps({"reason": update.reason, "events": update.events, **summary.to_dict()}))
        else:
            counts = [("new", summary.new), ("changed", summary.changed), ("moved", summary.moved),
                      ("removed", summary.removed), ("skipped", len(summary.skipped))]
            done = count_phrase([(label, count) for label, count in counts if count]) or "nothing changed"
            if update.reason == "start":
                done = f"{summary.new + summary.changed + summary.unchanged} files indexed ({done})"
            click.echo(f"{time.strftime('%H:%M:%S')} {done}, {summary.chunks_embedded} chunks embedded "
                       f"({summary.elapsed_seconds:.1f} s)")
        sys.stdout.flush()

    with _open(settings, index_dir, create=True, model=model) as engine:
        if not as_json:
            click.echo(f"Watching {', '.join(paths)} into {engine.directory} (Ctrl-C stops)")
        interrupted = []
        try:
            watch(engine, paths, include=include, exclude=exclude,
                  on_update=lambda update: (interrupted.append(update.summary.interrupted), report(update)))
        except KeyboardInterrupt:
            pass  # between updates: everything is written
    if interrupted and interrupted[-1]:
        click.echo("Interrupted: what was finished is saved; run the same command again to resume.", err=True)
        sys.exit(130)
    click.echo("Stopped.", err=True)


# `eval` lives in its own module to keep this one readable.
cli.add_command(eval_command)


def _interrupt(_signum, _frame) -> None:
    stopping.request()  # also remembered, in case the exception lands where Python drops it
    raise KeyboardInterrupt


def _unraisable(report) -> None:
    # A Ctrl-C that landed in a garbage-collector callback is dropped by Python with a printed
    # traceback; the stop it carried is remembered (`stopping`) and happens at the next safe point.
    if isinstance(report.exc_value, KeyboardInterrupt) and stopping.requested():
        return
    sys.__unraisablehook__(report)


def main() -> None:
    # `kill` (SIGTERM) stops a run the way Ctrl-C does: at a consistent point, work saved.
    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored (`cmd &`)
        signal.signal(signal.SIGINT, _interrupt)
    sys.unraisablehook = _unraisable
    global _COMMAND_PROCESS
    _COMMAND_PROCESS = True
    # Document paths come from the library as valid text, but a path typed by the user (an index
    # folder whose name is not UTF-8) must not crash printing either: escape it, as stderr does.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    cli(prog_name="semsearch")
