"""Turning unidirectional flow records (NetFlow/nfdump, GCP) into connection attempts.

A record A→B and its reverse B→A whose time spans overlap within a tolerance are one
attempt; the initiator is chosen from the TCP flags (the side that sent SYN without ACK),
then the earlier start, then the port heuristic (the client's destination port is the
lower one). ICMP echo requests pair with their replies, and a probe with no reverse
record takes an ICMP destination-unreachable record sent back by its target.

Input: a frame with ``t0``, ``t1`` (float seconds), ``src``, ``dst``, ``sport``,
``dport`` (float, NaN for ICMP), ``proto`` (IANA number), ``flags`` (TCP bitmask or NaN),
``pkts``, ``bytes``, ``opkts``, ``obytes`` (reverse counters of biflow exporters, NaN when
absent), ``icmp_type``, ``icmp_code``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import _flowutil as fu

# ICMP request type → reply type (v4 echo, timestamp, info, mask; v6 echo)
_ICMP_REPLY = {1: {8: 0, 13: 14, 15: 16, 17: 18}, 58: {128: 129}}
_ICMP_UNREACH = {1: 3, 58: 1}


def _icmp_roles(proto: np.ndarray, itype: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Role (0 request, 1 reply, 2 unreachable, -1 other) and the request type of each row."""
    role = np.full(len(proto), -1, dtype=np.int64)
    group = np.full(len(proto), -1, dtype=np.int64)
    for p, table in _ICMP_REPLY.items():
        for req, rep in table.items():
            m = (proto == p) & (itype == req)
            role[m], group[m] = 0, req
            m = (proto == p) & (itype == rep)
            role[m], group[m] = 1, req
        role[(proto == p) & (itype == _ICMP_UNREACH[p])] = 2
    return role, group


def pair_attempts(rec: pd.DataFrame, *, tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair the records of ``rec``.

    Returns ``(initiator, responder, kind)`` positional arrays, one entry per attempt:
    ``responder`` is -1 when the initiator stands alone; ``kind`` is ``"pair"``,
    ``"icmp_error"`` (responder is an ICMP unreachable) or ``"single"``. Every record is
    in exactly one attempt.
    """
    n = len(rec)
    proto = rec["proto"].to_numpy(dtype=np.int64)
    itype = rec["icmp_type"].to_numpy(dtype=np.float64)
    is_icmp = np.isin(proto, (1, 58))
    role, group = _icmp_roles(proto, np.nan_to_num(itype, nan=-1).astype(np.int64))
    partner = np.full(n, -1, dtype=np.int64)
    kind = np.full(n, "", dtype=object)

    base = pd.DataFrame(
        {
            "src": rec["src"].to_numpy(dtype=object),
            "dst": rec["dst"].to_numpy(dtype=object),
            "sport": rec["sport"].to_numpy(dtype=np.float64),
            "dport": rec["dport"].to_numpy(dtype=np.float64),
            "proto": proto,
            "t0": rec["t0"].to_numpy(dtype=np.float64),
            "t1": rec["t1"].to_numpy(dtype=np.float64),
        }
    )

    def link(sel: np.ndarray, frame: pd.DataFrame, same: tuple[str, ...], label: str) -> None:
        idx = np.flatnonzero(sel)
        if len(idx) < 2:
            return
        a, b = fu.pair_reverse(frame.iloc[idx], keys=("src", "dst", "sport", "dport"), same=same, tolerance=tolerance)
        a, b = idx[a], idx[b]
        partner[a], partner[b] = b, a
        kind[a] = kind[b] = label

    # 1. ports-based reverse pairs (tcp, udp, everything but ICMP)
    link(~is_icmp, base, ("proto",), "pair")
    # 2. ICMP request/reply: encode the role into the port columns so that only a request
    #    and a reply of the same family match each other
    icmp = base.copy()
    icmp["sport"] = np.where(role == 0, 0.0, 1.0)
    icmp["dport"] = np.where(role == 0, 1.0, 0.0)
    icmp["grp"] = group
    link(is_icmp & (role >= 0) & (role <= 1), icmp, ("proto", "grp"), "pair")
    # 3. a lone probe and an ICMP unreachable from its target back to its source
    probe = (partner < 0) & ~is_icmp
    err = (partner < 0) & (role == 2)
    if probe.any() and err.any():
        pe = base.copy()
        pe["sport"] = np.where(err, 1.0, 0.0)
        pe["dport"] = np.where(err, 0.0, 1.0)
        pe["fam"] = np.where(pd.Series(base["src"]).astype(str).str.contains(":").to_numpy(), 6, 4)
        link(probe | err, pe, ("fam",), "icmp_error")

    # orientation: the initiator of each pair
    first = np.flatnonzero((partner < 0) | (np.arange(n) < partner))
    other = partner[first]
    paired = other >= 0
    a = first[paired]
    b = other[paired]
    swap = _responder_first(rec, a, b, role, kind[a])
    init = first.copy()
    resp = other.copy()
    init[np.flatnonzero(paired)[swap]] = b[swap]
    resp[np.flatnonzero(paired)[swap]] = a[swap]
    kinds = np.where(resp >= 0, kind[init], "single")
    return init, resp, kinds


def _responder_first(rec: pd.DataFrame, a: np.ndarray, b: np.ndarray, role: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """True where ``b`` rather than ``a`` is the initiator of the pair."""
    flags = np.nan_to_num(rec["flags"].to_numpy(dtype=np.float64), nan=0).astype(np.int64)
    t0 = rec["t0"].to_numpy(dtype=np.float64)
    sport = rec["sport"].to_numpy(dtype=np.float64)
    dport = rec["dport"].to_numpy(dtype=np.float64)
    opener = ((flags & fu.SYN) != 0) & ((flags & fu.ACK) == 0)
    swap = np.zeros(len(a), dtype=bool)
    decided = np.zeros(len(a), dtype=bool)

    def rule(cond_b_first: np.ndarray, cond_decides: np.ndarray) -> None:
        nonlocal swap, decided
        take = cond_decides & ~decided
        swap[take] = cond_b_first[take]
        decided |= take

    # ICMP: the request (role 0) initiates; with an ICMP error, the probe initiates
    rule(role[b] == 0, (role[a] == 0) | (role[b] == 0))
    rule(role[a] == 2, (role[a] == 2) | (role[b] == 2))
    rule(opener[b], opener[a] != opener[b])
    rule(t0[b] < t0[a], np.abs(t0[a] - t0[b]) >= 1e-9)
    with np.errstate(invalid="ignore"):
        a_client = dport[a] < sport[a]
        b_client = dport[b] < sport[b]
    rule(b_client, a_client != b_client)
    return swap
