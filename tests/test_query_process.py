"""A search's query model in a forked process of its own (semsearch.query_process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import semsearch
from semsearch import early_model, query_process
from semsearch.embedder import DEFAULT_MODEL
from semsearch.model_cache import query_model_dir

ENV = {**os.environ, "SEMSEARCH_KEEP_WARM": "0"}


def run_script(script: str, *arguments: str) -> subprocess.CompletedProcess:
    """``script`` in a new Python process (this one runs threads, so it may not fork)."""
    return subprocess.run([sys.executable, "-c", script, *arguments], capture_output=True, text=True,
                          env=ENV, check=False, timeout=120)


def test_an_index_run_saves_the_optimised_query_graph(real_corpus_index):
    export = query_model_dir(DEFAULT_MODEL)
    graphs = sorted(path.name for path in export.glob("model.query-ort*.onnx*"))
    assert len(graphs) == 2 and graphs[1] == graphs[0] + ".weights", graphs


def test_the_child_embeds_as_the_export_does_and_the_parent_takes_over_when_it_dies(real_corpus_index):
    script = (
        "import os, signal, sys\n"
        "import numpy as np\n"
        "from semsearch import early_model, query_process\n"
        "from semsearch.model_cache import load_query_model\n"
        "early = early_model.start(sys.argv[1], fork=True)\n"
        "assert isinstance(early, query_process.QueryProcess), type(early)\n"
        "early.expect('ownership and borrowing')\n"
        "remote = early.result()\n"
        "local = load_query_model(early.model, 'fp32')\n"
        "def same(texts):\n"
        "    got, want = remote.embed(texts), local.embed(texts)\n"
        "    assert got.shape == want.shape == (len(texts), 384) and got.dtype == np.float32\n"
        "    assert np.abs(got - want).max() < 1e-5, np.abs(got - want).max()\n"
        "same(['ownership and borrowing'])\n"  # answered ahead
        "same(['memory safety', 'traits and generics', ''])\n"
        "early.expect('never asked')\n"  # only one request goes ahead in a process's life
        "same(['lifetimes'])\n"
        "os.kill(early.pid, signal.SIGKILL)\n"
        "os.waitpid(early.pid, 0)\n"
        "same(['what the child would have said'])\n"  # loaded here instead
        "assert remote.counter.count(['hello world']) == [2]\n"
        "print(remote.name, remote.precision, remote.optimized, local.optimized)\n"
    )
    result = run_script(script, str(real_corpus_index))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [DEFAULT_MODEL, "fp32", "True", "True"]


def test_another_expected_text_is_dropped_and_the_asked_one_answered(real_corpus_index):
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from semsearch import early_model\n"
        "from semsearch.model_cache import load_query_model\n"
        "early = early_model.start(sys.argv[1], fork=True)\n"
        "early.expect('the guess')\n"
        "remote = early.result()\n"
        "got = remote.embed(['the real query'])\n"
        "want = load_query_model(early.model, 'fp32').embed(['the real query'])\n"
        "print(float(np.abs(got - want).max()) < 1e-5)\n"
    )
    result = run_script(script, str(real_corpus_index))
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr


def test_no_export_means_no_model_from_the_child(tmp_path, fake_embedder):
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(["some words"])
    script = (
        "import sys\n"
        "from semsearch import early_model, query_process\n"
        "early = early_model.start(sys.argv[1], fork=True)\n"
        "assert isinstance(early, query_process.QueryProcess)\n"
        "print(early.result())\n"
    )
    result = run_script(script, str(tmp_path / "idx"))
    assert result.returncode == 0 and result.stdout.strip() == "None", result.stderr


def test_a_process_running_threads_loads_on_a_thread_instead(real_corpus_index):
    stop = threading.Event()
    waiting = threading.Thread(target=stop.wait)
    waiting.start()
    try:
        assert not query_process.can_fork()
        early = early_model.start(real_corpus_index, fork=True)
        assert isinstance(early, early_model.EarlyQueryModel)
        assert early.result() is not None
    finally:
        stop.set()
        waiting.join()


def _state(pid: int) -> str | None:
    """The process's state letter, ``None`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def test_the_child_ends_with_its_parent_and_holds_none_of_its_output(real_corpus_index):
    # The parent ends at once, while the child still loads; whoever reads the parent's output gets
    # its end then (the child's streams are /dev/null), and the child ends once it has loaded.
    script = (
        "import os, sys\n"
        "from semsearch import early_model\n"
        "early = early_model.start(sys.argv[1], fork=True)\n"
        "print(early.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    started = time.monotonic()
    result = run_script(script, str(real_corpus_index))
    assert result.returncode == 0, result.stderr
    child = int(result.stdout)
    deadline = time.monotonic() + 20
    while _state(child) not in (None, "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _state(child) in (None, "Z")
    assert time.monotonic() - started < 20


def test_a_search_process_asks_its_child_and_prints_the_same_hits(real_corpus_index):
    script = (
        "import os, sys\n"
        "from semsearch import query_process\n"
        "asked = []\n"
        "original = query_process.QueryProcess.ask\n"
        "def ask(self, texts):\n"
        "    asked.append((list(texts), self._expected))\n"
        "    return original(self, texts)\n"
        "query_process.QueryProcess.ask = ask\n"
        "exit = os._exit\n"
        "def report(code):\n"
        "    print(asked, file=sys.stderr, flush=True)\n"
        "    exit(code)\n"
        "os._exit = report\n"
        "sys.argv = ['semsearch', '--index', sys.argv[1], 'search', '--local', '--json', '-n', '5', sys.argv[2]]\n"
        "from semsearch.launch import main\n"
        "main()\n"
    )
    query = "ownership and borrowing"
    result = run_script(script, str(real_corpus_index), query)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == repr([([query], [query])])  # asked once, sent ahead
    printed = json.loads(result.stdout)
    with semsearch.open(real_corpus_index, create=False) as engine:
        expected = engine.search(query, limit=5)
    assert [(hit["path"], hit["start_line"]) for hit in printed] == [(h.path, h.start_line) for h in expected]
    assert [hit["score"] for hit in printed] == pytest.approx([h.score for h in expected], abs=1e-4)


def test_ctrl_c_ends_the_search_and_its_child_quietly(real_corpus_index):
    # Ctrl-C in a terminal reaches the whole process group: the child ends without a word, the
    # search with "Interrupted." and 130.
    process = subprocess.Popen(
        [sys.executable, "-m", "semsearch", "--index", str(real_corpus_index), "search", "--local", "ownership"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, start_new_session=True,
    )
    children: list[int] = []
    deadline = time.monotonic() + 20
    while not children and process.poll() is None and time.monotonic() < deadline:
        try:
            children = [int(pid) for pid in Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()]
        except OSError:
            break
        time.sleep(0.002)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=30)
    if process.returncode == 0:  # it had finished already
        assert out.strip()
        return
    assert process.returncode == 130 and "Interrupted." in err and "Traceback" not in err, err
    for child in children:
        deadline = time.monotonic() + 10
        while _state(child) not in (None, "Z") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _state(child) in (None, "Z")
