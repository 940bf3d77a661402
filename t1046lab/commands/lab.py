"""``t1046lab lab run`` (run a scan-lab scenario as root) and ``t1046lab lab list``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ORDER = 80


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "lab",
        help="run the scan lab (real scanners in private network namespaces; Linux, root)",
        description="The scan lab builds a private LAN of network namespaces, runs real scanners and "
        "real benign traffic in it, captures the bridge and writes a labelled dataset. All traffic "
        "stays inside namespaces the lab creates and deletes. See docs/lab.md.",
    )
    lab_sub = p.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    lab_sub.required = True
    run = lab_sub.add_parser("run", help="run a scenario and write capture, ground truth and labelled connections")
    run.add_argument("--scenario", default="smoke", help="scenario name (see `t1046lab lab list`; default smoke)")
    run.add_argument("--out", type=Path, required=True, help="output directory")
    run.add_argument("--subnet", default=None, help="private lab subnet that exists only inside the namespaces (default 10.146.46.0/24)")
    run.add_argument("--random-state", type=int, default=0, help="seed for what the lab randomises")
    run.set_defaults(func=_cmd_run)
    lst = lab_sub.add_parser("list", help="list the scenarios and their activities")
    lst.set_defaults(func=_cmd_list)
    lb = lab_sub.add_parser("label", help="re-read a lab directory's capture and rewrite connections.parquet (no root)")
    lb.add_argument("directory", type=Path, help="lab output directory")
    lb.set_defaults(func=_cmd_label)
    ds = lab_sub.add_parser("datasheet", help="write README.md (the datasheet) for a lab output directory")
    ds.add_argument("directory", type=Path, help="directory holding capture.pcap, ground_truth.csv, connections.parquet")
    ds.set_defaults(func=_cmd_datasheet)


def _cmd_run(args: argparse.Namespace) -> int:
    from ..datasets.lab import (
        DEFAULT_SUBNET,
        LabSafetyError,
        LabUnavailableError,
        get_scenario,
        run_lab,
    )

    get_scenario(args.scenario)  # ValueError (exit 2) before anything else
    try:
        result = run_lab(args.scenario, args.out, random_state=args.random_state, subnet=args.subnet or DEFAULT_SUBNET)
    except (LabUnavailableError, LabSafetyError) as exc:
        print(f"t1046lab lab run: error: {exc}", file=sys.stderr)
        return 2
    print(result)
    gt = result.ground_truth
    print("activities per label:")
    print(gt.groupby(["label"]).size().to_string())
    if result.connections is not None:
        print("connections per label:")
        print(result.connections.groupby(["label", "scan_type", "benign_category"], observed=True, dropna=False).size().to_string())
    for name, path in result.paths.items():
        print(f"{name}: {path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from ..datasets.lab import SCENARIOS

    for scen in SCENARIOS.values():
        print(f"{scen.name}: {scen.description}")
        for act in scen.activities:
            print(f"  {act.start:5.1f}s  {act.id:22s} {act.actor:9s} {act.tool:11s} {act.label:6s} {act.category}")
    return 0


def _cmd_datasheet(args: argparse.Namespace) -> int:
    from ..datasets.lab.datasheet import write_datasheet

    if not (args.directory / "connections.parquet").exists():
        raise FileNotFoundError(f"{args.directory}/connections.parquet not found")
    print(f"wrote {write_datasheet(args.directory)}")
    return 0


def _cmd_label(args: argparse.Namespace) -> int:
    from ..datasets.lab.runner import label_directory

    conns = label_directory(args.directory)
    print(conns.groupby(["label", "scan_type", "benign_category"], observed=True, dropna=False).size().to_string())
    print(f"wrote {len(conns):,} rows to {args.directory / 'connections.parquet'}")
    return 0
