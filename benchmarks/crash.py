"""SIGKILL a real `semsearch` process at random moments, N times: while indexing (segments
written, merged, garbage collected), rebuilding and removing, with files edited, deleted and
renamed between runs.

    .venv/bin/python benchmarks/crash.py               # 100 kills (a few minutes)
    .venv/bin/python benchmarks/crash.py --kills 12    # what tests/test_crash.py runs in CI

After every kill `semsearch verify` must pass, the index must open and search in a new process,
and its segments must hold exactly the committed chunks. At the end, the resumed index must equal
a clean index of the same files (documents, chunk texts, vectors within 1e-5), and the last run
must have embedded only what no killed run had committed. The child processes use the tests'
fake embedder (no model: the campaign is about storage, not embeddings).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
TESTS = BENCHMARKS.parent / "tests"  # the fake embedder and the segment reader live with the tests
sys.path.insert(0, str(TESTS))

from vectors_on_disk import live_vector_ids, stored_chunk_ids  # noqa: E402

os.environ["SEMSEARCH_KEEP_WARM"] = "0"  # the searches run here must not leave servers behind

# A child process running the real CLI with the fake embedder, slowed a little so a kill can land
# anywhere, small waves so there are many commits, and small merge windows so merges happen often.
CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder
import semsearch.engine, semsearch.ingest, semsearch.vector_store, semsearch.cli

class Slow(FakeEmbedder):
    def embed(self, texts):
        time.sleep(0.01 * len(texts))
        return super().embed(texts)
slow = Slow()
semsearch.engine.SentenceTransformerEmbedder = lambda name=None: slow
semsearch.engine.canonical_model_name = lambda name: slow.name
semsearch.ingest.WAVE_CHUNKS = 24
semsearch.vector_store.MERGE_FACTOR = 4
semsearch.vector_store.MERGE_SKEW = 0.5
sys.argv = ['semsearch'] + sys.argv[1:]
print("started", file=sys.stderr, flush=True)
semsearch.cli.main()
"""


def run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD.format(tests=str(TESTS)), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_note(path: Path, rng: random.Random) -> None:
    topics = ["tides", "bread", "roses", "comets", "ledgers", "ferries", "glaciers", "violins"]
    paragraphs = [
        f"{rng.choice(topics).title()} note {rng.randrange(10**6)}.\n\n"
        + " ".join(rng.choice(topics) + str(rng.randrange(50)) for _ in range(40))
        for _ in range(rng.randrange(1, 5))
    ]
    path.write_text("\n\n".join(paragraphs))


def mutate(root: Path, rng: random.Random) -> None:
    """Edit, delete, rename and add a few files, as a user would between runs."""
    files = sorted(root.glob("*.txt"))
    for path in rng.sample(files, min(len(files), 10)):
        write_note(path, rng)
    for path in rng.sample(files, min(len(files), 2)):
        if path.exists():
            path.unlink()
    for path in rng.sample(sorted(root.glob("*.txt")), 2):
        path.rename(root / f"renamed-{rng.randrange(10**6)}.txt")
    for _ in range(3):
        write_note(root / f"new-{rng.randrange(10**6)}.txt", rng)


def check_consistent(index: Path) -> None:
    """Committed chunks and segment contents agree, verify passes, and a new process can search."""
    assert list(live_vector_ids(index, 64)) == list(stored_chunk_ids(index))
    verify = run_cli("--index", str(index), "verify", "--json")
    out, err = verify.communicate(timeout=60)
    assert verify.returncode == 0 and json.loads(out)["ok"], (out, err)
    search = run_cli("--index", str(index), "search", "tides bread", "--json", "--limit", "3")
    out, err = search.communicate(timeout=60)
    assert search.returncode in (0, 1), err
    assert "Traceback" not in err
    if search.returncode == 0:
        assert isinstance(json.loads(out), list)


def snapshot(index: Path) -> dict:
    with sqlite3.connect(index / "semsearch.db") as connection:
        documents = sorted(connection.execute("SELECT path, content_hash FROM documents").fetchall())
        chunks = connection.execute(
            "SELECT d.path, c.ordinal, c.text, c.vector FROM chunks c JOIN documents d ON d.id = c.document_id"
        ).fetchall()
    return {
        "documents": documents,
        "chunks": {(path, ordinal): (text, np.frombuffer(blob, "<f4")) for path, ordinal, text, blob in chunks},
    }


def campaign(workdir: Path, kills: int, seed: int = 20261126) -> dict:
    """Run the campaign in ``workdir``; raises AssertionError on the first broken guarantee."""
    rng = random.Random(seed)
    root = workdir / "notes"
    root.mkdir()
    for i in range(120):
        write_note(root / f"note{i:03}.txt", rng)
    index = workdir / "idx"
    tally = {"kills": 0, "finished_before_the_kill": 0, "by_action": {}, "verified": 0}
    for kill in range(kills):
        if kill:
            mutate(root, rng)
        action = rng.choice(["index", "index", "index", "rebuild", "remove"]) if kill > 1 else "index"
        if action == "rebuild":
            args = ["rebuild", "--vector-index", rng.choice(["ivf", "exact", "auto"])]
        elif action == "remove":
            victims = sorted(root.glob("*.txt"))[: rng.randrange(1, 6)]
            args = ["remove", *map(str, victims)]
        else:
            args = ["index", str(root), "--json"]
        process = run_cli("--index", str(index), *args)
        assert process.stderr.readline().strip() == "started"  # imports done; now the work starts
        if kill == 0:
            process.wait(timeout=120)  # the first run builds the index whole
        time.sleep(rng.uniform(0.0, 0.8))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            tally["kills"] += 1
            tally["by_action"][action] = tally["by_action"].get(action, 0) + 1
        else:
            tally["finished_before_the_kill"] += 1
        _out, err = process.communicate(timeout=60)
        assert "Traceback" not in err, err
        if (index / "semsearch.db").exists():
            check_consistent(index)
            tally["verified"] += 1
    # Finish the job in this process, with an embedder that records what it is asked to embed.
    from conftest import FakeEmbedder

    import semsearch
    from semsearch.rows import embed_hash

    with sqlite3.connect(index / "semsearch.db") as connection:
        committed = {row[0] for row in connection.execute("SELECT embed_hash FROM chunks")}
    resumed_embedder = FakeEmbedder()
    with semsearch.open(index, embedder=resumed_embedder) as engine:
        engine.index(root)
    again = {embed_hash(text) for text in resumed_embedder.embedded} & committed
    assert not again, f"the resumed run embedded {len(again)} texts that were already committed"
    clean = workdir / "clean"
    with semsearch.open(clean, embedder=FakeEmbedder()) as engine:
        engine.index(root)
    resumed, fresh = snapshot(index), snapshot(clean)
    assert resumed["documents"] == fresh["documents"], "the resumed index holds other documents"
    assert resumed["chunks"].keys() == fresh["chunks"].keys(), "the resumed index holds other chunks"
    for key, (text, vector) in fresh["chunks"].items():
        assert resumed["chunks"][key][0] == text
        assert np.allclose(resumed["chunks"][key][1], vector, atol=1e-5)
    check_consistent(index)
    tally["resumed_run_embedded"] = len(resumed_embedder.embedded)
    tally["documents"] = len(fresh["documents"])
    return tally


def main() -> None:
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=100, help="processes to start and kill")
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    print(f"Command: `python benchmarks/crash.py --kills {args.kills} --seed {args.seed}`", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semsearch-crash-") as workdir:
        tally = campaign(Path(workdir), args.kills, args.seed)
    tally["seconds"] = round(time.perf_counter() - started)
    print(json.dumps(tally, indent=2))
    print("Every guarantee held.")


if __name__ == "__main__":
    main()
