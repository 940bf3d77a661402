"""Network/IDS and IaaS flow-log readers on the real samples in ../shared/data/formats and edge cases.

Expected values were read off the sample lines by eye (see each *.SOURCE note).
"""

from __future__ import annotations

import gzip
import json
import warnings

import pandas as pd
import pytest

import t1046lab.io as tio
from t1046lab import schema
from t1046lab.exceptions import DataQualityWarning, ParseError

F = "formats/"


def read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        df = tio.read(path, **kw)
    schema.validate(df, check_ips=True)
    rep = df.attrs["read_report"]
    assert rep.balanced, rep
    assert rep.rows_produced == len(df)
    return df, rep


def outcomes(df):
    return df["conn_outcome"].astype(str).tolist()


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


# --- sniffing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("suricata_eve_flow.json", "suricata"),
        ("nfdump_csv_v1.7.txt", "nfdump"),
        ("argus_ra_Zb.csv", "argus"),
        ("argus_ra_default.csv", "argus"),
        ("vpc_flow_v2.txt", "vpc"),
        ("vpc_flow_custom_v3_v5.txt", "vpc"),
        ("vpc_flow_v7_ecs_otel_fixture.txt", "vpc"),
        ("gcp_vpc_flow.json", "gcp"),
        ("azure_nsg_flow_v2.json", "azure-nsg"),
        ("azure_vnet_flow.json", "azure-vnet"),
    ],
)
def test_sniffing_picks_the_format(shared, name, fmt):
    assert tio.sniff_format(shared(F + name)) == fmt


@pytest.mark.parametrize("name", ["zeek_conn.log", "zeek_conn.json", "hubble_flows.json", "calico_flows.json", "unsw_nb15_training_set.csv"])
def test_our_sniffers_leave_other_formats_alone(shared, name):
    head = shared(F + name).read_bytes()[:65536]
    readers = tio._load_readers()
    for fmt in ("suricata", "nfdump", "argus", "vpc", "gcp", "azure-nsg", "azure-vnet"):
        assert not readers[fmt].sniff(head, name), fmt


# --- suricata -------------------------------------------------------------------------


def test_suricata_sample(shared):
    df, rep = read(shared(F + "suricata_eve_flow.json"))
    assert rep.records_seen == 7 and rep.records_used == 7
    assert outcomes(df) == ["established", "rejected", "established", "established", "no_reply", "established", "no_reply"]
    assert df.loc[1, "source_ip"] == "45.143.200.10" and df.loc[1, "destination_port"] == 13471
    # flow.start, not the logging timestamp (identical on lines 2-6)
    assert df.loc[1, "event_start"] == pd.Timestamp("2021-06-06T22:38:53.457171Z")
    assert df.loc[4, "network_transport"] == "udp" and df.loc[4, "destination_packets"] == 0
    assert df.loc[6, "tcp_flags"] == 2 and df.loc[6, "suricata_tcp_state"] == "syn_sent"  # proto "006"
    assert df.loc[0, "tcp_flags"] == 0x1E and df.loc[0, "source_bytes"] == 3536402
    assert df.loc[3, "suricata_tcp_state"] == "syn_recv"
    assert (df["policy_action"] == "unknown").all()
    assert df.loc[0, "suricata_flow_id"] == 1676750115612680


def _eve(**over):
    base = {
        "timestamp": "2024-01-01T00:00:09.000000+0000", "flow_id": 1, "event_type": "flow",
        "src_ip": "10.0.0.1", "src_port": 40000, "dest_ip": "10.0.0.2", "dest_port": 161, "proto": "UDP",
        "flow": {"pkts_toserver": 1, "pkts_toclient": 1, "bytes_toserver": 60, "bytes_toclient": 88,
                 "start": "2024-01-01T00:00:00.000000+0000", "end": "2024-01-01T00:00:00.001000+0000",
                 "age": 0, "state": "new", "reason": "timeout", "alerted": False},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return json.dumps(base)


def test_suricata_icmp_errors_and_edge_cases(tmp_path):
    lines = [
        _eve(),  # UDP, to-client packet but still state new: an ICMP error folded into the flow
        _eve(flow={"state": "established"}),  # real UDP answer
        _eve(proto="ICMP", src_port=None, dest_port=None, icmp_type=8, icmp_code=0, response_icmp_type=3, response_icmp_code=1),
        _eve(proto="ICMP", icmp_type=8, icmp_code=0, response_icmp_type=0, response_icmp_code=0, flow={"state": "established"}),
        _eve(proto="TCP", tcp={"tcp_flags": "02", "tcp_flags_ts": "02", "tcp_flags_tc": "00", "state": "syn_sent"}),  # SYN, ICMP back
        json.dumps({"timestamp": "2024-01-01T00:00:00Z", "event_type": "dns", "dns": {}}),
        '{"event_type": "flow", "src_ip": ',  # truncated JSON
        _eve(proto="XYZZY"),  # unknown protocol
        _eve(flow={"pkts_toclient": "many"}),  # bad number
        "",
    ]
    p = write(tmp_path, "eve.json", "\n".join(lines) + "\n")
    df, rep = read(p, format="suricata")
    assert outcomes(df) == ["icmp_unreachable", "established", "icmp_unreachable", "established", "icmp_unreachable"]
    assert df.loc[2, "icmp_type"] == 8 and pd.isna(df.loc[2, "source_port"])
    assert rep.records_seen == 9 and rep.records_skipped == 1 and rep.records_quarantined == 3
    lines_bad = sorted(q["line"] for q in rep.quarantine)
    assert lines_bad == [7, 8, 9]
    assert rep.quarantine_reasons["unknown protocol"] == 1
    with pytest.raises(ParseError, match=r"eve\.json:7"):
        tio.read(p, format="suricata", strict=True)


# --- nfdump ---------------------------------------------------------------------------


def test_nfdump_sample_pairs_records(shared):
    df, rep = read(shared(F + "nfdump_csv_v1.7.txt"))
    assert rep.records_seen == 10 and rep.records_used == 10  # the Summary trailer is not data
    assert len(df) == 6
    assert outcomes(df) == ["rejected", "rejected", "rejected", "no_reply", "established", "no_reply"]
    assert df["source_port"].tolist()[:3] == [52324, 52325, 52326]
    assert (df["destination_port"].iloc[:3] == 902).all()
    assert df.loc[0, "tcp_flags"] == 2 | 4 | 16  # S from the probe, A and R from the reply
    ssh = df.loc[4]
    assert ssh["source_ip"] == "50.62.139.155" and ssh["destination_port"] == 22
    assert ssh["source_bytes"] == 1216 and ssh["destination_bytes"] == 2349
    assert ssh["tcp_flags"] == 1 | 2 | 8 | 16
    assert df.loc[0, "event_start"] == pd.Timestamp("2018-01-12T15:37:30Z")


def test_nfdump_175_layout_icmp_and_bad_lines(tmp_path):
    text = "\n".join(
        [
            "firstSeen,lastSeen,proto,srcAddr,srcPort,dstAddr,dstPort,flags,packets,bytes",
            "2024-05-01 10:00:00.100,2024-05-01 10:00:00.100,UDP,10.0.0.5,5353,10.0.0.9,161,........,1,60",
            "2024-05-01 10:00:00.120,2024-05-01 10:00:00.120,ICMP,10.0.0.9,0,10.0.0.5,771,........,1,88",
            "2024-05-01 10:00:01.000,2024-05-01 10:00:01.000,ICMP,10.0.0.5,0,10.0.0.7,8.0,........,1,84",
            "2024-05-01 10:00:01.002,2024-05-01 10:00:01.002,ICMP,10.0.0.7,0,10.0.0.5,0.0,........,1,84",
            "2024-05-01 10:00:02.000,2024-05-01 10:00:02.000,TCP,10.0.0.5,40001,10.0.0.8,22,......S.,1,60",
            "2024-05-01 10:00:02.000,2024-05-01 10:00:02.000,TCP,10.0.0.5,40001,10.0.0.8,22,......S.,1",
            "2024-05-01 10:00:02.000,2024-05-01 10:00:02.000,TCP,10.0.0.5,40001,10.0.0.8,22,......S.,x,60",
            "2024-05-01 10:00:02.000,2024-05-01 10:00:02.000,FOO,10.0.0.5,40001,10.0.0.8,22,......S.,1,60",
            "Summary",
            "flows,bytes,packets",
            "8,500,8",
        ]
    )
    p = write(tmp_path, "nf.csv", text)
    assert tio.sniff_format(p) == "nfdump"
    df, rep = read(p)
    assert outcomes(df) == ["icmp_unreachable", "established", "no_reply"]
    assert df.loc[0, "network_transport"] == "udp" and df.loc[0, "destination_port"] == 161
    assert df.loc[1, "icmp_type"] == 8 and df.loc[1, "destination_packets"] == 1
    assert rep.records_seen == 8 and rep.records_used == 5 and rep.records_quarantined == 3
    assert {q["line"] for q in rep.quarantine} == {7, 8, 9}
    assert set(rep.quarantine_reasons) == {"expected 10 fields, found 9", "pkts is not a count", "unknown protocol"}
    with pytest.raises(ParseError, match=r"nf\.csv:7"):
        tio.read(p, strict=True)


def test_nfdump_pairs_across_chunks(shared, tmp_path):
    src = shared(F + "nfdump_csv_v1.7.txt")
    whole, _ = read(src)
    chunks = list(tio.read(src, chunksize=3))
    df = pd.concat([c for c in chunks], ignore_index=True)
    assert sorted(outcomes(df)) == sorted(outcomes(whole))
    assert chunks[-1].attrs["read_report"].records_used == 10


# --- argus ----------------------------------------------------------------------------


def test_argus_zb_sample(shared):
    df, rep = read(shared(F + "argus_ra_Zb.csv"))
    assert rep.records_used == 10
    assert outcomes(df) == [
        "no_reply", "rejected", "rejected", "rejected", "rejected", "unknown", "established", "unknown", "established", "established",
    ]
    assert df["tcp_flags"].iloc[:4].tolist() == [2, 2 | 4 | 16, 2 | 4 | 16, 2 | 4]
    eco = df.loc[6]
    assert eco["network_transport"] == "icmp" and eco["icmp_type"] == 8 and pd.isna(eco["icmp_code"])  # 0x0f72 is the echo id
    assert df.loc[1, "source_packets"] == 1 and df.loc[1, "destination_packets"] == 1 and df.loc[1, "destination_bytes"] == 64
    assert df.loc[5, "network_transport"] == "icmpv6"
    assert df.loc[0, "event_start"] == pd.Timestamp("2018-12-18T14:00:00.075359Z")


def test_argus_default_sample(shared):
    df, rep = read(shared(F + "argus_ra_default.csv"))
    assert rep.records_seen == 9 and rep.records_skipped == 1  # the ARP record
    assert outcomes(df) == ["established", "established", "established", "no_reply", "no_reply", "unknown", "no_reply", "no_reply"]
    urp = df.loc[5]
    assert urp["icmp_type"] == 3 and urp["icmp_code"] == 3
    assert df.loc[0, "destination_bytes"] == 3766 - 1224
    assert df["argus_dir"].tolist()[:2] == ["<?>", "<->"]


def test_argus_states_and_bad_lines(tmp_path):
    text = "\n".join(
        [
            "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,TotPkts,TotBytes,SrcBytes,SrcPkts",
            "2024/01/01 00:00:00.000000,0.1,tcp,10.0.0.1,5000,   ->,10.0.0.2,80,RST,2,120,60,1",
            "2024/01/01 00:00:01.000000,0.1,udp,10.0.0.1,5001,   ->,10.0.0.2,53,URP,2,150,60,1",
            "2024/01/01 00:00:02.000000,0.1,tcp,10.0.0.1,5002,  <->,10.0.0.2,22,S_SA,3,180,120,2",
            "2024/01/01 00:00:03.000000,0.1,tcp,10.0.0.1,5003,  <->,10.0.0.2,22,FIN,20,5000,1000,10",
            "2024/01/01 00:00:04.000000,0.1,tcp,10.0.0.1,5004,   ->,10.0.0.2,22,REQ,1,60",
            "2024/01/01 00:00:05.000000,0.1,tcp,10.0.0.1,0x1g,   ->,10.0.0.2,22,REQ,1,60,60,1",
            "2024/13/01 00:00:05.000000,0.1,tcp,10.0.0.1,5005,   ->,10.0.0.2,22,REQ,1,60,60,1",
            "2024/01/01 00:00:06.000000,0.1,blarg,10.0.0.1,5006,   ->,10.0.0.2,22,REQ,1,60,60,1",
        ]
    )
    p = write(tmp_path, "ra.csv", text)
    df, rep = read(p, format="argus")
    assert outcomes(df) == ["rejected", "icmp_unreachable", "established", "established"]
    assert rep.records_quarantined == 4
    assert sorted(q["line"] for q in rep.quarantine) == [6, 7, 8, 9]
    assert "unknown protocol" in rep.quarantine_reasons
    with pytest.raises(ParseError, match=r"ra\.csv:6"):
        tio.read(p, format="argus", strict=True)


# --- vpc ------------------------------------------------------------------------------


def test_vpc_v2_sample(shared):
    df, rep = read(shared(F + "vpc_flow_v2.txt"))
    assert rep.records_seen == 7 and rep.records_skipped == 2
    assert rep.skipped_reasons == {"log-status NODATA: no flow in the capture window": 1, "log-status SKIPDATA: no flow in the capture window": 1}
    assert len(df) == 4
    assert outcomes(df) == ["unknown", "denied", "denied", "unknown"]
    assert df["policy_action"].astype(str).tolist() == ["allow", "deny", "deny", "allow"]
    ping = df.loc[2]  # inbound ping allowed, its reply rejected by the NACL: one attempt
    assert ping["source_ip"] == "203.0.113.12" and ping["network_transport"] == "icmp"
    assert ping["source_packets"] == 4 and ping["destination_packets"] == 4 and ping["vpc_records"] == 2
    assert (df["cloud_account_id"] == "123456789010").all() and (df["cloud_provider"] == "aws").all()
    assert (df["network_interface_id"] == "eni-1235b8ca123456789").all()
    assert df.loc[3, "source_ip"].startswith("2001:db8:")
    assert df.loc[0, "event_start"] == pd.Timestamp(1418530010, unit="s", tz="UTC")
    assert any("capture window" in n for n in rep.notes)


def test_vpc_custom_sample(shared):
    df, rep = read(shared(F + "vpc_flow_custom_v3_v5.txt"))
    # the second block's format has no start time: its 4 records are skipped with that reason
    assert rep.skipped_reasons == {"no start time (the custom format lacks 'start')": 4}
    assert rep.records_used == 10 and len(df) == 5
    assert outcomes(df) == ["established", "established", "partial", "established", "established"]
    assert df["source_port"].tolist() == [43416, 43418, 43418, 43638, 34210]
    first = df.loc[0]
    assert first["source_ip"] == "52.213.180.42" and first["destination_port"] == 5001
    assert first["source_packets"] == 8 and first["destination_packets"] == 7 and first["tcp_flags"] == 18
    assert first["cloud_instance_id"] == "i-01234567890123456" and first["vpc_vpc_id"] == "vpc-abcdefab012345678"
    s3 = df.loc[4]  # v5: the egress record with SYN|FIN is the initiator, the ingress SYN-ACK|FIN the reply
    assert s3["source_ip"] == "10.0.0.71" and s3["destination_ip"] == "52.95.128.179" and s3["destination_port"] == 80
    assert s3["vpc_flow_direction"] == "egress" and s3["vpc_pkt_dst_aws_service"] == "S3" and s3["vpc_region"] == "ap-southeast-2"
    assert s3["destination_bytes"] == 15044


def test_vpc_v7_ecs_fixture(shared):
    df, _ = read(shared(F + "vpc_flow_v7_ecs_otel_fixture.txt"))
    assert len(df) == 1
    row = df.loc[0]
    assert row["container_id"] == "container-1" and row["vpc_ecs_task_id"] == "abcdef1234567890"
    assert row["vpc_ecs_cluster_name"] == "my-cluster" and row["vpc_ecs_service_name"] == "my-service"
    assert row["conn_outcome"] == "unknown"  # ACCEPT without tcp-flags and no reply record


def test_vpc_flags_nat_and_bad_lines(tmp_path):
    hdr = "version account-id interface-id instance-id srcaddr dstaddr pkt-srcaddr pkt-dstaddr srcport dstport protocol packets bytes start end action tcp-flags log-status"
    rows = [
        "4 111122223333 eni-a i-1 10.0.0.9 10.0.1.5 198.51.100.7 10.0.1.5 41000 22 6 1 60 1700000000 1700000060 ACCEPT 2 OK",  # SYN, nothing back
        "4 111122223333 eni-a i-1 10.0.0.9 10.0.1.5 198.51.100.7 10.0.1.5 41001 23 6 1 60 1700000000 1700000060 ACCEPT 2 OK",
        "4 111122223333 eni-a i-1 10.0.1.5 10.0.0.9 10.0.1.5 198.51.100.7 23 41001 6 1 40 1700000000 1700000060 ACCEPT 4 OK",  # RST back
        "4 111122223333 eni-a i-1 10.0.1.5 10.0.0.9 10.0.1.5 198.51.100.7 80 41002 6 1 44 1700000000 1700000060 ACCEPT 18 OK",  # lone SYN-ACK
        "4 111122223333 eni-a i-1 10.0.0.9 10.0.1.5 198.51.100.7 10.0.1.5 41003 3389 6 1 60 1700000000 1700000060 REJECT 2 OK",
        "4 111122223333 eni-a i-1 10.0.0.9 10.0.1.5 198.51.100.7 10.0.1.5 41004 22 6 1 60 1700000000 1700000060 ACCEPT 2",  # short
        "4 111122223333 eni-a i-1 10.0.0.9 10.0.1.5 198.51.100.7 10.0.1.5 41005 22 6 lots 60 1700000000 1700000060 ACCEPT 2 OK",
        "4 111122223333 eni-a i-1 10.0.0.9 10.0.1.5 198.51.100.7 10.0.1.5 41006 22 999 1 60 1700000000 1700000060 ACCEPT 2 OK",
    ]
    p = write(tmp_path, "vpc.log", hdr + "\n" + "\n".join(rows) + "\n")
    df, rep = read(p)
    assert outcomes(df) == ["no_reply", "rejected", "established", "denied"]
    assert (df["source_ip"] == "198.51.100.7").all()  # pkt-srcaddr: the real client behind the NAT
    assert df.loc[0, "vpc_srcaddr"] == "10.0.0.9"
    lone = df.loc[2]  # turned around: the client is the source
    assert lone["source_port"] == 41002 and lone["destination_port"] == 80 and pd.isna(lone["source_packets"])
    assert lone["destination_packets"] == 1
    assert df.loc[1, "destination_bytes"] == 40 and df.loc[1, "tcp_flags"] == 6
    assert rep.records_quarantined == 3 and sorted(q["line"] for q in rep.quarantine) == [7, 8, 9]
    assert "unknown protocol" in rep.quarantine_reasons
    with pytest.raises(ParseError, match=r"vpc\.log:7"):
        tio.read(p, strict=True)


def test_vpc_gzip_headerless_default_format(shared, tmp_path):
    lines = shared(F + "vpc_flow_v2.txt").read_text().splitlines()[1:]
    p = tmp_path / "cw.log.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    assert tio.sniff_format(p) == "vpc"
    df, rep = read(p)
    assert len(df) == 4 and rep.records_skipped == 2


# --- gcp ------------------------------------------------------------------------------


def test_gcp_sample(shared):
    df, rep = read(shared(F + "gcp_vpc_flow.json"))
    assert rep.records_used == 3 and len(df) == 3
    # every record is a server-side direction: turned around so the client is the source
    assert df["destination_port"].tolist() == [9200, 22, 5601]
    assert df["source_ip"].tolist() == ["10.87.40.76", "192.0.2.23", "203.0.113.12"]
    assert df["destination_bytes"].tolist() == [173663, 0, 1776]
    assert outcomes(df) == ["unknown"] * 3  # sampled, no reverse record
    assert (df["policy_action"] == "allow").all()
    assert df.loc[0, "cloud_instance_id"] == "kibana" and df.loc[0, "gcp_dest_vm"] == "elasticsearch"
    assert df.loc[0, "cloud_account_id"] == "my-sample-project"
    assert df.loc[0, "event_start"] == pd.Timestamp("2019-06-14T03:40:08.466658Z")


def _gcp(src, dst, sp, dp, reporter, start="2024-01-01T00:00:00.000000000Z", **payload):
    entry = {
        "logName": "projects/p/logs/compute.googleapis.com%2Fvpc_flows",
        "jsonPayload": {
            "connection": {"src_ip": src, "dest_ip": dst, "src_port": sp, "dest_port": dp, "protocol": 6},
            "start_time": start, "end_time": start, "bytes_sent": "100", "packets_sent": "2", "reporter": reporter,
            **payload,
        },
    }
    return json.dumps(entry)


def test_gcp_dedupe_pairing_gke_and_firewall(tmp_path):
    gke = {"pod": {"pod_name": "scanner-7d9", "pod_namespace": "team-a", "pod_workload": {"workload_name": "scanner", "workload_type": "DEPLOYMENT"}},
           "cluster": {"cluster_name": "prod"}}
    fw = {
        "logName": "projects/p/logs/compute.googleapis.com%2Ffirewall", "timestamp": "2024-01-01T00:00:05Z",
        "jsonPayload": {"connection": {"src_ip": "203.0.113.5", "src_port": 5555, "dest_ip": "10.0.0.2", "dest_port": 3389, "protocol": 6},
                        "disposition": "DENIED", "rule_details": {"reference": "network:default/firewall:deny-rdp", "direction": "INGRESS"},
                        "instance": {"project_id": "p", "vm_name": "web-1", "zone": "z"}},
    }
    lines = [
        _gcp("10.0.0.1", "10.0.0.2", 40000, 443, "SRC", src_gke_details=gke, src_instance={"project_id": "p", "vm_name": "node-1"}),
        _gcp("10.0.0.1", "10.0.0.2", 40000, 443, "DEST", dest_instance={"project_id": "p", "vm_name": "web-1"}),
        _gcp("10.0.0.2", "10.0.0.1", 443, 40000, "SRC"),
        json.dumps(fw),
        json.dumps({"logName": "projects/p/logs/cloudaudit.googleapis.com%2Factivity", "jsonPayload": {}}),
        _gcp("10.0.0.1", "10.0.0.2", 40000, 443, "SRC").replace('"protocol": 6', '"protocol": "bogus"'),
        '{"logName": ',
    ]
    p = write(tmp_path, "gcp.json", "\n".join(lines) + "\n")
    df, rep = read(p)
    assert rep.records_seen == 7 and rep.records_skipped == 1 and rep.records_quarantined == 2
    assert sorted(q["line"] for q in rep.quarantine) == [6, 7]
    assert len(df) == 2
    conn = df.loc[df["source_ip"] == "10.0.0.1"].iloc[0]
    assert conn["conn_outcome"] == "established" and conn["destination_port"] == 443
    assert conn["source_k8s_pod"] == "scanner-7d9" and conn["source_k8s_namespace"] == "team-a" and conn["source_k8s_workload"] == "scanner"
    assert conn["gcp_dest_vm"] == "web-1" and conn["gcp_reporter"] == "DEST+SRC" and conn["gcp_records"] == 3
    assert conn["destination_packets"] == 2
    deny = df.loc[df["source_ip"] == "203.0.113.5"].iloc[0]
    assert deny["conn_outcome"] == "denied" and deny["policy_action"] == "deny"
    assert deny["gcp_rule"] == "network:default/firewall:deny-rdp" and deny["gcp_dest_vm"] == "web-1"
    with pytest.raises(ParseError, match=r"gcp\.json:6"):
        tio.read(p, strict=True)


# --- azure ----------------------------------------------------------------------------


def test_azure_nsg_sample(shared):
    df, rep = read(shared(F + "azure_nsg_flow_v2.json"))
    assert rep.records_seen == 11 and rep.records_used == 11 and len(df) == 11
    assert (df["conn_outcome"] == "denied").sum() == 7 and (df["policy_action"] == "deny").sum() == 7
    row = df.loc[df["source_port"] == 44931].iloc[0]  # C tuple: 30 packets out, 24 back
    assert row["conn_outcome"] == "established" and row["source_packets"] == 30 and row["destination_bytes"] == 14008
    begin = df.loc[df["source_port"] == 59831].iloc[0]  # B tuple only: no counters yet
    assert begin["conn_outcome"] == "unknown" and begin["policy_action"] == "allow"
    udp = df.loc[df["source_ip"] == "192.0.2.190"].iloc[0]
    assert udp["network_transport"] == "udp" and udp["conn_outcome"] == "denied" and udp["azure_rule"] == "DefaultRule_DenyAllInBound"
    assert (df["cloud_account_id"] == "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e").all()
    assert (df["network_interface_id"] == "000D3AF87856").all()
    assert udp["event_start"] == pd.Timestamp(1542110402, unit="s", tz="UTC")


def test_azure_vnet_sample_merges_begin_and_end(shared):
    df, rep = read(shared(F + "azure_vnet_flow.json"))
    assert rep.records_seen == 19 and rep.records_used == 19
    assert len(df) == 14  # 5 B+E flows merged, 9 denied tuples
    allowed = df[df["policy_action"] == "allow"]
    assert sorted(allowed["source_port"].tolist()) == [22730, 22732, 22734, 23956, 36776]
    assert (allowed["conn_outcome"] == "established").all() and (allowed["azure_states"] == "BE").all()
    long = allowed.loc[allowed["source_port"] == 36776].iloc[0]
    assert long["source_packets"] == 22 and long["destination_bytes"] == 32466
    assert long["event_start"] == pd.Timestamp("2022-09-14T09:00:17.343Z")  # epoch milliseconds
    assert long["event_duration_s"] == pytest.approx(5.45)
    denied = df[df["conn_outcome"] == "denied"]
    assert len(denied) == 9 and set(denied["destination_ip"]) == {"10.0.0.6"}
    assert set(denied["azure_rule"]) == {"BlockHighRiskTCPPortsFromInternet", "Internet"}
    assert (df["network_interface_id"] == "00224871C205").all()


def test_azure_merges_across_records_and_quarantines_tuples(tmp_path):
    def rec(time, tuples):
        return {"time": time, "category": "NetworkSecurityGroupFlowEvent",
                "resourceId": "/SUBSCRIPTIONS/11111111-2222-3333-4444-555555555555/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG",
                "properties": {"Version": 2, "flows": [{"rule": "R", "flows": [{"mac": "AA", "flowTuples": tuples}]}]}}

    doc = {"records": [
        rec("t1", ["1700000000,10.0.0.1,10.0.0.2,40000,22,T,O,A,B,,,,", "1700000001,10.0.0.1,10.0.0.3,40001,22,T,O,A,E,2,120,0,0"]),
        rec("t2", ["1700000060,10.0.0.1,10.0.0.2,40000,22,T,O,A,C,10,1000,8,900",
                   "1700000061,10.0.0.1,10.0.0.2,40000,22,T,O,A,E,2,100,1,60",
                   "1700000062,10.0.0.1,10.0.0.2,40000,22,X,O,A,B,,,,",
                   "1700000062,10.0.0.1,10.0.0.2,40000,22,T,O,A",
                   "1700000062,10.0.0.1,10.0.0.2,4000x,22,T,O,A,B,,,,"]),
    ]}
    p = write(tmp_path, "PT1H.json", json.dumps(doc, indent=2))
    df, rep = read(p, format="azure-nsg")
    assert rep.records_seen == 7 and rep.records_quarantined == 3
    assert len(df) == 2
    merged = df.loc[df["destination_ip"] == "10.0.0.2"].iloc[0]
    assert merged["azure_states"] == "BCE" and merged["azure_tuples"] == 3
    assert merged["source_packets"] == 12 and merged["destination_packets"] == 9 and merged["conn_outcome"] == "established"
    assert merged["event_duration_s"] == 61
    silent = df.loc[df["destination_ip"] == "10.0.0.3"].iloc[0]
    assert silent["conn_outcome"] == "no_reply"
    assert df["cloud_account_id"].iloc[0] == "11111111-2222-3333-4444-555555555555"
    text = p.read_text().splitlines()
    bad_lines = sorted(q["line"] for q in rep.quarantine)
    assert [("X,O,A,B" in text[bad_lines[0] - 1]), ("T,O,A\"" in text[bad_lines[1] - 1]), ("4000x" in text[bad_lines[2] - 1])] == [True, True, True]
    assert "unknown protocol" in rep.quarantine_reasons
    with pytest.raises(ParseError, match=rf"PT1H\.json:{bad_lines[0]}"):
        tio.read(p, format="azure-nsg", strict=True)


def test_azure_broken_document_is_quarantined(tmp_path, shared):
    text = shared(F + "azure_vnet_flow.json").read_text()
    p = write(tmp_path, "broken.json", text[: len(text) // 2])
    df, rep = read(p, format="azure-vnet")
    assert len(df) == 0 and rep.records_quarantined == 1 and rep.quarantine[0]["line"] is not None


# --- cross-cutting --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["suricata_eve_flow.json", "nfdump_csv_v1.7.txt", "argus_ra_Zb.csv", "azure_vnet_flow.json"]
)
def test_chunked_reading_gives_the_same_rows(shared, name):
    path = shared(F + name)
    whole, rep = read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        chunks = list(tio.read(path, chunksize=2))
    parts = pd.concat(chunks, ignore_index=True)
    key = ["event_start", "source_ip", "source_port", "destination_port"]
    a = whole.sort_values(key).reset_index(drop=True)
    b = parts.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[list(schema.CORE_COLUMNS)], b[list(schema.CORE_COLUMNS)])
    last = chunks[-1].attrs["read_report"]
    assert last.balanced and last.records_used == rep.records_used


def test_pairing_repeated_five_tuple_is_linear_and_one_to_one(tmp_path):
    # 3000 DNS queries from one fixed source port, each answered 10 ms later: one 5-tuple
    # repeated; a self-join on the 5-tuple would build 9 million candidates
    rows = ["ts,te,td,sa,da,sp,dp,pr,flg,ipkt,ibyt,opkt,obyt"]
    for i in range(3000):
        t = f"2024-01-01 00:{i // 60:02d}:{i % 60:02d}"
        rows.append(f"{t},{t},0.000,10.0.0.5,10.0.0.53,5353,53,UDP,........,1,70,0,0")
        if i % 3:  # every third query goes unanswered
            rows.append(f"{t},{t},0.000,10.0.0.53,10.0.0.5,53,5353,UDP,........,1,120,0,0")
    p = write(tmp_path, "dns.csv", "\n".join(rows) + "\n")
    df, rep = read(p, format="nfdump", pair_tolerance=0.5)
    assert rep.records_used == 5000 and len(df) == 3000
    assert (df["destination_port"] == 53).all()
    assert (df["conn_outcome"] == "established").sum() == 2000
    assert (df["conn_outcome"] == "no_reply").sum() == 1000


@pytest.mark.parametrize("fmt", ["suricata", "nfdump", "argus", "vpc", "gcp", "azure-nsg", "azure-vnet"])
def test_empty_input_gives_an_empty_canonical_frame(tmp_path, fmt):
    p = write(tmp_path, "empty.log", "")
    df, rep = read(p, format=fmt)
    assert len(df) == 0 and rep.records_seen == 0
    assert list(df.columns[: len(schema.CORE_COLUMNS)]) == list(schema.CORE_COLUMNS)


def test_nfdump_local_time_zone_option(shared):
    df, _ = read(shared(F + "nfdump_csv_v1.7.txt"), tz="Europe/Prague")
    # CTU traffic, January: nfdump printed CET (UTC+1)
    assert df.loc[0, "event_start"] == pd.Timestamp("2018-01-12T14:37:30Z")


def test_suricata_bad_flag_byte_is_quarantined(tmp_path):
    p = write(tmp_path, "eve.json", _eve(proto="TCP", tcp={"tcp_flags": "zz", "tcp_flags_ts": "02", "tcp_flags_tc": "00"}) + "\n")
    df, rep = read(p, format="suricata")
    assert len(df) == 0 and rep.quarantine_reasons == {"tcp.tcp_flags is not a hex flag byte": 1}


def test_nfdump_lone_answers_are_turned_around(shared, tmp_path):
    # only the target's side of the sample's probes was exported (asymmetric routing)
    lines = shared(F + "nfdump_csv_v1.7.txt").read_text().splitlines()
    answers = [ln for ln in lines[1:7] if "...A.R.." in ln]
    p = write(tmp_path, "answers.csv", "\n".join([lines[0], *answers]) + "\n")
    df, rep = read(p)
    assert len(df) == 3 and outcomes(df) == ["rejected"] * 3
    assert (df["source_ip"] == "147.32.80.119").all() and (df["destination_port"] == 902).all()
    assert df["source_port"].tolist() == [52324, 52325, 52326]
    assert df["destination_packets"].tolist() == [1, 1, 1] and df["source_packets"].isna().all()
    assert df["nfdump_reply_flags"].tolist() == ["...A.R.."] * 3


def test_azure_vnet_strict_names_the_tuple_line(shared, tmp_path):
    doc = json.loads(shared(F + "azure_vnet_flow.json").read_text())
    tuples = doc["records"][0]["flowRecords"]["flows"][1]["flowGroups"][0]["flowTuples"]
    tuples[1] = tuples[1].replace(",6,I,D,", ",6,I,Q,")  # flow state Q does not exist
    p = write(tmp_path, "PT1H.json", json.dumps(doc, indent=4))
    df, rep = read(p, format="azure-vnet")
    assert rep.quarantine_reasons == {"flow state is not B, C, E or D": 1} and len(df) == 13
    line = rep.quarantine[0]["line"]
    assert ",6,I,Q," in p.read_text().splitlines()[line - 1]
    assert "flowGroups[0].flowTuples[1]" in rep.quarantine[0]["excerpt"]
    with pytest.raises(ParseError, match=rf"PT1H\.json:{line}"):
        tio.read(p, format="azure-vnet", strict=True)
