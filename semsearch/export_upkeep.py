"""Keeping an ONNX export up to date: what an index run does to an export made by an older version.

An export (:mod:`semsearch.onnx_export`) is written once and then only read, by every search and
every index run. Later versions learned to write it in forms that load or run faster, and an
index run brings an older export up to date, one step at a time (:func:`upkeep`):

1. :func:`keep_weights_apart`: the weights move into a file of their own, which onnxruntime maps
   instead of copying (a session loads in half the time);
2. :func:`drop_guards`: the NaN guards after each attention softmax go
   (:func:`semsearch.onnx_export.drop_nan_guards`: 8-11% of a call at 200 tokens);
3. :func:`save_query_graph`: the network as onnxruntime optimises it is saved for queries, whose
   session then loads with the optimiser off.

Every step leaves the vectors as they were, checked on :data:`semsearch.onnx_export.CHECK_TEXTS`
before anything is replaced, or changes nothing. Files are written in a staging folder inside the
export and renamed into place (weights first, then the graph), so a search loading the model
meanwhile reads the old files or the new ones. Two processes never work on one export at once
(a lock on its folder); a step another process is doing is skipped. A search never writes here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from semsearch.onnx_embedder import (
    CONFIG_NAME,
    MODEL_FILES,
    TOKENIZER_NAME,
    OnnxEmbedder,
    import_onnxruntime,
    query_graph_name,
    weights_name,
)
from semsearch.onnx_export import (
    CHECK_TEXTS,
    MAX_ABS_DIFFERENCE,
    MAX_APART_DIFFERENCE,
    ExportMismatchError,
    drop_nan_guards,
    holds_weights,
    save_weights_apart,
)

GUARD_OPERATOR = b"IsNaN"  # how a graph file with NaN guards is told apart without parsing it


def upkeep(directory: Path, precision: str = "fp32") -> None:
    """Every step, in order, for the export's model of this precision. Best effort: a step that
    fails (a full disk, a read-only cache, vectors that would move) leaves the export as it was,
    and searches load it the old way."""
    for step in (keep_weights_apart, drop_guards, save_query_graph):
        try:
            step(directory, precision)
        except Exception:  # noqa: BLE001 - see above
            pass


def keep_weights_apart(directory: Path, precision: str = "fp32") -> bool:
    """Move the weights of an export's model file (of this precision) into a file of their own
    beside it, unless they are there already; returns whether it did.

    onnxruntime maps such a file into memory instead of copying weights out of the model file: a
    session of the fp32 MiniLM loads in 0.12-0.16 s instead of 0.28-0.41 s (docs/benchmarks.md).
    The rewritten model (without NaN guards, as new exports are) must give the same vectors as
    before, to :data:`MAX_APART_DIFFERENCE`.
    """
    directory = Path(directory)
    model_file = directory / MODEL_FILES[precision]
    if not holds_weights(model_file):
        return False
    with _exclusive(directory, ".weights.", lambda: holds_weights(model_file), ()) as staged:
        if staged is None:
            return False
        save_weights_apart(model_file, staged / model_file.name)
        _require_same_vectors(directory, staged, precision, MAX_APART_DIFFERENCE, "with its weights apart")
        os.replace(staged / weights_name(model_file.name), directory / weights_name(model_file.name))
        os.replace(staged / model_file.name, model_file)
    _forget_query_graphs(directory, model_file.name)
    return True


def drop_guards(directory: Path, precision: str = "fp32") -> bool:
    """Rewrite the export's model file (of this precision, weights apart) without the NaN guards
    torch's exporter put in it; returns whether it did. The weights file is not touched.

    The graph must give the same vectors, batched with padding and one by one, to
    :data:`MAX_APART_DIFFERENCE` (measured: identical): a model whose empty text has no tokens at
    all would give NaN there without the guards, and keeps them.
    """
    directory = Path(directory)
    model_file = directory / MODEL_FILES[precision]
    if not _has_guards(model_file):
        return False
    import onnx

    weights = (weights_name(model_file.name),)  # the new graph reads the same weights file
    with _exclusive(directory, ".guards.", lambda: _has_guards(model_file), weights) as staged:
        if staged is None:
            return False
        model = onnx.load(str(model_file), load_external_data=False)  # the graph; weights stay where they are
        if not drop_nan_guards(model):
            return False
        onnx.save_model(model, str(staged / model_file.name))
        (staged / model_file.name).chmod(0o644)
        _require_same_vectors(directory, staged, precision, MAX_APART_DIFFERENCE, "without its NaN guards")
        os.replace(staged / model_file.name, model_file)
    _forget_query_graphs(directory, model_file.name)
    return True


def save_query_graph(directory: Path, precision: str = "fp32") -> bool:
    """Save the export's model of this precision as onnxruntime optimises it, for queries, unless
    this onnxruntime version has saved it already; returns whether it did.

    Building a session optimises the network first (fusing attention, layer norms, GELU): 65-100 ms
    of the 0.4-0.5 s a one-query process took here. Saved once, the optimised network loads with
    the optimiser off (:class:`semsearch.onnx_embedder.OnnxEmbedder` ``optimized=True``) in 25-30
    ms. It is saved at the "extended" level, the highest whose result onnxruntime calls portable
    across CPUs, and named after the onnxruntime version that made it (another version ignores
    it and saves its own; a copy for another version is deleted). Its vectors must match the
    export's to :data:`MAX_ABS_DIFFERENCE`.
    """
    directory = Path(directory)
    onnxruntime = import_onnxruntime()
    model_file = directory / MODEL_FILES[precision]
    name = query_graph_name(model_file.name, onnxruntime.__version__)
    if (directory / name).is_file() or not model_file.is_file():
        return False
    export = (model_file.name, weights_name(model_file.name))
    with _exclusive(directory, ".query-graph.", lambda: not (directory / name).is_file(), export) as staged:
        if staged is None:
            return False
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(staged / name)
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", weights_name(name))
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        options.add_session_config_entry("session.disable_prepacking", "1")
        options.log_severity_level = 3
        onnxruntime.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])
        texts = list(CHECK_TEXTS)
        before = OnnxEmbedder(directory, precision=precision, batch_size=1).embed(texts)
        saved = OnnxEmbedder(staged, precision=precision, batch_size=1, optimized=True)
        difference = float(np.abs(before - saved.embed(texts)).max())
        if not saved.optimized or not difference <= MAX_ABS_DIFFERENCE:
            raise ExportMismatchError(f"the optimised network gives other vectors (max difference {difference:.2g})")
        for written in (staged / weights_name(name), staged / name):
            written.chmod(0o644)
            os.replace(written, directory / written.name)
    _forget_query_graphs(directory, model_file.name, keep=name)
    return True


# -- shared by the steps ------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive(directory: Path, prefix: str, still_needed, links: tuple[str, ...]) -> Iterator[Path | None]:
    """A staging folder inside ``directory``, held under the export's lock; ``None`` if another
    process holds the lock or ``still_needed()`` says the work is done. The export's config and
    tokenizer are linked into it, and ``links`` (never a file the step writes there: it would
    write into the export's own). Removed afterwards, with any left by a process killed in the
    same step."""
    lock = os.open(directory, os.O_RDONLY)  # the folder itself is the lock: no file left behind
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None  # another process is doing it
            return
        if not still_needed():
            yield None
            return
        for stale in directory.glob(prefix + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        staged = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
        try:
            for linked in (CONFIG_NAME, TOKENIZER_NAME, *links):
                if (directory / linked).exists():
                    try:  # a hard link: onnxruntime refuses weights a symbolic link leads out of the folder to
                        os.link(directory / linked, staged / linked)
                    except OSError:
                        shutil.copy2(directory / linked, staged / linked)
            yield staged
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    finally:
        os.close(lock)  # (and with it the lock)


def _require_same_vectors(directory: Path, staged: Path, precision: str, tolerance: float, what: str) -> None:
    """The staged model must embed :data:`CHECK_TEXTS` as the export's does, batched (with padding)
    and one text at a time; else :class:`ExportMismatchError`."""
    texts = list(CHECK_TEXTS)
    for batch in (len(texts), 1):
        before = OnnxEmbedder(directory, precision=precision, batch_size=batch).embed(texts)
        after = OnnxEmbedder(staged, precision=precision, batch_size=batch).embed(texts)
        difference = float(np.abs(before - after).max())
        if not difference <= tolerance:
            raise ExportMismatchError(f"the model {what} gives other vectors (max difference {difference:.2g})")


def _has_guards(model_file: Path) -> bool:
    """Whether a graph file (its weights apart) still has NaN guards, read as bytes: an operator's
    name is stored as plain text in the file."""
    if not model_file.is_file() or holds_weights(model_file):
        return False
    try:
        return GUARD_OPERATOR in model_file.read_bytes()
    except OSError:
        return False


def _forget_query_graphs(directory: Path, model_name: str, keep: str | None = None) -> None:
    """Delete the saved query graphs of ``model_name`` (but ``keep``): made from its old graph."""
    for graph in directory.glob(query_graph_name(model_name, "*")):
        if graph.name != keep:
            for stale in (graph.with_name(weights_name(graph.name)), graph):
                stale.unlink(missing_ok=True)
