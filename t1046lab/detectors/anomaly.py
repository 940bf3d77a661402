"""The anomaly detectors through ``detect()``: features, fit (or a given model), score, alerts.

``detect(conns, detector="iforest")`` computes the window features of ``conns``, fits the
estimator on a baseline and scores every window:

* ``baseline=None``: fit on ``conns`` itself (unsupervised). The robust statistics are not
  moved by a few scanners, but the ``target_fpr`` quantile of contaminated data is; the
  ``min_z`` floor of the z-score detectors still applies.
* ``baseline=`` a canonical frame, a path ``read()`` understands, or a ``(start, end)`` time
  range of ``conns``: fit on that benign period (the stated rule: about ``target_fpr`` of its
  windows would alert).
* ``model=`` a fitted detector or the path of one saved with :func:`save_model`: no fitting.

With no baseline and fewer than ``MIN_SELF_FIT_WINDOWS`` windows in ``conns`` (one capture of
one scanner has a single window), there is nothing to learn normal from: the detector then
fits on a reference baseline, the benign traffic of the first day of the bundled
``enterprise-week`` dataset, and says so with a :class:`BaselineWarning`.

``ensemble`` runs its member detectors with every window kept, puts their scores on the
(entity, window) grid and combines them with :class:`~t1046lab.detectors.ensemble.ScoreEnsemble`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..alerts import empty_alerts
from ..exceptions import T1046Warning
from ._anomaly import WindowAnomalyDetector, alerts_from_scores, infer_scan_type, load_model
from ._registry import register_detector
from .ensemble import ScoreEnsemble
from .iforest import DEFAULT_FEATURES as IFOREST_FEATURES
from .iforest import IsolationForestDetector
from .port_entropy import DEFAULT_FEATURES as ENTROPY_FEATURES
from .port_entropy import PortEntropyDetector
from .role_baseline import DEFAULT_FEATURES as ROLE_FEATURES
from .role_baseline import RoleBaselineDetector

__all__ = ["run_window_detector", "score_windows", "feature_columns", "CONTEXT_FEATURES", "BaselineWarning", "MIN_SELF_FIT_WINDOWS", "reference_baseline"]

#: Fewer windows than this and no baseline: fit on the reference baseline instead.
MIN_SELF_FIT_WINDOWS = 50


class BaselineWarning(T1046Warning):
    """An anomaly detector could not fit on the data it was given and used the reference baseline."""


@functools.lru_cache(maxsize=1)
def reference_baseline() -> pd.DataFrame:
    """Benign connections of the first (week)day of the bundled ``enterprise-week`` dataset."""
    from ..datasets import load_dataset

    conns = load_dataset("enterprise-week")
    first = conns["event_start"].min().normalize()
    day = conns[(conns["event_start"] < first + pd.Timedelta("1D")) & (conns["label"].astype("object") == "benign")]
    return day.reset_index(drop=True)


@functools.lru_cache(maxsize=8)
def _reference_features(window: str, by: str, columns: tuple[str, ...]) -> pd.DataFrame:
    from ..features import window_features

    return window_features(reference_baseline(), window=window, by=by, features=list(columns))


def _fallback_baseline(n_windows: int, detector: str) -> pd.DataFrame:
    warnings.warn(
        f"{detector}: the data has only {n_windows} window(s), too few to learn what is normal "
        f"(at least {MIN_SELF_FIT_WINDOWS}); fitted on the reference baseline (benign traffic of the bundled "
        "enterprise-week dataset). Pass baseline= or model= to use your own.",
        BaselineWarning,
        stacklevel=4,
    )
    return reference_baseline()


_COMMON = {"window": "5min", "by": "source_ip", "baseline": None, "model": None, "target_fpr": 0.001}


def _baseline_conns(conns: pd.DataFrame, baseline: Any) -> pd.DataFrame:
    if baseline is None:
        return conns
    if isinstance(baseline, pd.DataFrame):
        return baseline
    if isinstance(baseline, (str, Path)):
        from ..io import read

        return read(baseline)
    if isinstance(baseline, (tuple, list)) and len(baseline) == 2:
        start, end = (pd.Timestamp(t) for t in baseline)
        start = start.tz_localize("UTC") if start.tzinfo is None else start
        end = end.tz_localize("UTC") if end.tzinfo is None else end
        part = conns[(conns["event_start"] >= start) & (conns["event_start"] < end)]
        if part.empty:
            raise ValueError(f"the baseline period {start} to {end} holds no connections")
        return part
    raise TypeError(f"baseline must be None, a frame, a path or a (start, end) pair, got {type(baseline).__name__}")


def _model(model: Any, cls: type) -> WindowAnomalyDetector:
    fitted = load_model(model) if isinstance(model, (str, Path)) else model
    if not isinstance(fitted, cls):
        raise TypeError(f"model must be a fitted {cls.__name__} (or its JSON file), got {type(fitted).__name__}")
    return fitted


#: Minimal features every window detector's alerts need (scan type and attempt count).
CONTEXT_FEATURES = ("conn_count", "distinct_peers", "distinct_ports", "udp_count", "icmp_count")


def feature_columns(columns: Sequence[str]) -> list[str]:
    """The detector's features followed by the context features it lacks: one ``window_features`` call."""
    return list(columns) + [c for c in CONTEXT_FEATURES if c not in columns]


def run_window_detector(
    make: Callable[[], WindowAnomalyDetector],
    conns: pd.DataFrame,
    *,
    detector: str,
    columns: Sequence[str],
    all_windows: bool,
    window: str,
    by: str,
    baseline: Any,
    model: Any,
) -> pd.DataFrame:
    """Features of ``conns``, a fitted estimator, and the alerts frame of its decisions."""
    from ..features import window_features

    if conns.empty:
        return empty_alerts()
    feats = window_features(conns, window=window, by=by, features=feature_columns(columns))
    base = None
    if model is None and baseline is not None:
        base = window_features(_baseline_conns(conns, baseline), window=window, by=by, features=list(columns))
    return score_windows(make, feats, detector=detector, columns=columns, all_windows=all_windows,
                         window=window, by=by, baseline_features=base, model=model)


def score_windows(
    make: Callable[[], WindowAnomalyDetector],
    feats: pd.DataFrame,
    *,
    detector: str,
    columns: Sequence[str],
    all_windows: bool,
    window: str,
    by: str,
    baseline_features: pd.DataFrame | None = None,
    model: Any = None,
) -> pd.DataFrame:
    """The alerts frame of a window detector, from window features already computed.

    ``feats`` holds :func:`feature_columns` of ``columns`` for every (entity, window).
    The estimator is ``model`` if given, else fitted on ``baseline_features``, else on
    ``feats`` itself (or, with fewer than :data:`MIN_SELF_FIT_WINDOWS` windows, on the
    reference baseline). Streaming and Dask runs call this after computing the features
    out of core, so their alerts equal the in-memory ones.
    """
    if feats.empty:
        return empty_alerts()
    columns = list(columns)
    scored = feats[columns]
    if model is not None:
        estimator = _model(model, type(make()))
    else:
        if baseline_features is None and len(feats) < MIN_SELF_FIT_WINDOWS:
            _fallback_baseline(len(feats), detector)
            base = _reference_features(str(window), by, tuple(columns))
        else:
            base = scored if baseline_features is None else baseline_features[columns]
        estimator = make().fit(base)
        del base
    decision = estimator.decision_function(scored)
    alert = decision < 0
    explanations = np.full(len(feats), "", dtype=object)
    if alert.any() or all_windows:
        rows = np.flatnonzero(alert) if not all_windows else np.arange(len(feats))
        explanations[rows] = estimator.explain(scored.iloc[rows]).to_numpy(dtype=object)
    # only alerting windows get a scan type: naming every window would cost a string per window
    scan_type = np.full(len(feats), None, dtype=object)
    fired = np.flatnonzero(alert)
    scan_type[fired] = infer_scan_type(feats.iloc[fired])
    # feats holds the context features (conn_count, ...) that scan types and attempts read
    return alerts_from_scores(feats, decision, explanations, detector=detector, window=window,
                              scan_type=scan_type, all_windows=all_windows)


def _port_entropy_model(p: Any) -> tuple[Callable[[], WindowAnomalyDetector], list[str]]:
    return (lambda: PortEntropyDetector(features=tuple(p["features"]), target_fpr=p["target_fpr"], min_z=p["min_z"])), list(p["features"])


def _iforest_model(p: Any) -> tuple[Callable[[], WindowAnomalyDetector], list[str]]:
    return (
        lambda: IsolationForestDetector(
            features=tuple(p["features"]), n_estimators=p["n_estimators"], target_fpr=p["target_fpr"], random_state=p["random_state"]
        )
    ), list(p["features"])


def _role_baseline_model(p: Any) -> tuple[Callable[[], WindowAnomalyDetector], list[str]]:
    roles = _roles(p["roles"])
    return (
        lambda: RoleBaselineDetector(
            roles=roles, features=tuple(p["features"]), target_fpr=p["target_fpr"], min_z=p["min_z"],
            min_role_windows=p["min_role_windows"], random_state=p["random_state"],
        )
    ), list(p["features"])


def _run(name: str, factory: Callable[[Any], tuple[Callable[[], WindowAnomalyDetector], list[str]]], conns: pd.DataFrame,
         all_windows: bool, p: Any) -> pd.DataFrame:
    make, columns = factory(p)
    return run_window_detector(make, conns, detector=name, columns=columns, all_windows=all_windows,
                               window=p["window"], by=p["by"], baseline=p["baseline"], model=p["model"])


@register_detector(
    "port-entropy",
    params={**_COMMON, "features": list(ENTROPY_FEATURES), "min_z": 4.0},
    description="destination port and host entropy and distinct counts per window, robust z against a fitted baseline",
    source="Lakhina, Crovella, Diot, Mining Anomalies Using Traffic Feature Distributions, SIGCOMM 2005",
    window_model=_port_entropy_model,
)
def port_entropy(conns: pd.DataFrame, *, all_windows: bool = False, **p: Any) -> pd.DataFrame:
    """Run :class:`PortEntropyDetector` over ``conns``' window features."""
    return _run("port-entropy", _port_entropy_model, conns, all_windows, p)


@register_detector(
    "iforest",
    params={**_COMMON, "features": list(IFOREST_FEATURES), "n_estimators": 200, "random_state": 0},
    description="isolation forest over log-transformed window features, with per-feature path-length explanations",
    source="Liu, Ting, Zhou, Isolation Forest, ICDM 2008; attribution after DIFFI (Carletti, Terzi, Susto 2023)",
    window_model=_iforest_model,
)
def iforest(conns: pd.DataFrame, *, all_windows: bool = False, **p: Any) -> pd.DataFrame:
    """Run :class:`IsolationForestDetector` over ``conns``' window features."""
    return _run("iforest", _iforest_model, conns, all_windows, p)


def _roles(value: Any) -> Any:
    """An inventory path becomes an Inventory; mappings, Inventory, 'infer' and None pass."""
    if isinstance(value, (str, Path)) and str(value) != "infer":
        from ..roles import load_inventory

        return load_inventory(value)
    return value


@register_detector(
    "role-baseline",
    params={**_COMMON, "features": list(ROLE_FEATURES), "roles": "infer", "min_z": 4.0, "min_role_windows": 20, "random_state": 0},
    description="each entity against the robust baseline of its role (inventory CSV, mapping, or inferred by clustering)",
    source="per-role peer-group baselines; roles inferred by k-means with the silhouette criterion (Rousseeuw 1987)",
    window_model=_role_baseline_model,
)
def role_baseline(conns: pd.DataFrame, *, all_windows: bool = False, **p: Any) -> pd.DataFrame:
    """Run :class:`RoleBaselineDetector` over ``conns``' window features."""
    return _run("role-baseline", _role_baseline_model, conns, all_windows, p)


def score_matrix(alerts: Sequence[pd.DataFrame], window: str) -> pd.DataFrame:
    """Per (entity, window) cell, each detector's highest score; ``-inf`` where it scored nothing."""
    w = pd.Timedelta(window).value
    parts = []
    for frame in alerts:
        if frame.empty:
            continue
        cell = (frame["window_start"].astype("int64").to_numpy() // w) * w
        parts.append(pd.DataFrame({"entity": frame["entity"].astype("object").to_numpy(), "cell": cell,
                                   "detector": frame["detector"].astype("object").to_numpy(), "score": frame["score"].to_numpy(float)}))
    if not parts:
        return pd.DataFrame()
    long = pd.concat(parts, ignore_index=True)
    wide = long.pivot_table(index=["entity", "cell"], columns="detector", values="score", aggfunc="max")
    wide = wide.fillna(-np.inf)
    wide.index = pd.MultiIndex.from_arrays(
        [wide.index.get_level_values(0), pd.to_datetime(wide.index.get_level_values(1), utc=True)], names=["entity", "window_start"]
    )
    wide.columns = [str(c) for c in wide.columns]
    return wide


@register_detector(
    "ensemble",
    params={"window": "5min", "by": "source_ip", "baseline": None, "target_fpr": 0.001, "method": "mean",
            "detectors": ["port-entropy", "iforest", "zeek-scan", "trw"], "random_state": 0},
    description="rank-calibrated mean (or max) of several detectors' scores on the (entity, window) grid",
    source="score calibration by empirical CDF on the baseline; combination by mean or max",
    choices={"method": ("mean", "max")},
)
def ensemble(conns: pd.DataFrame, *, all_windows: bool = False, **p: Any) -> pd.DataFrame:
    """Run the member detectors, calibrate their scores and combine them."""
    from . import detect, get_detector

    members = list(p["detectors"])
    if "ensemble" in members or not members:
        raise ValueError("ensemble needs a non-empty list of other detectors")

    def member_scores(frame: pd.DataFrame) -> pd.DataFrame:
        outputs = []
        for name in members:
            info = get_detector(name)
            params = {k: v for k, v in (("window", p["window"]), ("by", p["by"]), ("random_state", p["random_state"])) if k in info.params}
            outputs.append(detect(frame, detector=name, all_windows=True, **params))
        return score_matrix(outputs, p["window"])

    if conns.empty:
        return empty_alerts()
    scores = member_scores(conns).reindex(columns=members, fill_value=-np.inf)
    baseline = p["baseline"]
    if baseline is None and len(scores) < MIN_SELF_FIT_WINDOWS:
        baseline = _fallback_baseline(len(scores), "ensemble")
    base = scores if baseline is None else member_scores(_baseline_conns(conns, baseline)).reindex(columns=members, fill_value=-np.inf)
    model = ScoreEnsemble(method=p["method"], target_fpr=p["target_fpr"]).fit(base)
    decision = model.decision_function(scores)
    alert = decision < 0
    explanations = np.full(len(scores), "", dtype=object)
    rows = np.arange(len(scores)) if all_windows else np.flatnonzero(alert)
    if len(rows):
        explanations[rows] = model.explain(scores.iloc[rows]).to_numpy(dtype=object)
    from ..features import window_features

    context = window_features(conns, window=p["window"], by=p["by"], features="minimal").reindex(scores.index)
    context.index = scores.index
    frame = scores.assign(conn_count=context["conn_count"].fillna(0).to_numpy())
    return alerts_from_scores(frame, decision, explanations, detector="ensemble", window=p["window"],
                              scan_type=infer_scan_type(context.fillna(0)), all_windows=all_windows)
