"""Build small canonical connection frames for detector tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from t1046lab import schema

T0 = pd.Timestamp("2024-03-04 10:00:00", tz="UTC")


def conns(rows: Iterable[Sequence], *, t0: pd.Timestamp = T0) -> pd.DataFrame:
    """Rows of (seconds after t0, src, dst, dport, outcome[, transport]) as a canonical frame."""
    rows = list(rows)
    cols: dict[str, list] = {"event_start": [], "source_ip": [], "destination_ip": [], "destination_port": [], "conn_outcome": [], "network_transport": [], "source_port": []}
    for i, row in enumerate(rows):
        t, src, dst, port, outcome, *rest = row
        cols["event_start"].append(t0 + pd.Timedelta(seconds=float(t)))
        cols["source_ip"].append(src)
        cols["destination_ip"].append(dst)
        cols["destination_port"].append(port)
        cols["conn_outcome"].append(outcome)
        cols["network_transport"].append(rest[0] if rest else "tcp")
        cols["source_port"].append(40000 + i % 20000)
    return schema.conform(cols, log_format="simulated", n=len(rows))
