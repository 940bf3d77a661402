"""A small deterministic generator of realistic canonical connection frames.

For tests and benchmarks of the feature code, not a dataset: many benign hosts talking to
a few servers each on their service ports (mostly established), and a few scanners
(vertical, horizontal, block, ICMP sweep, distributed) with mostly failed attempts. The
enterprise simulator in ``t1046lab.datasets`` is the realistic one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from t1046lab import schema

__all__ = ["synthetic_connections"]

_SERVICES = np.array([443, 80, 53, 22, 3306, 5432, 8080, 123, 389, 445, 6379, 9090, 8443, 25, 161])
_UDP_SERVICES = {53, 123, 161}
_OUTCOMES = [str(o) for o in schema.Outcome]
_TRANSPORTS = [str(t) for t in schema.Transport]


def _ips(prefix: str, n: int) -> np.ndarray:
    i = np.arange(n)
    return np.array([f"{prefix}.{a}.{b}" for a, b in zip((i // 250) % 250, i % 250 + 1)], dtype=object)


def synthetic_connections(
    n: int = 100_000,
    *,
    n_hosts: int | None = None,
    n_servers: int | None = None,
    n_scanners: int = 6,
    scan_fraction: float = 0.05,
    start: str = "2026-01-05",
    duration: str = "1D",
    labels: bool = True,
    sort: bool = True,
    random_state: int | np.random.Generator | None = 0,
) -> pd.DataFrame:
    """Return ``n`` canonical connection rows, benign traffic with a few scanners mixed in.

    Parameters
    ----------
    n : int
        Number of rows.
    n_hosts, n_servers : int, optional
        Benign clients and servers (defaults grow with ``n``).
    n_scanners : int
        Scanning sources; scan types cycle through vertical, horizontal, block,
        icmp_sweep and distributed (the last uses five sources on one target).
    scan_fraction : float
        Share of rows that are scan probes.
    start, duration : str
        Time span of the data (UTC).
    labels : bool
        Add ``label`` and ``scan_type`` columns.
    sort : bool
        Sort rows by ``event_start`` (as readers of time-ordered logs produce them).
    random_state : int, Generator or None
        Seed.
    """
    rng = np.random.default_rng(random_state)
    n_hosts = n_hosts or max(20, min(50_000, n // 200))
    n_servers = n_servers or max(5, min(2_000, n_hosts // 10))
    n_scan = round(n * scan_fraction) if n_scanners else 0
    n_benign = n - n_scan
    t0 = pd.Timestamp(start, tz="UTC").value
    span = pd.Timedelta(duration).value

    hosts = _ips("10.1", n_hosts)
    servers = _ips("10.2", n_servers)
    scanners = _ips("10.9", n_scanners * 5)
    targets = _ips("10.3", 4096)
    pool = np.concatenate([hosts, servers, scanners, targets])
    host_base, server_base, scanner_base, target_base = 0, n_hosts, n_hosts + n_servers, n_hosts + n_servers + len(scanners)

    # benign: each host talks to a handful of servers, each server offers one or two services
    host = rng.zipf(1.6, n_benign) % n_hosts
    favourite = np.minimum(rng.geometric(0.45, n_benign) - 1, 7)
    server = (host * 7 + favourite * 13) % n_servers
    server_port = _SERVICES[(np.arange(n_servers) * 5) % len(_SERVICES)]
    alt_port = _SERVICES[(np.arange(n_servers) * 3 + 1) % len(_SERVICES)]
    dport = np.where(rng.random(n_benign) < 0.8, server_port[server], alt_port[server])
    is_udp = np.isin(dport, list(_UDP_SERVICES))
    is_icmp = rng.random(n_benign) < 0.01
    transport = np.where(is_icmp, "icmp", np.where(is_udp, "udp", "tcp"))
    outcome = rng.choice(
        ["established", "rejected", "no_reply", "partial", "unknown", "denied", "icmp_unreachable"],
        size=n_benign,
        p=[0.955, 0.012, 0.013, 0.008, 0.004, 0.004, 0.004],
    )
    parts = [
        {
            "t": t0 + rng.integers(0, span, n_benign),
            "src": host_base + host,
            "dst": server_base + server,
            "dport": np.where(is_icmp, -1, dport),
            "transport": transport,
            "outcome": outcome,
            "label": np.full(n_benign, "benign", dtype=object),
            "scan_type": np.full(n_benign, None, dtype=object),
        }
    ]

    # scanners: each one a burst somewhere in the span
    kinds = ["vertical", "horizontal", "block", "icmp_sweep", "distributed"]
    per = np.full(n_scanners, n_scan // max(n_scanners, 1))
    if n_scanners:
        per[: n_scan - per.sum()] += 1
    for i in range(n_scanners):
        m = int(per[i])
        if m == 0:
            continue
        kind = kinds[i % len(kinds)]
        length = int(span * rng.uniform(0.01, 0.2))
        begin = t0 + int(rng.integers(0, max(span - length, 1)))
        t = np.sort(begin + rng.integers(0, max(length, 1), m))
        src = np.full(m, scanner_base + i * 5)
        step = np.arange(m)
        if kind == "vertical":
            dst = np.full(m, target_base + int(rng.integers(0, 4096)))
            first = int(rng.integers(1, 60000))
            ports = (first + step) % 65535 + 1 if rng.random() < 0.6 else rng.integers(1, 65536, m)
        elif kind == "horizontal":
            dst = target_base + (int(rng.integers(0, 4096)) + step) % 4096
            ports = np.full(m, int(rng.choice([22, 445, 3389, 23, 80])))
        elif kind == "block":
            dst = target_base + (step // 8) % 4096
            ports = np.array([21, 22, 23, 25, 80, 443, 445, 3389])[step % 8]
        elif kind == "icmp_sweep":
            dst = target_base + step % 4096
            ports = np.full(m, -1)
        else:  # distributed: five sources share one target's port range
            src = scanner_base + i * 5 + step % 5
            dst = np.full(m, target_base + int(rng.integers(0, 4096)))
            ports = step % 1024 + 1
        fail = rng.choice(["rejected", "no_reply", "established"], size=m, p=[0.6, 0.35, 0.05])
        if kind == "icmp_sweep":
            fail = np.where(rng.random(m) < 0.8, "no_reply", "established")
        parts.append(
            {
                "t": t,
                "src": src,
                "dst": dst,
                "dport": ports,
                "transport": np.full(m, "icmp" if kind == "icmp_sweep" else "tcp", dtype=object),
                "outcome": fail,
                "label": np.full(m, "scan", dtype=object),
                "scan_type": np.full(m, kind, dtype=object),
            }
        )

    cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if sort:
        order = np.argsort(cols["t"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
    total = len(cols["t"])
    outcome_cat = pd.Categorical(cols["outcome"], categories=_OUTCOMES)
    established = outcome_cat.codes == 0
    src_bytes = np.where(established, np.round(rng.lognormal(6.5, 1.5, total)), rng.choice([0, 40, 44, 60], total))
    dst_bytes = np.where(established, np.round(rng.lognormal(8.0, 2.0, total)), 0)
    src_pkts = np.where(established, rng.integers(3, 40, total), rng.integers(1, 3, total))
    dst_pkts = np.where(established, rng.integers(2, 60, total), (outcome_cat.codes == 1).astype(int))
    ip = pd.array(pool, dtype=schema.STRING_DTYPE)
    dport = pd.array(cols["dport"], dtype="Int32")
    dport[cols["dport"] < 0] = pd.NA
    columns = {
        "event_start": pd.to_datetime(cols["t"], unit="ns", utc=True),
        "event_duration_s": np.where(established, rng.exponential(2.0, total), 0.0),
        "source_ip": ip.take(cols["src"]),
        "source_port": pd.array(np.where(cols["transport"] == "icmp", -1, rng.integers(32768, 61000, total)), dtype="Int32"),
        "destination_ip": ip.take(cols["dst"]),
        "destination_port": dport,
        "network_transport": pd.Categorical(cols["transport"], dtype=schema.TRANSPORT_DTYPE),
        "conn_outcome": pd.Categorical(outcome_cat, dtype=schema.OUTCOME_DTYPE),
        "source_bytes": src_bytes.astype(np.int64),
        "destination_bytes": dst_bytes.astype(np.int64),
        "source_packets": src_pkts.astype(np.int64),
        "destination_packets": dst_pkts.astype(np.int64),
    }
    columns["source_port"][cols["transport"] == "icmp"] = pd.NA
    if labels:
        columns["label"] = cols["label"]
        columns["scan_type"] = cols["scan_type"]
    return schema.conform(columns, log_format="simulated")
