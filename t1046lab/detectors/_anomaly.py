"""Shared machinery of the anomaly detectors: the estimator base, thresholds, JSON, alerts.

The anomaly detectors are scikit-learn outlier detectors over the features frame of
:func:`t1046lab.window_features` (one row per (entity, window)). They follow the
estimator contract: keyword-only constructors that only store; validation in ``fit``;
fitted attributes end in ``_``; ``score_samples`` is lower for more abnormal windows,
``decision_function = score_samples - offset_`` and ``predict`` gives -1 for anomalies.

Threshold rule (stated, not tuned by hand): ``offset_`` is the ``target_fpr`` quantile of
``score_samples`` on the benign baseline the detector was fitted on, so about a fraction
``target_fpr`` of baseline windows would alert. Detectors whose scores are robust z-scores
also require a minimum distance from the baseline (``min_z``), so that a baseline with no
spread at all does not alert on the smallest change.

The alerts frame flips the sign once, in :func:`alerts_from_scores`: its ``score`` is
``-decision_function`` (higher is more suspicious, positive means alert).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..alerts import make_alerts

__all__ = [
    "WindowAnomalyDetector",
    "infer_scan_type",
    "alerts_from_scores",
    "save_model",
    "load_model",
    "robust_location_scale",
    "COUNT_FEATURES",
]

#: Heavy-tailed count features: modelled on log1p scale.
COUNT_FEATURES = frozenset(
    {"conn_count", "distinct_peers", "distinct_ports", "distinct_peer_ports", "tcp_count", "udp_count", "icmp_count", "bytes_per_conn"}
)

#: MAD to standard deviation for normal data.
_MAD_TO_SD = 1.4826


def robust_location_scale(values: np.ndarray, *, min_scale: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise median and MAD-based scale, the scale floored at ``min_scale``.

    The floor matters: a feature that is constant on the baseline (a workstation that never
    touches more than one port) has MAD 0, and every change would be infinitely abnormal.
    """
    location = np.nanmedian(values, axis=0)
    scale = _MAD_TO_SD * np.nanmedian(np.abs(values - location), axis=0)
    return location, np.maximum(np.nan_to_num(scale, nan=0.0), min_scale)


class WindowAnomalyDetector(OutlierMixin, BaseEstimator):
    """Base class: input handling, the ``target_fpr`` threshold rule, predict, JSON.

    Subclasses implement ``_fit(X)`` and ``_score(X) -> scores`` (lower is more abnormal)
    on a float array whose columns are ``feature_names_in_`` (or ``x0..`` for arrays), and
    ``_explain(X, rows)`` for the explanations of the alerts frame.
    """

    #: Persisted with to_json(): the fitted attributes of the subclass.
    _fitted_attributes: tuple[str, ...] = ()

    # -- input -------------------------------------------------------------------------

    def _validate(self, X: Any, *, reset: bool) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            wanted = getattr(self, "features", None)
            if wanted is not None and reset:
                missing = [f for f in wanted if f not in X.columns]
                if missing:
                    raise ValueError(
                        f"{type(self).__name__}: the features frame lacks {missing}; "
                        "compute them with window_features(..., features=[...])"
                    )
                X = X[list(wanted)]
            elif not reset and hasattr(self, "feature_names_in_"):
                missing = [f for f in self.feature_names_in_ if f not in X.columns]
                if missing:
                    raise ValueError(f"{type(self).__name__} was fitted on {list(self.feature_names_in_)}; X lacks {missing}")
                X = X[list(self.feature_names_in_)]
        return validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=True)

    @property
    def _names(self) -> list[str]:
        if hasattr(self, "feature_names_in_"):
            return [str(n) for n in self.feature_names_in_]
        return [f"x{i}" for i in range(self.n_features_in_)]

    # -- the estimator API ---------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> WindowAnomalyDetector:
        """Fit the baseline on benign windows ``X`` (a features frame or an array)."""
        self._check_params()
        data = self._validate(X, reset=True)
        if data.shape[0] < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 baseline windows, got n_samples={data.shape[0]}")
        self._fit(data, X)
        baseline = self._score(data, X)
        self.offset_ = float(self._threshold(baseline))
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality of each window: lower is more abnormal."""
        check_is_fitted(self)
        return self._score(self._validate(X, reset=False), X)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for windows that alert."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """-1 for anomalous windows, +1 for normal ones."""
        return np.where(self.decision_function(X) < 0, -1, 1)

    def explain(self, X: pd.DataFrame, *, top: int = 3) -> pd.Series:
        """One sentence per window naming the features that drove its score."""
        check_is_fitted(self)
        data = self._validate(X, reset=False)
        text = self._explain(data, X, top=top)
        index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(text))
        return pd.Series(text, index=index, dtype="string")

    # -- what subclasses provide ---------------------------------------------------------

    def _check_params(self) -> None:
        target = getattr(self, "target_fpr", 0.01)
        if not (0 < target < 1):
            raise ValueError(f"target_fpr must be in (0, 1), got {target!r}")

    def _threshold(self, baseline_scores: np.ndarray) -> float:
        return float(np.quantile(baseline_scores, self.target_fpr))

    def _fit(self, X: np.ndarray, frame: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, X: np.ndarray, frame: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _explain(self, X: np.ndarray, frame: Any, *, top: int) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- persistence (JSON, never pickle: a model file must not be able to run code) ----

    def to_json(self) -> dict[str, Any]:
        """Parameters and fitted state as plain JSON values."""
        check_is_fitted(self)
        state = {name: _to_jsonable(getattr(self, name)) for name in ("offset_", "n_features_in_", *self._fitted_attributes)}
        if hasattr(self, "feature_names_in_"):
            state["feature_names_in_"] = [str(n) for n in self.feature_names_in_]
        return {"class": type(self).__name__, "params": _to_jsonable(self.get_params()), "state": state}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WindowAnomalyDetector:
        """Rebuild a fitted detector from :meth:`to_json` output."""
        if data.get("class") != cls.__name__:
            raise ValueError(f"this model file holds a {data.get('class')!r}, not a {cls.__name__}")
        model = cls(**data["params"])
        for name, value in data["state"].items():
            if name == "feature_names_in_":
                value = np.asarray(value, dtype=object)
            elif isinstance(value, list):
                value = _from_jsonable(value)
            setattr(model, name, value)
        return model


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


def save_model(model: WindowAnomalyDetector, path: str | Path) -> None:
    """Write a fitted detector as JSON."""
    Path(path).write_text(json.dumps(model.to_json(), default=_json_default, indent=1))


def _json_default(value: Any) -> Any:
    converted = _to_jsonable(value)
    if converted is value:
        raise TypeError(f"cannot store {type(value).__name__} in a model file")
    return converted


def load_model(path: str | Path) -> WindowAnomalyDetector:
    """Read a detector written by :func:`save_model` (JSON only; nothing in it is executed)."""
    from . import ensemble, iforest, port_entropy, role_baseline  # noqa: F401  (register the classes)

    data = json.loads(Path(path).read_text())
    classes = {c.__name__: c for c in _subclasses(WindowAnomalyDetector)}
    name = data.get("class")
    if name not in classes:
        raise ValueError(f"{path}: unknown model class {name!r}; known: {sorted(classes)}")
    state = {k: _from_jsonable(v) for k, v in data["state"].items()}
    return classes[name].from_json({**data, "state": state})


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


# --- alerts ----------------------------------------------------------------------------


def infer_scan_type(features: pd.DataFrame) -> np.ndarray:
    """Name the scan a window looks like, from its counts (vectorised).

    ICMP-dominated windows are ``icmp_sweep``, UDP-dominated ``udp``; otherwise many ports
    on few hosts is ``vertical``, few ports on many hosts ``horizontal``, many of both
    ``block``. Columns missing from ``features`` count as zero.
    """
    def col(name: str) -> np.ndarray:
        return features[name].to_numpy(dtype=float) if name in features else np.zeros(len(features))

    count = np.maximum(col("conn_count"), 1.0)
    hosts, ports = col("distinct_peers"), col("distinct_ports")
    out = np.where(ports >= 4 * np.maximum(hosts, 1), "vertical", np.where(hosts >= 4 * np.maximum(ports, 1), "horizontal", "block"))
    out = np.where(col("udp_count") > 0.5 * count, "udp", out)
    out = np.where(col("icmp_count") > 0.5 * count, "icmp_sweep", out)
    return out.astype(object)


def alerts_from_scores(
    features: pd.DataFrame,
    decision: np.ndarray,
    explanations: Sequence[str] | pd.Series,
    *,
    detector: str,
    window: str | pd.Timedelta,
    scan_type: Sequence[Any] | None = None,
    all_windows: bool = False,
) -> pd.DataFrame:
    """Turn per-window decisions into the alerts frame (the one place the sign flips).

    ``score = -decision`` so that higher is more suspicious and positive means alert.
    ``first_alert_time`` is the window end (the features of a window are known once it
    closes); ``attempts_to_alert`` is the window's attempt count when ``conn_count`` is a
    feature column.
    """
    score = -np.asarray(decision, dtype=float)
    if not all_windows:
        # build the frame for the alerting windows only: most windows do not alert
        keep = np.flatnonzero(score > 0)
        features, score = features.iloc[keep], score[keep]
        explanations = np.asarray(explanations, dtype=object)[keep]
        scan_type = None if scan_type is None else np.asarray(scan_type, dtype=object)[keep]
    entity = features.index.get_level_values(0).astype(str).to_numpy(dtype=object)
    start = pd.DatetimeIndex(features.index.get_level_values(-1))
    start = start.tz_localize("UTC") if start.tz is None else start.tz_convert("UTC")
    end = start + pd.Timedelta(window)
    alert = score > 0
    attempts = pd.array(
        features["conn_count"].round().to_numpy() if "conn_count" in features else [None] * len(features), dtype="Int64"
    )
    attempts[~alert] = pd.NA
    frame = make_alerts(
        {
            "entity": entity,
            "window_start": start,
            "window_end": end,
            "score": score,
            "alert": alert,
            "scan_type": [s if a else None for s, a in zip(scan_type, alert)] if scan_type is not None else [None] * len(alert),
            "first_alert_time": end.where(alert),
            "attempts_to_alert": attempts,
            "explanation": np.asarray(explanations, dtype=object),
        },
        detector=detector,
    )
    return frame if all_windows else frame[frame["alert"]].reset_index(drop=True)
