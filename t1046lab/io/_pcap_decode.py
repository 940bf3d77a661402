"""Decoding framed packets (link layer, IPv4/IPv6, TCP/UDP/ICMP) into compact arrays.

Everything is vectorised over the packets of a window: fields are gathered from the
window's bytes at per-packet offsets. Each packet ends with one status: decoded (kept in
the compact arrays), skipped (well formed but not a connection: ARP, a non-first fragment,
ICMP router messages...) or quarantined (truncated or malformed headers, unknown link
types), counted in the report with its byte offset.
"""

from __future__ import annotations

import numpy as np

from ._pcap_frames import Frames
from ._report import ReadReport

__all__ = ["ERROR_FIELDS", "KIND_FLOW", "KIND_QUERY", "KIND_REPLY", "KIND_UNREACH", "PACKET_FIELDS", "decode"]

KIND_FLOW, KIND_QUERY, KIND_REPLY, KIND_UNREACH = 0, 1, 2, 3

#: Per-packet arrays (dtype) handed to connection assembly.
PACKET_FIELDS = {
    "ts": np.int64,
    "src_hi": np.uint64,
    "src_lo": np.uint64,
    "dst_hi": np.uint64,
    "dst_lo": np.uint64,
    "sport": np.int32,
    "dport": np.int32,
    "proto": np.uint8,
    "flags": np.uint8,
    "kind": np.uint8,
    "itype": np.int16,
    "icode": np.int16,
    "nbytes": np.int64,
}
#: Per-ICMP-error arrays: the probe it quotes (``pkt`` is the index of the error packet).
ERROR_FIELDS = {
    "pkt": np.int64,
    "q_src_hi": np.uint64,
    "q_src_lo": np.uint64,
    "q_dst_hi": np.uint64,
    "q_dst_lo": np.uint64,
    "q_proto": np.uint8,
    "q_sport": np.int32,
    "q_dport": np.int32,
}

_V4_MAPPED = np.uint64(0xFFFF << 32)
_IPV4 = np.dtype([("vihl", "u1"), ("tos", "u1"), ("len", ">u2"), ("id", ">u2"), ("frag", ">u2"), ("ttl", "u1"),
                  ("proto", "u1"), ("csum", ">u2"), ("src", ">u4"), ("dst", ">u4")])
_PORTS_FLAGS = np.dtype([("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"), ("ack", ">u4"), ("off", "u1"),
                         ("flags", "u1")])
_ETHERTYPE_NAMES = {
    0x0806: "ARP",
    0x8035: "RARP",
    0x88CC: "LLDP",
    0x888E: "EAPOL",
    0x8863: "PPPoE discovery",
    0x8864: "PPPoE session",
    0x8847: "MPLS",
    0x8848: "MPLS",
    0x88E1: "HomePlug",
    0x8899: "Realtek",
    0x9000: "loopback",
    0x0004: "802.2 LLC",
}
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_V6_GENERIC_EXT = (0, 43, 60, 135, 139, 140, 253, 254)
# ICMP query request -> reply types
_V4_QUERIES = {8: 0, 13: 14, 15: 16, 17: 18}
_V6_QUERIES = {128: 129}

# status codes: 0 decoded; positive = skipped; negative = quarantined
_SKIP = {
    1: "not IP: 802.3/LLC frame",
    2: "IPv4 non-first fragment (no transport header)",
    3: "IPv6 non-first fragment (no transport header)",
}
_BAD = {
    -1: "frame too short for its link-layer header",
    -2: "truncated IPv4 header",
    -3: "malformed IPv4 header",
    -4: "truncated IPv6 header",
    -5: "malformed IPv6 header",
    -6: "truncated IPv6 extension header",
    -7: "truncated TCP header",
    -8: "truncated UDP header",
    -9: "truncated ICMP header",
    -10: "raw IP frame with an IP version other than 4 or 6",
    -11: "truncated VLAN tag",
    -12: "loopback frame with an unknown address family",
}


class _Bytes:
    """Big-endian field gathers at arbitrary positions of a byte buffer (clipped, never out of range)."""

    def __init__(self, b: np.ndarray):
        self.b = b
        n = len(b)
        self.n = n
        self.v = {}
        for size, dt in ((2, ">u2"), (4, ">u4"), (8, ">u8")):
            if n >= size:
                self.v[size] = np.ndarray((n - size + 1,), dtype=dt, buffer=b, offset=0, strides=(1,))
            else:
                self.v[size] = np.zeros(1, dtype=dt)

    def u8(self, pos: np.ndarray) -> np.ndarray:
        return self.b[np.clip(pos, 0, max(self.n - 1, 0))] if self.n else np.zeros(len(pos), np.uint8)

    def be(self, size: int, pos: np.ndarray) -> np.ndarray:
        v = self.v[size]
        return v[np.clip(pos, 0, len(v) - 1)]

    def record(self, dtype: np.dtype, pos: np.ndarray) -> np.ndarray:
        """Fixed-layout headers at ``pos``, gathered at once (one gather instead of one per field).

        Each field has the value :meth:`u8` / :meth:`be` would give, also for headers running
        past the end of the buffer.
        """
        size = dtype.itemsize
        if self.n >= size:
            view = np.ndarray((self.n - size + 1,), dtype=f"V{size}", buffer=self.b, offset=0, strides=(1,))
            out = view[np.clip(pos, 0, self.n - size)].view(dtype)
            late = np.flatnonzero((pos > self.n - size) | (pos < 0))
        else:
            out = np.zeros(len(pos), dtype=dtype)
            late = np.arange(len(pos))
        for name in dtype.names if len(late) else ():
            ftype, off = dtype.fields[name][:2]
            p = pos[late] + off
            out[name][late] = self.u8(p) if ftype.itemsize == 1 else self.be(ftype.itemsize, p)
        return out


def _where(mask: np.ndarray, new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """``np.where(mask, new, old)`` for arrays, skipping the select when ``mask`` is all true (the usual case)."""
    if mask.all() and np.shape(new) == np.shape(old):
        return np.asarray(new).astype(np.result_type(new, old), copy=False)
    return np.where(mask, new, old)


def _empty(fields: dict) -> dict[str, np.ndarray]:
    return {k: np.zeros(0, dtype=t) for k, t in fields.items()}


def decode(fr: Frames, report: ReadReport) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Decode one window's packets; return (packet arrays, ICMP-error arrays) of the decoded ones."""
    n = len(fr)
    if n == 0:
        return _empty(PACKET_FIELDS), _empty(ERROR_FIELDS)
    B = _Bytes(fr.buf)
    start = fr.data
    end = start + fr.caplen
    lt = fr.linktype.astype(np.int64)
    status = np.zeros(n, dtype=np.int16)

    def fail(mask: np.ndarray, code: int) -> None:
        if mask.any():
            status[mask & (status == 0)] = code

    # --- link layer ---------------------------------------------------------------------
    etype = np.zeros(n, dtype=np.int64)
    l3 = start.copy()
    known = np.isin(lt, (0, 1, 12, 14, 101, 108, 113, 228, 229, 276))
    unknown_lt = ~known
    eth = lt == 1
    if eth.any():
        fail(eth & (start + 14 > end), -1)
        et = B.be(2, start + 12).astype(np.int64)
        off = start + 14
        for _ in range(4):  # 802.1Q / 802.1ad tags, stacked
            tagged = eth & np.isin(et, _VLAN_TPIDS)
            if not tagged.any():
                break
            fail(tagged & (off + 2 > end), -11)
            et = _where(tagged, B.be(2, off + 2).astype(np.int64), et)
            off = _where(tagged, off + 4, off)
        etype = _where(eth, et, etype)
        l3 = _where(eth, off, l3)
        fail(eth & (et <= 1500), 1)
    sll = lt == 113
    if sll.any():
        fail(sll & (start + 16 > end), -1)
        etype = _where(sll, B.be(2, start + 14).astype(np.int64), etype)
        l3 = _where(sll, start + 16, l3)
    sll2 = lt == 276
    if sll2.any():
        fail(sll2 & (start + 20 > end), -1)
        etype = _where(sll2, B.be(2, start).astype(np.int64), etype)
        l3 = _where(sll2, start + 20, l3)
    rawip = np.isin(lt, (12, 14, 101))
    if rawip.any():
        fail(rawip & (start + 1 > end), -1)
        ver = B.u8(start) >> 4
        etype = np.where(rawip, np.where(ver == 4, 0x0800, np.where(ver == 6, 0x86DD, -1)), etype)
        fail(rawip & (etype == -1), -10)
    etype = np.where(lt == 228, 0x0800, np.where(lt == 229, 0x86DD, etype))
    loop = (lt == 0) | (lt == 108)
    if loop.any():
        fail(loop & (start + 4 > end), -1)
        le = B.u8(start).astype(np.int64) | (B.u8(start + 1).astype(np.int64) << 8)
        be_ = B.be(4, start).astype(np.int64)
        fam = np.where((lt == 0) & (be_ > 0xFFFF), le, be_)  # NULL is in the capturing host's order
        etype = np.where(loop, np.where(fam == 2, 0x0800, np.where(np.isin(fam, (10, 24, 28, 30)), 0x86DD, -1)), etype)
        fail(loop & (etype == -1), -12)
        l3 = _where(loop, start + 4, l3)
    status[unknown_lt & (status == 0)] = -100  # reported per link type below
    v4 = (etype == 0x0800) & (status == 0)
    v6 = (etype == 0x86DD) & (status == 0)
    nonip = (status == 0) & ~v4 & ~v6
    status[nonip] = 100  # reported per ethertype below

    # --- IP -----------------------------------------------------------------------------
    src_hi = np.zeros(n, dtype=np.uint64)
    src_lo = np.zeros(n, dtype=np.uint64)
    dst_hi = np.zeros(n, dtype=np.uint64)
    dst_lo = np.zeros(n, dtype=np.uint64)
    proto = np.zeros(n, dtype=np.int64)
    l4 = np.zeros(n, dtype=np.int64)
    nbytes = np.zeros(n, dtype=np.int64)
    if v4.any():
        fail(v4 & (l3 + 20 > end), -2)
        h4 = B.record(_IPV4, l3)
        b0 = h4["vihl"].astype(np.int64)
        ihl = (b0 & 15) * 4
        tot = h4["len"].astype(np.int64)
        tot = np.where(tot == 0, fr.origlen - (l3 - start), tot)  # TSO: total length left zero
        fail(v4 & (((b0 >> 4) != 4) | (ihl < 20) | (tot < ihl) | (l3 + ihl > end)), -3)
        frag = h4["frag"].astype(np.int64)
        fail(v4 & ((frag & 0x1FFF) != 0), 2)
        proto = _where(v4, h4["proto"], proto)
        src_lo = _where(v4, h4["src"].astype(np.uint64) | _V4_MAPPED, src_lo)
        dst_lo = _where(v4, h4["dst"].astype(np.uint64) | _V4_MAPPED, dst_lo)
        del h4
        l4 = _where(v4, l3 + ihl, l4)
        nbytes = _where(v4, tot, nbytes)
    if v6.any():
        fail(v6 & (l3 + 40 > end), -4)
        fail(v6 & ((B.u8(l3) >> 4) != 6), -5)
        plen = B.be(2, l3 + 4).astype(np.int64)
        nbytes = np.where(v6, np.where(plen == 0, fr.origlen - (l3 - start), 40 + plen), nbytes)
        nh = np.where(v6, B.u8(l3 + 6).astype(np.int64), 0)
        src_hi = _where(v6, B.be(8, l3 + 8), src_hi)
        src_lo = _where(v6, B.be(8, l3 + 16), src_lo)
        dst_hi = _where(v6, B.be(8, l3 + 24), dst_hi)
        dst_lo = _where(v6, B.be(8, l3 + 32), dst_lo)
        pos = l3 + 40
        for _ in range(8):  # extension headers
            ext = v6 & (status == 0) & (np.isin(nh, _V6_GENERIC_EXT) | (nh == 44) | (nh == 51))
            if not ext.any():
                break
            fail(ext & (pos + 8 > end), -6)
            ext &= status == 0
            hl = B.u8(pos + 1).astype(np.int64)
            size = np.where(nh == 44, 8, np.where(nh == 51, (hl + 2) * 4, (hl + 1) * 8))
            fragment = ext & (nh == 44)
            fail(fragment & ((B.be(2, pos + 2).astype(np.int64) >> 3) != 0), 3)
            new_nh = B.u8(pos).astype(np.int64)
            nh = _where(ext, new_nh, nh)
            pos = _where(ext, pos + size, pos)
        proto = _where(v6, nh, proto)
        l4 = _where(v6, pos, l4)
    ip = (v4 | v6) & (status == 0)

    # --- transport ----------------------------------------------------------------------
    sport = np.full(n, -1, dtype=np.int64)
    dport = np.full(n, -1, dtype=np.int64)
    flags = np.zeros(n, dtype=np.int64)
    kind = np.zeros(n, dtype=np.int64)
    itype = np.full(n, -1, dtype=np.int64)
    icode = np.full(n, -1, dtype=np.int64)
    tcp = ip & (proto == 6)
    udp = ip & (proto == 17)
    fail(tcp & (l4 + 14 > end), -7)
    fail(udp & (l4 + 4 > end), -8)
    ports = (tcp | udp) & (status == 0)
    h4 = B.record(_PORTS_FLAGS, l4)
    sport = _where(ports, h4["sport"].astype(np.int64), sport)
    dport = _where(ports, h4["dport"].astype(np.int64), dport)
    flags = _where(tcp, h4["flags"], flags)
    del h4
    icmp4 = ip & (proto == 1) & v4
    icmp6 = ip & (proto == 58) & v6
    icmp = icmp4 | icmp6
    errors = _empty(ERROR_FIELDS)
    icmp_skip = np.zeros(n, dtype=bool)
    if icmp.any():
        fail(icmp & (l4 + 8 > end), -9)
        icmp &= status == 0
        t = B.u8(l4).astype(np.int64)
        c = B.u8(l4 + 1).astype(np.int64)
        itype = _where(icmp, t, itype)
        icode = _where(icmp, c, icode)
        req = (icmp4 & np.isin(t, list(_V4_QUERIES))) | (icmp6 & np.isin(t, list(_V6_QUERIES)))
        rep = (icmp4 & np.isin(t, list(_V4_QUERIES.values()))) | (icmp6 & np.isin(t, list(_V6_QUERIES.values())))
        req &= icmp
        rep &= icmp
        ident = B.be(2, l4 + 4).astype(np.int64)
        sport = _where(req | rep, ident, sport)
        dport = _where(req | rep, ident, dport)
        kind = np.where(req, KIND_QUERY, np.where(rep, KIND_REPLY, kind))
        unreach = icmp & ((icmp4 & (t == 3) & (c != 4)) | (icmp6 & (t == 1)))
        kind = np.where(unreach, KIND_UNREACH, kind)
        icmp_skip = icmp & ~(req | rep | unreach)
        if unreach.any():
            errors = _quotes(B, np.flatnonzero(unreach), l4, end)
            # an error whose quote cannot be read is kept out of matching (skipped later)
    # --- accounting ---------------------------------------------------------------------
    offsets = fr.offset
    for code in np.unique(status) if status.any() else ():  # usually every packet decoded
        code = int(code)
        if code == 0:
            continue
        sel = status == code
        if code == 100:
            for e in np.unique(etype[sel]):
                name = _ETHERTYPE_NAMES.get(int(e), f"ethertype 0x{int(e):04X}")
                report.skip(f"not IP: {name}", int((etype[sel] == e).sum()))
        elif code == -100:
            for v in np.unique(lt[sel]):
                report.bad_many(f"unknown link type {int(v)}", offsets=offsets[sel & (lt == v)])
        elif code > 0:
            report.skip(_SKIP[code], int(sel.sum()))
        else:
            report.bad_many(_BAD[code], offsets=offsets[sel])
    ok = status == 0
    if icmp_skip.any():
        for v6flag, name in ((False, "ICMP"), (True, "ICMPv6")):
            sel = icmp_skip & (v6 if v6flag else v4)
            for t in np.unique(itype[sel]):
                report.skip(f"{name} type {int(t)} (neither a probe nor its answer)", int((itype[sel] == t).sum()))
        ok &= ~icmp_skip
    keep = np.flatnonzero(ok)
    fields = {
        "ts": fr.ts_ns,
        "src_hi": src_hi,
        "src_lo": src_lo,
        "dst_hi": dst_hi,
        "dst_lo": dst_lo,
        "sport": sport,
        "dport": dport,
        "proto": proto,
        "flags": flags,
        "kind": kind,
        "itype": itype,
        "icode": icode,
        "nbytes": nbytes,
    }
    every = len(keep) == n  # usually: no gather needed
    packets = {
        k: (v if every else v[keep]).astype(PACKET_FIELDS[k], copy=not every or v is fr.ts_ns)
        for k, v in fields.items()
    }
    del fields
    if len(errors["pkt"]):
        # renumber to positions among the kept packets
        errors["pkt"] = np.searchsorted(keep, errors["pkt"])
    return packets, errors


def _quotes(B: _Bytes, idx: np.ndarray, l4: np.ndarray, end: np.ndarray) -> dict[str, np.ndarray]:
    """The probe quoted by ICMP errors ``idx``: its addresses, protocol and ports (-1 if unreadable)."""
    q = l4[idx] + 8
    e = end[idx]
    ver = B.u8(q) >> 4
    qv4 = (ver == 4) & (q + 20 <= e)
    qv6 = (ver == 6) & (q + 40 <= e)
    ihl = (B.u8(q).astype(np.int64) & 15) * 4
    ql4 = np.where(qv4, q + ihl, q + 40)
    qproto = np.where(qv4, B.u8(q + 9), np.where(qv6, B.u8(q + 6), 0)).astype(np.int64)
    src_lo = np.where(qv4, B.be(4, q + 12).astype(np.uint64) | _V4_MAPPED, B.be(8, q + 16))
    dst_lo = np.where(qv4, B.be(4, q + 16).astype(np.uint64) | _V4_MAPPED, B.be(8, q + 32))
    src_hi = np.where(qv6, B.be(8, q + 8), np.uint64(0))
    dst_hi = np.where(qv6, B.be(8, q + 24), np.uint64(0))
    readable = (qv4 | qv6) & (ql4 + 4 <= e)
    transport = np.isin(qproto, (6, 17))
    quoted_query = ((qproto == 1) & (B.u8(ql4) == 8)) | ((qproto == 58) & (B.u8(ql4) == 128))
    readable &= transport | (quoted_query & (ql4 + 6 <= e))
    sp = np.where(transport, B.be(2, ql4), B.be(2, ql4 + 4)).astype(np.int64)
    dp = np.where(transport, B.be(2, ql4 + 2), B.be(2, ql4 + 4)).astype(np.int64)
    return {
        "pkt": idx.astype(np.int64),
        "q_src_hi": src_hi.astype(np.uint64),
        "q_src_lo": src_lo.astype(np.uint64),
        "q_dst_hi": dst_hi.astype(np.uint64),
        "q_dst_lo": dst_lo.astype(np.uint64),
        "q_proto": qproto.astype(np.uint8),
        "q_sport": np.where(readable, sp, -1).astype(np.int32),
        "q_dport": np.where(readable, dp, -1).astype(np.int32),
    }
