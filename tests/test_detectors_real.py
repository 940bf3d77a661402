"""The classic detectors on real third-party captures: what each alerts must match the data.

* ``real/pcap/synscan.pcapng``: an nmap SYN scan of 1,000 ports, 172.16.0.8 -> 64.13.134.52
  (3 open, 4 closed, 993 filtered), in 23 seconds.
* ``real/stratosphere-008/conn.log.labeled``: a Zeek conn.log of one exposed Windows host,
  147.32.81.167, for a day: every inbound flow is Internet scanning, the host's own outbound
  traffic is benign.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from t1046lab import detect, read
from t1046lab.alerts import validate_alerts

pytestmark = pytest.mark.shared

SCANNER, TARGET = "172.16.0.8", "64.13.134.52"
EXPOSED = "147.32.81.167"
CLASSIC = ["zeek-scan", "simple-scan", "snort-portscan", "trw"]


@pytest.fixture(scope="module")
def synscan(request):
    pytest.importorskip("t1046lab.io.pcap", reason="the pcap reader is not merged yet")
    from conftest import shared_file

    return read(shared_file("real/pcap/synscan.pcapng"), format="pcap")


@pytest.fixture(scope="module")
def stratosphere():
    pytest.importorskip("t1046lab.io.zeek", reason="the Zeek reader is not merged yet")
    from conftest import shared_file

    return read(shared_file("real/stratosphere-008/conn.log.labeled"), format="zeek")


def _failed_tcp(conns: pd.DataFrame) -> pd.DataFrame:
    tcp = conns["network_transport"].astype("object") == "tcp"
    return conns[tcp & conns["conn_outcome"].astype("object").isin(["rejected", "no_reply"])]


# --------------------------------------------------------------------------- nmap SYN scan


def test_synscan_holds_the_scan(synscan):
    probes = synscan[(synscan["source_ip"] == SCANNER) & (synscan["destination_ip"] == TARGET)]
    assert probes["destination_port"].nunique() == 1000
    assert _failed_tcp(probes)["destination_port"].nunique() >= 990  # 993 filtered + 4 closed


@pytest.mark.parametrize("name", ["zeek-scan", "simple-scan", "snort-portscan"])
def test_synscan_counting_detectors_alert_the_nmap_source_as_a_vertical_scan(synscan, name):
    alerts = validate_alerts(detect(synscan, detector=name))
    assert len(alerts) == 1
    row = alerts.iloc[0]
    assert row["entity"] == SCANNER and row["scan_type"] == "vertical"
    assert TARGET in row["explanation"]
    assert synscan["event_start"].min() <= row["first_alert_time"] <= synscan["event_start"].max()


def test_synscan_zeek_fires_at_the_15th_distinct_failed_port(synscan):
    alerts = detect(synscan, detector="zeek-scan")
    fails = _failed_tcp(synscan[synscan["source_ip"] == SCANNER]).sort_values("event_start", kind="stable")
    first_new = fails[~fails["destination_port"].duplicated()]
    assert alerts["first_alert_time"].iloc[0] == first_new["event_start"].iloc[14]
    assert alerts["zeek_notice"].iloc[0] == "Scan::Port_Scan"


def test_synscan_snort_sees_a_filtered_portscan(synscan):
    # only 4 closed ports answer with RST (< 10 rejects): the alert comes from the unanswered SYNs
    alerts = detect(synscan, detector="snort-portscan")
    assert alerts["snort_alert"].tolist() == ["TCP filtered portscan"]
    assert "scans 200 (>= 200)" in alerts["explanation"].iloc[0]


def test_synscan_trw_cannot_decide_on_one_host(synscan):
    # 1,000 ports of one host is one first contact: TRW stays pending, as the paper's design implies
    walks = detect(synscan, detector="trw", all_windows=True)
    assert not walks["alert"].any()
    mine = walks[walks["entity"] == SCANNER]
    assert mine["trw_decision"].tolist() == ["pending"] and mine["first_contacts"].tolist() == [1]


# --------------------------------------------------------------------------- exposed host, one day


@pytest.mark.parametrize("name", CLASSIC)
def test_stratosphere_never_flags_the_exposed_hosts_own_traffic(stratosphere, name):
    alerts = validate_alerts(detect(stratosphere, detector=name))
    as_source = alerts if "entity_kind" not in alerts else alerts[alerts["entity_kind"] == "source"]
    assert EXPOSED not in set(as_source["entity"])
    # every source alerted is an Internet scanner of the exposed host: all its flows go there
    for entity in set(as_source["entity"]):
        assert set(stratosphere.loc[stratosphere["source_ip"] == entity, "destination_ip"]) == {EXPOSED}
    if "entity_kind" in alerts:  # a destination-side alert can only be about the scanned host
        assert set(alerts.loc[alerts["entity_kind"] == "destination", "entity"]) <= {EXPOSED}


def test_stratosphere_zeek_scan_matches_an_independent_epoch_count(stratosphere):
    alerts = detect(stratosphere, detector="zeek-scan")
    fails = _failed_tcp(stratosphere)
    origin = stratosphere["event_start"].min()
    epoch = (fails["event_start"] - origin) // pd.Timedelta("5min")
    ports = fails.groupby([fails["source_ip"], fails["destination_ip"], epoch])["destination_port"].nunique()
    hosts = fails.groupby([fails["source_ip"], fails["destination_port"], epoch])["destination_ip"].nunique()
    expected = set(ports[ports >= 15].index.get_level_values(0)) | set(hosts[hosts >= 25].index.get_level_values(0))
    assert set(alerts["entity"]) == expected


def test_stratosphere_slow_vertical_scanner_is_caught_by_simple_scan_not_zeek(stratosphere):
    fails = _failed_tcp(stratosphere[stratosphere["destination_ip"] == EXPOSED])
    per_source = fails.groupby("source_ip")["destination_port"].nunique()
    busiest = per_source.idxmax()
    assert per_source.max() > 100  # hundreds of ports over the day
    mine = fails[fails["source_ip"] == busiest].sort_values("event_start")
    gaps = mine["event_start"].diff().dropna()
    # the data: it probes at least every 15 minutes for hours, but never 15 ports in 5 minutes
    assert (gaps <= pd.Timedelta("15min")).mean() > 0.9
    assert mine["event_start"].max() - mine["event_start"].min() > pd.Timedelta("3h")
    epoch = (mine["event_start"] - stratosphere["event_start"].min()) // pd.Timedelta("5min")
    assert mine.groupby(epoch)["destination_port"].nunique().max() < 15
    simple = detect(stratosphere, detector="simple-scan")
    caught = simple[simple["entity"] == busiest]
    assert len(caught) >= 1
    assert set(caught["scan_type"]) == {"vertical"} and set(caught["zeek_notice"]) == {"Scan::Port_Scan"}
    # muted for an hour after each notice: never two notices within the hour
    assert (caught["first_alert_time"].sort_values().diff().dropna() >= pd.Timedelta("1h")).all()
    assert busiest not in set(detect(stratosphere, detector="zeek-scan")["entity"])


def test_stratosphere_trw_trusts_the_exposed_host(stratosphere):
    walks = detect(stratosphere, detector="trw", all_windows=True)
    own = walks[walks["entity"] == EXPOSED]
    assert "scanner" not in set(own["trw_decision"])
    assert (own["trw_decision"] == "benign").sum() >= 1
    # inbound scanners each probe one host: one first contact, no decision
    inbound = walks[walks["entity"] != EXPOSED]
    assert (inbound["first_contacts"] == 1).mean() > 0.9
    assert np.isfinite(walks["score"]).all()
