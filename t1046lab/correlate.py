"""Attribute alerts to the process, user, container, pod or cloud instance behind them.

:func:`correlate` takes the alerts frame, the network connections the alerts were computed
from, and (optionally) endpoint telemetry read by the ``osquery``, ``sysmon-linux`` and
``auditd`` readers, and adds attribution columns to every alert row. It says so when the
telemetry cannot see the scanner: a raw-socket SYN scan (nmap ``-sS``, masscan, zmap) never
calls ``connect()``, so connect()-based endpoint telemetry has nothing to match.

:func:`discovery_tool_events` is the process-side rule: it flags endpoint rows whose
process is a known discovery tool.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .alerts import validate_alerts

__all__ = ["ATTRIBUTION_COLUMNS", "DISCOVERY_TOOLS", "correlate", "discovery_tool_events"]

log = logging.getLogger(__name__)

#: Executable base names of network discovery tools (T1046 and its ARP/ICMP/NetBIOS cousins).
DISCOVERY_TOOLS: tuple[str, ...] = (
    "nmap", "nping", "masscan", "zmap", "rustscan", "naabu", "hping", "hping2", "hping3", "unicornscan",
    "arp-scan", "fping", "nbtscan", "zgrab", "zgrab2", "sx", "angryip", "ipscan", "pnscan", "scanrand",
    "amap", "netdiscover", "onesixtyone", "smbmap", "enum4linux",
)
#: netcat variants count only with the port-scan flag ``-z`` on their command line.
_NETCAT = ("nc", "ncat", "netcat", "nc.openbsd", "nc.traditional")
_TOOL_RE = re.compile(r"^(?:" + "|".join(re.escape(t) for t in sorted(DISCOVERY_TOOLS, key=len, reverse=True)) + r")(?:\.exe)?$", re.IGNORECASE)
_NETCAT_RE = re.compile(r"^(?:" + "|".join(re.escape(t) for t in _NETCAT) + r")$", re.IGNORECASE)
_ZFLAG_RE = r"(?:^|\s)-[A-Za-z]*z[A-Za-z]*(?:\s|$)"
#: Columns that may hold a command line, by reader.
_CMDLINE_COLUMNS = ("process_command_line", "osquery_cmdline", "auditd_proctitle", "sysmon_linux_command_line")

#: Columns :func:`correlate` adds to the alerts frame.
ATTRIBUTION_COLUMNS: dict[str, Any] = {
    "attributed_process_pid": pd.Int64Dtype(),
    "attributed_process_executable": pd.StringDtype(),
    "attributed_user_name": pd.StringDtype(),
    "attributed_container_id": pd.StringDtype(),
    "attributed_k8s_namespace": pd.StringDtype(),
    "attributed_k8s_pod": pd.StringDtype(),
    "attributed_k8s_workload": pd.StringDtype(),
    "attributed_cloud_instance_id": pd.StringDtype(),
    "attributed_cloud_account_id": pd.StringDtype(),
    "attribution_coverage": np.dtype("float64"),
    "attribution_note": pd.StringDtype(),
}

# attribute → (column on endpoint rows, column on connection rows)
_ATTRS = {
    "attributed_process_pid": ("process_pid", "process_pid"),
    "attributed_process_executable": ("process_executable", "process_executable"),
    "attributed_user_name": ("user_name", "user_name"),
    "attributed_container_id": ("container_id", "container_id"),
    "attributed_k8s_namespace": ("source_k8s_namespace", "source_k8s_namespace"),
    "attributed_k8s_pod": ("source_k8s_pod", "source_k8s_pod"),
    "attributed_k8s_workload": ("source_k8s_workload", "source_k8s_workload"),
    "attributed_cloud_instance_id": ("cloud_instance_id", "cloud_instance_id"),
    "attributed_cloud_account_id": ("cloud_account_id", "cloud_account_id"),
}
# conns columns that identify the origin without endpoint telemetry
_ROW_IDENTITY = ("source_k8s_pod", "container_id", "cloud_instance_id", "network_interface_id")


def _col(df: pd.DataFrame, name: str, dtype: Any = "string") -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series(pd.NA, index=df.index, dtype=dtype)


def discovery_tool_events(endpoint_events: pd.DataFrame) -> pd.DataFrame:
    """Endpoint rows whose process is a known network discovery tool.

    A row is flagged when the base name of ``process_executable`` or ``process_name``, or
    the first word of a command line column (``process_command_line``,
    ``osquery_cmdline``, ``auditd_proctitle``), is one of :data:`DISCOVERY_TOOLS`
    (nmap, masscan, zmap, rustscan, naabu, hping3, unicornscan, arp-scan, fping, nbtscan,
    …), or is a netcat (``nc``, ``ncat``, ``netcat``) whose command line carries ``-z``.
    Interpreter-launched tools (``python3 scan.py``) are not recognised by name.

    Parameters
    ----------
    endpoint_events : DataFrame
        Canonical rows with process columns (from the osquery, sysmon-linux or auditd readers).

    Returns
    -------
    DataFrame
        The flagged rows (a copy), with a ``discovery_tool`` column naming the tool.
    """
    if endpoint_events is None or len(endpoint_events) == 0:
        out = (endpoint_events if endpoint_events is not None else pd.DataFrame()).iloc[0:0].copy()
        out["discovery_tool"] = pd.Series([], dtype="string")
        return out
    df = endpoint_events
    cmd = pd.Series(pd.NA, index=df.index, dtype="string")
    for column in _CMDLINE_COLUMNS:
        if column in df.columns:
            cmd = cmd.fillna(df[column].astype("string"))
    procs = pd.DataFrame(
        {"exe": _col(df, "process_executable").astype("string"), "name": _col(df, "process_name").astype("string"), "cmd": cmd}
    )
    # the rules run once per distinct (executable, name, command line), not once per row
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(procs.fillna("\x00")), use_na_sentinel=False)
    u = pd.DataFrame(list(uniques), columns=["exe", "name", "cmd"]).replace("\x00", pd.NA).astype("string")
    names = [u[c].str.rsplit("/", n=1).str[-1].str.strip() for c in ("exe", "name")]
    names.append(u["cmd"].str.strip().str.split(" ", n=1).str[0].str.rsplit("/", n=1).str[-1])
    tool = pd.Series(pd.NA, index=u.index, dtype="string")
    zflag = u["cmd"].str.contains(_ZFLAG_RE, regex=True).fillna(False)
    for base in names:
        hit = base.str.match(_TOOL_RE).fillna(False)
        tool = tool.where(tool.notna() | ~hit, base.str.lower().str.replace(r"\.exe$", "", regex=True))
        nc = base.str.match(_NETCAT_RE).fillna(False) & zflag
        tool = tool.where(tool.notna() | ~nc, base.str.lower().str.replace(r"^nc\..*$", "nc", regex=True) + " -z")
    per_row = tool.to_numpy(dtype=object)[codes]
    flagged = pd.notna(per_row)
    out = df.loc[flagged].copy()
    out["discovery_tool"] = pd.array(per_row[flagged], dtype="string")
    return out


def _initiated(ep: pd.DataFrame) -> np.ndarray:
    """Rows whose process opened the connection (readers set ``<format>_initiated``)."""
    mask = np.ones(len(ep), dtype=bool)
    for column in ep.columns:
        if column.endswith("_initiated"):
            mask &= ep[column].astype("boolean").fillna(True).to_numpy(dtype=bool)
    return mask


def _ns(times: pd.Series) -> np.ndarray:
    """Nanoseconds since the epoch of a datetime Series (tz-aware or naive UTC)."""
    values = pd.to_datetime(times, utc=True).astype("datetime64[ns, UTC]")
    return values.array.asi8.copy()


def _key(df: pd.DataFrame, cols: Sequence[str]) -> pd.Series:
    parts = [df[c].astype("string") for c in cols]
    key = parts[0]
    for p in parts[1:]:
        key = key + "|" + p
    return key


def _asof(left: pd.DataFrame, right: pd.DataFrame, cols: Sequence[str], tolerance: pd.Timedelta) -> pd.Series:
    """For each left row, the index of the nearest right row with the same key within tolerance (-1: none)."""
    result = pd.Series(-1, index=left.index, dtype=np.int64)
    if left.empty or right.empty:
        return result
    lk = _key(left, cols)
    rk = _key(right, cols)
    lsel = lk.notna()
    rsel = rk.notna()
    if not lsel.any() or not rsel.any():
        return result
    # integer nanoseconds: tz-aware datetimes would go through Python objects here
    lf = pd.DataFrame({"t": _ns(left.loc[lsel, "event_start"]), "k": lk[lsel].to_numpy(dtype=object), "li": left.index[lsel]})
    rf = pd.DataFrame({"t": _ns(right.loc[rsel, "event_start"]), "k": rk[rsel].to_numpy(dtype=object), "ri": right.index[rsel]})
    lf = lf.sort_values("t", kind="stable")
    rf = rf.sort_values("t", kind="stable")
    merged = pd.merge_asof(lf, rf, on="t", by="k", tolerance=int(tolerance.value), direction="nearest")
    got = merged["ri"].notna().to_numpy()
    result.loc[merged.loc[got, "li"].to_numpy()] = merged.loc[got, "ri"].to_numpy(dtype=np.int64)
    return result


def _one_source_per_host(m: pd.Series, ca: pd.DataFrame, ep: pd.DataFrame) -> pd.Series:
    """Keep destination-only matches of one endpoint host to one source address.

    Endpoint rows without a local address (auditd) can match any source that hit the same
    destination at the same time. A host has one address here: per endpoint ``host_name``
    (rows without one count as one unknown host) only the source with the most matches keeps
    them, so a scan from another address that hit the same ports is not pinned on this host.
    """
    found = m >= 0
    if not found.any():
        return m
    pairs = pd.DataFrame(
        {
            "host": ep["host_name"].astype("string").reindex(m[found].to_numpy()).fillna("\x00").to_numpy(dtype=object),
            "src": ca.loc[found, "source_ip"].astype("string").to_numpy(dtype=object),
        },
        index=m.index[found],
    )
    counts = pairs.value_counts().reset_index(name="n").sort_values(["host", "n", "src"], ascending=[True, False, True], kind="stable")
    owner = counts.drop_duplicates("host").set_index("host")["src"]
    keep = pairs["src"].to_numpy(dtype=object) == owner.reindex(pairs["host"]).to_numpy(dtype=object)
    out = m.copy()
    out.loc[pairs.index[~keep]] = -1
    return out


def _top(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per alert: the most frequent value of ``column``, its count and the number of distinct values."""
    sub = frame[["aid", column]].dropna()
    if sub.empty:
        return pd.DataFrame(columns=["value", "count", "distinct"])
    counts = sub.value_counts().reset_index(name="count")
    counts = counts.sort_values(["aid", "count", column], ascending=[True, False, True], kind="stable")
    top = counts.drop_duplicates("aid").set_index("aid").rename(columns={column: "value"})
    top["distinct"] = counts.groupby("aid").size()
    return top


def correlate(
    alerts: pd.DataFrame,
    conns: pd.DataFrame,
    endpoint_events: pd.DataFrame | Sequence[pd.DataFrame] | None = None,
    *,
    skew: str | pd.Timedelta = "2s",
    host_ips: Mapping[str, str | Sequence[str]] | None = None,
    alerts_only: bool = True,
) -> pd.DataFrame:
    """Attribute each alert to the process, user, container, pod or instance behind it.

    For each alert (entity = a source IP), the connections of that entity inside
    ``[window_start, window_end)`` are taken from ``conns`` and matched to endpoint rows
    whose process *initiated* a connection, in three vectorised passes
    (:func:`pandas.merge_asof` on time, nearest within ``skew``):

    1. the 5-tuple (source ip and port, destination ip and port); transports must agree
       when both sides know them;
    2. source ip, destination ip and port (endpoint rows without a local port: osquery
       ``socket_events`` on macOS and for non-blocking sockets);
    3. destination ip and port only, for endpoint rows with no local address (auditd) that
       ``host_ips`` did not tie to an address; each endpoint host keeps only the source
       address with the most such matches, and the note says how many matched this way.

    Connection rows that carry identity themselves (Hubble/Calico pods, cloud instance and
    interface ids from VPC-style flow logs, container ids) are attributed from those columns.

    Parameters
    ----------
    alerts : DataFrame
        An alerts frame (:mod:`t1046lab.alerts`); ``entity`` is a source IP.
    conns : DataFrame
        The canonical connections the alerts were computed from.
    endpoint_events : DataFrame or list of DataFrame, optional
        Canonical frames from the osquery, sysmon-linux and auditd readers.
    skew : str or Timedelta, default "2s"
        Clock-skew tolerance between network and endpoint timestamps.
    host_ips : mapping, optional
        ``host_name`` → address(es) of that host, for endpoint rows without a local address
        and to know which hosts endpoint telemetry covers.
    alerts_only : bool, default True
        Attribute only rows with ``alert`` true; other rows get NA.

    Returns
    -------
    DataFrame
        A copy of ``alerts`` with :data:`ATTRIBUTION_COLUMNS` added: the most frequent
        process id, executable, user, container, namespace, pod, workload, instance and
        account among the alert's matched connections, ``attribution_coverage`` (matched
        connections over the alert's connections, NaN when it has none) and
        ``attribution_note`` (what matched, what could not be seen and why, and any
        discovery tool running on the host during the window).

    Examples
    --------
    >>> alerts = t1046lab.detect(conns, detector="zeek-scan")        # doctest: +SKIP
    >>> ep = t1046lab.read("audit.log", format="auditd", host_ip="10.0.0.5")  # doctest: +SKIP
    >>> t1046lab.correlate(alerts, conns, ep)[["entity", "attributed_process_executable", "attribution_note"]]  # doctest: +SKIP
    """
    validate_alerts(alerts)
    tolerance = pd.Timedelta(skew)
    out = alerts.copy()
    for name, dtype in ATTRIBUTION_COLUMNS.items():
        out[name] = pd.Series(pd.NA if dtype != np.dtype("float64") else np.nan, index=out.index, dtype=dtype)
    al = pd.DataFrame(
        {
            "aid": np.arange(len(alerts)),
            "entity": alerts["entity"].astype("string").to_numpy(dtype=object),
            "ws": alerts["window_start"].array,
            "we": alerts["window_end"].array,
        }
    )
    if alerts_only:
        al = al[alerts["alert"].to_numpy(dtype=bool)]
    if al.empty:
        return out

    # endpoint rows: those whose process initiated the connection, with host addresses filled in
    if endpoint_events is None:
        ep_all = pd.DataFrame(columns=["event_start", "source_ip", "source_port", "destination_ip", "destination_port", "network_transport"])
    elif isinstance(endpoint_events, pd.DataFrame):
        ep_all = endpoint_events
    else:
        frames = [f for f in endpoint_events if f is not None and len(f)]
        ep_all = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["event_start"])
    ep_all = ep_all.reset_index(drop=True)
    host_map = {h: ([v] if isinstance(v, str) else list(v)) for h, v in (host_ips or {}).items()}
    ep = ep_all.loc[_initiated(ep_all)] if len(ep_all) else ep_all
    for c in ("source_ip", "source_port", "destination_ip", "destination_port", "network_transport", "host_name", "log_format"):
        if c not in ep.columns:
            ep = ep.assign(**{c: pd.Series(pd.NA, index=ep.index, dtype="object")})
    ep = ep.copy()
    ep["source_ip"] = ep["source_ip"].astype("string")
    if host_map and len(ep):
        first_ip = {h: ips[0] for h, ips in host_map.items() if ips}
        ep["source_ip"] = ep["source_ip"].fillna(ep["host_name"].astype("string").map(first_ip).astype("string"))
    if len(ep):
        ep["event_start"] = pd.to_datetime(ep["event_start"], utc=True).astype("datetime64[ns, UTC]")

    # only endpoint rows inside the alerts' overall time span can match
    if len(ep):
        lo = pd.Timestamp(al["ws"].min()) - tolerance
        hi = pd.Timestamp(al["we"].max()) + tolerance
        ep = ep[(ep["event_start"] >= lo) & (ep["event_start"] <= hi)]

    # the alerts' connections
    c = conns[conns["source_ip"].isin(al["entity"].unique())]
    ca = c.merge(al, left_on="source_ip", right_on="entity", how="inner")
    ca = ca[(ca["event_start"] >= ca["ws"]) & (ca["event_start"] < ca["we"])].reset_index(drop=True)
    ca["event_start"] = pd.to_datetime(ca["event_start"], utc=True).astype("datetime64[ns, UTC]")

    # three matching passes, each on the rows still unmatched
    match = pd.Series(-1, index=ca.index, dtype=np.int64)
    passes = pd.Series(0, index=ca.index, dtype=np.int8)
    if len(ep) and len(ca):
        full = ep["source_ip"].notna() & ep["source_port"].notna()
        m1 = _asof(ca, ep[full], ["source_ip", "source_port", "destination_ip", "destination_port"], tolerance)
        found = m1 >= 0
        if found.any():  # transports must agree where both sides know them
            ct = ca.loc[found, "network_transport"].astype("string")
            et = ep["network_transport"].astype("string").reindex(m1[found].to_numpy())
            differ = ct.notna().to_numpy() & et.notna().to_numpy() & (ct.fillna("").to_numpy(dtype=object) != et.fillna("").to_numpy(dtype=object))
            m1.loc[found[found].index[differ]] = -1
        match, passes = match.where(m1 < 0, m1), passes.mask(m1 >= 0, 1)
        rest = match < 0
        has_src = ep["source_ip"].notna()
        m2 = _asof(ca[rest], ep[has_src], ["source_ip", "destination_ip", "destination_port"], tolerance)
        match.loc[m2.index[m2 >= 0]] = m2[m2 >= 0]
        passes.loc[m2.index[m2 >= 0]] = 2
        rest = match < 0
        m3 = _asof(ca[rest], ep[~has_src], ["destination_ip", "destination_port"], tolerance)
        m3 = _one_source_per_host(m3, ca, ep)
        match.loc[m3.index[m3 >= 0]] = m3[m3 >= 0]
        passes.loc[m3.index[m3 >= 0]] = 3
    matched = match >= 0
    epm = ep.reindex(match.where(matched).dropna().astype(np.int64).to_numpy())
    epm.index = match.index[matched]

    # attribute values per connection: endpoint match first, then the connection row itself
    attr = pd.DataFrame({"aid": ca["aid"].to_numpy()}, index=ca.index)
    for name, (ep_col, conn_col) in _ATTRS.items():
        from_ep = _col(epm, ep_col, "object").reindex(ca.index)
        from_conn = _col(ca, conn_col, "object")
        attr[name] = from_ep.astype("object").where(from_ep.notna(), from_conn.astype("object"))
    row_ident = np.zeros(len(ca), dtype=bool)
    for column in _ROW_IDENTITY:
        if column in ca.columns:
            row_ident |= ca[column].notna().to_numpy(dtype=bool)
    attr["covered"] = matched.to_numpy() | row_ident
    attr["ep_matched"] = matched.to_numpy()
    attr["pass3"] = passes.to_numpy() == 3
    attr["ep_host"] = _col(epm, "host_name", "object").reindex(ca.index).astype("object")
    attr["ep_format"] = _col(epm, "log_format", "object").reindex(ca.index).astype("object")
    attr["conn_format"] = _col(ca, "log_format", "object").astype("object")
    attr["interface"] = _col(ca, "network_interface_id", "object").astype("object")

    per = attr.groupby("aid").agg(
        n=("covered", "size"),
        covered=("covered", "sum"),
        ep_matched=("ep_matched", "sum"),
        pass3=("pass3", "sum"),
    ) if len(attr) else pd.DataFrame(columns=["n", "covered", "ep_matched", "pass3"])
    tops = {name: _top(attr, name) for name in _ATTRS}
    host_top = _top(attr, "ep_host")
    fmt_top = _top(attr, "ep_format")
    conn_fmt = _top(attr, "conn_format")
    tops_extra = {"interface": _top(attr, "interface")}

    # hosts covered by endpoint telemetry, and discovery tools running there in the window
    monitored_ips = set(ep_all["source_ip"].dropna().astype(str)) if "source_ip" in ep_all.columns and len(ep_all) else set()
    ep_hosts = set(ep_all["host_name"].dropna().astype(str)) if "host_name" in ep_all.columns and len(ep_all) else set()
    for h, ips in host_map.items():
        if h in ep_hosts:
            monitored_ips.update(ips)
    ip_to_hosts: dict[str, set[str]] = {}
    for h, ips in host_map.items():
        for ip in ips:
            ip_to_hosts.setdefault(ip, set()).add(h)
    span = ep_all
    if len(ep_all):
        when = pd.to_datetime(ep_all["event_start"], utc=True)
        span = ep_all[(when >= pd.Timestamp(al["ws"].min()) - tolerance) & (when <= pd.Timestamp(al["we"].max()) + tolerance)]
    tools = discovery_tool_events(span) if len(span) else pd.DataFrame()
    tool_hits, tool_rows = _tools_per_alert(tools, al, attr, host_top, ip_to_hosts, tolerance)

    # plain dicts: the per-alert loop below must not pay pandas' scalar-lookup cost
    per_d = {k: per[k].to_dict() for k in ("n", "covered", "ep_matched", "pass3")} if len(per) else {k: {} for k in ("n", "covered", "ep_matched", "pass3")}
    top_d = {name: top["value"].to_dict() if len(top) else {} for name, top in {**tops, **tops_extra}.items()}
    distinct_exe = tops["attributed_process_executable"]["distinct"].to_dict() if len(tops["attributed_process_executable"]) else {}
    host_d = host_top["value"].to_dict() if len(host_top) else {}
    fmt_d = fmt_top["value"].to_dict() if len(fmt_top) else {}
    conn_fmt_d = conn_fmt["value"].to_dict() if len(conn_fmt) else {}
    coverage = np.full(len(out), np.nan)
    notes = np.full(len(out), None, dtype=object)
    for aid, entity in zip(al["aid"].tolist(), al["entity"].astype(str).tolist()):  # one pass per alert, not per connection
        n = int(per_d["n"].get(aid, 0))
        parts: list[str] = []
        if n == 0:
            parts.append(f"no connections from {entity} in the window were found in conns: nothing to attribute")
        else:
            m = int(per_d["ep_matched"][aid])
            unmatched = n - m
            if m:
                who = _who(top_d, distinct_exe, host_d, aid)
                parts.append(f"{m:,} of {n:,} attempts matched to {fmt_d.get(aid, 'endpoint')} connect() records: {who}")
                if int(per_d["pass3"][aid]):
                    parts.append(
                        f"{int(per_d['pass3'][aid]):,} matched on destination and time only (the endpoint records hold no "
                        "local address" + ("" if host_map else "; pass host_ips= to tie hosts to addresses") + ")"
                    )
            pod = _fmt_identity(top_d, aid, ("attributed_k8s_namespace", "attributed_k8s_pod", "attributed_k8s_workload"))
            inst = _fmt_identity(top_d, aid, ("attributed_cloud_instance_id", "interface", "attributed_cloud_account_id"))
            src_fmt = conn_fmt_d.get(aid, "network")
            if pod:
                parts.append(f"origin from {src_fmt} rows: {pod}")
            if inst:
                parts.append(f"origin from {src_fmt} rows: {inst}")
            # A monitored host whose attempts match no connect() is worth saying even when the
            # rows name their pod or instance: that identity does not name the process.
            if unmatched and (entity in monitored_ips or (not pod and not inst)):
                if entity in monitored_ips:
                    if m == 0:
                        parts.append(
                            f"no connect() seen for {unmatched:,} of {n:,} attempts: raw-socket scan (e.g. nmap -sS) "
                            "invisible to connect() telemetry"
                        )
                    else:
                        extra = " (Sysmon for Linux logs only established TCP connections)" if fmt_d.get(aid) == "sysmon-linux" else ""
                        parts.append(f"no connect() seen for {unmatched:,} of {n:,} attempts{extra}")
                elif len(ep_all):
                    parts.append(
                        f"no endpoint telemetry from {entity}: {unmatched:,} of {n:,} attempts unattributed (host not "
                        "monitored, or a raw-socket scan invisible to connect() telemetry)"
                    )
                else:
                    parts.append(f"{unmatched:,} of {n:,} attempts unattributed: no endpoint telemetry given")
            coverage[aid] = int(per_d["covered"][aid]) / n
        if aid in tool_hits:
            parts.append("discovery tool on the host during the window: " + tool_hits[aid])
        notes[aid] = "; ".join(parts)

    # a discovery tool seen on the host names the process even when no connection matched
    exe_top = dict(top_d["attributed_process_executable"])
    for aid, exe in _tool_identity(tool_rows).items():
        exe_top.setdefault(aid, exe)
    top_d["attributed_process_executable"] = exe_top
    for name in _ATTRS:
        values = np.full(len(out), None, dtype=object)
        got = top_d[name]
        if got:
            keys = np.fromiter(got.keys(), dtype=np.int64, count=len(got))
            values[keys] = np.array(list(got.values()), dtype=object)
        out[name] = pd.Series(values, index=out.index).astype(ATTRIBUTION_COLUMNS[name])
    out["attribution_coverage"] = coverage
    out["attribution_note"] = pd.Series(notes, index=out.index).astype("string")
    return out


def _who(top: Mapping[str, Mapping[int, Any]], distinct_exe: Mapping[int, int], host: Mapping[int, Any], aid: int) -> str:
    exe = top["attributed_process_executable"].get(aid)
    text = str(exe) if exe is not None else "unknown executable"
    bits = []
    if aid in top["attributed_process_pid"]:
        bits.append(f"pid {top['attributed_process_pid'][aid]}")
    if aid in top["attributed_user_name"]:
        bits.append(f"user {top['attributed_user_name'][aid]}")
    if bits:
        text += " (" + ", ".join(bits) + ")"
    if aid in host:
        text += f" on {host[aid]}"
    if int(distinct_exe.get(aid, 1)) > 1:
        text += f"; {int(distinct_exe[aid])} executables in all"
    return text


def _fmt_identity(top: Mapping[str, Mapping[int, Any]], aid: int, names: Sequence[str]) -> str:
    labels = {
        "attributed_k8s_namespace": "namespace",
        "attributed_k8s_pod": "pod",
        "attributed_k8s_workload": "workload",
        "attributed_cloud_instance_id": "instance",
        "interface": "interface",
        "attributed_cloud_account_id": "account",
    }
    return ", ".join(f"{labels[n]} {top[n][aid]}" for n in names if aid in top[n])


def _tools_per_alert(
    tools: pd.DataFrame,
    al: pd.DataFrame,
    attr: pd.DataFrame,
    host_top: pd.DataFrame,
    ip_to_hosts: Mapping[str, set[str]],
    tolerance: pd.Timedelta,
) -> tuple[dict[int, str], pd.DataFrame]:
    """Per alert: the discovery tools seen on the alert's host within the window (± skew).

    Tool rows are grouped by (host key, description); for each (alert, group) pair two
    ``merge_asof`` calls find the first and last row inside the window, so the cost does not
    grow with alerts × tool rows.
    """
    if tools is None or tools.empty:
        return {}, pd.DataFrame()
    t = pd.DataFrame(index=tools.index)
    t["t"] = pd.to_datetime(tools["event_start"], utc=True).astype("datetime64[ns, UTC]")
    exe = _col(tools, "process_executable").astype("string")
    pid = _col(tools, "process_pid", "Int64").astype("string")
    user = _col(tools, "user_name").astype("string")
    desc = tools["discovery_tool"].astype("string") + " (" + exe.fillna("?")
    if pid.notna().any():
        desc = desc + ", pid " + pid.fillna("?")
    if user.notna().any():
        desc = desc + ", user " + user.fillna("?")
    t["desc"] = desc + ")"
    t["exe"] = exe
    # a tool row belongs to a host by its source address and by its host name
    keyed = pd.concat(
        [
            t.assign(hkey="ip:" + _col(tools, "source_ip").astype("string")),
            t.assign(hkey="host:" + _col(tools, "host_name").astype("string")),
        ]
    ).dropna(subset=["hkey"])
    if keyed.empty:
        return {}, pd.DataFrame()
    keyed["row"] = keyed.index
    keyed = keyed.sort_values("t", kind="stable").reset_index(drop=True)
    keyed["gid"] = keyed.groupby(["hkey", "desc"], sort=False).ngroup()
    keyed["pos"] = keyed.groupby("gid").cumcount()
    groups = keyed.drop_duplicates("gid")[["gid", "hkey", "desc"]]
    # which host keys belong to each alert
    pairs = [(int(a), "ip:" + str(e)) for a, e in zip(al["aid"], al["entity"])]
    pairs += [(int(a), "host:" + h) for a, e in zip(al["aid"], al["entity"]) for h in ip_to_hosts.get(str(e), ())]
    if len(host_top):
        pairs += [(int(a), "host:" + str(h)) for a, h in zip(host_top.index, host_top["value"])]
    akeys = pd.DataFrame(pairs, columns=["aid", "hkey"]).drop_duplicates()
    cand = akeys.merge(groups, on="hkey").drop_duplicates(["aid", "desc", "gid"])
    if cand.empty:
        return {}, pd.DataFrame()
    win = al.set_index("aid")
    cand["lo"] = pd.Series(win.loc[cand["aid"], "ws"].array, index=cand.index) - tolerance
    cand["hi"] = pd.Series(win.loc[cand["aid"], "we"].array, index=cand.index) + tolerance
    cand["lo"] = cand["lo"].astype("datetime64[ns, UTC]")
    cand["hi"] = cand["hi"].astype("datetime64[ns, UTC]")
    right = keyed[["t", "gid", "pos", "row"]]
    first = pd.merge_asof(cand.sort_values("lo"), right.rename(columns={"t": "t_first", "pos": "first", "row": "row_first"}),
                          left_on="lo", right_on="t_first", by="gid", direction="forward")
    last = pd.merge_asof(cand.sort_values("hi"), right.rename(columns={"t": "t_last", "pos": "last"})[["t_last", "gid", "last"]],
                         left_on="hi", right_on="t_last", by="gid", direction="backward")
    both = first.merge(last[["aid", "gid", "last"]], on=["aid", "gid"])
    both = both[both["t_first"].notna() & (both["t_first"] <= both["hi"])]
    if both.empty:
        return {}, pd.DataFrame()
    # the same rows reached through the address and the host name count once
    both["count"] = (both["last"] - both["first"] + 1).astype(int)
    both = both.sort_values(["aid", "count"], ascending=[True, False], kind="stable").drop_duplicates(["aid", "desc"])
    out: dict[int, str] = {}
    for aid, group in both.groupby("aid", sort=True):  # one pass per alert
        out[int(aid)] = ", ".join(f"{d} in {c:,} records" if c > 1 else d for d, c in zip(group["desc"], group["count"]))
    hits = both.assign(t=both["t_first"], process_executable=keyed.set_index("row")["exe"].groupby(level=0).first().reindex(both["row_first"]).to_numpy())
    return out, hits


def _tool_identity(hits: pd.DataFrame) -> dict[int, Any]:
    """Per alert: the executable of the first discovery-tool row on its host."""
    if hits is None or hits.empty or "process_executable" not in hits.columns:
        return {}
    first = hits.sort_values("t", kind="stable").drop_duplicates("aid").set_index("aid")
    return {int(a): v for a, v in first["process_executable"].items() if pd.notna(v)}
