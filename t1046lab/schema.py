"""The canonical connections frame: columns, dtypes, outcome values and validation.

Every reader returns this frame, one row per connection attempt (a flow record, a
``connect()`` call or an aggregated flow-log row). Column names follow the Elastic Common
Schema flattened with ``_``; :func:`to_ecs` and :func:`to_ocsf` export rows to ECS documents
and OCSF Network Activity (class 4001) events.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Outcome",
    "Transport",
    "PolicyAction",
    "CORE_COLUMNS",
    "IDENTITY_COLUMNS",
    "LABEL_COLUMNS",
    "FAILED_OUTCOMES",
    "LOG_FORMATS",
    "SchemaError",
    "empty_frame",
    "conform",
    "validate",
    "to_ecs",
    "to_ocsf",
]


class Outcome(enum.StrEnum):
    """What happened to a connection attempt (the ``conn_outcome`` column)."""

    ESTABLISHED = "established"  # handshake completed or two-way traffic
    REJECTED = "rejected"  # RST from the target
    NO_REPLY = "no_reply"  # SYN or datagram with no answer
    ICMP_UNREACHABLE = "icmp_unreachable"  # an ICMP error quoting the probe
    DENIED = "denied"  # a firewall or policy dropped it
    PARTIAL = "partial"  # mid-stream or half-seen
    UNKNOWN = "unknown"


class Transport(enum.StrEnum):
    """The ``network_transport`` values."""

    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"
    ICMPV6 = "icmpv6"
    OTHER = "other"


class PolicyAction(enum.StrEnum):
    """The ``policy_action`` values: the firewall or security-group decision."""

    ALLOW = "allow"
    DENY = "deny"
    UNKNOWN = "unknown"


#: Outcomes that count as a failed attempt in features and detectors.
FAILED_OUTCOMES: frozenset[str] = frozenset(
    {Outcome.REJECTED, Outcome.NO_REPLY, Outcome.ICMP_UNREACHABLE, Outcome.DENIED}
)

#: Every ``format=`` name a reader may write into ``log_format``. Fixed, so that frames
#: from several readers concatenate without losing the categorical dtype.
LOG_FORMATS: tuple[str, ...] = (
    "zeek",
    "zeek-json",
    "pcap",
    "suricata",
    "nfdump",
    "argus",
    "vpc",
    "gcp",
    "azure-nsg",
    "azure-vnet",
    "hubble",
    "calico",
    "cic",
    "unsw",
    "cidds",
    "osquery",
    "sysmon-linux",
    "auditd",
    "canonical",
    "simulated",
)


def _category(values: Iterable[str]) -> pd.CategoricalDtype:
    return pd.CategoricalDtype([str(v) for v in values], ordered=False)


OUTCOME_DTYPE = _category(Outcome)
TRANSPORT_DTYPE = _category(Transport)
POLICY_DTYPE = _category(PolicyAction)
LOG_FORMAT_DTYPE = _category(LOG_FORMATS)
TIMESTAMP_DTYPE = pd.DatetimeTZDtype("ns", "UTC")
STRING_DTYPE = pd.StringDtype()

#: The columns every canonical frame has, in order, with their dtypes (**contract**).
CORE_COLUMNS: dict[str, Any] = {
    "event_start": TIMESTAMP_DTYPE,
    "event_duration_s": np.dtype("float64"),
    "source_ip": STRING_DTYPE,
    "source_port": pd.Int32Dtype(),
    "destination_ip": STRING_DTYPE,
    "destination_port": pd.Int32Dtype(),
    "network_transport": TRANSPORT_DTYPE,
    "conn_outcome": OUTCOME_DTYPE,
    "source_bytes": pd.Int64Dtype(),
    "destination_bytes": pd.Int64Dtype(),
    "source_packets": pd.Int64Dtype(),
    "destination_packets": pd.Int64Dtype(),
    "policy_action": POLICY_DTYPE,
    "log_format": LOG_FORMAT_DTYPE,
}

#: Optional identity columns, present when the source has them.
IDENTITY_COLUMNS: dict[str, Any] = {
    "host_name": STRING_DTYPE,
    "process_pid": pd.Int64Dtype(),
    "process_name": STRING_DTYPE,
    "process_executable": STRING_DTYPE,
    "user_name": STRING_DTYPE,
    "container_id": STRING_DTYPE,
    "source_k8s_namespace": STRING_DTYPE,
    "source_k8s_pod": STRING_DTYPE,
    "source_k8s_workload": STRING_DTYPE,
    "cloud_provider": STRING_DTYPE,
    "cloud_account_id": STRING_DTYPE,
    "cloud_instance_id": STRING_DTYPE,
    "network_interface_id": STRING_DTYPE,
    "tcp_flags": pd.Int32Dtype(),  # FIN 1, SYN 2, RST 4, PSH 8, ACK 16, as in flow logs
    "icmp_type": pd.Int16Dtype(),  # ICMP rows: ports are NA, the type and code go here
    "icmp_code": pd.Int16Dtype(),
}

#: Label columns, present in labelled datasets.
LABEL_COLUMNS: dict[str, Any] = {
    "label": STRING_DTYPE,  # "scan" or "benign"
    "scan_type": STRING_DTYPE,
    "benign_category": STRING_DTYPE,
    "scenario": STRING_DTYPE,
}

_KNOWN_COLUMNS: dict[str, Any] = {**CORE_COLUMNS, **IDENTITY_COLUMNS, **LABEL_COLUMNS}
_PORT_COLUMNS = ("source_port", "destination_port")
_COUNT_COLUMNS = ("source_bytes", "destination_bytes", "source_packets", "destination_packets")


class SchemaError(ValueError):
    """A frame does not follow the canonical schema; the message lists every problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(
            "not a canonical connections frame:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def empty_frame(extra: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Return a canonical frame with no rows (core columns plus ``extra`` name → dtype)."""
    columns = {**CORE_COLUMNS, **(extra or {})}
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()})


def conform(columns: Mapping[str, Any], *, log_format: str, n: int | None = None) -> pd.DataFrame:
    """Build a canonical frame from column arrays, casting each to its canonical dtype.

    Readers call this once per chunk. Core columns missing from ``columns`` are filled
    with their missing value (``policy_action`` with ``"unknown"``); known optional columns
    are cast to their dtype; other columns are kept as given, after the known ones.

    Parameters
    ----------
    columns : mapping of str to array-like
        Column name to values (numpy arrays, lists or Series of equal length).
    log_format : str
        The reader's ``format=`` name, written into ``log_format``.
    n : int, optional
        The number of rows; needed only when ``columns`` holds no array.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log_format {log_format!r}; expected one of {LOG_FORMATS}")
    if n is None:
        lengths = {len(v) for v in columns.values() if not np.isscalar(v)}
        if len(lengths) > 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
    out: dict[str, pd.Series | pd.api.extensions.ExtensionArray] = {}
    for name, dtype in CORE_COLUMNS.items():
        if name == "log_format":
            out[name] = pd.Categorical.from_codes(
                np.full(n, LOG_FORMATS.index(log_format), dtype=np.int8), dtype=LOG_FORMAT_DTYPE
            )
        elif name in columns:
            out[name] = _cast(columns[name], name, dtype, n)
        elif name == "policy_action":
            out[name] = pd.Categorical.from_codes(
                np.full(n, list(PolicyAction).index(PolicyAction.UNKNOWN), dtype=np.int8),
                dtype=POLICY_DTYPE,
            )
        else:
            out[name] = _missing(dtype, n)
    for name, values in columns.items():
        if name in CORE_COLUMNS:
            continue
        dtype = _KNOWN_COLUMNS.get(name)
        out[name] = _cast(values, name, dtype, n) if dtype is not None else values
    frame = pd.DataFrame(out)
    frame.index = pd.RangeIndex(n)
    return frame


def _missing(dtype: Any, n: int) -> Any:
    if isinstance(dtype, np.dtype):
        return np.full(n, np.nan, dtype=dtype)
    # Broadcasting the scalar is ~20x faster than building the array from a list of Nones.
    return pd.Series(pd.NA, index=pd.RangeIndex(n), dtype=dtype).array


def _cast(values: Any, name: str, dtype: Any, n: int) -> Any:
    if np.isscalar(values) or values is None:
        values = [values] * n
    if dtype is TIMESTAMP_DTYPE:
        series = pd.Series(values)
        if series.dtype.kind in "iu":
            return pd.to_datetime(series, unit="ns", utc=True).astype(TIMESTAMP_DTYPE)
        return pd.to_datetime(series, utc=True).astype(TIMESTAMP_DTYPE)
    if isinstance(dtype, pd.CategoricalDtype):
        if isinstance(values, (pd.Categorical, pd.Series)) and values.dtype == dtype:
            return values  # already canonical: the fast path for vectorised readers
        objects = pd.Series(values).astype("object")
        unknown = objects.notna() & ~objects.isin(list(dtype.categories))
        if unknown.any():
            bad = sorted({str(v) for v in objects[unknown]})[:5]
            raise SchemaError([f"column {name!r} has values outside {list(dtype.categories)}: {bad}"])
        return pd.Categorical(objects, dtype=dtype)
    return pd.Series(values).astype(dtype).array


def validate(df: pd.DataFrame, *, check_ips: bool = False) -> pd.DataFrame:
    """Check that ``df`` is a canonical connections frame; return it unchanged.

    Parameters
    ----------
    df : DataFrame
        The frame to check.
    check_ips : bool, default False
        Also parse every address with :mod:`ipaddress` (slow on large frames).

    Raises
    ------
    SchemaError
        Listing every problem found: missing columns, wrong dtypes, values outside a
        category, ports outside 0–65535, negative counts or durations.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    problems: list[str] = []
    missing = [c for c in CORE_COLUMNS if c not in df.columns]
    if missing:
        problems.append(f"missing columns: {missing}")
    for name, dtype in _KNOWN_COLUMNS.items():
        if name not in df.columns:
            continue
        actual = df[name].dtype
        if isinstance(dtype, pd.CategoricalDtype):
            if not isinstance(actual, pd.CategoricalDtype):
                problems.append(f"column {name!r} has dtype {actual}, expected category")
                continue
            extra = set(map(str, actual.categories)) - set(map(str, dtype.categories))
            if extra:
                problems.append(
                    f"column {name!r} has categories outside {list(dtype.categories)}: {sorted(extra)}"
                )
        elif isinstance(dtype, pd.StringDtype):
            if not (isinstance(actual, pd.StringDtype) or actual == object):
                problems.append(f"column {name!r} has dtype {actual}, expected string")
        elif actual != dtype:
            problems.append(f"column {name!r} has dtype {actual}, expected {dtype}")
    if not problems:
        for name in _PORT_COLUMNS:
            ports = df[name]
            bad = ports.notna() & ((ports < 0) | (ports > 65535))
            if bad.any():
                problems.append(f"column {name!r} has {int(bad.sum())} values outside 0-65535")
        for name in (*_COUNT_COLUMNS, "event_duration_s"):
            neg = df[name] < 0
            if neg.fillna(False).any():
                problems.append(f"column {name!r} has {int(neg.sum())} negative values")
        if df["event_start"].isna().any():
            problems.append(f"column 'event_start' has {int(df['event_start'].isna().sum())} missing values")
    if check_ips and not problems:
        import ipaddress

        for name in ("source_ip", "destination_ip"):
            for value in pd.unique(df[name].dropna()):
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    problems.append(f"column {name!r} holds {value!r}, not an IP address")
                    break
    if problems:
        raise SchemaError(problems)
    return df


# --- exporters ------------------------------------------------------------------------

# ECS event.outcome is success/failure/unknown; the finer outcome goes to event.action.
_ECS_OUTCOME = {
    "established": "success",
    "rejected": "failure",
    "no_reply": "failure",
    "icmp_unreachable": "failure",
    "denied": "failure",
    "partial": "unknown",
    "unknown": "unknown",
}

# OCSF 1.x Network Activity activity_id: 1 Open, 4 Fail, 5 Refuse, 6 Traffic, 0 Unknown.
_OCSF_ACTIVITY = {
    "established": 1,
    "rejected": 5,
    "no_reply": 4,
    "icmp_unreachable": 5,
    "denied": 4,
    "partial": 6,
    "unknown": 0,
}
_OCSF_ACTIVITY_NAME = {0: "Unknown", 1: "Open", 4: "Fail", 5: "Refuse", 6: "Traffic"}
_IANA_PROTOCOL = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
_OCSF_CLASS_UID = 4001
_OCSF_CATEGORY_UID = 4


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(pd.NA, index=df.index, dtype="object")


def _drop_missing(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if v is not None and not (isinstance(v, float) and np.isnan(v)) and v is not pd.NA}


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in flat.items():
        node = root
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return root


def _records(frame: pd.DataFrame, nested: bool) -> pd.DataFrame | list[dict[str, Any]]:
    if not nested:
        return frame
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return [_nest(_drop_missing(r)) for r in rows]


def to_ecs(df: pd.DataFrame, *, nested: bool = False) -> pd.DataFrame | list[dict[str, Any]]:
    """Export canonical rows as Elastic Common Schema fields.

    Parameters
    ----------
    df : DataFrame
        A canonical connections frame.
    nested : bool, default False
        Return a list of nested dicts (one ECS document per row, missing fields left out)
        instead of a frame with dotted column names.
    """
    validate(df)
    outcome = df["conn_outcome"].astype("object")
    out = pd.DataFrame(
        {
            "@timestamp": df["event_start"],
            "event.kind": "event",
            "event.category": "network",
            "event.type": "connection",
            "event.action": outcome,
            "event.outcome": outcome.map(_ECS_OUTCOME),
            "event.duration": (df["event_duration_s"] * 1e9).round().astype("Int64"),
            "source.ip": df["source_ip"],
            "source.port": df["source_port"],
            "source.bytes": df["source_bytes"],
            "source.packets": df["source_packets"],
            "destination.ip": df["destination_ip"],
            "destination.port": df["destination_port"],
            "destination.bytes": df["destination_bytes"],
            "destination.packets": df["destination_packets"],
            "network.transport": df["network_transport"].astype("object"),
            "network.iana_number": df["network_transport"].astype("object").map(_IANA_PROTOCOL).astype("Int64"),
            "event.module": df["log_format"].astype("object"),
        },
        index=df.index,
    )
    identity = {
        "host_name": "host.name",
        "process_pid": "process.pid",
        "process_name": "process.name",
        "process_executable": "process.executable",
        "user_name": "user.name",
        "container_id": "container.id",
        "source_k8s_namespace": "orchestrator.namespace",
        "source_k8s_pod": "orchestrator.resource.name",
        "cloud_provider": "cloud.provider",
        "cloud_account_id": "cloud.account.id",
        "cloud_instance_id": "cloud.instance.id",
        "network_interface_id": "observer.ingress.interface.id",
    }
    for column, field in identity.items():
        if column in df.columns:
            out[field] = df[column]
    if nested:
        out = out.assign(**{"@timestamp": out["@timestamp"].map(lambda t: t.isoformat() if pd.notna(t) else None)})
    return _records(out, nested)


def to_ocsf(df: pd.DataFrame, *, nested: bool = False) -> pd.DataFrame | list[dict[str, Any]]:
    """Export canonical rows as OCSF Network Activity events (``class_uid`` 4001).

    ``activity_id`` follows the outcome: established → 1 Open, rejected and
    icmp_unreachable → 5 Refuse, no_reply → 4 Fail, denied → 4 Fail with
    ``disposition_id`` 2 Blocked, partial → 6 Traffic, unknown → 0.

    Parameters
    ----------
    df : DataFrame
        A canonical connections frame.
    nested : bool, default False
        Return a list of nested dicts (one OCSF event per row) instead of a flat frame.
    """
    validate(df)
    outcome = df["conn_outcome"].astype("object")
    activity = outcome.map(_OCSF_ACTIVITY).astype("int64")
    denied = (outcome == Outcome.DENIED) | (df["policy_action"].astype("object") == PolicyAction.DENY)
    allowed = df["policy_action"].astype("object") == PolicyAction.ALLOW
    disposition = np.where(denied, 2, np.where(allowed, 1, 0))
    transport = df["network_transport"].astype("object")
    start_ms = df["event_start"].astype("int64") // 1_000_000
    out = pd.DataFrame(
        {
            "class_uid": _OCSF_CLASS_UID,
            "class_name": "Network Activity",
            "category_uid": _OCSF_CATEGORY_UID,
            "category_name": "Network Activity",
            "activity_id": activity,
            "activity_name": activity.map(_OCSF_ACTIVITY_NAME),
            "type_uid": _OCSF_CLASS_UID * 100 + activity,
            "severity_id": 1,
            "time": start_ms,
            "start_time": start_ms,
            "duration": (df["event_duration_s"] * 1000).round().astype("Int64"),
            "disposition_id": disposition,
            "status_id": np.where(outcome == Outcome.ESTABLISHED, 1, np.where(outcome.isin(list(FAILED_OUTCOMES)), 2, 0)),
            "src_endpoint.ip": df["source_ip"],
            "src_endpoint.port": df["source_port"],
            "dst_endpoint.ip": df["destination_ip"],
            "dst_endpoint.port": df["destination_port"],
            "connection_info.protocol_name": transport,
            "connection_info.protocol_num": transport.map(_IANA_PROTOCOL).astype("Int64"),
            "traffic.bytes_out": df["source_bytes"],
            "traffic.bytes_in": df["destination_bytes"],
            "traffic.packets_out": df["source_packets"],
            "traffic.packets_in": df["destination_packets"],
            "metadata.product.name": "t1046lab",
            "metadata.log_name": df["log_format"].astype("object"),
            "metadata.version": "1.1.0",
        },
        index=df.index,
    )
    identity = {
        "host_name": "device.hostname",
        "process_pid": "actor.process.pid",
        "process_name": "actor.process.name",
        "process_executable": "actor.process.file.path",
        "user_name": "actor.user.name",
        "container_id": "src_endpoint.container.uid",
        "source_k8s_namespace": "unmapped.k8s_namespace",  # OCSF 1.x has no Kubernetes fields
        "source_k8s_pod": "unmapped.k8s_pod",
        "source_k8s_workload": "unmapped.k8s_workload",
        "cloud_provider": "cloud.provider",
        "cloud_account_id": "cloud.account.uid",
        "cloud_instance_id": "src_endpoint.instance_uid",
        "network_interface_id": "src_endpoint.interface_uid",
    }
    for column, field in identity.items():
        if column in df.columns:
            out[field] = df[column]
    return _records(out, nested)
