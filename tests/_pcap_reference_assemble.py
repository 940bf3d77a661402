"""Frozen reference: the pcap reader's connection assembly as it was before the speed work.

A verbatim copy of ``t1046lab/io/_pcap_assemble.py`` at commit 39fb300 (imports made
absolute). ``tests/test_pcap_assembly_reference.py`` checks the current assembly against it
on generated captures; do not edit it to make that test pass.

Assembling decoded packets into connection attempts (vectorised).

The rules (documented for users in :func:`t1046lab.io.pcap.read_pcap`):

1. Packets are grouped by their unordered 5-tuple (ICMP queries by addresses and
   identifier) and sorted by time. A group splits into *flows*: TCP at a pure SYN when an
   RST or FIN was seen since the flow's last SYN, or when the SYN comes more than
   ``timeout`` after the previous packet; UDP, ICMP and other protocols when the gap
   between packets exceeds ``timeout``; TCP also after a silence of 5 × ``timeout``.
2. Each flow has an initiator: the sender of its first packet, except that the sender of a
   first SYN-ACK or ICMP reply is the responder, and a TCP flow starting mid-stream takes
   the side with a port below 1024 as the responder when exactly one side has one.
3. Outcome of a flow: TCP starting with a pure SYN is ``established`` when the responder
   sent anything but an RST, ``rejected`` when it sent only RSTs, else ``no_reply``; TCP not
   starting with a SYN is ``partial``; UDP and other protocols are ``established`` when the
   responder answered, else ``no_reply`` (``unknown`` to multicast or broadcast addresses);
   ICMP queries are ``established`` with a reply, ``no_reply`` without, ``partial`` when only
   the reply was seen. An ICMP destination-unreachable (IPv4 type 3 except code 4, which is
   path-MTU discovery; ICMPv6 type 1) quoting a flow's probe marks a ``no_reply`` flow
   ``icmp_unreachable`` and counts as one of its responder packets.
4. Probe retries become one attempt: consecutive flows from the same initiator to the same
   responder address, port and protocol merge while none of them is established and each
   starts within ``timeout`` of the previous one's last packet. Scanners retransmit probes
   from a new source port (nmap encodes the try number in it), so this is what makes "a
   probe and its retransmissions" one attempt; the attempt keeps the first source port.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from t1046lab import schema
from t1046lab.io._pcap_decode import KIND_QUERY, KIND_REPLY, KIND_UNREACH
from t1046lab.io._report import ReadReport

__all__ = ["assemble"]

_OUTCOMES = list(schema.OUTCOME_DTYPE.categories)
_EST, _REJ, _NOREP, _ICMP, _PARTIAL, _UNKNOWN = (
    _OUTCOMES.index(v) for v in ("established", "rejected", "no_reply", "icmp_unreachable", "partial", "unknown")
)
# priority when merging retries: established > rejected > icmp_unreachable > no_reply
_PRIORITY = np.zeros(len(_OUTCOMES), dtype=np.int8)
_PRIORITY[[_NOREP, _ICMP, _REJ, _EST]] = [1, 2, 3, 4]
_TRANSPORTS = list(schema.TRANSPORT_DTYPE.categories)
_V4_MAPPED = 0xFFFF << 32
#: A TCP flow silent for this many attempt timeouts ends (300 s with the default 60 s).
_TCP_IDLE_FACTOR = 5


def _factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(values, sort=False)
    return codes.astype(np.int64), np.asarray(uniques)


_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)


def _mix(*parts: np.ndarray) -> np.ndarray:
    """A 64-bit hash of integer columns (wrapping arithmetic), used only to sort and group.

    Groups are also split wherever the exact columns differ, so a collision (about n²/2^64)
    can at worst split a flow, never join two.
    """
    h = np.zeros(len(parts[0]), dtype=np.uint64)
    for x in parts:
        h = (h ^ x.astype(np.uint64)) * _M1
        h ^= h >> np.uint64(29)
    return h * _M2


def _address_ids(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Exact integer ids below 2^32 for 128-bit addresses (the IPv4 address itself when all are IPv4)."""
    if not hi.any() and ((lo >> np.uint64(32)) == np.uint64(0xFFFF)).all():
        return (lo & np.uint64(0xFFFFFFFF)).astype(np.int64)
    clo, ulo = _factorize(lo)
    chi, _ = _factorize(hi)
    return _factorize(chi * len(ulo) + clo)[0]


def _address_text(hi: np.ndarray, lo: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """The addresses as a string array: each distinct address is formatted once."""
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    if v4.all():
        codes, uniq = _factorize((lo & np.uint64(0xFFFFFFFF)).astype(np.int64))
        q = uniq.astype(np.int64)
        octets = [pd.Series((q >> shift) & 255).astype(str) for shift in (24, 16, 8, 0)]
        text = (octets[0] + "." + octets[1] + "." + octets[2] + "." + octets[3]).to_numpy(dtype=object)
    else:
        import ipaddress

        codes = _factorize(np.where(v4, 0, _mix(hi, lo)).astype(np.uint64) ^ lo)[0]
        first = np.zeros(codes.max() + 1, dtype=np.int64)
        first[codes[::-1]] = np.arange(len(codes))[::-1]
        uh, ul = hi[first].tolist(), lo[first].tolist()
        text = np.array(
            [
                str(ipaddress.IPv4Address(lv & 0xFFFFFFFF)) if h == 0 and (lv >> 32) == 0xFFFF
                else str(ipaddress.IPv6Address((h << 64) | lv))
                for h, lv in zip(uh, ul)
            ],
            dtype=object,
        )
    return pd.array(text, dtype=schema.STRING_DTYPE).take(codes)


def _multicast(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    a = (lo & np.uint64(0xFFFFFFFF)).astype(np.int64)
    v4m = v4 & (((a >> 28) == 0xE) | (a == 0xFFFFFFFF))
    v6m = ~v4 & ((hi >> np.uint64(56)) == np.uint64(0xFF))
    return v4m | v6m


def assemble(
    P: dict[str, np.ndarray], E: dict[str, np.ndarray], report: ReadReport, *, timeout_ns: int
) -> pd.DataFrame:
    """Connection attempts (a canonical frame, time-ordered) from decoded packets ``P`` and ICMP errors ``E``."""
    n, m = len(P["ts"]), len(E["pkt"])
    if n == 0:
        return schema.conform({}, log_format="pcap", n=0)
    # --- addresses and endpoints -----------------------------------------------------------
    ids = _address_ids(
        np.concatenate([P["src_hi"], P["dst_hi"], E["q_src_hi"], E["q_dst_hi"]]),
        np.concatenate([P["src_lo"], P["dst_lo"], E["q_src_lo"], E["q_dst_lo"]]),
    )
    sid, did, qsid, qdid = ids[:n], ids[n : 2 * n], ids[2 * n : 2 * n + m], ids[2 * n + m :]
    ep_s = np.concatenate([sid * 65537 + P["sport"] + 1, qsid * 65537 + E["q_sport"] + 1])
    ep_d = np.concatenate([did * 65537 + P["dport"] + 1, qdid * 65537 + E["q_dport"] + 1])
    lo_ep_all, hi_ep_all = np.minimum(ep_s, ep_d), np.maximum(ep_s, ep_d)
    proto_all = np.concatenate([P["proto"], E["q_proto"]]).astype(np.int64)
    key_all = _mix(lo_ep_all, hi_ep_all, proto_all)
    key, ekey = key_all[:n], key_all[n:]
    lo_ep, hi_ep = lo_ep_all[:n], hi_ep_all[:n]
    e_lo, e_hi = lo_ep_all[n:].copy(), hi_ep_all[n:].copy()
    a_sends = ep_s[:n] <= ep_d[:n]
    del ids, ep_s, ep_d, proto_all  # memory: packet-sized temporaries go as soon as they are used

    # --- flows --------------------------------------------------------------------------------
    kind = P["kind"]
    in_flow = kind != KIND_UNREACH
    fp = np.flatnonzero(in_flow)
    ts = P["ts"]
    if len(fp) and np.all(ts[fp][1:] >= ts[fp][:-1]):
        order = fp[np.argsort(key[fp], kind="stable")]
    else:
        order = fp[np.lexsort((ts[fp], key[fp]))]
    k = key[order]
    t = ts[order]
    k_lo, k_hi = lo_ep[order], hi_ep[order]
    fl = P["flags"][order].astype(np.int64)
    pr = P["proto"][order].astype(np.int64)
    nf_pk = len(order)
    new_group = np.ones(nf_pk, dtype=bool)
    new_group[1:] = (k[1:] != k[:-1]) | (k_lo[1:] != k_lo[:-1]) | (k_hi[1:] != k_hi[:-1])
    gap = np.zeros(nf_pk, dtype=np.int64)
    gap[1:] = t[1:] - t[:-1]
    is_tcp = pr == 6
    pure_syn = is_tcp & ((fl & 0x12) == 0x02)
    rf = (is_tcp & ((fl & 0x05) != 0)).astype(np.int64)
    crf = np.cumsum(rf)
    del rf
    pos = np.arange(nf_pk)
    anchor = np.maximum.accumulate(np.where(pure_syn | new_group, pos, 0))
    prev_anchor = np.zeros(nf_pk, dtype=np.int64)
    prev_anchor[1:] = anchor[:-1]
    before = np.where(prev_anchor > 0, crf[np.maximum(prev_anchor - 1, 0)], 0)
    prev_c = np.zeros(nf_pk, dtype=np.int64)
    prev_c[1:] = crf[:-1]
    closed = (prev_c - before) > 0
    del crf, pos, anchor, prev_anchor, before, prev_c
    # TCP: a new SYN after a close or a pause; any packet after a long silence (as Zeek's
    # 5-minute TCP inactivity timeout); other protocols: a pause
    new_flow = new_group | np.where(
        is_tcp, (pure_syn & (closed | (gap > timeout_ns))) | (gap > _TCP_IDLE_FACTOR * timeout_ns), gap > timeout_ns
    )
    fstart = np.flatnonzero(new_flow)
    nflows = len(fstart)
    flow_of = np.cumsum(new_flow) - 1
    del new_group, gap, pure_syn, closed, new_flow, is_tcp, pr

    first = order[fstart]
    f_proto = P["proto"][first].astype(np.int64)
    f_flags = P["flags"][first].astype(np.int64)
    f_kind = kind[first]
    f_sport, f_dport = P["sport"][first].astype(np.int64), P["dport"][first].astype(np.int64)
    f_tcp = f_proto == 6
    first_syn = f_tcp & ((f_flags & 0x12) == 0x02)
    first_synack = f_tcp & ((f_flags & 0x12) == 0x12)
    sender_init = np.ones(nflows, dtype=bool)
    sender_init[first_synack] = False
    sender_init[f_kind == KIND_REPLY] = False
    mid = f_tcp & ~first_syn & ~first_synack
    swap = mid & (f_sport < 1024) & (f_dport >= 1024)
    sender_init[swap] = False
    init_is_a = np.where(sender_init, a_sends[first], ~a_sends[first])
    from_init = a_sends[order] == init_is_a[flow_of]

    nb = P["nbytes"][order]
    src_pk = np.add.reduceat(from_init.astype(np.int64), fstart)
    tot_pk = np.diff(np.append(fstart, nf_pk))
    dst_pk = tot_pk - src_pk
    src_by = np.add.reduceat(np.where(from_init, nb, 0), fstart)
    dst_by = np.add.reduceat(np.where(from_init, 0, nb), fstart)
    init_flags = np.bitwise_or.reduceat(np.where(from_init, fl, 0), fstart)
    resp_flags = np.bitwise_or.reduceat(np.where(from_init, 0, fl), fstart)
    resp_nonrst = np.add.reduceat((~from_init & ((fl & 0x04) == 0)).astype(np.int64), fstart) > 0
    t_first = t[fstart]
    t_last = t[np.append(fstart[1:], nf_pk) - 1]
    fkey, f_lo, f_hi = k[fstart], k_lo[fstart], k_hi[fstart]
    del flow_of, from_init, nb, fl, t, k, k_lo, k_hi, key_all, lo_ep_all, hi_ep_all, key, lo_ep, hi_ep, a_sends

    # endpoints of the initiator and responder
    f_sid, f_did = sid[first], did[first]
    i_id = np.where(sender_init, f_sid, f_did)
    r_id = np.where(sender_init, f_did, f_sid)
    i_port = np.where(sender_init, f_sport, f_dport)
    r_port = np.where(sender_init, f_dport, f_sport)

    outcome = np.full(nflows, _NOREP, dtype=np.int8)
    answered = dst_pk > 0
    tcp_out = np.where(resp_nonrst, _EST, np.where((resp_flags & 0x04) != 0, _REJ, _NOREP))
    outcome = np.where(f_tcp, np.where(first_syn, tcp_out, _PARTIAL), np.where(answered, _EST, _NOREP))
    outcome = np.where(f_kind == KIND_REPLY, _PARTIAL, outcome).astype(np.int8)
    r_hi = np.where(sender_init, P["dst_hi"][first], P["src_hi"][first])
    r_lo = np.where(sender_init, P["dst_lo"][first], P["src_lo"][first])
    i_hi = np.where(sender_init, P["src_hi"][first], P["dst_hi"][first])
    i_lo = np.where(sender_init, P["src_lo"][first], P["dst_lo"][first])
    mcast = _multicast(r_hi, r_lo)
    outcome[(outcome == _NOREP) & mcast] = _UNKNOWN
    icmp_t = np.where(np.isin(f_kind, (KIND_QUERY, KIND_REPLY)), P["itype"][first], -1).astype(np.int64)
    icmp_c = np.where(np.isin(f_kind, (KIND_QUERY, KIND_REPLY)), P["icode"][first], -1).astype(np.int64)

    # --- ICMP errors quoting a probe ---------------------------------------------------------
    used_errors = 0
    if m:
        ets = ts[E["pkt"]]
        readable = E["q_sport"] >= 0
        # merge flows (sorted by key, start) and errors by (key, time): the last flow before each error
        keys = np.concatenate([fkey, ekey])
        times = np.concatenate([t_first, ets])
        is_err = np.concatenate([np.zeros(nflows, bool), np.ones(m, bool)])
        o = np.lexsort((is_err, times, keys))
        idx = np.concatenate([np.arange(nflows), np.full(m, -1)])[o]
        last = np.maximum.accumulate(np.where(idx >= 0, idx, -1))
        cand = np.full(m, -1, dtype=np.int64)
        cand[(o[is_err[o]] - nflows)] = last[is_err[o]]
        ok = readable & (cand >= 0)
        c = np.maximum(cand, 0)
        ok &= (fkey[c] == ekey) & (f_lo[c] == e_lo) & (f_hi[c] == e_hi) & (i_id[c] == qsid) & (i_port[c] == np.where(np.isin(E["q_proto"], (6, 17)), E["q_sport"], i_port[c]))
        hit = c[ok]
        e_pk = E["pkt"][ok]
        np.add.at(dst_pk, hit, 1)
        np.add.at(dst_by, hit, P["nbytes"][e_pk])
        np.maximum.at(t_last, hit, ts[e_pk])
        mark = np.zeros(nflows, dtype=bool)
        mark[hit] = True
        icmp_t[hit] = P["itype"][e_pk]
        icmp_c[hit] = P["icode"][e_pk]
        outcome[mark & (outcome == _NOREP)] = _ICMP
        used_errors = int(ok.sum())
        report.skip("ICMP unreachable quoting a probe not in the capture", m - used_errors)

    # --- probe retries into attempts ----------------------------------------------------------
    probe = np.isin(outcome, (_EST, _REJ, _NOREP, _ICMP)) & np.isin(f_proto, (1, 6, 17, 58))
    merge_port = np.where(np.isin(f_proto, (6, 17)), r_port, -1)
    i_mp = i_id * 65537 + merge_port + 1
    g2 = _mix(i_mp, r_id, f_proto)
    o2 = np.lexsort((t_first, g2))
    g2s = g2[o2]
    same = (g2s[1:] == g2s[:-1]) & (i_mp[o2][1:] == i_mp[o2][:-1]) & (r_id[o2][1:] == r_id[o2][:-1])
    cont = np.zeros(nflows, dtype=bool)
    if nflows > 1:
        prev, cur = o2[:-1], o2[1:]
        cont[1:] = (
            same
            & probe[prev]
            & probe[cur]
            & (outcome[prev] != _EST)
            & (t_first[cur] - t_last[prev] <= timeout_ns)
        )
    astart = np.flatnonzero(~cont)
    report.used(int(nf_pk) + used_errors)

    def agg_sum(x):
        return np.add.reduceat(x[o2], astart)

    a_first = o2[astart]
    a_t0 = np.minimum.reduceat(t_first[o2], astart)
    a_t1 = np.maximum.reduceat(t_last[o2], astart)
    a_out_p = np.maximum.reduceat(_PRIORITY[outcome[o2]], astart)
    inv = np.full(int(_PRIORITY.max()) + 1, -1, dtype=np.int64)
    inv[_PRIORITY[[_NOREP, _ICMP, _REJ, _EST]]] = [_NOREP, _ICMP, _REJ, _EST]
    a_out = np.where(a_out_p > 0, inv[a_out_p], outcome[a_first])
    a_flags = np.bitwise_or.reduceat(init_flags[o2], astart)
    a_it = np.maximum.reduceat(icmp_t[o2], astart)
    a_ic = np.maximum.reduceat(np.where(icmp_t[o2] >= 0, icmp_c[o2], -1), astart)
    cols_src_pk, cols_dst_pk = agg_sum(src_pk), agg_sum(dst_pk)
    cols_src_by, cols_dst_by = agg_sum(src_by), agg_sum(dst_by)
    a_proto = f_proto[a_first]

    # --- the canonical frame ------------------------------------------------------------------
    row = np.argsort(a_t0, kind="stable")
    a_first, a_proto = a_first[row], a_proto[row]
    both = _address_text(np.concatenate([i_hi[a_first], r_hi[a_first]]), np.concatenate([i_lo[a_first], r_lo[a_first]]))
    n_rows = len(a_first)
    transport = np.select(
        [a_proto == 6, a_proto == 17, a_proto == 1, a_proto == 58],
        [_TRANSPORTS.index("tcp"), _TRANSPORTS.index("udp"), _TRANSPORTS.index("icmp"), _TRANSPORTS.index("icmpv6")],
        _TRANSPORTS.index("other"),
    ).astype(np.int8)
    has_ports = np.isin(a_proto, (6, 17))
    is_icmp = np.isin(a_proto, (1, 58))
    a_it, a_ic = a_it[row], a_ic[row]
    icmp_mask = a_it < 0
    columns = {
        "event_start": pd.to_datetime(a_t0[row], unit="ns", utc=True),
        "event_duration_s": (a_t1[row] - a_t0[row]) / 1e9,
        "source_ip": both[:n_rows],
        "source_port": pd.arrays.IntegerArray(i_port[a_first].astype(np.int32), ~has_ports),
        "destination_ip": both[n_rows:],
        "destination_port": pd.arrays.IntegerArray(r_port[a_first].astype(np.int32), ~has_ports),
        "network_transport": pd.Categorical.from_codes(transport, dtype=schema.TRANSPORT_DTYPE),
        "conn_outcome": pd.Categorical.from_codes(a_out[row].astype(np.int8), dtype=schema.OUTCOME_DTYPE),
        "source_bytes": pd.arrays.IntegerArray(cols_src_by[row].astype(np.int64), np.zeros(len(row), bool)),
        "destination_bytes": pd.arrays.IntegerArray(cols_dst_by[row].astype(np.int64), np.zeros(len(row), bool)),
        "source_packets": pd.arrays.IntegerArray(cols_src_pk[row].astype(np.int64), np.zeros(len(row), bool)),
        "destination_packets": pd.arrays.IntegerArray(cols_dst_pk[row].astype(np.int64), np.zeros(len(row), bool)),
        "tcp_flags": pd.arrays.IntegerArray(a_flags[row].astype(np.int32), a_proto != 6),
        "icmp_type": pd.arrays.IntegerArray(np.maximum(a_it, 0).astype(np.int16), icmp_mask),
        "icmp_code": pd.arrays.IntegerArray(np.maximum(a_ic, 0).astype(np.int16), icmp_mask),
        "pcap_ip_proto": a_proto.astype(np.int16),
    }
    del is_icmp
    return schema.conform(columns, log_format="pcap")
