"""Scale: what writes, opens, searches, memory and disk cost as an index grows (10k / 100k / 1M chunks).

    .venv/bin/python benchmarks/scale.py                                  # this checkout: 10k, 100k, 1M
    .venv/bin/python benchmarks/scale.py --sizes 10000,100000 --json scale.json
    git worktree add /tmp/semsearch-baseline HEAD~1                       # something to compare with
    .venv/bin/python benchmarks/scale.py --baseline-src /tmp/semsearch-baseline   # before and after
    .venv/bin/python benchmarks/scale.py --baseline-src /tmp/semsearch-baseline --baseline-only

No model is loaded for the measurements. :class:`ClusteredEmbedder` makes vectors clustered like real
embeddings (topic centroids grouped under broader themes, each text near its topic's centroid), derived
from the text alone, so the same text always gets the same vector and the benchmark knows every
document's vector without asking the index. Each synthetic document is one chunk: a key tag
(``doc0000042``), a topic tag (``topic0421``), words typical of its topic and some common words, a
title, and metadata ``group`` = ``a`` (1% of documents), ``b`` (50%) or ``c`` (the rest).

With ``--baseline-src`` both that checkout and this one are measured, alternating within each size.
For each size and each source measured, a child process of this script (with ``PYTHONPATH`` pointing at
that source) builds a fresh index and measures, through the public API only (``semsearch.open``,
``Engine.add_texts / search / remove / status / close``) and the ``semsearch`` CLI as a process:

- build: ``add_texts`` in batches of ``--batch``; seconds and chunks/s; ``status().chunks`` checked;
- disk: bytes of the index folder after the build (and per chunk), against the raw vectors' bytes;
- open + first query: a new ``python -c`` process that opens the index and runs one semantic search
  (wall, median of ``--process-runs``, after one untimed run);
- CLI search: ``semsearch --index DIR search QUERY`` as a new process (wall, median, after one untimed
  run). The query is embedded by the real model's ONNX export, so the index records the real default
  model's name and the export is made once, if missing, by indexing ``corpora/travel`` with the model;
- the same CLI search while a ``semsearch serve`` of the index runs (the CLI sends the query to it),
  checked to print exactly what the local search prints;
- peak RSS: a process that opens the index, preloads what a server keeps in memory
  (``Engine.preload``, where the version has it) and runs 50 searches of every kind (``ru_maxrss``);
- warm library search: p50/p95 over ``--queries`` queries, after ``Engine.preload()`` (what a server
  does as it starts: the copies it keeps in memory, timed) and ``--warmup`` other queries (and with
  ``--prewarm``, after reading the index's files once, so the page cache holds them) (semantic, hybrid, keyword; semantic and
  hybrid with a metadata filter matching 1% and 50% of chunks), and recall@10 of each semantic case
  against exact brute force over the vectors the benchmark generated (numpy);
- writes on a warm engine: add one new text, change one text, re-add one text unchanged (and the bytes
  of files other than the SQLite database and the lock that this rewrote), remove one text; and a
  separate open + add one + close. Medians of ``--write-runs``.

Indexes go under ``--workdir`` (default a new folder in /tmp; 1M chunks take several GB) and are
deleted after each size unless ``--keep``. Prints the command line and markdown tables; ``--json``
writes every figure.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import re
import shlex
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
BIN = Path(sys.executable).parent  # the venv whose python runs this; its `semsearch` script is the CLI
TRAVEL = REPO / "corpora" / "travel"

DIMENSION = 384
THEMES = 60  # broad subjects; topics within a theme are near each other
TOPICS = 2000
THEME_SPREAD = 0.9  # how far a topic's centroid sits from its theme's (relative length of a random offset)
NOISE = 1.0  # how far a text sits from its topic's centroid: cosine to the centroid is about 0.7
SEED = 20261
VOCABULARY = 20000
TOPIC_WORDS = 12
DATABASE_FILES = {"semsearch.db", "semsearch.db-wal", "semsearch.db-shm", "write.lock"}
TOPIC_TAG = re.compile(r"\btopic(\d+)\b")
KEY_TAG = re.compile(r"\bdoc\d+\b")
FILTERS = {"1%": {"group": "a"}, "50%": {"group": "b"}}


# -- the synthetic corpus and its model-free embedder ---------------------------------------------


def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def _gaussian(keys: Sequence[str]) -> np.ndarray:
    """A standard normal vector per key, from the key's hash (Box-Muller): fast and deterministic."""
    raw = b"".join(hashlib.shake_128(key.encode()).digest(DIMENSION * 4) for key in keys)
    bits = np.frombuffer(raw, dtype="<u4").reshape(len(keys), DIMENSION) >> 8  # 24 bits: exact in float32
    uniform = (bits.astype(np.float32) + np.float32(0.5)) * np.float32(2**-24)  # in (0, 1)
    radius, angle = np.sqrt(-2 * np.log(uniform[:, ::2])), np.float32(2 * np.pi) * uniform[:, 1::2]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def topic_centroids() -> np.ndarray:
    """TOPICS unit vectors, grouped around THEMES broader ones: the same for every run."""
    rng = np.random.default_rng(SEED)
    themes = _unit(rng.standard_normal((THEMES, DIMENSION)))
    offsets = _unit(rng.standard_normal((TOPICS, DIMENSION))) * THEME_SPREAD
    return _unit(themes[np.arange(TOPICS) % THEMES] + offsets)


class ClusteredEmbedder:
    """A model-free stand-in for a 384-d sentence model whose vectors cluster by topic.

    A text's vector is its topic's centroid plus noise, normalised. The topic is the number in its
    first ``topicNNNN`` tag (else a hash of the text); the noise is seeded by its first ``docNNNNNNN``
    tag (else by the whole text), so the title or context an index prefixes does not change it.
    """

    dimension = DIMENSION
    max_tokens = 256

    def __init__(self, name: str) -> None:
        from semsearch.tokens import WordTokenCounter

        self.name = name  # recorded by the index as its model; the real model's name lets the CLI search
        self.counter = WordTokenCounter()
        self.centroids = topic_centroids()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        topics, keys = [], []
        for text in texts:
            topic, key = TOPIC_TAG.search(text), KEY_TAG.search(text)
            topics.append(int(topic.group(1)) % TOPICS if topic else _seed_of(text) % TOPICS)
            keys.append(key.group(0) if key else text)
        return _unit(self.centroids[topics] + _unit(_gaussian(keys)) * NOISE)


class Vocabulary(NamedTuple):
    words: list[str]  # pronounceable made-up words
    typical: np.ndarray  # each topic's typical words: (TOPICS, TOPIC_WORDS) indexes into words
    zipf: np.ndarray  # how often each word is used as a common word, as in real text


@functools.cache
def vocabulary() -> Vocabulary:
    """The words documents and queries are made of (made once per process, when first needed)."""
    rng = np.random.default_rng(SEED + 1)
    syllables = np.array([c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + [""])
    picks = rng.integers(0, len(syllables) - 1, (2 * VOCABULARY, 3))
    picks[rng.random(2 * VOCABULARY) < 0.4, 2] = len(syllables) - 1  # two syllables, sometimes
    candidates = syllables[picks[:, 0]] + syllables[picks[:, 1]] + syllables[picks[:, 2]]
    words = list(dict.fromkeys(candidates.tolist()))[:VOCABULARY]
    typical = rng.integers(0, VOCABULARY, (TOPICS, TOPIC_WORDS))
    zipf = 1.0 / np.arange(1, VOCABULARY + 1) ** 1.1
    return Vocabulary(words, typical, zipf / zipf.sum())

BLOCK = 1000  # documents are generated in blocks, each from its own seed, so any range is reproducible


def document_group(numbers: np.ndarray) -> np.ndarray:
    """``a`` for 1% of documents, ``b`` for 50%, ``c`` for the rest."""
    return np.where(numbers % 100 == 0, "a", np.where(numbers % 2 == 1, "b", "c"))


def _block(block: int) -> list[tuple[str, str, str, dict[str, str]]]:
    """Documents ``block * BLOCK`` onwards as (id, title, text, metadata); about 30 words: one chunk."""
    words, typical_words, zipf = vocabulary()
    rng = np.random.default_rng([SEED, block])
    numbers = np.arange(block * BLOCK, (block + 1) * BLOCK)
    topics = rng.integers(0, TOPICS, BLOCK)
    typical = np.take_along_axis(typical_words[topics], np.argsort(rng.random((BLOCK, TOPIC_WORDS)), 1), 1)[:, :8]
    common = rng.choice(VOCABULARY, (BLOCK, 20), p=zipf)
    groups = document_group(numbers)
    made = []
    for row, number in enumerate(numbers.tolist()):
        own = [words[i] for i in typical[row]]
        key = f"doc{number:07d}"
        title = f"{own[0].capitalize()} {own[1]} notes"
        text = f"{key} topic{topics[row]:04d} {' '.join(own[2:])} {' '.join(words[i] for i in common[row])}."
        made.append((key, title, text, {"group": str(groups[row])}))
    return made


def documents(start: int, stop: int) -> tuple[list[str], list[str], list[str], list[dict[str, str]]]:
    """Documents ``start`` to ``stop`` as the columns ``add_texts`` takes: ids, titles, texts, metadata."""
    made = [doc for block in range(start // BLOCK, -(-stop // BLOCK)) for doc in _block(block)]
    first = start // BLOCK * BLOCK
    ids, titles, texts, metadata = (list(column) for column in zip(*made[start - first : stop - first]))
    return ids, titles, texts, metadata


def query_texts(count: int) -> list[str]:
    """``count`` queries, each a topic tag and three of its typical words, and one common word."""
    words, typical, zipf = vocabulary()
    rng = np.random.default_rng(SEED + 2)
    queries = []
    for topic in rng.integers(0, TOPICS, count).tolist():
        picked = [words[i] for i in rng.choice(typical[topic], 3, replace=False)]
        picked.append(words[rng.choice(VOCABULARY, p=zipf)])
        queries.append(f"topic{topic:04d} {' '.join(picked)}")
    return queries


def prewarm(folder: Path) -> int:
    """Read every file of the index once, so that the page cache holds it (as it does for a
    process that has served long enough on a machine with the memory for it); bytes read."""
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as file:
                while chunk := file.read(1 << 22):
                    total += len(chunk)
    return total


def key_number(path: str) -> int:
    """The document number of a hit's path (the id ``add_texts`` was given)."""
    return int(path[3:]) if path.startswith("doc") and path[3:].isdigit() else -1


# -- exact search, the oracle for recall -----------------------------------------------------------


def exact_top(matrix: np.ndarray, queries: np.ndarray, allowed: np.ndarray | None, limit: int) -> np.ndarray:
    """Row numbers of the ``limit`` best rows for each query by inner product, among ``allowed`` rows."""
    step = 100_000
    scores, rows = [], []
    for start in range(0, len(matrix), step):
        part = queries @ matrix[start : start + step].T
        if allowed is not None:
            part[:, ~allowed[start : start + step]] = -np.inf
        best = np.argpartition(-part, limit - 1, axis=1)[:, :limit]
        scores.append(np.take_along_axis(part, best, 1))
        rows.append(best + start)
    scores, rows = np.concatenate(scores, axis=1), np.concatenate(rows, axis=1)
    return np.take_along_axis(rows, np.argsort(-scores, axis=1)[:, :limit], 1)


def recall(found: list[list[int]], exact: np.ndarray) -> float:
    """Mean share of the exact top rows that were found."""
    shares = [len(set(hits) & set(truth.tolist())) / len(truth) for hits, truth in zip(found, exact)]
    return float(np.mean(shares))


# -- small measuring tools --------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def percentile(values: Sequence[float], share: float) -> float:
    return float(np.percentile(np.asarray(values), share))


def file_states(directory: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime, inode) of every file in the index folder except the database and the lock."""
    states = {}
    for path in directory.rglob("*"):
        if path.is_file() and path.name not in DATABASE_FILES:
            info = path.stat()
            states[str(path.relative_to(directory))] = (info.st_size, info.st_mtime_ns, info.st_ino)
    return states


def bytes_rewritten(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]) -> int:
    """Bytes of files created or rewritten between two :func:`file_states`."""
    return sum(state[0] for name, state in after.items() if before.get(name) != state)


def folder_bytes(directory: Path) -> dict[str, int]:
    sizes = {"database": 0, "other": 0}
    for path in directory.rglob("*"):
        if path.is_file():
            sizes["database" if path.name in DATABASE_FILES else "other"] += path.stat().st_size
    return {**sizes, "total": sizes["database"] + sizes["other"]}


def run_process(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run a process to its end; its wall time and stdout. Fails loudly if it fails."""
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=env["SCALE_WORKDIR"], check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall, result.stdout


# -- the child: one size, one source ---------------------------------------------------------------

# Run as its own process: open the index, run searches, report timings and peak memory.
SEARCH_PROCESS = """
import json, resource, sys, time
started = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import semsearch
from scale import ClusteredEmbedder, search_options
imported = time.perf_counter()
engine = semsearch.open(sys.argv[2], embedder=ClusteredEmbedder(sys.argv[3]))
opened = time.perf_counter()
queries, kinds = json.loads(sys.argv[4]), sys.argv[5].split(",")
if sys.argv[6:] == ["preload"] and hasattr(engine, "preload"):
    engine.preload()  # what a server holds in memory counts towards its peak
for number, query in enumerate(queries):
    engine.search(query, limit=10, **search_options(kinds[number % len(kinds)]))
    if number == 0:
        first = time.perf_counter()
engine.close()
print(json.dumps({"semsearch": semsearch.__file__, "import": imported - started, "open": opened - imported,
                  "first_query": first - opened,
                  "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

SEARCH_KINDS = ("semantic", "semantic 1%", "semantic 50%", "hybrid", "hybrid 1%", "hybrid 50%", "keyword")


def search_options(kind: str) -> dict[str, Any]:
    """``Engine.search`` options for a kind of search named like ``"hybrid 1%"``."""
    mode, _, share = kind.partition(" ")
    return {"mode": mode, **({"metadata": FILTERS[share]} if share else {})}


class SizeRun:
    """Every measurement of one index size, against whatever ``semsearch`` this process imports."""

    def __init__(self, args: argparse.Namespace) -> None:
        import semsearch
        from semsearch.embedder import canonical_model_name

        expected = os.environ.get("PYTHONPATH", "")
        if not semsearch.__file__.startswith(expected):
            raise RuntimeError(f"imported {semsearch.__file__}, not the semsearch under {expected}")
        self.semsearch = semsearch
        self.args = args
        self.size = args.size
        self.index = Path(args.index)
        self.model = canonical_model_name(None)
        self.embedder = ClusteredEmbedder(self.model)
        self.results: dict[str, Any] = {"size": self.size, "semsearch": semsearch.__file__}

    def open(self):
        return self.semsearch.open(self.index, embedder=self.embedder)

    def measure(self) -> dict[str, Any]:
        self.build()
        self.processes()
        self.warm_searches()
        self.writes()
        return self.results

    # build and disk

    def build(self) -> None:
        engine = self.open()
        seconds = None
        if self.args.reuse:  # an index kept by an earlier run (which left it as it built it)
            log(f"{self.size:,} chunks: measuring the index kept in {self.index}")
        else:
            log(f"{self.size:,} chunks: building in batches of {self.args.batch:,}")
            seconds = 0.0
            for start in range(0, self.size, self.args.batch):
                ids, titles, texts, metadata = documents(start, min(start + self.args.batch, self.size))
                seconds += timed(lambda: engine.add_texts(texts, ids=ids, titles=titles, metadata=metadata))
                log(f"  {start + len(ids):,} chunks, {seconds:.1f} s")
        chunks = engine.status().chunks
        engine.close()
        if chunks != self.size:
            raise RuntimeError(f"expected {self.size} chunks (one per document), the index holds {chunks}")
        disk = folder_bytes(self.index)
        self.results.update(
            build_seconds=seconds, chunks_per_second=self.size / seconds if seconds else None, chunks=chunks, disk=disk,
            disk_per_chunk=disk["total"] / chunks, vector_bytes=chunks * DIMENSION * 4,
        )

    # new processes

    def processes(self) -> None:
        runs = self.args.process_runs
        log(f"  new processes: open + first query, CLI search, peak RSS ({runs} runs each)")
        env = {**os.environ, "SEMSEARCH_KEEP_WARM": "0"}  # "on its own" means no server started by a search
        probe = [sys.executable, "-c", SEARCH_PROCESS, str(BENCHMARKS), str(self.index), self.model]
        one = json.dumps(query_texts(1))
        first = [self._search_process(probe + [one, "semantic"], env) for _ in range(runs + 1)][1:]
        self.results["open_first_query"] = {
            "wall": statistics.median(r["wall"] for r in first),
            "walls": [r["wall"] for r in first],
            **{key: statistics.median(r[key] for r in first) for key in ("import", "open", "first_query")},
        }
        cli = [str(BIN / "semsearch"), "--index", str(self.index), "search", query_texts(1)[0], "-n", "10"]
        walls = [run_process(cli, env)[0] for _ in range(runs + 1)][1:]
        self.results["cli_search"] = {"wall": statistics.median(walls), "walls": walls, "command": shlex.join(cli)}
        if (Path(self.semsearch.__file__).parent / "client.py").is_file():  # a version that asks a server
            self.results["cli_search_served"] = self._served_cli(cli, env, runs)
        rss = self._search_process(probe + [json.dumps(query_texts(50)), ",".join(SEARCH_KINDS), "preload"], env)
        self.results["peak_rss_bytes"] = rss["maxrss_bytes"]

    def _served_cli(self, cli: list[str], env: dict[str, str], runs: int) -> dict[str, Any]:
        """The same CLI search while a `semsearch serve` of the index runs (the CLI asks it); checks
        that it prints what the local search prints."""
        serve = [str(BIN / "semsearch"), "--index", str(self.index), "serve", "--port", "0"]
        server = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                  cwd=env["SCALE_WORKDIR"])
        try:
            line = server.stdout.readline()  # "Serving DIR at URL ..." once it listens
            if " at http://" not in line:
                raise RuntimeError(f"semsearch serve did not start: {line}{server.stdout.read()[-3000:]}")
            local = run_process(cli + ["--local"], env)[1]
            timed = [run_process(cli, env) for _ in range(runs + 1)][1:]
            if any(output != local for _, output in timed):
                raise RuntimeError("the search a server answered printed something else than the local search")
            walls = [wall for wall, _ in timed]
            return {"wall": statistics.median(walls), "walls": walls, "command": shlex.join(cli) + "  # beside: " + shlex.join(serve)}
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()

    def _search_process(self, command: list[str], env: dict[str, str]) -> dict[str, Any]:
        wall, output = run_process(command, env)
        measured = json.loads(output.strip().splitlines()[-1])
        if measured["semsearch"] != self.semsearch.__file__:
            raise RuntimeError(f"a search process imported {measured['semsearch']}, not {self.semsearch.__file__}")
        return {"wall": wall, **measured}

    # warm searches and recall

    def warm_searches(self) -> None:
        every = query_texts(self.args.queries + self.args.warmup)
        queries, warmup = every[: self.args.queries], every[self.args.queries :] or every[-1:]
        log(f"  warm searches: {len(queries)} queries x {len(SEARCH_KINDS)} kinds, after {len(warmup)} others")
        if self.args.prewarm:
            log(f"  prewarm: read the index's files once ({prewarm(self.index) / 2**30:.2f} GB)")
        engine = self.open()
        if hasattr(engine, "preload"):  # (older versions have nothing to preload)
            self.results["preload_s"] = timed(engine.preload)
            log(f"  preload: {seconds(self.results['preload_s'])}")
        timings, found = {}, {}
        for kind in SEARCH_KINDS:
            options = search_options(kind)
            for query in warmup:  # untimed, other queries: what a server that has been answering has loaded
                engine.search(query, limit=10, **options)
            times, rows = [], []
            for query in queries:
                started = time.perf_counter()
                hits = engine.search(query, limit=10, **options)
                times.append(time.perf_counter() - started)
                rows.append([key_number(hit.path) for hit in hits])
            timings[kind] = {"p50": percentile(times, 50), "p95": percentile(times, 95), "mean": float(np.mean(times))}
            found[kind] = rows
        engine.close()
        self.results["search"] = timings
        self.results["recall_at_10"] = self._recall(queries, found)

    def _recall(self, queries: list[str], found: dict[str, list[list[int]]]) -> dict[str, float]:
        log("  recall: exact search over the generated vectors")
        matrix = np.empty((self.size, DIMENSION), dtype=np.float32)
        for start in range(0, self.size, 10_000):
            texts = documents(start, min(start + 10_000, self.size))[2]
            matrix[start : start + len(texts)] = self.embedder.embed(texts)
        vectors = self.embedder.embed(queries)
        groups = document_group(np.arange(self.size))
        allowed = {"": None, **{share: groups == f["group"] for share, f in FILTERS.items()}}
        recalls = {}
        for kind in SEARCH_KINDS:
            mode, _, share = kind.partition(" ")
            if mode == "semantic":
                recalls[kind] = recall(found[kind], exact_top(matrix, vectors, allowed[share], 10))
        return recalls

    # writes

    def writes(self) -> None:
        runs = self.args.write_runs
        log(f"  writes: add, change, unchanged re-add, remove ({runs} runs each), open + add + close")
        engine = self.open()
        self._write(engine, "warm-up", "", "new")  # untimed: loads what a first write loads
        added = [f"added-{run}" for run in range(runs)]
        add = [self._write(engine, key, "", "new") for key in added]
        change = [self._write(engine, key, "changed", "changed") for key in added]
        same, rewritten = [], []
        for key in added:
            before = file_states(self.index)
            same.append(self._write(engine, key, "changed", "unchanged"))
            rewritten.append(bytes_rewritten(before, file_states(self.index)))
        remove = [self._remove(engine, key) for key in [*added, "warm-up"]][:-1]
        engine.close()
        cold = []
        for run in range(runs):
            started = time.perf_counter()
            engine = self.open()
            self._write(engine, f"cold-{run}", "", "new")
            engine.close()
            cold.append(time.perf_counter() - started)
        with self.open() as engine:  # leave the index as built, so --reuse can measure it again
            engine.remove(*[f"cold-{run}" for run in range(runs)])
        self.results["writes"] = {
            "add_one": statistics.median(add), "change_one": statistics.median(change),
            "readd_unchanged": statistics.median(same), "readd_unchanged_bytes_rewritten": max(rewritten),
            "remove_one": statistics.median(remove), "open_add_one_close": statistics.median(cold),
            "all": {"add_one": add, "change_one": change, "readd_unchanged": same, "remove_one": remove,
                    "open_add_one_close": cold, "readd_unchanged_bytes_rewritten": rewritten},
        }

    def _write(self, engine, key: str, variant: str, expected: str) -> float:
        """Seconds to add one text; checks that the index saw it as ``expected`` (new/changed/unchanged)."""
        text = self._text(key, variant)
        started = time.perf_counter()
        summary = engine.add_texts([text], ids=[key])
        seconds = time.perf_counter() - started
        if getattr(summary, expected) != 1:
            raise RuntimeError(f"adding {key!r} ({variant or 'first'}) was not {expected}: {summary}")
        return seconds

    @staticmethod
    def _remove(engine, key: str) -> float:
        started = time.perf_counter()
        removed = engine.remove(key)
        seconds = time.perf_counter() - started
        if removed != 1:
            raise RuntimeError(f"removing {key!r} removed {removed} documents")
        return seconds

    def _text(self, key: str, variant: str = "") -> str:
        """A one-chunk text for the write measurements, on a topic of its own key."""
        return f"{key} {variant} topic{_seed_of(key) % TOPICS:04d} " + " ".join(vocabulary().words[:30])


def child(args: argparse.Namespace) -> None:
    results = SizeRun(args).measure()
    Path(args.out).write_text(json.dumps(results, indent=2))


# -- the parent: sources, sizes, tables ------------------------------------------------------------


def source_env(source: Path, workdir: Path) -> dict[str, str]:
    """An environment whose ``import semsearch`` is ``source``'s, migrations included.

    An installed semsearch ships ``migrations/`` as ``semsearch/migrations``; an editable install maps
    it with an import hook that would win over ``PYTHONPATH``. So a folder of links puts ``source``'s
    package and migrations together, where a plain import finds them first.
    """
    links = workdir / "pythonpath" / "semsearch"
    shutil.rmtree(links.parent, ignore_errors=True)
    links.mkdir(parents=True)
    for entry in (source / "semsearch").iterdir():
        if entry.name != "__pycache__":
            (links / entry.name).symlink_to(entry.resolve())
    (links / "migrations").symlink_to((source / "migrations").resolve())
    # PYTHONSAFEPATH: `python -c` must not import a semsearch from the current folder or the script's.
    return dict(os.environ, PYTHONPATH=str(links.parent), PYTHONSAFEPATH="1", HF_HUB_OFFLINE="1",
                SCALE_WORKDIR=str(workdir))


def describe_source(source: Path) -> str:
    """The source's commit, and whether its working tree has changes."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(source), *arguments], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "semsearch", "migrations")
    return f"{commit}{' + uncommitted changes' if dirty else ''}"


def ensure_query_model(env: dict[str, str], workdir: Path) -> None:
    """Make the real model's ONNX export (used by `semsearch search`) if the user cache lacks it."""
    check = (
        "from semsearch.embedder import canonical_model_name as c\n"
        "from semsearch.onnx_embedder import OnnxQueryEmbedder as O\n"
        "from semsearch.model_cache import query_model_dir as d\n"
        "print(O.available(d(c(None))))"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env,
                            cwd=env["SCALE_WORKDIR"])
    if result.stdout.strip() == "True":
        return
    log(f"making the query model's ONNX export: indexing {TRAVEL} with the real model (not timed)")
    command = [str(BIN / "semsearch"), "--index", str(workdir / "travel-index"), "index", str(TRAVEL)]
    run_process(command, env)
    shutil.rmtree(workdir / "travel-index", ignore_errors=True)


def run_size(size: int, label: str, env: dict[str, str], workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    index = workdir / f"{label}-{size}"
    out = workdir / f"{label}-{size}.json"
    reuse = args.reuse and (index / "semsearch.db").is_file()
    if not reuse:
        shutil.rmtree(index, ignore_errors=True)
    command = [
        sys.executable, __file__, "--child", "--size", str(size), "--index", str(index), "--out", str(out),
        "--batch", str(args.batch), "--queries", str(args.queries), "--warmup", str(args.warmup), *(["--prewarm"] if args.prewarm else []),
        "--write-runs", str(args.write_runs), "--process-runs", str(args.process_runs),
        *(["--reuse"] if reuse else []),
    ]
    log(f"{label}: {size:,} chunks")
    started = time.perf_counter()
    subprocess.run(command, env=env, cwd=env["SCALE_WORKDIR"], check=True)
    results = json.loads(out.read_text())
    results["child_seconds"] = time.perf_counter() - started
    log(f"{label}: {size:,} chunks done in {results['child_seconds']:.0f} s")
    if not (args.keep or args.reuse):
        shutil.rmtree(index, ignore_errors=True)
    return results


def seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def megabytes(value: float) -> str:
    return f"{value / 1e9:.2f} GB" if value >= 1e9 else f"{value / 1e6:.0f} MB"


def tables(rows: list[dict[str, Any]]) -> Iterator[str]:
    """Markdown: issue 6's table, then every other figure."""
    def table(header: list[str], cells: Callable[[dict[str, Any]], list[str]]) -> Iterator[str]:
        yield "| " + " | ".join(header) + " |"
        yield "|" + "---|" * len(header)
        for row in rows:
            yield "| " + " | ".join([row["label"], f"{row['size']:,}", *cells(row)]) + " |"
        yield ""

    yield from table(
        ["code", "chunks", "add one text", "re-add the same text (no change)",
         "open + first query: new process (of which open + query)",
         "warm semantic p50", "semantic p50, filter 50%", "hybrid p50", "disk"],
        lambda r: [seconds(r["writes"]["add_one"]), seconds(r["writes"]["readd_unchanged"]),
                   f"{seconds(r['open_first_query']['wall'])} "
                   f"({seconds(r['open_first_query']['open'] + r['open_first_query']['first_query'])})",
                   seconds(r["search"]["semantic"]["p50"]),
                   seconds(r["search"]["semantic 50%"]["p50"]), seconds(r["search"]["hybrid"]["p50"]),
                   megabytes(r["disk"]["total"])],
    )
    yield "Writes (warm engine unless stated; medians):\n"
    yield from table(
        ["code", "chunks", "build", "chunks/s", "add one", "change one", "re-add unchanged",
         "bytes rewritten by it", "remove one", "open + add one + close"],
        lambda r: [seconds(r["build_seconds"]) if r["build_seconds"] else "(reused)",
                   f"{r['chunks_per_second']:,.0f}" if r["chunks_per_second"] else "", seconds(r["writes"]["add_one"]),
                   seconds(r["writes"]["change_one"]), seconds(r["writes"]["readd_unchanged"]),
                   megabytes(r["writes"]["readd_unchanged_bytes_rewritten"]), seconds(r["writes"]["remove_one"]),
                   seconds(r["writes"]["open_add_one_close"])],
    )
    yield "New processes (wall, medians) and memory:\n"
    yield from table(
        ["code", "chunks", "open + first query", "(import / open / query)", "`semsearch search`",
         "`semsearch search`, a `serve` running", "peak RSS, 50 searches", "raw vectors", "disk", "disk per chunk"],
        lambda r: [seconds(r["open_first_query"]["wall"]),
                   " / ".join(seconds(r["open_first_query"][k]) for k in ("import", "open", "first_query")),
                   seconds(r["cli_search"]["wall"]),
                   seconds(r["cli_search_served"]["wall"]) if "cli_search_served" in r else "",
                   megabytes(r["peak_rss_bytes"]), megabytes(r["vector_bytes"]),
                   megabytes(r["disk"]["total"]), f"{r['disk_per_chunk'] / 1000:.2f} KB"],
    )
    yield "Warm library search, p50 / p95, and recall@10 against exact search (after `Engine.preload`, timed):\n"
    yield from table(
        ["code", "chunks", "preload", *SEARCH_KINDS, "recall@10 semantic (none / 1% / 50%)"],
        lambda r: [seconds(r["preload_s"]) if "preload_s" in r else "–"]
        + [f"{seconds(r['search'][k]['p50'])} / {seconds(r['search'][k]['p95'])}" for k in SEARCH_KINDS]
        + [" / ".join(f"{r['recall_at_10'][k]:.3f}" for k in ("semantic", "semantic 1%", "semantic 50%"))],
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="chunks, comma-separated")
    parser.add_argument("--baseline-src", type=Path, help="another checkout of semsearch to measure too")
    parser.add_argument("--baseline-only", action="store_true", help="measure --baseline-src, not this checkout")
    parser.add_argument("--workdir", type=Path, help="where the indexes go (default: a new folder in /tmp)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the indexes")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the indexes an earlier --keep run left in --workdir instead of building them")
    parser.add_argument("--batch", type=int, default=20_000, help="texts per add_texts call when building")
    parser.add_argument("--queries", type=int, default=200, help="queries per kind of warm search")
    parser.add_argument("--prewarm", action="store_true",
                        help="read the index's files once before the warm searches (the page cache holds the index)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="other queries searched untimed first, per kind (a warm process has answered some)")
    parser.add_argument("--write-runs", type=int, default=7, help="runs of each write measurement")
    parser.add_argument("--process-runs", type=int, default=5, help="runs of each new-process measurement")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_only and not args.baseline_src:
        parser.error("--baseline-only needs --baseline-src")
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child(args)
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    sources = [] if args.baseline_only else [("current", REPO)]
    if args.baseline_src:
        sources.insert(0, ("baseline", args.baseline_src.resolve()))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="semsearch-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"Command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    environments = {}
    for label, source in sources:
        print(f"{label}: {source} at {describe_source(source)}", flush=True)
        environments[label] = source_env(source, workdir / label)
        ensure_query_model(environments[label], workdir)
    rows = []
    for size in sizes:  # sources alternate within a size, so a busy machine slows both alike
        for label, _ in sources:
            rows.append({"label": label, **run_size(size, label, environments[label], workdir, args)})
    print(f"Load average {os.getloadavg()[0]:.1f} at the end.\n")
    print("\n".join(tables(rows)))
    if args.json:
        args.json.write_text(json.dumps({"command": sys.argv, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
