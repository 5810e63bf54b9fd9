"""Precision and device: which embedder builds an index, the int8 model, and indexing without torch."""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

import semsearch
import semsearch.backends as backends
import semsearch.engine
from semsearch.backends import GpuProbe, PrecisionMismatchError, choose_device, default_precision
from semsearch.cli import cli
from semsearch.embedder import DEFAULT_MODEL
from semsearch.errors import ModelLoadError
from semsearch.store import SCHEMA_HEAD, Store
from conftest import database_at

REPO = Path(__file__).resolve().parent.parent
TEXTS = [
    "Tomatoes need full sun and deep watering.",
    "Knead the dough for ten minutes, then let the yeast rise.",
    "Reset your password from the account settings page.",
    "Paris is the capital and largest city of France.",
    "Use git rebase to replay commits on top of another branch.",
    "SQLite keeps a whole database in a single file.",
]


# -- choosing a device ----------------------------------------------------------------------------


def probe(torch_cuda: bool, visible: bool):
    return lambda: GpuProbe(torch_cuda=torch_cuda, device_visible=visible)


@pytest.mark.parametrize(
    ("torch_cuda", "visible", "expected"),
    [(True, True, "cuda"), (True, False, "cpu"), (False, True, "cpu"), (False, False, "cpu")],
)
def test_a_gpu_is_used_without_a_flag_only_when_torch_can_reach_one(torch_cuda, visible, expected):
    assert choose_device(None, probe(torch_cuda, visible)) == expected


def test_the_device_flag_overrides_what_is_found():
    assert choose_device("cpu", probe(True, True)) == "cpu"
    assert choose_device("CUDA:1", probe(False, False)) == "cuda:1"
    assert choose_device("mps", probe(False, False)) == "mps"
    with pytest.raises(ModelLoadError, match="unknown device 'gpu'"):
        choose_device("gpu", probe(True, True))


def test_a_new_index_is_fp32_unless_int8_is_asked_for():
    assert default_precision("cpu") == "fp32"  # int8 missed the quality bar (docs/quality.md)
    assert default_precision("cuda") == "fp32"


def fake_torch(tmp_path: Path, cuda: str) -> importlib.machinery.ModuleSpec:
    package = tmp_path / "torch"
    package.mkdir()
    (package / "version.py").write_text(
        f"from typing import Optional\n__version__ = '2.13.0'\ncuda: Optional[str] = {cuda}\nhip = None\n"
    )
    spec = importlib.machinery.ModuleSpec("torch", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    return spec


@pytest.mark.parametrize(("cuda", "expected"), [("'12.4'", True), ("None", False)])
def test_a_cuda_build_of_torch_is_recognised_without_importing_it(tmp_path, monkeypatch, cuda, expected):
    spec = fake_torch(tmp_path, cuda)
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: spec if name == "torch" else None)
    assert backends._torch_built_with_cuda() is expected
    assert "torch" not in sys.modules or sys.modules["torch"].__spec__ is not spec


def test_the_installed_cpu_torch_and_a_hidden_gpu_mean_cpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert backends._nvidia_device_visible() is False
    if "+cpu" in _installed_torch_version():
        assert backends._torch_built_with_cuda() is False


def _installed_torch_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return ""


class Recorder:
    """Stands in for SentenceTransformerEmbedder: records the device each load asked for."""

    def __init__(self, fake, *, fail_on: str | None = None) -> None:
        self.fake, self.fail_on, self.devices = fake, fail_on, []

    def __call__(self, name=None, *, device: str = "cpu"):
        self.devices.append(device)
        if device == self.fail_on:
            raise ModelLoadError(f"device {device} asked for, but this torch cannot use a CUDA GPU")
        return self.fake


def fake_engine(tmp_path, monkeypatch, fake_embedder, recorder, **options):
    monkeypatch.setattr(semsearch.engine, "SentenceTransformerEmbedder", recorder)
    monkeypatch.setattr(semsearch.engine, "canonical_model_name", lambda name: fake_embedder.name)
    return semsearch.open(tmp_path / "idx", **options)


def test_indexing_loads_the_model_on_the_gpu_that_was_found(tmp_path, monkeypatch, fake_embedder):
    monkeypatch.setattr(backends, "probe_gpu", lambda: GpuProbe(True, True))
    monkeypatch.setattr(semsearch.engine, "choose_device", lambda requested: choose_device(requested, backends.probe_gpu))
    recorder = Recorder(fake_embedder)
    with fake_engine(tmp_path, monkeypatch, fake_embedder, recorder) as engine:
        summary = engine.add_texts(TEXTS)
        assert summary.new == len(TEXTS) and summary.notes == ()
        assert engine.status().precision == "fp32"
    assert recorder.devices == ["cuda"]


def test_a_gpu_torch_cannot_use_falls_back_to_the_cpu_and_says_so(tmp_path, monkeypatch, fake_embedder):
    monkeypatch.setattr(semsearch.engine, "choose_device", lambda requested: requested or "cuda")
    recorder = Recorder(fake_embedder, fail_on="cuda")
    with fake_engine(tmp_path, monkeypatch, fake_embedder, recorder) as engine:
        summary = engine.add_texts(TEXTS)
    assert recorder.devices == ["cuda", "cpu"]
    assert summary.notes == ("the cuda GPU could not be used; embedded on the CPU",)


def test_a_device_asked_for_that_cannot_be_used_is_an_error(tmp_path, monkeypatch, fake_embedder):
    recorder = Recorder(fake_embedder, fail_on="cuda")
    with fake_engine(tmp_path, monkeypatch, fake_embedder, recorder, device="cuda") as engine:
        with pytest.raises(ModelLoadError, match="cannot use a CUDA GPU"):
            engine.add_texts(TEXTS)
        assert engine.status().documents == 0


def test_int8_on_a_gpu_is_refused(tmp_path, monkeypatch, fake_embedder):
    recorder = Recorder(fake_embedder)
    with fake_engine(tmp_path, monkeypatch, fake_embedder, recorder, device="cuda", precision="int8") as engine:
        with pytest.raises(ModelLoadError, match="int8 vectors are embedded by onnxruntime on the CPU"):
            engine.add_texts(TEXTS)


def test_int8_for_a_model_without_an_export_is_a_clear_error(tmp_path, monkeypatch, fake_embedder):
    with fake_engine(tmp_path, monkeypatch, fake_embedder, Recorder(fake_embedder), precision="int8") as engine:
        with pytest.raises(ModelLoadError, match="cannot embed .* at int8: .*; use --precision fp32"):
            engine.add_texts(TEXTS)
        assert engine.status().documents == 0


# -- the precision setting ------------------------------------------------------------------------


def test_migration_0005_marks_older_indexes_fp32(tmp_path, fake_embedder):
    path = database_at(tmp_path / "semsearch.db", "0004")
    with sqlite3.connect(path) as connection:
        connection.executemany("INSERT INTO settings(key, value) VALUES (?, ?)",
                               [("model", fake_embedder.name), ("dimension", "64"),
                                ("chunk_tokens", "60"), ("overlap_tokens", "8")])
    store = Store(path)
    assert store.schema_revision() == SCHEMA_HEAD
    assert store.settings()["precision"] == "fp32"
    store.close()
    empty = Store(tmp_path / "empty.db")  # a new database records nothing until a model writes
    assert "precision" not in empty.settings()
    empty.close()


def test_an_index_keeps_its_precision_and_refuses_another(tmp_path, fake_embedder):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(TEXTS)
        assert engine.status().precision == "fp32"
    with pytest.raises(PrecisionMismatchError, match="holds fp32 vectors, not int8"):
        semsearch.open(tmp_path / "idx", embedder=fake_embedder, precision="int8")
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder, precision="fp32") as engine:
        assert engine.precision == "fp32"


def test_the_cli_refuses_another_precision_in_one_line(tmp_path, fake_model):
    runner = CliRunner()
    index = str(tmp_path / "idx")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("Tomatoes need full sun and deep watering.\n")
    assert runner.invoke(cli, ["--index", index, "index", str(folder)]).exit_code == 0
    result = runner.invoke(cli, ["--index", index, "index", str(folder), "--precision", "int8"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: the index at {Path(index).resolve()} holds fp32 vectors, not int8; vectors of two precisions "
        "never share an index, so leave --precision out, or build int8 vectors into another --index"
    ]


# -- int8 with the real model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def int8_index(tmp_path_factory) -> Path:
    """An int8 index of TEXTS, built in a fresh cache: export, check and quantise on first use."""
    cache = tmp_path_factory.mktemp("int8-cache")
    previous = os.environ.get("SEMSEARCH_CACHE")
    os.environ["SEMSEARCH_CACHE"] = str(cache)
    index = tmp_path_factory.mktemp("int8") / "idx"
    try:
        with semsearch.open(index, precision="int8") as engine:
            summary = engine.add_texts(TEXTS, ids=[f"t{i}" for i in range(len(TEXTS))])
            assert summary.new == len(TEXTS)
        yield index
    finally:
        if previous is None:
            os.environ.pop("SEMSEARCH_CACHE", None)
        else:
            os.environ["SEMSEARCH_CACHE"] = previous


def cache_of() -> Path:
    """The default model's export folder in the cache the int8_index fixture points at."""
    from semsearch.model_cache import query_model_dir

    return query_model_dir(DEFAULT_MODEL)


@pytest.mark.slow
def test_int8_index_records_its_precision_and_the_int8_model_is_cached(int8_index):
    from semsearch.onnx_embedder import INT8_MODEL_NAME, MODEL_NAME, weights_name

    with semsearch.open(int8_index, create=False) as engine:
        assert engine.status().precision == "int8"
        folder = cache_of()
        assert (folder / MODEL_NAME).is_file() and (folder / INT8_MODEL_NAME).is_file()
        assert (folder / weights_name(INT8_MODEL_NAME)).is_file()  # its weights apart, as the fp32 model's
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # nothing half-written left
        hits = engine.search("forgot my login", limit=1, mode="semantic")
        assert hits[0].path == "t2"
        # Queries run through the same int8 model as the index: its query embedder is the int8 one.
        assert engine._query_model().precision == "int8"


@pytest.mark.slow
def test_int8_vectors_are_close_to_fp32_and_do_not_depend_on_the_batch(int8_index):
    from semsearch.onnx_embedder import OnnxEmbedder

    folder = cache_of()
    fp32 = OnnxEmbedder(folder).embed(TEXTS)
    int8 = OnnxEmbedder(folder, precision="int8", batch_size=1, workers=2)
    together = int8.embed(TEXTS)
    alone = np.concatenate([int8.embed([text]) for text in TEXTS])
    assert np.abs(together - alone).max() < 1e-5  # one text per call: no neighbour moves a vector
    cosines = (together * fp32).sum(axis=1)
    assert cosines.min() > 0.97 and cosines.max() < 0.99999  # close, and not the same vectors
    stored = Store(int8_index / "semsearch.db")
    try:
        rows = stored.vectors_by_embed_hash(stored_hashes(int8_index))
    finally:
        stored.close()
    vectors = np.stack([np.frombuffer(blob, dtype="<f4") for blob in rows.values()])
    assert np.allclose(np.sort((vectors @ together.T).max(axis=1)), 1.0, atol=1e-5)  # stored = int8's


def stored_hashes(index: Path) -> list[str]:
    with sqlite3.connect(index / "semsearch.db") as connection:
        return [row[0] for row in connection.execute("SELECT embed_hash FROM chunks")]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_indexing_with_a_cached_export_never_imports_torch(int8_index, tmp_path, precision):
    folder = tmp_path / "notes"
    folder.mkdir()
    for i, text in enumerate(TEXTS):
        (folder / f"note{i}.txt").write_text(text + "\n")
    script = (
        "import sys, json, semsearch\n"
        # device="cpu": on a machine with a GPU, fp32 indexing runs torch there, by design.
        f"with semsearch.open(sys.argv[1], precision={precision!r}, device='cpu') as engine:\n"
        "    summary = engine.index(sys.argv[2])\n"
        "    hits = engine.search('forgot my login', limit=1)\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(json.dumps({'new': summary.new, 'top': hits[0].path, 'heavy': heavy}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "idx"), str(folder)],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ}, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["new"] == len(TEXTS) and report["top"].endswith("note2.txt")
    assert report["heavy"] == [], f"indexing at {precision} imported {report['heavy']}"


@pytest.mark.slow
def test_a_quantised_model_that_strays_too_far_is_not_kept(int8_index, tmp_path, monkeypatch):
    import semsearch.onnx_export as onnx_export
    from semsearch.onnx_embedder import CONFIG_NAME, INT8_MODEL_NAME, MODEL_NAME, TOKENIZER_NAME, weights_name

    folder = tmp_path / "export"
    folder.mkdir()
    exported = [CONFIG_NAME, MODEL_NAME, weights_name(MODEL_NAME), TOKENIZER_NAME]
    for name in exported:  # (copies: onnx refuses weights behind a symbolic link)
        shutil.copy(cache_of() / name, folder / name)
    monkeypatch.setattr(onnx_export, "MIN_INT8_COSINE", 0.9999)
    with pytest.raises(onnx_export.ExportMismatchError, match="too far from the model's"):
        onnx_export.quantize_model(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(exported)
    monkeypatch.setattr(onnx_export, "MIN_INT8_COSINE", 0.95)
    assert onnx_export.quantize_model(folder) == folder / INT8_MODEL_NAME


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_calls_in_parallel_give_the_vectors_of_one_call_at_a_time(int8_index, precision):
    from semsearch.onnx_embedder import OnnxEmbedder

    texts = [text * (i + 1) for i, text in enumerate(TEXTS)]  # lengths differ, so batches differ
    one = OnnxEmbedder(cache_of(), precision=precision, batch_size=1, workers=1).embed(texts)
    two = OnnxEmbedder(cache_of(), precision=precision, batch_size=1, workers=2).embed(texts)
    assert np.abs(one - two).max() < 1e-5


def test_verify_reports_an_unknown_precision(tmp_path, fake_embedder):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(TEXTS)
    with sqlite3.connect(tmp_path / "idx" / "semsearch.db") as connection:
        connection.execute("UPDATE settings SET value = 'int4' WHERE key = 'precision'")
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        report = engine.verify()
    assert [(p.part, p.message) for p in report.problems] == [("settings", "unknown precision 'int4'")]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_indexing_embeds_one_text_per_call_and_keeps_every_worker_busy(int8_index, precision, monkeypatch):
    from semsearch.ingest import EMBED_CALL, Indexer
    from semsearch.onnx_embedder import TEXTS_PER_WORKER

    for cores in (2, 16):
        monkeypatch.setattr(backends, "index_workers", lambda cores=cores: cores)
        embedder = backends._onnx(cache_of(), precision)
        assert (embedder.batch_size, embedder.workers) == (1, cores)
        # A call holds enough texts for every worker to take several, longest first: 32 on 2
        # cores (as measured there), two rounds of 16 a worker on 16 cores.
        call = Indexer._call_size(SimpleNamespace(embedder=embedder))
        assert call == (EMBED_CALL if cores == 2 else 2 * TEXTS_PER_WORKER * cores)
        texts = [text * (i % 4 + 1) for i, text in enumerate(TEXTS * 3)]
        assert np.abs(embedder.embed(texts) - embedder.embed(texts[::-1])[::-1]).max() < 1e-6
