"""Cilium Hubble flows (``hubble observe -o json`` or the Hubble exporter file).

Each input line is ``{"flow": {...}, "node_name": ..., "time": ...}`` (protojson of
``flow.proto``). Hubble emits one *flow event per packet per observation point*: the SYN of
one connection attempt shows up at ``TO_STACK`` on the client's node and again at
``TO_ENDPOINT`` on the server's node, and every reply packet is another event. This reader
assembles those events into one row per connection attempt:

1. Orient each event: ``is_reply: true`` (or the deprecated ``reply: true``) means the
   packet travels responder → initiator, so its endpoints are swapped. When ``is_reply`` is
   absent (Hubble leaves it out when unknown), a TCP SYN without ACK is a request, a SYN-ACK
   a reply, and otherwise the side with the lower port is taken as the server.
2. Group by the oriented 5-tuple (initiator ip and port, responder ip and port, transport);
   a gap longer than ``idle_timeout`` (default 60 s) starts a new attempt on the same
   5-tuple. Duplicates from several observation points fall into the same group.
3. Decide the outcome from the group's packets:

   ======================================================  ===================  ===============
   evidence in the group (first rule that applies)          ``conn_outcome``     ``policy_action``
   ======================================================  ===================  ===============
   any event DROPPED with a policy reason                   ``denied``           ``deny``
   (``POLICY_DENIED``/``POLICY_DENY``, codes 133/181,
   or ``egress_denied_by``/``ingress_denied_by`` set)
   TCP: SYN-ACK reply, or a request ACK after the SYN       ``established``      ``allow``
   TCP: RST in a reply (no SYN-ACK)                         ``rejected``         ``allow``
   TCP: request SYN only, nothing back                      ``no_reply``         ``allow``
   TCP: no SYN seen (flow started before the capture)       ``partial``          ``allow``
   UDP / ICMP echo: a reply seen                            ``established``      ``allow``
   UDP / ICMP echo: requests only                           ``no_reply``         ``allow``
   ICMP errors and other ICMP types                         ``unknown``          ``allow``
   DROPPED for a non-policy reason, or ERROR verdict        ``unknown``          ``unknown``
   ======================================================  ===================  ===============

   ``policy_action`` is ``allow`` when every event was FORWARDED, AUDIT (audit-mode policy:
   it would have been denied; see ``hubble_verdict``) or REDIRECTED (to the L7 proxy).

Columns
-------
``source_*`` describe the initiator: ``source_k8s_namespace``, ``source_k8s_pod`` and
``source_k8s_workload`` (first of ``workloads``, else NA) come from its endpoint;
``host_name`` is the node of the first event. ``tcp_flags`` is the OR of all flags seen in
both directions. Packet and byte counts are NA: Hubble counts each packet once per
observation point, so event counts are not packet counts (``hubble_events`` keeps them).
Extras: ``hubble_verdict`` (the worst verdict: DROPPED > ERROR > AUDIT > REDIRECTED >
FORWARDED), ``hubble_drop_reason``, ``hubble_destination_namespace``,
``hubble_destination_pod``, ``hubble_destination_workload``, ``hubble_source_labels``
(``;``-joined), ``hubble_traffic_direction``, ``hubble_events``.

Records that hold no flow (``lost_events``, ``node_status``, ``agent_event`` lines), L7 and
socket-translation events, and flows without an IP layer are skipped with their reason.
Events arrive roughly in time order; a connection whose events straddle two chunks more
than ``idle_timeout`` apart is split.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import register
from ._ep_common import iter_json_records
from ._report import ReadReport
from ._source import PathLike

__all__ = ["read_hubble"]

_POLICY_DROPS = {"POLICY_DENIED", "POLICY_DENY", "133", "181", "AUTH_REQUIRED", "189"}
_VERDICT_RANK = {"FORWARDED": 0, "TRANSLATED": 0, "TRACED": 0, "REDIRECTED": 1, "AUDIT": 2, "VERDICT_UNKNOWN": 3, "ERROR": 4, "DROPPED": 5}
_RANK_VERDICT = {0: "FORWARDED", 1: "REDIRECTED", 2: "AUDIT", 3: "VERDICT_UNKNOWN", 4: "ERROR", 5: "DROPPED"}
_FLAG_BITS = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32, "ECE": 64, "CWR": 128}
_ICMP_ECHO = {("icmp", 8): False, ("icmp", 0): True, ("icmpv6", 128): False, ("icmpv6", 129): True}

_FIELDS = (
    "time", "verdict", "drop", "policy_drop", "sip", "dip", "transport", "sport", "dport", "flags",
    "icmp_type", "icmp_code", "is_reply", "src_ns", "src_pod", "src_wl", "src_labels",
    "dst_ns", "dst_pod", "dst_wl", "dst_labels", "node", "direction", "line",
)


def _sniff(head: bytes, name: str) -> bool:
    return (b'"flow":{' in head or b'"flow": {' in head) and (
        b'"verdict"' in head or b'"trace_observation_point"' in head or b'"IP"' in head
    )


def _endpoint(ep: Any) -> tuple[Any, Any, Any, Any]:
    if not isinstance(ep, dict):
        return None, None, None, None
    workloads = ep.get("workloads") or []
    wl = workloads[0].get("name") if workloads and isinstance(workloads[0], dict) else None
    labels = ep.get("labels")
    return ep.get("namespace") or None, ep.get("pod_name") or None, wl, ";".join(labels) if labels else None


def _extract(obj: dict[str, Any], line: int) -> tuple[str, Any]:
    """One flow event → ("ok", tuple) / ("skip", reason) / ("bad", reason)."""
    flow = obj.get("flow")
    if not isinstance(flow, dict):
        other = next(iter(k for k in obj if k not in ("node_name", "time")), "unknown")
        return "skip", f"no flow in record ({other})"
    ftype = flow.get("Type")
    if ftype in ("L7", "SOCK"):
        return "skip", f"{ftype} event (not a packet flow)"
    ip = flow.get("IP")
    if not isinstance(ip, dict):
        return "skip", "flow without IP layer"
    sip, dip = ip.get("source"), ip.get("destination")
    if not sip or not dip:
        return "bad", "IP source or destination missing"
    time = flow.get("time") or obj.get("time")
    if not time:
        return "bad", "flow has no time"
    l4 = flow.get("l4") or {}
    sport = dport = icmp_type = icmp_code = None
    flags = 0
    is_syn = is_ack = False
    if "TCP" in l4:
        transport, body = "tcp", l4["TCP"] or {}
        sport, dport = body.get("source_port", 0), body.get("destination_port", 0)
        for name, on in (body.get("flags") or {}).items():
            if on:
                flags |= _FLAG_BITS.get(name, 0)
        is_syn, is_ack = bool(flags & 2), bool(flags & 16)
    elif "UDP" in l4 or "SCTP" in l4:
        transport = "udp" if "UDP" in l4 else "other"
        body = l4.get("UDP") or l4.get("SCTP") or {}
        sport, dport = body.get("source_port", 0), body.get("destination_port", 0)
    elif "ICMPv4" in l4 or "ICMPv6" in l4:
        transport = "icmp" if "ICMPv4" in l4 else "icmpv6"
        body = l4.get("ICMPv4") or l4.get("ICMPv6") or {}
        icmp_type, icmp_code = body.get("type", 0), body.get("code", 0)
    else:
        transport = "other"
    if not all(v is None or isinstance(v, int) for v in (sport, dport, icmp_type, icmp_code)):
        return "bad", "non-integer port or ICMP type"
    reply = flow.get("is_reply")
    if reply is None:
        reply = flow.get("reply")
    if reply is None:
        if transport == "tcp" and is_syn:
            reply = is_ack
        elif (transport, icmp_type) in _ICMP_ECHO:
            reply = _ICMP_ECHO[(transport, icmp_type)]
        elif sport is not None and dport is not None:
            reply = sport < dport
        else:
            reply = False
    verdict = flow.get("verdict") or "VERDICT_UNKNOWN"
    drop = flow.get("drop_reason_desc") or (str(flow["drop_reason"]) if flow.get("drop_reason") else None)
    policy_drop = verdict == "DROPPED" and (
        drop in _POLICY_DROPS or bool(flow.get("egress_denied_by")) or bool(flow.get("ingress_denied_by"))
    )
    src = _endpoint(flow.get("source"))
    dst = _endpoint(flow.get("destination"))
    node = flow.get("node_name") or obj.get("node_name")
    return "ok", (
        time, verdict, drop, policy_drop, sip, dip, transport, sport, dport, flags, icmp_type, icmp_code,
        bool(reply), *src, *dst, node, flow.get("traffic_direction"), line,
    )


def _parse(lines: np.ndarray, objects: list[dict[str, Any]], report: ReadReport) -> pd.DataFrame:
    rows: list[tuple] = []
    lost = 0
    for line, obj in zip(lines.tolist(), objects):
        kind, value = _extract(obj, line)
        if kind == "ok":
            rows.append(value)
        elif kind == "skip":
            report.skip(value)
            if isinstance(obj.get("lost_events"), dict):
                lost += int(obj["lost_events"].get("num_events_lost") or 0)
        else:
            report.bad(value, line=line, excerpt=str(obj)[:200])
    if lost:
        report["hubble_events_lost"] = report.get("hubble_events_lost", 0) + lost
        report.note("hubble: lost_events records: Hubble dropped flow events (see report['hubble_events_lost']); attempts may be missing")
    events = pd.DataFrame.from_records(rows, columns=list(_FIELDS))
    if events.empty:
        return events
    events["ts"] = pd.to_datetime(events["time"], utc=True, errors="coerce", format="ISO8601")
    bad = events["ts"].isna().to_numpy()
    if bad.any():
        report.bad_many("unparseable flow time", lines=events.loc[bad, "line"].to_numpy())
        events = events.loc[~bad].reset_index(drop=True)
    report.used(len(events))
    return events


def _orient(ev: pd.DataFrame) -> pd.DataFrame:
    """Swap reply events so that every event's source is the connection's initiator."""
    rep = ev["is_reply"].to_numpy(dtype=bool)
    out = ev.copy()
    for a, b in (("sip", "dip"), ("sport", "dport"), ("src_ns", "dst_ns"), ("src_pod", "dst_pod"), ("src_wl", "dst_wl"), ("src_labels", "dst_labels")):
        av, bv = ev[a].to_numpy(dtype=object), ev[b].to_numpy(dtype=object)
        out[a] = np.where(rep, bv, av)
        out[b] = np.where(rep, av, bv)
    # ICMP echo request and reply pair up on the (initiator, responder) pair; the echo id is not exported.
    return out


def _assemble(ev: pd.DataFrame, idle_s: float) -> pd.DataFrame:
    ev = _orient(ev)
    key_cols = ["sip", "sport", "dip", "dport", "transport"]
    keyed = ev[key_cols].astype("string").fillna("")
    ev["_key"] = keyed["sip"] + "|" + keyed["sport"] + "|" + keyed["dip"] + "|" + keyed["dport"] + "|" + keyed["transport"]
    ev = ev.sort_values(["_key", "ts"], kind="stable").reset_index(drop=True)
    t = ev["ts"].astype("int64").to_numpy()
    key = ev["_key"].to_numpy(dtype=object)
    new = np.ones(len(ev), dtype=bool)
    if len(ev) > 1:
        new[1:] = (key[1:] != key[:-1]) | ((t[1:] - t[:-1]) > idle_s * 1e9)
    gid = np.cumsum(new) - 1
    ev["_gid"] = gid
    rep = ev["is_reply"].to_numpy(dtype=bool)
    flags = ev["flags"].to_numpy(dtype=np.int64)
    fwd = ~rep
    ev["_syn_fwd"] = fwd & ((flags & 2) > 0) & ((flags & 16) == 0)
    ev["_ack_fwd"] = fwd & ((flags & 16) > 0) & ((flags & 2) == 0)
    ev["_synack"] = rep & ((flags & 18) == 18)
    ev["_rst_rep"] = rep & ((flags & 4) > 0)
    ev["_reply"] = rep
    for bit in _FLAG_BITS.values():
        ev[f"_b{bit}"] = (flags & bit) > 0
    ev["_fwd"] = fwd
    ev["_vrank"] = ev["verdict"].map(_VERDICT_RANK).fillna(3).astype(int)
    ev["_nonpolicy_drop"] = (ev["verdict"].isin(["DROPPED", "ERROR"])) & ~ev["policy_drop"].astype(bool)
    g = ev.groupby("_gid", sort=True)
    agg = g.agg(
        start=("ts", "min"),
        end=("ts", "max"),
        sip=("sip", "first"),
        sport=("sport", "first"),
        dip=("dip", "first"),
        dport=("dport", "first"),
        transport=("transport", "first"),
        **{f"_b{bit}": (f"_b{bit}", "any") for bit in _FLAG_BITS.values()},
        syn_fwd=("_syn_fwd", "any"),
        ack_fwd=("_ack_fwd", "any"),
        synack=("_synack", "any"),
        rst_rep=("_rst_rep", "any"),
        reply=("_reply", "any"),
        policy_drop=("policy_drop", "any"),
        nonpolicy_drop=("_nonpolicy_drop", "any"),
        vrank=("_vrank", "max"),
        events=("ts", "size"),
    )
    # identity and detail from the first request event of the group (else the first event)
    first_fwd = ev.sort_values(["_gid", "_reply", "ts"], kind="stable").drop_duplicates("_gid").set_index("_gid")
    first_type = first_fwd["icmp_type"]
    transport = agg["transport"].to_numpy(dtype=object)
    is_tcp = transport == "tcp"
    itype = pd.to_numeric(first_type, errors="coerce").to_numpy(dtype="float64")
    echo = ((transport == "icmp") & np.isin(itype, [0, 8])) | ((transport == "icmpv6") & np.isin(itype, [128, 129]))
    tcp_flags = sum(agg[f"_b{bit}"].to_numpy(dtype=np.int64) * bit for bit in _FLAG_BITS.values())
    is_udp = (transport == "udp") | (transport == "other")
    outcome = np.full(len(agg), str(schema.Outcome.UNKNOWN), dtype=object)
    reply = agg["reply"].to_numpy(dtype=bool)
    syn = agg["syn_fwd"].to_numpy(dtype=bool)
    est = agg["synack"].to_numpy(dtype=bool) | (syn & agg["ack_fwd"].to_numpy(dtype=bool))
    rst = agg["rst_rep"].to_numpy(dtype=bool)
    outcome[(is_udp | echo) & ~reply] = "no_reply"
    outcome[(is_udp | echo) & reply] = "established"
    outcome[is_tcp & ~syn & ~est] = "partial"
    outcome[is_tcp & syn & ~est & ~rst] = "no_reply"
    outcome[is_tcp & ~est & rst] = "rejected"
    outcome[is_tcp & est] = "established"
    nonpolicy = agg["nonpolicy_drop"].to_numpy(dtype=bool)
    policy = agg["policy_drop"].to_numpy(dtype=bool)
    outcome[nonpolicy & ~est & ~reply] = "unknown"
    outcome[policy] = "denied"
    action = np.where(policy, "deny", np.where(nonpolicy, "unknown", "allow"))
    start = agg["start"]
    columns: dict[str, Any] = {
        "event_start": start.to_numpy(),
        "event_duration_s": (agg["end"] - start).dt.total_seconds().to_numpy(),
        "source_ip": agg["sip"].to_numpy(dtype=object),
        "source_port": agg["sport"].to_numpy(dtype=object),
        "destination_ip": agg["dip"].to_numpy(dtype=object),
        "destination_port": agg["dport"].to_numpy(dtype=object),
        "network_transport": transport,
        "conn_outcome": outcome,
        "policy_action": action,
        "host_name": first_fwd["node"].to_numpy(dtype=object),
        "source_k8s_namespace": first_fwd["src_ns"].to_numpy(dtype=object),
        "source_k8s_pod": first_fwd["src_pod"].to_numpy(dtype=object),
        "source_k8s_workload": first_fwd["src_wl"].to_numpy(dtype=object),
        "tcp_flags": pd.array(np.where(is_tcp, tcp_flags, 0), dtype="Int32"),
        "icmp_type": first_type.to_numpy(dtype=object),
        "icmp_code": first_fwd["icmp_code"].to_numpy(dtype=object),
        "hubble_verdict": pd.Series(agg["vrank"].map(_RANK_VERDICT).to_numpy(dtype=object), dtype="string").array,
        "hubble_drop_reason": pd.Series(ev.dropna(subset=["drop"]).drop_duplicates("_gid").set_index("_gid")["drop"].reindex(agg.index).to_numpy(dtype=object), dtype="string").array,
        "hubble_destination_namespace": pd.Series(first_fwd["dst_ns"].to_numpy(dtype=object), dtype="string").array,
        "hubble_destination_pod": pd.Series(first_fwd["dst_pod"].to_numpy(dtype=object), dtype="string").array,
        "hubble_destination_workload": pd.Series(first_fwd["dst_wl"].to_numpy(dtype=object), dtype="string").array,
        "hubble_source_labels": pd.Series(first_fwd["src_labels"].to_numpy(dtype=object), dtype="string").array,
        "hubble_traffic_direction": pd.Series(first_fwd["direction"].to_numpy(dtype=object), dtype="string").array,
        "hubble_events": agg["events"].to_numpy(dtype=np.int64),
    }
    columns["tcp_flags"][~is_tcp] = pd.NA
    out = schema.conform(columns, log_format="hubble")
    return out.sort_values("event_start", kind="stable").reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return schema.conform({"hubble_events": np.zeros(0, dtype=np.int64)}, log_format="hubble")


@register("hubble", sniff=_sniff, priority=40, description="Cilium Hubble flows JSON (hubble observe -o json / exporter)")
def read_hubble(
    path: PathLike, report: ReadReport, *, chunksize: int, idle_timeout: float = 60.0, **options: Any
) -> Iterator[pd.DataFrame]:
    """Cilium Hubble flows JSON (hubble observe -o json / exporter), one row per attempt.

    Parameters
    ----------
    idle_timeout : float, default 60
        Seconds of silence on a 5-tuple after which a new event starts a new attempt.
    """
    report.note(
        "hubble: events from several observation points are merged into one attempt per 5-tuple; "
        "packet and byte counts are not available (hubble_events counts flow events)"
    )
    pending: pd.DataFrame | None = None
    yielded = False
    for lines, objects in iter_json_records(path, report, chunksize):
        events = _parse(lines, objects, report)
        if pending is not None and len(pending):
            events = pd.concat([pending, events], ignore_index=True) if len(events) else pending
        pending = None
        if events.empty:
            continue
        # keep back events of 5-tuples that may continue in the next chunk
        horizon = events["ts"].max() - pd.Timedelta(seconds=idle_timeout)
        oriented = _orient(events)
        key = oriented["sip"].astype(str) + "|" + oriented["sport"].astype(str) + "|" + oriented["dip"].astype(str) + "|" + oriented["dport"].astype(str) + "|" + oriented["transport"].astype(str)
        last = events["ts"].groupby(key).transform("max")
        open_ = (last > horizon).to_numpy()
        pending = events.loc[open_].reset_index(drop=True)
        done = events.loc[~open_].reset_index(drop=True)
        if len(done):
            yield _assemble(done, idle_timeout)
            yielded = True
    if pending is not None and len(pending):
        yield _assemble(pending, idle_timeout)
        yielded = True
    if not yielded:
        yield _empty()
