"""Assembling decoded packets into connection attempts (vectorised).

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

import sys

import numpy as np
import pandas as pd

from .. import schema
from ._pcap_decode import KIND_QUERY, KIND_REPLY, KIND_UNREACH
from ._report import ReadReport

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
    h = None
    for x in parts:
        # in place: the same wrapping arithmetic as ``h = (h ^ x) * M1`` with fewer temporaries
        x = x.view(np.uint64) if x.dtype == np.int64 else x.astype(np.uint64)
        if h is None:
            h = x * _M1  # 0 ^ x == x
        else:
            h ^= x
            h *= _M1
        h ^= h >> np.uint64(29)
    h *= _M2
    return h


def _address_ids(his: list[np.ndarray], los: list[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    """Exact integer ids below 2^32 for 128-bit addresses (given in parts), and whether they are the IPv4 addresses."""
    v4_mapped = np.uint64(0xFFFF)
    if sys.byteorder == "little" and all(lo.flags.c_contiguous for lo in los):
        # the 32-bit halves as strided views: no shifted or masked temporaries
        words = [lo.view(np.uint32) for lo in los]
        if not any(h.any() for h in his) and all((w[1::2] == 0xFFFF).all() for w in words):
            return [w[0::2].astype(np.int64) for w in words], True
    elif not any(h.any() for h in his) and all(((lo >> np.uint64(32)) == v4_mapped).all() for lo in los):
        return [(lo & np.uint64(0xFFFFFFFF)).astype(np.int64) for lo in los], True
    sizes = np.cumsum([len(x) for x in los])[:-1]
    lo, hi = np.concatenate(los), np.concatenate(his)
    clo, ulo = _factorize(lo)
    chi, _ = _factorize(hi)
    return np.split(_factorize(chi * len(ulo) + clo)[0], sizes), False


_OCTETS = np.array([str(i).encode() for i in range(256)], dtype="S3")


def _ipv4_text(addr: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """IPv4 addresses (integers) as a string array: each distinct address is formatted once."""
    codes, uniq = pd.factorize(addr.astype(np.uint32), sort=False)  # a uint32 hash table is fast
    uniq = np.asarray(uniq).astype(np.int64)
    strings = getattr(np, "strings", np.char)  # numpy >= 2: ufuncs
    text = _OCTETS[(uniq >> 24) & 255]
    for shift in (16, 8, 0):
        text = strings.add(strings.add(text, b"."), _OCTETS[(uniq >> shift) & 255])
    if getattr(schema.STRING_DTYPE, "storage", None) == "pyarrow":
        import pyarrow as pa

        # a dictionary-encoded array decoded by Arrow: much faster than a take on the strings
        dictionary = pa.array(text, type=pa.binary()).cast(pa.large_string())
        decoded = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary).cast(pa.large_string())
        return pd.array(decoded, dtype=schema.STRING_DTYPE)
    return pd.array(text.astype(str).astype(object), dtype=schema.STRING_DTYPE).take(codes)


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


def _sorted_groups(
    hkey: np.ndarray, payload: np.ndarray | None, bits: int, exact: tuple[np.ndarray, ...], keep_sorted: bool = False
) -> tuple:
    """``payload`` ordered by (hash ``hkey[payload]``, ``payload``), and where a new exact group starts.

    ``payload=None`` stands for ``np.arange(len(hkey))`` (saves a gather).

    One ``np.sort`` of a packed 64-bit key (the hash's top ``64 - bits`` bits, then
    ``payload``, a unique rank below ``2**bits``) replaces a lexsort; it is much faster.
    Where two different exact keys share the truncated hash (about n²/2^(65 - bits)), the few
    positions of those hash runs are reordered by (full hash, exact key, payload), so every
    exact group is contiguous and in ``payload`` order, as a lexsort would leave it.
    ``hkey`` and the ``exact`` arrays are indexed by the ``payload`` values.
    Returns ``(payload values in order, group-start flags)``, and with ``keep_sorted`` also the
    list of the ``exact`` arrays in that order (gathered for the check anyway).
    """
    mask = np.uint64((1 << bits) - 1)
    if payload is None:  # every position, in order: no gather needed
        packed = hkey & ~mask
        packed |= np.arange(len(hkey), dtype=np.uint64)
    else:
        packed = hkey[payload] & ~mask
        packed |= payload.astype(np.uint64, copy=False)
    packed.sort()
    n = len(packed)
    # the top bits are equal exactly when the xor stays below 2**bits
    same_hash = (packed[1:] ^ packed[:-1]) <= mask if n >= 2 else None
    packed &= mask
    pos = packed.view(np.int64)  # ranks below 2**bits < 2**63: the same values
    del packed
    start = np.ones(n, dtype=bool)
    if n < 2:
        return (pos, start, [x[pos] for x in exact]) if keep_sorted else (pos, start)
    diff = np.zeros(n - 1, dtype=bool)
    in_order = []
    for x in exact:
        xs = x[pos]
        diff |= xs[1:] != xs[:-1]
        in_order.append(xs)
    collide = same_hash & diff
    if collide.any():
        run = np.cumsum(np.concatenate([[True], ~same_hash]))  # hash-run number of each position
        bad = np.isin(run, run[1:][collide])
        sel = np.flatnonzero(bad)
        p = pos[sel]
        keys = [p] + [x[p] for x in exact][::-1] + [hkey[p]]
        pos[sel] = p[np.lexsort(keys)]
        diff = np.zeros(n - 1, dtype=bool)
        in_order = []
        for x in exact:
            xs = x[pos]
            diff |= xs[1:] != xs[:-1]
            in_order.append(xs)
        same_hash &= ~diff | ~bad[1:]
        # inside repaired runs the full hash decides too
        hs = hkey[pos]
        same_hash &= hs[1:] == hs[:-1]
    start[1:] = ~same_hash | diff
    return (pos, start, in_order) if keep_sorted else (pos, start)


def _rank_order(rank: np.ndarray) -> np.ndarray:
    """``np.argsort(rank, kind="stable")`` for non-negative integer ranks, via one packed sort."""
    n = len(rank)
    bits = max(int(n - 1).bit_length(), 1)
    packed = (rank.astype(np.uint64) << np.uint64(bits)) | np.arange(n, dtype=np.uint64)
    packed.sort()
    packed &= np.uint64((1 << bits) - 1)
    return packed.view(np.int64)


def assemble(
    P: dict[str, np.ndarray], E: dict[str, np.ndarray], report: ReadReport, *, timeout_ns: int
) -> pd.DataFrame:
    """Connection attempts (a canonical frame, time-ordered) from decoded packets ``P`` and ICMP errors ``E``.

    Three stages, each a function, so that each one's temporaries are freed before the next
    (peak memory): packets to flows, flows to attempts, attempts to the frame.
    """
    if len(P["ts"]) == 0:
        return schema.conform({}, log_format="pcap", n=0)
    F = _flows(P, E, report, timeout_ns)
    del P, E  # the packets are no longer needed (freed here when the caller passed them without keeping them)
    A = _attempts(F, report, timeout_ns)
    del F
    return _frame(A)


def _flows(P: dict[str, np.ndarray], E: dict[str, np.ndarray], report: ReadReport, timeout_ns: int) -> dict:
    """Packets (time-sorted here if needed) and ICMP errors into flows: a dict of per-flow arrays."""
    n, m = len(P["ts"]), len(E["pkt"])
    # --- addresses and endpoints -----------------------------------------------------------
    (sid, did, qsid, qdid), all_v4 = _address_ids(
        [P["src_hi"], P["dst_hi"], E["q_src_hi"], E["q_dst_hi"]],
        [P["src_lo"], P["dst_lo"], E["q_src_lo"], E["q_dst_lo"]],
    )
    # ids first: with IPv6 they are numbered in capture order
    ts = P["ts"]
    if not np.all(ts[1:] >= ts[:-1]):
        # put packets in time order (stable) once; everything below relies on it
        perm = np.argsort(ts, kind="stable")
        P = {k: v[perm] for k, v in P.items()}
        sid, did = sid[perm], did[perm]
        if m:
            inv = np.empty(n, dtype=np.int64)
            inv[perm] = np.arange(n)
            E = {**E, "pkt": inv[E["pkt"]]}
        ts = P["ts"]
    # dense rank of each packet's time: packs times into few bits for the sorts below
    trank = np.zeros(n, dtype=np.int32 if n < 2**31 else np.int64)
    np.cumsum(ts[1:] != ts[:-1], out=trank[1:])
    ep_s = sid * 65537 + P["sport"] + 1
    ep_d = did * 65537 + P["dport"] + 1
    a_sends = ep_s <= ep_d
    lo_ep = np.where(a_sends, ep_s, ep_d)
    hi_ep = np.where(a_sends, ep_d, ep_s)
    del ep_s, ep_d
    key = _mix(lo_ep, hi_ep, P["proto"])
    if m:
        eps, epd = qsid * 65537 + E["q_sport"] + 1, qdid * 65537 + E["q_dport"] + 1
        e_lo, e_hi = np.minimum(eps, epd), np.maximum(eps, epd)
        ekey = _mix(e_lo, e_hi, E["q_proto"])

    # --- flows --------------------------------------------------------------------------------
    kind = P["kind"]
    bits = max(int(n - 1).bit_length(), 1)
    flow_pk = kind != KIND_UNREACH
    fp = None if flow_pk.all() else np.flatnonzero(flow_pk)
    del flow_pk
    # (hi_ep, proto) as one integer (hi_ep < 2**49, proto < 2**8): equal, and ordered, exactly
    # as the pair, with one gather less
    hi_proto = hi_ep << 8
    hi_proto |= P["proto"]
    order, new_group, (s_lo_ep, s_hi_proto) = _sorted_groups(key, fp, bits, (lo_ep, hi_proto), keep_sorted=True)
    del hi_proto
    nf_pk = len(order)
    t = ts[order]
    # the small per-packet fields and the byte count packed in one word: one random gather
    # instead of five. nbytes * 2**24 keeps its sign; the low 24 bits: kind, a_sends, proto, flags
    word = P["nbytes"] * np.int64(1 << 24)
    word |= kind.astype(np.int64) << 17
    word |= a_sends.astype(np.int64) << 16
    word |= P["proto"].astype(np.int64) << 8
    word |= P["flags"]
    word = word[order]
    fl = (word & 0xFF).astype(np.uint8)
    s_proto = ((word >> 8) & 0xFF).astype(np.uint8)
    s_a_sends = (word & (1 << 16)) != 0
    s_kind = ((word >> 17) & 0x7F).astype(np.uint8)
    nb = word >> 24  # arithmetic shift: the byte count, also if it were negative
    del word
    is_tcp = s_proto == 6
    pure_syn = is_tcp & ((fl & 0x12) == 0x02)
    # a pure SYN starts a new TCP flow when a RST or FIN was seen since the previous SYN (or
    # the group start): count them between consecutive anchors with a prefix sum
    anchors = np.flatnonzero(pure_syn | new_group)
    crf = np.zeros(nf_pk + 1, dtype=np.int32)
    np.cumsum(is_tcp & ((fl & 0x05) != 0), out=crf[1:])
    closed = np.zeros(len(anchors), dtype=bool)
    closed[1:] = crf[anchors[1:]] > crf[anchors[:-1]]
    del crf
    new_flow = new_group
    new_flow[anchors[closed & pure_syn[anchors]]] = True
    # TCP: a new SYN after a pause; any packet after a long silence (as Zeek's 5-minute
    # TCP inactivity timeout); other protocols: a pause
    gap_at = np.flatnonzero(t[1:] - t[:-1] > timeout_ns) + 1
    g_tcp = is_tcp[gap_at]
    long_gap = t[gap_at] - t[gap_at - 1] > _TCP_IDLE_FACTOR * timeout_ns
    new_flow[gap_at[~g_tcp | pure_syn[gap_at] | long_gap]] = True
    del pure_syn, anchors, closed, is_tcp
    fstart = np.flatnonzero(new_flow)
    del new_flow, new_group
    nflows = len(fstart)
    fend = np.append(fstart[1:], nf_pk)

    first = order[fstart]
    f_proto = s_proto[fstart].astype(np.int16)
    f_flags = fl[fstart].astype(np.int64)
    f_kind = s_kind[fstart]
    del s_proto, s_kind
    # the first packets' endpoints from the sorted endpoint keys (sequential, not random, reads):
    # an endpoint is id * 65537 + port + 1 with -1 <= port < 65536
    f_lo_ep = s_lo_ep[fstart]
    f_hi_ep = s_hi_proto[fstart] >> 8
    del s_lo_ep, s_hi_proto
    f_a_sends = s_a_sends[fstart]
    f_sid, f_sport = np.divmod(np.where(f_a_sends, f_lo_ep, f_hi_ep), 65537)
    f_did, f_dport = np.divmod(np.where(f_a_sends, f_hi_ep, f_lo_ep), 65537)
    f_sport -= 1
    f_dport -= 1
    f_tcp = f_proto == 6
    first_syn = f_tcp & ((f_flags & 0x12) == 0x02)
    first_synack = f_tcp & ((f_flags & 0x12) == 0x12)
    sender_init = np.ones(nflows, dtype=bool)
    sender_init[first_synack] = False
    sender_init[f_kind == KIND_REPLY] = False
    mid = f_tcp & ~first_syn & ~first_synack
    swap = mid & (f_sport < 1024) & (f_dport >= 1024)
    sender_init[swap] = False
    init_is_a = np.where(sender_init, f_a_sends, ~f_a_sends)
    from_init = s_a_sends == np.repeat(init_is_a, fend - fstart)
    del a_sends, s_a_sends, f_a_sends

    # per-flow sums as differences of prefix sums (exact for integers; much faster than a
    # reduceat over many short flows)
    csum = np.zeros(nf_pk + 1, dtype=np.int64)
    np.cumsum(from_init, out=csum[1:])
    src_pk = csum[fend] - csum[fstart]
    dst_pk = (fend - fstart) - src_pk
    np.cumsum(nb, out=csum[1:])
    tot_by = csum[fend] - csum[fstart]
    nb[~from_init] = 0
    np.cumsum(nb, out=csum[1:])
    src_by = csum[fend] - csum[fstart]
    dst_by = tot_by - src_by
    del nb, tot_by, csum
    # initiator flags in the low byte; the responder's packets in the high byte: 1 = not a RST, 4 = a RST
    resp = np.where((fl & 0x04) != 0, np.uint16(4 << 8), np.uint16(1 << 8))
    code = np.where(from_init, fl.astype(np.uint16), resp)
    del resp, from_init, fl
    codes = np.bitwise_or.reduceat(code, fstart)
    del code
    init_flags = (codes & 0xFF).astype(np.uint8)
    resp_nonrst = (codes & (1 << 8)) != 0
    resp_rst = (codes & (4 << 8)) != 0
    t_first = t[fstart]
    t_last = t[fend - 1]
    if m:
        fkey, f_lo, f_hi = key[first], f_lo_ep, f_hi_ep
    del t, key, lo_ep, hi_ep

    # endpoints of the initiator and responder
    i_id = np.where(sender_init, f_sid, f_did)
    r_id = np.where(sender_init, f_did, f_sid)
    i_port = np.where(sender_init, f_sport, f_dport).astype(np.int32)
    r_port = np.where(sender_init, f_dport, f_sport).astype(np.int32)
    del sid, did

    answered = dst_pk > 0
    tcp_out = np.where(resp_nonrst, _EST, np.where(resp_rst, _REJ, _NOREP))
    outcome = np.where(f_tcp, np.where(first_syn, tcp_out, _PARTIAL), np.where(answered, _EST, _NOREP))
    outcome = np.where(f_kind == KIND_REPLY, _PARTIAL, outcome).astype(np.int8)
    if all_v4:  # the ids are the addresses
        mcast = ((r_id >> 28) == 0xE) | (r_id == 0xFFFFFFFF)
    else:
        r_hi = np.where(sender_init, P["dst_hi"][first], P["src_hi"][first])
        r_lo = np.where(sender_init, P["dst_lo"][first], P["src_lo"][first])
        i_hi = np.where(sender_init, P["src_hi"][first], P["dst_hi"][first])
        i_lo = np.where(sender_init, P["src_lo"][first], P["dst_lo"][first])
        mcast = _multicast(r_hi, r_lo)
    outcome[(outcome == _NOREP) & mcast] = _UNKNOWN
    is_query = (f_kind == KIND_QUERY) | (f_kind == KIND_REPLY)
    icmp_t = np.where(is_query, P["itype"][first], -1).astype(np.int16)
    icmp_c = np.where(is_query, P["icode"][first], -1).astype(np.int16)

    # --- ICMP errors quoting a probe ---------------------------------------------------------
    used_errors = 0
    if m:
        ets = ts[E["pkt"]]
        readable = E["q_sport"] >= 0
        # the last flow (same key, started at or before the error) before each error; only flows
        # whose key some error carries take part, merged with the errors by (key, time)
        cf = np.flatnonzero(np.isin(fkey, ekey))
        keys = np.concatenate([fkey[cf], ekey])
        times = np.concatenate([t_first[cf], ets])
        is_err = np.concatenate([np.zeros(len(cf), bool), np.ones(m, bool)])
        # (the exact endpoints and protocol sort too, so that a hash collision cannot hide a flow)
        exact = [
            np.concatenate([f_proto[cf], E["q_proto"]]),
            np.concatenate([f_hi[cf], e_hi]),
            np.concatenate([f_lo[cf], e_lo]),
        ]
        o = np.lexsort((np.concatenate([cf, np.arange(m)]), is_err, times, *exact, keys))
        src_idx = np.concatenate([cf, np.full(m, -1)])[o]
        at = np.arange(len(o))
        last = np.maximum.accumulate(np.where(src_idx >= 0, at, -1))
        err_rows = is_err[o]
        cand = np.full(m, -1, dtype=np.int64)
        lp = last[err_rows]
        cand[o[err_rows] - len(cf)] = np.where(lp >= 0, src_idx[np.maximum(lp, 0)], -1)
        ok = readable & (cand >= 0)
        c = np.maximum(cand, 0)
        ok &= (
            (fkey[c] == ekey)
            & (f_lo[c] == e_lo)
            & (f_hi[c] == e_hi)
            & (i_id[c] == qsid)
            & (i_port[c] == np.where(np.isin(E["q_proto"], (6, 17)), E["q_sport"], i_port[c]))
        )
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
    F = {
        "nflows": nflows,
        "used": int(nf_pk) + used_errors,
        "all_v4": all_v4,
        "t_first": t_first,
        "t_last": t_last,
        "trank": trank[first],
        "proto": f_proto,
        "i_id": i_id,
        "r_id": r_id,
        "i_port": i_port,
        "r_port": r_port,
        "outcome": outcome,
        "src_pk": src_pk,
        "dst_pk": dst_pk,
        "src_by": src_by,
        "dst_by": dst_by,
        "init_flags": init_flags,
        "icmp_t": icmp_t,
        "icmp_c": icmp_c,
    }
    if not all_v4:
        F.update(i_hi=i_hi, i_lo=i_lo, r_hi=r_hi, r_lo=r_lo)
    return F


def _attempts(F: dict, report: ReadReport, timeout_ns: int) -> dict:
    """Flows into attempts (probe retries merged): a dict of per-attempt arrays in time order."""
    nflows, outcome, f_proto, t_first, t_last = F["nflows"], F["outcome"], F["proto"], F["t_first"], F["t_last"]
    i_id, r_id = F["i_id"], F["r_id"]
    probe = np.isin(outcome, (_EST, _REJ, _NOREP, _ICMP)) & np.isin(f_proto, (1, 6, 17, 58))
    merge_port = np.where((f_proto == 6) | (f_proto == 17), F["r_port"], -1)
    i_mp = i_id * 65537 + merge_port + 1
    g2 = _mix(i_mp, r_id, f_proto)
    # flows by (retry group, first time, flow index): rank flows by (time, index) first
    f_trank = F["trank"]
    by_time = _rank_order(f_trank)
    fbits = max(int(nflows - 1).bit_length(), 1)
    # (r_id, proto) as one integer (r_id < 2**49, 0 <= proto < 2**8): equal and ordered as the pair
    r_proto = r_id << 8
    r_proto |= f_proto
    o2t, g2_start = _sorted_groups(g2[by_time], None, fbits, (i_mp[by_time], r_proto[by_time]))
    del r_proto
    o2 = by_time[o2t]
    del o2t, by_time, g2, i_mp
    cont = np.zeros(nflows, dtype=bool)
    if nflows > 1:
        prev, cur = o2[:-1], o2[1:]
        cont[1:] = (
            ~g2_start[1:]
            & probe[prev]
            & probe[cur]
            & (outcome[prev] != _EST)
            & (t_first[cur] - t_last[prev] <= timeout_ns)
        )
        del prev, cur
    astart = np.flatnonzero(~cont)
    report.used(F["used"])

    # attempts in time order (ties: retry-group order); ``a_first`` is each one's first flow
    a_first = o2[astart]
    row = _rank_order(f_trank[a_first])
    a_first = a_first[row]
    # the other flows of merged attempts (usually few): their attempt's row
    extra = np.flatnonzero(cont)
    rowpos = np.empty(len(row), dtype=np.int64)
    rowpos[row] = np.arange(len(row))
    extra_row = rowpos[np.cumsum(~cont)[extra] - 1]
    extra_flow = o2[extra]
    merged = len(extra) > 0
    del cont, g2_start, rowpos, extra

    def agg(ufunc, x: np.ndarray) -> np.ndarray:
        """Per attempt, in row order: ``ufunc`` over the attempt's flows."""
        out = x[a_first]
        if merged:
            ufunc.at(out, extra_row, x[extra_flow])
        return out

    a_t0 = t_first[a_first]  # flows of an attempt are in time order
    a_t1 = agg(np.maximum, t_last)
    if merged:
        a_out_p = agg(np.maximum, _PRIORITY[outcome])
        inv = np.full(int(_PRIORITY.max()) + 1, -1, dtype=np.int64)
        inv[_PRIORITY[[_NOREP, _ICMP, _REJ, _EST]]] = [_NOREP, _ICMP, _REJ, _EST]
        a_out = np.where(a_out_p > 0, inv[a_out_p], outcome[a_first])
    else:
        a_out = outcome[a_first]
    icmp_t = F["icmp_t"]
    A = {
        "t0": a_t0,
        "t1": a_t1,
        "outcome": a_out,
        "flags": agg(np.bitwise_or, F["init_flags"]),
        "icmp_t": agg(np.maximum, icmp_t),
        "icmp_c": agg(np.maximum, np.where(icmp_t >= 0, F["icmp_c"], -1).astype(icmp_t.dtype)),
        "src_pk": agg(np.add, F["src_pk"]),
        "dst_pk": agg(np.add, F["dst_pk"]),
        "src_by": agg(np.add, F["src_by"]),
        "dst_by": agg(np.add, F["dst_by"]),
        "proto": f_proto[a_first],
        "i_port": F["i_port"][a_first],
        "r_port": F["r_port"][a_first],
        "all_v4": F["all_v4"],
    }
    if F["all_v4"]:
        A.update(i_id=i_id[a_first], r_id=r_id[a_first])
    else:
        A.update({k: F[k][a_first] for k in ("i_hi", "i_lo", "r_hi", "r_lo")})
    return A



def _frame(A: dict) -> pd.DataFrame:
    """The canonical frame of the attempts ``A``."""
    a_proto = A["proto"]
    if A["all_v4"]:
        both = _ipv4_text(np.concatenate([A["i_id"], A["r_id"]]))
    else:
        both = _address_text(np.concatenate([A["i_hi"], A["r_hi"]]), np.concatenate([A["i_lo"], A["r_lo"]]))
    n_rows = len(a_proto)
    transport = np.select(
        [a_proto == 6, a_proto == 17, a_proto == 1, a_proto == 58],
        [_TRANSPORTS.index("tcp"), _TRANSPORTS.index("udp"), _TRANSPORTS.index("icmp"), _TRANSPORTS.index("icmpv6")],
        _TRANSPORTS.index("other"),
    ).astype(np.int8, copy=False)
    has_ports = (a_proto == 6) | (a_proto == 17)
    icmp_mask = A["icmp_t"] < 0
    valid = np.zeros(n_rows, bool)
    columns = {
        "event_start": pd.to_datetime(A["t0"], unit="ns", utc=True),
        "event_duration_s": (A["t1"] - A["t0"]) / 1e9,
        "source_ip": both[:n_rows],
        "source_port": pd.arrays.IntegerArray(A["i_port"].astype(np.int32, copy=False), ~has_ports),
        "destination_ip": both[n_rows:],
        "destination_port": pd.arrays.IntegerArray(A["r_port"].astype(np.int32, copy=False), ~has_ports),
        "network_transport": pd.Categorical.from_codes(transport, dtype=schema.TRANSPORT_DTYPE),
        "conn_outcome": pd.Categorical.from_codes(A["outcome"].astype(np.int8, copy=False), dtype=schema.OUTCOME_DTYPE),
        "source_bytes": pd.arrays.IntegerArray(A["src_by"].astype(np.int64, copy=False), valid),
        "destination_bytes": pd.arrays.IntegerArray(A["dst_by"].astype(np.int64, copy=False), valid.copy()),
        "source_packets": pd.arrays.IntegerArray(A["src_pk"].astype(np.int64, copy=False), valid.copy()),
        "destination_packets": pd.arrays.IntegerArray(A["dst_pk"].astype(np.int64, copy=False), valid.copy()),
        "tcp_flags": pd.arrays.IntegerArray(A["flags"].astype(np.int32, copy=False), a_proto != 6),
        "icmp_type": pd.arrays.IntegerArray(np.maximum(A["icmp_t"], 0).astype(np.int16, copy=False), icmp_mask),
        "icmp_code": pd.arrays.IntegerArray(np.maximum(A["icmp_c"], 0).astype(np.int16, copy=False), icmp_mask.copy()),
        "pcap_ip_proto": a_proto.astype(np.int16, copy=False),
    }
    del A
    return schema.conform(columns, log_format="pcap")
