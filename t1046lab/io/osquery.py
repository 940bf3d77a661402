"""osquery result logs of the socket tables (Linux and macOS): ``socket_events``,
``bpf_socket_events`` and ``process_open_sockets``.

Input: the JSON result log ``osqueryd`` writes (``osqueryd.results.log``, filesystem logger),
one object per line, in any of its three shapes:

* event (differential) lines ``{"name":..., "hostIdentifier":..., "unixTime":..., "columns": {...}, "action": "added"}``;
* snapshot lines ``{"snapshot": [{...}, ...], "action": "snapshot", ...}`` (one line, many rows);
* batch lines ``{"diffResults": {"added": [...], "removed": [...]}, ...}`` (``--logger_event_type=false``).

Column values are strings unless the logger ran with ``--logger_numerics``; both are read.
A line is a record: it is *used* when it gives at least one row, otherwise *skipped* with
the reason of its first row (e.g. a ``bind``, a listening socket, another query's results).

``socket_events`` (evented; Linux via the audit netlink socket, macOS via the OpenBSM audit
pipe with ``--audit_allow_sockets``) and ``bpf_socket_events`` (Linux eBPF):

==============================================================  ===================
row                                                              ``conn_outcome``
==============================================================  ===================
``exit_code`` (bpf) or a numeric ``status``: 0 / ``-111`` /       ``established`` /
``-110`` / ``-113``, ``-101`` / ``-13``, ``-1`` / ``-115``     ``rejected`` /
                                                                ``no_reply`` /
                                                                ``icmp_unreachable`` /
                                                                ``denied`` / ``unknown``
``status`` ``succeeded`` on a TCP socket                        ``established``
``status`` ``succeeded`` on UDP or unknown protocol             ``unknown``
``status`` ``failed``                                           ``rejected`` (1)
``status`` ``in_progress`` (non-blocking connect)               ``unknown``
only the deprecated ``success``: 1 → as ``succeeded``; 0        ``unknown`` (2)
==============================================================  ===================

(1) osquery does not export the errno of a failed ``connect()``; ECONNREFUSED (a RST) is
the usual cause of a blocking connect failing fast, but ETIMEDOUT and EHOSTUNREACH end the
same way. (2) ``success=0`` is also what a non-blocking ``connect()`` returning EINPROGRESS
logs: a real macOS line shows ``osqueryd``'s own working TLS connection with
``"success":"0"``; reading it as *rejected* would invent failures.

``action: connect`` rows put the local end in ``source_*`` (often ``0``/``0`` on macOS and
for non-blocking sockets: NA then) and set ``osquery_initiated`` true; ``accept`` rows put
the peer in ``source_*`` and set it false; ``bind``, ``listen``, ``close`` and AF_UNIX rows
are skipped.

``process_open_sockets`` (snapshot of open sockets; ``path`` only on macOS unless joined to
``processes``): LISTEN sockets and sockets without a remote end are skipped; rows whose
local port is listening on the same host (in the same chunk) are inbound (swapped,
``osquery_initiated`` false). TCP states ESTABLISHED, CLOSE_WAIT, FIN_WAIT1/2, TIME_WAIT,
LAST_ACK and CLOSING → ``established``; SYN_SENT, SYN_RECV and UDP → ``unknown``. The same
socket seen in later snapshots is kept once; ``removed`` diff rows are skipped. A snapshot
only sees sockets open at query time: a port scan's short-lived sockets are mostly absent.

Identity: ``host_name`` (``decorations.hostname`` else ``hostIdentifier``), ``process_pid``,
``process_executable`` (``path``), ``process_name`` (``name`` if joined, else the basename),
``user_name`` (numeric ``auid``/``uid``; 4294967295 is unset), extras ``osquery_cmdline``
(``cmdline`` when present), ``osquery_query``, ``osquery_action``, ``osquery_status``,
``osquery_table``, ``osquery_initiated``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import register
from ._ep_common import errno_outcome, iter_json_records, to_int
from ._report import ReadReport
from ._source import PathLike

__all__ = ["read_osquery"]

_ROW = (
    "table", "query", "host", "t_row", "t_line", "pid", "path", "name", "cmdline", "family", "protocol",
    "laddr", "lport", "raddr", "rport", "status", "success", "exit_code", "action", "state", "user", "line", "removed",
)
_ESTABLISHED_STATES = {"ESTABLISHED", "CLOSE_WAIT", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "LAST_ACK", "CLOSING"}
_INBOUND_ACTIONS = {"accept"}
_OUTBOUND_ACTIONS = {"connect"}
_UNSET_UID = {"4294967295", "-1", ""}


def _sniff(head: bytes, name: str) -> bool:
    return b'"hostIdentifier"' in head and (b'"columns"' in head or b'"snapshot"' in head or b'"diffResults"' in head)


def _table(cols: dict[str, Any]) -> str | None:
    if "syscall" in cols and "remote_address" in cols:
        return "bpf_socket_events"
    if "action" in cols and "remote_address" in cols:
        return "socket_events"
    if "remote_address" in cols and ("state" in cols or "fd" in cols):
        return "process_open_sockets"
    return None


def _rows_of(obj: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    if isinstance(obj.get("columns"), dict):
        return [(obj["columns"], obj.get("action") == "removed")]
    if isinstance(obj.get("snapshot"), list):
        return [(r, False) for r in obj["snapshot"] if isinstance(r, dict)]
    diff = obj.get("diffResults")
    if isinstance(diff, dict):
        return [(r, False) for r in diff.get("added") or [] if isinstance(r, dict)] + [
            (r, True) for r in diff.get("removed") or [] if isinstance(r, dict)
        ]
    return []


def _flatten(line: int, obj: dict[str, Any]) -> tuple[list[tuple], str | None]:
    """Rows of one result line, or a skip reason when it holds none."""
    rows = _rows_of(obj)
    if not rows:
        return [], "no result rows (not a result-log line)"
    deco = obj.get("decorations") if isinstance(obj.get("decorations"), dict) else {}
    host = deco.get("hostname") or obj.get("hostIdentifier") or obj.get("host_identifier")
    t_line = obj.get("unixTime", obj.get("unix_time"))
    out = []
    reason = None
    for cols, removed in rows:
        table = _table(cols)
        if table is None:
            reason = reason or f"query {obj.get('name')!r} has no socket columns"
            continue
        out.append(
            (
                table, obj.get("name"), host, cols.get("time"), t_line, cols.get("pid"), cols.get("path"), cols.get("name"),
                cols.get("cmdline"), cols.get("family"), cols.get("protocol"), cols.get("local_address"),
                cols.get("local_port"), cols.get("remote_address"), cols.get("remote_port"), cols.get("status"),
                cols.get("success"), cols.get("exit_code"), cols.get("action", cols.get("syscall")), cols.get("state"),
                cols.get("auid", cols.get("uid")), line, removed,
            )
        )
    return out, (None if out else reason)


def _text(values: pd.Series) -> pd.Series:
    # --logger_numerics writes numbers as JSON numbers; the string dtype renders them as text
    return values.astype("object").astype("string")


@register("osquery", sniff=_sniff, priority=40, description="osquery result logs of socket_events, bpf_socket_events, process_open_sockets")
def read_osquery(path: PathLike, report: ReadReport, *, chunksize: int, **options: Any) -> Iterator[pd.DataFrame]:
    """osquery result logs of socket_events, bpf_socket_events, process_open_sockets."""
    report.note(
        "osquery: connect() telemetry sees only processes that call connect(); raw-socket scans "
        "(nmap -sS, masscan, zmap) are invisible, and process_open_sockets sees only sockets open at query time"
    )
    seen_snapshot_keys = pd.Index([], dtype="string")
    yielded = False
    for lines, objects in iter_json_records(path, report, chunksize):
        rows: list[tuple] = []
        for line, obj in zip(lines.tolist(), objects):
            got, reason = _flatten(line, obj)
            if got:
                rows.extend(got)
            else:
                report.skip(reason or "no rows")
        if not rows:
            continue
        frame, seen_snapshot_keys = _build(pd.DataFrame.from_records(rows, columns=list(_ROW)), report, seen_snapshot_keys)
        if len(frame):
            yield frame
            yielded = True
    if not yielded:
        yield schema.conform({"osquery_initiated": np.zeros(0, dtype=bool)}, log_format="osquery")


def _build(raw: pd.DataFrame, report: ReadReport, seen_keys: pd.Index) -> tuple[pd.DataFrame, pd.Index]:
    n = len(raw)
    reason = np.full(n, "", dtype=object)  # skip reasons
    bad = np.full(n, "", dtype=object)  # quarantine reasons
    table = raw["table"].to_numpy(dtype=object)
    action = _text(raw["action"]).str.lower()
    state = _text(raw["state"]).str.upper()
    family = to_int(raw["family"])
    protocol = to_int(raw["protocol"])
    lport, rport = to_int(raw["lport"]), to_int(raw["rport"])
    laddr, raddr = _text(raw["laddr"]), _text(raw["raddr"])
    t_row, t_line = to_int(raw["t_row"]), to_int(raw["t_line"])
    ts = t_row.fillna(t_line)
    for name, vals in (("local_port", lport), ("remote_port", rport)):
        given = raw["lport" if name == "local_port" else "rport"].notna() & ~raw["lport" if name == "local_port" else "rport"].isin(["", None])
        wrong = (given & vals.isna()) | ((vals < 0) | (vals > 65535)).fillna(False)
        bad[(bad == "") & wrong.to_numpy(dtype=bool)] = f"{name} is not a port number"
    bad[(bad == "") & ts.isna().to_numpy(dtype=bool)] = "no time or unixTime"
    is_sock_ev = table != "process_open_sockets"
    fam = family.fillna(-1).to_numpy(dtype=np.int64)
    reason[(fam == 1)] = "AF_UNIX socket"
    reason[(reason == "") & ~np.isin(fam, [2, 10, -1])] = "not an AF_INET/AF_INET6 socket"
    act = action.fillna("").to_numpy(dtype=object)
    direction_known = np.isin(act, list(_INBOUND_ACTIONS | _OUTBOUND_ACTIONS))
    other_action = (reason == "") & is_sock_ev & ~direction_known
    reason[other_action] = ("socket action " + action.fillna("?")).to_numpy(dtype=object)[other_action]
    st = state.fillna("").to_numpy(dtype=object)
    pos = ~is_sock_ev
    reason[(reason == "") & pos & (st == "LISTEN")] = "listening socket"
    no_remote = (raddr.isna() | raddr.isin(["", "0", "0.0.0.0", "::"])).to_numpy(dtype=bool) & (rport.fillna(0).to_numpy() == 0)
    reason[(reason == "") & pos & no_remote] = "socket without a remote end"
    reason[(reason == "") & pos & raw["removed"].to_numpy(dtype=bool)] = "removed row (socket closed since the previous run)"
    reason[(reason == "") & is_sock_ev & (raddr.isna() | raddr.isin(["", "0"])).to_numpy(dtype=bool)] = "no remote address"

    # inbound process_open_sockets rows: local port listening on the same host
    host = _text(raw["host"]).fillna("")
    listen_key = (host + "|" + lport.astype("string").fillna(""))[pos & (st == "LISTEN")]
    inbound_pos = pos & (host + "|" + lport.astype("string").fillna("")).isin(set(listen_key)).to_numpy(dtype=bool)
    # a socket stays open across snapshots: keep its first sighting
    sock_key = (host + "|" + _text(raw["pid"]).fillna("") + "|" + laddr.fillna("") + "|" + lport.astype("string").fillna("") + "|" + raddr.fillna("") + "|" + rport.astype("string").fillna(""))
    ok_pos = pos & (reason == "") & (bad == "")
    dup = ok_pos & (sock_key.duplicated() | sock_key.isin(seen_keys)).to_numpy(dtype=bool)
    reason[dup & (reason == "")] = "socket already seen in an earlier snapshot"
    seen_keys = seen_keys.append(pd.Index(sock_key[ok_pos & ~dup].astype("string")))

    # account per line: a line is used when any of its rows survives
    keep = (reason == "") & (bad == "")
    line = raw["line"].to_numpy(dtype=np.int64)
    per_line = pd.DataFrame({"line": line, "keep": keep, "bad": bad, "reason": reason})
    line_keep = per_line.groupby("line", sort=False)["keep"].any()
    first = per_line.drop_duplicates("line").set_index("line")
    first_bad = per_line[per_line["bad"] != ""].drop_duplicates("line").set_index("line")["bad"]
    dropped = first.loc[line_keep.index[~line_keep.to_numpy()]]
    dropped_bad = dropped.index.isin(first_bad.index)
    bad_lines = pd.Series(first_bad.reindex(dropped.index[dropped_bad]).to_numpy(dtype=object), index=dropped.index[dropped_bad])
    for why, group in bad_lines.groupby(bad_lines):
        report.bad_many(str(why), lines=group.index.to_numpy(dtype=np.int64))
    skip_reasons = dropped.loc[~dropped_bad, "reason"].replace("", "no rows")
    for why, count in skip_reasons.value_counts().items():
        report.skip(str(why), int(count))
    report.used(int(line_keep.sum()))
    rows_bad = (bad != "") & np.isin(line, line_keep.index[line_keep.to_numpy()])
    if rows_bad.any():  # a bad row inside an otherwise good snapshot line: counted, kept out
        report.note(f"osquery: {int(rows_bad.sum())} malformed rows inside used snapshot lines were left out")

    inbound = np.where(is_sock_ev, np.isin(act, list(_INBOUND_ACTIONS)), inbound_pos)
    k = keep
    # outcomes
    proto = protocol.fillna(0).to_numpy(dtype=np.int64)
    transport = np.where(proto == 6, "tcp", np.where(proto == 17, "udp", None)).astype(object)
    pos_tcp = pos & (st != "") & pd.isna(transport)
    transport[pos_tcp] = "tcp"
    outcome = np.full(n, "unknown", dtype=object)
    status = _text(raw["status"]).str.lower().fillna("").to_numpy(dtype=object)
    success = to_int(raw["success"]).to_numpy(dtype="float64", na_value=np.nan)
    succeeded = (status == "succeeded") | ((status == "") & (success == 1))
    outcome[is_sock_ev & succeeded & (transport == "tcp")] = "established"
    outcome[is_sock_ev & (status == "failed")] = "rejected"
    # bpf_socket_events' exit_code, or a numeric status (a negative errno), is the precise source
    exit_code = to_int(raw["exit_code"]).fillna(to_int(raw["status"])).to_numpy(dtype="float64", na_value=np.nan)
    has_exit = is_sock_ev & ~np.isnan(exit_code)
    mapped = errno_outcome(exit_code)
    outcome[has_exit] = mapped[has_exit]
    outcome[has_exit & (exit_code == 0) & (transport != "tcp")] = "unknown"  # UDP connect() returning 0 says nothing
    outcome[pos & np.isin(st, list(_ESTABLISHED_STATES))] = "established"
    lport_s = lport.astype("Int32").where(lport != 0)
    rport_s = rport.astype("Int32")
    laddr_s = laddr.where(~laddr.isin(["", "0", "0.0.0.0", "::"]))
    src_ip = np.where(inbound, raddr.to_numpy(dtype=object), laddr_s.to_numpy(dtype=object))
    dst_ip = np.where(inbound, laddr_s.to_numpy(dtype=object), raddr.to_numpy(dtype=object))
    src_port = pd.array(np.where(inbound, rport_s.to_numpy(dtype=object), lport_s.to_numpy(dtype=object)), dtype="Int32")
    dst_port = pd.array(np.where(inbound, lport_s.to_numpy(dtype=object), rport_s.to_numpy(dtype=object)), dtype="Int32")
    path = _text(raw["path"]).replace("", pd.NA)
    name = _text(raw["name"]).replace("", pd.NA).fillna(path.str.rsplit("/", n=1).str[-1])
    user = _text(raw["user"])
    user = user.where(~user.isin(list(_UNSET_UID)))
    columns = {
        "event_start": pd.to_datetime(ts.astype("float64"), unit="s", utc=True).to_numpy()[k],
        "source_ip": src_ip[k],
        "source_port": src_port[k],
        "destination_ip": dst_ip[k],
        "destination_port": dst_port[k],
        "network_transport": transport[k],
        "conn_outcome": outcome[k],
        "host_name": host.replace("", pd.NA).to_numpy(dtype=object)[k],
        "process_pid": to_int(raw["pid"]).to_numpy(dtype=object)[k],
        "process_name": name.to_numpy(dtype=object)[k],
        "process_executable": path.to_numpy(dtype=object)[k],
        "user_name": user.to_numpy(dtype=object)[k],
        "osquery_cmdline": pd.array(_text(raw["cmdline"]).to_numpy(dtype=object)[k], dtype="string"),
        "osquery_query": pd.array(_text(raw["query"]).to_numpy(dtype=object)[k], dtype="string"),
        "osquery_table": pd.array(table[k], dtype="string"),
        "osquery_action": pd.array(np.where(is_sock_ev, action.fillna("").to_numpy(dtype=object), state.fillna("").to_numpy(dtype=object))[k], dtype="string"),
        "osquery_status": pd.array(_text(raw["status"]).fillna("exit_code=" + _text(raw["exit_code"])).fillna("success=" + _text(raw["success"])).to_numpy(dtype=object)[k], dtype="string"),
        "osquery_initiated": ~inbound[k].astype(bool),
    }
    frame = schema.conform(columns, log_format="osquery")
    return frame.sort_values("event_start", kind="stable").reset_index(drop=True), seen_keys
