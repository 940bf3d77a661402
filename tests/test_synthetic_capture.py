"""The bundled synthetic capture: regenerates byte for byte and reads into the documented counts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

import t1046lab

HERE = Path(__file__).resolve().parents[1] / "data" / "synthetic-capture"


def _make_module():
    spec = importlib.util.spec_from_file_location("synthetic_capture_make", HERE / "make.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerates_identically(tmp_path):
    make = _make_module()
    packets, _ = make.build(random_state=0)
    path = tmp_path / "again.pcap"
    make.pw.write_pcap(path, packets)
    assert path.read_bytes() == (HERE / "synthetic-capture.pcap").read_bytes()
    other, _ = make.build(random_state=1)
    assert other != packets


def test_counts_per_activity_match_the_datasheet():
    df = t1046lab.read(HERE / "synthetic-capture.pcap")
    rep = df.attrs["read_report"]
    assert (rep.records_seen, rep.records_used, rep.records_skipped, rep.records_quarantined) == (2909, 2901, 8, 0)
    acts = pd.read_csv(HERE / "activities.csv", parse_dates=["start", "end"])
    activity = pd.Series("workstation", index=df.index)
    for a in acts[acts["label"] == "scan"].itertuples():
        inside = (df["source_ip"] == a.actor) & (df["event_start"] >= a.start) & (df["event_start"] <= a.end)
        activity[inside] = a.activity
    table = pd.crosstab(activity, df["conn_outcome"].astype(str))
    expected = {
        "workstation": {"established": 89, "rejected": 1, "unknown": 6},
        "syn-scan": {"established": 3, "rejected": 1016, "no_reply": 5},
        "udp-scan": {"established": 3, "no_reply": 18, "icmp_unreachable": 39},
        "ping-sweep": {"established": 5, "no_reply": 248},
    }
    for name, counts in expected.items():
        got = {k: int(v) for k, v in table.loc[name].items() if v}
        assert got == counts, name
    syn = df[activity == "syn-scan"]
    assert sorted(syn.loc[syn["conn_outcome"] == "established", "destination_port"]) == [22, 80, 443]
    assert sorted(syn.loc[syn["conn_outcome"] == "no_reply", "destination_port"]) == [135, 137, 138, 139, 445]
