"""Embed with an ONNX export of the index's model: onnxruntime, tokenizers and numpy only.

A search embeds one short query, and importing torch and sentence-transformers to do it costs seconds
(about 4-5 s of a 5.8 s one-query process on two cores). The same network run by onnxruntime gives the same vectors
(max difference ~1e-7), so a query embedded here can search an index built with sentence-transformers.
Indexing uses it too: with the int8 copy of the export (:func:`semsearch.onnx_export.quantize_model`)
it embeds 1.5-2x faster than torch on a CPU, and with either copy it never imports torch.

The export is a folder written by :func:`semsearch.onnx_export.export_query_model`:

- ``model.onnx``: the transformer only, inputs as named in the config, output ``token_embeddings``
  of shape (batch, sequence, hidden), batch and sequence dynamic;
- ``model.onnx.weights``: its weights (ONNX external data), which onnxruntime maps into memory
  rather than copying out of the model file (exports from before it hold them inside ``model.onnx``
  until an index run moves them; both load);
- ``model.int8.onnx`` (once made, with its ``.weights`` too): the same network with its weights quantised to int8 per output
  channel and activations quantised on the fly (onnxruntime's dynamic quantisation);
- ``model.query-ort<version>.onnx`` and ``model.int8.query-ort<version>.onnx`` (once an index run
  or an export has saved them, with their ``.weights``): the same networks as that onnxruntime
  version optimises them, which a query's session loads with the optimiser off (``optimized=True``);
- ``tokenizer.json``: the model's fast tokenizer, with truncation and padding turned off (they are
  set here, from the config, the way sentence-transformers calls the tokenizer);
- ``query_model.json``: :data:`CONFIG_NAME`, what the rest of the pipeline does (pooling, lengths).

Nothing here imports torch, transformers or sentence-transformers; onnxruntime is imported when an
embedder is made, so importing this module is free.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from semsearch.errors import SemsearchError

MODEL_NAME = "model.onnx"
INT8_MODEL_NAME = "model.int8.onnx"
MODEL_FILES = {"fp32": MODEL_NAME, "int8": INT8_MODEL_NAME}  # by precision
TOKENIZER_NAME = "tokenizer.json"
CONFIG_NAME = "query_model.json"
FORMAT = 1  # bump when the folder's layout or meaning changes; older folders are then ignored
POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
BATCH_SIZE = 32
MAX_THREADS = 4  # one query gains nothing past a few threads, and the cores are shared
# Texts each worker should have in one call to stay busy to its end: workers take the batches as
# they free up, longest first, and 16 texts a worker evens out the lengths (what 16-core indexing
# was measured with when a batch was 16 texts; docs/benchmarks.md, "On a GPU").
TEXTS_PER_WORKER = 16


def weights_name(model_file: str) -> str:
    """The file beside a model file that holds its weights (ONNX external data), which
    onnxruntime maps into memory: the model loads in about half the time (see
    :func:`semsearch.export_upkeep.keep_weights_apart`)."""
    return model_file + ".weights"


def query_graph_name(model_file: str, onnxruntime_version: str) -> str:
    """The file beside a model file that holds its network as that onnxruntime version optimises
    it (``model.onnx`` → ``model.query-ort1.23.2.onnx``, weights in :func:`weights_name` of it):
    see :func:`semsearch.export_upkeep.save_query_graph`."""
    stem = model_file[: -len(".onnx")] if model_file.endswith(".onnx") else model_file
    return f"{stem}.query-ort{onnxruntime_version}.onnx"


def import_onnxruntime() -> Any:
    """onnxruntime, with its usage telemetry off unless the user set ``ORT_DISABLE_TELEMETRY``.

    onnxruntime 1.32 queues usage events in ``~/.cache/Microsoft/DeveloperTools/.onnxruntime``
    (a SQLite file written at every exit, thousands of events on a machine that searches offline).
    A local search engine sends nothing anywhere, and every process that embeds ends sooner.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


class QueryModelError(SemsearchError):
    """The ONNX query model is missing, incomplete or unreadable; semsearch can use the full model instead."""


class OnnxEmbedder:
    """Embeds texts like the index's sentence-transformers model, through onnxruntime.

    Vectors are L2-normalised float32 of shape (n, dimension), as every semsearch embedder returns
    (the index is built with ``normalize_embeddings=True``). ``precision`` picks the export's file:
    ``fp32`` gives the model's own vectors, ``int8`` the quantised copy's (close, never the same).

    ``batch_size`` texts go to the network per call; ``workers`` calls run at once, each on one
    thread (``workers=1``: one call at a time, on up to :data:`MAX_THREADS` threads).

    ``prepack=False`` leaves the weights as they are in the file instead of repacking them for
    onnxruntime's matrix kernels when the session is built: the session builds ~0.08 s sooner and
    each call runs slower (a short query 11-13 ms instead of 6-8), which is what a process that
    embeds one query wants (:mod:`semsearch.query_process`). The vectors differ by < 1e-6.

    ``optimized=True`` loads the export's query graph when this onnxruntime version saved one
    (:func:`query_graph_name`, written by :func:`semsearch.export_upkeep.save_query_graph`): the
    network already optimised, so the session builds with the optimiser off, in 25-30 ms instead
    of 65-100 (fp32 MiniLM, no prepacking). ``self.optimized`` says whether it did.
    """

    def __init__(
        self,
        directory: Path,
        *,
        precision: str = "fp32",
        batch_size: int = BATCH_SIZE,
        workers: int = 1,
        prepack: bool = True,
        optimized: bool = False,
    ) -> None:
        directory = Path(directory)
        if precision not in MODEL_FILES:
            raise ValueError(f"precision must be one of {', '.join(MODEL_FILES)}")
        config = _read_config(directory, MODEL_FILES[precision])
        try:
            onnxruntime = import_onnxruntime()
            from tokenizers import Tokenizer
        except ImportError as error:
            raise QueryModelError(
                f"the ONNX query model needs onnxruntime and tokenizers ({error}); "
                "run: pip install onnxruntime tokenizers"
            ) from None
        model_file = directory / MODEL_FILES[precision]
        graph = directory / query_graph_name(model_file.name, onnxruntime.__version__)
        self.optimized = optimized and graph.is_file() and graph.with_name(weights_name(graph.name)).is_file()
        try:
            self.name: str = config["model"]
            self.dimension: int = int(config["dimension"])
            self._max_length = int(config["max_seq_length"])
            self._pooling: tuple[str, ...] = tuple(config["pooling"])
            self._inputs: tuple[str, ...] = tuple(config["inputs"])
            self._pad_id = int(config["pad_id"])
            self._pad_type_id = int(config["pad_type_id"])
            self._pad_left = config["padding_side"] == "left"
            truncation_side = config["truncation_side"]
        except (KeyError, TypeError, ValueError) as error:
            raise QueryModelError(
                f"{directory / CONFIG_NAME} lacks or mangles {error}; export the model again"
            ) from None
        unknown = [mode for mode in self._pooling if mode not in POOLING_MODES]
        if unknown or not self._pooling:
            raise QueryModelError(f"{directory / CONFIG_NAME} names unknown pooling {unknown}; export the model again")
        try:
            options = onnxruntime.SessionOptions()
            # Several calls at once share the cores, one thread each; one call at a time spreads over them.
            options.intra_op_num_threads = 1 if workers > 1 else min(os.cpu_count() or 1, MAX_THREADS)
            options.inter_op_num_threads = 1
            # Spinning threads keep a core busy between runs; on shared cores that doubled query time.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if not prepack:  # see the class's docstring
                options.add_session_config_entry("session.disable_prepacking", "1")
            options.log_severity_level = 3  # errors only: no optimiser chatter on the user's terminal

            def build() -> Any:
                if self.optimized:
                    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
                    try:
                        return onnxruntime.InferenceSession(
                            str(graph), sess_options=options, providers=["CPUExecutionProvider"]
                        )
                    except Exception:  # noqa: BLE001 - a damaged copy: the export itself still loads
                        self.optimized = False
                options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
                return onnxruntime.InferenceSession(
                    str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
                )

            # onnxruntime builds the session without holding the GIL: the tokenizer loads meanwhile
            # (a one-query process waits for both).
            with ThreadPoolExecutor(1, thread_name_prefix="semsearch-onnx-session") as builder:
                session = builder.submit(build)
                try:
                    tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_NAME))
                    tokenizer.no_padding()  # padding is done here, per batch, to the longest text
                    tokenizer.enable_truncation(self._max_length, strategy="longest_first", direction=truncation_side)
                finally:
                    self._session = session.result()
            self._tokenizer = tokenizer
        except Exception as error:  # a truncated or foreign file: either way, not usable
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise QueryModelError(f"cannot load the ONNX query model in {directory}: {first_line}") from None
        expected = {node.name for node in self._session.get_inputs()}
        if expected != set(self._inputs):
            raise QueryModelError(
                f"{directory / MODEL_FILES[precision]} takes {sorted(expected)}, not {sorted(self._inputs)}; "
                "export the model again"
            )
        self.precision = precision
        self.batch_size = max(1, batch_size)
        self.workers = max(1, workers)
        self.texts_at_once = max(self.batch_size, TEXTS_PER_WORKER) * self.workers  # what keeps a call's workers busy
        # Tokens of text that fit next to the special tokens, as SentenceTransformerEmbedder counts them.
        special = len(tokenizer.encode("").ids)
        self.max_tokens: int = self._max_length - special
        self._counter = None

    @staticmethod
    def available(directory: Path, precision: str = "fp32") -> bool:
        """Whether ``directory`` holds a complete export in this precision and onnxruntime is
        installed (no loading)."""
        directory = Path(directory)
        return (
            all((directory / name).is_file() for name in (CONFIG_NAME, MODEL_FILES[precision], TOKENIZER_NAME))
            and importlib.util.find_spec("onnxruntime") is not None
        )

    @property
    def counter(self):
        """Token counts with the model's tokenizer (:class:`semsearch.tokens.HFTokenCounter`)."""
        if self._counter is None:
            from semsearch.tokens import HFTokenCounter

            self._counter = HFTokenCounter(self._tokenizer)
        return self._counter

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised vector per text, in the order given; texts past the model's limit are cut."""
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        # Batches of similar length waste less work on padding. With fp32 the results do not depend
        # on it; int8 quantises each batch's activations with one scale, so there a batch size of
        # one makes a text's vector its own (see backends.ONNX_BATCH_SIZE).
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        vectors = np.empty((len(encodings), self.dimension), dtype=np.float32)
        batches = [order[offset : offset + self.batch_size] for offset in range(0, len(order), self.batch_size)]

        def run(rows: list[int]) -> None:
            vectors[rows] = self._embed_batch([encodings[i] for i in rows])

        if self.workers > 1 and len(batches) > 1:
            # onnxruntime releases the GIL while it runs, so these threads use a core each. The
            # longest batches go first: the short ones left then fill the cores as they free up.
            with ThreadPoolExecutor(self.workers) as executor:
                list(executor.map(run, reversed(batches)))
        else:
            for rows in batches:
                run(rows)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.ascontiguousarray(vectors / np.clip(norms, 1e-12, None), dtype=np.float32)

    def _embed_batch(self, encodings: list[Any]) -> np.ndarray:
        width = max(len(encoding.ids) for encoding in encodings)
        shape = (len(encodings), width)
        arrays = {
            "input_ids": np.full(shape, self._pad_id, dtype=np.int64),
            "attention_mask": np.zeros(shape, dtype=np.int64),
            "token_type_ids": np.full(shape, self._pad_type_id, dtype=np.int64),
        }
        for row, encoding in enumerate(encodings):
            length = len(encoding.ids)
            span = slice(width - length, width) if self._pad_left else slice(0, length)
            arrays["input_ids"][row, span] = encoding.ids
            arrays["attention_mask"][row, span] = encoding.attention_mask
            arrays["token_type_ids"][row, span] = encoding.type_ids
        (token_embeddings,) = self._session.run(
            ["token_embeddings"], {name: arrays[name] for name in self._inputs}
        )
        return pool(token_embeddings, arrays["attention_mask"], self._pooling)


def pool(token_embeddings: np.ndarray, attention_mask: np.ndarray, modes: Sequence[str]) -> np.ndarray:
    """Sentence vectors from token vectors, as sentence-transformers' ``Pooling`` module computes them.

    ``modes`` are concatenated in order (a single mode is the usual case). Padding may be on either side.
    """
    embeddings = token_embeddings.astype(np.float32, copy=False)
    mask = attention_mask.astype(np.float32)[..., None]
    batch, width, _ = embeddings.shape
    rows = np.arange(batch)
    parts = []
    for mode in modes:
        if mode == "cls":  # the first real token, wherever padding puts it
            parts.append(embeddings[rows, attention_mask.argmax(axis=1)])
        elif mode == "max":
            parts.append(np.where(mask > 0, embeddings, -np.inf).max(axis=1))
        elif mode in ("mean", "mean_sqrt_len_tokens"):
            count = np.clip(mask.sum(axis=1), 1e-9, None)
            parts.append((embeddings * mask).sum(axis=1) / (count if mode == "mean" else np.sqrt(count)))
        elif mode == "weightedmean":  # weights 1, 2, ... from the first real token
            weights = np.arange(1, width + 1, dtype=np.float32)[None, :, None]
            weights = weights - attention_mask.argmax(axis=1).astype(np.float32)[:, None, None]
            weighted = mask * weights
            parts.append((embeddings * weighted).sum(axis=1) / np.clip(weighted.sum(axis=1), 1e-9, None))
        elif mode == "lasttoken":
            flipped = attention_mask[:, ::-1]
            from_end = np.where(flipped.max(axis=1) == 0, width - 1, flipped.argmax(axis=1))
            parts.append((embeddings * mask)[rows, width - from_end - 1])
        else:
            raise ValueError(f"unknown pooling mode {mode!r}; expected one of {', '.join(POOLING_MODES)}")
    return np.concatenate(parts, axis=1).astype(np.float32, copy=False)


# The name this class had while it only embedded queries.
OnnxQueryEmbedder = OnnxEmbedder


def _read_config(directory: Path, model_name: str = MODEL_NAME) -> dict[str, Any]:
    if not directory.is_dir():
        raise QueryModelError(f"no ONNX query model at {directory}; it is written when an index is built")
    missing = [name for name in (CONFIG_NAME, model_name, TOKENIZER_NAME) if not (directory / name).is_file()]
    if missing:
        raise QueryModelError(
            f"the ONNX query model in {directory} is incomplete (no {', '.join(missing)}); "
            "delete the folder and it will be exported again"
        )
    try:
        config = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise QueryModelError(f"cannot read {directory / CONFIG_NAME}: {error}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise QueryModelError(
            f"{directory / CONFIG_NAME} is not format {FORMAT}; delete the folder and it will be exported again"
        )
    return config
