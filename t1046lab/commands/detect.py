"""``t1046lab detect``: run a detector over a telemetry file and write the alerts frame."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ORDER = 30

#: ``--engine auto`` streams inputs larger than this (and directories).
STREAM_ABOVE_BYTES = 512 * 2**20


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="run a scan detector over a telemetry file and write its alerts",
        description="Read INPUT (any supported format), run one detector (zeek-scan, simple-scan, "
        "snort-portscan, trw, ...) and write the alerts frame as CSV or parquet. Prints the alerts "
        "per detector and the top entities. `t1046lab detect --list` lists the detectors and "
        "their parameters.",
    )
    p.add_argument("input", type=Path, nargs="?", help="input file (gzip is recognised automatically)")
    p.add_argument("--format", "-f", default="auto", help="input format, or 'auto' to detect it (default)")
    p.add_argument("--detector", "-d", action="append", help="detector name; repeat to run several")
    p.add_argument(
        "--param", "-p", action="append", default=[], metavar="K=V",
        help="detector parameter, e.g. --param sensitivity=high --param local_nets=10.0.0.0/8,192.168.0.0/16; "
        "values are read as int, float, bool, none, a JSON list/dict, or a comma-separated list",
    )
    p.add_argument("--all-windows", action="store_true", help="keep the rows that did not alert")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed input record")
    p.add_argument("-o", "--output", type=Path, help="write the alerts to OUT.csv or OUT.parquet")
    p.add_argument(
        "--engine", choices=("auto", "pandas", "stream", "dask"), default="auto",
        help="pandas: read everything into memory; stream: chunk by chunk in bounded memory, same alerts; "
        "dask: on a Dask cluster (pip install 't1046lab[dask]'); auto (default): stream when INPUT is a "
        f"directory or larger than {STREAM_ABOVE_BYTES // 2**20:,} MiB and the detector can stream, else pandas",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="with --engine dask: the scheduler to connect to (default: a local cluster)")
    p.add_argument("--chunksize", type=int, default=1_000_000, help="rows per chunk when streaming (default 1,000,000)")
    p.add_argument("--lateness", default="0s", help="when streaming: how far out of time order rows may arrive (e.g. 2min)")
    p.add_argument("--list", action="store_true", help="list the detectors and their default parameters, then exit")
    p.set_defaults(func=_cmd_detect)


def parse_value(text: str) -> Any:
    """A ``--param`` value: int, float, bool, none, JSON list/dict, comma list, else the string."""
    s = text.strip()
    low = s.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null", ""):
        return None
    for kind in (int, float):
        try:
            return kind(s)
        except ValueError:
            pass
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--param value {text!r} is not valid JSON: {exc}") from None
    if "," in s:
        return [parse_value(part) for part in s.split(",") if part.strip()]
    return s


def parse_params(items: list[str], detector: str) -> dict[str, Any]:
    """``["k=v", ...]`` into a dict; unknown names are reported by :func:`detect` with the valid ones."""
    from ..detectors import get_detector

    info = get_detector(detector)
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param expects NAME=VALUE, got {item!r}")
        value_parsed = parse_value(value)
        default = info.params.get(name.strip())
        # list-valued parameters accept a single item too (--param protos=tcp)
        if isinstance(default, list) and not isinstance(value_parsed, list) and value_parsed is not None:
            value_parsed = [value_parsed]
        params[name.strip()] = value_parsed
    return params


def _cmd_detect(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..detectors import detect, list_detectors

    if args.list:
        with pd.option_context("display.max_colwidth", 200, "display.width", 200):
            print(list_detectors().to_string(index=False))
        return 0
    if args.input is None:
        raise ValueError("give an INPUT file (or --list)")
    if not args.detector:
        raise ValueError("give --detector NAME (see `t1046lab detect --list`)")
    if len(args.detector) > 1 and args.param:
        raise ValueError("--param applies to one detector; run one --detector at a time to pass parameters")
    engine = choose_engine(args.engine, args.input, args.detector)
    frames = []
    n_connections = None
    if engine == "pandas":
        from ..io import read

        conns = read(args.input, format=args.format, strict=args.strict)
        n_connections = len(conns)
        for name in args.detector:
            frames.append(detect(conns, detector=name, all_windows=args.all_windows, **parse_params(args.param, name)))
    elif engine == "stream":
        from ..scale.streaming import stream_detect

        for name in args.detector:
            alerts = stream_detect(args.input, name, all_windows=args.all_windows, chunksize=args.chunksize,
                                   lateness=args.lateness, progress=True, format=args.format, strict=args.strict,
                                   **parse_params(args.param, name))
            n_connections = alerts.attrs.get("streamed", {}).get("rows")
            frames.append(alerts)
    else:
        from ..scale.dask_engine import connect, detect_dask

        with connect(args.scheduler) as client:
            for name in args.detector:
                frames.append(detect_dask(str(args.input), name, all_windows=args.all_windows, scheduler=client,
                                          **parse_params(args.param, name)))
    alerts = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if args.output is not None:
        _write(alerts, args.output)
    print(summarize_alerts(alerts, n_connections=n_connections))
    if args.output is not None:
        print(f"wrote {len(alerts):,} rows to {args.output}")
    return 0


def choose_engine(engine: str, path: Path, detectors: list[str]) -> str:
    """The engine ``--engine auto`` picks: stream large inputs when every detector can."""
    from ..scale.streaming import has_streaming_form

    if engine == "stream":
        cannot = [d for d in detectors if not has_streaming_form(d)]
        if cannot:
            raise ValueError(f"{cannot} cannot stream exactly (state keyed by both ends of a connection); use --engine pandas")
    if engine != "auto":
        return engine
    large = path.is_dir() or path.stat().st_size > STREAM_ABOVE_BYTES
    if large and all(has_streaming_form(d) for d in detectors):
        return "stream"
    if path.is_dir():
        raise ValueError(f"{path} is a directory, which only the stream and dask engines read; {detectors} cannot stream")
    return "pandas"


def _write(alerts: Any, path: Path) -> None:
    name = str(path).lower()
    if name.endswith(".parquet"):
        alerts.to_parquet(path, index=False)
    elif name.endswith(".csv") or name.endswith(".csv.gz"):
        alerts.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        raise ValueError(f"{path}: the output must end in .csv or .parquet")


def summarize_alerts(alerts: Any, *, n_connections: int | None = None, top: int = 5) -> str:
    """A few lines: alerts per detector and scan type, and the entities with most alerts."""
    lines = []
    if n_connections is not None:
        lines.append(f"{n_connections:,} connections scored")
    fired = alerts[alerts["alert"]]
    if len(fired) == 0:
        lines.append(f"no alerts ({len(alerts):,} windows scored)" if len(alerts) else "no alerts")
        return "\n".join(lines)
    for detector, grp in fired.groupby("detector", sort=True):
        kinds = ", ".join(f"{k} {v}" for k, v in grp["scan_type"].fillna("?").value_counts().items())
        lines.append(f"{detector}: {len(grp):,} alerts from {grp['entity'].nunique():,} entities ({kinds})")
    counts = fired.groupby("entity").agg(alerts=("alert", "size"), score=("score", "max")).sort_values(
        ["alerts", "score"], ascending=False
    )
    lines.append("top entities:")
    for entity, row in counts.head(top).iterrows():
        lines.append(f"  {entity}: {int(row['alerts'])} alerts, max score {row['score']:.3g}")
    return "\n".join(lines)
