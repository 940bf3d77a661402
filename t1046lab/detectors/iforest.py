"""``iforest``: an isolation forest over the window features, with per-feature explanations.

Isolation forests (Liu, Ting and Zhou, "Isolation Forest", ICDM 2008) isolate a point by
random axis-parallel splits between a feature's minimum and maximum; anomalies need few
splits. Two things make them work on scan features:

* **log transforms**: counts such as distinct ports are heavy-tailed; on the raw scale the
  random split thresholds fall mostly in the empty space between the benign bulk and a few
  huge benign values (a monitoring host's 200 targets), so a forest on raw counts puts most
  of its depth into separating benign giants. ``log1p`` spreads the bulk. The counts are
  then robust-scaled (median, IQR) so the explanation can speak in comparable units.
* **explanations**: each alert names the features that isolated it. For every tree, the
  features split on along the window's path each get credit ``1 / path length`` (a split
  on a short path isolates more); credits are averaged over trees and normalised to sum to
  one. This is the path-length attribution of DIFFI (Carletti, Terzi and Susto, 2023)
  without its in-bag weighting.

Scoring uses the fitted trees' arrays directly (numpy traversal, one step per depth level for
all windows at once), so a model loaded from JSON scores exactly as the fitted one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from ._anomaly import COUNT_FEATURES, WindowAnomalyDetector

__all__ = ["IsolationForestDetector", "DEFAULT_FEATURES"]

DEFAULT_FEATURES = (
    "conn_count",
    "distinct_peers",
    "distinct_ports",
    "distinct_peer_ports",
    "failure_ratio",
    "rejected_ratio",
    "no_reply_ratio",
    "port_entropy",
    "peer_entropy",
    "low_port_ratio",
    "port_sequence_ratio",
    "interarrival_cv",
    "bytes_per_conn",
)


def _average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n) of Liu et al.: the average path length of an unsuccessful BST search."""
    n = np.asarray(n, dtype=float)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationForestDetector(WindowAnomalyDetector):
    """Isolation forest over log-transformed, robust-scaled window features.

    Parameters
    ----------
    features : sequence of str or None, default DEFAULT_FEATURES
        Feature columns to use (None: every column of the frame given to ``fit``).
    n_estimators : int, default 200
    max_samples : int or "auto", default "auto"
        Windows drawn per tree (``"auto"``: min(256, n)).
    target_fpr : float, default 0.001
        Fraction of baseline windows allowed to alert; sets ``offset_``.
    random_state : int, RandomState or None
        Seed of the trees' sampling and splits.

    Attributes
    ----------
    center_, scale_, log_mask_ : ndarray
        The input transform.
    trees_ : dict of ndarray
        Concatenated node arrays of every tree (``feature``, ``threshold``, ``left``,
        ``right``, ``n_samples``) and each tree's ``root`` offset.
    max_samples_ : int
    offset_ : float
    """

    _fitted_attributes = ("center_", "scale_", "log_mask_", "trees_", "max_samples_")

    def __init__(
        self,
        *,
        features: tuple[str, ...] | None = DEFAULT_FEATURES,
        n_estimators: int = 200,
        max_samples: int | str = "auto",
        target_fpr: float = 0.001,
        random_state: Any = None,
    ):
        self.features = features
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.target_fpr = target_fpr
        self.random_state = random_state

    # -- transform -------------------------------------------------------------------------

    def _transform(self, X: np.ndarray) -> np.ndarray:
        logged = np.where(self.log_mask_, np.log1p(np.maximum(X, 0.0)), X)
        return (logged - self.center_) / self.scale_

    # -- fit -------------------------------------------------------------------------------

    def _fit(self, X: np.ndarray, frame: Any) -> None:
        self.log_mask_ = np.array([n in COUNT_FEATURES for n in self._names])
        logged = np.where(self.log_mask_, np.log1p(np.maximum(X, 0.0)), X)
        self.center_ = np.median(logged, axis=0)
        q75, q25 = np.percentile(logged, [75, 25], axis=0)
        self.scale_ = np.where(q75 - q25 > 0, q75 - q25, 1.0)
        forest = IsolationForest(
            n_estimators=self.n_estimators, max_samples=self.max_samples, random_state=self.random_state
        ).fit(self._transform(X))
        self.max_samples_ = int(forest.max_samples_)
        features, thresholds, lefts, rights, counts, roots = [], [], [], [], [], []
        offset = 0
        for tree, used in zip(forest.estimators_, forest.estimators_features_):
            t = tree.tree_
            leaf = t.children_left < 0
            # Map the tree's feature indices (into its feature subset) back to ours.
            features.append(np.where(leaf, -1, np.asarray(used)[np.maximum(t.feature, 0)]))
            thresholds.append(t.threshold)
            lefts.append(np.where(leaf, -1, t.children_left + offset))
            rights.append(np.where(leaf, -1, t.children_right + offset))
            counts.append(t.n_node_samples)
            roots.append(offset)
            offset += t.node_count
        self.trees_ = {
            "feature": np.concatenate(features).astype(np.int32),
            "threshold": np.concatenate(thresholds).astype(np.float64),
            "left": np.concatenate(lefts).astype(np.int64),
            "right": np.concatenate(rights).astype(np.int64),
            "n_samples": np.concatenate(counts).astype(np.int64),
            "root": np.asarray(roots, dtype=np.int64),
        }

    # -- score -----------------------------------------------------------------------------

    def _paths(self, Z: np.ndarray, *, credit: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Path length of every window in every tree, and optionally the per-feature credit."""
        t = self.trees_
        n, d = Z.shape
        depth_total = np.zeros(n)
        contrib = np.zeros((n, d)) if credit else None
        rows = np.arange(n)
        for root in t["root"]:
            node = np.full(n, root, dtype=np.int64)
            depth = np.zeros(n)
            hits = np.zeros((n, d)) if credit else None
            active = t["left"][node] >= 0
            while active.any():
                idx = rows[active]
                cur = node[idx]
                feat = t["feature"][cur]
                if credit:
                    hits[idx, feat] += 1.0
                go_left = Z[idx, feat] <= t["threshold"][cur]
                node[idx] = np.where(go_left, t["left"][cur], t["right"][cur])
                depth[idx] += 1.0
                active[idx] = t["left"][node[idx]] >= 0
            path = depth + _average_path_length(t["n_samples"][node])
            depth_total += path
            if credit:
                contrib += hits / np.maximum(path, 1.0)[:, None]
        return depth_total / len(t["root"]), contrib

    def _score(self, X: np.ndarray, frame: Any) -> np.ndarray:
        mean_path, _ = self._paths(self._transform(X), credit=False)
        # Same convention as sklearn's IsolationForest.score_samples: minus the anomaly score.
        return -np.power(2.0, -mean_path / _average_path_length(np.array([self.max_samples_]))[0])

    def feature_contributions(self, X: Any) -> np.ndarray:
        """Per window, each feature's share of the isolation (rows sum to 1)."""
        data = self._validate(X, reset=False)
        _, contrib = self._paths(self._transform(data), credit=True)
        total = contrib.sum(axis=1, keepdims=True)
        return np.divide(contrib, total, out=np.zeros_like(contrib), where=total > 0)

    def _explain(self, X: np.ndarray, frame: Any, *, top: int) -> list[str]:
        _, contrib = self._paths(self._transform(X), credit=True)
        total = contrib.sum(axis=1, keepdims=True)
        share = np.divide(contrib, total, out=np.zeros_like(contrib), where=total > 0)
        names = self._names
        median = np.where(self.log_mask_, np.expm1(self.center_), self.center_)
        order = np.argsort(-share, axis=1)[:, :top]
        return [
            "isolated by " + "; ".join(f"{names[j]}={X[i, j]:.4g} (median {median[j]:.3g}, {share[i, j]:.0%})" for j in order[i])
            for i in range(len(X))
        ]
