"""argus ``ra`` CSV output (``ra -c , -s stime dur proto saddr sport dir daddr dport state ...``), ``format="argus"``.

Argus records are bidirectional: one line is one attempt. The header line names the
columns (``StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,...``); ``TotPkts``/
``TotBytes`` minus ``SrcPkts``/``SrcBytes`` (or ``DstPkts``/``DstBytes``) give the
destination counters. ``Dir`` is padded (``"   ->"``, ``"  <?>"``) and stripped. ICMP "ports"
are hex (``0x0008``): ``Sport`` is the ICMP type, ``Dport`` the code (or the echo id). Times
are printed in the local zone of the machine that ran ``ra``: pass ``tz=`` (default UTC).
ARP records (``Dir`` ``who``) hold no IP connection and are skipped.

Outcome mapping, default textual states:

==============================  ==========================================  =================
State                           meaning (ra(1), argus_util.c)               conn_outcome
==============================  ==========================================  =================
``REQ``                         TCP SYN sent, no reply                      no_reply
``ACC``                         TCP SYN-ACK seen                            established
``CON``, ``EST``, ``FIN``,      connected / established / closed            established
``CLO``
``RST``                         TCP reset; ≤ 2 packets (SYN, RST)           rejected
``RST``                         reset after more packets (ambiguous:        established
                                reset of an open connection)
``INT``                         initial: one direction only (UDP/other)     no_reply
``INT`` (TCP), ``TIM``          mid-stream / timed out                      partial
``ECO`` (echo request)          reply packets seen                          established
``ECO``                         no reply packets                            no_reply
``ECR``                         echo reply only                             partial
``URP``, ``URH``, ``URN``,      ICMP unreachable attached to this flow      icmp_unreachable
``URF``, ``URO``, ``URS``,      (non-ICMP row)
``URFIL``, ``URCUT``
UR* on an ICMP row              an unreachable not attached to its probe    unknown
``UNK``, other                                                              unknown
==============================  ==========================================  =================

``-Z b`` states (TCP): ``<source flags>_<destination flags>``, letters F S R P A U E C:

===================================================  =================
condition (first that holds)                          conn_outcome
===================================================  =================
destination sent SYN (``S_SA``, ``SPA_SPA``)          established
destination sent RST (``S_R``, ``S_RA``)              rejected
destination sent nothing, source sent SYN (``S_``)    no_reply
destination sent something, no SYN (mid-stream)       partial
===================================================  =================

``policy_action`` is ``unknown``. Columns: ``tcp_flags`` from ``-Z b`` states, ``icmp_type``
and ``icmp_code``; extras ``argus_state``, ``argus_dir``, ``argus_label`` (the Label column
the CTU/Stratosphere datasets add, when present).
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
from ._source import PathLike, iter_line_chunks

__all__ = ["read_argus"]

_ALIASES: dict[str, tuple[str, ...]] = {
    "start": ("StartTime", "stime", "Stime"),
    "dur": ("Dur", "dur"),
    "proto": ("Proto", "proto"),
    "src": ("SrcAddr", "saddr"),
    "sport": ("Sport", "sport"),
    "dir": ("Dir", "dir"),
    "dst": ("DstAddr", "daddr"),
    "dport": ("Dport", "dport"),
    "state": ("State", "state"),
    "pkts": ("TotPkts", "pkts"),
    "bytes": ("TotBytes", "bytes"),
    "spkts": ("SrcPkts", "spkts"),
    "sbytes": ("SrcBytes", "sbytes"),
    "dpkts": ("DstPkts", "dpkts"),
    "dbytes": ("DstBytes", "dbytes"),
    "label": ("Label",),
}
_REQUIRED = ("start", "proto", "src", "dst", "state")
_FLAG_LETTERS = {"F": fu.FIN, "S": fu.SYN, "R": fu.RST, "P": fu.PSH, "A": fu.ACK, "U": fu.URG, "E": fu.ECE, "C": fu.CWR}
# argus prints some UDP flows with the application name it recognised
_UDP_NAMES = {"rtp", "rtcp", "udt"}
_UNREACH = ("URP", "URH", "URN", "URF", "URO", "URS", "URFIL", "URCUT", "URHPRO", "URHU", "URNU", "URNPRO", "URISO", "URTOS", "URHTOS", "URNTOS", "URPRE")


def _sniff(head: bytes, name: str) -> bool:
    first = head.lstrip().split(b"\n", 1)[0]
    return first.startswith((b"StartTime,", b"StartTime ")) and b"SrcAddr" in first and b"DstAddr" in first


def _columns(header: list[str], path: PathLike) -> dict[str, int]:
    return fu.header_columns(header, _ALIASES, _REQUIRED, path, "argus ra CSV")


@register("argus", sniff=_sniff, description="argus ra CSV output (ra -c ,), default or -Z b states")
def read_argus(path: PathLike, report: ReadReport, *, chunksize: int, tz: str = "UTC", **options: Any) -> Iterator[pd.DataFrame]:
    """argus ra CSV output (ra -c ,), default or -Z b states."""
    if options:
        raise TypeError(f"argus reader got unknown options {sorted(options)}")
    header: list[str] | None = None
    where: dict[str, int] = {}
    yielded = False
    for first, raw in iter_line_chunks(path, min(chunksize, fu.CHUNK_LINES)):
        texts, nums = fu.decode_lines(raw, first, report)
        if header is None and texts:
            header = [h.strip() for h in texts[0].split(",")]
            where = _columns(header, path)
            texts, nums = texts[1:], nums[1:]
        if not texts:
            continue
        report.seen(len(texts))
        frame = _chunk(pd.Series(texts, dtype=object), nums, len(header or []), where, tz, report)
        if frame is not None:
            yielded = True
            yield frame
    if not yielded:
        yield schema.conform({}, log_format="argus", n=0)


def _chunk(lines: pd.Series, nums: np.ndarray, width: int, where: dict[str, int], tz: str, report: ReadReport) -> pd.DataFrame | None:
    fields, ok_width, counts = fu.split_fields(lines, sep=",", width=width)
    deferred = [(int(nums[i]), f"expected {width} fields, found {counts[i]}", lines.iloc[i]) for i in np.flatnonzero(~ok_width)]
    nums, lines = nums[ok_width], lines[ok_width]
    fields = fields.reset_index(drop=True)
    n = len(fields)
    if n == 0:
        fu.quarantine(report, np.empty(0, dtype=object), nums, deferred=deferred)
        return None
    why, fail = fu.first_reasons(n)

    def col(key: str) -> pd.Series:
        if key in where:
            return fields[where[key]].astype(object)
        return pd.Series([""] * n, dtype=object)

    text = col("start")
    start = pd.to_datetime(text, errors="coerce", format="%Y/%m/%d %H:%M:%S.%f")
    alt = start.isna() & fu.fullmatch(text, r"\d+(\.\d+)?")
    if alt.any():  # ra -u: seconds since the epoch
        start = start.where(~alt, pd.to_datetime(pd.to_numeric(text.where(alt, None)), unit="s"))
    alt = start.isna() & (text != "")
    if alt.any():
        start = start.where(~alt, pd.to_datetime(text.where(alt, None), errors="coerce", format="ISO8601"))
    start = pd.Series(start).dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
    fail(start.isna().to_numpy(), "StartTime is not a timestamp")
    dur = pd.to_numeric(col("dur").replace("", "nan"), errors="coerce").to_numpy(dtype=np.float64)
    if "dur" in where:
        fail(np.isnan(dur) | (dur < 0), "Dur is not a number")
    pname = fu.strip(col("proto")).str.lower()
    arp = pname.isin(["arp", "rarp"]).to_numpy()
    pname = pname.where(~pname.isin(list(_UDP_NAMES)), "udp")
    proto, proto_ok = fu.protocol_numbers(pname)
    fail(~proto_ok & ~arp, "unknown protocol")
    is_icmp = np.isin(proto, (1, 58))

    def port(key: str) -> tuple[np.ndarray, np.ndarray]:
        t = col(key)
        hexa = fu.fullmatch(t, r"0x[0-9a-fA-F]+")
        v, _, ok = fu.parse_ints(t.where(~hexa, "0"), missing=("",))
        if hexa.any():
            v[hexa] = fu.per_unique(t[hexa], lambda u: np.array([int(x, 16) for x in u]))
        return v, (ok | hexa) & ~(v > 65535)

    sport, ok = port("sport")
    fail(~ok & ~arp, "Sport is not a port")
    dport, ok = port("dport")
    fail(~ok & ~arp, "Dport is not a port")
    nums_ = {}
    for key in ("pkts", "bytes", "spkts", "sbytes", "dpkts", "dbytes"):
        v, _, ok = fu.parse_ints(col(key), missing=("",))
        fail(~ok | (v < 0), f"{key} is not a count")
        nums_[key] = v
    fu.quarantine(report, why, nums, excerpts=lines.tolist(), deferred=deferred)
    good = why == ""
    arp_ok = good & arp
    report.skip("ARP record holds no IP connection", int(arp_ok.sum()))
    keep = good & ~arp
    report.used(int(keep.sum()))
    if not keep.any():
        return None
    state = fu.strip(col("state")).to_numpy(dtype=object)[keep]
    direction = fu.strip(col("dir")).to_numpy(dtype=object)[keep]
    proto, is_icmp = proto[keep], is_icmp[keep]
    sport, dport = sport[keep], dport[keep]
    v = {k: a[keep] for k, a in nums_.items()}
    dpk = np.where(np.isnan(v["dpkts"]), v["pkts"] - v["spkts"], v["dpkts"])
    dby = np.where(np.isnan(v["dbytes"]), v["bytes"] - v["sbytes"], v["dbytes"])
    spk = np.where(np.isnan(v["spkts"]), v["pkts"] - v["dpkts"], v["spkts"])
    sby = np.where(np.isnan(v["sbytes"]), v["bytes"] - v["dbytes"], v["sbytes"])
    transport = fu.transport_from_number(proto)
    out, flags = _outcomes(transport, pd.Series(state, dtype=object).fillna("").astype(str), v["pkts"], np.fmax(dpk, dby), direction)
    label = col("label").to_numpy(dtype=object)[keep] if "label" in where else np.full(int(keep.sum()), None)
    label = np.where(pd.isna(label) | (label == ""), None, label)
    columns: dict[str, Any] = {
        "event_start": start[keep].reset_index(drop=True),
        "event_duration_s": dur[keep],
        "source_ip": col("src").to_numpy(dtype=object)[keep],
        "source_port": np.where(is_icmp, np.nan, sport),
        "destination_ip": col("dst").to_numpy(dtype=object)[keep],
        "destination_port": np.where(is_icmp, np.nan, dport),
        "network_transport": fu.categorical(transport, schema.TRANSPORT_DTYPE),
        "conn_outcome": fu.outcome(out),
        "source_bytes": sby,
        "destination_bytes": dby,
        "source_packets": spk,
        "destination_packets": dpk,
        "tcp_flags": flags,
        "icmp_type": np.where(is_icmp, sport, np.nan),
        "icmp_code": np.where(is_icmp & (dport < 256), dport, np.nan),
        "argus_state": pd.array(state, dtype="string"),
        "argus_dir": pd.array(direction, dtype="string"),
        "argus_label": pd.array(label, dtype="string"),
    }
    return schema.conform(columns, log_format="argus")


def _outcomes(transport: np.ndarray, state: pd.Series, pkts: np.ndarray, dpkts: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(state)
    out = np.full(n, "unknown", dtype=object)
    done = np.zeros(n, dtype=bool)

    def assign(mask: np.ndarray, value: str) -> None:
        take = np.asarray(mask) & ~done
        out[take] = value
        done[take] = True

    tcp = transport == "tcp"
    icmp = np.isin(transport, ("icmp", "icmpv6"))
    zb = fu.fullmatch(state, r"[FSRPAUEC]*_[FSRPAUEC]*")
    zs = state.where(zb, "_")
    src_fl = fu.per_unique(zs, lambda u: fu.flag_letters(pd.Series([x.split("_")[0] for x in u]), _FLAG_LETTERS), fill=0, dtype=np.int64)
    dst_fl = fu.per_unique(zs, lambda u: fu.flag_letters(pd.Series([x.split("_")[1] for x in u]), _FLAG_LETTERS), fill=0, dtype=np.int64)
    flags = np.where(zb, (src_fl | dst_fl).astype(np.float64), np.nan)
    assign(zb & ((dst_fl & fu.SYN) != 0), "established")
    assign(zb & ((dst_fl & fu.RST) != 0), "rejected")
    assign(zb & (dst_fl == 0) & ((src_fl & fu.SYN) != 0), "no_reply")
    assign(zb & (dst_fl != 0), "partial")
    assign(zb, "partial")
    s = state.to_numpy(dtype=object)
    reply = np.nan_to_num(dpkts, nan=0) > 0
    assign(~icmp & np.isin(s, _UNREACH), "icmp_unreachable")
    assign(icmp & np.isin(s, _UNREACH), "unknown")
    assign(s == "REQ", "no_reply")
    assign(np.isin(s, ("ACC", "CON", "EST", "FIN", "CLO")), "established")
    assign((s == "RST") & (np.nan_to_num(pkts, nan=0) <= 2), "rejected")
    assign(s == "RST", "established")
    assign(tcp & np.isin(s, ("INT", "TIM")), "partial")
    assign((s == "INT") & ~reply, "no_reply")
    assign(s == "INT", "partial")
    assign((s == "ECO") & reply, "established")
    assign(s == "ECO", "no_reply")
    assign(s == "ECR", "partial")
    return out, flags
