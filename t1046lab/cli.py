"""The ``t1046lab`` command.

Each sub-command is a thin layer over the library: parse arguments, call the public
function, write the result, print a short summary. Errors in the input end the command
with exit status 2 and one line naming the file, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from . import __version__

__all__ = ["main", "build_parser"]

log = logging.getLogger("t1046lab")


def _add_read(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("-o", "--output", type=Path, help="write the frame to OUT.parquet or OUT.csv")
    p.add_argument("--quarantine", type=Path, help="write the quarantined records (reason, line, offset, excerpt) to this CSV")
    p.set_defaults(func=_cmd_read)


def _cmd_read(args: argparse.Namespace) -> int:
    from .io import read
    from .io.canonical import write_canonical
    from .summary import summarize

    conns = read(args.input, format=args.format, strict=args.strict)
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
    from .io import available_formats

    table = available_formats()
    with pd.option_context("display.max_colwidth", 80, "display.width", 160):
        print(table.to_string(index=False))
    return 0


#: Sub-commands, in the order ``--help`` lists them. Later modules add theirs here.
_COMMANDS = [_add_read, _add_formats]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t1046lab",
        description="Detect network service discovery (MITRE ATT&CK T1046) in flow, packet, "
        "cloud, container and endpoint telemetry.",
    )
    parser.add_argument("--version", action="version", version=f"t1046lab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``t1046lab`` console script."""
    from .exceptions import FormatDetectionError, ParseError
    from .schema import SchemaError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ParseError, FormatDetectionError, SchemaError, FileNotFoundError, IsADirectoryError, ValueError) as exc:
        print(f"t1046lab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
