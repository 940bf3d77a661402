"""Calico flow logs: the JSON flow-log records and felix policy-log syslog lines.

**JSON flow logs** (Calico Enterprise / Cloud, ``/var/log/calico/flowlogs/flows.log``, one
object per line; also the ``tigera_secure_ee_flows*`` Elasticsearch documents). Each record
is an *aggregate*: all flows of one key seen by one node in one interval (5 minutes by
default). What the key keeps depends on the aggregation level:

=====================  ==========================================================
level                  what is aggregated away
=====================  ==========================================================
0 (none)               nothing: one record per 5-tuple
1 (default for deny)   ``source_port`` (null)
2 (default for allow)  ``source_port``, ``source_ip``/``dest_ip`` (null) and pod
                       names (``"-"``, kept only as ``*_name_aggr`` prefixes)
3                      as 2, and the destination port
=====================  ==========================================================

So counts survive only as far as the aggregation allows: distinct destination *ports* are
exact at levels 0-2, distinct destination *hosts* only at levels 0-1 (at level 2 only the
pod-name prefix is left), source ports never survive levels ≥ 1. Each row carries the number
of flows it stands for in ``aggregated_count`` (``num_flows``; ``calico_num_flows_started``
and ``calico_num_flows_completed`` are kept too) and the reader states the loss in
``report.note``. Rows with a null address keep NA in ``source_ip``/``destination_ip``:
group such rows by ``source_k8s_workload`` instead.

The same flow is logged twice when both ends are Calico workloads: once by the source node
(``reporter: "src"``) and once by the destination node (``"dst"``). With
``merge_reporters=True`` (default) the two records of one key and interval become one row
(deny wins, the larger ``num_flows`` is kept, ``calico_reporter`` becomes ``"src+dst"``).

Outcome mapping (Calico does not log TCP flags, so outcomes come from the action and the
reply packet counts; "reply" packets are ``packets_in`` for ``reporter: src`` and
``packets_out`` for ``reporter: dst``):

============================================================  ===============  ===============
record                                                         ``conn_outcome``  ``policy_action``
============================================================  ===============  ===============
``action: deny``                                               ``denied``       ``deny``
``allow``, TCP, ≤ 1 reply packet per flow, each ≤ 40 bytes      ``rejected``     ``allow``
(60 for IPv6): a bare RST, the answer of a closed port
``allow``, reply packets > 0                                    ``established``  ``allow``
``allow``, no reply packets                                     ``no_reply``     ``allow``
============================================================  ===============  ===============

The RST rule is a heuristic: a TCP handshake answers with a SYN-ACK of 44+ bytes, a closed
port with one 40-byte RST. Identity: ``source_k8s_namespace``, ``source_k8s_pod``
(``source_name`` unless ``"-"``), ``source_k8s_workload`` (``source_name_aggr`` without the
ReplicaSet hash, e.g. ``frontend-755cdc7957-*`` → ``frontend``), ``process_executable`` and
``process_pid`` (when process info collection is on), ``host_name`` from the record's
``host`` field when present. ``event_start`` is the interval start; ``event_duration_s`` is
NA (the interval is not a connection duration; ``calico_end_time`` keeps its end).

**felix policy-log syslog lines** (``calico-felix[pid]: ... action="deny" srcIP=... dstPort=...``,
host-endpoint policy logging): one line per connection, ``aggregated_count`` 1; ``deny`` →
``denied``, ``allow`` → ``established`` when ``inPackets`` > 0 else ``no_reply``. Classic
syslog timestamps have no year: pass ``year=``, else the file's modification year is used
(and noted). Other felix lines are skipped with a reason.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import register
from ._ep_common import clean_text, iter_json_records, to_int
from ._report import ReadReport
from ._source import PathLike, iter_line_chunks, read_head

__all__ = ["read_calico"]

_PROTO = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "icmp6": "icmpv6", "icmpv6": "icmpv6", "6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}
_RS_HASH = re.compile(r"-[a-z0-9]{6,10}-\*$|-\*$")
_KV = re.compile(rb'(\w+)=(?:"([^"]*)"|(\S+))')
_SYSLOG_TS = re.compile(rb"^(?:<\d+>)?([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d)\s+(\S+)\s")
_ISO_TS = re.compile(rb"^(?:<\d+>\d? ?)?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s+(\S+)\s")

_JSON_FIELDS = (
    "start_time", "end_time", "source_ip", "source_port", "source_name", "source_name_aggr", "source_namespace",
    "source_type", "dest_ip", "dest_port", "dest_name", "dest_name_aggr", "dest_namespace", "dest_type",
    "dest_service_namespace", "dest_service_name", "dest_service_port_num", "proto", "action", "reporter",
    "bytes_in", "bytes_out", "packets_in", "packets_out", "num_flows", "num_flows_started", "num_flows_completed",
    "process_name", "process_id", "host",
)


def _sniff(head: bytes, name: str) -> bool:
    if b'"num_flows"' in head and (b'"reporter"' in head or b'"dest_name_aggr"' in head):
        return True
    return b"calico-felix" in head and b"srcIP=" in head and b"dstIP=" in head


@register("calico", sniff=_sniff, priority=40, description="Calico flow logs (JSON flow-log records or felix policy-log syslog)")
def read_calico(
    path: PathLike, report: ReadReport, *, chunksize: int, merge_reporters: bool = True, year: int | None = None, **options: Any
) -> Iterator[pd.DataFrame]:
    """Calico flow logs (JSON flow-log records or felix policy-log syslog).

    Parameters
    ----------
    merge_reporters : bool, default True
        Merge the ``src`` and ``dst`` reports of one aggregate into one row.
    year : int, optional
        Year of classic syslog timestamps (felix lines); default: the file's modification year.
    """
    head = read_head(path, 4096).lstrip()
    if head.startswith(b"{") or not head:
        yield from _read_json(path, report, chunksize, merge_reporters)
    else:
        yield from _read_felix(path, report, chunksize, year)


# --- JSON flow logs ----------------------------------------------------------------------


def _read_json(path: PathLike, report: ReadReport, chunksize: int, merge: bool) -> Iterator[pd.DataFrame]:
    yielded = False
    stats = {"rows": 0, "no_sport": 0, "no_ip": 0, "no_dport": 0, "no_name": 0, "flows": 0}
    for lines, objects in iter_json_records(path, report, chunksize):
        rows: list[tuple] = []
        keep_lines: list[int] = []
        for line, obj in zip(lines.tolist(), objects):
            if "start_time" not in obj and "startTime" in obj:
                obj = {**obj, "start_time": obj.get("startTime"), "end_time": obj.get("endTime")}
            if "num_flows" not in obj and "action" not in obj:
                report.skip("not a flow-log record")
                continue
            rows.append(tuple(obj.get(f) for f in _JSON_FIELDS))
            keep_lines.append(line)
        raw = pd.DataFrame.from_records(rows, columns=list(_JSON_FIELDS))
        raw["line"] = np.asarray(keep_lines, dtype=np.int64)
        frame = _json_rows(raw, report, merge, stats)
        if len(frame):
            yield frame
            yielded = True
    if stats["rows"]:
        report.note(
            f"calico: {stats['rows']:,} aggregated rows stand for {stats['flows']:,} flows (aggregated_count); "
            f"source port aggregated away in {stats['no_sport']:,} rows (distinct source ports lost), "
            f"IP addresses aggregated away in {stats['no_ip']:,} rows (distinct hosts lost, only pod-name prefixes kept), "
            f"pod names aggregated to prefixes in {stats['no_name']:,} rows, "
            f"destination port aggregated away in {stats['no_dport']:,} rows"
        )
    if not yielded:
        yield schema.conform({"aggregated_count": np.zeros(0, dtype=np.int64)}, log_format="calico")


def _json_rows(raw: pd.DataFrame, report: ReadReport, merge: bool, stats: dict[str, int]) -> pd.DataFrame:
    if raw.empty:
        return raw
    start = pd.to_datetime(to_int(raw["start_time"]), unit="s", utc=True)
    end = pd.to_datetime(to_int(raw["end_time"]), unit="s", utc=True)
    proto = raw["proto"].astype("string").str.lower().map(_PROTO)
    action = raw["action"].astype("string").str.lower()
    dport = to_int(raw["dest_port"])
    sport = to_int(raw["source_port"])
    bad = pd.Series("", index=raw.index, dtype=object)
    bad[start.isna()] = "start_time is not an epoch number"
    bad[(bad == "") & ~action.isin(["allow", "deny"]).fillna(False)] = "action is not allow or deny"
    bad[(bad == "") & proto.isna() & raw["proto"].notna()] = "unknown proto"
    bad[(bad == "") & ((dport < 0) | (dport > 65535)).fillna(False)] = "dest_port out of range"
    for reason in pd.unique(bad[bad != ""]):
        report.bad_many(str(reason), lines=raw.loc[bad == reason, "line"].to_numpy())
    ok = (bad == "").to_numpy()
    raw, start, end, proto, action, dport, sport = (x[ok] for x in (raw, start, end, proto, action, dport, sport))
    report.used(int(ok.sum()))
    src_rep = (raw["reporter"].astype("string") != "dst").fillna(True).to_numpy(dtype=bool)
    b_in, b_out = to_int(raw["bytes_in"]), to_int(raw["bytes_out"])
    p_in, p_out = to_int(raw["packets_in"]), to_int(raw["packets_out"])
    frame = pd.DataFrame(
        {
            "event_start": start,
            "calico_end_time": end,
            "source_ip": clean_text(raw["source_ip"]),
            "source_port": sport,
            "destination_ip": clean_text(raw["dest_ip"]),
            "destination_port": dport,
            "network_transport": proto.fillna("other"),
            "action": action,
            "source_bytes": b_out.where(src_rep, b_in),
            "destination_bytes": b_in.where(src_rep, b_out),
            "source_packets": p_out.where(src_rep, p_in),
            "destination_packets": p_in.where(src_rep, p_out),
            "aggregated_count": to_int(raw["num_flows"]).fillna(1).astype("int64"),
            "calico_num_flows_started": to_int(raw["num_flows_started"]),
            "calico_num_flows_completed": to_int(raw["num_flows_completed"]),
            "calico_reporter": raw["reporter"].astype("string"),
            "host_name": clean_text(raw["host"]),
            "source_k8s_namespace": clean_text(raw["source_namespace"]),
            "source_k8s_pod": clean_text(raw["source_name"]),
            "source_k8s_workload": clean_text(raw["source_name_aggr"]).str.replace(_RS_HASH, "", regex=True),
            "calico_source_name_aggr": clean_text(raw["source_name_aggr"]),
            "calico_source_type": clean_text(raw["source_type"]),
            "calico_dest_namespace": clean_text(raw["dest_namespace"]),
            "calico_dest_name": clean_text(raw["dest_name"]),
            "calico_dest_name_aggr": clean_text(raw["dest_name_aggr"]),
            "calico_dest_type": clean_text(raw["dest_type"]),
            "calico_dest_service": (clean_text(raw["dest_service_namespace"]) + "/" + clean_text(raw["dest_service_name"])),
            "process_executable": clean_text(raw["process_name"]),
            "process_pid": to_int(clean_text(raw["process_id"])),
        }
    ).reset_index(drop=True)
    if merge and len(frame):
        frame = _merge_reporters(frame)
    # outcome from the action and the reply packets (see the module docstring)
    reply_p = frame["destination_packets"].fillna(0).to_numpy(dtype=np.int64)
    reply_b = frame["destination_bytes"].fillna(0).to_numpy(dtype=np.int64)
    flows = frame["aggregated_count"].to_numpy(dtype=np.int64).clip(min=1)
    v6 = frame["source_ip"].str.contains(":", regex=False).fillna(False).to_numpy(dtype=bool) | frame["destination_ip"].str.contains(":", regex=False).fillna(False).to_numpy(dtype=bool)
    rst_size = np.where(v6, 60, 40)
    tcp = (frame["network_transport"] == "tcp").to_numpy(dtype=bool)
    deny = (frame["action"] == "deny").to_numpy(dtype=bool)
    rst_only = tcp & (reply_p > 0) & (reply_p <= flows) & (reply_b <= reply_p * rst_size)
    outcome = np.where(deny, "denied", np.where(reply_p == 0, "no_reply", np.where(rst_only, "rejected", "established")))
    frame["conn_outcome"] = outcome
    frame["policy_action"] = np.where(deny, "deny", "allow")
    frame["process_name"] = frame["process_executable"].str.rsplit("/", n=1).str[-1]
    frame["event_duration_s"] = np.nan
    stats["rows"] += len(frame)
    stats["flows"] += int(frame["aggregated_count"].sum())
    stats["no_sport"] += int(frame["source_port"].isna().sum())
    stats["no_ip"] += int((frame["source_ip"].isna() | frame["destination_ip"].isna()).sum())
    stats["no_dport"] += int(frame["destination_port"].isna().sum())
    wep = (frame["calico_source_type"] == "wep").fillna(False) | (frame["calico_dest_type"] == "wep").fillna(False)
    stats["no_name"] += int((wep & (frame["source_k8s_pod"].isna() | frame["calico_dest_name"].isna())).sum())
    columns = {c: frame[c] for c in frame.columns if c != "action"}
    return schema.conform(columns, log_format="calico")


def _merge_reporters(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per aggregate when both the source and the destination node reported it."""
    key_cols = ["event_start", "source_ip", "source_port", "destination_ip", "destination_port", "network_transport",
                "source_k8s_namespace", "calico_source_name_aggr", "calico_dest_namespace", "calico_dest_name_aggr"]
    parts = frame[key_cols].astype("string").fillna("\x00")
    key = parts[key_cols[0]]
    for col in key_cols[1:]:
        key = key + "|" + parts[col]
    dup = key.duplicated(keep=False)
    if not dup.any():
        return frame
    single = frame.loc[~dup]
    both = frame.loc[dup].assign(_key=key[dup], _deny=(frame.loc[dup, "action"] == "deny"), _src=(frame.loc[dup, "calico_reporter"] != "dst"))
    # the source report carries the source-side process; keep it first
    both = both.sort_values(["_key", "_src"], ascending=[True, False], kind="stable")
    merged = both.groupby("_key", sort=False).first()
    grouped = both.groupby("_key", sort=False)
    merged["action"] = np.where(grouped["_deny"].any().to_numpy(dtype=bool), "deny", "allow")
    merged["aggregated_count"] = grouped["aggregated_count"].max().to_numpy()
    reporters = grouped["calico_reporter"].nunique()
    merged["calico_reporter"] = np.where(reporters.to_numpy() > 1, "src+dst", merged["calico_reporter"].astype(object).to_numpy())
    merged = merged.drop(columns=["_deny", "_src"]).reset_index(drop=True)
    out = pd.concat([single, merged.astype(single.dtypes.to_dict())], ignore_index=True)
    return out.sort_values("event_start", kind="stable").reset_index(drop=True)


# --- felix policy-log syslog -------------------------------------------------------------


def _read_felix(path: PathLike, report: ReadReport, chunksize: int, year: int | None) -> Iterator[pd.DataFrame]:
    if year is None:
        year = _dt.datetime.fromtimestamp(os.path.getmtime(path), tz=_dt.UTC).year
        year_noted = False
    else:
        year_noted = True
    yielded = False
    for first, lines in iter_line_chunks(path, chunk_lines=max(1, min(chunksize, 262_144))):
        recs: list[dict[str, Any]] = []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            line_no = first + i
            report.seen()
            if b"srcIP=" not in raw or b"action=" not in raw:
                report.skip("felix line without flow data")
                continue
            fields = {k.decode(): (q if q is not None else u).decode("utf-8", "replace") for k, q, u in ((m.group(1), m.group(2), m.group(3)) for m in _KV.finditer(raw))}
            m_iso = _ISO_TS.match(raw)
            m_sys = _SYSLOG_TS.match(raw)
            if m_iso:
                fields["_ts"] = m_iso.group(1).decode()
                fields["_host"] = m_iso.group(2).decode("utf-8", "replace")
            elif m_sys:
                fields["_ts"] = f"{year} {m_sys.group(1).decode()}"
                fields["_host"] = m_sys.group(2).decode("utf-8", "replace")
                if not year_noted:
                    report.note(f"calico felix: syslog timestamps carry no year; assumed {year} (pass year=)")
                    year_noted = True
            else:
                report.bad("no syslog timestamp", line=line_no, excerpt=raw)
                continue
            fields["_line"] = line_no
            recs.append(fields)
        if not recs:
            continue
        raw_df = pd.DataFrame.from_records(recs)
        for col in ("srcIP", "dstIP", "srcPort", "dstPort", "proto", "action", "inPackets", "outPackets", "inBytes", "outBytes", "policy", "tier", "ruleDir", "trafficDir"):
            if col not in raw_df.columns:
                raw_df[col] = None
        iso = raw_df["_ts"].str.contains("T", regex=False)
        ts = pd.Series(pd.NaT, index=raw_df.index, dtype=schema.TIMESTAMP_DTYPE)
        if iso.any():
            ts[iso] = pd.to_datetime(raw_df.loc[iso, "_ts"], utc=True, errors="coerce", format="ISO8601")
        if (~iso).any():
            ts[~iso] = pd.to_datetime(raw_df.loc[~iso, "_ts"].str.replace(r"\s+", " ", regex=True), format="%Y %b %d %H:%M:%S", errors="coerce", utc=True)
        proto = raw_df["proto"].astype("string").str.lower().map(_PROTO)
        action = raw_df["action"].astype("string").str.lower()
        sport, dport = to_int(raw_df["srcPort"]), to_int(raw_df["dstPort"])
        bad = pd.Series("", index=raw_df.index, dtype=object)
        bad[ts.isna()] = "unparseable timestamp"
        bad[(bad == "") & ~action.isin(["allow", "deny"]).fillna(False)] = "action is not allow or deny"
        bad[(bad == "") & (raw_df["srcIP"].isna() | raw_df["dstIP"].isna())] = "srcIP or dstIP missing"
        bad[(bad == "") & (((dport < 0) | (dport > 65535)) | ((sport < 0) | (sport > 65535))).fillna(False)] = "port out of range"
        for reason in pd.unique(bad[bad != ""]):
            report.bad_many(str(reason), lines=raw_df.loc[bad == reason, "_line"].to_numpy())
        ok = (bad == "").to_numpy()
        report.used(int(ok.sum()))
        d = raw_df[ok]
        in_p = to_int(d["inPackets"]).fillna(0).to_numpy(dtype=np.int64)
        deny = (action[ok] == "deny").to_numpy(dtype=bool)
        host = d["_host"].to_numpy(dtype=object)
        yield schema.conform(
            {
                "event_start": ts[ok].to_numpy(),
                "source_ip": d["srcIP"].to_numpy(dtype=object),
                "source_port": sport[ok].array,
                "destination_ip": d["dstIP"].to_numpy(dtype=object),
                "destination_port": dport[ok].array,
                "network_transport": proto[ok].fillna("other").to_numpy(dtype=object),
                "conn_outcome": np.where(deny, "denied", np.where(in_p > 0, "established", "no_reply")),
                "policy_action": np.where(deny, "deny", "allow"),
                "source_bytes": to_int(d["outBytes"]).array,
                "destination_bytes": to_int(d["inBytes"]).array,
                "source_packets": to_int(d["outPackets"]).array,
                "destination_packets": to_int(d["inPackets"]).array,
                "aggregated_count": np.ones(int(ok.sum()), dtype=np.int64),
                "calico_policy": clean_text(d["policy"]).array,
                "calico_tier": clean_text(d["tier"]).array,
                "calico_rule_dir": clean_text(d["ruleDir"]).array,
                "calico_traffic_dir": clean_text(d["trafficDir"]).array,
                "host_name": host,
            },
            log_format="calico",
        )
        yielded = True
    if not yielded:
        yield schema.conform({"aggregated_count": np.zeros(0, dtype=np.int64)}, log_format="calico")
