"""``t1046lab read`` (a telemetry file into the canonical frame) and ``t1046lab formats``."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 10


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "read",
        help="read a telemetry file into the canonical connections frame",
        description="Read a telemetry file (Zeek conn.log, pcap/pcapng, flow logs, ...) into the "
        "canonical connections frame and write it as parquet or CSV. Prints a summary and "
        "the read report (records seen, rows, records quarantined).",
    )
    p.add_argument("input", type=Path, help="input file (gzip is recognised automatically)")
    p.add_argument("--format", "-f", default="auto", help="input format, or 'auto' to detect it (default); see `t1046lab formats`")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed record instead of quarantining it")
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a reader option (repeatable), e.g. --option tz=Europe/Berlin for nfdump; see the reader's documentation",
    )
    p.add_argument("-o", "--output", type=Path, help="write the frame to OUT.parquet or OUT.csv")
    p.add_argument("--quarantine", type=Path, help="write the quarantined records (reason, line, offset, excerpt) to this CSV")
    p.set_defaults(func=_cmd_read)
    _add_formats(sub)


def _cmd_read(args: argparse.Namespace) -> int:
    from ..io import read
    from ..io.canonical import write_canonical
    from ..summary import summarize

    from .detect import parse_value

    options = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--option expects NAME=VALUE, got {item!r}")
        options[name.strip()] = parse_value(value)
    conns = read(args.input, format=args.format, strict=args.strict, **options)
    report = conns.attrs["read_report"]
    if args.output is not None:
        write_canonical(conns, args.output)
    if args.quarantine is not None:
        report.quarantine_frame().to_csv(args.quarantine, index=False)
    print(summarize(conns))
    if args.output is not None:
        print(f"wrote {len(conns):,} rows to {args.output}")
    return 0


def _add_formats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("formats", help="list the input formats", description="List the input formats read() knows.")
    p.set_defaults(func=_cmd_formats)


def _cmd_formats(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..io import available_formats

    table = available_formats()
    with pd.option_context("display.max_colwidth", 80, "display.width", 160):
        print(table.to_string(index=False))
    return 0


