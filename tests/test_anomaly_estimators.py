"""The anomaly detectors as scikit-learn estimators over a features frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.utils.estimator_checks import check_estimator

from t1046lab.detectors._anomaly import load_model, save_model
from t1046lab.detectors.ensemble import ScoreEnsemble
from t1046lab.detectors.iforest import IsolationForestDetector
from t1046lab.detectors.port_entropy import PortEntropyDetector
from t1046lab.detectors.role_baseline import RoleBaselineDetector
from t1046lab.roles import Inventory, infer_roles, load_inventory

from _builders import features as _features
from _builders import with_scan as _with_scan

# The z-score detectors alert only beyond ``min_z`` robust standard deviations: on the
# random blobs of these checks nothing is that far out, so they predict no outlier on
# their own training data. That is their threshold rule working, not a defect.
MIN_Z_REASON = "min_z floor: no training point is min_z robust SDs out, so no outliers are predicted by design"
EXPECTED_FAILURES = {
    "PortEntropyDetector": {"check_outliers_train": MIN_Z_REASON, "check_outliers_fit_predict": MIN_Z_REASON},
    "RoleBaselineDetector": {"check_outliers_train": MIN_Z_REASON, "check_outliers_fit_predict": MIN_Z_REASON},
}


@pytest.mark.parametrize(
    "estimator",
    [
        IsolationForestDetector(features=None, n_estimators=20, random_state=0),
        PortEntropyDetector(features=None),
        RoleBaselineDetector(features=None),
        ScoreEnsemble(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_sklearn_estimator_contract(estimator):
    check_estimator(estimator, expected_failed_checks=EXPECTED_FAILURES.get(type(estimator).__name__, {}))


def test_iforest_scores_equal_sklearn_on_the_same_transform():
    X = _features()
    model = IsolationForestDetector(n_estimators=50, random_state=3).fit(X)
    Z = model._transform(X[list(model.feature_names_in_)].to_numpy())
    reference = IsolationForest(n_estimators=50, random_state=3).fit(Z)
    np.testing.assert_allclose(model.score_samples(X), reference.score_samples(Z), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cls", [IsolationForestDetector, PortEntropyDetector, RoleBaselineDetector])
def test_a_vertical_scan_window_alerts_and_is_explained(cls):
    baseline = _features()
    model = cls(random_state=0).fit(baseline) if cls is not PortEntropyDetector else cls().fit(baseline)
    test = _with_scan(baseline, "10.1.0.7")
    pred = model.predict(test)
    assert pred[-1] == -1
    # The benign baseline alerts at no more than about target_fpr (and the floor keeps it lower).
    assert (pred[:-1] == -1).mean() <= 0.002
    text = model.explain(test.iloc[-1:]).iloc[0]
    assert "distinct_ports=300" in text or "port_entropy=8.229" in text or "distinct_peer_ports=300" in text


def test_iforest_contributions_point_at_the_scan_features():
    baseline = _features()
    model = IsolationForestDetector(random_state=0).fit(baseline)
    test = _with_scan(baseline, "10.1.0.7")
    share = pd.Series(model.feature_contributions(test.iloc[-1:])[0], index=model.feature_names_in_)
    assert share.sum() == pytest.approx(1.0)
    top = set(share.nlargest(4).index)
    assert top & {"distinct_ports", "distinct_peer_ports", "port_entropy", "failure_ratio", "no_reply_ratio", "port_sequence_ratio"}


def test_role_baseline_scores_each_entity_against_its_role():
    ws = _features(random_state=1)
    # A vulnerability scanner whose every window touches ~300 ports on a few hosts.
    rng = np.random.default_rng(5)
    starts = ws.index.get_level_values(1).unique()
    scanner = pd.DataFrame(
        {c: ws[c].iloc[: len(starts)].to_numpy() for c in ws.columns},
        index=pd.MultiIndex.from_product([["10.9.0.5"], starts], names=ws.index.names),
    )
    scanner["distinct_ports"] = scanner["distinct_peer_ports"] = scanner["conn_count"] = rng.integers(250, 350, len(starts)).astype(float)
    scanner["port_entropy"] = np.log2(scanner["distinct_ports"])
    scanner["failure_ratio"] = 0.95
    baseline = pd.concat([ws, scanner])
    inventory = Inventory.from_pairs([("10.1.0.0/16", "workstation"), ("10.9.0.0/24", "vuln_scanner"), ("10.9.0.0/16", "server")])
    model = RoleBaselineDetector(roles=inventory).fit(baseline)
    assert model.role_names_ == ["vuln_scanner", "workstation", "(global)"]
    assert (model.predict(baseline) == 1).mean() >= 0.998
    # The same 300-port window is normal for the scanner and abnormal for a workstation.
    test = _with_scan(baseline, "10.1.0.7")
    assert model.predict(test.iloc[-1:])[0] == -1
    assert "compared with role 'workstation'" in model.explain(test.iloc[-1:]).iloc[0]
    scanner_window = _with_scan(baseline, "10.9.0.5").iloc[-1:]
    assert model.predict(scanner_window)[0] == 1
    # An address outside the inventory falls back to the global baseline, and says so.
    stranger = test.iloc[-1:].rename(index={"10.1.0.7": "192.0.2.1"}, level=0)
    assert "role unknown, compared with the global baseline" in model.explain(stranger).iloc[0]


def test_infer_roles_separates_behaviours_by_silhouette():
    ws = _features(n_hosts=30, random_state=2)
    servers = _features(n_hosts=10, random_state=3).rename(index=lambda h: h.replace("10.1.", "10.2."), level=0)
    servers["conn_count"] *= 40
    servers["distinct_peers"] *= 30
    roles = infer_roles(pd.concat([ws, servers]), random_state=0)
    assert roles.attrs["silhouette"] and max(roles.attrs["silhouette"], key=roles.attrs["silhouette"].get) == 2
    assert roles[roles.index.str.startswith("10.1.")].nunique() == 1
    assert roles[roles.index.str.startswith("10.2.")].nunique() == 1
    assert roles[roles.index.str.startswith("10.1.")].iloc[0] == "role_0"  # the larger group
    again = infer_roles(pd.concat([ws, servers]), random_state=0)
    pd.testing.assert_series_equal(roles, again)


def test_inventory_longest_prefix_and_errors(tmp_path):
    path = tmp_path / "inventory.csv"
    path.write_text("ip_or_cidr,role\n10.0.0.0/8,corp\n10.20.0.0/16,servers\n10.20.0.5,vuln_scanner\n2001:db8::/32,v6\n")
    inv = load_inventory(path)
    got = inv.lookup(["10.20.0.5", "10.20.9.9", "10.3.3.3", "192.0.2.1", "2001:db8::1", None])
    assert list(got) == ["vuln_scanner", "servers", "corp", None, "v6", None]
    path.write_text("ip_or_cidr,role\n10.0.0.0/8,corp\n10.0.0.300,bad\n")
    with pytest.raises(ValueError, match=r"inventory.csv:3: '10.0.0.300' is not an IP address"):
        load_inventory(path)


def test_models_round_trip_through_json(tmp_path):
    X = _features()
    inventory = Inventory.from_pairs([("10.1.0.0/25", "workstation"), ("10.1.0.128/25", "lab")])
    models = (
        IsolationForestDetector(n_estimators=30, random_state=0).fit(X),
        PortEntropyDetector().fit(X),
        RoleBaselineDetector().fit(X),
        RoleBaselineDetector(roles=inventory).fit(X),
        RoleBaselineDetector(roles={"10.1.0.3": "printer"}, min_role_windows=10).fit(X),
    )
    for model in models:
        path = tmp_path / "model.json"
        save_model(model, path)
        assert b"pickle" not in path.read_bytes()
        loaded = load_model(path)
        np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))


def test_ensemble_calibrates_and_combines():
    rng = np.random.default_rng(0)
    baseline = pd.DataFrame({"a": rng.normal(size=1000), "b": rng.exponential(size=1000) * 100, "c": np.full(1000, -np.inf)})
    model = ScoreEnsemble(target_fpr=0.01).fit(baseline)
    p = model.calibrate(pd.DataFrame({"a": [0.0, 10.0], "b": [0.0, 1e6], "c": [-np.inf, 5.0]}))
    assert p[0, 0] == pytest.approx(0.5, abs=0.05) and p[1, 0] == 1.0 and p[1, 1] == 1.0 and p[0, 2] == 0.0
    test = pd.DataFrame({"a": [0.0, 10.0], "b": [50.0, 1e6], "c": [-np.inf, 1.0]})
    assert list(model.predict(test)) == [1, -1]
    with pytest.raises(ValueError, match="method must be 'mean' or 'max'"):
        ScoreEnsemble(method="median").fit(baseline)
