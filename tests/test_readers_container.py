"""Container flow readers: Cilium Hubble and Calico, on the real samples and built edge cases."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import t1046lab
from t1046lab import schema
from t1046lab.exceptions import ParseError
from t1046lab.io import sniff_format


def _read(path, **kw):
    df = t1046lab.read(path, **kw)
    report = df.attrs["read_report"]
    assert report.balanced, report
    schema.validate(df, check_ips=True)
    return df, report


# --- hubble --------------------------------------------------------------------------------


def test_hubble_sample(shared):
    path = shared("formats/hubble_flows.json")
    assert sniff_format(path) == "hubble"
    df, report = _read(path)
    assert report.records_seen == 5 and report.records_used == 5 and report.rows_produced == 4
    assert df["conn_outcome"].astype(str).tolist() == ["unknown", "denied", "partial", "denied"]
    assert df["policy_action"].astype(str).tolist() == ["unknown", "deny", "allow", "deny"]
    # line 2: the docs' SYN denied by policy
    r = df.iloc[1]
    assert (r.source_ip, r.source_port, r.destination_ip, r.destination_port) == ("10.244.1.60", 44916, "10.244.1.5", 80)
    assert (r.source_k8s_namespace, r.source_k8s_pod, r.hubble_destination_pod) == ("default", "xwing", "deathstar-7848d6c4d5-th9v2")
    assert r.tcp_flags == 2 and r.hubble_drop_reason == "POLICY_DENIED"
    # lines 3-4: a reply (is_reply true) and a request of the same mid-stream connection: one row,
    # oriented from the client 10.0.1.178:60778 to the server 10.0.1.13:8080
    r = df.iloc[2]
    assert (r.source_ip, r.source_port, r.destination_ip, r.destination_port) == ("10.0.1.178", 60778, "10.0.1.13", 8080)
    assert (r.source_k8s_pod, r.source_k8s_workload, r.hubble_destination_workload) == ("kapinger-bad-6b5b787dc9-ds4j4", "kapinger-bad", "kapinger-good")
    assert r.hubble_events == 2 and r.tcp_flags == (1 | 8 | 16)
    assert r.host_name == "longtestnetworkflowcni/aks-nodepool1-27013129-vmss000000"
    # line 5: deprecated numeric drop_reason 133 is POLICY_DENIED too
    assert df.iloc[3].source_k8s_namespace == "agent-restricted" and df.iloc[3].conn_outcome == "denied"
    # line 1: ICMPv6 router solicitation dropped for INVALID_SOURCE_IP: not a policy decision
    assert df.iloc[0].icmp_type == 133 and df.iloc[0].network_transport == "icmpv6"


def _flow(t, sip, sport, dip, dport, *, flags=None, reply=None, verdict="FORWARDED", point="TO_ENDPOINT", udp=False, **extra):
    l4 = {"UDP": {"source_port": sport, "destination_port": dport}} if udp else {
        "TCP": {"source_port": sport, "destination_port": dport, "flags": {f: True for f in flags or []}}}
    flow = {"time": f"2024-01-01T00:00:{t:09.6f}Z", "verdict": verdict, "IP": {"source": sip, "destination": dip, "ipVersion": "IPv4"},
            "l4": l4, "source": {"namespace": "a", "pod_name": f"pod-{sip}"}, "destination": {"namespace": "b", "pod_name": f"pod-{dip}"},
            "Type": "L3_L4", "node_name": "n1", "trace_observation_point": point, **extra}
    if reply is not None:
        flow["is_reply"] = reply
    return json.dumps({"flow": flow, "node_name": "n1", "time": flow["time"]})


def test_hubble_assembles_attempts_and_outcomes(tmp_path):
    c, s = "10.0.0.1", "10.0.0.2"
    lines = [
        # open port: SYN seen at two observation points, SYN-ACK reply, ACK
        _flow(1.0, c, 40001, s, 80, flags=["SYN"], reply=False, point="TO_STACK"),
        _flow(1.0001, c, 40001, s, 80, flags=["SYN"], reply=False),
        _flow(1.0002, s, 80, c, 40001, flags=["SYN", "ACK"], reply=True),
        _flow(1.0003, c, 40001, s, 80, flags=["ACK"], reply=False),
        # closed port: SYN, RST reply
        _flow(2.0, c, 40002, s, 81, flags=["SYN"], reply=False),
        _flow(2.0002, s, 81, c, 40002, flags=["RST", "ACK"], reply=True),
        # filtered: SYN retransmitted, nothing back
        _flow(3.0, c, 40003, s, 82, flags=["SYN"], reply=False),
        _flow(4.0, c, 40003, s, 82, flags=["SYN"], reply=False),
        # policy drop with the Cilium >= 1.18 fields
        _flow(5.0, c, 40004, s, 83, flags=["SYN"], verdict="DROPPED", drop_reason=181, drop_reason_desc="POLICY_DENY",
              egress_denied_by=[{"name": "deny-all", "namespace": "a", "kind": "CiliumNetworkPolicy"}]),
        # is_reply absent: orientation from the SYN-ACK
        _flow(6.0, c, 40005, s, 84, flags=["SYN"]),
        _flow(6.001, s, 84, c, 40005, flags=["SYN", "ACK"]),
        # UDP probe without answer, UDP with answer
        _flow(7.0, c, 40006, s, 161, udp=True, reply=False),
        _flow(8.0, c, 40007, s, 53, udp=True, reply=False),
        _flow(8.001, s, 53, c, 40007, udp=True, reply=True),
        json.dumps({"lost_events": {"source": "HUBBLE_RING_BUFFER", "num_events_lost": 3}}),
        json.dumps({"flow": {"time": "2024-01-01T00:00:09Z", "Type": "L7", "l7": {"type": "REQUEST"}}}),
    ]
    path = tmp_path / "flows.json"
    path.write_text("\n".join(lines) + "\n")
    df, report = _read(path, format="hubble")
    assert report.records_seen == 16 and report.records_used == 14
    assert report.skipped_reasons == {"no flow in record (lost_events)": 1, "L7 event (not a packet flow)": 1}
    assert report["hubble_events_lost"] == 3
    got = dict(zip(df["destination_port"].astype(int), df["conn_outcome"].astype(str)))
    assert got == {80: "established", 81: "rejected", 82: "no_reply", 83: "denied", 84: "established", 161: "no_reply", 53: "established"}
    assert (df["source_ip"] == c).all() and (df["source_k8s_pod"] == f"pod-{c}").all()
    assert df.loc[df.destination_port == 83, "policy_action"].item() == "deny"
    assert df.loc[df.destination_port == 82, "event_duration_s"].item() == pytest.approx(1.0)
    # the same result when the file is streamed in chunks of 3 lines
    chunks = list(t1046lab.read(path, format="hubble", chunksize=3))
    streamed = pd.concat(chunks, ignore_index=True).sort_values("destination_port").reset_index(drop=True)
    whole = df.sort_values("destination_port").reset_index(drop=True)
    pd.testing.assert_frame_equal(streamed[whole.columns], whole, check_categorical=False)


def test_hubble_quarantines_bad_lines_and_strict_raises(tmp_path):
    good = _flow(1.0, "10.0.0.1", 1, "10.0.0.2", 2, flags=["SYN"], reply=False)
    no_dst = json.loads(good)
    del no_dst["flow"]["IP"]["destination"]
    bad_time = json.loads(good)
    bad_time["flow"]["time"] = "yesterday"
    path = tmp_path / "bad.json"
    path.write_text("\n".join([good, "{not json", json.dumps(no_dst), "", json.dumps(bad_time), "[1, 2]"]) + "\n")
    with pytest.warns(t1046lab.DataQualityWarning):
        df, report = _read(path, format="hubble")
    assert len(df) == 1 and report.records_seen == 5 and report.records_quarantined == 4
    q = report.quarantine_frame()
    assert sorted(q["line"].tolist()) == [2, 3, 5, 6]
    assert set(q["reason"]) == {"not JSON: JSONDecodeError", "IP source or destination missing", "unparseable flow time", "JSON value is not an object"}
    with pytest.raises(ParseError, match=r"bad\.json:2: not JSON"):
        t1046lab.read(path, format="hubble", strict=True)


# --- calico --------------------------------------------------------------------------------


def test_calico_flow_log_sample(shared):
    path = shared("formats/calico_flows.json")
    assert sniff_format(path) == "calico"
    df, report = _read(path)
    assert len(df) == 2 and report.records_used == 2
    deny, allow = df.iloc[0], df.iloc[1]
    assert (deny.conn_outcome, deny.policy_action, deny.calico_reporter) == ("denied", "deny", "dst")
    assert (deny.source_ip, deny.destination_ip, deny.destination_port) == ("10.48.116.157", "10.48.127.224", 5050)
    assert pd.isna(deny.source_port)  # aggregated away at level 1
    # reporter dst: bytes_in came from the source
    assert (deny.source_bytes, deny.source_packets, deny.destination_packets) == (300, 5, 0)
    assert (deny.source_k8s_namespace, deny.source_k8s_pod, deny.source_k8s_workload) == ("default", "multitool", "multitool")
    assert deny.event_start == pd.Timestamp(1659621542, unit="s", tz="UTC")
    # the camelCase startTime variant, aggregation level 2: no IPs, pod names only as prefixes
    assert allow.event_start == pd.Timestamp(1699375161, unit="s", tz="UTC")
    assert pd.isna(allow.source_ip) and pd.isna(allow.destination_ip) and pd.isna(allow.source_k8s_pod)
    assert (allow.source_k8s_workload, allow.calico_dest_name_aggr) == ("frontend", "cartservice-7d4899b484-*")
    assert (allow.process_executable, allow.process_name, allow.process_pid) == ("/src/server", "server", 21842)
    assert (allow.conn_outcome, allow.calico_dest_service) == ("established", "default/cartservice")
    assert df["aggregated_count"].dtype == np.int64 and df["aggregated_count"].tolist() == [1, 1]
    assert any("source port aggregated away in 2 rows" in n and "IP addresses aggregated away in 1 rows" in n
               and "pod names aggregated to prefixes in 1 rows" in n for n in report.notes)


def _calico(**kw):
    base = {"start_time": 1700000000, "end_time": 1700000300, "source_ip": "10.1.0.5", "source_name": "scanner-abc", "source_name_aggr": "scanner-7f9c8d6b5-*",
            "source_namespace": "dev", "source_port": None, "source_type": "wep", "dest_ip": "10.1.0.9", "dest_name": "db-0", "dest_name_aggr": "db-*",
            "dest_namespace": "prod", "dest_port": 5432, "dest_type": "wep", "proto": "tcp", "action": "allow", "reporter": "src",
            "bytes_in": 0, "bytes_out": 60, "num_flows": 1, "num_flows_started": 1, "num_flows_completed": 1, "packets_in": 0, "packets_out": 1,
            "process_name": "-", "process_id": "-"}
    base.update(kw)
    return json.dumps(base)


def test_calico_outcomes_counts_and_reporter_merge(tmp_path):
    lines = [
        _calico(dest_port=22, packets_in=3, bytes_in=180, packets_out=4, bytes_out=240),  # handshake and data
        _calico(dest_port=23, packets_in=1, bytes_in=40),  # one bare RST: a closed port
        _calico(dest_port=24),  # nothing back
        _calico(dest_port=25, num_flows=7, num_flows_started=7, packets_in=7, bytes_in=280, packets_out=7, bytes_out=420),  # 7 refused flows
        # the same aggregate reported by both ends: src allowed it out, dst denied it in
        _calico(dest_port=26, reporter="src", action="allow"),
        _calico(dest_port=26, reporter="dst", action="deny", bytes_in=60, packets_in=1, bytes_out=0, packets_out=0),
        _calico(dest_port=27, action="maybe"),
        _calico(dest_port=70000),
        json.dumps({"kind": "not a flow"}),
    ]
    path = tmp_path / "flows.log"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(t1046lab.DataQualityWarning):
        df, report = _read(path, format="calico")
    got = dict(zip(df["destination_port"].astype(int), df["conn_outcome"].astype(str)))
    assert got == {22: "established", 23: "rejected", 24: "no_reply", 25: "rejected", 26: "denied"}
    merged = df[df.destination_port == 26].iloc[0]
    assert merged.calico_reporter == "src+dst" and merged.policy_action == "deny"
    assert df.loc[df.destination_port == 25, "aggregated_count"].item() == 7
    assert report.records_used == 6 and report.records_skipped == 1 and report.records_quarantined == 2
    assert report.quarantine_reasons == {"action is not allow or deny": 1, "dest_port out of range": 1}
    assert sorted(report.quarantine_frame()["line"]) == [7, 8]
    with pytest.warns(t1046lab.DataQualityWarning):
        unmerged = t1046lab.read(path, format="calico", merge_reporters=False)
    assert (unmerged.destination_port == 26).sum() == 2
    with pytest.raises(ParseError, match=r"flows\.log:7"):
        t1046lab.read(path, format="calico", strict=True)


def test_calico_felix_syslog(shared):
    path = shared("formats/calico_felix_syslog.txt")
    assert sniff_format(path) == "calico"
    df, _ = _read(path, year=2022)
    assert len(df) == 2 and df["conn_outcome"].eq("denied").all() and df["policy_action"].eq("deny").all()
    assert df["source_port"].tolist() == [57312, 57314] and (df["destination_ip"] == "147.75.40.148").all()
    assert df["event_start"].iloc[0] == pd.Timestamp("2022-08-04 16:14:12", tz="UTC")
    assert (df["host_name"] == "bastion").all() and (df["calico_policy"] == "hep-external").all()
    assert (df["source_packets"] == 2).all() and (df["aggregated_count"] == 1).all()


def test_calico_felix_skips_and_quarantines(tmp_path, shared):
    real = shared("formats/calico_felix_syslog.txt").read_text().splitlines()
    lines = [real[0], "Aug  4 16:14:13 bastion calico-felix[312412]: INFO Summarising 3 dataplane reconciliation loops",
             real[1].replace('action="deny"', 'action="drop"'), "garbage srcIP=1 action=x", real[1]]
    path = tmp_path / "felix.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.warns(t1046lab.DataQualityWarning):
        df, report = _read(path, format="calico", year=2022)
    assert len(df) == 2 and report.records_skipped == 1
    assert report.quarantine_reasons == {"action is not allow or deny": 1, "no syslog timestamp": 1}
    assert sorted(report.quarantine_frame()["line"]) == [3, 4]


# --- sniffing ------------------------------------------------------------------------------


def test_sniffers_claim_only_their_own_samples(shared):
    """Each endpoint/container sniffer recognises its samples and none of the other formats' samples."""
    from t1046lab.io import _load_readers
    from t1046lab.io._source import read_head

    root = shared("formats/README.txt").parent
    own = {
        "hubble": {"hubble_flows.json"},
        "calico": {"calico_flows.json", "calico_felix_syslog.txt"},
        "sysmon-linux": {"sysmon_linux_eid3.xml"},
        "auditd": {"auditd_connect.log"},
        "osquery": set(),
    }
    readers = _load_readers()
    samples = [p for p in sorted(root.iterdir()) if not p.name.endswith((".SOURCE", "README.txt"))]
    assert len(samples) > 20
    for name, files in own.items():
        claimed = {p.name for p in samples if readers[name].sniff(read_head(p), p.name)}
        assert claimed == files, name


def test_gzipped_input_is_read(tmp_path, shared):
    import gzip

    raw = shared("formats/hubble_flows.json").read_bytes()
    path = tmp_path / "events.log.gz"
    path.write_bytes(gzip.compress(raw))
    df, report = _read(path)
    assert report.format == "hubble" and len(df) == 4
