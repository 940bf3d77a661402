"""Semantics of the classic detectors, pinned on small hand-built connection sequences."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from _conns import T0, conns

from t1046lab import detect
from t1046lab.alerts import ALERT_COLUMNS, validate_alerts
from t1046lab.detectors import list_detectors
from t1046lab.detectors.trw import thresholds

CLASSIC = ["zeek-scan", "simple-scan", "snort-portscan", "trw"]


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


# --------------------------------------------------------------------------- contract


def test_registry_lists_the_classic_detectors_with_published_defaults():
    table = list_detectors().set_index("detector")
    assert set(CLASSIC) <= set(table.index)
    assert "port_scan_threshold=15" in table.loc["zeek-scan", "parameters"]
    assert "addr_scan_threshold=25" in table.loc["zeek-scan", "parameters"]
    assert "local_scan_threshold=250" in table.loc["simple-scan", "parameters"]
    assert "theta0=0.8" in table.loc["trw", "parameters"]
    for name in CLASSIC:
        assert table.loc[name, "source"]


@pytest.mark.parametrize("name", CLASSIC)
def test_every_detector_returns_the_alerts_schema_and_leaves_input_alone(name):
    frame = conns([(i, "10.0.0.5", f"10.0.1.{i}", 1000 + i, "no_reply") for i in range(40)])
    before = frame.copy(deep=True)
    alerts = detect(frame, detector=name, all_windows=True)
    validate_alerts(alerts)
    assert list(alerts.columns[: len(ALERT_COLUMNS)]) == list(ALERT_COLUMNS)
    assert (alerts["detector"] == name).all()
    pd.testing.assert_frame_equal(frame, before)
    # alert is exactly "score at or over the detector's bar"
    fired = alerts[alerts["alert"]]
    assert fired["explanation"].str.len().gt(20).all()
    assert fired["scan_type"].notna().all() and fired["first_alert_time"].notna().all()
    assert (fired["first_alert_time"] >= fired["window_start"]).all()


@pytest.mark.parametrize("name", CLASSIC)
def test_empty_input_gives_empty_alerts(name):
    alerts = detect(conns([]), detector=name, all_windows=True)
    assert len(alerts) == 0
    validate_alerts(alerts)


def test_unknown_detector_and_parameters_are_named():
    frame = conns([(0, "10.0.0.5", "10.0.0.9", 80, "no_reply")])
    with pytest.raises(ValueError, match="known detectors.*zeek-scan"):
        detect(frame, detector="nope")
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['port_threshold'\].*port_scan_threshold=15"):
        detect(frame, detector="zeek-scan", port_threshold=3)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("zeek-scan", {"port_scan_threshold": 0}, "port_scan_threshold must be >= 1"),
        ("zeek-scan", {"port_scan_interval": "soon"}, "port_scan_interval must be a duration"),
        ("simple-scan", {"dark_nets": ["10.0.0.0/33"]}, "dark_nets: '10.0.0.0/33' is not an IP address or CIDR"),
        ("simple-scan", {"scan_timeout": -5}, "scan_timeout must be positive"),
        ("snort-portscan", {"sensitivity": "extreme"}, "choose from \\['low', 'medium', 'high'\\]"),
        ("snort-portscan", {"thresholds": {"tcp_bogus": {"scans": 1}}}, "unknown table 'tcp_bogus'"),
        ("snort-portscan", {"tcp_window": "5min"}, "tcp_window must be a whole number of seconds"),
        ("trw", {"theta1": 0.9}, "theta1 .* must be below theta0"),
        ("trw", {"p_detect": 1.5}, "p_detect must be a probability"),
        ("trw", {"after_benign": "forget"}, "choose from \\['restart', 'stop'\\]"),
    ],
)
def test_bad_parameter_values_raise_clear_errors(name, params, message):
    frame = conns([(0, "10.0.0.5", "10.0.0.9", 80, "no_reply")])
    with pytest.raises(ValueError, match=message):
        detect(frame, detector=name, **params)


def test_missing_columns_are_a_schema_error():
    frame = conns([(0, "10.0.0.5", "10.0.0.9", 80, "no_reply")]).drop(columns="conn_outcome")
    with pytest.raises(ValueError, match="conn_outcome"):
        detect(frame, detector="trw")


# --------------------------------------------------------------------------- TRW


def test_trw_arithmetic():
    s = thresholds(0.8, 0.2, 0.99, 0.01)
    assert math.exp(s["failure"]) == pytest.approx(4.0)  # (1 - θ1) / (1 - θ0)
    assert math.exp(s["success"]) == pytest.approx(0.25)  # θ1 / θ0
    assert math.exp(s["upper"]) == pytest.approx(99.0)  # η1 = P_D / P_F
    assert math.exp(s["lower"]) == pytest.approx(1 / 99)  # η0 = (1 - P_D) / (1 - P_F)
    # 3 failures: Λ = 64 < 99; 4 failures: Λ = 256 >= 99; successes mirror it
    assert 3 * s["failure"] < s["upper"] <= 4 * s["failure"]
    assert 3 * s["success"] > s["lower"] >= 4 * s["success"]


def test_trw_decides_scanner_after_exactly_four_failed_first_contacts():
    three = conns([(i, "203.0.113.9", f"10.0.0.{i}", 22, "no_reply") for i in range(3)])
    assert not detect(three, detector="trw")["alert"].any()
    pending = detect(three, detector="trw", all_windows=True)
    assert pending["trw_decision"].tolist() == ["pending"]
    assert pending["score"].iloc[0] == pytest.approx(math.log(64))

    rows = [(i, "203.0.113.9", f"10.0.0.{i}", 22, "no_reply" if i % 2 else "rejected") for i in range(6)]
    alerts = detect(conns(rows), detector="trw")
    assert len(alerts) == 1
    row = alerts.iloc[0]
    assert row["entity"] == "203.0.113.9" and row["attempts_to_alert"] == 4
    assert row["first_alert_time"] == at(3) and row["window_start"] == at(0) and row["window_end"] == at(3)
    assert row["score"] == pytest.approx(math.log(256))
    assert row["scan_type"] == "horizontal"
    assert "4 of 4 first contacts failed" in row["explanation"] and "Λ = 256" in row["explanation"]


def test_trw_decides_benign_after_four_successes_and_counts_only_first_contacts():
    rows = [(i, "198.51.100.4", f"10.0.0.{i}", 443, "established") for i in range(4)]
    walks = detect(conns(rows), detector="trw", all_windows=True)
    assert walks["trw_decision"].tolist() == ["benign"]
    assert walks["first_contacts"].iloc[0] == 4 and walks["score"].iloc[0] == pytest.approx(math.log(1 / 256))
    # 50 failures to hosts already contacted are not first contacts: nothing changes
    repeats = rows + [(10 + i, "198.51.100.4", f"10.0.0.{i % 4}", 22 + i, "no_reply") for i in range(50)]
    assert not detect(conns(repeats), detector="trw")["alert"].any()


def test_trw_mixed_walk_and_restart_after_benign():
    # F S F F F F: Λ = 4, 1, 4, 16, 64, 256 -> scanner at the 6th first contact
    outcomes = ["no_reply", "established", "no_reply", "no_reply", "no_reply", "no_reply"]
    rows = [(i, "192.0.2.1", f"10.0.0.{i}", 80, o) for i, o in enumerate(outcomes)]
    alerts = detect(conns(rows), detector="trw")
    assert alerts["attempts_to_alert"].tolist() == [6]
    # four good connections first, then a sweep: the walk restarts and still catches it
    good = [(i, "192.0.2.2", f"10.0.0.{i}", 443, "established") for i in range(4)]
    sweep = [(100 + i, "192.0.2.2", f"10.0.1.{i}", 445, "no_reply") for i in range(4)]
    frame = conns(good + sweep)
    restarted = detect(frame, detector="trw", all_windows=True)
    assert restarted["trw_decision"].tolist() == ["benign", "scanner"]
    assert restarted.loc[restarted["alert"], "attempts_to_alert"].tolist() == [4]
    assert restarted.loc[restarted["alert"], "window_start"].tolist() == [at(100)]
    # the paper's one-outcome-per-host evaluation misses it
    assert not detect(frame, detector="trw", after_benign="stop")["alert"].any()


def test_trw_local_nets_scores_only_remote_sources_to_local_hosts():
    rows = [(i, "10.1.1.1", f"10.0.0.{i}", 22, "no_reply") for i in range(6)]  # internal sweep
    rows += [(i, "203.0.113.5", f"10.0.0.{i}", 22, "no_reply") for i in range(6)]
    alerts = detect(conns(rows), detector="trw", local_nets=["10.0.0.0/8"])
    assert alerts["entity"].tolist() == ["203.0.113.5"]
    assert set(detect(conns(rows), detector="trw")["entity"]) == {"10.1.1.1", "203.0.113.5"}


def test_trw_at_day_scale_one_alert_for_a_slow_sweep():
    rows = [(i * 3600, "203.0.113.7", f"10.0.0.{i}", 22, "no_reply") for i in range(20)]  # one probe an hour
    alerts = detect(conns(rows), detector="trw")
    assert len(alerts) == 1 and alerts["first_alert_time"].iloc[0] == at(3 * 3600)


# --------------------------------------------------------------------------- zeek-scan


def port_scan(n_ports: int, start: float = 0.0, step: float = 1.0, src: str = "10.0.0.5", outcome: str = "rejected"):
    return [(start + i * step, src, "10.0.0.9", 1000 + i, outcome) for i in range(n_ports)]


def test_zeek_port_scan_fires_at_the_15th_distinct_failed_port_not_the_14th():
    assert detect(conns(port_scan(14)), detector="zeek-scan").empty
    rows = port_scan(15) + [(20 + i, "10.0.0.5", "10.0.0.9", 1000 + i, "no_reply") for i in range(10)]  # repeats
    alerts = detect(conns(rows), detector="zeek-scan")
    assert len(alerts) == 1
    row = alerts.iloc[0]
    assert row["scan_type"] == "vertical" and row["zeek_notice"] == "Scan::Port_Scan"
    assert row["first_alert_time"] == at(14) and row["attempts_to_alert"] == 15
    assert row["score"] == pytest.approx(15 / 15)
    assert "15 distinct ports of 10.0.0.9" in row["explanation"] and "15 of those attempts rejected" in row["explanation"]


def test_zeek_scan_ignores_established_and_non_tcp():
    rows = [(i, "10.0.0.5", "10.0.0.9", 1000 + i, "established") for i in range(30)]
    rows += [(i, "10.0.0.6", "10.0.0.9", 1000 + i, "no_reply", "udp") for i in range(30)]
    assert detect(conns(rows), detector="zeek-scan").empty


def test_zeek_scan_counts_a_syn_scan_of_an_open_port_reset_without_data():
    # SYN, SYN-ACK, RST from the scanner: Zeek's is_failed_conn (hR without data)
    frame = conns(port_scan(14))
    extra = conns([(15, "10.0.0.5", "10.0.0.9", 22, "established")])
    extra["source_bytes"] = pd.array([0], dtype="Int64")
    extra["destination_bytes"] = pd.array([0], dtype="Int64")
    extra["tcp_flags"] = pd.array([2 | 4 | 16], dtype="Int32")
    frame["tcp_flags"] = pd.array([2 | 4] * 14, dtype="Int32")
    both = pd.concat([frame, extra], ignore_index=True)
    assert len(detect(both, detector="zeek-scan")) == 1
    extra["destination_bytes"] = pd.array([120], dtype="Int64")  # data sent: a real connection
    assert detect(pd.concat([frame, extra], ignore_index=True), detector="zeek-scan").empty


def test_zeek_scan_misses_a_scan_split_across_two_epochs_as_zeek_does():
    # epochs start at the first record (t=0): 0-300 s, 300-600 s
    anchor = [(0, "10.0.0.77", "10.0.0.200", 80, "established")]
    split = anchor + [(290 + i, "10.0.0.5", "10.0.0.9", 1000 + i, "no_reply") for i in range(20)]  # 10 + 10
    assert detect(conns(split), detector="zeek-scan").empty
    inside = anchor + [(310 + i, "10.0.0.5", "10.0.0.9", 1000 + i, "no_reply") for i in range(20)]
    alerts = detect(conns(inside), detector="zeek-scan")
    assert len(alerts) == 1
    assert alerts["window_start"].iloc[0] == at(300) and alerts["window_end"].iloc[0] == at(600)
    # an explicit epoch origin moves the boundary, and the split scan is seen
    moved = detect(conns(split), detector="zeek-scan", epoch_origin=str(at(100)))
    assert len(moved) == 1


def test_zeek_address_scan_threshold_25_hosts_on_one_port():
    def sweep(n):
        return [(i, "10.0.0.5", f"10.0.1.{i}", 22, "no_reply") for i in range(n)]

    assert detect(conns(sweep(24)), detector="zeek-scan").empty
    alerts = detect(conns(sweep(25)), detector="zeek-scan")
    assert alerts["scan_type"].tolist() == ["horizontal"]
    assert alerts["zeek_notice"].tolist() == ["Scan::Address_Scan"]
    assert alerts["first_alert_time"].tolist() == [at(24)]
    assert "25 distinct hosts on port 22" in alerts["explanation"].iloc[0]
    # 25 hosts spread over 5 ports is no address scan
    spread = [(i, "10.0.0.5", f"10.0.1.{i}", 22 + i % 5, "no_reply") for i in range(25)]
    assert detect(conns(spread), detector="zeek-scan").empty


def test_zeek_scan_all_windows_scores_every_entity_epoch():
    rows = port_scan(10) + [(400, "10.0.0.8", "10.0.0.9", 80, "established")]
    scored = detect(conns(rows), detector="zeek-scan", all_windows=True)
    assert not scored["alert"].any()
    assert set(zip(scored["entity"], scored["window_start"])) == {("10.0.0.5", at(0)), ("10.0.0.8", at(300))}
    assert scored.set_index("entity").loc["10.0.0.5", "score"] == pytest.approx(10 / 15)


# --------------------------------------------------------------------------- snort-portscan


def test_snort_counts_port_changes_not_distinct_ports():
    # 80, 81, 80, 81, ...: every attempt changes the port; only 2 distinct ports
    rows = [(i * 0.1, "10.0.0.6", "10.0.0.10", 80 + i % 2, "rejected") for i in range(16)]
    snort = detect(conns(rows), detector="snort-portscan")
    assert snort["snort_alert"].tolist() == ["TCP portscan"]
    assert snort["scan_type"].tolist() == ["vertical"] and snort["entity"].tolist() == ["10.0.0.6"]
    # the medium thresholds: rejects >= 10 and port changes >= 15 -> fires at the 15th attempt
    assert snort["attempts_to_alert"].tolist() == [15]
    assert "port changes 15 (>= 15)" in snort["explanation"].iloc[0]
    assert detect(conns(rows), detector="zeek-scan").empty  # 2 distinct ports
    # the same port over and over is one change
    same = [(i * 0.1, "10.0.0.6", "10.0.0.10", 80, "rejected") for i in range(40)]
    assert detect(conns(same), detector="snort-portscan").empty


def test_snort_filtered_portscan_counts_unanswered_attempts():
    rows = port_scan(200, step=0.1, outcome="no_reply")
    alerts = detect(conns(rows), detector="snort-portscan")
    assert alerts["snort_alert"].tolist() == ["TCP filtered portscan"]
    assert alerts["snort_rule"].tolist() == ["122:5"]
    assert alerts["attempts_to_alert"].tolist() == [200]  # scans >= 200 at medium
    assert detect(conns(rows[:199]), detector="snort-portscan").empty
    # low sensitivity has scans = 0: no filtered alerts at all
    assert detect(conns(rows), detector="snort-portscan", sensitivity="low").empty
    # high keeps scans = 200 but needs only 10 port changes once rejects appear
    rejected = port_scan(10, step=0.1, outcome="rejected")
    assert detect(conns(rejected), detector="snort-portscan", sensitivity="high")["snort_alert"].tolist() == ["TCP portscan"]


def test_snort_established_connections_do_not_count_as_scans():
    rows = port_scan(250, step=0.1, outcome="established")
    assert detect(conns(rows), detector="snort-portscan").empty


def test_snort_window_resets_counters():
    # 15 rejected probes 10 s apart: 140 s in all. Medium (90 s) resets before 15; high (600 s) does not.
    rows = port_scan(15, step=10.0)
    assert detect(conns(rows), detector="snort-portscan").empty
    assert len(detect(conns(rows), detector="snort-portscan", tcp_window=600)) == 1
    high = detect(conns(rows), detector="snort-portscan", sensitivity="high")
    assert high["attempts_to_alert"].tolist() == [10]


def test_snort_portsweep_decoy_and_distributed():
    sweep = [(i * 0.1, "10.0.0.7", f"10.0.1.{i}", 22, "rejected") for i in range(7)]
    alerts = detect(conns(sweep), detector="snort-portscan")
    assert alerts["snort_alert"].tolist() == ["TCP portsweep"] and alerts["scan_type"].tolist() == ["horizontal"]
    assert alerts["entity"].tolist() == ["10.0.0.7"] and alerts["attempts_to_alert"].tolist() == [7]

    # 30 sources, one rejected probe each, 30 different ports of one host: distributed
    dist = [(i * 0.1, f"192.0.2.{i}", "10.0.0.20", 2000 + i, "rejected") for i in range(30)]
    alerts = detect(conns(dist), detector="snort-portscan")
    assert alerts["snort_alert"].tolist() == ["TCP distributed portscan"]
    assert alerts["attempts_to_alert"].tolist() == [30]
    assert alerts["entity"].tolist() == ["10.0.0.20"] and alerts["entity_kind"].tolist() == ["destination"]
    assert alerts["scan_type"].tolist() == ["distributed"]
    # portscan needs the scanner's own rejects too (each source has 1); without portsweep
    # detection Snort keeps no scanner tracker and "does the best it can": a portscan at 15
    alone = detect(conns(dist), detector="snort-portscan", scan_types=["portscan", "distributed_portscan"])
    assert alone["snort_alert"].tolist() == ["TCP portscan"] and alone["attempts_to_alert"].tolist() == [15]

    # 120 sources (decoys) over 120 ports: decoy portscan at the 120th address change
    decoy = [(i * 0.1, f"192.0.{i // 200}.{i % 200 + 1}", "10.0.0.21", 3000 + i, "rejected") for i in range(130)]
    alerts = detect(conns(decoy), detector="snort-portscan", scan_types=["decoy_portscan"])
    assert alerts["snort_alert"].tolist() == ["TCP decoy portscan"] and alerts["scan_type"].tolist() == ["decoy"]
    assert alerts["attempts_to_alert"].tolist() == [120]


def test_snort_icmp_sweep():
    rows = [(i * 0.1, "10.0.0.8", f"10.0.1.{i}", None, "no_reply", "icmp") for i in range(20)]
    alerts = detect(conns(rows), detector="snort-portscan")
    assert alerts["snort_alert"].tolist() == ["ICMP filtered sweep"] and alerts["attempts_to_alert"].tolist() == [20]
    assert detect(conns(rows), detector="snort-portscan", protos=["tcp", "udp"]).empty


# --------------------------------------------------------------------------- simple-scan


def test_simple_scan_remote_threshold_and_local_threshold():
    rows = [(i, "198.51.100.7", "10.0.0.9", 1000 + i, "no_reply") for i in range(30)]
    alerts = detect(conns(rows), detector="simple-scan")
    assert alerts["zeek_notice"].tolist() == ["Scan::Port_Scan"] and alerts["scan_type"].tolist() == ["vertical"]
    assert alerts["first_alert_time"].tolist() == [at(24)] and alerts["attempts_to_alert"].tolist() == [25]
    assert "25 unique ports on host 10.0.0.9" in alerts["explanation"].iloc[0]
    assert detect(conns(rows[:24]), detector="simple-scan").empty
    # the same source inside local_nets needs 250
    assert detect(conns(rows), detector="simple-scan", local_nets=["198.51.100.0/24"]).empty


def test_simple_scan_darknet_lowers_the_threshold_to_10():
    dark = [(i, "198.51.100.7", f"10.9.0.{i}", 1000 + i, "no_reply") for i in range(3)]
    lit = [(10 + i, "198.51.100.7", f"10.0.0.{i}", 2000 + i, "no_reply") for i in range(7)]
    frame = conns(dark + lit)
    alerts = detect(frame, detector="simple-scan", dark_nets=["10.9.0.0/16"])
    assert alerts["attempts_to_alert"].tolist() == [10] and alerts["first_alert_time"].tolist() == [at(16)]
    assert alerts["scan_type"].tolist() == ["block"] and alerts["zeek_notice"].tolist() == ["Scan::Random_Scan"]
    assert "3 dark hosts" in alerts["explanation"].iloc[0]
    assert detect(frame, detector="simple-scan").empty
    # two dark hosts are not enough
    assert detect(conns(dark[:2] + lit), detector="simple-scan", dark_nets=["10.9.0.0/16"]).empty


def test_simple_scan_idle_expiry_after_15_minutes():
    first = [(i, "198.51.100.7", "10.0.0.9", 1000 + i, "rejected") for i in range(20)]
    after_16_min = [(19 + 16 * 60 + i, "198.51.100.7", "10.0.0.9", 2000 + i, "rejected") for i in range(20)]
    assert detect(conns(first + after_16_min), detector="simple-scan").empty
    after_14_min = [(19 + 14 * 60 + i, "198.51.100.7", "10.0.0.9", 2000 + i, "rejected") for i in range(20)]
    alerts = detect(conns(first + after_14_min), detector="simple-scan")
    assert alerts["attempts_to_alert"].tolist() == [25] and alerts["window_start"].tolist() == [at(0)]
    states = detect(conns(first + after_16_min), detector="simple-scan", all_windows=True)
    assert len(states) == 2 and not states["alert"].any()


def test_simple_scan_knock_knock_and_address_scan():
    sweep = [(i, "198.51.100.8", f"10.0.1.{i}", 23, "no_reply") for i in range(25)]
    alerts = detect(conns(sweep), detector="simple-scan")
    assert alerts["attempts_to_alert"].tolist() == [20]  # knock-knock: 20 hosts on one port
    assert alerts["explanation"].iloc[0].startswith("kk: Scan::Address_Scan")
    assert alerts["scan_type"].tolist() == ["horizontal"]
    plain = detect(conns(sweep), detector="simple-scan", knockknock_threshold=0)
    assert plain["attempts_to_alert"].tolist() == [25]


def test_simple_scan_mutes_a_scanner_for_an_hour_after_a_notice():
    rows = [(i * 10, "198.51.100.9", "10.0.0.9", 1000 + i, "no_reply") for i in range(700)]  # ~2 h, one every 10 s
    alerts = detect(conns(rows), detector="simple-scan")
    times = alerts["first_alert_time"].tolist()
    assert times[0] == at(240)
    assert times[1] == at(240 + 3600 + 240)  # muted for 1 h, then 25 new attempts
    assert len(times) == 2


@pytest.mark.parametrize("name", ["zeek-scan", "simple-scan"])
def test_zeek_based_detectors_count_syns_that_no_tcp_answer_came_back_for(name):
    # an ICMP unreachable or a firewall drop leaves the SYN unanswered, as Zeek's TCP analysis sees it
    rows = [(i, "198.51.100.7", "10.0.0.9", 1000 + i, "icmp_unreachable" if i % 2 else "denied") for i in range(30)]
    assert len(detect(conns(rows), detector=name)) == 1
    udp = [(t, s, d, p, o, "udp") for t, s, d, p, o in rows]
    assert detect(conns(udp), detector=name).empty
