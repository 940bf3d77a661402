"""Row blocks: the simulator's columnar intermediate, and turning blocks into a canonical frame.

A block is a dict of equal-length numpy arrays. Addresses are ``uint32`` (IPv4), labels are
small integer codes into the vocabularies below; strings are made once per day chunk, by
dictionary lookup, because formatting millions of addresses in Python would dominate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .. import schema

NS = 1_000_000_000
TRANSPORTS = ("tcp", "udp", "icmp")
OUTCOMES = tuple(str(o) for o in schema.Outcome)
EST, REJ, NOREP, UNREACH = (OUTCOMES.index(x) for x in ("established", "rejected", "no_reply", "icmp_unreachable"))
TCP, UDP, ICMP = 0, 1, 2

#: Label vocabularies (code = position).
LABELS = ("benign", "scan")
BENIGN_CATEGORIES = (
    "normal",
    "sanctioned_scanner",
    "monitoring",
    "health_check",
    "service_discovery",
    "nat_gateway",
    "dns_resolver",
    "backup",
    "ci_runner",
)
SCAN_TYPES = (
    "vertical",
    "horizontal",
    "block",
    "slow",
    "distributed",
    "udp",
    "icmp_sweep",
    "decoy",
    "stealth",
    "version",
)
ROLES = (
    "workstation",
    "web_server",
    "app_server",
    "database",
    "dns_resolver",
    "nat_gateway",
    "k8s_node",
    "k8s_pod",
    "monitoring",
    "uptime_checker",
    "backup_server",
    "ci_runner",
    "vuln_scanner",
    "external",
    "k8s_service",
    "spoofed",
)

# TCP flag bits as flow logs OR them over a connection.
FIN, SYN, RST, PSH, ACK, URG = 1, 2, 4, 8, 16, 32

_INT_FIELDS = {
    "t": np.int64,  # event_start, ns since the epoch
    "src": np.uint32,
    "dst": np.uint32,
    "sport": np.int32,  # -1 = NA
    "dport": np.int32,
    "proto": np.int8,
    "outcome": np.int8,
    "sbytes": np.int64,
    "dbytes": np.int64,
    "spk": np.int64,
    "dpk": np.int64,
    "flags": np.int16,  # -1 = NA
    "icmp_type": np.int16,
    "label": np.int8,
    "category": np.int8,  # -1 = NA (scans)
    "scan_type": np.int8,  # -1 = NA (benign)
    "scenario": np.int16,  # code into the simulator's scenario list
    "scan_id": np.int32,  # -1 = NA; code into the run's activity-id list
    "role": np.int8,
}
FIELDS = (*_INT_FIELDS, "dur")


def make_block(n: int, **columns: Any) -> dict[str, np.ndarray]:
    """A block of ``n`` rows; scalars broadcast, unspecified columns take their default."""
    defaults = {"sport": -1, "dport": -1, "flags": -1, "icmp_type": -1, "category": -1, "scan_type": -1, "scan_id": -1, "label": 0}
    out: dict[str, np.ndarray] = {}
    for name, dtype in _INT_FIELDS.items():
        value = columns.get(name, defaults.get(name, 0))
        out[name] = np.broadcast_to(np.asarray(value).astype(dtype, copy=False), (n,)).copy() if np.ndim(value) == 0 else np.asarray(value, dtype=dtype)
    dur = columns.get("dur", np.nan)
    out["dur"] = np.full(n, dur, dtype=np.float64) if np.ndim(dur) == 0 else np.asarray(dur, dtype=np.float64)
    unknown = set(columns) - set(FIELDS)
    if unknown:
        raise KeyError(f"unknown block columns {sorted(unknown)}")
    return out


def concat_blocks(blocks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    blocks = [b for b in blocks if len(b["t"])]
    if not blocks:
        return make_block(0)
    return {name: np.concatenate([b[name] for b in blocks]) for name in FIELDS}


def sort_block(block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Round times and durations, then sort by time, in place (the block is reused)."""
    # Times to the microsecond, durations to the millisecond (as nfdump prints them):
    # finer values would carry no information and would triple the bundled file.
    block["t"] //= 1000
    block["t"] *= 1000
    np.round(block["dur"], 3, out=block["dur"])
    # Stable, so rows with equal times keep generation order: the result is reproducible.
    order = np.argsort(block["t"], kind="stable")
    for name in list(block):
        block[name] = block[name][order]  # one column at a time bounds the extra memory
    return block


def ip_strings(u32: np.ndarray) -> Any:
    """Dotted-quad strings for ``uint32`` addresses, as a pandas string array."""
    import pyarrow as pa

    uniq, inverse = np.unique(u32, return_inverse=True)
    octets = [(uniq >> s) & 255 for s in (24, 16, 8, 0)]
    text = [f"{a}.{b}.{c}.{d}" for a, b, c, d in zip(*(o.tolist() for o in octets))]
    return _arrow_strings(pa.array(text, type=pa.string()).take(pa.array(inverse.astype(np.int32))))


def coded_strings(codes: np.ndarray, vocabulary: tuple[str, ...] | list[str]) -> Any:
    """Strings ``vocabulary[code]`` (NA where ``code < 0``) as a pandas string array."""
    import pyarrow as pa

    codes = np.asarray(codes)
    mask = codes < 0
    indices = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask)
    dictionary = pa.array(list(vocabulary) or [""], type=pa.string())
    return _arrow_strings(dictionary.take(indices))


def _arrow_strings(array: Any) -> Any:
    try:
        return pd.arrays.ArrowStringArray(array)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - pandas without pyarrow strings
        return pd.array(array.to_pylist(), dtype="string")


def _nullable(values: np.ndarray, dtype: str) -> Any:
    mask = values < 0
    kind = {"Int16": np.int16, "Int32": np.int32, "Int64": np.int64}[dtype]
    return pd.arrays.IntegerArray(np.where(mask, 0, values).astype(kind), mask)


def to_frame(block: dict[str, np.ndarray], scenarios: list[str], activity_ids: list[str]) -> pd.DataFrame:
    """The canonical frame (``log_format="simulated"``) for a block, with label columns."""
    n = len(block["t"])
    transport_codes = np.array([schema.TRANSPORT_DTYPE.categories.get_loc(t) for t in TRANSPORTS], dtype=np.int8)
    outcome_codes = np.array([schema.OUTCOME_DTYPE.categories.get_loc(o) for o in OUTCOMES], dtype=np.int8)
    allow = schema.POLICY_DTYPE.categories.get_loc("allow")
    icmp = block["proto"] == ICMP
    columns: dict[str, Any] = {
        "event_start": pd.DatetimeIndex(block["t"].view("datetime64[ns]"), tz="UTC").array if n else pd.array([], dtype=schema.TIMESTAMP_DTYPE),
        "event_duration_s": block["dur"],
        "source_ip": ip_strings(block["src"]),
        "source_port": _nullable(np.where(icmp, -1, block["sport"]), "Int32"),
        "destination_ip": ip_strings(block["dst"]),
        "destination_port": _nullable(np.where(icmp, -1, block["dport"]), "Int32"),
        "network_transport": pd.Categorical.from_codes(transport_codes[block["proto"]], dtype=schema.TRANSPORT_DTYPE),
        "conn_outcome": pd.Categorical.from_codes(outcome_codes[block["outcome"]], dtype=schema.OUTCOME_DTYPE),
        "source_bytes": _nullable(block["sbytes"], "Int64"),
        "destination_bytes": _nullable(block["dbytes"], "Int64"),
        "source_packets": _nullable(block["spk"], "Int64"),
        "destination_packets": _nullable(block["dpk"], "Int64"),
        "policy_action": pd.Categorical.from_codes(np.full(n, allow, dtype=np.int8), dtype=schema.POLICY_DTYPE),
        "tcp_flags": _nullable(block["flags"].astype(np.int32), "Int32"),
        "icmp_type": _nullable(np.where(icmp, block["icmp_type"], -1).astype(np.int16), "Int16"),
        "icmp_code": _nullable(np.where(icmp, 0, -1).astype(np.int16), "Int16"),
        "label": coded_strings(block["label"], LABELS),
        "scan_type": coded_strings(block["scan_type"], SCAN_TYPES),
        "benign_category": coded_strings(block["category"], BENIGN_CATEGORIES),
        "scenario": coded_strings(block["scenario"], scenarios),
        "scan_id": coded_strings(block["scan_id"], activity_ids),
        "sim_source_role": coded_strings(block["role"], ROLES),
    }
    return schema.conform(columns, log_format="simulated", n=n)
