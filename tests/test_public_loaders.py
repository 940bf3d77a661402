"""Readers for public labelled datasets: CIC-IDS2017 (CICFlowMeter), UNSW-NB15, CIDDS-001.

CIC and UNSW are checked on the real samples in ../shared/data. No CIDDS-001 sample is
shared: its test file is built here, line by line, from the documented format (the
CIDDS-001 technical report's columns, nfdump's flag and byte notation) around an nmap
SYN scan, a ping sweep and normal SMB traffic.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import t1046lab
from t1046lab import schema
from t1046lab.exceptions import DataQualityWarning, ParseError
from t1046lab.io import sniff_format


def _read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return t1046lab.read(path, **kw)


# --- CIC-IDS2017 -------------------------------------------------------------------------


@pytest.mark.shared
def test_cic_portscan_sample_is_a_vertical_scan(shared):
    path = shared("real/cicids2017-sample/Portscan_5000.csv")
    raw = pd.read_csv(path)
    assert sniff_format(path) == "cic"
    df = _read(path)
    schema.validate(df, check_ips=True)
    assert len(df) == len(raw) == 5000
    assert df.attrs["read_report"].balanced
    assert (df["label"] == "scan").all() and (df["scan_type"] == "vertical").all()
    assert df["benign_category"].isna().all()
    assert set(df["source_ip"]) == {"172.16.0.1"} and set(df["destination_ip"]) == {"192.168.10.50"}
    # Every flow's counters agree with the file, row for row.
    tcp = (raw["Protocol"] == 6).to_numpy()
    assert (~tcp).sum() == 1 and df["destination_port"][~tcp].isna().all()  # ICMP has no ports
    np.testing.assert_array_equal(df["destination_port"][tcp].to_numpy(dtype=float), raw["Dst Port"][tcp].to_numpy(dtype=float))
    np.testing.assert_array_equal(df["source_packets"].to_numpy(dtype=float), raw["Total Fwd Packet"].to_numpy(dtype=float))
    # An nmap SYN scan of mostly closed ports: SYN answered by RST-ACK, no payload.
    closed = (raw["RST Flag Count"] > 0) & (raw["Total Bwd packets"] == 1) & (raw["Total Length of Fwd Packet"] == 0) & (raw["Total Fwd Packet"] <= 2)
    assert (df["conn_outcome"][closed.to_numpy()] == "rejected").all()
    assert (df["conn_outcome"] == "rejected").mean() > 0.95
    # The handshakes that completed are the victim's open services (an Ubuntu web server).
    established = df[(df["conn_outcome"] == "established") & (df["network_transport"] == "tcp")]
    assert set(established["destination_port"]) == {21, 80, 139, 445}
    # The Engelen et al. timestamps are UTC: the scan ran in the afternoon of Fri 7 July 2017 (ADT).
    assert df["event_start"].min() >= pd.Timestamp("2017-07-07 16:00", tz="UTC")
    assert df["event_start"].max() <= pd.Timestamp("2017-07-07 19:00", tz="UTC")
    assert (df["event_duration_s"] * 1e6).round().astype("Int64").equals(raw["Flow Duration"].astype("Int64").rename("event_duration_s"))


@pytest.mark.shared
def test_cic_benign_sample(shared):
    path = shared("real/cicids2017-sample/BENIGN_5000.csv")
    raw = pd.read_csv(path)
    df = _read(path)
    schema.validate(df, check_ips=True)
    assert len(df) == 5000
    assert (df["label"] == "benign").all() and (df["benign_category"] == "normal").all()
    expected = raw["Protocol"].map({6: "tcp", 17: "udp", 1: "icmp"}).fillna("other")
    assert (df["network_transport"].astype(str).to_numpy() == expected.to_numpy()).all()
    # UDP flows with an answer are established, without one no_reply.
    udp = (expected == "udp").to_numpy()
    answered = (raw["Total Bwd packets"] > 0).to_numpy()
    assert (df["conn_outcome"][udp & answered] == "established").all()
    assert (df["conn_outcome"][udp & ~answered] == "no_reply").all()


@pytest.mark.shared
def test_cic_original_column_style_with_leading_spaces(shared):
    path = shared("formats/cicids2017_trafficlabelling_row.txt")
    header = Path(path).read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("Flow ID, Source IP, Source Port, Destination IP, Destination Port")
    df = _read(path, format="cic")
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["source_ip"], row["source_port"], row["destination_ip"], row["destination_port"]) == ("192.168.10.50", 56108, "192.168.10.3", 3268)
    # "7/7/2017 8:59" local lab time (ADT, UTC-3).
    assert row["event_start"] == pd.Timestamp("2017-07-07 11:59", tz="UTC")
    assert row["event_duration_s"] == pytest.approx(112.740690)
    assert (row["source_packets"], row["destination_packets"], row["source_bytes"], row["destination_bytes"]) == (32, 16, 6448, 1152)
    assert row["label"] == "benign" and row["conn_outcome"] == "established"


@pytest.mark.shared
def test_cic_machinelearningcve_style(shared):
    path = shared("formats/cicids2017_machinelearningcve.csv")
    assert sniff_format(path) == "cic"
    df = _read(path)
    assert len(df) == 3
    schema.validate(df)
    assert df["source_ip"].isna().all() and df["destination_ip"].isna().all()
    assert df["destination_port"].tolist() == pd.read_csv(path, skipinitialspace=True)["Destination Port"].tolist()
    assert (df["label"] == "benign").all()
    assert any("placeholder" in note for note in df.attrs["read_report"].notes)


def _cic_file_with_bad_lines(shared, tmp_path):
    lines = Path(shared("real/cicids2017-sample/Portscan_5000.csv")).read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:21]
    bad_number = rows[3].split(",")
    bad_number[5] = "eighty"  # Dst Port
    text = [header, *rows[:3], ",".join(bad_number), rows[4][:40], *rows[5:]]
    path = tmp_path / "portscan_bad.csv"
    path.write_text("\n".join(text) + "\n")
    return path


@pytest.mark.shared
def test_cic_bad_lines_are_quarantined_with_line_numbers(shared, tmp_path):
    path = _cic_file_with_bad_lines(shared, tmp_path)
    with pytest.warns(DataQualityWarning, match="2 of 20 records quarantined"):
        df = t1046lab.read(path)
    report = df.attrs["read_report"]
    assert len(df) == 18 and report.balanced
    q = report.quarantine_frame().sort_values("line")
    assert q["line"].tolist() == [5, 6]
    assert "dst_port is not a number" in q["reason"].iloc[0]
    assert "fields" in q["reason"].iloc[1]
    with pytest.raises(ParseError, match=r"portscan_bad\.csv:5: dst_port is not a number"):
        t1046lab.read(path, strict=True)


# --- UNSW-NB15 ---------------------------------------------------------------------------


@pytest.mark.shared
def test_unsw_raw_rows(shared):
    path = shared("formats/unsw_nb15_raw_UNSW-NB15_4.csv")
    assert sniff_format(path) == "unsw"
    df = _read(path)
    schema.validate(df, check_ips=True)
    assert len(df) == 4 and df.attrs["read_report"].balanced
    assert df["source_ip"].tolist() == ["59.166.0.9", "59.166.0.2", "175.45.176.0", "175.45.176.1"]
    assert df["destination_port"].tolist() == [25, 53, 80, 0]
    assert df["network_transport"].astype(str).tolist() == ["tcp", "udp", "tcp", "other"]  # the 4th is sctp
    assert df["conn_outcome"].astype(str).tolist() == ["established", "established", "established", "no_reply"]
    assert df["event_start"].iloc[0] == pd.Timestamp(1424250009, unit="s", tz="UTC")
    assert df["label"].tolist() == ["benign"] * 4
    assert df["benign_category"].tolist() == ["normal", "normal", "other_attack", "other_attack"]
    assert df["scenario"].tolist() == ["unsw:Normal", "unsw:Normal", "unsw:Exploits", "unsw:Fuzzers"]
    assert df["source_bytes"].tolist() == [37552, 146, 13304, 440]


@pytest.mark.shared
def test_unsw_training_set_layout(shared):
    path = shared("formats/unsw_nb15_training_set.csv")
    assert sniff_format(path) == "unsw"
    df = _read(path)
    schema.validate(df)
    assert len(df) == 4
    assert df["label"].tolist() == ["benign", "benign", "scan", "scan"]  # Reconnaissance rows
    assert df["scan_type"].isna().all()
    assert df["network_transport"].astype(str).tolist() == ["tcp", "tcp", "tcp", "udp"]
    assert df["conn_outcome"].astype(str).tolist() == ["established", "established", "established", "no_reply"]
    assert df["source_ip"].isna().all()


@pytest.mark.shared
def test_unsw_bad_lines_are_quarantined(shared, tmp_path):
    rows = Path(shared("formats/unsw_nb15_raw_UNSW-NB15_4.csv")).read_text(encoding="utf-8").splitlines()
    broken = rows[1].split(",")
    broken[28] = "yesterday"  # Stime
    path = tmp_path / "UNSW-NB15_bad.csv"
    path.write_text("\n".join([rows[0], ",".join(broken), rows[2], "59.166.0.9,7045,149.171.126.7", rows[3]]) + "\n")
    df = _read(path, format="unsw")
    report = df.attrs["read_report"]
    assert len(df) == 3 and report.records_seen == 5 and report.balanced
    assert sorted(report.quarantine_frame()["line"]) == [2, 4]


# --- CIDDS-001 ---------------------------------------------------------------------------

_CIDDS_HEADER = "Date first seen,Duration,Proto,Src IP Addr,Src Pt,Dst IP Addr,Dst Pt,Packets,Bytes,Flows,Flags,Tos,class,attackType,attackID,attackDescription"


def _cidds_lines() -> tuple[list[str], dict[str, int]]:
    """A CIDDS-001-style export: normal SMB, a SYN scan of 30 ports, a ping sweep of 5 hosts."""
    out = [_CIDDS_HEADER]
    # Normal SMB traffic, both directions (NetFlow is unidirectional), one with scaled bytes.
    out.append("2017-03-15 00:01:16.632,0.000,TCP  ,192.168.100.5,445,192.168.220.16,58844.0,1,108,1,.AP...,0,normal,---,---,---")
    out.append("2017-03-15 00:01:16.552,0.000,TCP  ,192.168.220.16,58844,192.168.100.5,445.0,1,55,1,.AP...,0,normal,---,---,---")
    out.append("2017-03-15 00:01:17.100,12.412,TCP  ,192.168.220.16,58845,192.168.100.5,445.0,812,  1.2 M,1,.APRSF,0,normal,---,---,---")
    out.append("2017-03-15 00:01:17.101,12.410,TCP  ,192.168.100.5,445,192.168.220.16,58845.0,640,48213,1,.AP.SF,0,normal,---,---,---")
    # DNS with its answer, and an unanswered NTP query.
    out.append("2017-03-15 00:02:00.001,0.001,UDP  ,192.168.220.16,53421,192.168.100.3,53.0,1,71,1,......,0,normal,---,---,---")
    out.append("2017-03-15 00:02:00.002,0.000,UDP  ,192.168.100.3,53,192.168.220.16,53421.0,1,135,1,......,0,normal,---,---,---")
    out.append("2017-03-15 00:02:10.000,0.000,UDP  ,192.168.220.16,123,192.168.100.9,123.0,1,76,1,......,0,normal,---,---,---")
    # nmap -sS of 30 ports of one victim: 2 open (SYN/ACK back), 20 closed (RST back), 8 filtered.
    t0 = pd.Timestamp("2017-03-17 14:18:05.201")
    for i, port in enumerate(range(20, 50)):
        t = (t0 + pd.Timedelta(milliseconds=3 * i)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        out.append(f"{t},0.000,TCP  ,192.168.220.15,33465,192.168.220.1,{port}.0,1,58,1,....S.,0,attacker,portScan,1,---")
        if i < 2:
            out.append(f"{t},0.000,TCP  ,192.168.220.1,{port},192.168.220.15,33465.0,1,58,1,.A..S.,0,victim,portScan,1,---")
        elif i < 22:
            out.append(f"{t},0.000,TCP  ,192.168.220.1,{port},192.168.220.15,33465.0,1,54,1,.A.R..,0,victim,portScan,1,---")
    # A ping sweep of 5 addresses: 3 answer (type 0 replies), 2 do not.
    for i in range(5):
        t = f"2017-03-18 10:00:0{i}.000"
        out.append(f"{t},0.000,ICMP ,192.168.220.15,0,192.168.220.{10 + i},8.0,1,42,1,......,0,attacker,pingScan,2,---")
        if i < 3:
            out.append(f"{t},0.000,ICMP ,192.168.220.{10 + i},0,192.168.220.15,0.0,1,42,1,......,0,victim,pingScan,2,---")
    # External traffic without ground truth.
    out.append("2017-03-18 11:00:00.000,0.120,TCP  ,EXT_SERVER,443,10004_35,50112.0,12,9001,1,.AP.SF,0,suspicious,---,---,---")
    counts = {"normal": 7, "portscan_attacker": 30, "portscan_victim": 22, "ping_attacker": 5, "ping_victim": 3, "suspicious": 1}
    return out, counts


def test_cidds_built_sample(tmp_path):
    lines, counts = _cidds_lines()
    path = tmp_path / "CIDDS-001-internal-week3.csv"
    path.write_text("\n".join(lines) + "\n")
    assert sniff_format(path) == "cidds"
    df = _read(path)
    schema.validate(df)
    assert len(df) == sum(counts.values()) == len(lines) - 1
    assert df.attrs["read_report"].balanced
    scan = df[df["scenario"] == "cidds:attacker:portScan"]
    assert len(scan) == 30 and (scan["label"] == "scan").all() and scan["scan_type"].isna().all()
    assert scan["conn_outcome"].astype(str).value_counts().to_dict() == {"rejected": 20, "no_reply": 8, "established": 2}
    assert (df.loc[df["scenario"] == "cidds:victim:portScan", "label"] == "scan").all()
    sweep = df[df["scenario"] == "cidds:attacker:pingScan"]
    assert (sweep["scan_type"] == "icmp_sweep").all() and sweep["destination_port"].isna().all()
    assert sweep["conn_outcome"].astype(str).tolist() == ["established"] * 3 + ["no_reply"] * 2
    assert (sweep["icmp_type"] == 8).all()
    normal = df[df["benign_category"] == "normal"]
    assert len(normal) == counts["normal"]
    assert normal["source_bytes"].max() == 1_200_000  # "1.2 M"
    udp = normal[normal["network_transport"] == "tcp"]
    assert set(udp["conn_outcome"].astype(str)) <= {"established", "partial"}
    assert df.loc[df["source_ip"] == "192.168.220.16", "tcp_flags"].dropna().max() == 1 + 2 + 4 + 8 + 16
    assert (df.loc[df["scenario"] == "cidds:suspicious:---", "benign_category"] == "unknown").all()


def test_cidds_bad_lines_are_quarantined(tmp_path):
    lines, counts = _cidds_lines()
    lines[2] = lines[2].replace("2017-03-15 00:01:16.552", "15/03/2017 00:01")
    lines[5] = lines[5].replace(",53.0,", ",fifty-three,")
    lines.insert(7, "2017-03-15 00:02:11.000,0.000,UDP  ,192.168.220.16")
    path = tmp_path / "cidds.csv"
    path.write_text("\n".join(lines) + "\n")
    df = _read(path, format="cidds")
    report = df.attrs["read_report"]
    assert report.balanced and report.records_quarantined == 3
    assert sorted(report.quarantine_frame()["line"]) == [3, 6, 8]
    assert len(df) == sum(counts.values()) - 2
    with pytest.raises(ParseError, match=r"cidds\.csv:3: Date first seen"):
        t1046lab.read(path, format="cidds", strict=True)


@pytest.mark.shared
def test_cic_cp1252_labels_and_other_attacks(shared, tmp_path):
    """The original CIC-IDS2017 CSVs spell 'Web Attack – Brute Force' with a cp1252 dash."""
    lines = Path(shared("real/cicids2017-sample/BENIGN_5000.csv")).read_text(encoding="utf-8").splitlines()
    header, row = lines[0], lines[1]
    fields = row.split(",")
    label_at = header.split(",").index("Label")
    attack = fields.copy()
    attack[label_at] = "Web Attack \u2013 Brute Force"  # cp1252 byte 0x96
    scan = fields.copy()
    scan[label_at] = "Infiltration - Portscan"
    path = tmp_path / "mixed.csv"
    path.write_bytes(("\n".join([header, row, ",".join(attack), ",".join(scan)]) + "\n").encode("cp1252"))
    df = _read(path)
    assert len(df) == 3 and df.attrs["read_report"].records_quarantined == 0
    assert df["label"].tolist() == ["benign", "benign", "scan"]
    assert df["benign_category"].iloc[:2].tolist() == ["normal", "other_attack"] and pd.isna(df["benign_category"].iloc[2])
    assert df["scenario"].iloc[1] == "cic:Web Attack \u2013 Brute Force"
    assert df["scan_type"].isna().all()


def test_header_only_files_give_an_empty_canonical_frame(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text(_CIDDS_HEADER + "\n")
    df = _read(path, format="cidds")
    assert len(df) == 0 and df.attrs["read_report"].records_seen == 0
    schema.validate(df)
