"""CICFlowMeter CSV (CIC-IDS2017 and relatives), with labels (``format="cic"``).

Column styles, recognised by name after trimming spaces, case and underscores:

- CIC-IDS2017 *GeneratedLabelledFlows* ("TrafficLabelling"): leading spaces in names
  (``" Source IP"``, ``" Destination Port"``), local lab time ``d/m/yyyy h:mm[:ss]``
  (UTC-3, ADT; some days use a 12-hour clock without AM/PM);
- CICFlowMeter-4.0 and the relabelled CIC-IDS2017 of Engelen et al. (``Src IP``,
  ``Dst Port``, ``Total Fwd Packet``, ISO timestamps in UTC), and the Python cicflowmeter's
  snake_case (``src_ip``, ``dst_port``);
- *MachineLearningCVE*: no addresses, source ports or timestamps. Rows keep their
  destination port, counts and label; ``event_start`` is a placeholder (the capture day
  named in the file name, else ``start=``) and the report says so.

Labels (``Label``): ``BENIGN`` -> benign / normal; ``PortScan`` (any spelling) -> scan /
``vertical`` (the CIC-IDS2017 PortScan is nmap against one victim, 192.168.10.50);
``Infiltration - Portscan`` -> scan with no scan type (it sweeps the internal network);
every other attack -> benign / ``other_attack`` (not service discovery; a negative for
T1046). ``... - Attempted`` labels (Engelen et al.) map like their attack. ``scenario``
keeps the original label as ``cic:<label>``.

Outcome, from the flow's counters: TCP with no backward packet no_reply; a RST with no
payload either way and at most two forward packets rejected; else established. UDP and
ICMP: established when answered, else no_reply. Byte counts are CICFlowMeter's payload
lengths (no headers); ``Flow Duration`` is in microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import register
from ._flowcsv import Checker, int_array, iter_records, keep, port_array
from ._report import ReadReport
from ._source import PathLike

__all__ = ["cic_labels", "read_cic"]

_ALIASES = {
    "flow_id": ("flow id",),
    "src_ip": ("source ip", "src ip"),
    "src_port": ("source port", "src port"),
    "dst_ip": ("destination ip", "dst ip"),
    "dst_port": ("destination port", "dst port"),
    "proto": ("protocol",),
    "ts": ("timestamp",),
    "duration": ("flow duration",),
    "fwd_packets": ("total fwd packets", "total fwd packet", "tot fwd pkts"),
    "bwd_packets": ("total backward packets", "total bwd packets", "total bwd packet", "tot bwd pkts"),
    "fwd_bytes": ("total length of fwd packets", "total length of fwd packet", "totlen fwd pkts"),
    "bwd_bytes": ("total length of bwd packets", "total length of bwd packet", "totlen bwd pkts"),
    "fin": ("fin flag count", "fin flag cnt"),
    "syn": ("syn flag count", "syn flag cnt"),
    "rst": ("rst flag count", "rst flag cnt"),
    "psh": ("psh flag count", "psh flag cnt"),
    "ack": ("ack flag count", "ack flag cnt"),
    "urg": ("urg flag count", "urg flag cnt"),
    "icmp_type": ("icmp type",),
    "icmp_code": ("icmp code",),
    "label": ("label",),
}
_REQUIRED = ("dst_port", "duration", "fwd_packets", "bwd_packets")
_DAYS = {"monday": "2017-07-03", "tuesday": "2017-07-04", "wednesday": "2017-07-05", "thursday": "2017-07-06", "friday": "2017-07-07"}
#: CIC-IDS2017 was captured in New Brunswick in July 2017: ADT, UTC-3.
LAB_UTC_OFFSET_HOURS = -3
_PROTOCOLS = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", " ", name.strip().lower())


def _columns(header: list[str]) -> dict[str, int]:
    normalised = [_norm(h) for h in header]
    found: dict[str, int] = {}
    for key, names in _ALIASES.items():
        for i, name in enumerate(normalised):
            if name in names:
                found[key] = i  # the first occurrence: CIC repeats " Fwd Header Length", not these
                break
    return found


def _sniff(head: bytes, name: str) -> bool:
    first = head.split(b"\n", 1)[0].lower().replace(b"_", b" ")
    return b"flow duration" in first and (b"destination port" in first or b"dst port" in first)


@register("cic", sniff=_sniff, priority=40, description="CICFlowMeter CSV (CIC-IDS2017 and relatives), with labels")
def read_cic(
    path: PathLike,
    report: ReadReport,
    *,
    chunksize: int,
    utc_offset_hours: float = LAB_UTC_OFFSET_HOURS,
    start: str | None = None,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """CICFlowMeter CSV (CIC-IDS2017 and relatives), with labels.

    ``utc_offset_hours`` applies to local ``d/m/yyyy`` timestamps (CIC-IDS2017's ADT, -3);
    ISO timestamps are taken as UTC. ``start`` places rows of layouts without timestamps.
    """
    if options:
        raise TypeError(f"read_cic got unexpected options {sorted(options)}")
    report.note("CICFlowMeter byte counts are payload bytes (headers not counted)")
    yielded = False
    columns: dict[str, int] | None = None
    for header, fields, lines in iter_records(path, report, width=None, chunksize=chunksize, header=True, fallback_encoding="cp1252"):
        if columns is None:
            columns = _columns(header or [])
            missing = [k for k in _REQUIRED if k not in columns]
            if missing:
                raise schema.SchemaError([f"{path}: not a CICFlowMeter CSV header; no column for {missing}"])
            if "ts" not in columns or "src_ip" not in columns:
                report.note(
                    "this layout (MachineLearningCVE) has no addresses, source ports or timestamps: "
                    "source_ip, destination_ip and source_port are missing and event_start is a placeholder"
                )
        yield _chunk(fields, lines, columns, report, utc_offset_hours, _placeholder(path, start))
        yielded = True
    if not yielded:
        yield schema.empty_frame(schema.LABEL_COLUMNS)


def _placeholder(path: PathLike, start: str | None) -> pd.Timestamp:
    if start is not None:
        ts = pd.Timestamp(start)
        return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    name = str(path).lower()
    for day, date in _DAYS.items():
        if day in name:
            return pd.Timestamp(date, tz="UTC")
    return pd.Timestamp(0, tz="UTC")


def _chunk(fields: pd.DataFrame, lines: np.ndarray, cols: dict[str, int], report: ReadReport, offset_h: float, placeholder: pd.Timestamp) -> pd.DataFrame:
    check = Checker(len(fields), lines, fields)

    def num(key: str, **kw: Any) -> pd.Series:
        return check.number(fields[cols[key]], key, **kw) if key in cols else pd.Series(np.nan, index=fields.index)

    dst_port = num("dst_port", allow_empty=False, integer=True)
    check.fail((dst_port < 0) | (dst_port > 65535), "dst_port outside 0-65535")
    src_port = num("src_port", integer=True)
    duration = num("duration", allow_empty=False)
    fwd_pk, bwd_pk = num("fwd_packets", allow_empty=False), num("bwd_packets", allow_empty=False)
    fwd_b, bwd_b = num("fwd_bytes"), num("bwd_bytes")
    flags = {k: num(k).fillna(0) for k in ("fin", "syn", "rst", "psh", "ack", "urg")}
    proto_num = num("proto", integer=True)
    if "ts" in cols:
        start = _timestamps(fields[cols["ts"]], offset_h, report)
        check.fail(start.isna().to_numpy(), "Timestamp is not a date and time")
    else:
        start = pd.Series(placeholder, index=fields.index)
    check.report(report)
    ok = check.ok
    negative = int((duration[ok] < 0).sum())
    if negative:
        report.note(f"negative Flow Duration (a CICFlowMeter bug) set to NaN on {negative} rows")
    proto = proto_num.map(_PROTOCOLS).fillna("other")
    if "proto" not in cols:
        proto = pd.Series(None, index=fields.index, dtype=object)
        report.note("no Protocol column: network_transport is missing")
    answered = bwd_pk > 0
    tcp = proto == "tcp"
    rejected = tcp & (flags["rst"] > 0) & (fwd_b.fillna(0) == 0) & (bwd_b.fillna(0) == 0) & (fwd_pk <= 2) & answered
    outcome = np.where(~answered, "no_reply", np.where(rejected, "rejected", "established"))
    tcp_flags = (flags["fin"] > 0) * 1 + (flags["syn"] > 0) * 2 + (flags["rst"] > 0) * 4 + (flags["psh"] > 0) * 8 + (flags["ack"] > 0) * 16 + (flags["urg"] > 0) * 32
    icmp = proto.isin(["icmp", "icmpv6"])
    label, scan_type, category, scenario = cic_labels(fields[cols["label"]] if "label" in cols else pd.Series("", index=fields.index))
    out: dict[str, Any] = {
        "event_start": start,
        "event_duration_s": (duration / 1e6).where(duration >= 0),
        "source_ip": _ip(fields, cols, "src_ip"),
        "source_port": port_array(src_port.where(~icmp)),
        "destination_ip": _ip(fields, cols, "dst_ip"),
        "destination_port": port_array(dst_port.where(~icmp)),
        "network_transport": proto,
        "conn_outcome": outcome,
        "source_bytes": int_array(fwd_b),
        "destination_bytes": int_array(bwd_b),
        "source_packets": int_array(fwd_pk),
        "destination_packets": int_array(bwd_pk),
        "tcp_flags": tcp_flags.astype("Int32").where(tcp),
        "label": label,
        "scan_type": scan_type,
        "benign_category": category,
        "scenario": scenario,
    }
    if "icmp_type" in cols:
        itype, icode = num("icmp_type"), num("icmp_code")
        out["icmp_type"] = itype.where(icmp & (itype >= 0)).round().astype("Int16")
        out["icmp_code"] = icode.where(icmp & (icode >= 0)).round().astype("Int16")
    if "flow_id" in cols:
        out["cic_flow_id"] = fields[cols["flow_id"]].str.strip().astype("string")
    return schema.conform(keep(out, ok), log_format="cic", n=int(ok.sum()))


def _ip(fields: pd.DataFrame, cols: dict[str, int], key: str) -> pd.Series:
    if key not in cols:
        return pd.Series(pd.NA, index=fields.index, dtype="string")
    return fields[cols[key]].str.strip().replace("", None).astype("string")


_LOCAL = re.compile(r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\.(\d+))?\s*(AM|PM)?\s*$", re.IGNORECASE)


def _timestamps(values: pd.Series, offset_h: float, report: ReadReport) -> pd.Series:
    text = values.str.strip()
    iso = text.str.match(r"^\d{4}-\d{2}-\d{2}")
    out = pd.Series(pd.NaT, index=values.index, dtype=schema.TIMESTAMP_DTYPE)
    if iso.any():
        out[iso] = pd.to_datetime(text[iso], format="ISO8601", utc=True, errors="coerce")
    local = ~iso
    if local.any():
        parts = text[local].str.extract(_LOCAL)
        hour = pd.to_numeric(parts[3], errors="coerce")
        ampm = parts[7].str.upper()
        # Some CIC-IDS2017 days print a 12-hour clock without AM/PM; the lab worked
        # about 08:00-18:00, so an hour below 7 is in the afternoon.
        twelve = ampm.isna() & (hour < 7)
        if twelve.any():
            report.note("12-hour local times without AM/PM: hours below 7 taken as afternoon")
        hour = hour + np.where((ampm == "PM") & (hour < 12), 12, 0) - np.where((ampm == "AM") & (hour == 12), 12, 0) + np.where(twelve, 12, 0)
        frac = pd.to_numeric(("0." + parts[6].fillna("0")), errors="coerce")
        stamp = pd.to_datetime(
            pd.DataFrame({"year": pd.to_numeric(parts[2], errors="coerce"), "month": pd.to_numeric(parts[1], errors="coerce"), "day": pd.to_numeric(parts[0], errors="coerce"), "hour": hour, "minute": pd.to_numeric(parts[4], errors="coerce"), "second": pd.to_numeric(parts[5], errors="coerce").fillna(0)}),
            errors="coerce",
        )
        stamp = stamp + pd.to_timedelta(frac.fillna(0), unit="s") - pd.Timedelta(hours=offset_h)
        out[local] = stamp.dt.tz_localize("UTC")
        report.note(f"local d/m/yyyy timestamps converted to UTC with offset {offset_h:+g} h")
    return out


def cic_labels(raw: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Map CIC ``Label`` values to (label, scan_type, benign_category, scenario)."""
    text = raw.astype(str).str.strip()
    base = text.str.replace(r"\s*-\s*attempted\s*$", "", case=False, regex=True)
    key = base.str.lower().str.replace(r"[^a-z]", "", regex=True)
    portscan = key == "portscan"
    infiltration_scan = key == "infiltrationportscan"
    scan = portscan | infiltration_scan
    benign = key == "benign"
    label = pd.Series(np.where(scan, "scan", "benign"), index=raw.index, dtype="string")
    scan_type = pd.Series(np.where(portscan, "vertical", None), index=raw.index, dtype="string")
    category = pd.Series(np.where(scan, None, np.where(benign, "normal", "other_attack")), index=raw.index, dtype="string")
    scenario = ("cic:" + text).astype("string")
    return label, scan_type, category, scenario
