"""Benchmark the pipeline at scale: streaming, Dask, and the in-memory path for reference.

Run from the repository root::

    python benchmarks/bench_scale.py --data /path/to/dataset [--rows 100000000] [--generate]

``--generate`` first writes the dataset with the enterprise simulator (1,000 hosts, one
parquet file per day, enough days for ``--rows``). Every case runs in its own process, so
its peak resident memory (``ru_maxrss``, the whole process: Python, numpy, pandas,
pyarrow) is its own. In one run:

1. ``stream``: ``stream_detect`` over the whole dataset, end to end (parquet read,
   window features, fit, score, alerts).
2. ``pandas``: the first days holding about ``--reference-rows`` rows, read into memory,
   then ``detect``; and ``stream`` on the same days, whose alerts must be identical.
3. ``dask``: ``detect_dask`` on a ``LocalCluster`` with 1 then 2 single-threaded
   workers, over the whole dataset; alerts compared with the streaming ones row for row.

Writes the ``scale`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine_line, write_section

ROWS_PER_HOST_DAY = 3_370  # measured: 1,000 hosts simulate about 3.37M rows a weekday

PRELUDE = """
import json, resource, sys, time, warnings
sys.path.insert(0, {root!r})
warnings.simplefilter("ignore")
import pandas as pd
from pathlib import Path
def finish(result, alerts, out):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.update(cpu=usage.ru_utime + usage.ru_stime, peak_mib=usage.ru_maxrss / 1024,
                  alerts=int(alerts["alert"].sum()), windows=len(alerts))
    alerts.to_parquet(out)
    print(json.dumps(result))
"""

STREAM = PRELUDE + """
from t1046lab.scale.streaming import stream_detect
import t1046lab.detectors.anomaly  # imports (scikit-learn) are not the pipeline's time
t = time.perf_counter()
alerts = stream_detect({data!r}, {detector!r}, chunksize={chunksize})
seconds = time.perf_counter() - t
finish({{"seconds": seconds, "rows": alerts.attrs["streamed"]["rows"]}}, alerts, {out!r})
"""

PANDAS = PRELUDE + """
from t1046lab.scale.streaming import iter_chunks
from t1046lab.detectors import detect
import t1046lab.detectors.anomaly
t = time.perf_counter()
conns = pd.concat(list(iter_chunks({data!r})), ignore_index=True)
read_s = time.perf_counter() - t
t = time.perf_counter()
alerts = detect(conns, {detector!r})
seconds = time.perf_counter() - t
finish({{"seconds": seconds, "read_seconds": read_s, "rows": len(conns)}}, alerts, {out!r})
"""

DASK = PRELUDE + """
from distributed import Client, LocalCluster
from t1046lab.scale.dask_engine import detect_dask
import t1046lab.detectors.anomaly
with LocalCluster(n_workers={workers}, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster):
    t = time.perf_counter()
    alerts = detect_dask({data!r}, {detector!r})
    seconds = time.perf_counter() - t
import pyarrow.parquet as pq
rows = sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(Path({data!r}).rglob("*.parquet")))
finish({{"seconds": seconds, "rows": rows}}, alerts, {out!r})
"""


def run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def generate(data: Path, rows: int) -> None:
    from t1046lab.datasets import simulate_enterprise

    days = math.ceil(rows / (1000 * ROWS_PER_HOST_DAY) * 7 / 5) + 1  # weekends are quieter
    simulate_enterprise(1000, days, random_state=0, out=data)


def day_files(data: Path) -> list[Path]:
    return sorted(p for p in data.rglob("*.parquet"))


def subset(data: Path, rows: int, into: Path) -> Path:
    """A dataset of the first day folders of ``data`` holding at least ``rows`` rows (symlinks)."""
    import pyarrow.parquet as pq

    into.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in day_files(data):
        if total >= rows:
            break
        folder = into / path.parent.name
        folder.mkdir(exist_ok=True)
        (folder / path.name).symlink_to(path)
        total += pq.ParquetFile(path).metadata.num_rows
    return into


def same(a: str, b: str) -> str:
    import pandas as pd

    left, right = pd.read_parquet(a), pd.read_parquet(b)
    try:
        pd.testing.assert_frame_equal(left, right)
    except AssertionError as exc:
        return f"**different**: {str(exc).splitlines()[0]}"
    return f"identical ({len(left):,} rows)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="day-partitioned canonical parquet dataset")
    parser.add_argument("--generate", action="store_true", help="simulate the dataset first if it is absent")
    parser.add_argument("--rows", type=int, default=100_000_000, help="rows of the streamed dataset (first days)")
    parser.add_argument("--reference-rows", type=int, default=10_000_000, help="rows of the in-memory reference")
    parser.add_argument("--detector", default="port-entropy")
    parser.add_argument("--chunksize", type=int, default=1_000_000)
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs/benchmarks.md")
    args = parser.parse_args()
    if args.generate and not args.data.exists():
        generate(args.data, args.rows)
    load = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="t1046-bench-scale-"))
    big = subset(args.data, args.rows, work / "big")
    small = subset(args.data, args.reference_rows, work / "small")
    fmt = {"root": str(ROOT), "detector": args.detector, "chunksize": args.chunksize}
    results: list[tuple[str, dict]] = []

    def case(label: str, template: str, data: Path, out: str, **extra: object) -> dict:
        result = run(template.format(data=str(data), out=str(work / out), **fmt, **extra))
        print(label, json.dumps(result), flush=True)
        results.append((label, result))
        return result

    stream_big = case("streaming, whole dataset", STREAM, big, "stream_big.parquet")
    case("in memory (pandas), first days", PANDAS, small, "pandas_small.parquet")
    case("streaming, same first days", STREAM, small, "stream_small.parquet")
    checks = [f"- Streaming alerts on the first days against the in-memory ones: {same(work / 'stream_small.parquet', work / 'pandas_small.parquet')}."]
    if not args.no_dask:
        for workers in (1, 2):
            case(f"Dask LocalCluster, {workers} worker{'s' if workers > 1 else ''}, whole dataset", DASK, big, f"dask_{workers}.parquet", workers=workers)
        checks.append(f"- Dask (2 workers) alerts on the whole dataset against the streaming ones: {same(work / 'dask_2.parquet', work / 'stream_big.parquet')}.")
        checks.append(f"- Dask with 1 worker against 2 workers: {same(work / 'dask_1.parquet', work / 'dask_2.parquet')}.")

    lines = [
        f"`python benchmarks/bench_scale.py --data DATASET --rows {args.rows:_} --detector {args.detector}`: "
        f"`{args.detector}` end to end (read the canonical parquet, window features, fit on all windows, score, "
        f"alerts) over a dataset simulated by `simulate_enterprise(1000, days, random_state=0, out=DIR)`, one "
        "parquet file per day. Each case runs in a fresh process; peak memory is that process's maximum "
        "resident set (for Dask, the client process; workers are separate processes, see below). "
        "Rows per second are rows over wall-clock seconds of the call, imports excluded.",
        "",
        "| case | rows | wall s | CPU s (this process) | rows/s | peak memory MiB | alerts | windows scored |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in results:
        extra = ""
        if "read_seconds" in r:
            extra = f" (+ {r['read_seconds']:.1f} s to read into memory: {r['rows'] / (r['seconds'] + r['read_seconds']) / 1e6:.2f} M rows/s in all)"
        lines.append(
            f"| {label} | {r['rows']:,} | {r['seconds']:.1f}{extra} | {r['cpu']:.1f} | {r['rows'] / r['seconds'] / 1e6:.2f} M "
            f"| {r['peak_mib']:,.0f} | {r['alerts']:,} | {r['windows']:,} |"
        )
    lines += ["", *checks]
    if not args.no_dask:
        one = dict(results)[next(label for label, _ in results if "1 worker" in label)]
        two = dict(results)[next(label for label, _ in results if "2 workers" in label)]
        lines.append(f"- Dask scaling from 1 to 2 workers: {one['seconds'] / two['seconds']:.2f}x.")
    lines += [
        f"- Streaming: {stream_big['rows'] / stream_big['seconds'] / 1e6:.2f} M rows/s end to end in one process "
        f"(parquet decoding runs on a second thread: {stream_big['cpu'] / stream_big['seconds']:.2f} cores busy on average), "
        f"peak {stream_big['peak_mib'] / 1024:.2f} GiB for {stream_big['rows']:,} rows.",
        f"- Load average when the run started: {load:.1f} on {os.cpu_count()} cores. Measured {started}.",
        f"- {machine_line()}",
    ]
    text = "### Scale: streaming and Dask\n\n" + "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("scale", text)


if __name__ == "__main__":
    main()
