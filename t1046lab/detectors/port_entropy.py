"""``port-entropy``: destination-port and destination-host spread against a fitted baseline.

A vertical scan spreads its attempts over many destination ports, so the Shannon entropy of
the ports in a window and their distinct count jump far above what the same network shows
normally; a sweep does the same to the entropy and count of destination hosts. The
detector fits a robust location (median) and scale (MAD, floored) of each of these on a
benign baseline, on log scale for the counts, and scores a window by its largest upward
robust z-score. Only increases are suspicious: a window touching fewer ports than usual
is not a scan.

Reference: the port-entropy idea goes back to Lakhina, Crovella and Diot, "Mining Anomalies
Using Traffic Feature Distributions" (SIGCOMM 2005), who detect scans by the entropy of
destination ports and addresses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._anomaly import COUNT_FEATURES, WindowAnomalyDetector, robust_location_scale

__all__ = ["PortEntropyDetector", "DEFAULT_FEATURES"]

DEFAULT_FEATURES = ("port_entropy", "distinct_ports", "peer_entropy", "distinct_peers")

# Smallest scale per feature: a quarter bit of entropy, or a factor of e**0.25 (~28%) in a count.
_MIN_SCALE = 0.25


class PortEntropyDetector(WindowAnomalyDetector):
    """Robust z-scores of port and host spread per window against a fitted baseline.

    Parameters
    ----------
    features : sequence of str, default ("port_entropy", "distinct_ports", "peer_entropy", "distinct_peers")
        Feature columns to score (count features are taken on log1p scale).
    target_fpr : float, default 0.001
        Fraction of baseline windows allowed to alert; sets ``offset_``.
    min_z : float, default 4.0
        A window alerts only when some feature is at least ``min_z`` robust standard
        deviations above the baseline median, whatever the quantile says.

    Attributes
    ----------
    location_, scale_ : ndarray
        Baseline median and floored MAD scale per feature (on the transformed scale).
    offset_ : float
        Threshold on ``score_samples``.
    """

    _fitted_attributes = ("location_", "scale_", "log_mask_")

    def __init__(self, *, features: tuple[str, ...] | None = DEFAULT_FEATURES, target_fpr: float = 0.001, min_z: float = 4.0):
        self.features = features
        self.target_fpr = target_fpr
        self.min_z = min_z

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return np.where(self.log_mask_, np.log1p(np.maximum(X, 0.0)), X)

    def _fit(self, X: np.ndarray, frame: Any) -> None:
        self.log_mask_ = np.array([n in COUNT_FEATURES for n in self._names])
        self.location_, self.scale_ = robust_location_scale(self._transform(X), min_scale=_MIN_SCALE)

    def _z(self, X: np.ndarray) -> np.ndarray:
        return (self._transform(X) - self.location_) / self.scale_

    def _score(self, X: np.ndarray, frame: Any) -> np.ndarray:
        return -np.max(np.maximum(self._z(X), 0.0), axis=1)

    def _threshold(self, baseline_scores: np.ndarray) -> float:
        return min(float(np.quantile(baseline_scores, self.target_fpr)), -float(self.min_z))

    def _check_params(self) -> None:
        super()._check_params()
        if not self.min_z >= 0:
            raise ValueError(f"min_z must be >= 0, got {self.min_z!r}")

    def _explain(self, X: np.ndarray, frame: Any, *, top: int) -> list[str]:
        z = self._z(X)
        names = self._names
        base = np.where(self.log_mask_, np.expm1(self.location_), self.location_)
        order = np.argsort(-z, axis=1)[:, :top]
        out = []
        for i in range(len(X)):  # one sentence per window
            parts = [
                f"{names[j]}={X[i, j]:.4g} (baseline median {base[j]:.3g}, z={z[i, j]:+.1f})" for j in order[i] if z[i, j] > 0
            ]
            out.append("; ".join(parts) if parts else "no feature above its baseline median")
        return out
