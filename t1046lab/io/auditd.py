"""Linux auditd ``connect()`` records (``/var/log/audit/audit.log``, raw or enriched).

Rules such as ``-a always,exit -F arch=b64 -S connect -k net`` make the kernel log, for
every ``connect()`` call, an *event* of several records sharing
``msg=audit(<epoch>:<serial>)``: a ``SYSCALL`` record (``syscall``, ``exit``, ``pid``,
``uid``, ``auid``, ``comm``, ``exe``), a ``SOCKADDR`` record (``saddr=`` hex of the
``struct sockaddr`` passed to ``connect()``: the *destination*), optionally ``PROCTITLE``
(hex argv joined by NULs) and ``EXECVE``, and ``EOE`` closing multi-record events. A record
is one line; lines starting with ``#`` are comments, not records.

Connect syscalls recognised by ``arch``: x86_64 (``c000003e``) 42, aarch64 (``c00000b7``)
203, i386 (``40000003``) 362 and ``socketcall`` (102) with ``a0=3``, arm (``40000028``) 283.
Other syscalls (``accept``, ``bind``, …) and other event types are skipped with their reason;
so are ``AF_UNIX``/``AF_NETLINK``/other families, a ``connect`` whose SOCKADDR record is
missing, and a SOCKADDR without its SYSCALL. A line that is not an audit record, or whose
``saddr`` is not valid hex of an AF_INET/AF_INET6 address, is quarantined.

Outcome from ``exit=`` (0 or a negative errno):

=====================================  ====================  ==============================
``exit``                               ``conn_outcome``      meaning
=====================================  ====================  ==============================
0                                      ``established``       blocking TCP connect completed
-115 EINPROGRESS, -114 EALREADY        ``unknown``           non-blocking: result later
-111 ECONNREFUSED, -104 ECONNRESET     ``rejected``          RST from the target
-110 ETIMEDOUT                         ``no_reply``          SYN retries exhausted
-113 EHOSTUNREACH, -101 ENETUNREACH    ``icmp_unreachable``  ICMP unreachable or no route/ARP
-13 EACCES, -1 EPERM                   ``denied``            local firewall or LSM refused it
anything else                          ``unknown``
=====================================  ====================  ==============================

The record has no socket type, so ``network_transport`` is NA (a UDP ``connect()`` also
returns 0 without sending anything: treat ``established`` with care on port 53/123), and no
local address or port: ``source_ip`` is NA unless ``host_ip=`` is given, ``source_port`` is
NA. nmap's connect scan (``-sT``) uses non-blocking sockets: its attempts are ``unknown``
here; their outcomes come from network telemetry. Raw-socket scans (``-sS``, masscan, zmap)
never call ``connect()`` and leave no record.

Identity: ``process_pid``, ``process_executable`` (``exe``, hex-decoded when needed),
``process_name`` (``comm``), ``user_name`` (the enriched ``UID="alice"`` name when present,
else the numeric ``uid``), ``host_name`` (``node=`` prefix, else ``host_name=``). Extras:
``auditd_auid``, ``auditd_exit``, ``auditd_serial``, ``auditd_proctitle`` (decoded
command line), ``auditd_key``, ``auditd_initiated`` (always true).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import register
from ._ep_common import decode_hex_text, errno_outcome
from ._report import ReadReport
from ._source import PathLike, iter_line_chunks

__all__ = ["decode_saddr", "read_auditd"]

_RECORD = re.compile(rb"(?:node=(\S+) )?type=(\w+) msg=audit\((\d+(?:\.\d+)?):(\d+)\):\s?(.*)$")
_FIELD = re.compile(r"(\w+)=(\"[^\"]*\"|'[^']*'|\S+)")
_CONNECT = {("c000003e", "42"), ("c00000b7", "203"), ("40000003", "362"), ("40000028", "283")}
_SOCKETCALL = {("40000003", "102")}
_SYSCALL_NAMES = {"42": "connect", "43": "accept", "288": "accept4", "49": "bind", "50": "listen", "41": "socket", "44": "sendto", "46": "sendmsg"}
_HEX = re.compile(r"^[0-9A-Fa-f]+$")
_UNSET = "4294967295"


def _sniff(head: bytes, name: str) -> bool:
    return re.search(rb"type=\w+ msg=audit\(\d+(?:\.\d+)?:\d+\)", head) is not None


def decode_saddr(hex_text: str) -> tuple[str, int | None, str | None]:
    """Decode an audit ``saddr`` hex string to ``(family, port, address)``.

    ``family`` is ``"inet"``, ``"inet6"``, ``"unix"``, ``"netlink"`` or ``"family N"``; port and
    address are None for non-IP families. Raises ValueError on bad hex or a short IP sockaddr.
    """
    raw = bytes.fromhex(hex_text)
    if len(raw) < 2:
        raise ValueError("sockaddr shorter than its family field")
    family = int.from_bytes(raw[:2], "little")
    if family == 2:
        if len(raw) < 8:
            raise ValueError("AF_INET sockaddr shorter than 8 bytes")
        return "inet", int.from_bytes(raw[2:4], "big"), str(ipaddress.IPv4Address(raw[4:8]))
    if family == 10:
        if len(raw) < 24:
            raise ValueError("AF_INET6 sockaddr shorter than 24 bytes")
        return "inet6", int.from_bytes(raw[2:4], "big"), str(ipaddress.IPv6Address(raw[8:24]))
    return {1: "unix", 16: "netlink", 0: "unspec"}.get(family, f"family {family}"), None, None


def _fields(body: str) -> dict[str, str]:
    enriched = {}
    if "\x1d" in body:  # log_format=ENRICHED: resolved names after a GS separator
        body, extra = body.split("\x1d", 1)
        enriched = {f"_{k}": v.strip("\"'") for k, v in _FIELD.findall(extra)}
    fields = {k: v for k, v in _FIELD.findall(body)}
    fields.update(enriched)
    return fields


def _unquote(value: str | None) -> str | None:
    if value is None or value in ("(null)", "(none)", "?"):
        return None
    if value[:1] in "\"'":
        return value[1:-1]
    if len(value) % 2 == 0 and _HEX.match(value):
        return decode_hex_text(value)
    return value


@register("auditd", sniff=_sniff, priority=40, description="Linux auditd connect() records (SYSCALL + SOCKADDR)")
def read_auditd(
    path: PathLike, report: ReadReport, *, chunksize: int, host_name: str | None = None, host_ip: str | None = None, **options: Any
) -> Iterator[pd.DataFrame]:
    """Linux auditd connect() records (SYSCALL + SOCKADDR).

    Parameters
    ----------
    host_name : str, optional
        Host the log comes from, when records carry no ``node=``.
    host_ip : str, optional
        Address of that host, written to ``source_ip`` (audit records hold no local address).
    """
    report.note(
        "auditd: connect() records hold the destination only (no local address or port, no socket type); "
        "raw-socket scans never call connect() and leave no record"
    )
    pending: list[tuple] = []  # records of events that may continue in the next chunk
    yielded = False
    for first, lines in iter_line_chunks(path, chunk_lines=max(1, min(chunksize, 262_144))):
        recs: list[tuple] = []
        bad_lines: list[tuple[int, str, bytes]] = []
        for i, raw in enumerate(lines):
            if not raw.strip() or raw.startswith(b"#"):
                continue
            report.seen()
            m = _RECORD.search(raw)
            if m is None:
                bad_lines.append((first + i, "not an audit record", raw))
                continue
            node, rtype, t, serial, body = m.groups()
            recs.append(((node or b"").decode("utf-8", "replace"), rtype.decode(), float(t), int(serial), body.decode("utf-8", "replace"), first + i))
        records = pending + recs
        if not records:
            _quarantine(report, bad_lines)
            continue
        # events whose EOE has not arrived yet and are among the last records may continue
        done, pending = _split_open(records)
        frame, bad_records = _events(done, report, host_name, host_ip)
        _quarantine(report, bad_lines + bad_records)
        if frame is not None and len(frame):
            yield frame
            yielded = True
    if pending:
        frame, bad_records = _events(pending, report, host_name, host_ip)
        _quarantine(report, bad_records)
        if frame is not None and len(frame):
            yield frame
            yielded = True
    if not yielded:
        yield schema.conform({"auditd_initiated": np.zeros(0, dtype=bool)}, log_format="auditd")


def _quarantine(report: ReadReport, bad: list[tuple[int, str, Any]]) -> None:
    # in file order, so that strict mode stops at the first bad record
    for line, reason, excerpt in sorted(bad, key=lambda b: b[0]):
        report.bad(reason, line=line, excerpt=excerpt)


def _split_open(records: list[tuple]) -> tuple[list[tuple], list[tuple]]:
    tail = records[-64:]
    closed = {(r[0], r[3]) for r in records if r[1] == "EOE"}
    open_keys = {(r[0], r[3]) for r in tail if (r[0], r[3]) not in closed}
    if not open_keys:
        return records, []
    done = [r for r in records if (r[0], r[3]) not in open_keys]
    pend = [r for r in records if (r[0], r[3]) in open_keys]
    return done, pend


def _events(
    records: list[tuple], report: ReadReport, host_name: str | None, host_ip: str | None
) -> tuple[pd.DataFrame | None, list[tuple[int, str, Any]]]:
    """Rows of the complete events in ``records``, and the records to quarantine (line, reason, excerpt)."""
    rec = pd.DataFrame.from_records(records, columns=["node", "type", "t", "serial", "body", "line"])
    rec["key"] = rec["node"] + "|" + rec["serial"].astype(str)
    types = rec["type"].to_numpy(dtype=object)
    keys_all = rec["key"]
    sys_mask = types == "SYSCALL"
    sys_rec = rec[sys_mask]
    sys_fields = [_fields(b) for b in sys_rec["body"]]
    sf = pd.DataFrame.from_records(sys_fields, index=sys_rec.index)
    for col in ("arch", "syscall", "a0", "exit", "success", "pid", "uid", "auid", "comm", "exe", "key", "_UID"):
        if col not in sf.columns:
            sf[col] = None
    arch_sc = list(zip(sf["arch"].fillna(""), sf["syscall"].fillna("")))
    is_connect = np.array([(a, s) in _CONNECT or ((a, s) in _SOCKETCALL and a0 == "3") for (a, s), a0 in zip(arch_sc, sf["a0"].fillna(""))], dtype=bool)
    connect_keys = set(sys_rec["key"][is_connect])
    # SOCKADDR of connect events
    sa = rec[(types == "SOCKADDR") & keys_all.isin(connect_keys).to_numpy()]
    sa_hex = sa["body"].str.extract(r"saddr=(\S+)", expand=False)
    decoded: list[tuple] = []
    bad_sa: list[tuple[int, str]] = []
    for line, key, h in zip(sa["line"], sa["key"], sa_hex):
        try:
            fam, port, addr = decode_saddr(h or "")
        except ValueError as exc:
            bad_sa.append((line, key, f"bad saddr: {exc}"))
            continue
        decoded.append((key, fam, port, addr))
    dec = pd.DataFrame.from_records(decoded, columns=["key", "family", "port", "addr"]).drop_duplicates("key").set_index("key")
    bad_keys = {k for _, k, _ in bad_sa}
    proc = rec[(types == "PROCTITLE")].drop_duplicates("key").set_index("key")["body"].str.extract(r"proctitle=(\S+|\"[^\"]*\")", expand=False)
    # per-event disposition, then per-record accounting
    event_keys = pd.Index(pd.unique(keys_all))
    sys_by_key = pd.Series(sys_rec["key"].to_numpy(), index=sys_rec.index)
    connect_sys = sys_rec[is_connect].drop_duplicates("key").set_index("key")
    sf_c = sf[is_connect].set_index(sys_rec["key"][is_connect]).loc[lambda d: ~d.index.duplicated()]
    names = [_SYSCALL_NAMES.get(s, f"syscall {s}") for s in sf["syscall"].fillna("?")]
    other_sys_reason = pd.Series(names, index=sys_by_key.to_numpy()).groupby(level=0).first()
    reason = pd.Series("", index=event_keys, dtype=object)
    has_sys = event_keys.isin(sys_by_key.to_numpy())
    reason[~has_sys] = "record without a SYSCALL record (" + rec.drop_duplicates("key").set_index("key").loc[event_keys[~has_sys], "type"].astype(str) + ")"
    not_conn = has_sys & ~event_keys.isin(list(connect_keys))
    reason[not_conn] = other_sys_reason.reindex(event_keys[not_conn]).fillna("other syscall").map(lambda s: f"{s} (not connect)").to_numpy()
    is_c = event_keys.isin(list(connect_keys))
    no_sa = is_c & ~event_keys.isin(dec.index) & ~event_keys.isin(list(bad_keys))
    reason[no_sa] = "connect event without a SOCKADDR record"
    fam = dec["family"].reindex(event_keys)
    non_ip = is_c & fam.notna().to_numpy() & ~fam.isin(["inet", "inet6"]).to_numpy()
    reason[non_ip] = ("connect to an " + fam[non_ip].astype(str) + " socket").to_numpy()
    bad_event = event_keys.isin(list(bad_keys))
    use = (reason == "").to_numpy() & ~bad_event
    # accounting: records of used events are used; of skipped events skipped; bad saddr events quarantined
    rec_reason = reason.reindex(keys_all).to_numpy()
    rec_use = pd.Series(use, index=event_keys).reindex(keys_all).to_numpy()
    rec_bad = keys_all.isin(list(bad_keys)).to_numpy()
    report.used(int(rec_use.sum()))
    for why, count in pd.Series(rec_reason[~rec_use & ~rec_bad]).value_counts().items():
        report.skip(str(why), int(count))
    bad_out: list[tuple[int, str, Any]] = []
    if rec_bad.any():
        why = {k: r for _, k, r in bad_sa}
        bad_recs = rec[rec_bad]
        bad_out = list(zip(bad_recs["line"].tolist(), bad_recs["key"].map(why).tolist(), bad_recs["body"].tolist()))
    ek = event_keys[use]
    if len(ek) == 0:
        return None, bad_out
    f = sf_c.loc[ek]
    d = dec.loc[ek]
    t = connect_sys.loc[ek, "t"].to_numpy(dtype="float64")
    exit_code = pd.to_numeric(f["exit"], errors="coerce").to_numpy(dtype="float64")
    uid = f["uid"].where(f["uid"] != _UNSET)
    auid = f["auid"].where(f["auid"] != _UNSET)
    user = f["_UID"].where(f["_UID"].notna() & ~f["_UID"].isin(["unset", ""]), uid)
    node = connect_sys.loc[ek, "node"].replace("", None)
    if host_name is not None:
        node = node.fillna(host_name)
    n = len(ek)
    frame = schema.conform(
        {
            "event_start": pd.to_datetime(np.round(t * 1e6).astype("int64"), unit="us", utc=True),
            "source_ip": [host_ip] * n,
            "destination_ip": d["addr"].to_numpy(dtype=object),
            "destination_port": d["port"].to_numpy(dtype=object),
            "network_transport": [None] * n,
            "conn_outcome": errno_outcome(exit_code),
            "host_name": node.to_numpy(dtype=object),
            "process_pid": pd.to_numeric(f["pid"], errors="coerce").astype("Int64").array,
            "process_name": f["comm"].map(_unquote).to_numpy(dtype=object),
            "process_executable": f["exe"].map(_unquote).to_numpy(dtype=object),
            "user_name": user.to_numpy(dtype=object),
            "auditd_auid": pd.array(auid.to_numpy(dtype=object), dtype="string"),
            "auditd_exit": pd.array(pd.to_numeric(f["exit"], errors="coerce").astype("Int64").to_numpy(), dtype="Int64"),
            "auditd_serial": pd.array(connect_sys.loc[ek, "serial"].to_numpy(dtype=np.int64), dtype="Int64"),
            "auditd_proctitle": pd.array(proc.reindex(ek).map(lambda v: _unquote(v) if isinstance(v, str) else None).to_numpy(dtype=object), dtype="string"),
            "auditd_key": pd.array(f["key"].map(lambda v: _unquote(v) if isinstance(v, str) else None).to_numpy(dtype=object), dtype="string"),
            "auditd_initiated": np.ones(n, dtype=bool),
        },
        log_format="auditd",
    )
    return frame, bad_out
