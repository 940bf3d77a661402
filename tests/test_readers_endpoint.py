"""Endpoint readers: osquery, Sysmon for Linux and auditd, on real lines and built edge cases.

There is no osquery sample in ../shared/data/formats: the osquery lines below are built from
the documented result-log shapes (event, snapshot, batch) and the socket table schemas
(osquery specs/posix/socket_events.table, bpf_socket_events, process_open_sockets), with
values shaped like public real lines (e.g. macOS socket_events connects logged with
local_address "0", local_port "0" and success "0").
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

import t1046lab
from t1046lab import schema
from t1046lab.correlate import discovery_tool_events
from t1046lab.exceptions import ParseError
from t1046lab.io import sniff_format
from t1046lab.io.auditd import decode_saddr


def _read(path, **kw):
    df = t1046lab.read(path, **kw)
    report = df.attrs["read_report"]
    assert report.balanced, report
    schema.validate(df, check_ips=True)
    return df, report


# --- osquery -------------------------------------------------------------------------------


def _event(columns, *, name="socket_events", host="web-1", t=1700000100, deco=None, numerics=False):
    obj = {"name": name, "hostIdentifier": host, "calendarTime": "Tue Nov 14 22:15:00 2023 UTC", "unixTime": t, "epoch": 0,
           "counter": 1, "numerics": numerics, "columns": columns, "action": "added"}
    if deco:
        obj["decorations"] = deco
    return json.dumps(obj)


def _sock(action, raddr, rport, *, laddr="10.0.0.5", lport=40000, path="/usr/bin/curl", pid=700, family=2, protocol=6, t=1700000000, **kw):
    cols = {"action": action, "auid": "1000", "family": str(family), "fd": "3", "local_address": laddr, "local_port": str(lport),
            "path": path, "pid": str(pid), "protocol": str(protocol), "remote_address": raddr, "remote_port": str(rport),
            "time": str(t), "uptime": "1000"}
    cols.update({k: str(v) for k, v in kw.items()})
    return cols


def _osquery_file(tmp_path):
    lines = [
        # 1 macOS: osqueryd's own TLS connect, non-blocking: local end unknown, success 0
        _event({"action": "connect", "auid": "501", "family": "2", "fd": "1f", "local_address": "0", "local_port": "0",
                "path": "/usr/local/bin/osqueryd", "pid": "26075", "remote_address": "52.16.1.20", "remote_port": "443",
                "success": "0", "time": "1610821751", "uptime": "103726"},
               host="C02XK0ABJGH5", deco={"host_uuid": "4AB2906D-5516-5794-AF54-86D1D7F533F3", "hostname": "mbp-alice", "username": "alice"}),
        _event(_sock("connect", "10.0.1.9", 22, status="succeeded")),  # 2
        _event(_sock("connect", "10.0.1.9", 23, lport=40001, status="failed")),  # 3
        _event(_sock("connect", "10.0.1.9", 24, lport=40002, status="in_progress")),  # 4
        _event(_sock("accept", "10.0.9.9", 51515, lport=22, path="/usr/sbin/sshd", pid=1, status="succeeded")),  # 5
        _event(_sock("bind", "", 0, laddr="0.0.0.0", lport=8080, status="succeeded")),  # 6
        _event(_sock("connect", "", 0, family=1, laddr="", lport=0, status="succeeded")),  # 7 AF_UNIX
        # 8 --logger_numerics: numbers are numbers
        _event({"action": "connect", "auid": 1000, "family": 2, "fd": 3, "local_address": "10.0.0.5", "local_port": 40003,
                "path": "/usr/bin/nc.openbsd", "pid": 701, "protocol": 17, "remote_address": "10.0.1.9", "remote_port": 161,
                "status": "succeeded", "time": 1700000001, "uptime": 1001}, numerics=True),
        # 9, 10 bpf_socket_events: errno in exit_code, command line present
        _event({"syscall": "connect", "exit_code": "-111", "pid": "702", "uid": "1000", "path": "/usr/bin/nmap", "cmdline": "nmap -sT -p- 10.0.1.9",
                "fd": "3", "family": "2", "type": "1", "protocol": "6", "local_address": "10.0.0.5", "local_port": "40004",
                "remote_address": "10.0.1.9", "remote_port": "25", "time": "1700000002", "ntime": "1"}, name="bpf_socket_events"),
        _event({"syscall": "connect", "exit_code": "-110", "pid": "702", "uid": "1000", "path": "/usr/bin/nmap", "cmdline": "nmap -sT -p- 10.0.1.9",
                "fd": "3", "family": "2", "type": "1", "protocol": "6", "local_address": "10.0.0.5", "local_port": "40005",
                "remote_address": "10.0.1.9", "remote_port": "26", "time": "1700000003", "ntime": "2"}, name="bpf_socket_events"),
        # 11 snapshot of process_open_sockets: a listener, an accepted session, an outbound session
        json.dumps({"snapshot": [
            {"pid": "10", "fd": "5", "family": "2", "protocol": "6", "local_address": "0.0.0.0", "local_port": "22", "remote_address": "0.0.0.0", "remote_port": "0", "state": "LISTEN", "path": "/usr/sbin/sshd"},
            {"pid": "11", "fd": "6", "family": "2", "protocol": "6", "local_address": "10.0.0.5", "local_port": "22", "remote_address": "10.0.0.7", "remote_port": "50000", "state": "ESTABLISHED", "path": "/usr/sbin/sshd"},
            {"pid": "12", "fd": "7", "family": "2", "protocol": "6", "local_address": "10.0.0.5", "local_port": "51000", "remote_address": "10.0.0.8", "remote_port": "443", "state": "SYN_SENT", "path": "/usr/bin/curl"},
        ], "action": "snapshot", "name": "open_sockets", "hostIdentifier": "web-1", "unixTime": 1700000200}),
        # 12 the next snapshot: same sockets again (kept once)
        json.dumps({"snapshot": [
            {"pid": "12", "fd": "7", "family": "2", "protocol": "6", "local_address": "10.0.0.5", "local_port": "51000", "remote_address": "10.0.0.8", "remote_port": "443", "state": "SYN_SENT", "path": "/usr/bin/curl"},
        ], "action": "snapshot", "name": "open_sockets", "hostIdentifier": "web-1", "unixTime": 1700000260}),
        # 13 batch format: one added, one removed
        json.dumps({"diffResults": {"added": [{"pid": "13", "fd": "8", "family": "10", "protocol": "6", "local_address": "2001:db8::5", "local_port": "52000", "remote_address": "2001:db8::9", "remote_port": "443", "state": "ESTABLISHED"}],
                                    "removed": [{"pid": "12", "fd": "7", "family": "2", "protocol": "6", "local_address": "10.0.0.5", "local_port": "51000", "remote_address": "10.0.0.8", "remote_port": "443", "state": "ESTABLISHED"}]},
                    "name": "open_sockets_diff", "hostIdentifier": "web-1", "unixTime": 1700000300}),
        _event({"pid": "1", "name": "systemd", "cmdline": "/sbin/init"}, name="processes"),  # 14 another query
        "{truncated",  # 15
        _event(_sock("connect", "10.0.1.9", "ssh", lport=40010, status="succeeded")),  # 16 bad port
        _event(_sock("connect", "10.0.1.9", 27, lport=40011, status="-113")),  # 17 a numeric status is an errno
    ]
    path = tmp_path / "osqueryd.results.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_osquery_reader(tmp_path):
    path = _osquery_file(tmp_path)
    assert sniff_format(path) == "osquery"
    with pytest.warns(t1046lab.DataQualityWarning):
        df, report = _read(path)
    assert report.records_seen == 17
    assert report.skipped_reasons == {
        "socket action bind": 1, "AF_UNIX socket": 1, "query 'processes' has no socket columns": 1,
        "socket already seen in an earlier snapshot": 1,
    }
    assert report.quarantine_reasons == {"not JSON: JSONDecodeError": 1, "remote_port is not a port number": 1}
    assert sorted(report.quarantine_frame()["line"]) == [15, 16]
    by_port = df.set_index(df["destination_port"].astype(int))
    mac = df[df["host_name"] == "mbp-alice"].iloc[0]
    assert pd.isna(mac.source_ip) and pd.isna(mac.source_port) and mac.conn_outcome == "unknown"
    assert (mac.process_name, mac.user_name, mac.osquery_status) == ("osqueryd", "501", "success=0")
    # connect() that succeeded; an accept(); an accepted session in the snapshot
    assert by_port.loc[22, "conn_outcome"].tolist() == ["established", "established", "established"]
    assert by_port.loc[23, "conn_outcome"] == "rejected" and by_port.loc[24, "conn_outcome"] == "unknown"
    assert by_port.loc[25, "conn_outcome"] == "rejected" and by_port.loc[26, "conn_outcome"] == "no_reply"
    assert by_port.loc[27, "conn_outcome"] == "icmp_unreachable"
    assert by_port.loc[25, "osquery_cmdline"] == "nmap -sT -p- 10.0.1.9" and by_port.loc[25, "user_name"] == "1000"
    udp = by_port.loc[161]
    assert (udp.network_transport, udp.conn_outcome, udp.process_pid) == ("udp", "unknown", 701)
    # accepted connections are turned around: the peer initiated them
    accepted = df[(df["osquery_action"] == "accept")].iloc[0]
    assert (accepted.source_ip, accepted.source_port, accepted.destination_port, accepted.osquery_initiated) == ("10.0.9.9", 51515, 22, False)
    inbound = df[(df["osquery_table"] == "process_open_sockets") & (df["destination_port"] == 22)].iloc[0]
    assert (inbound.source_ip, inbound.source_port, inbound.osquery_initiated) == ("10.0.0.7", 50000, False)
    syn_sent = df[df["osquery_action"] == "SYN_SENT"]
    assert len(syn_sent) == 1 and syn_sent.iloc[0].conn_outcome == "unknown" and syn_sent.iloc[0].process_name == "curl"
    v6 = df[df["destination_ip"] == "2001:db8::9"].iloc[0]
    assert v6.conn_outcome == "established" and v6.event_start == pd.Timestamp(1700000300, unit="s", tz="UTC")
    assert df["osquery_initiated"].sum() == len(df) - 2
    with pytest.raises(ParseError, match=r"osqueryd\.results\.log:15: not JSON"):
        t1046lab.read(path, format="osquery", strict=True)


# --- sysmon for linux ----------------------------------------------------------------------


def test_sysmon_linux_sample(shared):
    path = shared("formats/sysmon_linux_eid3.xml")
    assert sniff_format(path) == "sysmon-linux"
    df, report = _read(path)
    assert len(df) == 1 and report.records_seen == 1
    r = df.iloc[0]
    assert r.event_start == pd.Timestamp("2021-12-28 22:39:36.272", tz="UTC")
    assert (r.source_ip, r.source_port, r.destination_ip, r.destination_port) == ("192.168.252.191", 53259, "91.189.91.157", 123)
    assert (r.network_transport, r.conn_outcome) == ("udp", "unknown")
    assert (r.host_name, r.process_pid, r.process_executable, r.process_name, r.user_name) == (
        "ubunutu2004vm", 581, "/usr/lib/systemd/systemd-timesyncd", "systemd-timesyncd", "systemd-timesync")
    assert bool(r.sysmon_linux_initiated) and r.sysmon_linux_record_id == 79230


def test_sysmon_linux_syslog_lines_and_bad_events(tmp_path, shared):
    xml = shared("formats/sysmon_linux_eid3.xml").read_text()
    one = "".join(line.strip() for line in xml.splitlines() if not line.startswith("<?xml"))
    tcp_in = one.replace(">udp<", ">tcp<").replace('"Initiated">true', '"Initiated">false').replace(">53259<", ">22<").replace(">123<", ">50123<")
    lines = [
        f"Dec 28 22:39:36 ubunutu2004vm sysmon: {one}",
        "Dec 28 22:39:37 ubunutu2004vm CRON[1234]: (root) CMD (true)",
        f"Dec 28 22:39:38 ubunutu2004vm sysmon: {one.replace('<EventID>3<', '<EventID>1<')}",
        f"Dec 28 22:39:39 ubunutu2004vm sysmon: {tcp_in}",
        f"Dec 28 22:39:40 ubunutu2004vm sysmon: {one.replace('</EventData>', '')}",
        f"Dec 28 22:39:41 ubunutu2004vm sysmon: {one.replace('>91.189.91.157<', '><')}",
        f"Dec 28 22:39:42 ubunutu2004vm sysmon: {one[: len(one) // 2]}",  # truncated by rsyslog
    ]
    path = tmp_path / "syslog"
    path.write_text("\n".join(lines) + "\n")
    assert sniff_format(path) == "sysmon-linux"
    with pytest.warns(t1046lab.DataQualityWarning):
        df, report = _read(path)
    assert report.records_seen == 7 and len(df) == 2
    assert report.skipped_reasons == {"not a Sysmon event line": 1, "event ID 1 (not NetworkConnect)": 1}
    q = report.quarantine_frame().sort_values("line")
    assert q["line"].tolist() == [5, 6, 7]
    assert q["reason"].iloc[0].startswith("malformed XML") and q["reason"].iloc[1] == "SourceIp or DestinationIp missing"
    assert q["reason"].iloc[2] == "unterminated <Event> at end of file"
    inbound = df.iloc[1]
    # Initiated=false: the peer is the initiator; the logged process is the acceptor
    assert (inbound.source_ip, inbound.source_port, inbound.destination_ip, inbound.destination_port) == ("91.189.91.157", 50123, "192.168.252.191", 22)
    assert inbound.conn_outcome == "established" and not inbound.sysmon_linux_initiated
    with pytest.raises(ParseError, match=r"syslog:5: malformed XML"):
        t1046lab.read(path, strict=True)


# --- auditd --------------------------------------------------------------------------------


def test_auditd_sample(shared):
    path = shared("formats/auditd_connect.log")
    assert sniff_format(path) == "auditd"
    df, report = _read(path)
    assert report.records_seen == 10 and len(df) == 1
    assert report.skipped_reasons == {
        "accept (not connect)": 4,
        "connect event without a SOCKADDR record": 1,
        "record without a SYSCALL record (SOCKADDR)": 1,
    }
    r = df.iloc[0]
    assert (r.destination_ip, r.destination_port, r.conn_outcome, r.auditd_exit) == ("169.254.169.254", 80, "unknown", -115)
    assert (r.process_pid, r.process_name, r.process_executable, r.user_name) == (1648, "google_ip_forwa", "/usr/bin/python3.5", "0")
    assert pd.isna(r.auditd_auid) and r.auditd_proctitle == "(g_daemon)" and r.auditd_serial == 9004
    assert r.event_start == pd.Timestamp("2017-04-21 05:38:27.096", tz="UTC")
    assert pd.isna(r.source_ip) and pd.isna(r.source_port) and pd.isna(r.network_transport)


def test_decode_saddr_on_real_values():
    assert decode_saddr("02000050A9FEA9FE0000000000000000") == ("inet", 80, "169.254.169.254")
    assert decode_saddr("0200E31C4853E6640000000000000000") == ("inet", 58140, "72.83.230.100")
    assert decode_saddr("0A000016000000000000000000000000000000000000000000000000") == ("inet6", 22, "::")
    assert decode_saddr("01002F72756E2F73797374656D642F6A6F75726E616C2F736F636B657400")[0] == "unix"
    with pytest.raises(ValueError):
        decode_saddr("0200")


def _audit_event(serial, exit_code, saddr, *, t="1700000000.123", arch="c000003e", syscall="42", exe='"/usr/bin/nc.openbsd"', extra="", node=""):
    prefix = f"node={node} " if node else ""
    success = "yes" if exit_code == 0 else "no"
    return [
        (f"{prefix}type=SYSCALL msg=audit({t}:{serial}): arch={arch} syscall={syscall} success={success} exit={exit_code} a0=3 a1=7ffd a2=10 a3=0 "
        f'items=0 ppid=900 pid=901 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts1 ses=2 comm="nc" exe={exe} key="net"{extra}'),
        f"{prefix}type=SOCKADDR msg=audit({t}:{serial}): saddr={saddr}",
        f"{prefix}type=PROCTITLE msg=audit({t}:{serial}): proctitle=6E63002D7A760031302E302E312E3900312D3130",
        f"{prefix}type=EOE msg=audit({t}:{serial}):",
    ]


def test_auditd_outcomes_identity_and_quarantine(tmp_path):
    v4 = lambda port: "0200" + f"{port:04X}" + "0A000109" + "0" * 16
    lines = ["# comment lines are not records"]
    for i, code in enumerate([0, -115, -111, -110, -113, -101, -13, -1, -99]):
        lines += _audit_event(100 + i, code, v4(1000 + i))
    lines += _audit_event(200, -111, "0A000050" + "00000000" + "20010DB8000000000000000000000009" + "00000000")  # IPv6 [2001:db8::9]:80
    lines += _audit_event(201, -111, v4(2000), arch="c00000b7", syscall="203", node="arm-host")  # aarch64
    lines += _audit_event(202, -111, v4(2001), exe="2F746D702F6D79207363616E6E6572", extra='\x1dARCH=x86_64 SYSCALL=connect AUID="alice" UID="alice"')
    lines += _audit_event(203, 0, "01002F72756E2F6E7363642F736F636B657400")  # AF_UNIX
    lines += _audit_event(204, 0, "0200ZZZZ")  # bad hex: quarantined
    lines += ["this is not an audit record"]
    lines += _audit_event(205, 0, v4(22), syscall="49")  # bind: skipped
    path = tmp_path / "audit.log"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(t1046lab.DataQualityWarning):
        df, report = _read(path, host_name="web-1", host_ip="10.0.0.5")
    assert report.records_seen == 4 * 15 + 1
    assert report.records_used == 4 * 12
    assert report.skipped_reasons == {"connect to an unix socket": 4, "bind (not connect)": 4}
    assert report.quarantine_reasons == {"bad saddr: non-hexadecimal number found in fromhex() arg at position 4": 4, "not an audit record": 1}
    got = dict(zip(df["destination_port"].astype(int), df["conn_outcome"].astype(str)))
    assert [got[1000 + i] for i in range(9)] == [
        "established", "unknown", "rejected", "no_reply", "icmp_unreachable", "icmp_unreachable", "denied", "denied", "unknown"]
    assert got[80] == "rejected" and df.loc[df.destination_port == 80, "destination_ip"].item() == "2001:db8::9"
    arm = df[df["destination_port"] == 2000].iloc[0]
    assert arm.host_name == "arm-host"
    enriched = df[df["destination_port"] == 2001].iloc[0]
    assert (enriched.user_name, enriched.process_executable) == ("alice", "/tmp/my scanner")
    assert (df["source_ip"] == "10.0.0.5").all() and df["auditd_initiated"].all()
    assert (df[df.destination_port != 2000]["host_name"] == "web-1").all()
    assert (df["auditd_proctitle"] == "nc -zv 10.0.1.9 1-10").all()
    assert set(discovery_tool_events(df)["discovery_tool"]) == {"nc -z"}
    # streamed in 5-line chunks: events straddling chunks come out whole, the same rows
    with pytest.warns(t1046lab.DataQualityWarning):
        chunks = list(t1046lab.read(path, format="auditd", chunksize=5, host_name="web-1", host_ip="10.0.0.5"))
    streamed = pd.concat(chunks, ignore_index=True).sort_values("auditd_serial").reset_index(drop=True)
    pd.testing.assert_frame_equal(streamed, df.sort_values("auditd_serial").reset_index(drop=True), check_categorical=False)
    assert chunks[-1].attrs["read_report"].balanced
    with pytest.raises(ParseError, match=r"audit\.log:\d+: bad saddr"):
        t1046lab.read(path, format="auditd", strict=True)


def test_sysmon_linux_multiline_event_across_read_chunks(shared):
    path = shared("formats/sysmon_linux_eid3.xml")
    chunks = list(t1046lab.read(path, chunksize=3))  # the event spans 30 lines
    df = pd.concat(chunks, ignore_index=True)
    assert len(df) == 1 and df.iloc[0].process_pid == 581
    assert chunks[-1].attrs["read_report"].balanced
