"""The enterprise simulator: determinism, streaming, labels, and counts from its own plan."""

from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd
import pytest

import t1046lab
from t1046lab import schema
from t1046lab.datasets import _benign, _scans, enterprise_plan, simulate_enterprise
from t1046lab.datasets.simulate import BENIGN_CATEGORIES, SCAN_TYPES

# A Tuesday, so the weekly sanctioned scan runs; one scan of every type.
ARGS = {"n_hosts": 40, "days": 1, "scans": "all", "start": "2026-01-06", "random_state": 11}
DAY_S = 86_400


@pytest.fixture(scope="module")
def day():
    return simulate_enterprise(**ARGS)


@pytest.fixture(scope="module")
def plan():
    return enterprise_plan(**ARGS)


def assert_same_frame(left: pd.DataFrame, right: pd.DataFrame, loose: tuple[str, ...] = ()) -> None:
    """Column-wise equality; categoricals by dtype and codes (pandas' own check is slow on them)."""
    assert list(left.columns) == list(right.columns) and len(left) == len(right)
    for column in left.columns:
        a, b = left[column], right[column]
        if isinstance(a.dtype, pd.CategoricalDtype):
            assert a.dtype == b.dtype, column
            np.testing.assert_array_equal(a.cat.codes.to_numpy(), b.cat.codes.to_numpy(), err_msg=column)
        elif column in loose:
            pd.testing.assert_series_equal(a.astype(object), b.astype(object), obj=column)
        else:
            pd.testing.assert_series_equal(a, b, obj=column)


def _u32(addresses: pd.Series) -> np.ndarray:
    return np.array([int(ipaddress.IPv4Address(a)) for a in addresses], dtype=np.uint32)


def test_frame_is_canonical_and_labelled(day):
    schema.validate(day, check_ips=True)
    assert (day["log_format"] == "simulated").all()
    assert day["event_start"].is_monotonic_increasing
    assert set(day["label"]) == {"scan", "benign"}
    scans = day[day["label"] == "scan"]
    assert scans["scan_type"].notna().all() and scans["benign_category"].isna().all() and scans["scan_id"].notna().all()
    benign = day[day["label"] == "benign"]
    assert benign["scan_type"].isna().all() and benign["benign_category"].notna().all()
    assert set(day["scan_type"].dropna()) == set(SCAN_TYPES)
    assert set(day["benign_category"].dropna()) == set(BENIGN_CATEGORIES)
    icmp = day["network_transport"] == "icmp"
    assert day.loc[icmp, "destination_port"].isna().all() and (day.loc[icmp, "icmp_type"] == 8).all()


def test_same_seed_same_rows_other_seed_other_rows(day):
    again = simulate_enterprise(**ARGS)
    assert_same_frame(day, again)
    other = simulate_enterprise(**{**ARGS, "random_state": 12})
    assert len(other) != len(day) or not other["source_port"].equals(day["source_port"])


def test_each_scan_has_the_rows_its_plan_implies(day, plan):
    table = plan.scan_table().set_index("scan_id")
    assert sorted(table["scan_type"]) == sorted(SCAN_TYPES)
    for scan_id, spec in table.iterrows():
        rows = day[day["scan_id"] == scan_id]
        assert (rows["scan_type"] == spec["scan_type"]).all()
        probes = rows[rows["scenario"] != "scan:version-service-probe"]
        expected = spec["n_targets"] * max(spec["n_ports"], 1) * (1 + spec["n_decoys"])
        assert len(probes) == expected, scan_id
        assert probes["destination_ip"].nunique() <= spec["n_targets"]
        if spec["n_ports"]:
            assert probes["destination_port"].nunique() == spec["n_ports"]
        assert probes["source_ip"].nunique() == spec["n_sources"] + spec["n_decoys"]
        assert probes["network_transport"].astype(str).eq(spec["transport"]).all()


def test_scan_shapes(day, plan):
    by_type = {s.scan_type: s for s in plan.scans}
    rows = {t: day[day["scan_type"] == t] for t in SCAN_TYPES}
    assert rows["vertical"]["destination_ip"].nunique() == 1 and len(rows["vertical"]) == 1000
    assert rows["horizontal"]["destination_port"].nunique() == 1
    assert rows["horizontal"]["destination_ip"].nunique() == len(by_type["horizontal"].targets)
    # A slow scan: a few probes per five-minute window, for hours.
    slow = rows["slow"].set_index("event_start")
    assert slow.resample("5min").size().max() <= 5
    assert slow.index.max() - slow.index.min() > pd.Timedelta(hours=3)
    # Distributed: the port range is split between the sources, each port probed once.
    dist = rows["distributed"]
    assert dist["destination_port"].is_unique and dist.groupby("source_ip").size().min() >= 200
    # Decoy: the real scan and four spoofed copies, probe for probe.
    decoy = rows["decoy"]
    per_source = decoy.groupby("source_ip")["destination_port"].apply(lambda p: tuple(sorted(p)))
    assert per_source.nunique() == 1 and (decoy["scenario"] == "scan:decoy-spoofed").sum() == 4 * 100
    # Stealth probes never complete a handshake; closed ports answer RST.
    stealth = rows["stealth"]
    assert not (stealth["conn_outcome"] == "established").any()
    assert set(stealth["tcp_flags"] & ~np.int32(4 | 16)) == {_scans.STEALTH_FLAGS[by_type["stealth"].variant]}
    # Version scan: three service probes to each port the SYN scan found open.
    version = rows["version"]
    syn = version[version["scenario"] == "scan:version"]
    probes = version[version["scenario"] == "scan:version-service-probe"]
    assert len(probes) == _scans.VERSION_PROBES_PER_OPEN_PORT * int((syn["conn_outcome"] == "established").sum())
    assert (probes["destination_bytes"] > 0).all()
    assert (rows["udp"]["network_transport"] == "udp").all() and (rows["icmp_sweep"]["network_transport"] == "icmp").all()


def test_targets_answer_from_the_response_model(day, plan):
    net = plan.network
    probes = day[(day["label"] == "scan") & (day["scenario"] != "scan:version-service-probe") & (day["scan_type"] != "stealth")]
    codes = net.respond(_u32(probes["destination_ip"]), probes["destination_port"].fillna(0).to_numpy(dtype=np.int64), probes["network_transport"].astype(str).map({"tcp": 0, "udp": 1, "icmp": 2}).to_numpy())
    from t1046lab.datasets._blocks import OUTCOMES

    assert (probes["conn_outcome"].astype(str).to_numpy() == np.array(OUTCOMES)[codes]).all()
    # Realistic mixes: a sweep of a subnet mostly meets empty addresses, servers RST closed ports.
    assert set(probes["conn_outcome"].astype(str)) >= {"established", "rejected", "no_reply"}


def test_benign_counts_follow_the_schedules(day, plan):
    net = plan.network
    per_day = lambda interval: DAY_S // interval
    counts = day.groupby("scenario").size()
    assert counts["prometheus-scrape"] == len(net.scrape_targets) * per_day(_benign.SCRAPE_INTERVAL_S)
    assert day.loc[day["scenario"] == "prometheus-scrape", "destination_port"].eq(9100).all()
    assert counts["uptime-check"] == len(net.roles["web_server"]) * per_day(_benign.UPTIME_INTERVAL_S)
    probes = counts["kubelet-liveness-probe"] + counts["kubelet-readiness-probe"]
    assert probes == len(net.roles["k8s_pod"]) * per_day(_benign.PROBE_INTERVAL_S)
    targets, ports = _benign.sanctioned_targets(net)
    assert counts["weekly-vulnerability-scan"] == len(targets) * len(ports)
    sanctioned = day[day["benign_category"] == "sanctioned_scanner"]
    assert sanctioned["scan_id"].nunique() == 1 and sanctioned["scan_id"].iloc[0] == "sanctioned-2026-01-06"
    clients = len(net.backup_clients)
    assert counts["nightly-backup-fan-out"] == clients and counts["nightly-backup-fan-in"] == _benign.BACKUP_STREAMS * clients
    # The NAT gateway is one address talking to many destinations.
    nat = day[day["benign_category"] == "nat_gateway"]
    assert nat["source_ip"].nunique() == 1 and nat["destination_ip"].nunique() > 500
    # Pods reach many services on many ports.
    sd = day[day["benign_category"] == "service_discovery"]
    assert sd.groupby("source_ip")["destination_ip"].nunique().min() >= 10


def test_outcome_mix_and_rhythm():
    plan = enterprise_plan(n_hosts=40, days=6, scans=None, random_state=5)  # Monday .. Saturday
    monday, saturday = plan.day_frame(0), plan.day_frame(5)
    office = monday[monday["sim_source_role"] == "workstation"]
    hours = office["event_start"].dt.hour.value_counts()
    hours = hours.reindex(range(24), fill_value=0)
    assert hours.loc[9:16].min() > 5 * hours.loc[0:5].max()
    assert len(saturday[saturday["sim_source_role"] == "workstation"]) < 0.3 * len(office)
    tcp = office[office["network_transport"] == "tcp"]["conn_outcome"].astype(str).value_counts(normalize=True)
    assert tcp["established"] > 0.9 and 0.002 < tcp["rejected"] < 0.05 and 0.005 < tcp["no_reply"] < 0.06
    assert (monday["label"] == "benign").all()


@pytest.mark.slow
def test_streaming_to_parquet_gives_the_same_rows(tmp_path):
    args = {"n_hosts": 30, "days": 2, "scans": {"vertical": 1, "slow": 1}, "random_state": 3}
    memory = simulate_enterprise(**args, chunk_days=2)
    path = simulate_enterprise(**args, out=tmp_path / "sim.parquet", chunk_days=1)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).metadata.num_row_groups == 2
    streamed = t1046lab.read(path, format="canonical")
    schema.validate(streamed)
    assert_same_frame(memory, streamed, loose=("scan_id", "sim_source_role"))
    assert memory.attrs["simulation"]["scans"][0]["scan_type"] == "vertical"


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown scan types"):
        enterprise_plan(scans=["vertical", "teleport"])
    with pytest.raises(ValueError, match="at least 30"):
        enterprise_plan(n_hosts=5)
    with pytest.raises(ValueError, match="days"):
        simulate_enterprise(days=0)


def test_cli_simulate(tmp_path, capsys):
    from t1046lab.cli import main

    out = tmp_path / "cli.parquet"
    assert main(["simulate", "--hosts", "30", "--days", "1", "--scans", "vertical=2,slow", "--seed", "4", "-o", str(out)]) == 0
    assert "rows" in capsys.readouterr().out
    frame = t1046lab.read(out, format="canonical")
    assert frame.groupby("scan_type").size().to_dict() == {"slow": 150, "vertical": 2000}
    assert frame["scan_id"].dropna().str.startswith("scan-").sum() == 2150
