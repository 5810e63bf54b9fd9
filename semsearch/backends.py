"""Which embedder builds an index: its precision, the device it runs on, and how its files are made.

An index records one *precision* with its model, and every vector in it comes from that:

- ``fp32``: the model's own vectors. On a CPU they come from the ONNX export when it is in the cache
  (onnxruntime gives the same vectors as sentence-transformers, max difference < 1e-4, and never
  imports torch), otherwise from sentence-transformers; on a GPU from sentence-transformers.
- ``int8``: the quantised copy of the export (:func:`semsearch.onnx_export.quantize_model`), run by
  onnxruntime on the CPU. Faster on a CPU, and its vectors are close to fp32's but not the same
  (cosine ~0.993), so the two never share an index; queries then use the same int8 model.

A new index is fp32 unless int8 is asked for: int8 lost more than 0.005 hybrid nDCG@10 on ADI (and
on CISI too, measured on another CPU) of the five BEIR sets (docs/quality.md), the bar it had to
clear to become the default.

The int8 model is made on first use and cached: from the fp32 export if the cache has it (no torch),
otherwise the model is loaded once with sentence-transformers, exported, checked and quantised.
A model that cannot be exported cannot be embedded at int8: that is an error naming fp32.

The GPU is found without importing torch: a torch built with CUDA (its ``version.py``) and an
NVIDIA device the process can see. Only then is torch asked, when the model is loaded.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from semsearch.embedder import Embedder
from semsearch.errors import ModelLoadError, SemsearchError

PRECISIONS = ("fp32", "int8")
# int8 embeds ~1.6-1.9x faster on a CPU, but would have had to keep hybrid nDCG@10 within 0.005 of
# fp32 on all five BEIR sets to be the default, and lost 0.009-0.011 on ADI (and 0.006 on CISI on an
# AVX-512 VNNI machine; docs/quality.md).
DEFAULT_CPU_PRECISION = "fp32"
# One text per call, at either precision. int8 quantises each call's activations with one scale, so
# a text embedded in a batch would depend on its neighbours; alone it is always the same vector (a
# query's too). And alone there is no padding and a text's activations stay in the core's cache:
# fp32 indexed the first 1,200 SciFact abstracts in 32.8 s one text a call against 42.2 s sixteen a
# call (docs/benchmarks.md), and int8 measured likewise. Both cores stay busy: one call each.
ONNX_BATCH_SIZE = 1
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$")

TorchLoader = Callable[[str], Embedder]  # device -> a sentence-transformers embedder on it


class PrecisionMismatchError(SemsearchError):
    """The index holds vectors of another precision than the one asked for."""


@dataclass(frozen=True)
class GpuProbe:
    """What can be known about a GPU without importing torch."""

    torch_cuda: bool  # the installed torch was built with CUDA
    device_visible: bool  # an NVIDIA GPU is there and CUDA_VISIBLE_DEVICES does not hide it


def probe_gpu() -> GpuProbe:
    """Look for a CUDA-enabled torch and an NVIDIA device, reading files only (no torch import)."""
    return GpuProbe(torch_cuda=_torch_built_with_cuda(), device_visible=_nvidia_device_visible())


def choose_device(requested: str | None, probe: Callable[[], GpuProbe] = probe_gpu) -> str:
    """The device to embed on: ``requested`` if given (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...),
    else ``cuda`` when a CUDA-enabled torch and an NVIDIA GPU are both present, else ``cpu``."""
    if requested:
        device = requested.strip().lower()
        if not _DEVICE.match(device):
            raise ModelLoadError(f"unknown device {requested!r}; use cpu, cuda, cuda:N, mps or xpu")
        return device
    found = probe()
    return "cuda" if found.torch_cuda and found.device_visible else "cpu"


def default_precision(device: str) -> str:
    """The precision of a new index that asks for none (int8 is a CPU speed-up, never the default
    on an accelerator)."""
    return DEFAULT_CPU_PRECISION if device == "cpu" else "fp32"


def load_embedder(
    model: str,
    *,
    precision: str,
    device: str,
    load_torch: TorchLoader,
) -> Embedder:
    """The embedder for an index of ``model`` at ``precision``; its ``precision`` attribute says so.

    ``load_torch(device)`` loads the model with sentence-transformers (only when nothing cached
    will do). Raises :class:`ModelLoadError` if int8 is asked for and no int8 model can be made.
    """
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}; use {' or '.join(PRECISIONS)}")
    from semsearch.export_upkeep import upkeep
    from semsearch.onnx_embedder import OnnxEmbedder
    from semsearch.model_cache import query_model_dir
    from semsearch.onnx_export import UnsupportedModelError, export_query_model, quantize_model

    directory = query_model_dir(model)
    if precision == "fp32":
        if device == "cpu" and OnnxEmbedder.available(directory):
            upkeep(directory, "fp32")
            try:
                return _onnx(directory, "fp32")
            except SemsearchError:
                pass  # a damaged export: the model itself still works
        return _mark(load_torch(device), "fp32")
    if device != "cpu":
        raise ModelLoadError(
            f"int8 vectors are embedded by onnxruntime on the CPU, not on {device}; leave --device out, "
            "or build an fp32 index (--precision fp32) to use the GPU"
        )
    try:
        if not OnnxEmbedder.available(directory):
            # The one time torch is needed: export the model (checked against it), then quantise.
            sentence_transformer = getattr(load_torch("cpu"), "model", None)
            if sentence_transformer is None:
                raise UnsupportedModelError(f"{model} is not a sentence-transformers model, so it has no export")
            export_query_model(sentence_transformer, directory, name=model)
        quantize_model(directory)
        upkeep(directory, "int8")
        return _onnx(directory, "int8")
    except UnsupportedModelError as error:
        raise ModelLoadError(f"cannot embed {model} at int8: {error}; use --precision fp32") from None


def _onnx(directory: Path, precision: str) -> Embedder:
    from semsearch.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(directory, precision=precision, batch_size=ONNX_BATCH_SIZE, workers=index_workers())


def index_workers() -> int:
    """Model calls run at once while indexing: one per core this process may run on (each on one
    thread), measured faster than one call spread over the cores, on 2 cores and on 16
    (docs/benchmarks.md)."""
    try:
        cores = len(os.sched_getaffinity(0))  # what this process may use, not what the machine has
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 32))


def _mark(embedder: Embedder, precision: str) -> Embedder:
    if getattr(embedder, "precision", None) is None:
        try:
            embedder.precision = precision  # type: ignore[attr-defined]
        except AttributeError:
            pass  # a frozen custom embedder: the engine assumes fp32
    return embedder


# -- finding a GPU without torch ----------------------------------------------------------------------


def _torch_built_with_cuda() -> bool:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        try:
            source = (Path(location) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        found = re.search(r"^cuda\s*(?::[^=]*)?=\s*(.+)$", source, re.MULTILINE)
        if found:
            return found.group(1).strip() not in ("None", "''", '""')
    return False


def _nvidia_device_visible() -> bool:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    try:
        if gpus.is_dir() and any(gpus.iterdir()):
            return True
    except OSError:
        pass
    return Path("/dev/nvidia0").exists()
