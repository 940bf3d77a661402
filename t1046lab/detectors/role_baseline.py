"""``role-baseline``: each entity scored against the baseline of its own role.

One baseline per asset role (from an inventory, or inferred by :func:`t1046lab.roles.infer_roles`):
robust location and scale of each feature over the role's baseline windows (counts on log
scale), and a threshold per role by the ``target_fpr`` rule on that role's own windows. A
window is scored by its largest upward robust z-score against its entity's role, so that a
workstation touching 300 ports is abnormal while a vulnerability scanner doing the same is
what its role does. Entities of an unknown role, or of a role with too few baseline windows,
fall back to the global baseline, and their explanation says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from ._anomaly import COUNT_FEATURES, WindowAnomalyDetector, robust_location_scale

__all__ = ["RoleBaselineDetector", "DEFAULT_FEATURES", "GLOBAL_ROLE"]

DEFAULT_FEATURES = ("conn_count", "distinct_peers", "distinct_ports", "distinct_peer_ports", "failure_ratio", "port_entropy", "peer_entropy")
GLOBAL_ROLE = "(global)"
_MIN_SCALE = 0.25


class RoleBaselineDetector(WindowAnomalyDetector):
    """Per-role robust baselines over window features.

    Parameters
    ----------
    roles : mapping, Inventory, "infer" or None, default None
        Where each entity's role comes from: a mapping entity → role, an
        :class:`~t1046lab.roles.Inventory` (longest prefix wins), ``"infer"`` to cluster
        the entities of the baseline with :func:`~t1046lab.roles.infer_roles`, or None
        (every entity is scored against the global baseline).
    features : sequence of str, default DEFAULT_FEATURES
    target_fpr : float, default 0.001
        Fraction of each role's baseline windows allowed to alert.
    min_z : float, default 4.0
        Minimum robust z-score for an alert, whatever the quantile.
    min_role_windows : int, default 20
        Roles with fewer baseline windows use the global baseline.
    random_state : int or None
        For role inference.

    Attributes
    ----------
    role_names_ : list of str
        Roles with their own baseline, then ``"(global)"``.
    location_, scale_ : ndarray of shape (n_roles + 1, n_features)
    offsets_ : ndarray of shape (n_roles + 1,)
        Per-role thresholds on ``score_samples``.
    entity_roles_ : dict
        Inferred roles (only with ``roles="infer"``).
    """

    _fitted_attributes = ("role_names_", "location_", "scale_", "offsets_", "log_mask_", "entity_roles_")

    def __init__(
        self,
        *,
        roles: Any = None,
        features: tuple[str, ...] | None = DEFAULT_FEATURES,
        target_fpr: float = 0.001,
        min_z: float = 4.0,
        min_role_windows: int = 20,
        random_state: Any = None,
    ):
        self.roles = roles
        self.features = features
        self.target_fpr = target_fpr
        self.min_z = min_z
        self.min_role_windows = min_role_windows
        self.random_state = random_state

    # -- roles -----------------------------------------------------------------------------

    def _entity_roles(self, frame: Any, n: int) -> np.ndarray:
        """The declared role of each row's entity (None where unknown)."""
        if not isinstance(frame, pd.DataFrame) or self.roles is None:
            return np.full(n, None, dtype=object)
        entities = np.asarray(frame.index.get_level_values(0).astype(str), dtype=object)
        source = self.entity_roles_ if isinstance(self.roles, str) else self.roles
        if hasattr(source, "lookup"):
            return source.lookup(entities)
        if isinstance(source, Mapping):
            return np.array([source.get(e) for e in entities], dtype=object)
        raise TypeError(f"roles must be a mapping, an Inventory, 'infer' or None, got {type(self.roles).__name__}")

    def to_json(self) -> dict[str, Any]:
        """Parameters and fitted state as JSON; an inventory is stored as its (network, role) pairs."""
        roles = self.roles
        if roles is None or isinstance(roles, str):
            return super().to_json()
        try:
            self.roles = None
            data = super().to_json()
        finally:
            self.roles = roles
        if hasattr(roles, "lookup"):
            data["params"]["roles"] = {"inventory": roles.to_frame().to_numpy().tolist()}
        else:
            data["params"]["roles"] = {"mapping": {str(k): str(v) for k, v in roles.items()}}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RoleBaselineDetector:
        roles = data["params"].get("roles")
        if isinstance(roles, dict) and "inventory" in roles:
            from ..roles import Inventory

            data = {**data, "params": {**data["params"], "roles": Inventory.from_pairs(map(tuple, roles["inventory"]))}}
        elif isinstance(roles, dict) and "mapping" in roles:
            data = {**data, "params": {**data["params"], "roles": roles["mapping"]}}
        return super().from_json(data)

    def _row_role_index(self, frame: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Index into role_names_ per row, and the declared role (for explanations)."""
        declared = self._entity_roles(frame, n)
        lookup = {r: i for i, r in enumerate(self.role_names_)}
        global_i = len(self.role_names_) - 1
        index = np.array([lookup.get(r, global_i) if r is not None else global_i for r in declared], dtype=np.int64)
        return index, declared

    # -- fit / score -------------------------------------------------------------------------

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return np.where(self.log_mask_, np.log1p(np.maximum(X, 0.0)), X)

    def fit(self, X: Any, y: Any = None) -> RoleBaselineDetector:
        """Fit one baseline per role (and a global one) on benign windows ``X``."""
        self._check_params()
        data = self._validate(X, reset=True)
        if data.shape[0] < 2:
            raise ValueError(f"RoleBaselineDetector needs at least 2 baseline windows, got n_samples={data.shape[0]}")
        self.entity_roles_ = {}
        if isinstance(self.roles, str):
            if self.roles != "infer":
                raise ValueError(f"roles must be a mapping, an Inventory, 'infer' or None, got {self.roles!r}")
            from ..roles import infer_roles

            self.entity_roles_ = {str(k): str(v) for k, v in infer_roles(X, random_state=self.random_state).items()}
        self.log_mask_ = np.array([n in COUNT_FEATURES for n in self._names])
        Z = self._transform(data)
        declared = self._entity_roles(X, len(data))
        known = pd.Series(declared, dtype="object").dropna()
        counts = known.value_counts()
        own = sorted(str(r) for r, c in counts.items() if c >= self.min_role_windows)
        self.role_names_ = [*own, GLOBAL_ROLE]
        locations, scales = [], []
        for role in own:
            loc, sc = robust_location_scale(Z[declared == role], min_scale=_MIN_SCALE)
            locations.append(loc)
            scales.append(sc)
        loc, sc = robust_location_scale(Z, min_scale=_MIN_SCALE)
        self.location_ = np.vstack([*locations, loc])
        self.scale_ = np.vstack([*scales, sc])
        index, _ = self._row_role_index(X, len(data))
        baseline = self._score_with(Z, index)
        offsets = []
        for i in range(len(self.role_names_)):
            # The global baseline's threshold comes from every window, like its location.
            scores = baseline if i == len(self.role_names_) - 1 else baseline[index == i]
            offsets.append(min(float(np.quantile(scores, self.target_fpr)), -float(self.min_z)))
        self.offsets_ = np.asarray(offsets)
        self.offset_ = float(self.offsets_[-1])
        return self

    def _z(self, Z: np.ndarray, index: np.ndarray) -> np.ndarray:
        return (Z - self.location_[index]) / self.scale_[index]

    def _score_with(self, Z: np.ndarray, index: np.ndarray) -> np.ndarray:
        return -np.max(np.maximum(self._z(Z, index), 0.0), axis=1)

    def _score(self, X: np.ndarray, frame: Any) -> np.ndarray:
        index, _ = self._row_role_index(frame, len(X))
        return self._score_with(self._transform(X), index)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X)`` minus the threshold of each window's role."""
        scores = self.score_samples(X)
        index, _ = self._row_role_index(X, len(scores))
        return scores - self.offsets_[index]

    def _check_params(self) -> None:
        super()._check_params()
        if not self.min_z >= 0:
            raise ValueError(f"min_z must be >= 0, got {self.min_z!r}")
        if int(self.min_role_windows) < 2:
            raise ValueError(f"min_role_windows must be >= 2, got {self.min_role_windows!r}")

    def row_roles(self, X: pd.DataFrame) -> pd.Series:
        """The baseline each window is compared with (its role, or ``"(global)"``)."""
        index, _ = self._row_role_index(X, len(X))
        return pd.Series(np.asarray(self.role_names_, dtype=object)[index], index=X.index, dtype="string")

    def _explain(self, X: np.ndarray, frame: Any, *, top: int) -> list[str]:
        index, declared = self._row_role_index(frame, len(X))
        Z = self._transform(X)
        z = self._z(Z, index)
        base = np.where(self.log_mask_, np.expm1(self.location_), self.location_)
        names = self._names
        order = np.argsort(-z, axis=1)[:, :top]
        global_i = len(self.role_names_) - 1
        out = []
        for i in range(len(X)):  # one sentence per window
            r = index[i]
            if r != global_i:
                head = f"compared with role {self.role_names_[r]!r}: "
            elif declared[i] is None:
                head = "role unknown, compared with the global baseline: "
            else:
                head = f"role {declared[i]!r} has too few baseline windows, compared with the global baseline: "
            parts = [f"{names[j]}={X[i, j]:.4g} (role median {base[r, j]:.3g}, z={z[i, j]:+.1f})" for j in order[i] if z[i, j] > 0]
            out.append(head + ("; ".join(parts) if parts else "every feature at or below the role median"))
        return out
