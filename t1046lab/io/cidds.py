"""CIDDS-001 flow CSV (``format="cidds"``), with labels.

Columns: ``Date first seen, Duration, Proto, Src IP Addr, Src Pt, Dst IP Addr, Dst Pt,
Packets, Bytes, Flows, Flags, Tos, class, attackType, attackID, attackDescription``. Flows
are NetFlow (unidirectional, exported by nfdump): the reply is a separate row. ``Proto`` is
space-padded (``"TCP  "``); ``Dst Pt`` is a float (``"445.0"``) and, for ICMP,
``type.code``; ``Bytes`` may be scaled (``"1.2 M"``, read as 10^6, so approximate);
``Flags`` is nfdump's ``UAPRSF`` with dots; addresses in the external files may be
anonymised (``EXT_SERVER``, ``OPENSTACK_NET``, ``10004_35``) and are kept as given. The
dataset does not state a time zone; times are taken as UTC (``utc_offset_hours=``).

Outcome, pairing each flow with its reverse flow (same chunk): TCP with SYN and ACK
established; SYN without ACK: rejected when the reverse flow carries RST, established when
it carries SYN+ACK, no_reply when there is none; TCP without SYN (a reply or a mid-stream
export) partial. UDP: established when a reverse flow exists, else no_reply. ICMP echo
request likewise; echo reply partial; unreachable icmp_unreachable.

Labels: ``class`` normal -> benign / normal; attacker or victim rows of ``pingScan`` ->
scan / ``icmp_sweep``; of ``portScan`` -> scan with no scan type (the dataset does not say
which shape); other attacks (``bruteForce``, ``dos``) -> benign / ``other_attack`` (a
negative for T1046); ``suspicious`` / ``unknown`` (external traffic without ground truth)
-> benign / ``unknown``. Victim rows of a scan (the replies) are labelled scan too.
``scenario`` is ``cidds:<class>:<attackType>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import register
from ._flowcsv import Checker, int_array, iter_records, keep, port_array
from ._report import ReadReport
from ._source import PathLike

__all__ = ["COLUMNS", "cidds_labels", "read_cidds"]

COLUMNS = (
    "Date first seen",
    "Duration",
    "Proto",
    "Src IP Addr",
    "Src Pt",
    "Dst IP Addr",
    "Dst Pt",
    "Packets",
    "Bytes",
    "Flows",
    "Flags",
    "Tos",
    "class",
    "attackType",
    "attackID",
    "attackDescription",
)
_TRANSPORTS = {"TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMP6": "icmpv6"}
_SCALE = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_FLAG_BITS = {0: 32, 1: 16, 2: 8, 3: 4, 4: 2, 5: 1}  # position in "UAPRSF" -> our bit


def _sniff(head: bytes, name: str) -> bool:
    first = head.split(b"\n", 1)[0].lstrip(b"\xef\xbb\xbf").strip()
    return first.startswith(b"Date first seen,Duration,Proto,Src IP Addr")


@register("cidds", sniff=_sniff, priority=40, description="CIDDS-001 flow CSV (NetFlow via nfdump), with labels")
def read_cidds(path: PathLike, report: ReadReport, *, chunksize: int, utc_offset_hours: float = 0.0, **options: Any) -> Iterator[pd.DataFrame]:
    """CIDDS-001 flow CSV (NetFlow via nfdump), with labels."""
    if options:
        raise TypeError(f"read_cidds got unexpected options {sorted(options)}")
    report.note("CIDDS-001 flows are unidirectional: outcomes come from pairing each flow with its reverse flow")
    yielded = False
    for header, fields, lines in iter_records(path, report, width=None, chunksize=chunksize, header=True):
        names = [h.strip() for h in header or []]
        if names[: len(COLUMNS) - 3] != list(COLUMNS[: len(COLUMNS) - 3]):
            raise schema.SchemaError([f"{path}: header is not CIDDS-001's ({', '.join(COLUMNS)})"])
        fields.columns = names
        yield _chunk(fields, lines, report, utc_offset_hours)
        yielded = True
    if not yielded:
        yield schema.empty_frame(schema.LABEL_COLUMNS)


def _scaled(values: pd.Series, check: Checker, name: str) -> pd.Series:
    text = values.str.strip()
    parts = text.str.extract(r"^([0-9.]+)\s*([KMGT]?)$")
    number = pd.to_numeric(parts[0], errors="coerce") * parts[1].map(_SCALE).fillna(1.0)
    check.fail(number.isna().to_numpy(), f"{name} is not a number")
    return number.round()


def _chunk(fields: pd.DataFrame, lines: np.ndarray, report: ReadReport, offset_h: float) -> pd.DataFrame:
    check = Checker(len(fields), lines, fields)
    start = pd.to_datetime(fields["Date first seen"].str.strip(), format="%Y-%m-%d %H:%M:%S.%f", errors="coerce")
    check.fail(start.isna().to_numpy(), "Date first seen is not a date and time")
    duration = check.number(fields["Duration"], "Duration", allow_empty=False)
    proto = fields["Proto"].str.strip().str.upper().map(_TRANSPORTS).fillna("other")
    icmp = proto.isin(["icmp", "icmpv6"])
    sport = check.number(fields["Src Pt"], "Src Pt", allow_empty=False)
    dport = check.number(fields["Dst Pt"], "Dst Pt", allow_empty=False)
    check.fail((((sport < 0) | (sport > 65535) | (dport < 0) | (dport > 65535)) & ~icmp).to_numpy(), "port outside 0-65535")
    packets = _scaled(fields["Packets"], check, "Packets")
    nbytes = _scaled(fields["Bytes"], check, "Bytes")
    flag_text = fields["Flags"].str.strip()
    check.fail((~flag_text.str.fullmatch(r"[.UAPRSF]{6}") & (proto == "tcp")).to_numpy(), "Flags is not nfdump's UAPRSF")
    check.report(report)
    ok = check.ok
    flags = pd.Series(0, index=fields.index)
    for position, bit in _FLAG_BITS.items():
        flags += (flag_text.str[position].fillna(".") != ".").astype(int) * bit
    src = fields["Src IP Addr"].str.strip()
    dst = fields["Dst IP Addr"].str.strip()
    icmp_type = np.floor(dport).where(icmp)
    icmp_code = ((dport - np.floor(dport)) * 10).round().where(icmp)
    outcome = _outcomes(src, dst, sport, dport, proto, flags, icmp_type, ok)
    label, scan_type, category, scenario = cidds_labels(fields["class"], fields["attackType"])
    out = {
        "event_start": (start - pd.Timedelta(hours=offset_h)).dt.tz_localize("UTC"),
        "event_duration_s": duration,
        "source_ip": src.astype("string"),
        "source_port": port_array(sport.where(~icmp)),
        "destination_ip": dst.astype("string"),
        "destination_port": port_array(dport.where(~icmp)),
        "network_transport": proto,
        "conn_outcome": outcome,
        "source_bytes": int_array(nbytes),
        "source_packets": int_array(packets),
        "tcp_flags": flags.astype("Int32").where(proto == "tcp"),
        "icmp_type": icmp_type.astype("Int16"),
        "icmp_code": icmp_code.astype("Int16"),
        "label": label,
        "scan_type": scan_type,
        "benign_category": category,
        "scenario": scenario,
        "cidds_attack_id": fields["attackID"].str.strip().replace("---", None).astype("string"),
    }
    return schema.conform(keep(out, ok), log_format="cidds", n=int(ok.sum()))


def _outcomes(src, dst, sport, dport, proto, flags, icmp_type, ok) -> np.ndarray:
    icmp = proto.isin(["icmp", "icmpv6"])
    p = proto.astype(str)
    sp = sport.fillna(-1).astype(np.int64).astype(str)
    dp = dport.fillna(-1).astype(np.int64).astype(str)
    key = np.where(icmp, p + "|" + src + "|" + dst, p + "|" + src + "|" + sp + "|" + dst + "|" + dp)
    reverse = np.where(icmp, p + "|" + dst + "|" + src, p + "|" + dst + "|" + dp + "|" + src + "|" + sp)
    # What the reverse flow of each flow carried: any flow, RST, SYN+ACK.
    table = pd.DataFrame({"key": key, "rst": (flags & 4) > 0, "synack": (flags & 18) == 18, "any": True})[ok]
    seen = table.groupby("key")[["rst", "synack", "any"]].any()
    back = seen.reindex(reverse).fillna(False).astype(bool)
    has_reverse, reverse_rst, reverse_synack = (back[c].to_numpy() for c in ("any", "rst", "synack"))
    syn, ack = (flags & 2) > 0, (flags & 16) > 0
    tcp, udp = (proto == "tcp").to_numpy(), (proto == "udp").to_numpy()
    syn, ack = syn.to_numpy(), ack.to_numpy()
    itype = icmp_type.to_numpy()
    return np.select(
        [
            tcp & syn & ack,
            tcp & syn & reverse_rst,
            tcp & syn & reverse_synack,
            tcp & syn,
            tcp,
            udp & has_reverse,
            udp,
            icmp.to_numpy() & (itype == 8) & has_reverse,
            icmp.to_numpy() & (itype == 8),
            icmp.to_numpy() & (itype == 0),
            icmp.to_numpy() & (itype == 3),
        ],
        ["established", "rejected", "established", "no_reply", "partial", "established", "no_reply", "established", "no_reply", "partial", "icmp_unreachable"],
        "unknown",
    )


def cidds_labels(klass: pd.Series, attack_type: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Map ``class`` / ``attackType`` to (label, scan_type, benign_category, scenario)."""
    c = klass.astype(str).str.strip()
    a = attack_type.astype(str).str.strip()
    attack = c.isin(["attacker", "victim"])
    scan = attack & a.isin(["portScan", "pingScan"])
    label = pd.Series(np.where(scan, "scan", "benign"), index=c.index, dtype="string")
    scan_type = pd.Series(np.where(scan & (a == "pingScan"), "icmp_sweep", None), index=c.index, dtype="string")
    category = np.select([scan, c == "normal", attack], [None, "normal", "other_attack"], "unknown")
    category = pd.Series(category, index=c.index, dtype="string").where(~scan)
    scenario = ("cidds:" + c + ":" + a).astype("string")
    return label, scan_type, category, scenario
