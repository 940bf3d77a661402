"""Google Cloud VPC Flow Logs and Firewall Rules Logging (``format="gcp"``).

One JSON ``LogEntry`` per line (as exported to Cloud Storage or by ``gcloud logging read
--format=json`` flattened to lines). Entries of ``.../logs/compute.googleapis.com%2Fvpc_flows``
are flow records; entries of ``...%2Ffirewall`` are firewall-rule decisions; other entries are
skipped. int64 counters arrive as JSON strings (``"bytes_sent": "1776"``).

VPC flow records are sampled and unidirectional (``connection`` is the direction the bytes
went), and the same record may be reported by both VMs (``reporter`` SRC and DEST): the two
reports of one 5-tuple and ``start_time`` are merged into one row. A record and its reverse
(overlapping within ``pair_tolerance`` seconds, default 5, GCP's aggregation interval) form
one attempt, the initiator chosen by the port heuristic (its destination port is the lower).
A lone record whose source port looks like a service (``src_port < dest_port`` and
``dest_port`` ≥ 32768) is turned around so that the initiator is the source
(``orient=False`` keeps records as logged).

Outcome mapping:

=======================================================  ===============  =============
record                                                   conn_outcome     policy_action
=======================================================  ===============  =============
firewall entry, ``disposition`` DENIED                   denied           deny
firewall entry, ``disposition`` ALLOWED / INTERCEPTED    unknown          allow
flow record with its reverse record                      established      allow
flow record alone (sampling can drop the reverse)        unknown          allow
=======================================================  ===============  =============

What the format cannot see: no TCP flags and no handshake state, so rejected and
unanswered attempts are not distinguished; sampling means a missing reverse record proves
nothing; denied connections appear only in Firewall Rules Logging.

Identity: ``cloud_provider`` ``gcp``; ``cloud_account_id`` and ``cloud_instance_id`` are the
source VM's project and name (GCP flow logs carry no numeric instance id);
``source_k8s_namespace``/``source_k8s_pod``/``source_k8s_workload`` from
``src_gke_details``. Extras: ``gcp_reporter``, ``gcp_dest_project``, ``gcp_dest_vm``,
``gcp_src_zone``, ``gcp_dest_zone``, ``gcp_src_vpc``, ``gcp_dest_vpc``, ``gcp_gke_cluster``,
``gcp_dest_k8s_namespace``, ``gcp_dest_k8s_pod``, ``gcp_dest_k8s_workload``, ``gcp_rtt_msec``,
``gcp_rule`` (firewall rule reference), ``gcp_disposition``, ``gcp_records``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import _flowutil as fu
from . import register
from ._report import ReadReport
from ._source import PathLike

__all__ = ["read_gcp"]

_SIDE = ("project", "vm", "zone", "vpc", "cluster", "ns", "pod", "workload")


def _sniff(head: bytes, name: str) -> bool:
    first = head.lstrip().split(b"\n", 1)[0]
    return first.startswith(b"{") and b'"jsonPayload"' in first and (
        b"vpc_flows" in first or b"%2Ffirewall" in first or b'"connection"' in first
    )


def _side(payload: dict[str, Any], side: str) -> tuple[Any, ...]:
    inst = payload.get(f"{side}_instance") or {}
    vpc = payload.get(f"{side}_vpc") or {}
    gke = payload.get(f"{side}_gke_details") or {}
    pod = gke.get("pod") or {}
    workload = pod.get("pod_workload") or {}
    return (
        inst.get("project_id") or vpc.get("project_id"),
        inst.get("vm_name"),
        inst.get("zone"),
        vpc.get("vpc_name"),
        (gke.get("cluster") or {}).get("cluster_name"),
        pod.get("pod_namespace"),
        pod.get("pod_name"),
        workload.get("workload_name"),
    )


@register("gcp", sniff=_sniff, description="Google Cloud VPC Flow Logs and Firewall Rules Logging (JSON lines)")
def read_gcp(
    path: PathLike,
    report: ReadReport,
    *,
    chunksize: int,
    pair_tolerance: float = 5.0,
    orient: bool = True,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """Google Cloud VPC Flow Logs and Firewall Rules Logging (JSON lines)."""
    if options:
        raise TypeError(f"gcp reader got unknown options {sorted(options)}")
    report.note("gcp: VPC flow logs are sampled and carry no TCP flags: rejected and unanswered attempts are not distinguished")
    yielded = False
    for kept, rows, deferred, _ in fu.iter_json_lines(path, report, min(chunksize, fu.PAIRING_CHUNK_LINES), _extract):
        frame = _chunk(kept, rows, deferred, report, pair_tolerance, orient)
        if frame is not None:
            yielded = True
            yield frame
    if not yielded:
        yield schema.conform({}, log_format="gcp", n=0)


def _extract(line: int, obj: dict[str, Any], deferred: list[tuple[int, str, Any]], skipped: dict[str, int]) -> tuple[Any, ...] | None:
    log = str(obj.get("logName", ""))
    payload = obj.get("jsonPayload")
    firewall = log.endswith(("%2Ffirewall", "/firewall"))
    if not (log.endswith("vpc_flows") or firewall):
        if isinstance(payload, dict) and "connection" in payload:
            firewall = "disposition" in payload
        else:
            reason = "log entry is neither a VPC flow nor a firewall record"
            skipped[reason] = skipped.get(reason, 0) + 1
            return None
    conn = payload.get("connection") if isinstance(payload, dict) else None
    if not isinstance(conn, dict):
        deferred.append((line, "no jsonPayload.connection", str(obj)[:200]))
        return None
    rule = payload.get("rule_details") or {}
    return (
        firewall, conn.get("src_ip"), conn.get("dest_ip"), conn.get("src_port"), conn.get("dest_port"),
        conn.get("protocol"), payload.get("start_time") or (obj.get("timestamp") if firewall else None),
        payload.get("end_time"), payload.get("bytes_sent"), payload.get("packets_sent"),
        payload.get("reporter"), payload.get("rtt_msec"), payload.get("disposition"),
        rule.get("reference"), rule.get("direction"),
        *_side(payload, "src"), *_side(payload, "dest"),
        # firewall entries name the VM the rule applied to as "instance"
        *(_side({"src_instance": payload.get("instance")}, "src") if firewall else (None,) * 8),
    )


def _chunk(kept: np.ndarray, rows: list[tuple[Any, ...]], deferred: list[tuple[int, str, Any]], report: ReadReport, tolerance: float, orient: bool) -> pd.DataFrame | None:
    if not rows:
        fu.quarantine(report, np.empty(0, dtype=object), np.empty(0, dtype=np.int64), deferred=deferred)
        return None
    names = ["fw", "src", "dst", "sport", "dport", "proto", "start", "end", "bytes", "pkts", "reporter", "rtt", "disp", "rule", "fwdir"]
    names += [f"s_{k}" for k in _SIDE] + [f"d_{k}" for k in _SIDE] + [f"i_{k}" for k in _SIDE]
    raw = pd.DataFrame(rows, columns=names, dtype=object)
    nums = kept
    n = len(raw)
    why, fail = fu.first_reasons(n)

    start = pd.to_datetime(raw["start"], utc=True, errors="coerce", format="ISO8601")
    end = pd.to_datetime(raw["end"], utc=True, errors="coerce", format="ISO8601")
    fail(start.isna().to_numpy(), "start_time is not a timestamp")
    fail(raw["src"].isna().to_numpy() | raw["dst"].isna().to_numpy(), "missing src_ip or dest_ip")
    proto, ok = fu.protocol_numbers(raw["proto"])
    fail(~ok | raw["proto"].isna().to_numpy(), "unknown protocol")
    ints = {}
    for key in ("sport", "dport", "bytes", "pkts", "rtt"):
        v, _, ok = fu.parse_ints(raw[key], missing=("", "None"))
        fail(~ok, f"{key} is not an integer")
        ints[key] = v
    fail((ints["sport"] > 65535) | (ints["dport"] > 65535), "port outside 0-65535")
    disp = raw["disp"].astype("object").to_numpy()
    fw = raw["fw"].to_numpy(dtype=bool)
    fail(fw & ~np.isin(disp, ("ALLOWED", "DENIED", "INTERCEPTED")), "firewall disposition is not ALLOWED/DENIED/INTERCEPTED")
    fu.quarantine(report, why, nums, deferred=deferred)
    good = why == ""
    if not good.any():
        return None
    raw = raw[good].reset_index(drop=True)
    start, end = start[good].reset_index(drop=True), end[good].reset_index(drop=True)
    proto = proto[good]
    ints = {k: v[good] for k, v in ints.items()}
    fw = fw[good]
    n = len(raw)
    t0 = fu.seconds(start)
    t1 = np.where(end.isna().to_numpy(), t0, fu.seconds(end))

    # 1. the same record reported by both ends: keep the first, fill from the second
    key = pd.DataFrame({"src": raw["src"], "dst": raw["dst"], "sp": ints["sport"], "dp": ints["dport"], "pr": proto, "t": t0, "fw": fw})
    dup = key.duplicated(keep="first").to_numpy() & ~fw
    first_of = key.groupby(list(key.columns), dropna=False, sort=False).ngroup().to_numpy()
    report.used(n)
    merged_into = pd.Series(np.arange(n)).groupby(first_of).transform("min").to_numpy()
    rep_text = raw["reporter"].astype("object")
    by_src = (rep_text == "SRC").groupby(first_of).transform("any").to_numpy()
    by_dest = (rep_text == "DEST").groupby(first_of).transform("any").to_numpy()
    reporter = pd.Series(
        np.select([by_src & by_dest, by_src, by_dest], ["DEST+SRC", "SRC", "DEST"], None), dtype=object
    )
    for col in [c for c in raw.columns if c.startswith(("s_", "d_"))]:
        raw[col] = raw[col].groupby(first_of).transform("first")
    count = pd.Series(np.ones(n)).groupby(first_of).transform("sum").to_numpy()
    keep = ~dup
    idx = np.flatnonzero(keep)
    del merged_into

    # 2. pair each flow record with its reverse
    rec = pd.DataFrame({"src": raw["src"].to_numpy()[idx], "dst": raw["dst"].to_numpy()[idx], "sport": ints["sport"][idx],
                        "dport": ints["dport"][idx], "proto": proto[idx], "t0": t0[idx], "t1": t1[idx]})
    flow_only = ~fw[idx]
    sub = np.flatnonzero(flow_only)
    a, b = fu.pair_reverse(rec.iloc[sub], keys=("src", "dst", "sport", "dport"), same=("proto",), tolerance=tolerance)
    a, b = sub[a], sub[b]
    sp, dp = rec["sport"].to_numpy(), rec["dport"].to_numpy()
    with np.errstate(invalid="ignore"):
        b_first = (dp[b] < sp[b]) & ~(dp[a] < sp[a]) | ((dp[b] < sp[b]) == (dp[a] < sp[a])) & (rec["t0"].to_numpy()[b] < rec["t0"].to_numpy()[a])
    init = np.where(b_first, b, a)
    resp = np.where(b_first, a, b)
    paired = np.zeros(len(idx), dtype=bool)
    paired[a] = paired[b] = True
    lone = np.flatnonzero(~paired)
    with np.errstate(invalid="ignore"):
        turn = orient & ~fw[idx][lone] & (sp[lone] < dp[lone]) & (dp[lone] >= 32768)
    I = np.concatenate([init, lone])
    R = np.concatenate([resp, np.full(len(lone), -1)])
    T = np.concatenate([np.zeros(len(init), bool), turn])
    order = np.lexsort((I, rec["t0"].to_numpy()[I]))
    I, R, T = I[order], R[order], T[order]
    gi, gr = idx[I], idx[np.maximum(R, 0)]
    has = R >= 0

    def own(v: Any) -> np.ndarray:
        return np.asarray(v)[gi]

    def rep(v: Any) -> np.ndarray:
        arr = np.asarray(v)
        return np.where(has, arr[gr], None if arr.dtype == object else np.nan)

    m = len(I)
    fwr = own(fw)
    out = np.where(fwr, np.where(own(disp[good]) == "DENIED", "denied", "unknown"), np.where(has, "established", "unknown"))
    pol = np.where(fwr & (own(disp[good]) == "DENIED"), "deny", "allow")
    s_ip, d_ip = own(raw["src"].to_numpy()), own(raw["dst"].to_numpy())
    s_pt, d_pt = own(ints["sport"]), own(ints["dport"])
    by, pk = own(ints["bytes"]), own(ints["pkts"])
    side = {k: own(raw[f"s_{k}"].to_numpy()) for k in _SIDE}
    dside = {k: own(raw[f"d_{k}"].to_numpy()) for k in _SIDE}
    inst = {k: own(raw[f"i_{k}"].to_numpy()) for k in _SIDE}
    # firewall entries: the rule's VM is the source for EGRESS rules, the destination for INGRESS
    fwdir = own(raw["fwdir"].to_numpy())
    for k in _SIDE:
        side[k] = np.where(fwr & (fwdir == "EGRESS") & pd.isna(side[k]), inst[k], side[k])
        dside[k] = np.where(fwr & (fwdir == "INGRESS") & pd.isna(dside[k]), inst[k], dside[k])
    s_by, s_pk = by.astype(np.float64), pk.astype(np.float64)
    d_by, d_pk = rep(ints["bytes"]), rep(ints["pkts"])
    d_by = np.where(has, d_by, np.nan)
    d_pk = np.where(has, d_pk, np.nan)
    # turn lone service-side records around
    s_ip, d_ip = np.where(T, d_ip, s_ip), np.where(T, s_ip, d_ip)
    s_pt, d_pt = np.where(T, d_pt, s_pt), np.where(T, s_pt, d_pt)
    s_by, d_by = np.where(T, np.nan, s_by), np.where(T, by, d_by)
    s_pk, d_pk = np.where(T, np.nan, s_pk), np.where(T, pk, d_pk)
    for k in _SIDE:
        side[k], dside[k] = np.where(T, dside[k], side[k]), np.where(T, side[k], dside[k])
    t0m = np.fmin(own(t0), np.where(has, rep(t0), np.inf))
    t1m = np.fmax(own(t1), rep(t1))
    transport = fu.transport_from_number(own(proto))
    icmp = np.isin(transport, ("icmp", "icmpv6"))

    def s(values: Any) -> Any:
        values = np.asarray(values, dtype=object)
        return pd.array(np.where(pd.isna(values), None, values), dtype="string")

    columns: dict[str, Any] = {
        "event_start": pd.to_datetime(np.round(t0m * 1e6).astype(np.int64), unit="us", utc=True),
        "event_duration_s": t1m - t0m,
        "source_ip": s_ip,
        "source_port": np.where(icmp, np.nan, s_pt),
        "destination_ip": d_ip,
        "destination_port": np.where(icmp, np.nan, d_pt),
        "network_transport": fu.categorical(transport, schema.TRANSPORT_DTYPE),
        "conn_outcome": fu.outcome(out),
        "source_bytes": s_by,
        "destination_bytes": d_by,
        "source_packets": s_pk,
        "destination_packets": d_pk,
        "policy_action": fu.policy(pol),
        "cloud_provider": s(np.full(m, "gcp", dtype=object)),
        "cloud_account_id": s(side["project"]),
        "cloud_instance_id": s(side["vm"]),
        "source_k8s_namespace": s(side["ns"]),
        "source_k8s_pod": s(side["pod"]),
        "source_k8s_workload": s(side["workload"]),
        "gcp_reporter": s(own(reporter.to_numpy())),
        "gcp_dest_project": s(dside["project"]),
        "gcp_dest_vm": s(dside["vm"]),
        "gcp_src_zone": s(side["zone"]),
        "gcp_dest_zone": s(dside["zone"]),
        "gcp_src_vpc": s(side["vpc"]),
        "gcp_dest_vpc": s(dside["vpc"]),
        "gcp_gke_cluster": s(np.where(pd.isna(side["cluster"]), dside["cluster"], side["cluster"])),
        "gcp_dest_k8s_namespace": s(dside["ns"]),
        "gcp_dest_k8s_pod": s(dside["pod"]),
        "gcp_dest_k8s_workload": s(dside["workload"]),
        "gcp_rtt_msec": pd.Series(own(ints["rtt"])).astype("Int64").array,
        "gcp_rule": s(own(raw["rule"].to_numpy())),
        "gcp_disposition": s(own(disp[good])),
        "gcp_records": pd.Series(own(count) + np.where(has, rep(count).astype(np.float64), 0)).astype("Int16").array,
    }
    return schema.conform(columns, log_format="gcp")
