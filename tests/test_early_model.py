"""A search's query model loaded while the search stack is imported (semsearch.early_model)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

import semsearch
from semsearch import early_model
from semsearch.cli import cli
from semsearch.embedder import DEFAULT_MODEL
from semsearch.onnx_embedder import OnnxEmbedder


@pytest.fixture
def loading_threads(monkeypatch) -> list[str]:
    """The names of the threads that build an ONNX embedder, in order."""
    threads: list[str] = []
    original = OnnxEmbedder.__init__

    def recording(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        original(self, *args, **kwargs)

    monkeypatch.setattr(OnnxEmbedder, "__init__", recording)
    return threads


def test_nothing_starts_without_readable_settings(tmp_path):
    assert early_model.start(tmp_path / "missing") is None
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "semsearch.db").write_bytes(b"not a database at all" * 100)
    assert early_model.start(tmp_path / "garbage") is None
    (tmp_path / "empty").mkdir()
    sqlite3.connect(tmp_path / "empty" / "semsearch.db").execute("CREATE TABLE settings (key TEXT, value TEXT)").connection.commit()
    assert early_model.start(tmp_path / "empty") is None  # an index whose model is not chosen yet


def test_an_index_without_an_export_gives_none(tmp_path, fake_embedder):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(["some words"])
    early = early_model.start(tmp_path / "idx")
    assert early is not None and early.model == fake_embedder.name
    assert early.result() is None  # the fake model has no ONNX export


def test_the_index_query_model_loads_on_its_own_thread(real_corpus_index, loading_threads):
    threads = loading_threads
    early = early_model.start(real_corpus_index)
    onnx = early.result()
    assert (onnx.name, onnx.precision, threads) == (DEFAULT_MODEL, "fp32", ["semsearch-query-model"])
    with semsearch.open(real_corpus_index, create=False) as engine:
        engine.offer_query_model(early)
        assert engine._query_model() is onnx
        # Taken once; the same vectors as a model the engine loads itself.
        assert engine._query_model() is onnx
        own = engine.search("ownership and borrowing", limit=5)
    with semsearch.open(real_corpus_index, create=False) as engine:
        assert [h.chunk_id for h in engine.search("ownership and borrowing", limit=5)] == [h.chunk_id for h in own]


def test_start_returns_once_the_threads_imports_are_done(real_corpus_index):
    # In a new process (this one has imported everything already): when start() returns, the
    # thread has imported onnxruntime and tokenizers, so the search stack's imports do not take
    # turns with them; and a search imports no SQLAlchemy (reads run on sqlite3).
    script = (
        "import sys\n"
        "from semsearch import early_model\n"
        "early = early_model.start(sys.argv[1])\n"
        "print(sorted(m for m in ('onnxruntime', 'tokenizers') if m in sys.modules))\n"
        "assert early.result() is not None\n"
        "import semsearch\n"
        "with semsearch.open(sys.argv[1], create=False) as engine:\n"
        "    engine.offer_query_model(early)\n"
        "    assert engine.search('ownership and borrowing', limit=3)\n"
        "print('sqlalchemy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(real_corpus_index)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["['onnxruntime', 'tokenizers']", "False"]


class Offered:
    def __init__(self, embedder):
        self.embedder = embedder

    def result(self):
        return self.embedder


def test_an_offered_model_of_another_index_is_not_taken(real_corpus_index):
    with semsearch.open(real_corpus_index, create=False) as engine:
        wrong = Offered(type("Stub", (), {"name": "another/model", "precision": "fp32", "dimension": 384})())
        engine.offer_query_model(wrong)
        assert engine._query_model() is not wrong.embedder
    with semsearch.open(real_corpus_index, create=False) as engine:
        engine.offer_query_model(Offered(None))  # the early load failed
        assert isinstance(engine._query_model(), OnnxEmbedder)


def test_cli_search_uses_the_early_model(real_corpus_index, loading_threads):
    threads = loading_threads
    result = CliRunner().invoke(
        cli, ["--index", str(real_corpus_index), "search", "--local", "--json", "ownership and borrowing"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) and threads == ["semsearch-query-model"]
    threads.clear()
    result = CliRunner().invoke(
        cli, ["--index", str(real_corpus_index), "search", "--local", "--mode", "keyword", "ownership"]
    )
    assert result.exit_code == 0 and threads == []  # a keyword search loads no model


def test_a_search_process_ends_without_tearing_down_and_loses_no_output(real_corpus_index, tmp_path):
    # An atexit handler registered before the command runs is skipped: the process ended at once,
    # after flushing everything it printed.
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('torn down', file=sys.stderr))\n"
        "from semsearch.cli import main\n"
        "sys.argv = ['semsearch'] + sys.argv[1:]\n"
        "main()\n"
    )
    base = [sys.executable, "-c", script, "--index", str(real_corpus_index)]
    env = {**os.environ, "SEMSEARCH_KEEP_WARM": "0"}
    searched = subprocess.run(base + ["search", "--json", "-n", "50", "ownership and borrowing"],
                              capture_output=True, text=True, env=env, check=False)
    assert searched.returncode == 0, searched.stderr
    assert len(json.loads(searched.stdout)) == 50 and "torn down" not in searched.stderr
    status = subprocess.run(base + ["status"], capture_output=True, text=True, env=env, check=False)
    assert status.returncode == 0 and "torn down" in status.stderr  # other commands end as usual
    missing = subprocess.run(base[:-1] + [str(tmp_path / "none"), "search", "anything"],
                             capture_output=True, text=True, env=env, check=False)
    assert missing.returncode == 1 and "no semsearch index" in missing.stderr


def test_a_search_that_fails_while_the_model_loads_exits_with_its_error(real_corpus_index, tmp_path):
    # The loading thread is not a daemon: killed inside onnxruntime at exit, it aborted the process
    # (exit 134, "terminate called without an active exception") instead of the usual error.
    index = tmp_path / "emptied"
    shutil.copytree(real_corpus_index, index)
    with sqlite3.connect(index / "semsearch.db") as connection:
        paths = [path for (path,) in connection.execute("SELECT path FROM documents")]
    with semsearch.open(index, create=False) as engine:
        assert engine.remove(*paths) == len(paths) > 0
    env = {**os.environ, "SEMSEARCH_KEEP_WARM": "0"}
    for _ in range(3):
        result = subprocess.run([sys.executable, "-m", "semsearch", "--index", str(index), "search", "rice"],
                                capture_output=True, text=True, env=env, check=False)
        assert result.returncode == 1, result.stderr
        assert "Error:" in result.stderr and "terminate" not in result.stderr


def test_a_search_with_its_output_closed_ends_quietly(real_corpus_index):
    env = {**os.environ, "SEMSEARCH_KEEP_WARM": "0"}
    result = subprocess.run([sys.executable, "-m", "semsearch", "--index", str(real_corpus_index), "search", "rice"],
                            stdout=None, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
                            check=False, pass_fds=(), close_fds=True,
                            preexec_fn=lambda: os.close(1))
    assert result.returncode == 0 and "Traceback" not in result.stderr and "Exception" not in result.stderr


def test_the_command_starts_a_search_model_before_importing_its_commands(real_corpus_index, monkeypatch):
    from semsearch import launch

    monkeypatch.setenv("SEMSEARCH_INDEX", "/from/the/environment")
    index = str(real_corpus_index)
    assert launch.search_index(["--index", index, "search", "q"]) == real_corpus_index
    assert launch.search_index(["search", "--index=/b", "-n", "3", "q"]).as_posix() == "/b"
    assert launch.search_index(["--index", "/a", "search", "--index", "/c", "q"]).as_posix() == "/c"  # last wins
    assert launch.search_index(["search", "q"]).as_posix() == "/from/the/environment"
    assert launch.search_index(["search", "--", "--index", "/z"]).as_posix() == "/from/the/environment"
    for others in (["index", "/x"], ["status"], [], ["--help"], ["search", "--help"],
                   ["search", "--mode", "keyword", "q"], ["search", "--mode=keyword", "q"]):
        assert launch.search_index(others) is None, others
    # What it starts is what the search command then takes, once; another folder loads its own.
    early = early_model.start(real_corpus_index, for_later=True)
    assert early is not None
    assert early_model.start(real_corpus_index / ".") is early
    again = early_model.start(real_corpus_index)
    assert again is not early and again.result() is not None


def test_the_command_process_imports_its_commands_after_the_model(real_corpus_index):
    script = (
        "import sys\n"
        "import semsearch.early_model as early_model\n"
        "loaded = []\n"
        "original = early_model.start\n"
        "def start(*args, **kwargs):\n"
        "    loaded.append(('semsearch.cli' in sys.modules, kwargs.get('for_later', False)))\n"
        "    found = original(*args, **kwargs)\n"
        "    loaded.append(id(found))\n"
        "    print(loaded, file=sys.stderr, flush=True)\n"
        "    return found\n"
        "early_model.start = start\n"
        "sys.argv = ['semsearch', '--index', sys.argv[1], 'search', '--local', '-n', '1', 'ownership']\n"
        "from semsearch.launch import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(real_corpus_index)], capture_output=True,
                            text=True, env={**os.environ, "SEMSEARCH_KEEP_WARM": "0"}, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    # started before the commands were imported, then taken by the search command (not loaded again)
    last = [line for line in result.stderr.splitlines() if line.startswith("[")][-1]
    first_call, first_model, second_call, second_model = eval(last)  # noqa: S307 - our own output
    assert (first_call, second_call) == ((False, True), (True, False)) and first_model == second_model


@pytest.mark.parametrize("loaded", ["_multiarray_umath", "onnxruntime_pybind11_state", "swigfaiss"])
def test_a_search_interrupted_while_its_model_loads_ends_with_130(real_corpus_index, loaded):
    """Ctrl-C once the process (or its query model's child, :mod:`semsearch.query_process`) has
    mapped ``loaded``: numpy (imported before the child is forked), onnxruntime (the child's
    session being built), FAISS (the main thread's imports beside it). It ends at once with 130,
    never waiting for the model."""
    import signal
    import time

    process = subprocess.Popen(
        [sys.executable, "-m", "semsearch", "--index", str(real_corpus_index), "search", "--local", "ownership"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "SEMSEARCH_KEEP_WARM": "0"},
    )
    deadline = time.monotonic() + 20
    found = False
    while not found and process.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{process.pid}/task/{process.pid}/children") as children:
                pids = [process.pid, *map(int, children.read().split())]
            for pid in pids:
                with open(f"/proc/{pid}/maps") as maps:
                    found = found or loaded in maps.read()
        except OSError:
            break
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)  # never hangs waiting for the model's thread
    if process.returncode == 0:  # it had finished already
        assert out.strip()
        return
    assert process.returncode == 130, err
    assert "Interrupted." in err and "Traceback" not in err, err
