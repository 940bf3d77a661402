"""Plots draw what they are given, return their Axes, and leave global style alone."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from t1046lab import plotting
from t1046lab.detectors.role_baseline import RoleBaselineDetector
from t1046lab.roles import Inventory

from _builders import alerts as _alerts
from _builders import conns as _conns
from _builders import features as _features
from _builders import with_scan as _with_scan


@pytest.fixture
def evaluation():
    from t1046lab.evaluate import evaluate

    scan = [(s, "10.0.0.9", "10.0.1.5", 1000 + s, "scan", "vertical", None, "scan-1") for s in range(20)]
    sweep = [(400 + s, "10.0.0.7", f"10.0.1.{s}", 22, "scan", "horizontal", None, "scan-2") for s in range(30)]
    benign = [(60 * h, f"10.0.0.{h + 20}", "10.0.2.1", 443, "benign", None, "monitoring" if h == 0 else "normal", None) for h in range(10)]
    conns = _conns(scan + sweep + benign)
    alerts = pd.concat(
        [
            _alerts([("10.0.0.9", 0, 300, 9.0, True, 14), ("10.0.0.20", 0, 300, 2.0, True, 0), ("10.0.0.21", 0, 300, 0.5, False, None)], "a"),
            _alerts([("10.0.0.7", 300, 600, 4.0, True, 420), ("10.0.0.9", 0, 300, 1.0, False, None)], "b"),
        ],
        ignore_index=True,
    )
    return evaluate(alerts, conns)


def test_evaluation_plots(evaluation):
    before = dict(matplotlib.rcParams)
    ax = plotting.plot_roc(evaluation)
    assert [t.get_text().split(" ")[0] for t in ax.get_legend().get_texts()] == ["a", "b"]
    ax = plotting.plot_pr(evaluation)
    assert len(ax.get_lines()) == 2
    ax = plotting.plot_false_positives(evaluation)
    assert {t.get_text() for t in ax.get_xticklabels()} >= {"monitoring", "normal"}
    ax = plotting.plot_attempts_to_alert(evaluation)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    ax = plotting.plot_coverage(evaluation)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["horizontal", "vertical"]
    cells = {t.get_text() for t in ax.texts}
    assert {"1/1", "0/1"} <= cells
    assert dict(matplotlib.rcParams) == before
    plt.close("all")


def test_plots_draw_on_the_given_axes(evaluation):
    fig, axes = plt.subplots(1, 2)
    assert plotting.plot_roc(evaluation, ax=axes[0]) is axes[0]
    assert plotting.plot_coverage(evaluation, ax=axes[1]) is axes[1]
    plt.close(fig)


def test_scanner_ports_and_entity_against_role():
    conns = _conns([(s, "10.0.0.9", "10.0.1.5", 1000 + s, "scan", "vertical", None, "s") for s in range(50)])
    ax = plotting.plot_scanner_ports(conns, "10.0.0.9")
    offsets = ax.collections[0].get_offsets()
    assert len(offsets) == 50 and offsets[:, 1].min() == 1000
    baseline = _features()
    model = RoleBaselineDetector(roles=Inventory.from_pairs([("10.1.0.0/16", "workstation")])).fit(baseline)
    frame = _with_scan(baseline, "10.1.0.7")
    ax = plotting.plot_entity_vs_role(frame, "10.1.0.7", model, columns=["distinct_ports", "failure_ratio"])
    assert "role 'workstation'" in ax.get_title()
    points = ax.collections[0].get_offsets()[:, 1]
    assert points.max() > model.min_z  # the scan window stands above the alert line
    with pytest.raises(ValueError, match="has no window"):
        plotting.plot_entity_vs_role(frame, "192.0.2.1", model)
    plt.close("all")
