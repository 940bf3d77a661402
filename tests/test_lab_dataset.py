"""The bundled lab datasets in data/lab-smoke and data/lab-full: its files agree with each other and its datasheet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from t1046lab import schema
from t1046lab.datasets.lab.datasheet import count_pcap_packets, datasheet_markdown
from t1046lab.datasets.lab.groundtruth import (
    GROUND_TRUTH_COLUMNS,
    probe_coverage,
    read_ground_truth,
)
from t1046lab.datasets.lab.scenarios import get_scenario

data_dir_ROOT = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module", params=["lab-smoke", "lab-full"])
def lab_data(request):
    directory = data_dir_ROOT / request.param
    conns = pd.read_parquet(directory / "connections.parquet")
    gt = read_ground_truth(directory / "ground_truth.csv")
    return conns, gt, directory


def test_datasheet_matches_the_files(lab_data):
    _, _, data_dir = lab_data
    assert (data_dir / "README.md").read_text(encoding="utf-8") == datasheet_markdown(data_dir)


def test_connections_are_canonical_and_labelled(lab_data):
    conns, gt, data_dir = lab_data
    schema.validate(conns)
    assert list(gt.columns) == GROUND_TRUTH_COLUMNS
    scenario = data_dir.name.removeprefix("lab-")
    assert list(gt["activity_id"]) == [a.id for a in get_scenario(scenario).activities]
    assert set(conns["label"].astype(str)) == {"scan", "benign"}
    assert (conns["scenario"] == scenario).all()
    scan = conns[conns["label"] == "scan"]
    assert scan["scan_type"].notna().all() and scan["benign_category"].isna().all()
    benign = conns[conns["label"] == "benign"]
    assert benign["benign_category"].notna().all() and benign["scan_type"].isna().all()
    # every activity shows up, with its own label
    expected = gt.set_index("activity_id")
    for activity_id, rows in conns.dropna(subset=["lab_activity_id"]).groupby("lab_activity_id"):
        truth = expected.loc[activity_id]
        assert (rows["label"] == truth["label"]).all()
        assert (rows["event_start"] >= truth["start_utc"] - pd.Timedelta(seconds=1)).all()
        assert (rows["event_start"] <= truth["end_utc"] + pd.Timedelta(seconds=1)).all()
    assert set(conns["lab_activity_id"].dropna()) == set(gt["activity_id"])


def test_every_activity_probed_what_it_was_told_in_the_bundled_data(lab_data):
    conns, gt, data_dir = lab_data
    scen = get_scenario(data_dir.name.removeprefix("lab-"))
    cov = probe_coverage(conns, gt, scen)
    expected_rows = sum(len(a.targets) for a in scen.activities if a.expect_ports or a.expect_icmp)
    assert len(cov) == expected_rows
    ports = cov.dropna(subset=["expected"])
    assert (ports["seen"] == ports["expected"]).all(), ports[ports["seen"] < ports["expected"]].to_string()
    assert (cov.dropna(subset=["icmp_echo"])["icmp_echo"] >= 1).all()
    if scen.name == "full":  # decoys: a full copy of the scan from each spoofed address
        for decoy in gt.set_index("activity_id").loc["scan-decoy", "source_addresses"].split()[1:]:
            rows = conns[(conns["source_ip"] == decoy) & (conns["lab_activity_id"] == "scan-decoy")]
            assert rows["destination_port"].nunique() == 30
        masscan = conns[conns["lab_activity_id"] == "scan-masscan"]
        assert len(masscan) == masscan[["destination_ip", "destination_port"]].drop_duplicates().shape[0] == 40
        # each probe once: the router's forwarded copy is not in the capture
        dead = masscan[masscan["destination_ip"].isin(["10.146.46.20", "10.146.46.21", "10.146.46.22", "10.146.46.23"])]
        assert len(dead) == 20 and (dead["source_packets"] == 1).all()
    syn = gt.set_index("activity_id").loc["scan-syn"]
    rows = conns[(conns["source_ip"] == syn["source_addresses"]) & (conns["destination_ip"] == syn["targets"])]
    assert rows["destination_port"].nunique() == 104
    sweep = gt.set_index("activity_id").loc["scan-ping-sweep"]
    echo = conns[(conns["source_ip"] == sweep["source_addresses"]) & (conns["network_transport"] == "icmp")]
    assert set(echo["destination_ip"]) == set(sweep["targets"].split())


def test_capture_is_small_and_whole(lab_data):
    _, _, data_dir = lab_data
    size = sum(p.stat().st_size for p in data_dir.iterdir())
    assert size < 5_000_000
    assert count_pcap_packets(data_dir / "capture.pcap") > 1000
