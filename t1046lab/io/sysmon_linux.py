"""Sysmon for Linux event ID 3 (NetworkConnect), as XML events.

Input: Sysmon for Linux writes one ``<Event>…</Event>`` per syslog line
(``Dec 28 22:39:36 host sysmon: <Event>…`` in ``/var/log/syslog``, ``sysmon[pid]:`` in
``/var/log/messages``); exported or pretty-printed XML with an event over several lines is
read too. A record is one ``<Event>``; its line number is the line where it starts. Lines
outside any event are skipped ("not a Sysmon event line"), except blank lines and the XML
declaration. Events other than ID 3 are skipped with their ID; an event whose XML does not
parse, or lacks an address, port or time, is quarantined.

What event 3 means on Linux (SysmonForLinux ``networkTracker.cpp``, eBPF on
``inet_sock_set_state``): for TCP, the ``CLOSE→SYN_SENT`` transition is only remembered
(with the pid of the process calling ``connect()``); the event is emitted when the socket
reaches ``ESTABLISHED``, and a ``SYN_SENT→CLOSE`` transition (refused, timed out,
unreachable) just forgets it. Inbound TCP is reported when ``accept()`` returns. UDP is
reported on send/receive, at most once per (process, addresses) per reporting interval.
Hence:

==========================================  ================  ===========================
event                                       ``conn_outcome``  orientation
==========================================  ================  ===========================
``Protocol`` tcp, ``Initiated`` true         ``established``   as logged (process = source)
``Protocol`` tcp, ``Initiated`` false        ``established``   swapped: the peer is the source
``Protocol`` udp                             ``unknown``       swapped when ``Initiated`` false
==========================================  ================  ===========================

**A failed connect() produces no event 3**: a connect scan shows only its open ports here,
and raw-socket scans (nmap -sS, masscan, zmap) produce none at all.

Identity: ``host_name`` (``Computer``), ``process_pid`` (``ProcessId``),
``process_executable`` (``Image``), ``process_name`` (its basename), ``user_name``
(``User``). Extras: ``sysmon_linux_initiated``, ``sysmon_linux_process_guid``,
``sysmon_linux_record_id``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import register
from ._ep_common import clean_text, to_int
from ._report import ReadReport
from ._source import PathLike, iter_line_chunks

__all__ = ["read_sysmon_linux"]

_FIELDS = ("UtcTime", "ProcessGuid", "ProcessId", "Image", "User", "Protocol", "Initiated", "SourceIp", "SourcePort", "DestinationIp", "DestinationPort")
_OPEN = re.compile(r"<Event[\s>]")
_CLOSE = "</Event>"


def _sniff(head: bytes, name: str) -> bool:
    return b"<Event" in head and (b"Linux-Sysmon" in head or (b"<EventData>" in head and b"xmlns=" not in head))


def _iter_events(path: PathLike, report: ReadReport, chunk_lines: int) -> Iterator[list[tuple[int, str]]]:
    """Yield lists of (start line, event XML text); count non-event lines as skipped."""
    batch: list[tuple[int, str]] = []
    buf: list[str] = []
    start = 0
    for first, lines in iter_line_chunks(path, chunk_lines=chunk_lines):
        for i, raw in enumerate(lines):
            line_no = first + i
            text = raw.decode("utf-8", "replace")
            while text:
                if not buf:
                    m = _OPEN.search(text)
                    if m is None:
                        stripped = text.strip()
                        if stripped and not stripped.startswith("<?xml"):
                            report.seen()
                            report.skip("not a Sysmon event line")
                        break
                    start = line_no
                    text = text[m.start():]
                end = text.find(_CLOSE)
                if end < 0:
                    buf.append(text)
                    break
                buf.append(text[: end + len(_CLOSE)])
                batch.append((start, "\n".join(buf)))
                buf = []
                text = text[end + len(_CLOSE):]
                if not text.strip():
                    break
        if len(batch) >= chunk_lines:
            yield batch
            batch = []
    yield batch
    if buf:  # after the complete events, so that strict mode stops at the first bad record
        report.seen()
        report.bad("unterminated <Event> at end of file", line=start, excerpt="\n".join(buf))


def _parse(events: list[tuple[int, str]], report: ReadReport) -> list[tuple]:
    rows = []
    for line, xml in events:
        report.seen()
        try:
            root = ET.fromstring(xml)
        except ET.ParseError as exc:
            report.bad(f"malformed XML: {exc}", line=line, excerpt=xml)
            continue
        # Windows exports carry a namespace; Sysmon for Linux does not. Strip it either way.
        for el in root.iter():
            if "}" in el.tag:
                el.tag = el.tag.split("}", 1)[1]
        eid = (root.findtext("System/EventID") or "").strip()
        if eid != "3":
            report.skip(f"event ID {eid or '?'} (not NetworkConnect)")
            continue
        data = {d.get("Name"): (d.text or "").strip() for d in root.iterfind("EventData/Data")}
        rec_id = root.findtext("System/EventRecordID")
        computer = root.findtext("System/Computer")
        rows.append((line, computer, rec_id, *(data.get(f) for f in _FIELDS)))
    return rows


@register("sysmon-linux", sniff=_sniff, priority=40, description="Sysmon for Linux event 3 (NetworkConnect) XML")
def read_sysmon_linux(path: PathLike, report: ReadReport, *, chunksize: int, **options: Any) -> Iterator[pd.DataFrame]:
    """Sysmon for Linux event 3 (NetworkConnect) XML."""
    report.note(
        "sysmon-linux: event 3 is logged only for established TCP connections (failed connect() calls leave no "
        "event) and for UDP traffic; raw-socket scans produce none"
    )
    yielded = False
    for events in _iter_events(path, report, max(1, min(chunksize, 262_144))):
        rows = _parse(events, report)
        if not rows:
            continue
        frame = _build(pd.DataFrame.from_records(rows, columns=["line", "computer", "record_id", *_FIELDS]), report)
        if len(frame):
            yield frame
            yielded = True
    if not yielded:
        yield schema.conform({"sysmon_linux_initiated": np.zeros(0, dtype=bool)}, log_format="sysmon-linux")


def _build(raw: pd.DataFrame, report: ReadReport) -> pd.DataFrame:
    ts = pd.to_datetime(raw["UtcTime"], format="%Y-%m-%d %H:%M:%S.%f", utc=True, errors="coerce")
    sport, dport = to_int(raw["SourcePort"]), to_int(raw["DestinationPort"])
    proto = raw["Protocol"].astype("string").str.lower()
    bad = pd.Series("", index=raw.index, dtype=object)
    bad[ts.isna()] = "UtcTime missing or not a time"
    bad[(bad == "") & (raw["SourceIp"].isna() | raw["DestinationIp"].isna() | raw["SourceIp"].isin(["", "-"]) | raw["DestinationIp"].isin(["", "-"]))] = "SourceIp or DestinationIp missing"
    bad[(bad == "") & (sport.isna() | dport.isna() | (sport < 0) | (sport > 65535) | (dport < 0) | (dport > 65535)).fillna(True)] = "port missing or out of range"
    bad[(bad == "") & ~proto.isin(["tcp", "udp"]).fillna(False)] = "Protocol is not tcp or udp"
    bad[(bad == "") & ~raw["Initiated"].isin(["true", "false"])] = "Initiated is not true or false"
    for reason in pd.unique(bad[bad != ""]):
        report.bad_many(str(reason), lines=raw.loc[bad == reason, "line"].to_numpy())
    ok = (bad == "").to_numpy()
    report.used(int(ok.sum()))
    raw, ts, sport, dport, proto = raw[ok], ts[ok], sport[ok], dport[ok], proto[ok]
    initiated = (raw["Initiated"] == "true").to_numpy(dtype=bool)
    sip, dip = raw["SourceIp"].to_numpy(dtype=object), raw["DestinationIp"].to_numpy(dtype=object)
    sp, dp = sport.to_numpy(dtype=object), dport.to_numpy(dtype=object)
    image = clean_text(raw["Image"])
    tcp = (proto == "tcp").to_numpy(dtype=bool)
    return schema.conform(
        {
            "event_start": ts.to_numpy(),
            "source_ip": np.where(initiated, sip, dip),
            "source_port": pd.array(np.where(initiated, sp, dp), dtype="Int32"),
            "destination_ip": np.where(initiated, dip, sip),
            "destination_port": pd.array(np.where(initiated, dp, sp), dtype="Int32"),
            "network_transport": proto.to_numpy(dtype=object),
            "conn_outcome": np.where(tcp, "established", "unknown"),
            "host_name": clean_text(raw["computer"]).array,
            "process_pid": to_int(raw["ProcessId"]).array,
            "process_executable": image.array,
            "process_name": image.str.rsplit("/", n=1).str[-1].array,
            "user_name": clean_text(raw["User"]).array,
            "sysmon_linux_initiated": initiated,
            "sysmon_linux_process_guid": clean_text(raw["ProcessGuid"]).array,
            "sysmon_linux_record_id": to_int(raw["record_id"]).array,
        },
        log_format="sysmon-linux",
    )
