"""``t1046lab benchmark``: every detector on the bundled labelled datasets, with a report."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 30


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="run every detector on the bundled labelled datasets and write a report",
        description="Run detectors side by side on labelled datasets; print recall per scan type, false "
        "positives per 1,000 host-days per benign category and median attempts to alert; write "
        "OUT/report.md with tables and PNG figures.",
    )
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="datasets (default: every bundled labelled dataset; see `t1046lab datasets`)")
    p.add_argument("--detectors", nargs="+", metavar="NAME", help="detectors (default: all; see `t1046lab detectors`)")
    p.add_argument("--window", default="5min", help="evaluation window and window of the window-based detectors (default 5min)")
    p.add_argument("--out", type=Path, default=Path("benchmark-out"), help="report directory (default ./benchmark-out)")
    p.set_defaults(func=_cmd_benchmark)


def _cmd_benchmark(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..benchmark import headline_table, run_benchmark, write_report

    result = run_benchmark(args.datasets, args.detectors, window=args.window)
    tables = headline_table(result)
    titles = {
        "recall": "Recall per scan type (scan events caught)",
        "false_positives": "False positives per 1,000 host-days, by benign category",
        "summary": "Summary (median attempts to alert, precision, ROC AUC)",
    }
    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.float_format", "{:.3g}".format):
        for key, title in titles.items():
            if key in tables:
                print(f"\n{title}\n{tables[key].to_string()}")
    report = write_report(result, args.out)
    print(f"\nwrote {report} and its figures")
    return 0
