"""The HTTP server and watch mode on a SciFact-sized index, measured with a real HTTP client.

    .venv/bin/python benchmarks/live.py --index /tmp/scifact-index
    .venv/bin/python benchmarks/live.py --index DIR --queries 300 --seconds 20 --saves 10
    .venv/bin/python benchmarks/live.py --index DIR --latency-only

``--index`` is an index of SciFact's corpus (5,183 abstracts, ~10,400 chunks) made with the
real model, e.g. by ``semsearch --index DIR eval ../shared/data/beir/scifact``; it is copied to a
temporary folder first, since the watch steps write into it. Three measurements:

1. **Warm search latency.** ``semsearch serve`` (a separate process) answers SciFact's test
   queries one at a time over a kept-alive connection, each mode in turn, after a warm-up; the
   baseline is the same query through ``Engine.search`` in this process, interleaved query by
   query. Client-side wall time: p50 / p90 / p99. Then ``GET /documents/ID`` against
   ``Engine.document(ID)`` the same way: what the HTTP layer itself costs.
2. **Concurrent clients while watch re-indexes.** 8 client threads search without pause for
   ``--seconds`` while ``semsearch watch`` follows a folder (into the same index) that a
   driver keeps changing (a new or edited file every 0.5 s). Errors (any non-200 or exception)
   and latency, for three kinds of server in alternating rounds: engine calls with no bound
   (as many at once as requests), at most two at once (what ``serve`` does on two cores: one per
   core) and one at a time. The clients cycle through ``--queries`` queries; with more than the
   256 query vectors an engine keeps, nearly every request embeds its query.
3. **Save to searchable.** A new file with a unique word is saved into the watched folder; the
   client polls ``/search`` every 20 ms until it is found. Reported with the watch update's own
   time (which includes embedding the file) and the difference, which is what watching adds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import semsearch  # noqa: E402

DATA = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data"))
SERVER = """
import sys
import semsearch
from semsearch.server import serve
engine = semsearch.open(sys.argv[1], create=False)
serve(engine, port=0, at_once=int(sys.argv[2]) or None, ready=lambda url: print(url, flush=True))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True, help="a real-model index of SciFact's corpus")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each concurrent round")
    parser.add_argument("--rounds", type=int, default=2, help="concurrent rounds per server kind")
    parser.add_argument("--saves", type=int, default=10)
    parser.add_argument("--latency-only", action="store_true", help="measure 1. only")
    args = parser.parse_args()
    queries = [json.loads(line)["text"] for line in (DATA / "beir" / "scifact" / "queries.jsonl").open()]
    queries = queries[: args.queries]
    print(f"load average at start: {_load()}")
    with tempfile.TemporaryDirectory(prefix="semsearch-live-") as scratch:
        index = Path(scratch) / "index"
        shutil.copytree(args.index, index)
        with semsearch.open(index, create=False) as engine:
            status = engine.status()
        print(f"index: {status.documents} documents, {status.chunks} chunks, {status.model}, {status.vector_search} search")
        latency(index, queries)
        if not args.latency_only:
            live(index, queries, Path(scratch) / "watched", args)
    print(f"load average at end: {_load()}")


def live(index: Path, queries: list[str], folder: Path, args: argparse.Namespace) -> None:
    """2. and 3.: clients and saves while ``semsearch watch`` follows ``folder`` into the index."""
    folder.mkdir()
    (folder / "seed.md").write_text("# Seed\n\nThe first note in the watched folder.\n")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "semsearch", "--index", str(index), "watch", str(folder), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    updates: list[dict] = []
    threading.Thread(target=_collect, args=(watcher, updates), daemon=True).start()
    _wait(lambda: updates, 300, "watch's first update")
    try:
        concurrency(index, queries, folder, updates, args.seconds, args.rounds)
        save_to_searchable(index, folder, updates, args.saves)
    finally:
        watcher.terminate()  # SIGTERM stops watch as Ctrl-C does (SIGINT may be ignored in a background job)
        watcher.wait(timeout=120)
    print(f"watch exit status {watcher.returncode}; verify: ", end="")
    with semsearch.open(index, create=False) as engine:
        print("OK" if engine.verify().ok else "PROBLEMS")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _collect(process: subprocess.Popen, updates: list[dict]) -> None:
    for line in process.stdout:
        if line.startswith("{"):
            updates.append({**json.loads(line), "at": time.monotonic()})


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


class Server:
    def __init__(self, index: Path, kind: str = "0") -> None:
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(index), kind],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        found = re.search(r"http://\S+/", line)
        if not found:
            raise SystemExit(f"the server did not start: {line!r}")
        self.url = found.group(0)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))] * 1000  # noqa: E731
    return f"{statistics.median(values) * 1000:.1f} / {pick(0.9):.1f} / {pick(0.99):.1f}"


def latency(index: Path, queries: list[str]) -> None:
    server = Server(index)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client, semsearch.open(index, create=False) as engine:
            for query in queries[:30]:  # warm up both: model, mapped segments, pooled connections
                client.get("/search", params={"q": query})
                engine.search(query)
            print("\n| mode | HTTP p50 / p90 / p99 (ms) | Engine.search in-process p50 / p90 / p99 (ms) |")
            print("|---|---:|---:|")
            for mode in ("hybrid", "semantic", "keyword"):
                http, direct = [], []
                for query in queries:
                    started = time.perf_counter()
                    response = client.get("/search", params={"q": query, "mode": mode})
                    http.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
                    started = time.perf_counter()
                    engine.search(query, mode=mode)
                    direct.append(time.perf_counter() - started)
                print(f"| {mode} | {percentiles(http)} | {percentiles(direct)} |", flush=True)
            # What HTTP itself adds: a request whose work is two primary-key reads.
            document = engine.search(queries[0], limit=1)[0].document_id
            http, direct = [], []
            for _ in range(len(queries)):
                started = time.perf_counter()
                assert client.get(f"/documents/{document}").status_code == 200
                http.append(time.perf_counter() - started)
                started = time.perf_counter()
                engine.document(document)
                direct.append(time.perf_counter() - started)
            print(f"| `GET /documents/ID` (what HTTP itself costs) | {percentiles(http)} | {percentiles(direct)} |")
    finally:
        server.close()


KINDS = {"concurrent": 0, "two at once": 2, "serialised": 1}  # server kinds: searches run at once (0: no bound)


def concurrency(index: Path, queries: list[str], folder: Path, updates: list[dict], seconds: float, rounds: int) -> None:
    print(f"\n8 clients for {seconds:.0f} s per round while watch re-indexes a folder changed every 0.5 s:")
    print("| server | round | requests | errors | requests/s | p50 / p90 / p99 (ms) | watch updates |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    totals: dict[str, list] = {}
    for number in range(rounds):
        for kind, at_once in KINDS.items():
            server = Server(index, str(at_once))
            try:
                with httpx.Client(base_url=server.url, timeout=60) as client:
                    for query in queries[:10]:
                        client.get("/search", params={"q": query})
                stop = threading.Event()
                times: list[float] = []
                errors: list[str] = []

                def search_loop(offset: int) -> None:
                    with httpx.Client(base_url=server.url, timeout=60) as client:
                        position = offset
                        while not stop.is_set():
                            query = queries[position % len(queries)]
                            position += 8
                            started = time.perf_counter()
                            try:
                                response = client.get("/search", params={"q": query})
                                if response.status_code != 200:
                                    errors.append(f"{response.status_code}: {response.text[:200]}")
                            except httpx.HTTPError as error:
                                errors.append(f"{type(error).__name__}: {error}")
                            times.append(time.perf_counter() - started)

                before = len(updates)
                clients = [threading.Thread(target=search_loop, args=(i,)) for i in range(8)]
                for thread in clients:
                    thread.start()
                driver = threading.Thread(target=_change_files, args=(folder, stop, number))
                driver.start()
                time.sleep(seconds)
                stop.set()
                for thread in [*clients, driver]:
                    thread.join()
                done = len(updates) - before
                print(f"| {kind} | {number + 1} | {len(times)} | {len(errors)} | {len(times) / seconds:.0f} "
                      f"| {percentiles(times)} | {done} |", flush=True)
                for error in errors[:3]:
                    print(f"  error: {error}")
                totals.setdefault(kind, []).append((len(times), len(errors)))
            finally:
                server.close()
    for kind, results in totals.items():
        print(f"{kind}: {sum(r for r, _ in results)} requests, {sum(e for _, e in results)} errors in all")


def _change_files(folder: Path, stop: threading.Event, number: int) -> None:
    """A new file, then an edit of the one before, every half second."""
    step = 0
    while not stop.wait(0.5):
        step += 1
        (folder / f"round{number}-{step}.md").write_text(
            f"# Note {step}\n\nA note about gene expression and protein folding, round {number} step {step}.\n"
        )
        if step > 1:
            (folder / f"round{number}-{step - 1}.md").write_text(f"# Note {step - 1}\n\nEdited: cell biology.\n")


def save_to_searchable(index: Path, folder: Path, updates: list[dict], saves: int) -> None:
    time.sleep(2)  # let the last round's changes settle into their update
    server = Server(index)
    try:
        rows = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for number in range(saves):
                word = "zq" + uuid.uuid4().hex[:10]
                before = len(updates)
                saved = time.monotonic()
                (folder / f"save-{number}.md").write_text(f"# Save {number}\n\nA note that mentions {word} once.\n")
                while True:
                    hits = client.get("/search", params={"q": word, "mode": "keyword", "limit": 1}).json()
                    if hits:
                        break
                    if time.monotonic() - saved > 60:
                        raise SystemExit("a saved file was not searchable within 60 s")
                    time.sleep(0.02)
                found = time.monotonic() - saved
                _wait(lambda: len(updates) > before, 30, "the update's report")
                update = next(u for u in updates[before:] if u["new"] or u["changed"])
                rows.append((found, update["elapsed_seconds"]))
                time.sleep(0.5)
        found_times = [found for found, _ in rows]
        index_times = [took for _, took in rows]
        overheads = [found - took for found, took in rows]
        print(f"\nsave to searchable over HTTP, {saves} saves: median {statistics.median(found_times):.2f} s "
              f"(max {max(found_times):.2f}); the update itself (walk, embed, write) median "
              f"{statistics.median(index_times):.2f} s; waiting for quiet and noticing: median "
              f"{statistics.median(overheads):.2f} s (max {max(overheads):.2f})")
    finally:
        server.close()


if __name__ == "__main__":
    main()
