"""Export a loaded sentence-transformers model to the folder :class:`OnnxQueryEmbedder` reads.

Only the transformer goes to ONNX; tokenization, pooling and normalisation are simple enough to redo
in numpy (:mod:`semsearch.onnx_embedder`), which keeps the export generic across BERT-like models.
The export is checked against the model before it is moved into place, and a folder is only ever
renamed in whole, so a search running at the same time sees a complete export or none.

torch is imported inside :func:`export_query_model`, which is called with a model the caller has
already loaded (so it is imported already); finding where an export lives costs no heavy import.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.errors import SemsearchError
from semsearch.model_cache import LIBRARIES, installed_version
from semsearch.onnx_embedder import (
    CONFIG_NAME,
    FORMAT,
    INT8_MODEL_NAME,
    MODEL_NAME,
    POOLING_MODES,
    TOKENIZER_NAME,
    OnnxEmbedder,
    OnnxQueryEmbedder,
    QueryModelError,
    import_onnxruntime,
    weights_name,
)

ONNX_OPSET = 17
# What an export must reproduce: onnxruntime fp32 matches torch to ~1e-7, so these leave room only
# for summation order, not for a different model (int8 quantisation differs by ~1e-2).
MAX_ABS_DIFFERENCE = 1e-4
MIN_COSINE = 0.9999
# What the int8 copy must keep of the fp32 export's vectors, text by text. MiniLM quantised per
# channel keeps at least 0.979 on CHECK_TEXTS (the empty text is lowest; mean 0.993 over 320 SciFact
# abstracts); quantised per tensor it falls to 0.901, which this rejects.
MIN_INT8_COSINE = 0.95
# A model file bigger than this still holds its weights (a graph without them is ~0.2 MB).
WEIGHTS_INSIDE_BYTES = 4 << 20
MAX_APART_DIFFERENCE = 1e-6  # the same network read another way: its vectors must not move (semsearch.export_upkeep)
_TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# Texts the export is checked on: short and long, several scripts, and one past the model's limit.
_PASSAGE = (
    "Semantic search finds passages by meaning rather than by shared words. Each document is cut into "
    "chunks that fit the model, every chunk is embedded once, and the vectors are stored next to the "
    "text they came from. A query is embedded the same way and compared with every stored vector; the "
    "closest chunks are returned with their file, line numbers and a score. Keyword search still helps "
    "with names, numbers and rare terms, so results from both can be fused by rank. "
)
CHECK_TEXTS = (
    "how do I reset my password",
    "a",
    "",
    "  leading and trailing whitespace\n\t",
    "Wie kann ich die Suche auf PDF-Dateien beschränken?",
    "検索結果を日付で並べ替えるには？",
    "def embed(texts): return model.encode(texts, normalize_embeddings=True)  # émoji 🚀 https://example.com/?q=1",
    _PASSAGE * 2,  # about 250 tokens
    _PASSAGE * 6,  # past the 256-token limit: checks truncation
)


class UnsupportedModelError(SemsearchError):
    """This model cannot be exported for ONNX queries; searches keep using sentence-transformers."""


class ExportMismatchError(UnsupportedModelError):
    """The ONNX export's vectors differ from the model's own, so it was not kept."""


def export_query_model(model: Any, target: Path, *, name: str | None = None) -> Path:
    """Export ``model`` (a loaded ``SentenceTransformer``) to ``target`` and check it; returns ``target``.

    ``name`` is what the export calls the model (default: the path it was loaded from); give the
    canonical name the index records. Raises :class:`UnsupportedModelError` if the model's pipeline
    is not transformer + pooling (+ normalise), or :class:`ExportMismatchError` if onnxruntime does not
    reproduce the model's vectors; nothing is left behind either way. If another process finishes an
    export to ``target`` first, that one is kept.
    """
    target = Path(target)
    if importlib.util.find_spec("onnx") is None:
        raise UnsupportedModelError("exporting the query model needs the onnx package; run: pip install onnx")
    settings = _describe(model)
    loaded_from = settings.pop("loaded_from")
    settings = {"format": FORMAT, "model": name or loaded_from, **settings}
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        work.chmod(0o755)  # mkdtemp's 0700 would survive the rename; a public model's export is no secret
        _write_export(model, settings, work)
        _verify(model, work)
        _move_into_place(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def quantize_model(directory: Path) -> Path:
    """Write the int8 copy of the export in ``directory`` (:data:`INT8_MODEL_NAME`) unless it is
    there already; returns its path.

    onnxruntime's dynamic quantisation: weights become int8 per output channel, activations are
    quantised on the fly, so no calibration data is needed, and neither is torch. The weights are
    the model's own, so the same export always gives the same copy. The copy is checked against the
    fp32 export on :data:`CHECK_TEXTS`, one text at a time, and kept only if every vector keeps a
    cosine of :data:`MIN_INT8_COSINE`; otherwise :class:`ExportMismatchError`. The file is written
    under a temporary name and renamed, so a reader sees all of it or none.
    """
    directory = Path(directory)
    target = directory / INT8_MODEL_NAME
    if target.is_file():
        return target
    if not OnnxEmbedder.available(directory):
        raise UnsupportedModelError(f"no complete ONNX export in {directory} to quantise")
    try:
        import_onnxruntime()
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as error:
        raise UnsupportedModelError(f"quantising the model needs onnxruntime and onnx ({error})") from None
    handle, name = tempfile.mkstemp(prefix=f".{INT8_MODEL_NAME}.", suffix=".partial", dir=directory)
    os.close(handle)
    work = Path(name)
    try:
        with warnings.catch_warnings(), _quiet_logging():
            warnings.simplefilter("ignore")
            try:
                quantize_dynamic(
                    str(directory / MODEL_NAME), str(work), weight_type=QuantType.QInt8, per_channel=True
                )
            except Exception as error:  # noqa: BLE001 - an operator it cannot handle, a full disk, ...
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise UnsupportedModelError(f"onnxruntime could not quantise the model: {first_line}") from None
        work.chmod(0o644)  # mkstemp's 0600 would survive the rename
        _verify_int8(directory, work)
        os.replace(work, target)
    finally:
        work.unlink(missing_ok=True)
    return target


def _verify_int8(directory: Path, candidate: Path) -> None:
    """Require the quantised model's vectors to stay close to the fp32 export's, text by text."""
    reference = OnnxEmbedder(directory, batch_size=1)
    staged = Path(tempfile.mkdtemp(prefix=".int8-check.", dir=directory))
    try:
        for name in (CONFIG_NAME, TOKENIZER_NAME):
            (staged / name).symlink_to(directory / name)
        (staged / INT8_MODEL_NAME).symlink_to(candidate)
        try:
            quantized = OnnxEmbedder(staged, precision="int8", batch_size=1)
        except QueryModelError as error:
            raise ExportMismatchError(f"the int8 model does not load: {error}") from None
        texts = list(CHECK_TEXTS)
        cosine = float((quantized.embed(texts) * reference.embed(texts)).sum(axis=1).min())
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if not cosine >= MIN_INT8_COSINE:
        raise ExportMismatchError(
            f"the int8 model's vectors are too far from the model's (lowest cosine {cosine:.4f}, "
            f"need {MIN_INT8_COSINE}); use --precision fp32"
        )


@contextlib.contextmanager
def _quiet_logging():
    """onnxruntime's quantiser logs advice through the root logger, which would reach the terminal."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


# -- describing the pipeline ------------------------------------------------------------------------


def _describe(model: Any) -> dict[str, Any]:
    """The config the embedder needs, or :class:`UnsupportedModelError` saying what does not fit."""
    modules = list(model) if hasattr(model, "__iter__") else []
    kinds = [type(module).__name__ for module in modules]
    if len(modules) not in (2, 3) or kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        raise UnsupportedModelError(
            f"the model's pipeline is {' -> '.join(kinds) or 'empty'}, not Transformer -> Pooling (-> Normalize)"
        )
    if getattr(model, "default_prompt_name", None) or getattr(model, "truncate_dim", None):
        raise UnsupportedModelError("the model adds a default prompt or truncates its vectors")
    transformer, pooling = modules[0], modules[1]
    tokenizer = getattr(transformer, "tokenizer", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise UnsupportedModelError("the model has no fast (Rust) tokenizer")
    modality = getattr(transformer, "modality_config", None) or {"text": None}
    task = getattr(transformer, "transformer_task", "feature-extraction")
    if set(modality) != {"text"} or task != "feature-extraction":
        raise UnsupportedModelError("the model's transformer is not a plain text encoder")
    if getattr(transformer, "backend", "torch") != "torch":
        raise UnsupportedModelError("the model is not running on torch, so torch cannot export it")
    if getattr(transformer, "processing_kwargs", None) or getattr(transformer, "do_lower_case", False):
        raise UnsupportedModelError("the model changes its tokenizer's arguments or lowercases its input")
    for length in ("query_length", "document_length", "query_expansion"):
        if getattr(transformer, length, None) is not None:
            raise UnsupportedModelError(f"the model sets {length}")
    inputs = [name for name in tokenizer.model_input_names if name in _TOKEN_INPUTS]
    if "input_ids" not in inputs or "attention_mask" not in inputs:
        raise UnsupportedModelError(f"the model's tokenizer gives {tokenizer.model_input_names}")
    max_length = model.max_seq_length
    if not isinstance(max_length, int) or not 0 < max_length <= 100_000:
        raise UnsupportedModelError(f"the model has no usable max_seq_length ({max_length!r})")
    modes = _pooling_modes(pooling)
    auto_model = getattr(transformer, "auto_model", None)
    return {
        "loaded_from": str(getattr(getattr(auto_model, "config", None), "_name_or_path", "") or "unknown"),
        "dimension": int(_dimension(model)),
        "max_seq_length": max_length,
        "pooling": list(modes),
        "normalize": len(modules) == 3,  # the model's own habit; the embedder normalises regardless
        "inputs": inputs,
        "pad_id": int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
        "pad_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
        "padding_side": getattr(tokenizer, "padding_side", "right"),
        "truncation_side": getattr(tokenizer, "truncation_side", "right"),
        "versions": {name: installed_version(name) for name in ("torch", *LIBRARIES)},
    }


def _pooling_modes(pooling: Any) -> tuple[str, ...]:
    if isinstance(getattr(pooling, "pooling_mode", None), (str, tuple, list)):  # sentence-transformers >= 6
        mode = pooling.pooling_mode
        modes = (mode,) if isinstance(mode, str) else tuple(mode)
    elif hasattr(pooling, "get_pooling_mode_str"):  # older releases: "mean", or "cls+mean"
        modes = tuple(pooling.get_pooling_mode_str().split("+"))
    else:
        raise UnsupportedModelError("cannot read the model's pooling mode")
    unknown = [mode for mode in modes if mode not in POOLING_MODES]
    if unknown or not modes:
        raise UnsupportedModelError(f"pooling mode {'+'.join(modes)} is not supported")
    return modes


def _dimension(model: Any) -> int:
    method = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return method()


# -- writing and checking ---------------------------------------------------------------------------


def _write_export(model: Any, settings: dict[str, Any], folder: Path) -> None:
    import torch

    transformer = model[0]
    tokenizer = transformer.tokenizer
    names = settings["inputs"]

    class TokenEmbeddings(torch.nn.Module):
        """The transformer module as ONNX sees it: tensors in, token vectors out."""

        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *tensors):
            return self.transformer(dict(zip(names, tensors)))["token_embeddings"]

    # Two texts of different lengths, so the traced graph includes padding and the attention mask.
    sample = tokenizer(
        ["an example", "a longer example sentence, so the batch needs padding"],
        padding=True,
        truncation=True,
        return_tensors="pt",
    )
    device = next(transformer.parameters()).device
    arguments = tuple(sample[name].to(device) for name in names)
    axes = {0: "batch", 1: "sequence"}
    options: dict[str, Any] = {
        "input_names": names,
        "output_names": ["token_embeddings"],
        "dynamic_axes": {**{name: axes for name in names}, "token_embeddings": axes},
        "opset_version": ONNX_OPSET,
        "do_constant_folding": True,
    }
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        # The TorchScript exporter needs no onnxscript and handles these models; torch >= 2.9 defaults
        # to the torch.export one.
        options["dynamo"] = False
    was_training = transformer.training
    transformer.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation notes would land on the user's terminal
            torch.onnx.export(TokenEmbeddings(), arguments, str(folder / MODEL_NAME), **options)
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsupportedModelError(f"torch.onnx could not export the model: {first_line}") from None
    finally:
        transformer.train(was_training)
    save_weights_apart(folder / MODEL_NAME)

    clean = type(tokenizer.backend_tokenizer).from_str(tokenizer.backend_tokenizer.to_str())
    clean.no_truncation()
    clean.no_padding()
    clean.save(str(folder / TOKENIZER_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _verify(model: Any, folder: Path) -> None:
    """Require the export to reproduce the model's vectors, batched (with padding) and one by one."""
    try:
        embedder = OnnxQueryEmbedder(folder)
    except QueryModelError as error:
        raise ExportMismatchError(f"the ONNX export does not load: {error}") from None
    texts = list(CHECK_TEXTS)
    expected = model.encode(
        texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    ).astype(np.float32)
    for got in (embedder.embed(texts), np.concatenate([embedder.embed([text]) for text in texts])):
        difference = float(np.abs(got - expected).max())
        cosine = float((got * expected).sum(axis=1).min())
        if got.shape != expected.shape or not difference < MAX_ABS_DIFFERENCE or not cosine > MIN_COSINE:
            raise ExportMismatchError(
                f"the ONNX export's vectors differ from the model's (max difference {difference:.2g}, "
                f"lowest cosine {cosine:.6f}); queries keep using sentence-transformers"
            )


def _move_into_place(work: Path, target: Path) -> None:
    """Rename the finished folder to ``target``; a complete export already there wins."""
    try:
        os.rename(work, target)
        return
    except OSError:
        if not target.exists():
            raise
    if OnnxQueryEmbedder.available(target):
        return  # another process exported the same model first
    # A leftover that is not a complete export: move it aside (one rename) and put ours in its place.
    stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".stale", dir=target.parent))
    os.rename(target, stale / "old")
    shutil.rmtree(stale, ignore_errors=True)
    os.rename(work, target)


def holds_weights(model_file: Path) -> bool:
    """Whether an export's model file still holds its weights (an export from before weights files)."""
    try:
        return model_file.stat().st_size > WEIGHTS_INSIDE_BYTES
    except OSError:
        return False


def save_weights_apart(model_file: Path, target: Path | None = None) -> None:
    """Write the ONNX model in ``model_file`` to ``target`` (default: over itself) with its weights
    in :func:`semsearch.onnx_embedder.weights_name` beside it (ONNX external data), and without
    NaN guards (:func:`drop_nan_guards`)."""
    import onnx

    target = target or model_file
    model = onnx.load(str(model_file))
    drop_nan_guards(model)
    onnx.save_model(
        model,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=weights_name(target.name),
        size_threshold=1024,
    )
    for written in (target, target.with_name(weights_name(target.name))):
        written.chmod(0o644)  # onnx writes the weights 0600; a model shared by a machine's users is no secret


def drop_nan_guards(model: Any) -> int:
    """Remove the NaN guards torch's exporter puts after each attention softmax, in place; returns
    how many nodes (and shape records of tensors no node has) went.

    torch exports scaled dot-product attention as ``Where(IsNaN(p), 0, p)`` over the softmax ``p``,
    which only matters for a row of attention with every key masked out. semsearch never embeds
    one (a text is at least its special tokens, or it is checked to give the same vectors), and
    the guard costs two passes over every layer's attention matrix: 8.5% of an fp32 MiniLM call
    at 200 tokens, 10.8% of an int8 one (docs/benchmarks.md). Constants left unused go too.
    """
    graph = model.graph
    produced = {output: node for node in graph.node for output in node.output}
    replaced: dict[str, str] = {}
    dropped = []
    for node in graph.node:
        if node.op_type != "Where" or len(node.input) != 3:
            continue
        test = produced.get(node.input[0])
        if test is None or test.op_type != "IsNaN" or test.input[0] != node.input[2]:
            continue
        source = produced.get(node.input[2])
        if source is None or source.op_type != "Softmax":
            continue
        replaced[node.output[0]] = node.input[2]
        dropped += [node, test]
    for node in dropped:
        graph.node.remove(node)
    for node in graph.node:
        for position, name in enumerate(node.input):
            if name in replaced:
                node.input[position] = replaced[name]
    outputs = {output.name for output in graph.output}
    while True:  # constants nothing reads any more
        used = {name for node in graph.node for name in node.input} | outputs
        unused = [node for node in graph.node if node.op_type == "Constant" and node.output[0] not in used]
        if not unused:
            break
        for node in unused:
            graph.node.remove(node)
            dropped.append(node)
    # Shapes recorded for tensors that are gone (the quantiser records every tensor's; a copy
    # whose guards went before this was done still has theirs).
    present = {name for node in graph.node for name in (*node.input, *node.output)}
    stale = [info for info in graph.value_info if info.name not in present]
    for recorded in stale:
        graph.value_info.remove(recorded)
    return len(dropped) + len(stale)
