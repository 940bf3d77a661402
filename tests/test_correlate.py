"""correlate(): a connect() scan is named, a raw-socket scan is said to be invisible,
a container scan gets its pod, a VPC-flow-log scan gets its instance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import t1046lab
from t1046lab import schema
from t1046lab.alerts import make_alerts
from t1046lab.correlate import ATTRIBUTION_COLUMNS, correlate, discovery_tool_events

T0 = pd.Timestamp("2024-05-01 10:00:00", tz="UTC")


def _conns(src, sport, dst, dports, times, outcomes, **extra):
    n = len(dports)
    return schema.conform(
        {
            "event_start": times,
            "source_ip": [src] * n,
            "source_port": sport if not np.isscalar(sport) else [sport] * n,
            "destination_ip": [dst] * n,
            "destination_port": dports,
            "network_transport": ["tcp"] * n,
            "conn_outcome": outcomes,
            **extra,
        },
        log_format=extra.pop("log_format", "zeek") if "log_format" in extra else "zeek",
    )


def _audit_log(path, times, dports, exits, *, pid=4242, exe="/usr/bin/nmap", user="alice", serial0=1000):
    lines = []
    for i, (t, port, ex) in enumerate(zip(times, dports, exits)):
        stamp = f"{t.value / 1e9:.3f}"
        serial = serial0 + i
        saddr = "0200" + f"{port:04X}" + "0A000109" + "0" * 16  # 10.0.1.9
        success = "yes" if ex == 0 else "no"
        lines.append(
            f"type=SYSCALL msg=audit({stamp}:{serial}): arch=c000003e syscall=42 success={success} exit={ex} a0=3 a1=7ffc "
            f"a2=10 a3=0 items=0 ppid=4000 pid={pid} auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 "
            f'sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="nmap" exe="{exe}" key="t1046"\x1dARCH=x86_64 SYSCALL=connect '
            f'AUID="{user}" UID="{user}" GID="{user}"'
        )
        lines.append(f"type=SOCKADDR msg=audit({stamp}:{serial}): saddr={saddr}")
        argv = b"nmap\x00-sT\x00-p1-200\x0010.0.1.9".hex().upper()
        lines.append(f"type=PROCTITLE msg=audit({stamp}:{serial}): proctitle={argv}")
        lines.append(f"type=EOE msg=audit({stamp}:{serial}):")
    path.write_text("\n".join(lines) + "\n")
    return path


def _osquery_line(host, t, *, action="connect", path, pid, laddr, lport, raddr, rport, proto, status="succeeded", auid="1001"):
    return json.dumps(
        {
            "name": "socket_events",
            "hostIdentifier": host,
            "unixTime": int(t.timestamp()) + 5,
            "numerics": False,
            "columns": {
                "action": action, "auid": auid, "family": "2", "fd": "3", "local_address": laddr,
                "local_port": str(lport), "path": path, "pid": str(pid), "protocol": str(proto),
                "remote_address": raddr, "remote_port": str(rport), "status": status, "time": str(int(t.timestamp())),
            },
            "action": "added",
        }
    )


@pytest.fixture
def scan_lab(tmp_path):
    # host A (10.0.0.5): nmap -sT, 200 connect() attempts, one per 50 ms
    times_a = [T0 + pd.Timedelta(milliseconds=50 * i) for i in range(200)]
    ports = list(range(1, 201))
    outcomes = ["established" if p in (22, 80) else "rejected" for p in ports]
    net_a = _conns("10.0.0.5", [40000 + i for i in range(200)], "10.0.1.9", ports, times_a, outcomes)
    # the endpoint clock runs 0.4 s behind the network sensor
    ep_times = [t - pd.Timedelta(milliseconds=400) for t in times_a]
    audit = _audit_log(tmp_path / "audit.log", ep_times, ports, [-115] * 200)
    # host B (10.0.0.6): raw-socket SYN scan, 1,000 attempts from one source port; osquery runs there
    times_b = [T0 + pd.Timedelta(milliseconds=10 * i) for i in range(1000)]
    net_b = _conns("10.0.0.6", 55555, "10.0.1.9", [1 + i % 1000 for i in range(1000)], times_b, ["rejected"] * 1000)
    osq = tmp_path / "osquery.results.log"
    osq.write_text(
        "\n".join(
            [
                _osquery_line("host-b", T0 - pd.Timedelta(minutes=30), path="/usr/bin/curl", pid=700, laddr="10.0.0.6", lport=50001, raddr="93.184.216.34", rport=443, proto=6),
                # nmap resolves its target through the local resolver (a UDP connect()) before probing
                _osquery_line("host-b", T0 + pd.Timedelta(seconds=1), path="/usr/bin/nmap", pid=5151, laddr="10.0.0.6", lport=41000, raddr="10.0.0.2", rport=53, proto=17, auid="0"),
            ]
        )
        + "\n"
    )
    conns = pd.concat([net_a, net_b], ignore_index=True)
    alerts = make_alerts(
        {
            "entity": ["10.0.0.5", "10.0.0.6"],
            "window_start": [T0, T0],
            "window_end": [T0 + pd.Timedelta(minutes=5)] * 2,
            "score": [200.0, 1000.0],
            "alert": [True, True],
            "scan_type": ["vertical", "vertical"],
        },
        detector="zeek-scan",
    )
    ep_a = t1046lab.read(audit, format="auditd", host_name="host-a", host_ip="10.0.0.5")
    ep_b = t1046lab.read(osq, format="osquery")
    return alerts, conns, ep_a, ep_b


def test_connect_scan_named_and_raw_socket_scan_declared_invisible(scan_lab):
    alerts, conns, ep_a, ep_b = scan_lab
    assert len(ep_a) == 200 and ep_a["conn_outcome"].eq("unknown").all()  # nmap -sT is non-blocking: EINPROGRESS
    out = correlate(alerts, conns, [ep_a, ep_b], skew="2s")
    assert list(out.columns[: len(alerts.columns)]) == list(alerts.columns)
    for name, dtype in ATTRIBUTION_COLUMNS.items():
        assert out[name].dtype == dtype, name
    a = out.set_index("entity").loc["10.0.0.5"]
    assert a["attributed_process_executable"] == "/usr/bin/nmap"
    assert a["attributed_user_name"] == "alice"
    assert a["attributed_process_pid"] == 4242
    assert a["attribution_coverage"] == pytest.approx(1.0)
    assert "200 of 200 attempts matched to auditd connect() records" in a["attribution_note"]
    assert "discovery tool on the host during the window: nmap (/usr/bin/nmap, pid 4242, user alice) in 200 records" in a["attribution_note"]
    b = out.set_index("entity").loc["10.0.0.6"]
    assert b["attribution_coverage"] == 0.0
    assert "no connect() seen for 1,000 of 1,000 attempts: raw-socket scan (e.g. nmap -sS) invisible to connect() telemetry" in b["attribution_note"]
    # the tool is still named from the process side
    assert "discovery tool on the host during the window: nmap (/usr/bin/nmap, pid 5151" in b["attribution_note"]
    assert b["attributed_process_executable"] == "/usr/bin/nmap"
    assert pd.isna(b["attributed_user_name"])
    # the caller's frame is untouched
    assert "attribution_note" not in alerts.columns


def test_skew_tolerance_is_respected(scan_lab):
    alerts, conns, ep_a, ep_b = scan_lab
    out = correlate(alerts, conns, [ep_a, ep_b], skew="100ms")  # endpoint clock is 400 ms off
    a = out.set_index("entity").loc["10.0.0.5"]
    assert a["attribution_coverage"] == 0.0
    assert pd.isna(a["attributed_user_name"])


def test_host_without_endpoint_telemetry_is_not_called_raw_socket(scan_lab):
    alerts, conns, ep_a, _ = scan_lab
    out = correlate(alerts, conns, ep_a)
    note = out.set_index("entity").loc["10.0.0.6", "attribution_note"]
    assert note.startswith("no endpoint telemetry from 10.0.0.6: 1,000 of 1,000 attempts unattributed")


def test_auditd_rows_without_local_address_match_through_host_ips(scan_lab, tmp_path):
    alerts, conns, ep_a, ep_b = scan_lab
    ep = ep_a.assign(source_ip=pd.Series(pd.NA, index=ep_a.index, dtype="string"))
    out = correlate(alerts, conns, ep, host_ips={"host-a": "10.0.0.5"})
    a = out.set_index("entity").loc["10.0.0.5"]
    assert a["attributed_user_name"] == "alice" and a["attribution_coverage"] == 1.0
    assert "destination and time only" not in a["attribution_note"]
    # without the mapping the rows still match on destination and time, and the note says how
    out = correlate(alerts, conns, [ep, ep_b]).set_index("entity")
    a = out.loc["10.0.0.5"]
    assert a["attributed_user_name"] == "alice" and a["attribution_coverage"] == 1.0
    assert "200 matched on destination and time only" in a["attribution_note"]
    assert "pass host_ips=" in a["attribution_note"]
    # the raw-socket scan from 10.0.0.6 hit the same ports at the same time: host-a's connect()
    # records belong to one source (10.0.0.5, with the most matches) and are not pinned on 10.0.0.6
    b = out.loc["10.0.0.6"]
    assert b["attribution_coverage"] == 0.0 and pd.isna(b["attributed_user_name"])
    assert "pid 4242" not in b["attribution_note"]


def _hubble_line(t, sip, sport, dip, dport, flags, *, reply, point, node, src, dst):
    return json.dumps(
        {
            "flow": {
                "time": t.isoformat().replace("+00:00", "Z"),
                "verdict": "FORWARDED",
                "IP": {"source": sip, "destination": dip, "ipVersion": "IPv4"},
                "l4": {"TCP": {"source_port": sport, "destination_port": dport, "flags": {f: True for f in flags}}},
                "source": src,
                "destination": dst,
                "Type": "L3_L4",
                "node_name": node,
                "is_reply": reply,
                "trace_observation_point": point,
                "traffic_direction": "EGRESS" if not reply else "INGRESS",
            },
            "node_name": node,
            "time": t.isoformat().replace("+00:00", "Z"),
        }
    )


def test_container_scan_attributed_to_pod_from_hubble(tmp_path):
    scanner = {"namespace": "dev", "pod_name": "scanner-5d8f7c9b6-x2x9k", "workloads": [{"name": "scanner", "kind": "Deployment"}], "labels": ["k8s:app=scanner"]}
    target = {"namespace": "prod", "pod_name": "db-0", "workloads": [{"name": "db", "kind": "StatefulSet"}]}
    lines = []
    for i, port in enumerate(range(1, 61)):
        t = T0 + pd.Timedelta(milliseconds=20 * i)
        sport = 45000 + i
        for point, node in (("TO_STACK", "node-a"), ("TO_ENDPOINT", "node-b")):  # seen leaving and arriving
            lines.append(_hubble_line(t, "10.244.1.60", sport, "10.244.2.10", port, ["SYN"], reply=False, point=point, node=node, src=scanner, dst=target))
        back = t + pd.Timedelta(microseconds=300)
        flags = ["SYN", "ACK"] if port == 5432 % 60 else ["RST", "ACK"]
        lines.append(_hubble_line(back, "10.244.2.10", port, "10.244.1.60", sport, flags, reply=True, point="TO_ENDPOINT", node="node-a", src=target, dst=scanner))
    path = tmp_path / "hubble.json"
    path.write_text("\n".join(lines) + "\n")
    conns = t1046lab.read(path)
    assert conns["log_format"].eq("hubble").all() and len(conns) == 60
    counts = conns["conn_outcome"].astype(str).value_counts().to_dict()
    assert counts == {"rejected": 59, "established": 1}
    assert conns["source_port"].nunique() == 60 and conns["hubble_events"].eq(3).all()  # 2 SYN sightings + 1 reply
    alerts = make_alerts(
        {"entity": ["10.244.1.60"], "window_start": [T0], "window_end": [T0 + pd.Timedelta(minutes=5)], "score": [60.0], "alert": [True]},
        detector="zeek-scan",
    )
    out = correlate(alerts, conns).iloc[0]
    assert out["attributed_k8s_namespace"] == "dev"
    assert out["attributed_k8s_pod"] == "scanner-5d8f7c9b6-x2x9k"
    assert out["attributed_k8s_workload"] == "scanner"
    assert out["attribution_coverage"] == 1.0
    assert "origin from hubble rows: namespace dev, pod scanner-5d8f7c9b6-x2x9k, workload scanner" in out["attribution_note"]


def test_vpc_flow_log_scan_attributed_to_instance():
    n = 300
    times = [T0 + pd.Timedelta(seconds=i) for i in range(n)]
    # as a VPC flow-log reader emits them: the ENI's instance and account on every row
    conns = _conns(
        "172.31.5.20", [33000 + i for i in range(n)], "172.31.9.9", list(range(1, n + 1)), times, ["denied"] * n,
        cloud_provider=["aws"] * n, cloud_account_id=["123456789012"] * n, cloud_instance_id=["i-0a1b2c3d4e5f67890"] * n,
        network_interface_id=["eni-0123456789abcdef0"] * n, log_format="vpc",
    )
    other = _conns("172.31.5.21", 40000, "172.31.9.9", [443], [T0], ["established"], log_format="vpc")
    conns = pd.concat([conns, other], ignore_index=True)
    alerts = make_alerts(
        {"entity": ["172.31.5.20", "172.31.5.21"], "window_start": [T0] * 2, "window_end": [T0 + pd.Timedelta(minutes=10)] * 2, "score": [300.0, 0.1], "alert": [True, False]},
        detector="zeek-scan",
    )
    out = correlate(alerts, conns)
    row = out.iloc[0]
    assert row["attributed_cloud_instance_id"] == "i-0a1b2c3d4e5f67890"
    assert row["attributed_cloud_account_id"] == "123456789012"
    assert row["attribution_coverage"] == 1.0
    assert "origin from vpc rows: instance i-0a1b2c3d4e5f67890, interface eni-0123456789abcdef0, account 123456789012" in row["attribution_note"]
    assert pd.isna(out.iloc[1]["attribution_note"]) and np.isnan(out.iloc[1]["attribution_coverage"])  # not an alert


def test_alert_without_connections_says_so():
    conns = _conns("10.0.0.5", 40000, "10.0.1.9", [22], [T0], ["established"])
    alerts = make_alerts({"entity": ["10.9.9.9"], "window_start": [T0], "window_end": [T0 + pd.Timedelta(minutes=5)], "score": [1.0], "alert": [True]}, detector="x")
    out = correlate(alerts, conns).iloc[0]
    assert np.isnan(out["attribution_coverage"])
    assert "no connections from 10.9.9.9" in out["attribution_note"]


def test_discovery_tool_rule():
    n = 7
    ep = schema.conform(
        {
            "event_start": [T0] * n,
            "destination_ip": ["10.0.0.1"] * n,
            "process_executable": ["/usr/bin/masscan", "/usr/bin/nc.openbsd", "/usr/bin/nc.openbsd", "/usr/bin/curl", None, "/opt/RustScan/rustscan", "/usr/sbin/hping3"],
            "process_name": ["masscan", "nc.openbsd", "nc.openbsd", "curl", "arp-scan", "rustscan", "hping3"],
            "osquery_cmdline": [None, "nc -vz 10.0.0.1 1-1024", "nc 10.0.0.1 80", "curl -z x http://a", None, None, "hping3 -S -p ++1 10.0.0.1"],
        },
        log_format="osquery",
    )
    flagged = discovery_tool_events(ep)
    assert flagged["discovery_tool"].tolist() == ["masscan", "nc -z", "arp-scan", "rustscan", "hping3"]
    assert len(discovery_tool_events(ep.iloc[0:0])) == 0


def test_public_name_calls_correlate(scan_lab):
    alerts, conns, ep_a, ep_b = scan_lab
    # whether t1046lab.correlate resolves to the function or (once imported) the module, it calls correlate
    out = t1046lab.correlate(alerts, conns, [ep_a, ep_b])
    pd.testing.assert_frame_equal(out, correlate(alerts, conns, [ep_a, ep_b]))


def _sysmon_event(t, sport, dport, *, pid=4242, image="/usr/bin/nmap", user="alice"):
    data = {
        "RuleName": "-", "UtcTime": t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], "ProcessGuid": "{277d2fec-0000-0000-0000-000000000001}",
        "ProcessId": str(pid), "Image": image, "User": user, "Protocol": "tcp", "Initiated": "true", "SourceIsIpv6": "false",
        "SourceIp": "10.0.0.5", "SourceHostname": "-", "SourcePort": str(sport), "SourcePortName": "-", "DestinationIsIpv6": "false",
        "DestinationIp": "10.0.1.9", "DestinationHostname": "-", "DestinationPort": str(dport), "DestinationPortName": "-",
    }
    fields = "".join(f'<Data Name="{k}">{v}</Data>' for k, v in data.items())
    return (
        f"{t.strftime('%b %d %H:%M:%S')} host-a sysmon: <Event><System><Provider Name=\"Linux-Sysmon\" Guid=\"{{ff032593-a8d3-4f13-b0d6-01fc615a0f97}}\"/>"
        f"<EventID>3</EventID><Version>5</Version><Level>4</Level><Task>3</Task><Opcode>0</Opcode><Keywords>0x8000000000000000</Keywords>"
        f"<TimeCreated SystemTime=\"{t.isoformat()}\"/><EventRecordID>{sport}</EventRecordID><Correlation/><Execution ProcessID=\"900\" ThreadID=\"900\"/>"
        f"<Channel>Linux-Sysmon/Operational</Channel><Computer>host-a</Computer><Security UserId=\"0\"/></System><EventData>{fields}</EventData></Event>"
    )


def test_sysmon_sees_only_the_open_ports_of_a_connect_scan(scan_lab, tmp_path):
    alerts, conns, _, ep_b = scan_lab
    # Sysmon for Linux logs event 3 only when the handshake completes: ports 22 and 80 of the scan
    net_a = conns[conns["source_ip"] == "10.0.0.5"]
    open_ = net_a[net_a["conn_outcome"] == "established"]
    path = tmp_path / "syslog"
    path.write_text("\n".join(_sysmon_event(r.event_start, r.source_port, r.destination_port) for r in open_.itertuples()) + "\n")
    ep = t1046lab.read(path)
    assert len(ep) == 2 and ep["log_format"].eq("sysmon-linux").all()
    a = correlate(alerts, conns, [ep, ep_b]).set_index("entity").loc["10.0.0.5"]
    assert a["attributed_process_executable"] == "/usr/bin/nmap" and a["attributed_user_name"] == "alice"
    assert a["attribution_coverage"] == pytest.approx(2 / 200)
    assert "2 of 200 attempts matched to sysmon-linux connect() records" in a["attribution_note"]
    assert "no connect() seen for 198 of 200 attempts (Sysmon for Linux logs only established TCP connections)" in a["attribution_note"]


def test_raw_socket_note_kept_when_flow_rows_name_the_instance(scan_lab):
    # the raw-socket scanner 10.0.0.6 seen through VPC flow logs: its rows name the instance,
    # but the process side still matched none of its probes, and the note must say so
    alerts, conns, ep_a, ep_b = scan_lab
    raw = conns["source_ip"] == "10.0.0.6"
    conns = conns.assign(
        cloud_instance_id=pd.Series(pd.NA, index=conns.index, dtype="string").mask(raw, "i-0b1b2c3d4e5f60002"),
        cloud_account_id=pd.Series(pd.NA, index=conns.index, dtype="string").mask(raw, "123456789012"),
    )
    out = correlate(alerts, conns, [ep_a, ep_b]).set_index("entity")
    b = out.loc["10.0.0.6"]
    assert b["attributed_cloud_instance_id"] == "i-0b1b2c3d4e5f60002"
    assert "origin from zeek rows: instance i-0b1b2c3d4e5f60002" in b["attribution_note"]
    assert "no connect() seen for 1,000 of 1,000 attempts: raw-socket scan (e.g. nmap -sS) invisible to connect() telemetry" in b["attribution_note"]
    # a host with instance identity and no endpoint telemetry at all gets no endpoint remark
    out = correlate(alerts, conns, ep_a).set_index("entity")
    assert "no endpoint telemetry" not in out.loc["10.0.0.6", "attribution_note"]
    assert "no connect() seen" not in out.loc["10.0.0.6", "attribution_note"]
