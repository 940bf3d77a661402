"""``t1046lab detect`` on small canonical files."""

from __future__ import annotations

import pandas as pd
import pytest
from _conns import conns

from t1046lab.cli import main
from t1046lab.commands.detect import parse_value
from t1046lab.io.canonical import write_canonical


@pytest.fixture
def scan_file(tmp_path):
    rows = [(i, "10.0.0.5", "10.0.0.9", 1000 + i, "rejected") for i in range(30)]  # vertical scan
    rows += [(i, "10.0.0.6", f"10.0.1.{i}", 22, "no_reply") for i in range(30)]  # sweep of port 22
    rows += [(i, "10.0.0.7", "10.0.0.9", 443, "established") for i in range(30)]  # benign client
    path = tmp_path / "conns.parquet"
    write_canonical(conns(rows), path)
    return path


def test_detect_writes_csv_and_prints_a_summary(scan_file, tmp_path, capsys):
    out = tmp_path / "alerts.csv"
    assert main(["detect", str(scan_file), "--detector", "zeek-scan", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "zeek-scan: 2 alerts from 2 entities" in printed
    assert "10.0.0.5" in printed and f"wrote 2 rows to {out}" in printed
    alerts = pd.read_csv(out)
    assert sorted(alerts["entity"]) == ["10.0.0.5", "10.0.0.6"]
    assert dict(zip(alerts["entity"], alerts["scan_type"])) == {"10.0.0.5": "vertical", "10.0.0.6": "horizontal"}
    assert alerts["alert"].all()


def test_detect_parquet_with_params_and_all_windows(scan_file, tmp_path, capsys):
    out = tmp_path / "alerts.parquet"
    code = main(["detect", str(scan_file), "-d", "snort-portscan", "--param", "sensitivity=high",
                 "--param", "protos=tcp", "--all-windows", "-o", str(out)])
    assert code == 0
    alerts = pd.read_parquet(out)
    assert not alerts["alert"].all()  # quiet trackers are kept
    fired = alerts[alerts["alert"]]
    # the scanner's probes interleave with 10.0.0.7's good connections to the same host, so the
    # scanned tracker fires on one of 10.0.0.7's attempts, whose own tracker has no rejects: Snort
    # then skips "portscan" and reports a distributed portscan against the host
    assert dict(zip(fired["snort_alert"], fired["entity"])) == {
        "TCP distributed portscan": "10.0.0.9",
        "TCP filtered portsweep": "10.0.0.6",
    }
    assert set(alerts["snort_tracker"]) >= {"scanner:10.0.0.7", "scanned:10.0.0.9"}


def test_detect_unknown_parameter_lists_the_detector_parameters(scan_file, capsys):
    code = main(["detect", str(scan_file), "-d", "trw", "--param", "theta=0.5"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no parameter(s) ['theta']" in err and "theta0=0.8" in err and "p_detect=0.99" in err


def test_detect_list(capsys):
    assert main(["detect", "--list"]) == 0
    printed = capsys.readouterr().out
    for name in ("zeek-scan", "simple-scan", "snort-portscan", "trw"):
        assert name in printed


@pytest.mark.parametrize(
    "text, value",
    [("15", 15), ("0.5", 0.5), ("true", True), ("no", False), ("none", None), ("5min", "5min"),
     ("10.0.0.0/8,192.168.0.0/16", ["10.0.0.0/8", "192.168.0.0/16"]), ('{"tcp_ports": {"rejects": 5}}', {"tcp_ports": {"rejects": 5}})],
)
def test_param_values_are_typed(text, value):
    assert parse_value(text) == value
