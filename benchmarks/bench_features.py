"""Benchmark window_features against pandas groupby().apply, polars and duckdb.

Run from the repository root::

    python benchmarks/bench_features.py                 # 1M and 10M rows
    python benchmarks/bench_features.py --sizes 1e6     # quicker

Every engine computes the SAME ``default`` features (5-minute tumbling windows by
``source_ip``) on the same synthetic, time-sorted canonical frame; their results are
checked against ours (allclose) before anything is timed. The table goes to the
``window-features`` section of docs/benchmarks.md.

Timings are wall-clock, best of ``--repeat`` runs. polars and duckdb use every core they
find (they are given their native input, converted from pandas outside the timing); ours
runs on one core, and again with ``n_jobs=-1`` (one thread per core) for comparison. The pandas ``groupby().apply`` baseline runs on a time-contiguous slice
and is extrapolated per row to the full size (labelled as such), because the full run takes
many minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import tracemalloc
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import machine_line, write_section
from benchmarks._synthetic import synthetic_connections
from t1046lab import features as F

WINDOW_NS = 300 * 10**9
FAILED = ["rejected", "no_reply", "icmp_unreachable", "denied"]
COLUMNS = [
    "event_start", "source_ip", "destination_ip", "destination_port", "network_transport",
    "conn_outcome", "source_bytes", "destination_bytes",
]  # fmt: skip
NAMES = list(F.list_features("default")["name"])


def load(n: int, cache: Path) -> pd.DataFrame:
    """The synthetic frame of ``n`` rows (cached as parquet: generating 10M rows takes minutes)."""
    path = cache / f"synthetic-{n}.parquet"
    if path.exists():
        df = pd.read_parquet(path)
    else:
        df = synthetic_connections(n, labels=False, random_state=0)
        cache.mkdir(parents=True, exist_ok=True)
        df.to_parquet(path)
    # one contiguous arrow buffer per column, as a reader building the frame in memory gives
    for c in ("source_ip", "destination_ip"):
        df[c] = pd.array(df[c].to_numpy(dtype=object), dtype=df[c].dtype) if df[c].array._pa_array.num_chunks > 1 else df[c]
    return df


# --- pandas groupby().apply: one Python call per group ------------------------------------


def _apply_group(g: pd.DataFrame) -> pd.Series:
    g = g.sort_values(["event_start", "_row"])
    n = len(g)
    outcome = g["conn_outcome"].astype(str)
    transport = g["network_transport"].astype(str)
    port = g["destination_port"].dropna().astype("int64")
    pc = port.value_counts().to_numpy(dtype=float)
    peerc = g["destination_ip"].value_counts().to_numpy(dtype=float)
    steps = port.diff().abs().iloc[1:]
    gaps = g["_t"].diff().iloc[1:].astype(float)
    mean = gaps.mean() if len(gaps) else 0.0
    return pd.Series(
        {
            "conn_count": float(n),
            "distinct_peers": float(g["destination_ip"].nunique()),
            "distinct_ports": float(port.nunique()),
            "distinct_peer_ports": float(len(g[["destination_ip", "destination_port"]].drop_duplicates())),
            "failure_ratio": outcome.isin(FAILED).mean(),
            "rejected_ratio": (outcome == "rejected").mean(),
            "no_reply_ratio": (outcome == "no_reply").mean(),
            "tcp_count": float((transport == "tcp").sum()),
            "udp_count": float((transport == "udp").sum()),
            "icmp_count": float(transport.isin(["icmp", "icmpv6"]).sum()),
            "port_entropy": float(-(pc / pc.sum() * np.log2(pc / pc.sum())).sum()) if len(pc) else 0.0,
            "peer_entropy": float(-(peerc / n * np.log2(peerc / n)).sum()),
            "low_port_ratio": float((port < 1024).mean()) if len(port) else 0.0,
            "port_sequence_ratio": float((steps == 1).mean()) if len(steps) else 0.0,
            "interarrival_cv": float(gaps.std(ddof=0) / mean) if len(gaps) >= 2 and mean > 0 else 0.0,
            "bytes_per_conn": float((g["source_bytes"].fillna(0) + g["destination_bytes"].fillna(0)).sum() / n),
        }
    )


def pandas_apply(df: pd.DataFrame) -> pd.DataFrame:
    d = df.assign(
        _row=np.arange(len(df)),
        _t=df["event_start"].astype("int64"),
        window_start=df["event_start"].dt.floor("5min"),
    )
    out = d.groupby(["source_ip", "window_start"], sort=True)[list(d.columns)].apply(_apply_group)
    return out[NAMES]


# --- polars ----------------------------------------------------------------------------------


def polars_features(pl_df):
    import polars as pl

    port = pl.col("destination_port")
    ported = port.drop_nulls()
    t = pl.col("t")
    gaps = t.diff().drop_nulls().cast(pl.Float64)
    n = pl.len().cast(pl.Float64)
    outcome, transport = pl.col("conn_outcome"), pl.col("network_transport")
    return (
        pl_df.lazy()
        .with_columns(window_start=(pl.col("t") // WINDOW_NS) * WINDOW_NS)
        .sort(["source_ip", "window_start", "t", "row"])
        .group_by(["source_ip", "window_start"], maintain_order=True)
        .agg(
            conn_count=n,
            distinct_peers=pl.col("destination_ip").n_unique().cast(pl.Float64),
            distinct_ports=ported.n_unique().cast(pl.Float64),
            distinct_peer_ports=pl.struct("destination_ip", "destination_port").n_unique().cast(pl.Float64),
            failure_ratio=outcome.is_in(FAILED).sum() / n,
            rejected_ratio=(outcome == "rejected").sum() / n,
            no_reply_ratio=(outcome == "no_reply").sum() / n,
            tcp_count=(transport == "tcp").sum().cast(pl.Float64),
            udp_count=(transport == "udp").sum().cast(pl.Float64),
            icmp_count=transport.is_in(["icmp", "icmpv6"]).sum().cast(pl.Float64),
            port_entropy=ported.unique_counts().entropy(base=2),
            peer_entropy=pl.col("destination_ip").unique_counts().entropy(base=2),
            low_port_ratio=pl.when(port.count() > 0).then((port < 1024).sum() / port.count()).otherwise(0.0),
            port_sequence_ratio=pl.when(port.count() > 1)
            .then((ported.diff().abs() == 1).sum() / (port.count() - 1))
            .otherwise(0.0),
            interarrival_cv=pl.when((gaps.len() >= 2) & (gaps.mean() > 0)).then(gaps.std(ddof=0) / gaps.mean()).otherwise(0.0),
            bytes_per_conn=(pl.col("source_bytes").fill_null(0) + pl.col("destination_bytes").fill_null(0)).sum() / n,
        )
        .with_columns(pl.col("port_entropy").fill_null(0.0).fill_nan(0.0))
        .sort(["source_ip", "window_start"])
        .collect()
    )


def to_polars(df: pd.DataFrame):
    import polars as pl

    return pl.from_pandas(
        df[COLUMNS].assign(
            t=df["event_start"].astype("int64"),
            row=np.arange(len(df)),
            conn_outcome=df["conn_outcome"].astype(str),
            network_transport=df["network_transport"].astype(str),
        )
    ).drop("event_start")


# --- duckdb ----------------------------------------------------------------------------------

DUCKDB_SQL = f"""
WITH b AS (
    SELECT source_ip AS e, destination_ip AS p, destination_port AS port, conn_outcome AS o,
           network_transport AS tr, coalesce(source_bytes, 0) + coalesce(destination_bytes, 0) AS nb,
           t, "row", (t // {WINDOW_NS}) * {WINDOW_NS} AS ws
    FROM conns
), gapped AS (
    SELECT *, t - lag(t) OVER (PARTITION BY e, ws ORDER BY t, "row") AS gap FROM b
), main AS (
    SELECT e, ws, count(*)::DOUBLE AS conn_count,
           count(DISTINCT p)::DOUBLE AS distinct_peers,
           count(DISTINCT port)::DOUBLE AS distinct_ports,
           avg(CASE WHEN o IN ('rejected', 'no_reply', 'icmp_unreachable', 'denied') THEN 1.0 ELSE 0.0 END) AS failure_ratio,
           avg(CASE WHEN o = 'rejected' THEN 1.0 ELSE 0.0 END) AS rejected_ratio,
           avg(CASE WHEN o = 'no_reply' THEN 1.0 ELSE 0.0 END) AS no_reply_ratio,
           sum(CASE WHEN tr = 'tcp' THEN 1 ELSE 0 END)::DOUBLE AS tcp_count,
           sum(CASE WHEN tr = 'udp' THEN 1 ELSE 0 END)::DOUBLE AS udp_count,
           sum(CASE WHEN tr IN ('icmp', 'icmpv6') THEN 1 ELSE 0 END)::DOUBLE AS icmp_count,
           coalesce(sum(CASE WHEN port < 1024 THEN 1.0 ELSE 0.0 END) / nullif(count(port), 0), 0.0) AS low_port_ratio,
           CASE WHEN count(gap) >= 2 AND avg(gap) > 0 THEN stddev_pop(gap) / avg(gap) ELSE 0.0 END AS interarrival_cv,
           sum(nb)::DOUBLE / count(*) AS bytes_per_conn
    FROM gapped GROUP BY e, ws
), pairs AS (
    SELECT e, ws, count(*)::DOUBLE AS distinct_peer_ports FROM (SELECT DISTINCT e, ws, p, port FROM b) GROUP BY e, ws
), portc AS (
    SELECT e, ws, sum(c) AS n, sum(c * log2(c)) AS s
    FROM (SELECT e, ws, port, count(*)::DOUBLE AS c FROM b WHERE port IS NOT NULL GROUP BY e, ws, port) GROUP BY e, ws
), peerc AS (
    SELECT e, ws, sum(c) AS n, sum(c * log2(c)) AS s
    FROM (SELECT e, ws, p, count(*)::DOUBLE AS c FROM b GROUP BY e, ws, p) GROUP BY e, ws
), seq AS (
    SELECT e, ws, coalesce(sum(CASE WHEN step = 1 THEN 1.0 ELSE 0.0 END) / nullif(count(step), 0), 0.0) AS port_sequence_ratio
    FROM (SELECT e, ws, abs(port - lag(port) OVER (PARTITION BY e, ws ORDER BY t, "row")) AS step FROM b WHERE port IS NOT NULL)
    GROUP BY e, ws
)
SELECT main.e AS source_ip, main.ws AS window_start, conn_count, distinct_peers, distinct_ports, distinct_peer_ports,
       failure_ratio, rejected_ratio, no_reply_ratio, tcp_count, udp_count, icmp_count,
       coalesce(greatest(log2(portc.n) - portc.s / portc.n, 0.0), 0.0) AS port_entropy,
       greatest(log2(peerc.n) - peerc.s / peerc.n, 0.0) AS peer_entropy,
       low_port_ratio, coalesce(port_sequence_ratio, 0.0) AS port_sequence_ratio, interarrival_cv, bytes_per_conn
FROM main
JOIN pairs USING (e, ws)
JOIN peerc USING (e, ws)
LEFT JOIN portc USING (e, ws)
LEFT JOIN seq USING (e, ws)
ORDER BY source_ip, window_start
"""


def duckdb_features(con):
    relation = con.sql(DUCKDB_SQL)
    return relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()


def to_duckdb(df: pd.DataFrame):
    import duckdb

    con = duckdb.connect()
    table = to_polars(df).to_arrow()
    con.register("conns", table)
    return con


# --- checks and timing -----------------------------------------------------------------------


def _as_frame(result, columns) -> pd.DataFrame:
    frame = result if isinstance(result, pd.DataFrame) else result.to_pandas()
    frame = frame.copy()
    if "window_start" in frame.columns and frame["window_start"].dtype.kind in "iu":
        frame["window_start"] = pd.to_datetime(frame["window_start"], unit="ns", utc=True)
    return frame.set_index(["source_ip", "window_start"])[columns].sort_index()


def check_same(ours: pd.DataFrame, other: pd.DataFrame, label: str) -> None:
    mine = ours.sort_index()
    other = other.loc[:, list(mine.columns)]
    if len(mine) != len(other) or not (np.asarray(mine.index.get_level_values(0), dtype=object) == np.asarray(other.index.get_level_values(0), dtype=object)).all():
        raise AssertionError(f"{label}: different (entity, window) rows: {len(mine)} vs {len(other)}")
    for name in mine.columns:
        if not np.allclose(mine[name].to_numpy(), other[name].to_numpy(dtype=float), rtol=1e-9, atol=1e-9):
            bad = ~np.isclose(mine[name].to_numpy(), other[name].to_numpy(dtype=float), rtol=1e-9, atol=1e-9)
            raise AssertionError(f"{label}: feature {name} differs in {int(bad.sum())} rows")


def best_time(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall-clock and best CPU seconds (all threads of this process) over ``repeat`` runs."""
    best, best_cpu, result = math.inf, math.inf, None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best, best_cpu, result


def peak_memory(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run_size(n: int, args: argparse.Namespace) -> tuple[dict, list[str]]:
    """Time every engine on ``n`` rows; return the table row and notes."""
    df = load(n, args.cache)
    input_bytes = int(df.memory_usage(deep=True).sum())
    print(f"{n:,} rows, {input_bytes / 1e6:.0f} MB in memory", flush=True)

    def ours_run():
        return F.window_features(df, "5min")

    ours_time, ours_cpu, ours = best_time(ours_run, args.repeat)
    peak = peak_memory(ours_run)
    print(f"  ours {ours_time:.3f} s (cpu {ours_cpu:.3f} s), peak {peak / 1e6:.0f} MB traced", flush=True)
    threads_time, threads_cpu, threaded = best_time(partial(F.window_features, df, "5min", n_jobs=-1), args.repeat)
    pd.testing.assert_frame_equal(threaded, ours, check_exact=True)
    print(f"  ours n_jobs=-1 {threads_time:.3f} s (cpu {threads_cpu:.3f} s)", flush=True)

    pl_df = to_polars(df)
    check_same(ours, _as_frame(polars_features(pl_df), NAMES), "polars")
    pl_time, pl_cpu, _ = best_time(partial(polars_features, pl_df), args.repeat)
    print(f"  polars {pl_time:.3f} s (cpu {pl_cpu:.3f} s)", flush=True)
    del pl_df

    con = to_duckdb(df)
    check_same(ours, _as_frame(duckdb_features(con), NAMES), "duckdb")
    db_time, db_cpu, _ = best_time(partial(duckdb_features, con), args.repeat)
    print(f"  duckdb {db_time:.3f} s (cpu {db_cpu:.3f} s)", flush=True)
    con.close()

    apply_time, notes = None, []
    if n <= 2_000_000:
        part = df.iloc[: args.apply_rows]
        ours_part = F.window_features(part, "5min")
        start = time.perf_counter()
        ref = pandas_apply(part)
        slice_time = time.perf_counter() - start
        check_same(ours_part, ref, "pandas apply")
        # its cost is one Python call per group, so scale by groups
        apply_time = slice_time * len(ours) / len(ours_part)
        notes.append(
            f"groupby().apply at {n:,} rows is extrapolated per (entity, window) group from its run on the "
            f"first {len(part):,} rows ({len(ours_part):,} groups in {slice_time:.1f} s) to the {len(ours):,} groups."
        )
        print(f"  pandas apply {apply_time:.1f} s (extrapolated)", flush=True)
    row = {
        "rows": n,
        "groups": len(ours),
        "ours_s": ours_time,
        "ours_cpu_s": ours_cpu,
        "threads_s": threads_time,
        "threads_cpu_s": threads_cpu,
        "polars_s": pl_time,
        "polars_cpu_s": pl_cpu,
        "duckdb_s": db_time,
        "duckdb_cpu_s": db_cpu,
        "apply_s": apply_time,
        "peak_x_input": peak / input_bytes,
    }
    return row, notes


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--apply-rows", type=int, default=30_000, help="rows in the groupby-apply slice")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "t1046lab-bench")
    parser.add_argument("--no-write", action="store_true", help="print the table, do not update docs/benchmarks.md")
    args = parser.parse_args(argv)

    load_at_start = os.getloadavg()[0]
    rows, notes = [], []
    for size in args.sizes:
        row, note = run_size(int(size), args)
        rows.append(row)
        notes.extend(note)

    table = [
        (
            "| rows | (entity, window) rows | ours (one core) | ours rows/s | pandas groupby-apply | polars | duckdb "
            "| speed-up vs apply | vs faster of polars/duckdb | ours, `n_jobs=-1` | its speed-up vs faster of polars/duckdb "
            "| ours peak memory / input |"
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        fastest = min(r["polars_s"], r["duckdb_s"])
        fastest_cpu = min(r["polars_cpu_s"], r["duckdb_cpu_s"])
        apply = f"{r['apply_s']:.0f} s (extrapolated)" if r["apply_s"] else "not run"
        vs_apply = f"{r['apply_s'] / r['ours_s']:,.0f}x" if r["apply_s"] else "–"
        table.append(
            f"| {r['rows']:,} | {r['groups']:,} | {r['ours_s']:.2f} s (cpu {r['ours_cpu_s']:.2f} s) "
            f"| {r['rows'] / r['ours_s'] / 1e6:.1f} M | {apply} | {r['polars_s']:.2f} s (cpu {r['polars_cpu_s']:.2f} s) "
            f"| {r['duckdb_s']:.2f} s (cpu {r['duckdb_cpu_s']:.2f} s) "
            f"| {vs_apply} | {fastest / r['ours_s']:.1f}x (cpu {fastest_cpu / r['ours_cpu_s']:.1f}x) "
            f"| {r['threads_s']:.2f} s (cpu {r['threads_cpu_s']:.2f} s) | {fastest / r['threads_s']:.1f}x "
            f"| {r['peak_x_input']:.2f}x |"
        )
    markdown = "\n".join(
        [
            "### Window features (`python benchmarks/bench_features.py`)",
            "",
            f"The {len(NAMES)} `default` features ({', '.join(NAMES)}) over 5-minute tumbling windows by",
            "`source_ip`, on synthetic time-sorted canonical frames (`benchmarks/_synthetic.py`). polars and",
            "duckdb compute the same features (checked equal to ours, allclose 1e-9, before timing) from",
            "their own in-memory copy of the input; they use all cores, ours uses one (and, in its own",
            "column, one thread per core with `n_jobs=-1`; same result, checked bit for bit). Wall-clock and CPU",
            f"seconds (all threads), best of {args.repeat}; the input to ours is the canonical pandas frame (string IP columns), so our time",
            "includes factorizing both address columns. Peak memory is tracemalloc's peak of numpy",
            "allocations during one call, relative to the frame's deep memory usage.",
            "",
            *table,
            "",
            *[f"- {note}" for note in notes],
            (
                f"- Load average when the run started: {load_at_start:.1f}, when it ended: {os.getloadavg()[0]:.1f} "
                "(counting this run's own threads), "
                f"on {os.cpu_count()} cores (the machine is "
                "shared; wall-clock times stretch with the load, CPU seconds much less)."
            ),
            f"- {machine_line()}",
            f"- Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, polars {_version('polars')}, duckdb {_version('duckdb')}.",
        ]
    )
    print(markdown)
    if not args.no_write:
        write_section("window-features", markdown)
    return markdown


def _version(name: str) -> str:
    try:
        return __import__(name).__version__
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    main()
