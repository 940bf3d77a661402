"""AWS VPC flow logs, versions 2 to 8, header driven (``format="vpc"``).

Records are space-separated. The field order comes from the header line S3 delivery writes
(``version account-id interface-id srcaddr ...``), from a ``# format: ...`` comment line,
from ``fields="..."`` (the flow log's ``LogFormat``), or, with none of these (CloudWatch
Logs delivery), the default version 2 format. A new header line mid-file switches the
format (concatenated S3 objects). Runs of spaces separate fields.

A record aggregates every packet of one 5-tuple on one network interface in a capture
window (up to 60 s on Nitro instances, 600 s otherwise): it is one attempt, or several
merged. Records whose ``log-status`` is ``NODATA`` or ``SKIPDATA``, or whose flow fields are
all ``-``, hold no flow and are skipped with the reason.

Both directions are logged on an interface: an initiator record and the reply record on the
same interface (reversed addresses and ports, capture windows overlapping within
``pair_tolerance`` seconds, default 60) are merged into one row, destination packets and
bytes taken from the reply. ``pkt-srcaddr``/``pkt-dstaddr`` are used as the endpoints when
present (NAT gateways, load balancers, transit gateways). The initiator is the record whose
``tcp-flags`` show SYN without SYN-ACK, else the record whose destination port is the lower,
else the earlier one. A lone record whose flags show only a reply (SYN-ACK, or RST without
SYN) is turned around so that the initiator is the source.

Outcome mapping (``flags`` = ``tcp-flags``, OR of the window: FIN 1, SYN 2, RST 4, SYN-ACK 18;
AWS records ACK only together with SYN):

======================================================  ===============  =============
condition (first that holds)                            conn_outcome     policy_action
======================================================  ===============  =============
initiator ``action`` REJECT                             denied           deny
reply ``action`` REJECT (response blocked by a NACL)    denied           deny
tcp: reply flags have SYN-ACK (18)                      established      allow
tcp: reply flags have RST (4)                           rejected         allow
tcp: neither side sent SYN (continuation of a           partial          allow
connection begun in an earlier window)
tcp: initiator flags SYN with FIN (3) or RST (6)        established      allow
(FIN: the handshake completed; RST after SYN: the
scanner reset the SYN-ACK of an open port)
tcp: initiator flags SYN only (2), no reply record      no_reply         allow
tcp: reply record without flags, or lone record         established /    allow
without flags (v2 default format)                       unknown
udp, icmp, other: reply record                          established      allow
udp, icmp, other: no reply record                       no_reply         allow
======================================================  ===============  =============

What the format cannot see: without ``tcp-flags`` (the default v2 format) a lone ACCEPT
record cannot be told apart as rejected, unanswered or established; a reply logged in a
later window is not paired; the same connection seen on several interfaces (NAT gateway,
load balancer) gives one row per interface.

Identity: ``cloud_provider`` ``aws``, ``cloud_account_id`` (account-id),
``network_interface_id`` (interface-id), ``cloud_instance_id`` (instance-id),
``container_id`` (ecs-container-id), ``tcp_flags`` (both records OR-ed). Extras:
``vpc_version``, ``vpc_action``, ``vpc_reply_action``, ``vpc_vpc_id``, ``vpc_subnet_id``,
``vpc_srcaddr``/``vpc_dstaddr`` (the ENI-level addresses when pkt-* differ),
``vpc_flow_direction``, ``vpc_traffic_path``, ``vpc_region``, ``vpc_az_id``,
``vpc_pkt_src_aws_service``, ``vpc_pkt_dst_aws_service``, ``vpc_reject_reason``,
``vpc_ecs_*`` (cluster, service, task id and ARN...), ``vpc_records``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import _flowutil as fu
from . import register
from ._report import ReadReport
from ._source import PathLike, iter_line_chunks

__all__ = ["DEFAULT_FIELDS", "read_vpc"]

DEFAULT_FIELDS = [
    "version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport", "protocol",
    "packets", "bytes", "start", "end", "action", "log-status",
]
KNOWN_FIELDS = set(DEFAULT_FIELDS) | {
    "vpc-id", "subnet-id", "instance-id", "tcp-flags", "type", "pkt-srcaddr", "pkt-dstaddr", "region",
    "az-id", "sublocation-type", "sublocation-id", "pkt-src-aws-service", "pkt-dst-aws-service",
    "flow-direction", "traffic-path", "ecs-cluster-arn", "ecs-cluster-name", "ecs-container-instance-arn",
    "ecs-container-instance-id", "ecs-container-id", "ecs-second-container-id", "ecs-service-name",
    "ecs-task-definition-arn", "ecs-task-arn", "ecs-task-id", "reject-reason",
}
_INT_FIELDS = ("version", "srcport", "dstport", "protocol", "packets", "bytes", "start", "end", "tcp-flags", "traffic-path")
_EXTRA_FIELDS = (
    "vpc-id", "subnet-id", "flow-direction", "traffic-path", "region", "az-id", "sublocation-type", "sublocation-id",
    "pkt-src-aws-service", "pkt-dst-aws-service", "reject-reason", "ecs-cluster-arn", "ecs-cluster-name",
    "ecs-container-instance-arn", "ecs-container-instance-id", "ecs-second-container-id", "ecs-service-name",
    "ecs-task-definition-arn", "ecs-task-arn", "ecs-task-id", "type",
)
_V2_RECORD = re.compile(rb"^\d+ +(\d{12}|unknown|-) +eni-")


def _is_header(tokens: list[str]) -> bool:
    return len(tokens) > 1 and all(t in KNOWN_FIELDS for t in tokens)


def _sniff(head: bytes, name: str) -> bool:
    first = head.lstrip().split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if first.startswith("#") and "format:" in first:
        return _is_header(first.split("format:", 1)[1].split())
    tokens = first.split()
    return (_is_header(tokens) and "srcaddr" in tokens) or bool(_V2_RECORD.match(first.encode()))


@register("vpc", sniff=_sniff, description="AWS VPC flow logs v2-v8 (header-line driven)")
def read_vpc(
    path: PathLike,
    report: ReadReport,
    *,
    chunksize: int,
    fields: str | list[str] | None = None,
    pair_tolerance: float = 60.0,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """AWS VPC flow logs v2-v8 (header-line driven)."""
    if options:
        raise TypeError(f"vpc reader got unknown options {sorted(options)}")
    report.note(
        "vpc: a record aggregates all packets of a 5-tuple on one interface in a capture window "
        "(60 s or 600 s): one row may be one attempt or several merged; without tcp-flags a lone "
        "ACCEPT record cannot show rejected versus unanswered"
    )
    current = fields.split() if isinstance(fields, str) else list(fields) if fields else list(DEFAULT_FIELDS)
    unknown = [f for f in current if f not in KNOWN_FIELDS]
    if unknown:
        raise ValueError(f"unknown VPC flow log fields {unknown}")
    yielded = False
    for first, raw in iter_line_chunks(path, min(chunksize, fu.PAIRING_CHUNK_LINES)):
        # a header line splits the chunk into blocks with different field orders
        block_texts: list[str] = []
        block_nums: list[int] = []
        blocks: list[tuple[list[str], list[str], list[int]]] = []
        for i, b in enumerate(raw):
            try:
                text = b.decode("utf-8").strip()
            except UnicodeDecodeError:
                report.seen()
                report.bad("not UTF-8", line=first + i, excerpt=b)
                continue
            if not text:
                continue
            header = None
            if text.startswith("#"):
                if "format:" in text:
                    header = text.split("format:", 1)[1].split()
                else:
                    continue  # a comment
            elif text[0].isalpha() and _is_header(text.split()):
                header = text.split()
            if header is not None:
                if block_texts:
                    blocks.append((current, block_texts, block_nums))
                    block_texts, block_nums = [], []
                bad = [f for f in header if f not in KNOWN_FIELDS]
                if bad:
                    raise schema.SchemaError([f"{path}:{first + i}: unknown VPC flow log fields {bad}"])
                current = header
                continue
            block_texts.append(text)
            block_nums.append(first + i)
        if block_texts:
            blocks.append((current, block_texts, block_nums))
        for names, texts, nums in blocks:
            report.seen(len(texts))
            frame = _block(names, pd.Series(texts, dtype=object), np.asarray(nums, dtype=np.int64), pair_tolerance, report)
            if frame is not None:
                yielded = True
                yield frame
    if not yielded:
        yield schema.conform({}, log_format="vpc", n=0)


def _block(names: list[str], lines: pd.Series, nums: np.ndarray, tolerance: float, report: ReadReport) -> pd.DataFrame | None:
    width = len(names)
    fields, ok_width, counts = fu.split_fields(lines, sep=None, width=width)
    deferred = [(int(nums[i]), f"expected {width} fields, found {counts[i]}", lines.iloc[i]) for i in np.flatnonzero(~ok_width)]
    nums, lines = nums[ok_width], lines[ok_width]
    fields = fields.reset_index(drop=True)
    fields.columns = names
    n = len(fields)
    if n == 0:
        fu.quarantine(report, np.empty(0, dtype=object), nums, deferred=deferred)
        return None
    why, fail = fu.first_reasons(n)

    def col(name: str) -> pd.Series:
        return fields[name] if name in fields.columns else pd.Series(["-"] * n, dtype=object)

    ints: dict[str, np.ndarray] = {}
    for name in _INT_FIELDS:
        v, _, ok = fu.parse_ints(col(name))
        fail(~ok, f"{name} is not a number")
        ints[name] = v
    fail((ints["srcport"] > 65535) | (ints["dstport"] > 65535), "port outside 0-65535")
    fail(ints["protocol"] > 255, "unknown protocol")
    status = col("log-status").to_numpy(dtype=object)
    no_flow = (col("srcaddr") == "-").to_numpy() & (col("dstaddr") == "-").to_numpy()
    skipping = np.isin(status, ("NODATA", "SKIPDATA")) | no_flow
    action = col("action").to_numpy(dtype=object)
    fail(~skipping & ~np.isin(action, ("ACCEPT", "REJECT", "-")), "action is not ACCEPT or REJECT")
    fail(~skipping & np.isnan(ints["protocol"]) & ("protocol" in fields.columns), "protocol missing")
    fu.quarantine(report, why, nums, excerpts=lines.tolist(), deferred=deferred)
    good = why == ""
    for reason in ("NODATA", "SKIPDATA"):
        report.skip(f"log-status {reason}: no flow in the capture window", int((good & skipping & (status == reason)).sum()))
    other = good & skipping & ~np.isin(status, ("NODATA", "SKIPDATA"))
    report.skip("flow fields are '-': no flow", int(other.sum()))
    timeless = good & ~skipping & np.isnan(ints["start"])
    report.skip("no start time (the custom format lacks 'start')", int(timeless.sum()))
    keep = good & ~skipping & ~timeless
    if not keep.any():
        return None
    f = fields[keep].reset_index(drop=True)
    iv = {k: v[keep] for k, v in ints.items()}
    m = len(f)

    def fcol(name: str) -> np.ndarray:
        if name not in f.columns:
            return np.full(m, None, dtype=object)
        v = f[name].to_numpy(dtype=object)
        return np.where(v == "-", None, v)

    src = fcol("srcaddr")
    dst = fcol("dstaddr")
    psrc, pdst = fcol("pkt-srcaddr"), fcol("pkt-dstaddr")
    rec = pd.DataFrame(
        {
            "src": np.where(pd.isna(psrc), src, psrc),
            "dst": np.where(pd.isna(pdst), dst, pdst),
            "sport": iv["srcport"],
            "dport": iv["dstport"],
            "proto": iv["protocol"],
            "eni": fcol("interface-id"),
            "t0": iv["start"],
            "t1": np.where(np.isnan(iv["end"]), iv["start"], iv["end"]),
        }
    )
    a, b = fu.pair_reverse(rec, keys=("src", "dst", "sport", "dport"), same=("proto", "eni"), tolerance=tolerance)
    flags = iv["tcp-flags"]
    fl = np.nan_to_num(flags, nan=0).astype(np.int64)
    has_flags = ~np.isnan(flags)
    opener = has_flags & ((fl & fu.SYN) != 0) & ((fl & fu.ACK) == 0)
    swap = np.zeros(len(a), dtype=bool)
    decided = np.zeros(len(a), dtype=bool)

    def rule(b_first: np.ndarray, decides: np.ndarray) -> None:
        take = decides & ~decided
        swap[take] = b_first[take]
        decided[take] = True

    sport, dport, t0 = iv["srcport"], iv["dstport"], iv["start"]
    rule(opener[b], opener[a] != opener[b])
    with np.errstate(invalid="ignore"):
        rule(dport[b] < sport[b], (dport[a] < sport[a]) != (dport[b] < sport[b]))
    rule(t0[b] < t0[a], t0[a] != t0[b])
    init = np.where(swap, b, a)
    resp = np.where(swap, a, b)
    paired = np.zeros(m, dtype=bool)
    paired[a] = paired[b] = True
    lone = np.flatnonzero(~paired)
    # a lone reply (SYN-ACK, or RST without SYN) is turned around: its destination initiated
    reply_only = has_flags[lone] & ((((fl[lone] & 18) == 18)) | (((fl[lone] & fu.RST) != 0) & ((fl[lone] & fu.SYN) == 0)))
    I = np.concatenate([init, lone])
    R = np.concatenate([resp, np.full(len(lone), -1)])
    turned = np.concatenate([np.zeros(len(init), bool), reply_only])
    report.used(m)
    return _rows(f, rec, iv, fcol, I, R, turned)


def _rows(f: pd.DataFrame, rec: pd.DataFrame, iv: dict[str, np.ndarray], fcol: Any, I: np.ndarray, R: np.ndarray, turned: np.ndarray) -> pd.DataFrame:
    order = np.lexsort((I, iv["start"][I]))
    I, R, turned = I[order], R[order], turned[order]
    has = R >= 0
    r = np.maximum(R, 0)
    n = len(I)

    def own(v: np.ndarray) -> np.ndarray:
        return v[I]

    def rep(v: np.ndarray) -> np.ndarray:
        return np.where(has, v[r], None if v.dtype == object else np.nan)

    action = fcol("action")
    act_i, act_r = own(action), rep(action)
    flags = iv["tcp-flags"]
    fl_i = own(flags)
    fl_r = rep(flags)
    has_flags = ~np.isnan(fl_i)
    fi = np.nan_to_num(fl_i, nan=0).astype(np.int64)
    fr = np.nan_to_num(fl_r, nan=0).astype(np.int64)
    # for a turned lone reply, its own flags are the reply's
    fr = np.where(turned, fi, fr)
    fi = np.where(turned, 0, fi)
    proto = own(iv["protocol"]).astype(np.int64)
    transport = fu.transport_from_number(proto)
    tcp = transport == "tcp"
    out = np.full(n, "unknown", dtype=object)
    pol = np.where((act_i == "REJECT") | (act_r == "REJECT"), "deny", np.where(act_i == "ACCEPT", "allow", "unknown"))
    done = np.zeros(n, dtype=bool)

    def assign(mask: np.ndarray, value: str) -> None:
        take = mask & ~done
        out[take] = value
        done[take] = True

    assign(act_i == "REJECT", "denied")
    assign(act_r == "REJECT", "denied")
    assign(tcp & has_flags & ((fr & 18) == 18), "established")
    assign(tcp & has_flags & ((fr & fu.RST) != 0), "rejected")
    assign(tcp & has_flags & ((fi & fu.SYN) == 0) & ((fr & fu.SYN) == 0), "partial")
    assign(tcp & has_flags & ((fi & fu.SYN) != 0) & ((fi & (fu.FIN | fu.RST)) != 0), "established")
    assign(tcp & has_flags & ~has & (fi == fu.SYN), "no_reply")
    assign(tcp & has, "established")
    assign(tcp, "unknown")
    assign(has, "established")
    assign(~has, "no_reply")

    src, dst = rec["src"].to_numpy(dtype=object), rec["dst"].to_numpy(dtype=object)
    sport, dport = iv["srcport"], iv["dstport"]
    s_ip, d_ip = np.where(turned, own(dst), own(src)), np.where(turned, own(src), own(dst))
    s_pt, d_pt = np.where(turned, own(dport), own(sport)), np.where(turned, own(sport), own(dport))
    pk, by = iv["packets"], iv["bytes"]
    s_pk = np.where(turned, np.nan, own(pk))
    s_by = np.where(turned, np.nan, own(by))
    d_pk = np.where(turned, own(pk), rep(pk))
    d_by = np.where(turned, own(by), rep(by))
    t0 = np.fmin(own(iv["start"]), np.where(has, rep(iv["start"]), np.inf))
    end = np.where(np.isnan(iv["end"]), iv["start"], iv["end"])
    t1 = np.fmax(own(end), rep(end))
    icmp = np.isin(transport, ("icmp", "icmpv6"))
    tcp_flags = np.where(has_flags, (np.nan_to_num(fl_i, nan=0).astype(np.int64) | np.nan_to_num(fl_r, nan=0).astype(np.int64)), np.nan)

    def s(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
        return pd.array(values, dtype="string")

    columns: dict[str, Any] = {
        "event_start": pd.to_datetime(t0.astype(np.int64), unit="s", utc=True),
        "event_duration_s": t1 - t0,
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
        "cloud_provider": s(np.full(n, "aws", dtype=object)),
        "cloud_account_id": s(own(fcol("account-id"))),
        "cloud_instance_id": s(own(fcol("instance-id"))),
        "network_interface_id": s(own(fcol("interface-id"))),
        "tcp_flags": tcp_flags,
    }
    if "ecs-container-id" in f.columns:
        columns["container_id"] = s(own(fcol("ecs-container-id")))
    columns["vpc_version"] = pd.Series(own(iv["version"])).astype("Int16").array
    columns["vpc_action"] = s(act_i)
    columns["vpc_reply_action"] = s(act_r)
    columns["vpc_records"] = pd.Series(np.where(has, 2, 1)).astype("Int8").array
    raw_src, raw_dst = fcol("srcaddr"), fcol("dstaddr")
    if "pkt-srcaddr" in f.columns or "pkt-dstaddr" in f.columns:
        columns["vpc_srcaddr"] = s(own(raw_src))
        columns["vpc_dstaddr"] = s(own(raw_dst))
    for name in _EXTRA_FIELDS:
        if name in f.columns:
            values = own(fcol(name))
            key = "vpc_" + name.replace("-", "_")
            columns[key] = s(values) if name != "traffic-path" else pd.Series(own(iv["traffic-path"])).astype("Int8").array
    return schema.conform(columns, log_format="vpc")
