"""`semsearch search` as a new process: on its own, and with a `semsearch serve` of the index running.

    .venv/bin/python benchmarks/cli_start.py --index INDEX [--query TEXT] [--runs 5]

Starts ``semsearch serve --port 0`` on INDEX, waits until it listens, then runs the same
``semsearch --index INDEX search QUERY`` as a new process alternately with and without
``--local`` (one untimed run of each first), checks that both print the same, and prints each
wall time and the medians. ``benchmarks/scale.py`` measures the same two figures at each size;
this script measures them alone, e.g. with every other process on the machine paused.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent  # the venv whose python runs this; its `semsearch` is the CLI


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return wall, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--query", default="how do I configure logging")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    search = [str(BIN / "semsearch"), "--index", str(args.index), "search", args.query, "-n", "10"]
    serve = [str(BIN / "semsearch"), "--index", str(args.index), "serve", "--port", "0"]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        if " at http://" not in line:
            raise SystemExit(f"semsearch serve did not start: {line}{server.stdout.read()}")
        timed(search)
        timed(search + ["--local"])
        served, local = [], []
        for _ in range(args.runs):
            wall, printed = timed(search)
            served.append(wall)
            wall, printed_here = timed(search + ["--local"])
            local.append(wall)
            if printed != printed_here:
                raise SystemExit("the served search printed something else than the local one")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"served: {' '.join(f'{x:.3f}' for x in served)} s; median {statistics.median(served):.3f} s")
    print(f"local:  {' '.join(f'{x:.3f}' for x in local)} s; median {statistics.median(local):.3f} s")


if __name__ == "__main__":
    main()
