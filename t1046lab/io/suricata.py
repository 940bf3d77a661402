"""Suricata EVE JSON ``flow`` events (``format="suricata"``).

One EVE line is one record. ``event_type == "flow"`` events become one row each; every
other event type (alert, dns, http, tls, stats, ...) is well formed but holds no connection
of its own and is counted as skipped. The flow's own times are used (``flow.start``,
``flow.end``): the top-level ``timestamp`` of a flow event is the time it was *logged*.

Outcome mapping (``ts`` = ``tcp.tcp_flags_ts``, the client's flags; ``tc`` =
``tcp.tcp_flags_tc``, the server's; ``toclient`` = ``flow.pkts_toclient``):

======================  ====================================================  ===============
transport               condition (first that holds)                          conn_outcome
======================  ====================================================  ===============
tcp                     ``ts`` has no SYN and ``tc`` has no SYN (mid-stream)  partial
tcp                     ``tc`` has SYN (SYN-ACK seen: the target answered)    established
tcp                     ``tc`` has RST                                        rejected
tcp                     ``toclient`` > 0 and ``tc`` == 0 (only ICMP errors    icmp_unreachable
                        came back: Suricata counts an ICMPv4 error quoting
                        the probe as a to-client packet of the probe's flow)
tcp                     ``toclient`` == 0                                     no_reply
tcp                     anything else                                         unknown
udp / other             ``toclient`` == 0                                     no_reply
udp / other             ``toclient`` > 0 and ``flow.state == "new"`` (the     icmp_unreachable
                        to-client packets were ICMPv4 errors: they do not
                        set the flow's to-client "seen" flag, so the flow
                        never leaves state new)
udp / other             ``toclient`` > 0 otherwise                            established
icmp / icmpv6           ``icmp_type`` is itself an error (v4 3, 4, 5, 11, 12; unknown
                        v6 1-4): an error Suricata could not attach to a flow
icmp / icmpv6           ``response_icmp_type`` is destination unreachable     icmp_unreachable
                        (v4 3, v6 1)
icmp / icmpv6           ``toclient`` > 0                                      established
icmp / icmpv6           ``toclient`` == 0                                     no_reply
======================  ====================================================  ===============

``policy_action`` is ``unknown`` (an IDS sees, it does not decide). A half-open SYN scan
of an open port (SYN, SYN-ACK, RST from the scanner) is ``established`` because the target
answered; ``suricata_tcp_state`` (``syn_recv``, ``closed``...) and the flags keep the detail.

Columns: ``tcp_flags`` is ``tcp.tcp_flags`` (both directions OR-ed); ``icmp_type`` and
``icmp_code`` for ICMP flows; extras ``suricata_flow_id``, ``suricata_flow_state``,
``suricata_flow_reason``, ``suricata_tcp_state``, ``suricata_tcp_flags_ts``,
``suricata_tcp_flags_tc``, ``suricata_app_proto``, ``suricata_community_id``,
``suricata_sensor`` (the EVE ``host`` field: the sensor name, not an endpoint).
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

__all__ = ["read_suricata"]

_ICMP4_ERRORS = (3, 4, 5, 11, 12)
_ICMP6_ERRORS = (1, 2, 3, 4)


def _sniff(head: bytes, name: str) -> bool:
    first = head.lstrip().split(b"\n", 1)[0]
    return first.startswith(b"{") and b'"event_type"' in first and (b'"src_ip"' in first or b'"flow_id"' in first or b'"stats"' in first)


@register("suricata", sniff=_sniff, description="Suricata EVE JSON flow events")
def read_suricata(path: PathLike, report: ReadReport, *, chunksize: int, **options: Any) -> Iterator[pd.DataFrame]:
    """Suricata EVE JSON flow events."""
    if options:
        raise TypeError(f"suricata reader takes no options, got {sorted(options)}")
    yielded = False
    for kept, rows, deferred, _ in fu.iter_json_lines(path, report, min(chunksize, fu.CHUNK_LINES), _extract):
        frame = _chunk(kept, rows, deferred, report)
        if frame is not None:
            yielded = True
            yield frame
    if not yielded:
        yield schema.conform({}, log_format="suricata", n=0)


def _extract(line: int, obj: dict[str, Any], deferred: list[tuple[int, str, Any]], skipped: dict[str, int]) -> tuple[Any, ...] | None:
    kind = obj.get("event_type")
    if kind != "flow":
        if not isinstance(kind, str):
            deferred.append((line, "no event_type", str(obj)[:200]))
        else:
            reason = f"event_type {kind!r} holds no connection"
            skipped[reason] = skipped.get(reason, 0) + 1
        return None
    flow = obj.get("flow")
    tcp = obj.get("tcp")
    if not isinstance(flow, dict) or not isinstance(tcp, (dict, type(None))):
        deferred.append((line, "flow event without a flow object", str(obj)[:200]))
        return None
    tcp = tcp or {}
    return (
        flow.get("start"), flow.get("end"), obj.get("src_ip"), obj.get("src_port"),
        obj.get("dest_ip"), obj.get("dest_port"), obj.get("proto"),
        flow.get("pkts_toserver"), flow.get("pkts_toclient"),
        flow.get("bytes_toserver"), flow.get("bytes_toclient"),
        flow.get("state"), flow.get("reason"), tcp.get("tcp_flags"), tcp.get("tcp_flags_ts"),
        tcp.get("tcp_flags_tc"), tcp.get("state"), obj.get("icmp_type"), obj.get("icmp_code"),
        obj.get("response_icmp_type"), obj.get("response_icmp_code"), obj.get("flow_id"),
        obj.get("app_proto"), obj.get("community_id"), obj.get("host"),
    )


def _chunk(kept: np.ndarray, rows: list[tuple[Any, ...]], deferred: list[tuple[int, str, Any]], report: ReadReport) -> pd.DataFrame | None:
    if not rows:
        fu.quarantine(report, np.empty(0, dtype=object), np.empty(0, dtype=np.int64), deferred=deferred)
        return None
    names = [
        "start", "end", "src", "sport", "dst", "dport", "proto", "pts", "ptc", "bts", "btc", "state",
        "reason", "flags", "fts", "ftc", "tcpstate", "itype", "icode", "ritype", "ricode", "flow_id",
        "app", "cid", "host",
    ]
    raw = pd.DataFrame(rows, columns=names, dtype=object)
    lines_kept = kept
    n = len(raw)
    why, fail = fu.first_reasons(n)

    start = pd.to_datetime(raw["start"], utc=True, errors="coerce", format="ISO8601")
    end = pd.to_datetime(raw["end"], utc=True, errors="coerce", format="ISO8601")
    fail(start.isna().to_numpy(), "flow.start is not a timestamp")
    fail(raw["src"].isna().to_numpy() | raw["dst"].isna().to_numpy(), "missing src_ip or dest_ip")
    proto, proto_ok = fu.protocol_numbers(raw["proto"])
    fail(~proto_ok, "unknown protocol")
    counts = {}
    for col in ("pts", "ptc", "bts", "btc", "sport", "dport", "itype", "icode", "ritype", "ricode", "flow_id"):
        values, _, ok = fu.parse_ints(raw[col])
        fail(~ok, f"{_col_name(col)} is not an integer")
        counts[col] = values
    fail((counts["sport"] > 65535) | (counts["dport"] > 65535), "port outside 0-65535")
    flags = {}
    for col in ("flags", "fts", "ftc"):
        text = raw[col].astype(object)
        hexed = fu.fullmatch(text, r"[0-9a-fA-F]{1,2}")
        fail(~hexed & text.notna().to_numpy(), f"tcp.{_col_name(col)} is not a hex flag byte")
        flags[col] = fu.per_unique(text.where(hexed, None), lambda u: np.array([int(v, 16) for v in u], dtype=np.float64))
    fu.quarantine(report, why, lines_kept, deferred=deferred)
    ok = why == ""
    report.used(int(ok.sum()))
    if not ok.any():
        return None
    raw = raw[ok].reset_index(drop=True)
    start, end = start[ok].reset_index(drop=True), end[ok].reset_index(drop=True)
    proto = proto[ok]
    counts = {k: v[ok] for k, v in counts.items()}
    flags = {k: v[ok] for k, v in flags.items()}
    transport = fu.transport_from_number(proto)
    out = _outcomes(transport, raw["state"].astype("object").to_numpy(), counts, flags)
    is_icmp = np.isin(transport, ("icmp", "icmpv6"))
    columns: dict[str, Any] = {
        "event_start": start,
        "event_duration_s": (end - start).dt.total_seconds().to_numpy(),
        "source_ip": raw["src"].to_numpy(dtype=object),
        "source_port": np.where(is_icmp, np.nan, counts["sport"]),
        "destination_ip": raw["dst"].to_numpy(dtype=object),
        "destination_port": np.where(is_icmp, np.nan, counts["dport"]),
        "network_transport": fu.categorical(transport, schema.TRANSPORT_DTYPE),
        "conn_outcome": fu.outcome(out),
        "source_bytes": counts["bts"],
        "destination_bytes": counts["btc"],
        "source_packets": counts["pts"],
        "destination_packets": counts["ptc"],
        "tcp_flags": flags["flags"],
        "icmp_type": counts["itype"],
        "icmp_code": counts["icode"],
        "suricata_flow_id": pd.array([None if v is None else int(v) for v in raw["flow_id"].tolist()], dtype="Int64"),
        "suricata_flow_state": pd.array(raw["state"].astype("object").to_numpy(), dtype="string"),
        "suricata_flow_reason": pd.array(raw["reason"].astype("object").to_numpy(), dtype="string"),
        "suricata_tcp_state": pd.array(raw["tcpstate"].astype("object").to_numpy(), dtype="string"),
        "suricata_tcp_flags_ts": pd.Series(flags["fts"]).astype("Int16").array,
        "suricata_tcp_flags_tc": pd.Series(flags["ftc"]).astype("Int16").array,
        "suricata_app_proto": pd.array(raw["app"].astype("object").to_numpy(), dtype="string"),
        "suricata_community_id": pd.array(raw["cid"].astype("object").to_numpy(), dtype="string"),
        "suricata_sensor": pd.array(raw["host"].astype("object").to_numpy(), dtype="string"),
    }
    return schema.conform(columns, log_format="suricata")


def _col_name(col: str) -> str:
    return {
        "pts": "flow.pkts_toserver", "ptc": "flow.pkts_toclient", "bts": "flow.bytes_toserver",
        "btc": "flow.bytes_toclient", "sport": "src_port", "dport": "dest_port", "itype": "icmp_type",
        "icode": "icmp_code", "ritype": "response_icmp_type", "ricode": "response_icmp_code",
        "flow_id": "flow_id", "flags": "tcp_flags", "fts": "tcp_flags_ts", "ftc": "tcp_flags_tc",
    }[col]


def _outcomes(transport: np.ndarray, state: np.ndarray, counts: dict[str, np.ndarray], flags: dict[str, np.ndarray]) -> np.ndarray:
    n = len(transport)
    out = np.full(n, "unknown", dtype=object)
    toclient = np.nan_to_num(counts["ptc"], nan=0.0)
    ts = np.nan_to_num(flags["fts"], nan=0).astype(np.int64)
    tc = np.nan_to_num(flags["ftc"], nan=0).astype(np.int64)
    have_flags = ~np.isnan(flags["fts"]) | ~np.isnan(flags["ftc"])

    def assign(mask: np.ndarray, value: str) -> None:
        nonlocal decided
        take = mask & ~decided
        out[take] = value
        decided |= take

    decided = np.zeros(n, dtype=bool)
    tcp = transport == "tcp"
    assign(tcp & have_flags & ((ts & fu.SYN) == 0) & ((tc & fu.SYN) == 0), "partial")
    assign(tcp & ((tc & fu.SYN) != 0), "established")
    assign(tcp & ((tc & fu.RST) != 0), "rejected")
    assign(tcp & (toclient > 0) & (tc == 0), "icmp_unreachable")
    assign(tcp & (toclient == 0), "no_reply")
    decided |= tcp

    icmp4 = transport == "icmp"
    icmp6 = transport == "icmpv6"
    itype = counts["itype"]
    rtype = counts["ritype"]
    assign((icmp4 & np.isin(itype, _ICMP4_ERRORS)) | (icmp6 & np.isin(itype, _ICMP6_ERRORS)), "unknown")
    assign((icmp4 & (rtype == 3)) | (icmp6 & (rtype == 1)), "icmp_unreachable")
    assign((icmp4 | icmp6) & (toclient > 0), "established")
    assign((icmp4 | icmp6) & (toclient == 0), "no_reply")
    decided |= icmp4 | icmp6

    assign(toclient == 0, "no_reply")
    assign((toclient > 0) & (state == "new"), "icmp_unreachable")
    assign(toclient > 0, "established")
    return out
