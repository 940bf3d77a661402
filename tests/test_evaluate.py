"""evaluate(): metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from t1046lab.evaluate import evaluate

from _builders import alerts as _alerts
from _builders import conns as _conns


def test_three_window_roc_auc():
    # Three (entity, 5-min window) cells: one scanning window, two benign ones.
    conns = _conns(
        [
            (10, "10.0.0.1", "10.0.1.1", 22, "scan", "vertical", None, "s1"),
            (20, "10.0.0.2", "10.0.1.1", 443, "benign", None, "normal", None),
            (30, "10.0.0.3", "10.0.1.1", 443, "benign", None, "monitoring", None),
        ]
    )
    alerts = _alerts(
        [
            ("10.0.0.1", 0, 300, 0.7, True, 10),
            ("10.0.0.2", 0, 300, 0.9, True, 20),
            ("10.0.0.3", 0, 300, 0.2, False, None),
        ]
    )
    result = evaluate(alerts, conns)
    # The scanning cell (0.7) outranks one benign cell (0.2) and not the other (0.9): AUC = 1/2.
    assert result.summary.loc[0, "roc_auc"] == pytest.approx(0.5)
    # Alerts fired on two cells, one of them true.
    assert result.summary.loc[0, "window_precision"] == pytest.approx(0.5)
    assert result.summary.loc[0, "precision"] == pytest.approx(0.5)
    assert result.summary.loc[0, "event_recall"] == 1.0


def test_scan_caught_on_its_fifth_attempt():
    scan = [(s, "10.0.0.9", "10.0.1.5", 1000 + s, "scan", "vertical", None, "scan-1") for s in range(10)]
    conns = _conns(scan)
    alerts = _alerts([("10.0.0.9", 0, 300, 5.0, True, 4)])
    result = evaluate(alerts, conns)
    event = result.events.iloc[0]
    assert bool(event["caught"]) and event["attempts_to_alert"] == 5
    assert event["seconds_to_alert"] == pytest.approx(4.0)
    row = result.recall.iloc[0]
    assert (row["scan_type"], row["events"], row["caught"], row["median_attempts_to_alert"]) == ("vertical", 1, 1, 5.0)


def test_an_alert_before_the_scan_or_on_another_host_does_not_catch_it():
    scan = [(600 + s, "10.0.0.9", "10.0.1.5", 1000 + s, "scan", "horizontal", None, "scan-1") for s in range(10)]
    benign = [(0, "10.0.0.8", "10.0.1.5", 80, "benign", None, "normal", None)]
    conns = _conns(scan + benign)
    alerts = _alerts([("10.0.0.9", 0, 300, 5.0, True, 10), ("10.0.0.8", 600, 900, 5.0, True, 610)])
    result = evaluate(alerts, conns)
    assert not result.events["caught"].any()
    assert result.recall.loc[0, "recall"] == 0.0
    # Both alerts are false; the one on a window without the entity's traffic is "no_traffic".
    fp = result.false_positives.set_index("benign_category")["false_alerts"]
    assert fp.get("no_traffic") == 2 and result.summary.loc[0, "precision"] == 0.0


def test_false_positives_per_thousand_host_days():
    # Ten benign hosts active on two days: 20 host-days. The monitoring host (2 host-days)
    # gets two false alerts, a workstation one.
    rows = []
    for day in (0, 1):
        for h in range(10):
            category = "monitoring" if h == 0 else "normal"
            rows.append((day * 86400 + 60 * h, f"10.0.0.{h + 1}", "10.0.2.1", 9100, "benign", None, category, None))
    conns = _conns(rows)
    alerts = _alerts(
        [
            ("10.0.0.1", 0, 300, 3.0, True, 0),
            ("10.0.0.1", 86400, 86700, 3.0, True, 86400),
            ("10.0.0.2", 60, 360, 3.0, True, 60),
            ("10.0.0.3", 120, 420, 0.1, False, None),
        ]
    )
    result = evaluate(alerts, conns)
    assert result.host_days == 20
    fp = result.false_positives.set_index("benign_category")
    assert fp.loc["monitoring", "false_alerts"] == 2
    assert fp.loc["monitoring", "fp_per_1000_host_days"] == pytest.approx(100.0)  # 2 / 20 host-days
    assert fp.loc["monitoring", "fp_per_1000_category_host_days"] == pytest.approx(1000.0)  # 2 / 2
    assert fp.loc["normal", "fp_per_1000_category_host_days"] == pytest.approx(1000.0 / 18)
    assert result.summary.loc[0, "fp_per_1000_host_days"] == pytest.approx(150.0)
    assert np.isnan(result.summary.loc[0, "event_recall"])  # no scan in the data


def test_detectors_are_reported_side_by_side_and_silence_counts():
    scan = [(s, "10.0.0.9", "10.0.1.5", 1000 + s, "scan", "vertical", None, "scan-1") for s in range(20)]
    conns = _conns(scan)
    alerts = pd.concat(
        [_alerts([("10.0.0.9", 0, 300, 9.0, True, 14)], "zeek-scan"), _alerts([("10.0.0.9", 0, 300, 0.0, False, None)], "trw")],
        ignore_index=True,
    )
    result = evaluate(alerts, conns, detectors=["zeek-scan", "trw", "snort-portscan"])
    summary = result.summary.set_index("detector")
    assert summary.loc["zeek-scan", "median_attempts_to_alert"] == 15
    assert summary.loc["trw", "events_caught"] == 0 and summary.loc["snort-portscan", "events_caught"] == 0
    coverage = result.coverage.set_index("detector")
    assert coverage.loc["zeek-scan", "caught"] and not coverage.loc["trw", "caught"]
    assert set(coverage["log_format"]) == {"simulated"}


def test_unlabelled_data_is_refused():
    conns = _conns([(0, "10.0.0.1", "10.0.0.2", 80, "benign", None, "normal", None)]).drop(columns="label")
    with pytest.raises(ValueError, match="'label' column"):
        evaluate(_alerts([("10.0.0.1", 0, 300, 1.0, True, 0)]), conns)
