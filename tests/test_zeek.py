"""Zeek conn.log readers (TSV and JSON lines) on the real samples in ../shared/data.

Expected counts are computed here from the raw files with plain Python (split on the
separator, ``json.loads``), independently of the reader's vectorised code.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from t1046lab import schema
from t1046lab.exceptions import DataQualityWarning, ParseError
from t1046lab.io import iter_read, read, sniff_format
from t1046lab.io.zeek import CONN_STATE_OUTCOMES

STRATOSPHERE = "real/stratosphere-008/conn.log.labeled"
FORMATS = "formats/"

# --- an independent, plain-Python statement of the mapping documented in zeek.py -----------

_ESTABLISHED = {"S1", "SF", "S2", "S3", "RSTO", "RSTR"}


def _bare_syn(history: str) -> bool:
    """Only originator SYN (and RST/FIN/other upper-case letters but A and D), nothing back."""
    body = history[1:] if history.startswith("^") else history
    return "S" in body and not any(c.islower() or c in "AD" for c in body)


def expected_outcome(proto: str, state: str | None, history: str | None, orig_h: str, orig_p: int, resp_pkts: int | None) -> str:
    if proto == "icmp":
        v6 = ":" in orig_h
        probes, replies, unreach = ((128, 139), (129, 140), 1) if v6 else ((8, 13, 15, 17), (0, 14, 16, 18), 3)
        if orig_p == unreach:
            return "icmp_unreachable"
        if orig_p in probes:
            if resp_pkts is None:
                return "unknown"
            return "established" if resp_pkts > 0 else "no_reply"
        if orig_p in replies:
            return "partial"
        return "unknown"
    if state is None:
        return "unknown"
    if proto == "udp":
        return {"S0": "no_reply", "SF": "established", "SHR": "partial"}.get(state, "unknown")
    if proto != "tcp":
        return "unknown"
    if state in _ESTABLISHED:
        return "established"
    if state == "REJ":
        return "rejected"
    if state in ("S0", "RSTOS0", "SH"):
        if history is None:
            return "partial" if state == "SH" else "no_reply"
        return "no_reply" if _bare_syn(history) else "partial"
    return "partial"  # RSTRH, SHR, OTH


def _records_tsv(path: Path, ts_substitute: bool = False) -> list[dict[str, str | None]]:
    """Plain-Python parse: '# ' comment lines stripped (as the SOURCE notes say)."""
    fields: list[str] = []
    rows = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
        if line.startswith("# ") or not line:
            continue
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
            continue
        if line.startswith("#"):
            continue
        values = line.split("\t")
        row = {f: (None if v == "-" else v) for f, v in zip(fields, values)}
        if ts_substitute:
            row["ts"] = str(1_600_000_000 + number)
        row["_line"] = number
        rows.append(row)
    return rows


def _expected_from_tsv(rows) -> Counter:
    return Counter(
        expected_outcome(
            r["proto"], r.get("conn_state"), r.get("history"), r["id.orig_h"], int(r["id.orig_p"]),
            None if r.get("resp_pkts") is None else int(r["resp_pkts"]),
        )
        for r in rows
    )


def _outcomes(df: pd.DataFrame) -> Counter:
    return Counter({k: v for k, v in df["conn_outcome"].astype(str).value_counts().items() if v})


def _clean(df: pd.DataFrame) -> None:
    report = df.attrs["read_report"]
    assert report.balanced
    assert report.records_used == report.rows_produced == len(df)
    schema.validate(df, check_ips=True)


# --- the real Stratosphere log -----------------------------------------------------------------


@pytest.fixture(scope="module")
def strato(request):
    from conftest import shared_file

    path = shared_file(STRATOSPHERE)
    return path, read(path)


def test_stratosphere_one_row_per_record_with_labels(strato):
    path, df = strato
    rows = _records_tsv(path)
    assert len(rows) == 5663
    assert len(df) == 5663
    report = df.attrs["read_report"]
    assert report.records_seen == 5663 and report.records_quarantined == 0
    assert report.format == "zeek" and sniff_format(path) == "zeek"
    _clean(df)
    assert Counter(df["dataset_label"]) == Counter(r["label"] for r in rows)
    assert Counter(df["dataset_detailed_label"]) == Counter(("" if r["detailedlabel"] == "(empty)" else r["detailedlabel"]) for r in rows)
    assert df["dataset_label"].dtype == "string" and "label" not in df.columns


def test_stratosphere_outcomes_follow_conn_state(strato):
    path, df = strato
    rows = _records_tsv(path)
    assert _outcomes(df) == _expected_from_tsv(rows)
    # the headline numbers a reader of this capture expects: Internet background scanning of
    # one exposed host, almost all unanswered SYNs
    by_state = Counter(r["conn_state"] for r in rows if r["proto"] == "tcp")
    s0_bare = sum(1 for r in rows if r["proto"] == "tcp" and r["conn_state"] == "S0" and r["history"] == "S")
    assert _outcomes(df)["rejected"] == by_state["REJ"] == 5
    assert s0_bare == 3818
    inbound = df[df["dataset_label"] == "Malicious"]
    assert (inbound["destination_ip"] == "147.32.81.167").all()
    assert inbound["conn_outcome"].isin(list(schema.FAILED_OUTCOMES)).mean() > 0.9


def test_stratosphere_values_are_converted(strato):
    path, df = strato
    rows = _records_tsv(path)
    first = rows[0]
    row = df.iloc[0]
    secs, frac = first["ts"].split(".")
    assert row["event_start"] == pd.Timestamp(int(secs) * 10**9 + int(frac.ljust(9, "0")), tz="UTC")  # exact to the microsecond
    assert str(row["event_start"]) == "2022-06-12 21:59:58.444458+00:00"
    assert row["source_ip"] == first["id.orig_h"] and row["destination_port"] == int(first["id.resp_p"])
    assert row["event_duration_s"] == pytest.approx(float(first["duration"]))
    assert row["source_bytes"] == int(first["orig_bytes"]) and row["destination_packets"] == int(first["resp_pkts"])
    assert row["zeek_uid"] == first["uid"] and row["zeek_history"] == first["history"] and row["zeek_service"] == "ssl"
    # unset duration/bytes ("-") become missing values, not zeros
    unset = [i for i, r in enumerate(rows) if r["duration"] is None]
    assert unset and df["event_duration_s"].iloc[unset].isna().all() and df["source_bytes"].iloc[unset].isna().all()
    # ICMP: type and code from the ports, ports missing
    icmp = df[df["network_transport"] == "icmp"]
    raw_icmp = [r for r in rows if r["proto"] == "icmp"]
    assert len(icmp) == len(raw_icmp) == 20
    assert icmp["source_port"].isna().all() and icmp["destination_port"].isna().all()
    assert Counter(icmp["icmp_type"].astype(int)) == Counter(int(r["id.orig_p"]) for r in raw_icmp)
    unreachable = icmp[icmp["icmp_type"] == 3]
    assert (unreachable["icmp_code"] == 3).all() and (unreachable["conn_outcome"] == "icmp_unreachable").all()
    echo = icmp[icmp["icmp_type"] == 8]
    assert (echo["icmp_code"] == 0).all() and (echo["conn_outcome"] == "no_reply").all()


def test_stratosphere_gzip_reads_the_same_frame(strato, tmp_path):
    path, df = strato
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    again = read(gz)
    assert again.attrs["read_report"].records_seen == 5663
    pd.testing.assert_frame_equal(again, df)


def test_stratosphere_in_chunks_equals_whole(strato):
    path, df = strato
    chunks = list(iter_read(path, chunksize=1000))
    assert len(chunks) >= 5 and all(len(c) <= 1000 for c in chunks)
    whole = pd.concat(chunks, ignore_index=True)
    pd.testing.assert_frame_equal(whole, df, check_categorical=False)


# --- the format samples ------------------------------------------------------------------------


def test_zeek_conn_log_tls_sample(shared):
    path = shared(FORMATS + "zeek_conn.log")
    df = read(path)
    _clean(df)
    assert len(df) == 1 and _outcomes(df) == {"established": 1} == _expected_from_tsv(_records_tsv(path))
    report = df.attrs["read_report"]
    assert report.records_seen == 1  # the '# SOURCE' comments, headers and #close are not records
    assert any("comment lines" in n for n in report.notes)
    assert df["zeek_service"].iloc[0] == "http,ssl" and df["source_bytes"].iloc[0] == 10853


def test_zeek_btest_sample_with_real_timestamps(shared, tmp_path):
    path = shared(FORMATS + "zeek_conn_btest_masked.log")
    # the btest baselines mask ts; substitute a real epoch (one second per line), as the SOURCE note asks
    lines = path.read_text("utf-8").splitlines()
    fixed = [line.replace("XXXXXXXXXX.XXXXXX", f"{1_600_000_000 + i}.250000") for i, line in enumerate(lines, start=1)]
    target = tmp_path / "conn.log"
    target.write_text("\n".join(fixed) + "\n")
    df = read(target)
    _clean(df)
    rows = _records_tsv(path, ts_substitute=True)
    assert len(df) == len(rows) == 16
    expected = _expected_from_tsv(rows)
    assert _outcomes(df) == expected
    assert expected == {"established": 4, "rejected": 3, "no_reply": 3, "partial": 3, "unknown": 3}
    by_state = df.groupby("zeek_conn_state", observed=True)["conn_outcome"].agg(lambda s: sorted(set(map(str, s))))
    assert by_state["REJ"] == ["rejected"] and by_state["SHR"] == ["partial"] and by_state["RSTRH"] == ["partial"]
    # the IPv6 neighbour solicitation: ICMPv6, type 135, code 0 (resp_p 136 is its counterpart type)
    nd = df[df["network_transport"] == "icmpv6"]
    assert len(nd) == 1 and nd["icmp_type"].iloc[0] == 135 and nd["icmp_code"].iloc[0] == 0
    assert nd["conn_outcome"].iloc[0] == "unknown" and pd.isna(nd["source_port"].iloc[0])
    other = df[df["network_transport"] == "other"]
    assert len(other) == 2 and (other["conn_outcome"] == "unknown").all()
    assert str(df["event_start"].iloc[0]).endswith(".250000+00:00")


def test_zeek_btest_sample_masked_ts_is_quarantined(shared):
    path = shared(FORMATS + "zeek_conn_btest_masked.log")
    with pytest.warns(DataQualityWarning):
        df = read(path)
    report = df.attrs["read_report"]
    assert len(df) == 0 and report.records_seen == 16 and report.quarantine_reasons == {"ts is not a timestamp": 16}
    first_data_line = _records_tsv(path)[0]["_line"]
    assert report.quarantine_frame()["line"].iloc[0] == first_data_line
    with pytest.raises(ParseError) as info:
        read(path, strict=True)
    assert info.value.line == first_data_line and str(path) in str(info.value) and f":{first_data_line}:" in str(info.value)


def test_zeek_horizontal_scan_sample(shared):
    path = shared(FORMATS + "zeek_conn_portscan_horizontal.log")
    df = read(path)
    _clean(df)
    rows = _records_tsv(path)
    assert _outcomes(df) == _expected_from_tsv(rows) == {"no_reply": 7, "established": 3}
    assert str(df["event_start"].iloc[0]) == "1970-01-01 00:15:29.052075+00:00"  # anonymised epoch, kept as is
    assert df["zeek_service"].isna().sum() == 8


def _json_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _expected_from_json(rows) -> Counter:
    return Counter(
        expected_outcome(r["proto"], r.get("conn_state"), r.get("history"), r["id.orig_h"], r["id.orig_p"], r.get("resp_pkts"))
        for r in rows
    )


@pytest.mark.parametrize(
    "name, expected",
    [("zeek_conn.json", {"established": 2, "no_reply": 1}), ("zeek_conn_portscan_vertical.json", {"rejected": 10, "established": 4})],
)
def test_zeek_json_samples(shared, name, expected):
    path = shared(FORMATS + name)
    assert sniff_format(path) == "zeek-json"
    df = read(path)
    _clean(df)
    rows = _json_rows(path)
    assert len(df) == len(rows)
    assert _outcomes(df) == _expected_from_json(rows) == expected
    assert list(df["zeek_uid"]) == [r["uid"] for r in rows]
    # JSON omits unset fields: the UDP S0 broadcast in zeek_conn.json has no duration or bytes
    missing = [i for i, r in enumerate(rows) if "duration" not in r]
    assert df["event_duration_s"].iloc[missing].isna().all()
    assert (df["event_start"] == pd.to_datetime([r["ts"] for r in rows], unit="s", utc=True).round("us")).all()


def test_vertical_connect_scan_open_ports_are_established(shared):
    df = read(shared(FORMATS + "zeek_conn_portscan_vertical.json"))
    shar = df[df["zeek_history"] == "ShAR"]  # nmap connect() scan of an open port: RSTO
    assert len(shar) == 2 and (shar["conn_outcome"] == "established").all()
    assert (df[df["zeek_history"] == "Sr"]["conn_outcome"] == "rejected").all()


# --- header handling -------------------------------------------------------------------------


def test_concatenated_logs_with_different_headers(shared, tmp_path):
    """Rotated logs cat'ed together: each block has its own #fields (order and subset differ)."""
    horizontal = shared(FORMATS + "zeek_conn_portscan_horizontal.log").read_text("utf-8")
    tls = shared(FORMATS + "zeek_conn.log").read_text("utf-8")
    # a third block: the horizontal log with its columns reversed and only some of them
    lines = horizontal.splitlines()
    keep = ["history", "conn_state", "id.resp_p", "id.resp_h", "proto", "id.orig_p", "id.orig_h", "ts"]
    fields = lines[6].split("\t")[1:]
    pos = [fields.index(k) for k in keep]
    block = ["#separator \\x09", "#fields\t" + "\t".join(keep)]
    block += ["\t".join(line.split("\t")[p] for p in pos) for line in lines[8:]]
    target = tmp_path / "conn.log"
    target.write_text(horizontal + "#close\t2015-11-18-16-40-00\n" + tls + "\n".join(block) + "\n")
    df = read(target)
    _clean(df)
    assert len(df) == 10 + 1 + 10
    assert df.attrs["read_report"].records_seen == 21
    first, last = df.iloc[:10].reset_index(drop=True), df.iloc[11:].reset_index(drop=True)
    for column in ("event_start", "source_ip", "destination_port", "conn_outcome", "zeek_history"):
        pd.testing.assert_series_equal(first[column], last[column])
    assert last["source_bytes"].isna().all()  # not in that block's #fields


def test_other_separator_and_markers(shared, tmp_path):
    path = shared(FORMATS + "zeek_conn_portscan_horizontal.log")
    text = path.read_text("utf-8")
    body = text.replace("#separator \\x09", "#separator \\x7c").replace("\t", "|")
    body = body.replace("#unset_field|-", "#unset_field|NONE").replace("|-|", "|NONE|").replace("|-|", "|NONE|")
    target = tmp_path / "pipe.log"
    target.write_text(body)
    assert sniff_format(target) == "zeek"
    pd.testing.assert_frame_equal(read(target), read(path))


def test_headerless_log_with_fields_option(shared, tmp_path):
    path = shared(FORMATS + "zeek_conn_portscan_horizontal.log")
    lines = path.read_text("utf-8").splitlines()
    fields = lines[6].split("\t")[1:]
    target = tmp_path / "stripped.log"
    target.write_text("\n".join(lines[8:]) + "\n")
    with pytest.warns(DataQualityWarning):
        assert len(read(target, format="zeek")) == 0  # no header: quarantined, not guessed
    pd.testing.assert_frame_equal(read(target, format="zeek", fields=fields), read(path))


def test_header_missing_a_required_field_quarantines_its_block(shared, tmp_path):
    path = shared(FORMATS + "zeek_conn_portscan_horizontal.log")
    text = path.read_text("utf-8").replace("\tid.orig_h\t", "\tid.orig_host\t")
    target = tmp_path / "conn.log"
    target.write_text(text)
    with pytest.warns(DataQualityWarning):
        df = read(target)
    report = df.attrs["read_report"]
    assert len(df) == 0 and report.records_seen == report.records_quarantined == 10
    assert "lacks id.orig_h" in next(iter(report.quarantine_reasons))
    with pytest.raises(ParseError) as info:
        read(target, strict=True)
    assert info.value.line == 7  # the #fields line


def test_sniffers_do_not_claim_each_other(shared, tmp_path):
    assert sniff_format(shared(FORMATS + "zeek_conn.log")) == "zeek"
    assert sniff_format(shared(FORMATS + "zeek_conn_btest_masked.log")) == "zeek"
    assert sniff_format(shared(FORMATS + "zeek_conn_portscan_horizontal.log")) == "zeek"
    dns = tmp_path / "dns.log"
    dns.write_text("#separator \\x09\n#path\tdns\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tquery\n")
    from t1046lab.io.zeek import _sniff_json, _sniff_tsv

    assert not _sniff_tsv(dns.read_bytes(), "dns.log")
    assert not _sniff_json(b'{"ts":1,"id.orig_h":"10.0.0.1","query":"example.com"}\n', "dns.json")
    assert not _sniff_tsv(b"event_start,conn_outcome\n", "x.csv")


# --- JSON variants -----------------------------------------------------------------------------


def test_json_iso_timestamps_and_nested_id(shared, tmp_path):
    path = shared(FORMATS + "zeek_conn_portscan_vertical.json")
    rows = _json_rows(path)
    variant = []
    for i, r in enumerate(rows):
        r = dict(r)
        r["ts"] = pd.Timestamp(r["ts"], unit="s", tz="UTC").round("us").strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if i % 2:
            r["id"] = {k[3:]: r.pop(k) for k in list(r) if k.startswith("id.")}
        variant.append(json.dumps(r))
    target = tmp_path / "conn.json"
    target.write_text("\n".join(variant) + "\n")
    df = read(target)
    _clean(df)
    pd.testing.assert_frame_equal(df, read(path))


def test_json_bad_lines_are_quarantined_with_line_numbers(shared, tmp_path):
    path = shared(FORMATS + "zeek_conn_portscan_vertical.json")
    lines = path.read_text("utf-8").splitlines()
    lines[2] = lines[2][:-40]  # truncated object
    lines[5] = lines[5].replace('"id.orig_p":42992', '"id.orig_p":"http"')  # wrong type
    lines[7] = json.dumps({k: v for k, v in json.loads(lines[7]).items() if k != "id.resp_h"})  # required key missing
    lines.insert(9, "")  # a blank line is not a record
    target = tmp_path / "conn.json"
    target.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        df = read(target)
    report = df.attrs["read_report"]
    assert report.records_seen == 14 and len(df) == 11 and report.balanced
    q = report.quarantine_frame().sort_values("line")
    assert list(q["line"]) == [3, 6, 8]
    assert q["reason"].iloc[0].startswith("not valid JSON")
    assert q["reason"].iloc[1] == "id.orig_p is not a port number"
    assert q["reason"].iloc[2] == "id.resp_h is unset or missing"
    with pytest.raises(ParseError) as info:
        read(target, strict=True)
    assert info.value.line == 3


def test_outcome_table_covers_every_zeek_state():
    assert set(CONN_STATE_OUTCOMES) == {"S0", "S1", "S2", "S3", "SF", "REJ", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"}
    for state, rule in CONN_STATE_OUTCOMES.items():
        assert rule.meaning and rule.tcp in schema.Outcome and rule.udp in schema.Outcome, state
