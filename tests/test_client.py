"""`semsearch search` sends its query to a running `semsearch serve` of the same index (real
processes, real HTTP), and searches locally whenever that server cannot answer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from semsearch import __version__, client, rendezvous
from processes import FAKE_CLI, REAL_CLI, Process, server

NOTES = {
    "garden/tomatoes.md": "# Growing tomatoes\n\nTomatoes need full sun and deep watering.\n",
    "kitchen/bread.md": "# Baking bread\n\nKnead the dough, let the yeast rise, bake in a hot oven.\n",
    "sea/tides.md": "# Tides\n\nThe moon pulls the oceans and makes tides twice a day.\n",
}


@pytest.fixture()
def own_cache(tmp_path, monkeypatch) -> dict[str, str]:
    """Records go to this test's own cache folder, for this process and its children."""
    cache = str(tmp_path / "cache")
    monkeypatch.setenv("XDG_CACHE_HOME", cache)
    return {"XDG_CACHE_HOME": cache}


@pytest.fixture()
def fake_index(tmp_path, own_cache) -> Path:
    for name, text in NOTES.items():
        (tmp_path / "notes" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "notes" / name).write_text(text)
    index = tmp_path / "idx"
    process = Process([*FAKE_CLI, "--index", str(index), "index", str(tmp_path / "notes")], env=own_cache)
    assert process.finish() == 0, process.text()
    return index


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def test_a_search_is_answered_by_the_running_server_without_loading_anything(fake_index, own_cache):
    local = run([*FAKE_CLI, "--index", str(fake_index), "search", "tomatoes sun", "--json", "--local"], own_cache)
    assert local.returncode == 0, local.stderr
    with server(FAKE_CLI, fake_index, env=own_cache) as (url, _process):
        assert rendezvous.find(fake_index) is not None
        # The real command line, on an index the fake model built: it could not load that model,
        # so only the server can have answered; -X importtime shows what it imported.
        forwarded = run([sys.executable, "-X", "importtime", *REAL_CLI[1:], "--index", str(fake_index),
                         "search", "tomatoes sun", "--json"], own_cache)
        assert forwarded.returncode == 0, forwarded.stderr
        assert json.loads(forwarded.stdout) == json.loads(local.stdout)
        imported = {line.split("|")[-1].strip() for line in forwarded.stderr.splitlines() if "|" in line}
        assert "http.client" in imported
        assert not imported & {"numpy", "sqlalchemy", "faiss", "onnxruntime", "torch"}
        shown = run([*REAL_CLI, "--index", str(fake_index), "search", "bread", "--mode", "keyword", "-n", "1"], own_cache)
        assert shown.returncode == 0, shown.stderr
        assert "kitchen/bread.md" in shown.stdout
        # What a person reads is the same, digit for digit (relevance is rounded as --json rounds it).
        for mode in ("hybrid", "semantic", "keyword"):
            args = ["--index", str(fake_index), "search", "tomatoes sun bread", "--mode", mode]
            served, here = run([*REAL_CLI, *args], own_cache), run([*FAKE_CLI, *args, "--local"], own_cache)
            assert served.returncode == here.returncode == 0, served.stderr + here.stderr
            assert served.stdout == here.stdout
        # --min-score travels too: a threshold between the hits' relevances keeps some of them.
        relevances = sorted({hit["relevance"] for hit in json.loads(local.stdout)})
        assert len(relevances) > 1
        threshold = str((relevances[0] + relevances[-1]) / 2)
        args = ["--index", str(fake_index), "search", "tomatoes sun", "--json", "--min-score", threshold]
        kept = json.loads(run([*REAL_CLI, *args], own_cache).stdout)
        assert kept == json.loads(run([*FAKE_CLI, *args, "--local"], own_cache).stdout)
        assert 0 < len(kept) < len(json.loads(local.stdout))
    assert rendezvous.find(fake_index) is None  # the server removed its record on the way out


def test_errors_and_local_only_options_are_left_to_the_local_search(fake_index, own_cache):
    with server(FAKE_CLI, fake_index, env=own_cache):
        # A path filter the server refuses (too long) is searched here, where it is simply a filter.
        long_glob = "nowhere/" + "x" * 2_000
        found = run([*FAKE_CLI, "--index", str(fake_index), "search", "tides", "--path", long_glob, "--json"], own_cache)
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout) == []
        empty = run([*FAKE_CLI, "--index", str(fake_index), "search", "   "], own_cache)
        assert empty.returncode == 1
        assert empty.stderr.strip().startswith("Error:") and "Traceback" not in empty.stderr


def test_a_record_of_a_dead_server_is_ignored(fake_index, own_cache):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    record = rendezvous.record_path(fake_index)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"version": __version__, "pid": gone.pid, "url": "http://127.0.0.1:9/", "token": None}))
    assert rendezvous.find(fake_index) is None
    found = run([*FAKE_CLI, "--index", str(fake_index), "search", "tides", "--json"], own_cache)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["path"].endswith("sea/tides.md")


def test_a_server_that_does_not_answer_leaves_the_search_local(tmp_path, own_cache):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    withdraw = rendezvous.announce(tmp_path / "idx", f"http://127.0.0.1:{port}/", None)
    assert rendezvous.find(tmp_path / "idx") is not None  # this test's own pid: alive
    assert client.search(tmp_path / "idx", "anything", limit=3, mode="hybrid") is None
    withdraw()
    assert rendezvous.find(tmp_path / "idx") is None


def test_records_are_private_versioned_and_only_their_owner_removes_them(tmp_path, own_cache):
    index = tmp_path / "idx"
    withdraw = rendezvous.announce(index, "http://127.0.0.1:1234/", "secret")
    path = rendezvous.record_path(index)
    assert path.stat().st_mode & 0o077 == 0  # holds the token: the owner's alone
    assert rendezvous.find(tmp_path / "." / "idx") == rendezvous.Announced("http://127.0.0.1:1234/", "secret", os.getpid())
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, "version": "0.0.0-other"}))
    assert rendezvous.find(index) is None  # another version's server may answer differently
    path.write_text(json.dumps({**body, "pid": os.getppid()}))
    withdraw()  # not this process's record any more: left alone
    assert path.exists()
    path.write_text("{not json")
    assert rendezvous.find(index) is None


def wait_until(condition, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def test_a_search_answered_here_keeps_a_server_warm_for_the_next_ones(fake_index, own_cache):
    warm_env = {**own_cache, "SEMSEARCH_KEEP_WARM": "4"}
    search = ["--index", str(fake_index), "search", "tomatoes sun", "--json"]
    local_only = run([*FAKE_CLI, *search, "--local"], warm_env)
    assert local_only.returncode == 0, local_only.stderr
    time.sleep(1)
    assert rendezvous.find(fake_index) is None  # --local neither asks nor starts a server
    assert not list(rendezvous.records_dir().glob("*.starting")) if rendezvous.records_dir().exists() else True

    first = run([*FAKE_CLI, *search], warm_env)
    assert first.returncode == 0, first.stderr
    announced = wait_until(lambda: rendezvous.find(fake_index))
    assert announced.token and announced.url.startswith("http://127.0.0.1:")  # loopback, its own token
    assert not list(rendezvous.records_dir().glob("*.starting"))  # the start is over
    # The real command line cannot load the fake model: only that server can answer it.
    for _ in range(3):
        again = run([*REAL_CLI, *search], warm_env)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == json.loads(first.stdout) == json.loads(local_only.stdout)
    assert rendezvous.find(fake_index).pid == announced.pid  # no second server was started
    shown = run([*FAKE_CLI, "--index", str(fake_index), "status"], warm_env)
    assert f"(pid {announced.pid})" in shown.stdout, shown.stdout + shown.stderr
    # Left alone, it stops by itself and takes its record with it.
    wait_until(lambda: rendezvous.find(fake_index) is None, timeout=30)
    wait_until(lambda: not rendezvous._alive(announced.pid), timeout=10)


def test_keep_warm_off_starts_nothing(fake_index, own_cache):
    off = run([*FAKE_CLI, "--index", str(fake_index), "search", "tides"], {**own_cache, "SEMSEARCH_KEEP_WARM": "0"})
    assert off.returncode == 0, off.stderr
    time.sleep(1)
    assert rendezvous.find(fake_index) is None


def test_a_server_of_an_index_made_again_at_its_path_is_not_asked_and_stops(fake_index, own_cache, tmp_path):
    import shutil

    warm_env = {**own_cache, "SEMSEARCH_KEEP_WARM": "60"}
    first = run([*FAKE_CLI, "--index", str(fake_index), "search", "tides", "--json"], warm_env)
    assert first.returncode == 0, first.stderr
    old = wait_until(lambda: rendezvous.find(fake_index))
    # Deleted and made again from other notes: the old server still holds the old files open.
    shutil.rmtree(fake_index)
    other = tmp_path / "other"
    other.mkdir()
    (other / "bread.md").write_text("# Bread\n\nKnead the dough and bake it.\n")
    made = run([*FAKE_CLI, "--index", str(fake_index), "index", str(other)], own_cache)
    assert made.returncode == 0, made.stderr
    assert rendezvous.find(fake_index) is None  # its record names the old database file
    found = run([*FAKE_CLI, "--index", str(fake_index), "search", "tides", "--json"], {**own_cache, "SEMSEARCH_KEEP_WARM": "0"})
    assert found.returncode == 0, found.stderr
    assert [hit["path"] for hit in json.loads(found.stdout)] == [str(other / "bread.md")]
    wait_until(lambda: not rendezvous._alive(old.pid), timeout=15)  # it noticed and stopped


@pytest.mark.parametrize(("value", "seconds"), [("", 600), ("0", 0), ("off", 0), ("30", 30), ("-5", 0),
                                                ("soon", 600), ("inf", 600), ("nan", 600)])
def test_keep_warm_reads_its_setting_without_failing(monkeypatch, value, seconds):
    from semsearch import warm

    monkeypatch.setenv("SEMSEARCH_KEEP_WARM", value)
    assert warm.idle_seconds() == seconds
