"""``t1046lab policy``: check a sanctioned-scanner registry, apply it to alerts, review it."""

from __future__ import annotations

import argparse
from pathlib import Path

ORDER = 40


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "policy",
        help="check, apply and review the sanctioned-scanner registry",
        description="Sanctioned scanners live in a TOML registry with scope, schedule and expiry. "
        "`check` validates it; `review` applies it to alerts and reports expired, expiring, unused, "
        "broad and out-of-scope entries.",
    )
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    check = verbs.add_parser("check", help="validate a registry and print its entries")
    check.add_argument("registry", type=Path)
    check.set_defaults(func=_cmd_check)
    rev = verbs.add_parser("review", help="apply a registry to alerts and review every entry")
    rev.add_argument("registry", type=Path)
    rev.add_argument("--alerts", type=Path, required=True, help="alerts (CSV or parquet) from `t1046lab detect`")
    rev.add_argument("--conns", type=Path, required=True, help="the connections the alerts came from (any format read() knows)")
    rev.add_argument("--format", default="auto", help="format of --conns (default: detect)")
    rev.add_argument("--now", default=None, help="review time (ISO 8601; default: now)")
    rev.add_argument("-o", "--output", type=Path, help="write the alerts after the policy to CSV or parquet")
    rev.set_defaults(func=_cmd_review)


def _cmd_check(args: argparse.Namespace) -> int:
    from ..policy import load_registry

    registry = load_registry(args.registry)
    print(f"{args.registry}: {len(registry)} entries, valid")
    print(registry.to_frame().to_string(index=False))
    return 0


def _read_alerts(path: Path):
    import pandas as pd

    from ..alerts import ALERT_COLUMNS, make_alerts

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    columns = {c: frame[c] for c in frame.columns}
    detector = str(frame["detector"].iloc[0]) if len(frame) else "unknown"
    out = make_alerts(columns, detector=detector)
    out["detector"] = frame["detector"].astype("string") if "detector" in frame else out["detector"]
    return out[[*ALERT_COLUMNS, *[c for c in out.columns if c not in ALERT_COLUMNS]]]


def _cmd_review(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..io import read
    from ..policy import apply, load_registry, review

    registry = load_registry(args.registry)
    alerts = _read_alerts(args.alerts)
    conns = read(args.conns, format=args.format)
    applied = apply(alerts, conns, registry)
    table = review(applied, registry, now=args.now)
    counts = applied["policy_status"].value_counts()
    print(f"{len(applied):,} alert rows: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    with pd.option_context("display.max_colwidth", 100, "display.width", 200):
        print(table[["name", "owner", "expires", "suppressed", "escalated", "findings"]].to_string(index=False))
    if args.output is not None:
        if args.output.suffix == ".parquet":
            applied.to_parquet(args.output, index=False)
        else:
            applied.to_csv(args.output, index=False)
    return 0
