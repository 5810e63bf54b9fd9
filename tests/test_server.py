"""`semsearch serve` as a real process on a free port, over real HTTP: the endpoints, their
errors, the token, live data while another process writes, and concurrent clients.

Most tests run the command line with the fake embedder (tests/fake_cli.py); those marked slow
use the real model, as a user would."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import semsearch
from semsearch.cli import cli
from semsearch.locking import WriteLock
from processes import FAKE_CLI, REAL_CLI, Process, server

NOTES = {
    "garden/tomatoes.md": "# Growing tomatoes\n\nTomatoes need full sun and deep watering.\n",
    "garden/roses.txt": "Pruning roses\n\nPrune roses in late winter above an outward bud.\n",
    "kitchen/bread.md": "# Baking bread\n\nKnead the dough, let the yeast rise, bake in a hot oven.\n",
    "kitchen/soup.rst": "Onion soup\n==========\n\nCaramelise the onions slowly in butter.\n",
    "sea/tides.md": "# Tides\n\nThe moon pulls the oceans and makes tides twice a day.\n",
}


def write_notes(root: Path) -> Path:
    for name, text in NOTES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="module")
def fake_index(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("server")
    notes = write_notes(base / "notes")
    index = base / "idx"
    process = Process([*FAKE_CLI, "--index", str(index), "index", str(notes)])
    assert process.finish() == 0, process.text()
    return index, notes


@pytest.fixture(scope="module")
def fake_server(fake_index):
    index, _notes = fake_index
    with server(FAKE_CLI, index) as (url, _process):
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client


def fake_cli_json(index: Path, *args: str):
    process = Process([*FAKE_CLI, "--index", str(index), *args])
    assert process.finish() == 0, process.text()
    return json.loads(process.stdout())


def test_search_returns_what_search_json_prints(fake_server, fake_index):
    index, _ = fake_index
    for query, params in (("tomatoes sun", {}), ("bread oven", {"mode": "keyword"}),
                          ("moon tides", {"mode": "semantic", "limit": 2, "group": "true"})):
        response = fake_server.get("/search", params={"q": query, **params})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        # --local: without it the command would ask this very server (semsearch.client).
        args = ["search", query, "--json", "--local", "-n", str(params.get("limit", 10)), "--mode", params.get("mode", "hybrid")]
        if params.get("group"):
            args.append("-d")
        assert response.json() == fake_cli_json(index, *args)


def test_search_filters(fake_server):
    hits = fake_server.get("/search", params={"q": "tomatoes bread", "type": ["md"], "path": "*kitchen*"}).json()
    assert hits and all(hit["path"].endswith("kitchen/bread.md") for hit in hits)
    assert fake_server.get("/search", params={"q": "tomatoes", "meta": "encoding=nope"}).json() == []


def test_every_hit_has_a_relevance_and_min_score_keeps_the_relevant_ones(fake_server):
    hits = fake_server.get("/search", params={"q": "tomatoes sun", "limit": 5}).json()
    assert len(hits) == 5 and all(0.0 <= hit["relevance"] <= 1.0 for hit in hits)
    low, high = sorted({hit["relevance"] for hit in hits})[:2]  # (JSON rounds: cut between two values)
    floor = (low + high) / 2
    kept = fake_server.get("/search", params={"q": "tomatoes sun", "limit": 5, "min_score": floor}).json()
    assert [hit["chunk_id"] for hit in kept] == [hit["chunk_id"] for hit in hits if hit["relevance"] >= floor]
    assert [hit["rank"] for hit in kept] == list(range(1, len(kept) + 1))


def test_documents_similar_and_status(fake_server, fake_index):
    _, notes = fake_index
    hit = fake_server.get("/search", params={"q": "tides moon oceans", "limit": 1}).json()[0]
    document = fake_server.get(f"/documents/{hit['document_id']}").json()
    assert document["path"] == str((notes / "sea/tides.md").resolve())
    assert "moon pulls the oceans" in document["text"]
    assert document["chunks"][0]["chunk_id"] == hit["chunk_id"]
    assert set(document) >= {"id", "path", "title", "format", "metadata", "text", "chunks"}
    similar = fake_server.get(f"/similar/{hit['document_id']}", params={"limit": 3}).json()
    assert len(similar) == 3 and hit["document_id"] not in [h["document_id"] for h in similar]
    status = fake_server.get("/status").json()
    assert status["documents"] == len(NOTES) and status["revision"] >= 1
    assert status["indexing"] == {"state": "idle"}


def test_openapi_and_pages_are_served_locally(fake_server):
    spec = fake_server.get("/openapi.json").json()
    assert {"/search", "/similar/{document_id}", "/documents/{document_id}", "/status", "/index"} <= set(spec["paths"])
    for page in ("/", "/docs"):
        response = fake_server.get(page)
        assert response.status_code == 200 and "text/html" in response.headers["content-type"]
        # Every script and stylesheet comes from this server: no CDN.
        for source in __import__("re").findall(r'(?:src|href)="([^"]+)"', response.text):
            assert source.startswith(("/", "#", "data:")), source
            if source.startswith("/static/"):
                assert fake_server.get(source).status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/search", {}, 422, "q: Field required"),
        ("/search", {"q": ""}, 422, "q: String should have at least 1 character"),
        ("/search", {"q": "x" * 1001}, 422, "at most 1000 characters"),
        ("/search", {"q": "x", "limit": 0}, 422, "limit"),
        ("/search", {"q": "x", "limit": 101}, 422, "less than or equal to 100"),
        ("/search", {"q": "x", "mode": "magic"}, 422, "mode"),
        ("/search", {"q": "x", "min_score": 1.5}, 422, "min_score: Input should be less than or equal to 1"),
        ("/search", {"q": "x", "min_score": "high"}, 422, "min_score"),
        ("/search", {"q": "x", "meta": "novalue"}, 400, "KEY=VALUE"),
        ("/search", {"q": "   "}, 400, "the query is empty"),
        ("/documents/999999", {}, 404, "no document with id 999999"),
        ("/documents/abc", {}, 422, "document_id"),
        ("/similar/999999", {}, 404, "no document with id 999999"),
        ("/no/such/page", {}, 404, "Not Found"),
    ],
)
def test_errors_are_json_with_a_status(fake_server, path, params, status, words):
    response = fake_server.get(path, params=params)
    assert response.status_code == status
    body = response.json()
    assert body["status"] == status and words in body["error"], body
    assert "Traceback" not in response.text


def test_request_bodies_and_methods_are_bounded(fake_server):
    big = fake_server.post("/index", content=b"x" * (70 * 1024))
    assert big.status_code == 413 and big.json()["status"] == 413
    assert fake_server.put("/search").status_code == 405
    assert fake_server.put("/search").json()["error"] == "Method Not Allowed"


def test_a_token_is_checked_on_every_request(fake_index):
    index, _ = fake_index
    with server(FAKE_CLI, index, env={"SEMSEARCH_TOKEN": "s3cret"}) as (url, _process):
        with httpx.Client(base_url=url, timeout=30) as client:
            for path in ("/search?q=tides", "/status", "/", "/static/app.js", "/openapi.json", "/documents/1"):
                refused = client.get(path)
                assert refused.status_code == 401 and refused.json()["status"] == 401, path
            assert client.get("/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert client.get("/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200
            # The page's link: ?token= once, then the cookie it sets.
            first = client.get("/", params={"token": "s3cret"})
            assert first.status_code == 200 and "semsearch_token" in first.headers["set-cookie"]
            assert "HttpOnly" in first.headers["set-cookie"]
            assert client.get("/search", params={"q": "tides"}).status_code == 200


def test_other_addresses_need_a_flag_and_a_token(fake_index):
    index, _ = fake_index
    runner = CliRunner()
    for args, words in (
        (["--host", "0.0.0.0"], "--allow-remote"),
        (["--host", "0.0.0.0", "--allow-remote"], "needs a token"),
        (["--host", "example.org", "--allow-remote"], "needs a token"),
    ):
        result = runner.invoke(cli, ["--index", str(index), "serve", *args], env={"SEMSEARCH_TOKEN": ""})
        assert result.exit_code == 1 and words in result.output, result.output
        assert result.output.count("\n") == 1


def test_a_missing_index_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(cli, ["--index", str(tmp_path / "none"), "serve"])
    assert result.exit_code == 1 and "no semsearch index" in result.output


def test_it_keeps_answering_and_sees_new_documents_while_another_process_writes(tmp_path):
    """8 clients search without pause while a writer process indexes, edits and removes: no error,
    and each write is visible to the next search without a restart."""
    notes = write_notes(tmp_path / "notes")
    index = tmp_path / "idx"
    assert Process([*FAKE_CLI, "--index", str(index), "index", str(notes)]).finish() == 0
    errors: list[str] = []
    searches = 0
    stop = threading.Event()

    with server(FAKE_CLI, index) as (url, _process):

        def client_loop() -> None:
            nonlocal searches
            with httpx.Client(base_url=url, timeout=60) as client:
                while not stop.is_set():
                    for mode in ("semantic", "keyword", "hybrid"):
                        response = client.get("/search", params={"q": "zebra tides bread", "mode": mode})
                        if response.status_code != 200:
                            errors.append(f"{response.status_code} {response.text}")
                        searches += 1

        clients = [threading.Thread(target=client_loop) for _ in range(8)]
        for thread in clients:
            thread.start()
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                for round_ in range(3):
                    (notes / f"zebra{round_}.md").write_text(f"# Zebra {round_}\n\nzebra stripes round{round_}\n")
                    writer = Process([*FAKE_CLI, "--index", str(index), "index", str(notes)])
                    assert writer.finish() == 0, writer.text()
                    hits = client.get("/search", params={"q": f"zebra stripes round{round_}", "mode": "keyword"}).json()
                    assert hits and hits[0]["path"].endswith(f"zebra{round_}.md")
                (notes / "zebra0.md").unlink()
                writer = Process([*FAKE_CLI, "--index", str(index), "index", str(notes)])
                assert writer.finish() == 0, writer.text()
                hits = client.get("/search", params={"q": "round0", "mode": "keyword"}).json()
                assert not any(hit["path"].endswith("zebra0.md") for hit in hits)
        finally:
            stop.set()
            for thread in clients:
                thread.join(timeout=60)
    assert errors == []
    assert searches > 24


@pytest.mark.slow
def test_the_real_command_serves_the_real_model(real_corpus_index):
    with server(REAL_CLI, real_corpus_index) as (url, _process):
        with httpx.Client(base_url=url, timeout=60) as client:
            hits = client.get("/search", params={"q": "how many vacation days do employees get", "limit": 3}).json()
    expected = CliRunner().invoke(
        cli, ["--index", str(real_corpus_index), "search", "how many vacation days do employees get", "--json", "-n", "3"]
    )
    assert hits == json.loads(expected.output)
    assert hits[0]["path"].endswith("vacation-policy.md")


@pytest.mark.slow
def test_post_index_reindexes_the_folders_in_a_child_process(real_corpus_index, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(Path(__file__).resolve().parent.parent / "corpora" / "everyday", corpus / "everyday")
    index = tmp_path / "idx"
    shutil.copytree(real_corpus_index, index)
    with semsearch.open(index) as engine:  # the copy holds the repository's corpora: point it at ours
        engine.remove(*engine.folders())
    assert CliRunner().invoke(cli, ["--index", str(index), "index", str(corpus)]).exit_code == 0
    with server(REAL_CLI, index) as (url, _process):
        with httpx.Client(base_url=url, timeout=60) as client:
            (corpus / "everyday" / "kites.md").write_text("# Flying kites\n\nA kite needs steady wind and a long line.\n")
            lock = WriteLock(index)
            lock.acquire()
            try:
                refused = client.post("/index")
                assert refused.status_code == 409 and "writing to the index" in refused.json()["error"]
            finally:
                lock.release()
            started = client.post("/index")
            assert started.status_code == 202, started.text
            assert started.json()["folders"] == [str((corpus / "everyday").resolve())]
            deadline = time.monotonic() + 240
            while (state := client.get("/status").json()["indexing"])["state"] == "running":
                assert time.monotonic() < deadline, state
                time.sleep(0.5)
            assert state["state"] == "done" and state["summary"]["new"] == 1, state
            hits = client.get("/search", params={"q": "flying a kite in the wind", "limit": 1}).json()
            assert hits[0]["path"].endswith("kites.md")


def test_a_port_in_use_is_a_one_line_error(fake_index, fake_model):
    import socket

    index, _ = fake_index
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["--index", str(index), "serve", "--port", str(port)])
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output, result.output
    assert result.output.count("\n") == 1


def test_an_empty_index_answers_409_until_a_writer_fills_it(tmp_path, fake_embedder):
    index = tmp_path / "idx"
    semsearch.open(index, embedder=fake_embedder).close()  # exists, holds nothing, no model recorded yet
    notes = write_notes(tmp_path / "notes")
    with server(FAKE_CLI, index) as (url, _process):
        with httpx.Client(base_url=url, timeout=60) as client:
            empty = client.get("/search", params={"q": "tides"})
            assert empty.status_code == 409 and "holds no documents yet" in empty.json()["error"]
            writer = Process([*FAKE_CLI, "--index", str(index), "index", str(notes)])
            assert writer.finish() == 0, writer.text()
            hits = client.get("/search", params={"q": "moon tides", "limit": 1}).json()
            assert hits[0]["path"].endswith("tides.md")
            assert client.get("/status").json()["documents"] == len(NOTES)


def test_too_many_filter_values_are_refused(fake_server):
    response = fake_server.get("/search", params={"q": "tides", "type": ["md"] * 21})
    assert response.status_code == 422 and "type" in response.json()["error"]


def test_engine_calls_at_once_are_bounded_and_the_rest_wait_their_turn(tmp_path, fake_embedder):
    """Eight requests at once: at most `at_once` reach the engine together (one per core by
    default), and every request is answered."""
    import asyncio

    from semsearch import server as server_module
    from semsearch.server import create_app

    assert server_module.SEARCHES_AT_ONCE >= 1
    with semsearch.open(tmp_path / "idx", embedder=fake_embedder) as engine:
        engine.add_texts(["a note about kestrels", "a note about herons"], ids=["k", "h"])
        running, most, lock = [0], [0], threading.Lock()
        original = engine.search

        def slow_search(*args, **kwargs):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            try:
                return original(*args, **kwargs)
            finally:
                with lock:
                    running[0] -= 1

        engine.search = slow_search

        async def eight(app) -> list[int]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                responses = await asyncio.gather(*(client.get("/search", params={"q": "kestrel"}) for _ in range(8)))
            return [response.status_code for response in responses]

        for bound in (2, 1):
            most[0] = 0
            assert asyncio.run(eight(create_app(engine, at_once=bound))) == [200] * 8
            assert most[0] == bound
        most[0] = 0
        assert asyncio.run(eight(create_app(engine, at_once=None))) == [200] * 8
        assert most[0] > 2  # unbounded: as many as the thread pool runs
