"""The measurements behind the index defaults: precision (fp32 / int8) and chunking (size / overlap).

    .venv/bin/python benchmarks/index_choices.py --precision fp32 int8 --chunking 254:32
    .venv/bin/python benchmarks/index_choices.py --precision int8 --chunking 254:32 254:0 192:0 scifact cisi

Every combination of dataset, precision and chunking (``TOKENS:OVERLAP``) is indexed into its own
fresh folder under ``--work`` and scored with ``semsearch eval``'s code (all three modes). Prints
one markdown row per combination: chunks, the seconds the index took (on a shared machine, so only
the nDCG columns are exact), nDCG@10 per mode; then, for each dataset, hybrid nDCG@10 of every
combination against the first one. With ``--work`` given, an index already there is reused
(nothing is embedded again) and its earlier index time is read from ``results.jsonl`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data")) / "beir"
DATASETS = ("scifact", "cranfield", "cisi", "medline", "adi")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", default=DATASETS)
    parser.add_argument("--precision", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    parser.add_argument("--chunking", nargs="+", default=["254:32"], metavar="TOKENS:OVERLAP")
    parser.add_argument("--work", type=Path, help="keep the indexes here (default: a temporary folder)")
    args = parser.parse_args()

    from semsearch.engine import Engine
    from semsearch.evaluation import evaluate, load_dataset

    work = args.work or Path(tempfile.mkdtemp(prefix="semsearch-choices-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "results.jsonl"
    earlier = {}
    if log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            earlier[row["key"]] = row
    chunkings = [tuple(int(part) for part in item.split(":")) for item in args.chunking]
    rows = []
    print(f"Load average at the start: {os.getloadavg()[0]:.1f}", flush=True)
    print("| dataset | precision | chunking | chunks | index s | semantic | keyword | hybrid |")
    print("|---|---|---|---:|---:|---:|---:|---:|", flush=True)
    try:
        for name in args.datasets:
            dataset = load_dataset(DATA / name)
            for tokens, overlap in chunkings:
                for precision in args.precision:
                    key = f"{name}-{precision}-{tokens}-{overlap}"
                    folder = work / key
                    reused = folder.exists() and key in earlier
                    if folder.exists() and not reused:
                        shutil.rmtree(folder)  # a run that did not finish
                    with Engine.open(folder, precision=precision, chunk_tokens=tokens, overlap_tokens=overlap) as engine:
                        started = time.perf_counter()
                        result = evaluate(dataset, engine=engine)
                        chunks = engine.status().chunks
                    ndcg = {r.mode: r.overall.ndcg_at_10 for r in result.results}
                    seconds = earlier[key]["index_seconds"] if reused else result.indexing.elapsed_seconds
                    row = {"key": key, "dataset": name, "precision": precision, "tokens": tokens,
                           "overlap": overlap, "chunks": chunks, "index_seconds": seconds, "ndcg": ndcg,
                           "load": os.getloadavg()[0], "wall": time.perf_counter() - started}
                    if not reused:
                        with log.open("a") as handle:
                            handle.write(json.dumps(row) + "\n")
                    rows.append(row)
                    print(f"| {name} | {precision} | {tokens}/{overlap} | {chunks} | {seconds:.0f} | "
                          f"{ndcg['semantic']:.4f} | {ndcg['keyword']:.4f} | {ndcg['hybrid']:.4f} |", flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}\n")
    print("Hybrid nDCG@10 against the first combination of each dataset:\n")
    for name in args.datasets:
        own = [row for row in rows if row["dataset"] == name]
        if not own:
            continue
        base = own[0]
        for row in own[1:]:
            change = row["ndcg"]["hybrid"] - base["ndcg"]["hybrid"]
            print(f"- {name}: {row['precision']} {row['tokens']}/{row['overlap']} vs {base['precision']} "
                  f"{base['tokens']}/{base['overlap']}: {change:+.4f}")


if __name__ == "__main__":
    main()
