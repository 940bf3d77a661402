"""``ensemble``: a rank-calibrated combination of several detectors' scores.

Detectors score on incomparable scales (a robust z, an isolation depth, a count over a
threshold, a log-likelihood ratio). Each column of the score matrix (one row per
(entity, window), one column per detector) is calibrated to its empirical distribution on
the baseline: a score becomes the fraction of baseline windows scoring at or below it.
Calibrated scores are combined by their mean (a window several detectors find unusual) or
their maximum (any detector), and the threshold follows the same ``target_fpr`` rule as
every anomaly detector. A window a detector did not score (a classic detector that only
reports alerts) enters as ``-inf``, the bottom of that detector's range.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._anomaly import WindowAnomalyDetector

__all__ = ["ScoreEnsemble"]

_GRID = 513  # quantiles kept per detector: enough resolution, small model files


class ScoreEnsemble(WindowAnomalyDetector):
    """Combine per-detector scores (higher = more suspicious) after rank calibration.

    Parameters
    ----------
    method : {"mean", "max"}, default "mean"
    features : sequence of str or None, default None
        Score columns to combine (None: every column).
    target_fpr : float, default 0.001

    Attributes
    ----------
    quantiles_ : ndarray of shape (513, n_detectors)
        Each detector's baseline score quantiles, the calibration table.
    """

    _fitted_attributes = ("quantiles_",)

    def __init__(self, *, method: str = "mean", features: tuple[str, ...] | None = None, target_fpr: float = 0.001):
        self.method = method
        self.features = features
        self.target_fpr = target_fpr

    def _validate(self, X: Any, *, reset: bool) -> np.ndarray:
        # Unscored windows are -inf; the calibration maps them to 0, so allow them here.
        from sklearn.utils.validation import validate_data

        if hasattr(X, "columns") and self.features is not None:
            X = X[list(self.features)]
        elif hasattr(X, "columns") and not reset and hasattr(self, "feature_names_in_"):
            X = X[list(self.feature_names_in_)]
        data = validate_data(self, X, reset=reset, dtype=np.float64, ensure_all_finite=False)
        if np.isnan(data).any() or np.isposinf(data).any():
            raise ValueError("scores must be finite or -inf (for windows a detector did not score)")
        return data

    def _check_params(self) -> None:
        super()._check_params()
        if self.method not in ("mean", "max"):
            raise ValueError(f"method must be 'mean' or 'max', got {self.method!r}")

    def _fit(self, X: np.ndarray, frame: Any) -> None:
        finite = np.isfinite(X)
        # Unscored (-inf) windows sit one unit below the lowest score the detector gave.
        low = np.where(finite.any(axis=0), np.min(np.where(finite, X, np.inf), axis=0), 0.0) - 1.0
        self.quantiles_ = np.quantile(np.where(np.isfinite(X), X, low), np.linspace(0, 1, _GRID), axis=0)

    def calibrate(self, X: Any) -> np.ndarray:
        """Each score as the fraction of baseline windows scoring at or below it."""
        data = self._validate(X, reset=False)
        return self._calibrate(data)

    def _calibrate(self, X: np.ndarray) -> np.ndarray:
        out = np.empty_like(X)
        grid = np.linspace(0, 1, _GRID)
        for j in range(X.shape[1]):
            q = self.quantiles_[:, j]
            # The rank of each score among the baseline quantiles; ties count as at-or-below.
            out[:, j] = np.interp(X[:, j], q, grid, left=0.0, right=1.0) if q[-1] > q[0] else (X[:, j] > q[0]).astype(float)
        return out

    def _score(self, X: np.ndarray, frame: Any) -> np.ndarray:
        p = self._calibrate(X)
        combined = p.mean(axis=1) if self.method == "mean" else p.max(axis=1)
        return -combined

    def _explain(self, X: np.ndarray, frame: Any, *, top: int) -> list[str]:
        p = self._calibrate(X)
        names = self._names
        order = np.argsort(-p, axis=1)[:, :top]
        return [
            "; ".join(f"{names[j]} score {X[i, j]:.3g} (above {p[i, j]:.1%} of baseline windows)" for j in order[i])
            for i in range(len(X))
        ]
