"""A short text summary of a connections frame, for the command line and notebooks."""

from __future__ import annotations

import pandas as pd

__all__ = ["summarize"]


def summarize(conns: pd.DataFrame, *, top: int = 5) -> str:
    """Describe a canonical frame in a few lines: size, time span, outcomes, top sources.

    Parameters
    ----------
    conns : DataFrame
        A canonical connections frame (its ``read_report``, if any, is included).
    top : int, default 5
        How many of the busiest sources to list.
    """
    lines: list[str] = []
    report = conns.attrs.get("read_report")
    if report is not None:
        lines.append(report.summary())
    n = len(conns)
    if n == 0:
        lines.append("no connection attempts")
        return "\n".join(lines)
    start, end = conns["event_start"].min(), conns["event_start"].max()
    lines.append(f"{n:,} connection attempts from {start} to {end}")
    transports = conns["network_transport"].value_counts()
    lines.append("transport: " + ", ".join(f"{k} {v:,}" for k, v in transports.items() if v))
    outcomes = conns["conn_outcome"].value_counts()
    lines.append("outcome:   " + ", ".join(f"{k} {v:,}" for k, v in outcomes.items() if v))
    by_source = (
        conns.groupby("source_ip", observed=True, sort=False)
        .agg(attempts=("destination_ip", "size"), hosts=("destination_ip", "nunique"), ports=("destination_port", "nunique"))
        .sort_values("attempts", ascending=False)
        .head(top)
    )
    lines.append("busiest sources (attempts, distinct hosts, distinct ports):")
    for ip, row in by_source.iterrows():
        lines.append(f"  {ip:<40} {row.attempts:>10,} {row.hosts:>8,} {row.ports:>8,}")
    return "\n".join(lines)
