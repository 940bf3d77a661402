"""Safety checks and labelling of the scan lab that need no root."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from t1046lab import schema
from t1046lab.datasets.lab import netns, runner
from t1046lab.datasets.lab.groundtruth import label_connections
from t1046lab.datasets.lab.netns import (
    LabNetwork,
    LabSafetyError,
    check_command_addresses,
    check_subnet,
    check_targets,
    preflight,
)
from t1046lab.datasets.lab.scenarios import FULL, SCENARIOS, SMOKE, Activity

NET = "10.146.46.0/24"


@pytest.mark.parametrize("target", ["10.146.47.1", "8.8.8.8", "10.146.46.0/23", "10.0.0.0/8", "192.168.1.10",
                                    "127.0.0.1", "0.0.0.0/0", "10.146.46.0", "10.146.46.255", "web1", "", "::1"])
def test_targets_outside_the_lab_subnet_are_refused(target):
    with pytest.raises(LabSafetyError):
        check_targets([target], NET)


def test_targets_inside_the_lab_subnet_pass():
    assert check_targets(["10.146.46.10", "10.146.46.16/28"], NET) == ["10.146.46.10", "10.146.46.16/28"]
    with pytest.raises(LabSafetyError, match="must name its targets"):
        check_targets([], NET)


def test_one_bad_target_among_good_ones_is_refused():
    with pytest.raises(LabSafetyError, match="10.146.45.10"):
        check_targets(["10.146.46.10", "10.146.45.10", "10.146.46.11"], NET)


@pytest.mark.parametrize("subnet", ["8.8.8.0/24", "10.0.0.0/8", "127.0.0.0/24", "169.254.1.0/24", "fd00::/64", "10.146.46.1/24", "nonsense"])
def test_unsafe_lab_subnets_are_refused(subnet):
    with pytest.raises(LabSafetyError):
        check_subnet(subnet)


def test_addresses_hidden_in_a_command_line_are_checked():
    check_command_addresses(["bash", "-c", "echo > /dev/tcp/10.146.46.11/80"], NET)
    check_command_addresses(["bash", "-c", "echo > /dev/tcp/10.146.46.11/22"], NET)  # a port, not a /22
    with pytest.raises(LabSafetyError, match="10.146.46.0/16"):
        check_command_addresses(["nmap", "-sS", "10.146.46.0/16"], NET)
    with pytest.raises(LabSafetyError, match="1.1.1.1"):
        check_command_addresses(["bash", "-c", "for h in 10.146.46.10 1.1.1.1; do nc -z $h 80; done"], NET)


def test_commands_only_run_in_lab_namespaces():
    lab = LabNetwork(NET, prefix="t1046-abcdef-")
    with pytest.raises(LabSafetyError, match="not a lab host"):
        lab.command("web1", ["true"])  # not built: no host of that name yet
    lab.hosts["web1"] = netns.HostSpec("web1", ["10.146.46.10"])
    assert lab.command("web1", ["nmap", "10.146.46.11"])[:4] == ["ip", "netns", "exec", "t1046-abcdef-web1"]
    with pytest.raises(LabSafetyError):
        lab.command("web1", ["nmap", "10.146.47.11"])
    with pytest.raises(LabSafetyError):
        LabNetwork(NET, prefix="mylab-")


def test_preflight_refuses_existing_namespace_names(monkeypatch):
    monkeypatch.setattr(netns, "list_namespaces", lambda: ["other", "t1046-abcdef-web1"])
    monkeypatch.setattr(netns, "_visible_networks", list)
    with pytest.raises(LabSafetyError, match="t1046-abcdef-web1 already exist"):
        preflight(["t1046-abcdef-sw", "t1046-abcdef-web1"], NET)
    preflight(["t1046-abcdef-sw", "t1046-abcdef-web2"], NET)  # no clash: passes


def test_preflight_refuses_a_subnet_in_use(monkeypatch):
    monkeypatch.setattr(netns, "list_namespaces", list)
    monkeypatch.setattr(netns, "_visible_networks",
                        lambda: [("namespace other", ipaddress.IPv4Interface("10.146.46.77/16"))])
    with pytest.raises(LabSafetyError, match="overlaps 10.146.46.77/16"):
        preflight(["t1046-abcdef-sw"], NET)
    monkeypatch.setattr(netns, "_visible_networks",
                        lambda: [("root namespace", ipaddress.IPv4Interface("192.168.0.5/24"))])
    preflight(["t1046-abcdef-sw"], NET)


def test_plan_resolves_every_scenario_inside_the_subnet(tmp_path):
    net = ipaddress.ip_network(NET)
    for scen in SCENARIOS.values():
        addrs, runs = runner.plan(scen, NET, str(tmp_path))
        assert {r.activity.id for r in runs} == {a.id for a in scen.activities}
        for r in runs:
            assert r.targets and all(ipaddress.ip_network(t).subnet_of(net) for t in r.targets)
            assert r.sources[0] == addrs[r.activity.actor][0]
    # the same scenario moves with the subnet
    _, runs = runner.plan(SMOKE, "192.168.77.0/24", str(tmp_path))
    assert all(t.startswith("192.168.77.") for r in runs for t in r.targets)


def test_plan_refuses_a_scenario_aimed_outside_the_lab(tmp_path):
    bad = replace(SMOKE, activities=SMOKE.activities + (
        Activity("scan-out", "atk1", "nmap", "scan", "vertical", 1.0, ("nmap", "{targets}"), ("10.146.47.5",)),))
    with pytest.raises(LabSafetyError, match="outside the lab subnet"):
        runner.plan(bad, NET, str(tmp_path))
    sneaky = replace(SMOKE, activities=(
        Activity("scan-sneaky", "atk1", "bash", "scan", "vertical", 1.0, ("bash", "-c", "nc -z 192.0.2.1 80"), ("web1",)),))
    _, runs = runner.plan(sneaky, NET, str(tmp_path))
    lab = LabNetwork(NET, prefix="t1046-abcdef-")
    lab.hosts["atk1"] = netns.HostSpec("atk1", ["10.146.46.101"])
    with pytest.raises(LabSafetyError, match="192.0.2.1"):
        lab.command("atk1", runs[0].argv)


def test_run_lab_needs_root(monkeypatch, tmp_path):
    monkeypatch.setattr(runner.os, "geteuid", lambda: 1000)
    with pytest.raises(runner.LabUnavailableError, match="root"):
        runner.run_lab("smoke", tmp_path)
    assert not any(tmp_path.iterdir())  # refused before writing anything


def test_full_scenario_covers_every_scan_type_and_benign_category():
    from t1046lab.datasets.lab.scenarios import BENIGN_CATEGORIES, SCAN_TYPES

    scan_types = {a.category for a in FULL.activities if a.label == "scan"}
    assert scan_types == set(SCAN_TYPES)
    benign = {a.category for a in FULL.activities if a.label == "benign"}
    assert benign == set(BENIGN_CATEGORIES) - {"unattributed"}
    smoke = {a.category for a in SMOKE.activities}
    assert {"vertical", "horizontal", "icmp_sweep", "udp", "block", "sanctioned_scanner", "monitoring", "health_check"} <= smoke


def _gt() -> pd.DataFrame:
    t0 = pd.Timestamp("2026-01-01 12:00:00", tz="UTC")
    rows = [
        ("scan-syn", "10.0.0.101", t0, t0 + pd.Timedelta(seconds=2), "scan", "vertical", None),
        ("scan-decoy", "10.0.0.112 10.0.0.30 10.0.0.31", t0 + pd.Timedelta(seconds=10), t0 + pd.Timedelta(seconds=11), "scan", "decoy", None),
        ("benign-http", "10.0.0.50", t0, t0 + pd.Timedelta(seconds=30), "benign", None, "normal"),
        ("benign-prom", "10.0.0.51", t0, t0 + pd.Timedelta(seconds=30), "benign", None, "monitoring"),
    ]
    return pd.DataFrame(rows, columns=["activity_id", "source_addresses", "start_utc", "end_utc", "label", "scan_type", "benign_category"])


def test_labels_join_on_actor_address_and_time_window():
    t0 = pd.Timestamp("2026-01-01 12:00:00", tz="UTC")
    sec = lambda s: t0 + pd.Timedelta(seconds=s)
    conns = pd.DataFrame({
        "event_start": pd.Series([sec(0.5), sec(1.0), sec(1.5), sec(10.2), sec(10.2), sec(10.3), sec(5), sec(6), sec(20), sec(50)], dtype="datetime64[ns, UTC]"),
        "source_ip": pd.array(["10.0.0.101", "10.0.0.10", "10.0.0.50", "10.0.0.30", "10.0.0.112", "10.0.0.11", "10.0.0.101", "10.0.0.51", "10.0.0.51", "10.0.0.50"], dtype="string"),
        "destination_ip": pd.array(["10.0.0.10", "10.0.0.101", "10.0.0.10", "10.0.0.11", "10.0.0.11", "10.0.0.31", "10.0.0.12", "10.0.0.10", "10.0.0.12", "10.0.0.10"], dtype="string"),
    })
    before = conns.copy()
    out = label_connections(conns, _gt(), scenario="unit")
    pd.testing.assert_frame_equal(conns, before)  # the caller's frame is untouched
    assert out["lab_activity_id"].tolist()[:6] == ["scan-syn", "scan-syn", "benign-http", "scan-decoy", "scan-decoy", "scan-decoy"]
    # a scanner row outside its window is not the scan; nothing else explains it
    assert pd.isna(out["lab_activity_id"].iloc[6]) and out["benign_category"].iloc[6] == "unattributed"
    assert out["label"].iloc[6] == "benign"
    assert out["benign_category"].iloc[7] == "monitoring" and pd.isna(out["scan_type"].iloc[7])
    assert out["benign_category"].iloc[9] == "unattributed"  # after the client's window
    assert out["label"].tolist()[:6] == ["scan", "scan", "benign", "scan", "scan", "scan"]
    assert out["scan_type"].iloc[3] == "decoy"
    assert (out["scenario"] == "unit").all()
    for col in ("label", "scan_type", "benign_category", "scenario"):
        assert out[col].dtype == schema.LABEL_COLUMNS[col], col
    assert np.array_equal(out.columns[: len(conns.columns)], conns.columns)


def test_a_signal_during_teardown_waits_for_the_teardown(monkeypatch):
    import signal

    lab = LabNetwork(NET, prefix="t1046-abcdef-")
    deleted = []
    lab._created = ["t1046-abcdef-sw", "t1046-abcdef-web1"]
    monkeypatch.setattr(lab, "_kill_inside", lambda ns: None)

    def fake_run(argv, **kw):
        deleted.append(argv[-1])
        return netns.subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(netns, "_run", fake_run)
    netns._PREVIOUS[signal.SIGTERM] = signal.SIG_DFL
    monkeypatch.setattr(lab.registry, "stop_all", lambda: netns._on_signal(signal.SIGTERM, None))
    with pytest.raises(SystemExit) as info:
        lab.teardown()
    assert info.value.code == 128 + signal.SIGTERM
    assert deleted == ["t1046-abcdef-web1", "t1046-abcdef-sw"]  # both deleted before the exit
    assert netns._TEARING_DOWN == 0 and not netns._PENDING
    netns._PREVIOUS.pop(signal.SIGTERM, None)


@pytest.mark.parametrize("key,value,ns", [("kernel.panic", "1", "t1046-abcdef-web1"), ("net.ipv4.ip_forward", "1; reboot", "t1046-abcdef-web1"),
                                          ("net.ipv4.ip_forward", "1", "mynamespace"), ("net/../../x", "1", "t1046-abcdef-web1")])
def test_only_lab_namespace_net_sysctls_are_written(key, value, ns):
    with pytest.raises(LabSafetyError):
        netns._ns_sysctl(ns, key, value)


def test_cli_refuses_without_root_with_a_clear_error(monkeypatch, tmp_path, capsys):
    from t1046lab.cli import main

    monkeypatch.setattr(runner.os, "geteuid", lambda: 1000)
    assert main(["lab", "run", "--scenario", "smoke", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "needs root" in err and "sudo" in err
    assert main(["lab", "run", "--scenario", "nosuch", "--out", str(tmp_path / "out")]) == 2
    assert "unknown lab scenario 'nosuch'" in capsys.readouterr().err


def test_cli_lists_the_scenarios(capsys):
    from t1046lab.cli import main

    assert main(["lab", "list"]) == 0
    out = capsys.readouterr().out
    assert "smoke:" in out and "full:" in out and "scan-masscan" in out
