"""Builders of realistic small frames shared by several test modules."""

from __future__ import annotations

import numpy as np
import pandas as pd

from t1046lab import schema
from t1046lab.alerts import make_alerts

T0 = pd.Timestamp("2026-03-02T08:00:00Z")


def conns(rows: list[tuple]) -> pd.DataFrame:
    """rows: (seconds after T0, source, destination, port, label, scan_type, benign_category, scan_id)."""
    cols = list(zip(*rows))
    n = len(rows)
    return schema.conform(
        {
            "event_start": [T0 + pd.Timedelta(seconds=s) for s in cols[0]],
            "source_ip": list(cols[1]),
            "destination_ip": list(cols[2]),
            "destination_port": list(cols[3]),
            "network_transport": ["tcp"] * n,
            "conn_outcome": ["no_reply"] * n,
            "label": list(cols[4]),
            "scan_type": list(cols[5]),
            "benign_category": list(cols[6]),
            "scan_id": list(cols[7]),
        },
        log_format="simulated",
    )


def alerts(rows: list[tuple], detector: str = "d") -> pd.DataFrame:
    """rows: (entity, window start s, window end s, score, alert, first alert s or None)."""
    cols = list(zip(*rows))
    return make_alerts(
        {
            "entity": list(cols[0]),
            "window_start": [T0 + pd.Timedelta(seconds=s) for s in cols[1]],
            "window_end": [T0 + pd.Timedelta(seconds=s) for s in cols[2]],
            "score": list(cols[3]),
            "alert": list(cols[4]),
            "first_alert_time": [None if s is None else T0 + pd.Timedelta(seconds=s) for s in cols[5]],
        },
        detector=detector,
    )


def features(n_hosts: int = 60, n_windows: int = 48, random_state: int = 0) -> pd.DataFrame:
    """A realistic features frame: workstations with a few peers and ports, mostly successful."""
    rng = np.random.default_rng(random_state)
    hosts = [f"10.1.0.{i}" for i in range(1, n_hosts + 1)]
    starts = pd.date_range("2026-03-02", periods=n_windows, freq="5min", tz="UTC")
    index = pd.MultiIndex.from_product([hosts, starts], names=["source_ip", "window_start"])
    n = len(index)
    conn = rng.poisson(12, n) + 1
    peers = np.minimum(conn, rng.poisson(3, n) + 1)
    ports = np.minimum(conn, rng.poisson(1.5, n) + 1)
    return pd.DataFrame(
        {
            "conn_count": conn.astype(float),
            "distinct_peers": peers.astype(float),
            "distinct_ports": ports.astype(float),
            "distinct_peer_ports": np.maximum(peers, ports).astype(float),
            "failure_ratio": rng.beta(1, 30, n),
            "rejected_ratio": rng.beta(1, 60, n),
            "no_reply_ratio": rng.beta(1, 60, n),
            "port_entropy": np.log2(ports) * rng.uniform(0.6, 1.0, n),
            "peer_entropy": np.log2(peers) * rng.uniform(0.6, 1.0, n),
            "low_port_ratio": rng.uniform(0.3, 1.0, n),
            "port_sequence_ratio": rng.uniform(0, 0.05, n),
            "interarrival_cv": rng.uniform(0.5, 2.0, n),
            "bytes_per_conn": rng.lognormal(8, 1, n),
        },
        index=index,
    )


def with_scan(features: pd.DataFrame, host: str, ports: int = 300) -> pd.DataFrame:
    scan = features.xs(host, level=0, drop_level=False).iloc[:1].copy()
    scan.index = pd.MultiIndex.from_tuples([(host, scan.index[0][1] + pd.Timedelta("1D"))], names=features.index.names)
    scan[["conn_count", "distinct_ports", "distinct_peer_ports"]] = ports
    scan[["distinct_peers"]] = 1
    scan["failure_ratio"] = scan["no_reply_ratio"] = 0.98
    scan["port_entropy"] = np.log2(ports)
    scan["port_sequence_ratio"] = 0.9
    return pd.concat([features, scan])
