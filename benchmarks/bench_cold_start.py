"""Cold start: wall time of ``facekit compare a.jpg b.jpg`` in a fresh process (issue 16: at most 1.5 s).

Runs the command ``--runs`` times one after another (the files stay in the OS page cache,
as for a user who runs it twice) and prints each wall time and CPU time (user + system),
their medians and the load average before and after: on a shared machine a load above
the core count inflates the wall times, so say which load they were measured at. ``--importtime`` also writes Python's
``-X importtime`` report of one run, sorted by cumulative time, to find what is slow.

    python benchmarks/bench_cold_start.py [--runs 5] [--pipeline default] [--importtime /tmp/imports.txt]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT.parent / "shared" / "faces" / "face_recognition_examples" / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--a", type=Path, default=EXAMPLES / "obama.jpg")
    parser.add_argument("--b", type=Path, default=EXAMPLES / "obama2.jpg")
    parser.add_argument("--importtime", type=Path, default=None, help="write a sorted -X importtime report here")
    args = parser.parse_args()

    facekit = Path(sys.executable).with_name("facekit")
    command = [str(facekit), "compare", str(args.a), str(args.b), "--pipeline", args.pipeline]
    load_before = os.getloadavg()[0]
    times, cpu_times = [], []
    for _ in range(args.runs):
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_times.append(after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime)
    load_after = os.getloadavg()[0]
    print("wall " + " ".join(f"{t:.2f}" for t in times))
    print("cpu  " + " ".join(f"{t:.2f}" for t in cpu_times))
    print(f"median {statistics.median(times):.2f} s wall, {statistics.median(cpu_times):.2f} s CPU (user + system) "
          f"over {args.runs} runs of `facekit compare` ({args.pipeline}); load average {load_before:.2f} before, "
          f"{load_after:.2f} after, {os.cpu_count()} CPUs")

    if args.importtime:
        code = f"import sys; sys.argv = {['facekit'] + command[1:]!r}\nfrom facekit.cli import main\nmain()"
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
        rows = [line for line in done.stderr.splitlines() if line.startswith("import time:") and "|" in line]
        rows = [r for r in rows if r.split("|")[1].strip().isdigit()]
        rows.sort(key=lambda r: int(r.split("|")[1]), reverse=True)
        args.importtime.write_text("\n".join(rows) + "\n")
        print(f"wrote {args.importtime} (slowest imports first, microseconds: self | cumulative)")


if __name__ == "__main__":
    main()
