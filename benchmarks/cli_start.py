"""`semsearch search` as a new process: on its own, with a `semsearch serve` of the index running,
and with the server a search keeps warm by itself.

    .venv/bin/python benchmarks/cli_start.py --index INDEX [--query TEXT] [--runs 5]

1. ``serve``: starts ``semsearch serve --port 0`` on INDEX, waits until it listens, then runs
   the same ``semsearch --index INDEX search QUERY`` as a new process alternately with and
   without ``--local`` (one untimed run of each first), checks that both print the same, and
   stops the server.
2. ``keep warm``: with ``SEMSEARCH_KEEP_WARM`` set, times the first search (answered in its
   own process, which then starts a server in the background), waits for that server, then
   alternates searches (sent to it) with ``--local`` ones, and stops it.

With ``--baseline-src CHECKOUT`` it instead times ``search --local`` of this version and of that
checkout (``git worktree add``), alternating, and checks that both print the same:

    .venv/bin/python benchmarks/cli_start.py --index INDEX --baseline-src /tmp/sem-head --runs 9

``--results-may-differ`` times them even where their hits differ (an approximate search
changed), and says in how many rounds they did. ``--baseline-cache DIR`` gives the baseline a model cache of its own (``SEMSEARCH_CACHE``), e.g. a
copy of the cache as that version wrote it. Both versions run from compiled bytecode.

Prints each wall time and the medians. ``benchmarks/scale.py`` measures the first two figures at
each size; this script measures them alone, e.g. with every other process on the machine paused.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from semsearch import rendezvous  # noqa: E402  (standard library only)

BIN = Path(sys.executable).parent  # the venv whose python runs this; its `semsearch` is the CLI


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return wall, result.stdout


def alternate(search: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Wall times of ``search`` and of ``search --local``, alternating; both must print the same."""
    served, local = [], []
    for _ in range(runs):
        wall, printed = timed(search, env)
        served.append(wall)
        wall, printed_here = timed(search + ["--local"], env)
        local.append(wall)
        if printed != printed_here:
            raise SystemExit("the served search printed something else than the local one")
    return served, local


def with_serve(args, search: list[str]) -> tuple[list[float], list[float]]:
    env = {**os.environ, "SEMSEARCH_KEEP_WARM": "0"}
    serve = [str(BIN / "semsearch"), "--index", str(args.index), "serve", "--port", "0"]
    server = subprocess.Popen(serve, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = server.stdout.readline()
        if " at http://" not in line:
            raise SystemExit(f"semsearch serve did not start: {line}{server.stdout.read()}")
        timed(search, env)
        timed(search + ["--local"], env)
        return alternate(search, env, args.runs)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def with_keep_warm(args, search: list[str]) -> tuple[float, list[float], list[float]]:
    env = {**os.environ, "SEMSEARCH_KEEP_WARM": "120"}
    if rendezvous.find(args.index) is not None:
        raise SystemExit("a server of this index is running already; stop it first")
    first, _ = timed(search, env)
    deadline = time.monotonic() + 120
    while (announced := rendezvous.find(args.index)) is None:
        if time.monotonic() > deadline:
            raise SystemExit("the search started no server within 120 s")
        time.sleep(0.1)
    try:
        timed(search, env)
        return first, *alternate(search, env, args.runs)
    finally:
        os.kill(announced.pid, signal.SIGINT)


def against_baseline(args, search: list[str]) -> None:
    """``search --local`` by this version and by ``args.baseline_src``, alternating."""
    links = Path(args.work) / "pythonpath" / "semsearch"
    if links.parent.exists():
        for entry in links.parent.rglob("*"):
            if entry.is_symlink():
                entry.unlink()
    links.mkdir(parents=True, exist_ok=True)
    source = args.baseline_src.resolve()
    for entry in (source / "semsearch").iterdir():
        if entry.name != "__pycache__":
            (links / entry.name).symlink_to(entry)
    (links / "migrations").symlink_to(source / "migrations")
    # Both versions run from compiled bytecode, as an installed package does (with
    # PYTHONDONTWRITEBYTECODE set, nothing would be cached and every run would compile again).
    import compileall

    for folder in (Path(__file__).resolve().parent.parent / "semsearch", links):
        compileall.compile_dir(str(folder), quiet=1)
    env = {**os.environ, "SEMSEARCH_KEEP_WARM": "0"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    base_env = {**env, "PYTHONPATH": str(links.parent), "PYTHONSAFEPATH": "1"}
    if args.baseline_cache:  # the baseline reads its own copy of the model cache, as it left it
        base_env["SEMSEARCH_CACHE"] = str(args.baseline_cache)
    command = [sys.executable, "-m", "semsearch", *search[1:], "--local"]
    timed(command, env)
    timed(command, base_env)
    current, baseline = [], []
    differed = 0
    for _ in range(args.runs):
        wall, printed = timed(command, env)
        current.append(wall)
        wall, printed_before = timed(command, base_env)
        baseline.append(wall)
        if printed != printed_before:
            if not args.results_may_differ:
                raise SystemExit("the two versions printed different results")
            differed += 1
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if differed:
        print(f"the two versions printed different results in {differed} of {args.runs} rounds")
    print(line("this version, --local:", current))
    print(line(f"{source.name}, --local:", baseline))


def line(label: str, walls: list[float]) -> str:
    return f"{label:28s} {' '.join(f'{x:.3f}' for x in walls)} s; median {statistics.median(walls):.3f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--query", default="how do I configure logging")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-src", type=Path, help="compare --local searches with this checkout instead")
    parser.add_argument("--baseline-cache", type=Path, help="SEMSEARCH_CACHE for the baseline's searches (its own exports)")
    parser.add_argument("--results-may-differ", action="store_true",
                        help="with --baseline-src: time versions whose approximate search differs (say so, not stop)")
    parser.add_argument("--work", default="/tmp/semsearch-cli-start", help="where the baseline's import links go")
    args = parser.parse_args()
    search = [str(BIN / "semsearch"), "--index", str(args.index), "search", args.query, "-n", "10"]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.baseline_src:
        against_baseline(args, search)
        return
    served, local = with_serve(args, search)
    first, warm, local_again = with_keep_warm(args, search)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(line("served (semsearch serve):", served))
    print(line("local:", local))
    print(f"{'keep warm, first search:':28s} {first:.3f} s (answered here; starts the server)")
    print(line("keep warm, the next ones:", warm))
    print(line("local (same rounds):", local_again))


if __name__ == "__main__":
    main()
