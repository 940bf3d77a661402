"""Asset roles: from an inventory (``ip_or_cidr,role``) or inferred from long-run behaviour.

A workstation touching 300 ports in five minutes is abnormal; a vulnerability scanner doing
so is not. Per-role baselines need each entity's role, which comes either from the asset
inventory a team already keeps, or, failing that, from clustering each entity's long-run
feature profile.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import ipaddress
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._ip import ipv4_to_uint32

__all__ = ["Inventory", "load_inventory", "infer_roles", "entity_profiles"]


@dataclasses.dataclass(frozen=True)
class Inventory:
    """A role per network; the longest matching prefix wins."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    roles: tuple[str, ...]
    source: str = "<memory>"

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], source: str = "<memory>") -> Inventory:
        nets, roles = [], []
        for cidr, role in pairs:
            nets.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
            roles.append(str(role).strip())
        return cls(tuple(nets), tuple(roles), source)

    def lookup(self, ips: Sequence[str] | pd.Series | np.ndarray) -> np.ndarray:
        """The role of each address (``None`` where no network matches), vectorised per prefix length."""
        codes, uniques = pd.factorize(pd.Series(ips, dtype="object"), use_na_sentinel=True)
        uniques = np.asarray(uniques, dtype=object)
        found = np.full(len(uniques), None, dtype=object)
        ints, is_v4 = ipv4_to_uint32(uniques)
        v4 = [(n, r) for n, r in zip(self.networks, self.roles) if n.version == 4]
        # Longest prefix first: once an address has a role, shorter prefixes cannot change it.
        for length in sorted({n.prefixlen for n, _ in v4}, reverse=True):
            table = {int(n.network_address): r for n, r in v4 if n.prefixlen == length}
            mask = np.uint32((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF) if length else np.uint32(0)
            keys = ints & mask
            todo = is_v4 & (found == None)  # noqa: E711 - elementwise on an object array
            if not todo.any():
                break
            nets = np.fromiter(table.keys(), dtype=np.uint32, count=len(table))
            hit = todo & np.isin(keys, nets)
            found[hit] = [table[int(k)] for k in keys[hit]]
        v6 = sorted(((n, r) for n, r in zip(self.networks, self.roles) if n.version == 6), key=lambda nr: -nr[0].prefixlen)
        if v6:
            for i in np.flatnonzero(~is_v4):
                try:
                    addr = ipaddress.ip_address(uniques[i])
                except ValueError:
                    continue
                found[i] = next((r for n, r in v6 if addr.version == 6 and addr in n), None)
        out = np.full(len(codes), None, dtype=object)
        valid = codes >= 0
        out[valid] = found[codes[valid]]
        return out

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"ip_or_cidr": [str(n) for n in self.networks], "role": list(self.roles)})


def load_inventory(source: str | Path | pd.DataFrame) -> Inventory:
    """Read an inventory CSV with columns ``ip_or_cidr`` and ``role`` (a header line is required).

    Raises
    ------
    ValueError
        Naming the file and line of a bad address or a missing role.
    """
    if isinstance(source, pd.DataFrame):
        missing = {"ip_or_cidr", "role"} - set(source.columns)
        if missing:
            raise ValueError(f"inventory frame lacks columns {sorted(missing)}")
        return Inventory.from_pairs(zip(source["ip_or_cidr"], source["role"]))
    path = Path(source)
    text = path.read_text(encoding="utf-8")
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if header[:2] != ["ip_or_cidr", "role"]:
        raise ValueError(f"{path}:1: expected the header 'ip_or_cidr,role', found {','.join(header)!r}")
    pairs = []
    for row in reader:
        line = reader.line_num
        if not row or row[0].strip().startswith("#"):
            continue
        if len(row) < 2 or not row[1].strip():
            raise ValueError(f"{path}:{line}: expected 'ip_or_cidr,role', found {','.join(row)!r}")
        try:
            ipaddress.ip_network(row[0].strip(), strict=False)
        except ValueError:
            raise ValueError(f"{path}:{line}: {row[0]!r} is not an IP address or CIDR") from None
        pairs.append((row[0], row[1]))
    return Inventory.from_pairs(pairs, str(path))


#: Features summarised per entity for role inference (those present are used).
PROFILE_FEATURES = ("conn_count", "distinct_peers", "distinct_ports", "failure_ratio", "port_entropy", "peer_entropy", "low_port_ratio")


def entity_profiles(features: pd.DataFrame, *, columns: Sequence[str] = PROFILE_FEATURES) -> pd.DataFrame:
    """Long-run behaviour per entity: median and 95th percentile of each feature (counts on log1p scale),
    and the fraction of the observed span in which the entity was active."""
    cols = [c for c in columns if c in features.columns]
    if not cols:
        raise ValueError(f"the features frame has none of {list(columns)}")
    entity = features.index.get_level_values(0)
    values = features[cols].astype(float).copy()
    for c in cols:
        if c in {"conn_count", "distinct_peers", "distinct_ports"}:
            values[c] = np.log1p(values[c])
    grouped = values.groupby(entity, sort=True)
    profile = pd.concat([grouped.median().add_suffix("_median"), grouped.quantile(0.95).add_suffix("_p95")], axis=1)
    starts = features.index.get_level_values(-1)
    n_windows = max(len(pd.unique(starts)), 1)
    profile["active_fraction"] = grouped.size() / n_windows
    return profile


def infer_roles(
    features: pd.DataFrame,
    *,
    n_roles: int | str = "auto",
    max_roles: int = 8,
    random_state: Any = None,
) -> pd.Series:
    """Cluster entities by long-run behaviour into roles.

    Each entity's profile (:func:`entity_profiles`) is standardised and clustered with
    k-means. With ``n_roles="auto"`` the number of roles is the ``k`` in 2..``max_roles``
    with the highest mean silhouette coefficient (Rousseeuw 1987), the stated criterion.

    Returns
    -------
    Series
        Role label (``"role_0"``, ...) per entity, numbered by cluster size (largest first);
        ``attrs["silhouette"]`` holds the score of each ``k`` tried.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    profile = entity_profiles(features)
    Z = StandardScaler().fit_transform(profile.to_numpy())
    n = len(profile)
    if n < 3:
        raise ValueError(f"infer_roles needs at least 3 entities, got {n}")
    if n_roles == "auto":
        candidates = range(2, min(max_roles, n - 1) + 1)
    elif isinstance(n_roles, (int, np.integer)) and 1 <= n_roles <= n:
        candidates = [int(n_roles)]
    else:
        raise ValueError(f"n_roles must be 'auto' or an integer in 1..{n}, got {n_roles!r}")
    best, scores = None, {}
    # Silhouette on a fixed subsample keeps the choice O(n) on large fleets.
    sample = min(n, 5000)
    for k in candidates:
        labels = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit_predict(Z)
        score = silhouette_score(Z, labels, sample_size=sample, random_state=0) if 1 < k < n else 0.0
        scores[k] = float(score)
        if best is None or score > best[0]:
            best = (score, labels)
    labels = best[1]
    # Name clusters by size so that labels are stable under cluster-id permutations.
    sizes = np.bincount(labels)
    rank = np.empty_like(sizes)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(sizes))
    roles = pd.Series([f"role_{r}" for r in rank[labels]], index=profile.index, name="role", dtype="string")
    roles.attrs["silhouette"] = scores
    return roles
