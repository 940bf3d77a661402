"""nfdump CSV (``nfdump -o csv``), NetFlow/IPFIX records paired into attempts (``format="nfdump"``).

Layouts, recognised from the header line:

* nfdump ≤ 1.7.4: ``ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,...`` (48 columns);
* nfdump ≥ 1.7.5: ``firstSeen,duration,proto,srcAddr,srcPort,dstAddr,dstPort,packets,bytes,flows``,
  user formats ``-o "csv:%ts,%te,%flg,..."`` (``lastSeen``, ``flags``, ``inPackets``,
  ``outPackets``, ``inBytes``, ``outBytes``, ...) and ``-o csv-fast``
  (``cnt,af,firstSeen,lastSeen,proto,...,flags,srcTos,packets,bytes``).

The ``Summary`` trailer that ``-o csv`` appends is not data and is not counted. nfdump prints
times in the local time zone of the machine that ran it, without an offset: pass
``tz="Europe/Prague"`` (default ``"UTC"``: run nfdump with ``TZ=UTC``).

NetFlow v5/v9 records are unidirectional. A record A→B and its reverse B→A whose spans
overlap within ``pair_tolerance`` seconds (default 2: nfdump ≤ 1.7.4 rounds times to the
second) are one attempt; the initiator is the side whose flags show SYN without ACK, else
the earlier start, else the side whose destination port is the lower. Its counters are the
source ones, the reverse record's the destination ones. Biflow exporters (IPFIX RFC 5103,
NSEL) fill ``opkt``/``obyt`` and need no pairing. Records are paired within a chunk plus the
records held back from its last ``pair_tolerance`` seconds, so the input should be roughly
in time order (as nfdump prints it).

Outcome mapping (``resp`` = the reverse record's flags, ``own`` = the initiator's):

===========  ===========================================================  =================
transport    condition (first that holds)                                 conn_outcome
===========  ===========================================================  =================
tcp          reverse record; ``resp`` has SYN (SYN-ACK)                   established
tcp          reverse record; ``resp`` has RST                             rejected
tcp          reverse record; ``resp`` has ACK                             established
tcp          no reverse; ``opkt`` > 0 (biflow)                            established
tcp          no reverse; an ICMP unreachable from the target              icmp_unreachable
tcp          no reverse; the record is itself an answer (RST without      rejected
             SYN, no data) whose probe was not exported: turned around
tcp          no reverse; the record is a SYN-ACK without data: turned     established
             around
tcp          no reverse; ``own`` has SYN and no ACK                       no_reply
tcp          no reverse; ``own`` has ACK (mid-stream / one direction)     partial
udp, other   reverse record or ``opkt`` > 0                               established
udp, other   no reverse; an ICMP unreachable (v4 type 3, v6 type 1) from  icmp_unreachable
             the target back to the source within the tolerance
udp, other   no reverse                                                   no_reply
icmp         echo (timestamp, mask) request with its reply                established
icmp         request without reply                                        no_reply
icmp         an error or reply with nothing to attach it to               unknown / partial
===========  ===========================================================  =================

``policy_action`` is ``unknown``. Columns: ``tcp_flags`` (both records OR-ed), ICMP
``icmp_type``/``icmp_code`` (from ``dp`` = type·256 + code, or ``type.code``), extras
``nfdump_records`` (records merged into the row), ``nfdump_flags`` (the initiator's flag
string), ``nfdump_reply_flags``, ``nfdump_exporter``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import _flowutil as fu
from . import register
from ._pairing import pair_attempts
from ._report import ReadReport
from ._source import PathLike, iter_line_chunks

__all__ = ["read_nfdump"]

_ALIASES: dict[str, tuple[str, ...]] = {
    "start": ("ts", "firstSeen", "tstart"),
    "end": ("te", "lastSeen", "tend"),
    "duration": ("td", "duration"),
    "src": ("sa", "srcAddr"),
    "dst": ("da", "dstAddr"),
    "sport": ("sp", "srcPort"),
    "dport": ("dp", "dstPort"),
    "proto": ("pr", "proto"),
    "flags": ("flg", "flags", "tcpFlags"),
    "pkts": ("ipkt", "packets", "inPackets", "pkt"),
    "bytes": ("ibyt", "bytes", "inBytes", "byt"),
    "opkts": ("opkt", "outPackets"),
    "obytes": ("obyt", "outBytes"),
    "exporter": ("ra", "exporterIP", "router"),
}
_REQUIRED = ("start", "src", "dst", "sport", "dport", "proto")
_TRAILERS = ("Summary", "No matching flows")
_FLAG_LETTERS = {"F": fu.FIN, "S": fu.SYN, "R": fu.RST, "P": fu.PSH, "A": fu.ACK, "U": fu.URG, "E": fu.ECE, "C": fu.CWR}


def _sniff(head: bytes, name: str) -> bool:
    first = head.lstrip().split(b"\n", 1)[0].strip()
    return (
        first.startswith((b"ts,te,td,sa,da,sp,dp,pr", b"firstSeen,duration,proto,srcAddr", b"cnt,af,firstSeen,lastSeen,proto,srcAddr"))
        or (b"firstSeen" in first and b"srcAddr" in first and b"dstAddr" in first)
    )


def _columns(header: list[str], path: PathLike) -> dict[str, int]:
    return fu.header_columns(header, _ALIASES, _REQUIRED, path, "nfdump CSV")


@register("nfdump", sniff=_sniff, description="nfdump CSV (NetFlow/IPFIX), unidirectional records paired into attempts")
def read_nfdump(
    path: PathLike,
    report: ReadReport,
    *,
    chunksize: int,
    tz: str = "UTC",
    pair_tolerance: float = 2.0,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """nfdump CSV (NetFlow/IPFIX), unidirectional records paired into attempts."""
    if options:
        raise TypeError(f"nfdump reader got unknown options {sorted(options)}")
    report.note(
        "nfdump: NetFlow records are unidirectional; attempts are a record paired with its reverse "
        f"within {pair_tolerance} s, so a reply exported much later counts as a separate row"
    )
    header: list[str] | None = None
    where: dict[str, int] = {}
    trailer = False
    pending: pd.DataFrame | None = None
    yielded = False
    for first, raw in iter_line_chunks(path, min(chunksize, fu.CHUNK_LINES)):
        if trailer:
            break
        texts, nums = fu.decode_lines(raw, first, report)
        if header is None and texts:
            header = [h.strip() for h in texts[0].split(",")]
            where = _columns(header, path)
            texts, nums = texts[1:], nums[1:]
        # the summary nfdump appends (and its "No matching flows" notice) is not flow data
        ends = [texts.index(m) for m in _TRAILERS if m in texts]  # list search in C, not a Python loop
        if ends:
            trailer = True
            texts, nums = texts[: min(ends)], nums[: min(ends)]
        if header is None or not texts:
            continue
        report.seen(len(texts))
        rec = _parse(pd.Series(texts, dtype=object), nums, header, where, tz, report)
        pending = rec if pending is None else pd.concat([pending, rec], ignore_index=True)
        out, pending = _emit(pending, pair_tolerance, report, final=False)
        if out is not None:
            yielded = True
            yield out
    if pending is not None and len(pending):
        out, _ = _emit(pending, pair_tolerance, report, final=True)
        if out is not None:
            yielded = True
            yield out
    if not yielded:
        yield schema.conform({}, log_format="nfdump", n=0)


def _parse(lines: pd.Series, nums: np.ndarray, header: list[str], where: dict[str, int], tz: str, report: ReadReport) -> pd.DataFrame:
    width = len(header)
    fields, ok_width, counts = fu.split_fields(lines, sep=",", width=width)
    deferred = [(int(nums[i]), f"expected {width} fields, found {counts[i]}", lines.iloc[i]) for i in np.flatnonzero(~ok_width)]
    nums = nums[ok_width]
    lines = lines[ok_width]
    fields = fields.reset_index(drop=True)
    n = len(fields)
    why, fail = fu.first_reasons(n)

    def col(key: str) -> pd.Series:
        if key in where:
            return fields[where[key]].astype(object)
        return pd.Series([""] * n, dtype=object)

    def stamp(text: pd.Series) -> pd.Series:
        ts = pd.to_datetime(text.where(text != "", None), errors="coerce", format="ISO8601")
        if getattr(ts.dt, "tz", None) is None:
            ts = ts.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        return ts.dt.tz_convert("UTC")

    start = stamp(col("start"))
    fail(start.isna().to_numpy(), "first-seen time is not a timestamp")
    t0 = fu.seconds(start)
    if "end" in where:
        end = stamp(col("end"))
        t1 = fu.seconds(end)
    else:
        t1 = np.full(n, np.nan)
    if "duration" in where:
        dur = pd.to_numeric(col("duration"), errors="coerce").to_numpy(dtype=np.float64)
        fail(np.isnan(dur) | (dur < 0), "duration is not a number")
        t1 = np.where(np.isnan(t1), t0 + dur, t1)
    t1 = np.where(np.isnan(t1), t0, t1)
    proto, proto_ok = fu.protocol_numbers(fu.strip(col("proto")))
    fail(~proto_ok, "unknown protocol")
    is_icmp = np.isin(proto, (1, 58))
    sport, _, ok = fu.parse_ints(col("sport"), missing=("",))
    fail(~ok | (sport > 65535), "source port is not a port number")
    dtext = col("dport")
    dotted = fu.fullmatch(dtext, r"\d+\.\d+")
    dport, _, ok = fu.parse_ints(dtext.where(~dotted, "0"), missing=("",))
    fail((~ok & ~dotted) | (dport > 65535), "destination port is not a port number")
    itype = np.where(is_icmp, np.floor(dport / 256), np.nan)
    icode = np.where(is_icmp, dport % 256, np.nan)
    if dotted.any():
        parts = dtext[dotted].str.split(".", expand=True).astype(float).to_numpy()
        itype[dotted] = parts[:, 0]
        icode[dotted] = parts[:, 1]
    values: dict[str, np.ndarray] = {}
    for key in ("pkts", "bytes", "opkts", "obytes"):
        if key in where:
            v, _, ok = fu.parse_ints(col(key), missing=("",))
            fail(~ok | (v < 0), f"{key} is not a count")
            values[key] = v
        else:
            values[key] = np.full(n, np.nan)
    flag_text = fu.strip(col("flags"))
    numeric = fu.fullmatch(flag_text, r"\d+|0x[0-9a-fA-F]+")
    lettered = fu.fullmatch(flag_text, r"[.CEUAPRSFX]*")
    fail(~numeric & ~lettered, "TCP flags are not a flag string")
    flags = fu.flag_letters(flag_text.where(lettered, ""), _FLAG_LETTERS).astype(np.float64)
    if numeric.any():
        flags[numeric] = fu.per_unique(flag_text[numeric], lambda u: np.array([int(v, 0) for v in u]))
    if "flags" not in where:
        flags[:] = np.nan
    fu.quarantine(report, why, nums, excerpts=lines.tolist(), deferred=deferred)
    ok = why == ""
    return pd.DataFrame(
        {
            "line": nums[ok],
            "start": start[ok].reset_index(drop=True),
            "t0": t0[ok],
            "t1": t1[ok],
            "src": col("src")[ok].to_numpy(dtype=object),
            "dst": col("dst")[ok].to_numpy(dtype=object),
            "sport": np.where(is_icmp, np.nan, sport)[ok],
            "dport": np.where(is_icmp, np.nan, dport)[ok],
            "proto": proto[ok],
            "flags": flags[ok],
            "flag_text": flag_text[ok].to_numpy(dtype=object),
            "icmp_type": itype[ok],
            "icmp_code": icode[ok],
            **{k: v[ok] for k, v in values.items()},
            "exporter": col("exporter")[ok].to_numpy(dtype=object),
        }
    )


def _emit(rec: pd.DataFrame, tolerance: float, report: ReadReport, *, final: bool) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Pair ``rec`` and build rows; unless ``final``, hold back the records near the end."""
    if rec.empty:
        return None, rec
    init, resp, kinds = pair_attempts(rec, tolerance=tolerance)
    if final:
        emit = np.ones(len(init), dtype=bool)
    else:
        cutoff = np.nanmax(rec["t0"].to_numpy()) - 2 * tolerance
        t_last = np.maximum(rec["t0"].to_numpy()[init], np.where(resp >= 0, rec["t0"].to_numpy()[np.maximum(resp, 0)], -np.inf))
        emit = t_last < cutoff
    held = np.concatenate([init[~emit], resp[~emit & (resp >= 0)]])
    init, resp, kinds = init[emit], resp[emit], kinds[emit]
    report.used(int(len(init) + (resp >= 0).sum()))
    rest = rec.iloc[np.sort(held)].reset_index(drop=True)
    if not len(init):
        return None, rest
    return _rows(rec, init, resp, kinds), rest


def _rows(rec: pd.DataFrame, init: np.ndarray, resp: np.ndarray, kinds: np.ndarray) -> pd.DataFrame:
    order = np.argsort(rec["t0"].to_numpy()[init], kind="stable")
    init, resp, kinds = init[order], resp[order], kinds[order]
    has = resp >= 0
    r = np.maximum(resp, 0)

    def pick(name: str) -> np.ndarray:
        return rec[name].to_numpy()[init]

    def other(name: str) -> np.ndarray:
        v = rec[name].to_numpy(dtype=np.float64)[r]
        return np.where(has, v, np.nan)

    proto = pick("proto")
    transport = fu.transport_from_number(proto)
    own = np.nan_to_num(pick("flags").astype(np.float64), nan=0).astype(np.int64)
    pair = kinds == "pair"
    rflags = np.where(pair, np.nan_to_num(other("flags"), nan=0), 0).astype(np.int64)
    opk = pick("opkts").astype(np.float64)
    biflow = ~has & (np.nan_to_num(opk, nan=0) > 0)
    itype = pick("icmp_type").astype(np.float64)
    out = np.full(len(init), "unknown", dtype=object)
    done = np.zeros(len(init), dtype=bool)

    def assign(mask: np.ndarray, value: str) -> None:
        take = mask & ~done
        out[take] = value
        done[take] = True

    tcp = transport == "tcp"
    icmp = np.isin(transport, ("icmp", "icmpv6"))
    assign(kinds == "icmp_error", "icmp_unreachable")
    assign(tcp & pair & ((rflags & fu.SYN) != 0), "established")
    assign(tcp & pair & ((rflags & fu.RST) != 0), "rejected")
    assign(tcp & pair & ((rflags & fu.ACK) != 0), "established")
    assign(tcp & biflow, "established")
    # a lone answer whose probe was not exported (asymmetric routing, sampling): RST without
    # SYN, or SYN-ACK, and no data flags; it is turned around below so the prober is the source
    no_data = (own & (fu.PSH | fu.FIN)) == 0
    lone_rst = tcp & ~has & ~biflow & ((own & fu.RST) != 0) & ((own & fu.SYN) == 0) & no_data
    lone_synack = tcp & ~has & ~biflow & ((own & (fu.SYN | fu.ACK)) == (fu.SYN | fu.ACK)) & ((own & fu.RST) == 0) & no_data
    assign(lone_rst, "rejected")
    assign(lone_synack, "established")
    assign(tcp & ~has & ((own & fu.SYN) != 0) & ((own & fu.ACK) == 0), "no_reply")
    assign(tcp & ~has & ((own & fu.ACK) != 0), "partial")
    assign(icmp & pair, "established")
    is_request = ((proto == 1) & np.isin(itype, (8, 13, 15, 17))) | ((proto == 58) & (itype == 128))
    is_reply = ((proto == 1) & np.isin(itype, (0, 14, 16, 18))) | ((proto == 58) & (itype == 129))
    assign(icmp & is_request & ~has, "no_reply")
    assign(icmp & is_reply & ~has, "partial")
    assign(icmp, "unknown")
    assign(~tcp & (pair | biflow), "established")
    assign(~tcp & ~has, "no_reply")

    t0 = np.fmin(pick("t0"), np.where(has, other("t0"), np.inf))
    t1 = np.fmax(pick("t1"), other("t1"))
    start = pd.to_datetime(np.round(t0 * 1e6).astype(np.int64), unit="us", utc=True)
    dst_pkts = np.where(pair, other("pkts"), np.where(has, np.nan, opk))
    dst_bytes = np.where(pair, other("bytes"), np.where(has, np.nan, pick("obytes").astype(np.float64)))
    flags = pick("flags").astype(np.float64)
    flags = np.where(pair & ~np.isnan(flags), flags.astype(np.float64).astype(np.int64, copy=False) | rflags, flags)
    exporter = pick("exporter")
    exporter = pd.array(np.where(pd.isna(exporter) | (exporter == ""), None, exporter), dtype="string")
    flag_text = pick("flag_text")
    reply_text = np.where(pair, rec["flag_text"].to_numpy(dtype=object)[r], None)
    turn = lone_rst | lone_synack
    reply_text = np.where(turn, flag_text, reply_text)
    flag_text = np.where(turn, None, flag_text)
    src_bytes, src_pkts = pick("bytes").astype(np.float64), pick("pkts").astype(np.float64)
    dst_bytes, dst_pkts = np.where(turn, src_bytes, dst_bytes), np.where(turn, src_pkts, dst_pkts)
    src_bytes, src_pkts = np.where(turn, np.nan, src_bytes), np.where(turn, np.nan, src_pkts)
    columns: dict[str, Any] = {
        "event_start": start,
        "event_duration_s": t1 - t0,
        "source_ip": np.where(turn, pick("dst"), pick("src")),
        "source_port": np.where(turn, pick("dport"), pick("sport")),
        "destination_ip": np.where(turn, pick("src"), pick("dst")),
        "destination_port": np.where(turn, pick("sport"), pick("dport")),
        "network_transport": fu.categorical(transport, schema.TRANSPORT_DTYPE),
        "conn_outcome": fu.outcome(out),
        "source_bytes": src_bytes,
        "destination_bytes": dst_bytes,
        "source_packets": src_pkts,
        "destination_packets": dst_pkts,
        "tcp_flags": np.where(tcp, flags, np.nan),
        "icmp_type": np.where(icmp, itype, np.nan),
        "icmp_code": np.where(icmp, pick("icmp_code").astype(np.float64), np.nan),
        "nfdump_records": pd.array(np.where(has, 2, 1), dtype="Int8"),
        "nfdump_flags": pd.array(np.where(pd.isna(flag_text) | (flag_text == ""), None, flag_text), dtype="string"),
        "nfdump_reply_flags": pd.array(reply_text, dtype="string"),
        "nfdump_exporter": exporter,
    }
    return schema.conform(columns, log_format="nfdump")
