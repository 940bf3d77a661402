"""``t1046lab simulate`` (labelled enterprise traffic to parquet) and ``t1046lab datasets``."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 60


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a labelled enterprise network's connections into a parquet file",
        description="Simulate an enterprise network (workstations, servers, Kubernetes, monitoring, "
        "backup, CI, a NAT gateway, a sanctioned scanner) with injected scans, deterministically "
        "for a seed, streaming one day at a time into a parquet file.",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="the parquet file to write")
    p.add_argument("--hosts", type=int, default=200, help="number of hosts (30-4000; default 200)")
    p.add_argument("--days", type=int, default=7, help="days to simulate (default 7)")
    p.add_argument("--scans", default="all", help="'all', 'none', or comma-separated types, each optionally TYPE=COUNT (e.g. vertical=2,slow)")
    p.add_argument("--start", default="2026-01-05", help="first day, midnight UTC (default 2026-01-05, a Monday)")
    p.add_argument("--seed", type=int, default=0, help="random_state (default 0)")
    p.add_argument("--chunk-days", type=int, default=1, help="days held in memory at once (default 1)")
    p.set_defaults(func=_cmd_simulate)
    d = sub.add_parser("datasets", help="list the bundled and public labelled datasets", description="List the datasets load_dataset() knows.")
    d.set_defaults(func=_cmd_datasets)


def parse_scans(text: str) -> str | dict[str, int] | None:
    if text in ("all", "none"):
        return None if text == "none" else "all"
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("=")
        counts[name.strip()] = counts.get(name.strip(), 0) + (int(count) if count else 1)
    return counts


def _cmd_simulate(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    from ..datasets import simulate_enterprise

    path = simulate_enterprise(
        args.hosts, args.days, scans=parse_scans(args.scans), start=args.start, random_state=args.seed, out=args.output, chunk_days=args.chunk_days
    )
    print(f"{path}: {pq.ParquetFile(path).metadata.num_rows:,} rows")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..datasets import list_datasets

    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(list_datasets().drop(columns=["path"]).to_string(index=False))
    return 0
