"""Vectorised IP address helpers: parse once per distinct address, test CIDR membership."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["parse_networks", "in_networks", "ipv4_to_uint32"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str], *, what: str = "network") -> list[Network]:
    """Parse CIDRs (a bare address is a /32 or /128), with a clear error naming the bad one."""
    out: list[Network] = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{what} {cidr!r} is not an IP address or CIDR: {exc}") from None
    return out


def ipv4_to_uint32(values: Sequence[str] | np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dotted-quad strings to uint32, vectorised; returns ``(ints, is_ipv4)``.

    Anything that is not a well-formed dotted quad (IPv6, missing, garbage) gets
    ``is_ipv4 == False`` and an int of 0.
    """
    s = pd.Series(np.asarray(values, dtype=object))
    parts = s.str.split(".", n=3, expand=True, regex=False)
    n = len(s)
    if parts.shape[1] < 4:
        return np.zeros(n, dtype=np.uint32), np.zeros(n, dtype=bool)
    octets = np.empty((n, 4), dtype=np.float64)
    for i in range(4):
        octets[:, i] = pd.to_numeric(parts[i], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(octets).all(axis=1) & (octets >= 0).all(axis=1) & (octets <= 255).all(axis=1)
    ok &= (octets == np.floor(np.where(np.isfinite(octets), octets, 0))).all(axis=1)
    safe = np.where(ok[:, None], octets, 0).astype(np.uint32)
    ints = (safe[:, 0] << 24) | (safe[:, 1] << 16) | (safe[:, 2] << 8) | safe[:, 3]
    return ints.astype(np.uint32), ok


def in_networks(ips: pd.Series | Sequence[str], networks: Sequence[Network]) -> np.ndarray:
    """Boolean mask: which addresses fall inside any of ``networks``.

    Work is done once per distinct address (IPv4 vectorised, IPv6 through :mod:`ipaddress`),
    then broadcast back to every row.
    """
    series = pd.Series(ips, dtype="object") if not isinstance(ips, pd.Series) else ips
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    hit = np.zeros(len(uniques), dtype=bool)
    if len(uniques) and networks:
        ints, is_v4 = ipv4_to_uint32(uniques)
        for net in networks:
            if net.version == 4:
                mask = np.uint32((0xFFFFFFFF << (32 - net.prefixlen)) & 0xFFFFFFFF)
                hit |= is_v4 & ((ints & mask) == np.uint32(int(net.network_address)))
        v6_nets = [n for n in networks if n.version == 6]
        if v6_nets:
            for i in np.flatnonzero(~is_v4):
                try:
                    addr = ipaddress.ip_address(uniques[i])
                except ValueError:
                    continue
                hit[i] = any(addr in n for n in v6_nets if addr.version == 6)
    out = np.zeros(len(series), dtype=bool)
    valid = codes >= 0
    out[valid] = hit[codes[valid]]
    return out
