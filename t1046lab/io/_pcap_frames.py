"""Framing pcap and pcapng files into packets, vectorised over the file's bytes.

The record chain of a capture is sequential (each header gives the next offset). Instead of
walking it in Python, each window of bytes is scanned with numpy for *candidate* record
starts (positions whose header is plausible), the next offset of every candidate is
computed, and the chain is followed from a known record start:

* usually the chain visits consecutive candidates, which one pass detects;
* otherwise (plausible-looking headers inside packet data), candidates that nothing points
  to are pruned a few rounds (O(n) each), which leaves the chain in practice;
* failing that, the chain is followed by pointer doubling (list ranking), O(n log n).

Classic pcap candidates are found with a first pass over single bytes (the most
significant byte of the seconds field must match the time of the previous window's last
record, within about 194 days) and then full header checks on the survivors; pcapng
candidates need a known block type and the block length repeated at the block's end.

Where the chain breaks inside the file (a corrupt header), the header is inspected once in
Python: a valid record of an unusual kind (a pcapng block type we do not list, a clock
jump) is taken, otherwise the bytes up to the next candidate that starts a chain of at
least :data:`_RESYNC_CHAIN` records are quarantined as one record with its byte offset.
The loop per *break* is in Python; there is none per packet.

Windows are read from the (possibly gzip-compressed) file in order, so memory is bounded
by the window size, whatever the file size.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from ._report import ReadReport

__all__ = ["CLASSIC_MAGICS", "Frames", "is_capture", "iter_frames"]

#: Classic pcap magics as they appear in the file: (bytes, byte order, nanosecond?).
CLASSIC_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False),
    b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True),
    b"\xa1\xb2\x3c\x4d": (">", True),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BOM = 0x1A2B3C4D
#: Largest captured length a classic record may claim (Wireshark's limit for normal link types).
_MAX_CAPLEN = 262_144
#: Largest pcapng block we accept.
_MAX_BLOCK = 16 * 1024 * 1024
#: A resynchronisation point must start a chain of this many records (or reach the window end).
_RESYNC_CHAIN = 4
#: Candidate timestamps must lie within this many seconds before / after the reference time
#: (the previous window's last record; a larger jump is checked and followed one record at a time).
_TS_BEFORE = 1 << 16
_TS_AFTER = 1 << 24


def _resync_target(graph, pos_c: np.ndarray, nxt_c: np.ndarray, good_pos: np.ndarray | None, p: int, limit: int,
                   size: int) -> tuple[np.ndarray, int]:
    """Where to resume after a corrupt record at ``p``: the next candidate that starts a good chain.

    ``good_pos`` (those candidates, computed once per window) is returned for reuse.
    """
    if good_pos is None:
        depth = graph.depth()
        root = graph._root
        good = (depth >= _RESYNC_CHAIN - 1) | (nxt_c[root] >= limit) | (nxt_c[root] == size)
        good_pos = pos_c[good]
    k = int(np.searchsorted(good_pos, p + 1))
    return good_pos, (int(good_pos[k]) if k < len(good_pos) else limit)


def is_capture(head: bytes) -> bool:
    """True when ``head`` starts like a classic pcap or a pcapng file."""
    if head[:4] in CLASSIC_MAGICS:
        return True
    return head[:4] == _PCAPNG_SHB and len(head) >= 12 and head[8:12] in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d")


@dataclasses.dataclass
class Frames:
    """Packets framed from one window: their bytes stay in ``buf``."""

    buf: np.ndarray  # uint8, the window's bytes
    data: np.ndarray  # int64, offset of each packet's first byte in buf
    caplen: np.ndarray  # int64
    origlen: np.ndarray  # int64
    ts_ns: np.ndarray  # int64
    linktype: np.ndarray  # int32
    offset: np.ndarray  # int64, byte offset of each record in the file

    def __len__(self) -> int:
        return len(self.data)


def _sliding(b: np.ndarray, dtype: str) -> np.ndarray:
    """A view of ``b`` holding the integer starting at every byte position (unaligned reads)."""
    size = np.dtype(dtype).itemsize
    if len(b) < size:
        return np.zeros(0, dtype=dtype)
    return np.ndarray((len(b) - size + 1,), dtype=dtype, buffer=b, offset=0, strides=(1,))


def _u32(b: np.ndarray, pos: np.ndarray, bo: str) -> np.ndarray:
    """Unsigned 32-bit integers at arbitrary byte positions (each must leave 4 bytes in ``b``)."""
    return _sliding(b, bo + "u4")[pos].astype(np.uint32)


def _record_header(b: np.ndarray, pos: np.ndarray, bo: str) -> tuple[np.ndarray, ...]:
    """The four 32-bit fields of classic record headers at ``pos`` (each must leave 16 bytes), in one gather.

    The fields are strided views of the gathered headers, in byte order ``bo`` (no copies:
    callers compare them or convert them once).
    """
    if len(b) < 16:
        return tuple(np.zeros(0, dtype=np.uint32) for _ in range(4))
    view = np.ndarray((len(b) - 15,), dtype="V16", buffer=b, offset=0, strides=(1,))
    rec = view[pos].view(bo + "u4").reshape(len(pos), 4)
    return tuple(rec[:, k] for k in range(4))


def _u16(b: np.ndarray, pos: np.ndarray, bo: str) -> np.ndarray:
    return _sliding(b, bo + "u2")[pos].astype(np.uint32)


def _scan(b: np.ndarray, lo: int, hi: int, bo: str, test) -> np.ndarray:
    """Positions p in [lo, hi) with ``test(u32 at p, p)`` true, using 4 aligned views (fast)."""
    out = []
    n = len(b)
    for k in range(4):
        first = lo + ((k - lo) % 4)
        count = min((n - first) // 4, (hi - first + 3) // 4)
        if count <= 0:
            continue
        view = np.frombuffer(b, dtype=bo + "u4", offset=first, count=count)
        idx = np.flatnonzero(test(view))
        out.append(first + 4 * idx.astype(np.int64))
    if not out:
        return np.zeros(0, dtype=np.int64)
    pos = np.concatenate(out)
    pos.sort()
    return pos


def _chain(pos: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """``succ[i]``: the index of the candidate at ``nxt[i]``, or ``i`` itself when there is none."""
    n = len(pos)
    succ = np.arange(n, dtype=np.int64)
    # usually the next record is the next candidate (``pos`` is strictly increasing, so a
    # search would find it there); search only for the others
    to_next = np.zeros(n, dtype=bool)
    np.equal(pos[1:], nxt[:-1], out=to_next[:-1])
    succ[to_next] += 1
    rest = np.flatnonzero(~to_next)
    idx = np.searchsorted(pos, nxt[rest])
    ok = idx < n
    ok[ok] = pos[idx[ok]] == nxt[rest][ok]
    succ[rest[ok]] = idx[ok]
    return succ


class _Graph:
    """Root, depth and path marking over the candidates' successor graph."""

    def __init__(self, succ: np.ndarray):
        self.succ = succ
        n = len(succ)
        own = np.arange(n, dtype=np.int64)
        self.breaks = np.flatnonzero(succ != own + 1)  # nodes not followed by the next candidate
        self._root: np.ndarray | None = None
        self._depth: np.ndarray | None = None
        self.levels = 0

    def _rank(self) -> None:
        if self._root is not None:
            return
        succ = self.succ
        own = np.arange(len(succ), dtype=np.int64)
        jump = succ.copy()
        depth = (succ != own).astype(np.int64)
        levels = 0
        while True:
            nj = jump[jump]
            if np.array_equal(nj, jump):
                break
            depth = depth + depth[jump]
            jump = nj
            levels += 1
        self._root, self._depth, self.levels = jump, depth, levels

    def root(self, i: int) -> tuple[int, np.ndarray | None]:
        """The last node of the chain from ``i``, and the chain's nodes when found cheaply.

        Fast paths: the chain visits consecutive candidates; or, after pruning candidates
        nothing points to (repeatedly, a few times), what is left from ``i`` is one chain.
        Otherwise the root comes from pointer doubling and the path is marked later.
        """
        succ = self.succ
        n = len(succ)
        k = np.searchsorted(self.breaks, i)
        e = int(self.breaks[k]) if k < len(self.breaks) else n - 1
        if succ[e] == e or e == n - 1:
            return e, np.arange(i, e + 1, dtype=np.int64)
        path = self._pruned(i)
        if path is not None:
            return int(path[-1]), path
        self._rank()
        return int(self._root[i]), None  # type: ignore[index]

    def _pruned(self, i: int, rounds: int = 8) -> np.ndarray | None:
        succ = self.succ[i:] - i
        n = len(succ)
        own = np.arange(n, dtype=np.int64)
        moves = succ != own
        alive = np.ones(n, dtype=bool)
        for _ in range(rounds):
            indeg = np.bincount(succ[alive & moves], minlength=n)
            source = alive & (indeg == 0)
            source[0] = False
            if not source.any():
                path = np.flatnonzero(alive)
                if np.array_equal(succ[path[:-1]], path[1:]) and succ[path[-1]] == path[-1]:
                    return path + i
                return None
            alive &= ~source
        return None

    def depth(self) -> np.ndarray:
        self._rank()
        return self._depth  # type: ignore[return-value]

    def mark(self, starts: list[int]) -> np.ndarray:
        """Boolean mask of the nodes on the chains from ``starts`` (pointer doubling)."""
        self._rank()
        mark = np.zeros(len(self.succ), dtype=bool)
        mark[starts] = True
        jump = self.succ
        for _ in range(self.levels + 2):
            idx = np.flatnonzero(mark)
            mark[jump[idx]] = True
            jump = jump[jump]
        return mark


class _Window:
    """Sequential windows over a binary stream (plain or gzip), with bounded memory."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.base = 0  # file offset of data[0]
        self.data = b""
        self.eof = False

    def get(self, pos: int, size: int) -> tuple[np.ndarray, int]:
        """Bytes from file offset ``pos`` (at least ``size`` unless EOF) and their file offset."""
        if pos > self.base:
            self.data = self.data[pos - self.base :]
            self.base = pos
        have = len(self.data)
        if have < size and not self.eof:
            # read straight into one new buffer (no join of the blocks: one copy less per window)
            buf = bytearray(max(size, have + (1 << 20)))
            buf[:have] = self.data
            view = memoryview(buf)
            while have < size and not self.eof:
                try:
                    got = self.fh.readinto(view[have:])
                except (EOFError, OSError):  # a truncated gzip stream ends the data
                    got = 0
                if not got:
                    self.eof = True
                    break
                have += got
            view.release()
            del buf[have:]
            self.data = buf
        return np.frombuffer(self.data, dtype=np.uint8), self.base


# --- classic pcap ------------------------------------------------------------------------


@dataclasses.dataclass
class _Classic:
    bo: str
    frac_max: int
    frac_mul: int
    maxcap: int
    linktype: int
    t_ref: int = 0
    #: the last :meth:`candidates` result (its positions), with its rows in the gathered headers and their
    #: seconds, fraction and original-length fields: _collect takes the records' fields from there
    _headers: tuple | None = dataclasses.field(default=None, repr=False)

    def candidates(self, b: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        lo_t = max(self.t_ref - _TS_BEFORE, 0)
        hi_t = min(self.t_ref + _TS_AFTER, 0xFFFFFFFF)
        # a first pass on single bytes (cheap): the most significant byte of the seconds field
        top = 3 if self.bo == "<" else 0
        seg = b[lo + top : max(min(hi, len(b) - 15), lo) + top]
        hb = np.uint8(lo_t >> 24)
        near = np.subtract(seg, hb)
        # the comparison written over its own input (one window-sized buffer, not two)
        np.less_equal(near, np.uint8((hi_t >> 24) - (lo_t >> 24)), out=near.view(np.bool_))
        pos = np.flatnonzero(near.view(np.bool_)) + lo
        del near
        sec, frac, cap, orig = _record_header(b, pos, self.bo)
        ok = (sec >= lo_t) & (sec <= hi_t) & (frac < self.frac_max) & (cap <= self.maxcap) & (cap <= orig)
        sel = np.flatnonzero(ok)
        pos, cap = pos[sel], cap[sel].astype(np.int64)
        nxt = pos + 16 + cap
        keep = np.flatnonzero(nxt <= len(b))
        pos, nxt, sel = pos[keep], nxt[keep], sel[keep]
        # kept for _collect, which needs the same fields of the records it takes
        self._headers = (pos, sel, sec, frac, orig)
        return pos, nxt

    def one(self, b: np.ndarray, p: int) -> tuple[int, int, int, int] | None:
        if p + 16 > len(b):
            return None
        return struct.unpack_from(self.bo + "IIII", b, p)  # type: ignore[return-value]


def _frame_classic(win: _Window, head: bytes, report: ReadReport, window_bytes: int) -> Iterator[Frames]:
    bo, nano = CLASSIC_MAGICS[head[:4]]
    if len(head) < 24:
        report.seen(1)
        report.bad("truncated pcap file header", offset=0, excerpt=head)
        return
    _, _, _, _, _, snaplen, linktype = struct.unpack_from(bo + "IHHiIII", head, 0)
    maxcap = snaplen if 0 < snaplen <= _MAX_CAPLEN else _MAX_CAPLEN
    st = _Classic(bo, 10**9 if nano else 10**6, 1 if nano else 1000, maxcap, linktype & 0xFFFF)
    pos = 24
    first = True
    while True:
        b, base = win.get(pos, window_bytes + _MAX_CAPLEN + 64)
        if len(b) == 0:
            return
        if first:
            first = False
            rec = st.one(b, 0)
            st.t_ref = rec[0] if rec else 0
        eof = win.eof
        limit = len(b) if eof else min(len(b), window_bytes)
        frames, pos_rel = _follow_window(b, base, 0, limit, eof, st, report)
        if frames is not None and len(frames):
            st.t_ref = int(frames.ts_ns[-1] // 1_000_000_000)
            report.seen(len(frames))
            yield frames
        pos = base + pos_rel
        if eof and pos_rel >= len(b):
            return


def _follow_window(b: np.ndarray, base: int, start: int, limit: int, eof: bool, st: _Classic, report: ReadReport):
    """Frame the classic records of one window; return (Frames, next position in b)."""
    pos_c, nxt_c = st.candidates(b, start, limit)
    graph = _Graph(_chain(pos_c, nxt_c))
    good_pos: np.ndarray | None = None
    ranges: list[np.ndarray] = []  # chains found by the fast paths
    general: list[int] = []  # starts that need pointer doubling
    p = start
    while p < limit:
        i = int(np.searchsorted(pos_c, p))
        if i < len(pos_c) and pos_c[i] == p:
            r, path = graph.root(i)
            if path is not None:
                ranges.append(path)
            else:
                general.append(i)
            p = int(nxt_c[r])
            continue
        rec = st.one(b, p)
        if rec is None:  # fewer than 16 bytes left
            if not eof:
                break
            report.seen(1)
            report.bad("truncated record header at end of file", offset=base + p, excerpt=bytes(b[p:p + 16]))
            p = len(b)
            break
        sec, frac, cap, orig = rec
        plausible = frac < st.frac_max and cap <= st.maxcap and cap <= orig
        if plausible and p + 16 + cap > len(b) and eof:
            report.seen(1)
            report.bad(f"record length {cap} past end of file", offset=base + p, excerpt=bytes(b[p:p + 16]))
            p = len(b)
            break
        if plausible and _clock_jump_ok(b, p, st):
            # a real clock jump: re-frame the rest of the window around the new time
            st.t_ref = sec
            frames, p2 = _follow_window(b, base, p, limit, eof, st, report)
            return _merge(_collect(b, base, pos_c, nxt_c, graph, ranges, general, st), frames), p2
        # corrupt header: resynchronise at the next candidate that starts a good chain
        good_pos, target = _resync_target(graph, pos_c, nxt_c, good_pos, p, limit, len(b))
        report.seen(1)
        report.bad(
            f"corrupt record header (resynchronised after {target - p} bytes)",
            offset=base + p,
            excerpt=bytes(b[p:p + 16]),
        )
        p = target
    return _collect(b, base, pos_c, nxt_c, graph, ranges, general, st), p


def _clock_jump_ok(b: np.ndarray, p: int, st: _Classic) -> bool:
    """Does a plausible header with a far-off timestamp start a chain of good records?"""
    sec0 = st.one(b, p)[0]  # type: ignore[index]
    for _ in range(_RESYNC_CHAIN):
        rec = st.one(b, p)
        if rec is None:
            return p == len(b)
        sec, frac, cap, orig = rec
        if not (frac < st.frac_max and cap <= st.maxcap and cap <= orig and abs(sec - sec0) < _TS_AFTER):
            return False
        p += 16 + cap
        if p == len(b):
            return True
        if p > len(b):
            return False
    return True


def _path(pos_c, graph: _Graph, ranges, general) -> np.ndarray:
    parts = list(ranges)
    if general:
        parts.append(np.flatnonzero(graph.mark(general)))
    if not parts:
        return np.zeros(0, dtype=np.int64)
    idx = np.concatenate(parts)
    idx.sort()
    return idx


def _collect(b, base, pos_c, nxt_c, graph, ranges, general, st: _Classic) -> Frames:
    idx = _path(pos_c, graph, ranges, general)
    p = pos_c[idx]
    hdr = st._headers
    if hdr is not None and hdr[0] is pos_c:  # the headers were read when the candidates were found
        rows = hdr[1][idx]
        sec, frac, orig = (x[rows].astype(np.int64) for x in hdr[2:])
        cap = nxt_c[idx] - p - 16
    else:
        sec, frac, cap, orig = (x.astype(np.int64) for x in _record_header(b, p, st.bo))
    return Frames(
        buf=b,
        data=p + 16,
        caplen=cap,
        origlen=orig,
        ts_ns=sec * 1_000_000_000 + frac * st.frac_mul,
        linktype=np.full(len(p), st.linktype, dtype=np.int32),
        offset=p + base,
    )


def _merge(a: Frames, c: Frames | None) -> Frames:
    if c is None or len(c) == 0:
        return a
    return Frames(
        a.buf,
        *(np.concatenate([getattr(a, f), getattr(c, f)]) for f in ("data", "caplen", "origlen", "ts_ns", "linktype", "offset")),
    )


# --- pcapng ------------------------------------------------------------------------------


@dataclasses.dataclass
class _Iface:
    linktype: int
    tsresol: int  # option byte
    snaplen: int
    offset_s: int = 0


def _ng_candidates(b: np.ndarray, lo: int, hi: int, bo: str) -> tuple[np.ndarray, np.ndarray]:
    pos = _scan(b, lo, hi, bo, lambda v: ((v >= 1) & (v <= 6)) | (v == 0x0A0D0D0A))  # IDB..EPB, SHB
    pos = pos[pos + 12 <= len(b)]
    length = _u32(b, pos + 4, bo).astype(np.int64)
    ok = (length % 4 == 0) & (length >= 12) & (length <= _MAX_BLOCK) & (pos + length <= len(b))
    pos, length = pos[ok], length[ok]
    ok = _u32(b, pos + length - 4, bo).astype(np.int64) == length
    return pos[ok], pos[ok] + length[ok]


def _ts_ns(units: np.ndarray, resol: int) -> np.ndarray:
    units = units.astype(np.int64)
    if resol & 0x80:
        shift = resol & 0x7F
        whole = units >> shift
        part = ((units & ((1 << shift) - 1)).astype(np.float64) * 1e9 / float(1 << shift)).astype(np.int64)
        return whole * 1_000_000_000 + part
    if resol <= 9:
        return units * 10 ** (9 - resol)
    return units // 10 ** (resol - 9)


def _frame_pcapng(win: _Window, head: bytes, report: ReadReport, window_bytes: int) -> Iterator[Frames]:
    pos = 0
    bo = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    state = _NgState()
    while True:
        b, base = win.get(pos, window_bytes + _MAX_BLOCK + 64)
        if len(b) == 0:
            return
        eof = win.eof
        limit = len(b) if eof else min(len(b), window_bytes)
        pos_c, nxt_c = _ng_candidates(b, 0, limit, bo)
        graph = _Graph(_chain(pos_c, nxt_c))
        good_pos = None
        ranges: list[np.ndarray] = []
        general: list[int] = []
        extra: list[int] = []  # blocks of types we do not list as candidates, taken one by one
        p = 0
        new_bo = None
        while p < limit:
            i = int(np.searchsorted(pos_c, p))
            if i < len(pos_c) and pos_c[i] == p:
                r, path = graph.root(i)
                (ranges.append(path) if path is not None else general.append(i))
                p = int(nxt_c[r])
                continue
            if p + 12 > len(b):
                if not eof:
                    break
                report.seen(1)
                report.bad("truncated pcapng block header at end of file", offset=base + p, excerpt=bytes(b[p:p + 12]))
                p = len(b)
                break
            _, blen = struct.unpack_from(bo + "II", b, p)
            if bytes(b[p:p + 4]) == _PCAPNG_SHB and p + 12 <= len(b):
                other = "<" if bytes(b[p + 8:p + 12]) == b"\x4d\x3c\x2b\x1a" else (">" if bytes(b[p + 8:p + 12]) == b"\x1a\x2b\x3c\x4d" else None)
                if other is not None and other != bo:
                    new_bo = other  # a section in the other byte order: re-frame from here
                    break
            sane = blen % 4 == 0 and 12 <= blen <= _MAX_BLOCK
            if sane and p + blen <= len(b) and struct.unpack_from(bo + "I", b, p + blen - 4)[0] == blen:
                extra.append(p)  # an unlisted block type, well framed
                p += blen
                continue
            if sane and p + blen > len(b) and eof:
                report.seen(1)
                report.bad(f"block length {blen} past end of file", offset=base + p, excerpt=bytes(b[p:p + 12]))
                p = len(b)
                break
            good_pos, target = _resync_target(graph, pos_c, nxt_c, good_pos, p, limit, len(b))
            report.seen(1)
            report.bad(f"corrupt pcapng block (resynchronised after {target - p} bytes)", offset=base + p,
                       excerpt=bytes(b[p:p + 12]))
            p = target
        idx = _path(pos_c, graph, ranges, general)
        blocks = pos_c[idx]
        if extra:
            blocks = np.sort(np.concatenate([blocks, np.asarray(extra, dtype=np.int64)]))
        frames = _ng_blocks(b, base, blocks, bo, state, report)
        if len(frames):
            yield frames
        pos = base + p
        if new_bo is not None:
            bo = new_bo
            continue
        if eof and p >= len(b):
            return


@dataclasses.dataclass
class _NgState:
    ifaces: list = dataclasses.field(default_factory=list)  # every interface of every section, in order
    starts: list = dataclasses.field(default_factory=list)  # index of each section's first interface
    last_ts: int = 0


def _ng_blocks(b, base, blocks, bo, state: _NgState, report: ReadReport) -> Frames:
    """Turn framed pcapng blocks into packets; SHB and IDB blocks update ``state``."""
    btype = _u32(b, blocks, bo).astype(np.int64)
    blen = _u32(b, blocks + 4, bo).astype(np.int64)
    # section and interface blocks are few: handle them in order, in Python
    structural = np.flatnonzero((btype == 0x0A0D0D0A) | (btype == 1))
    current = open_before = state.starts[-1] if state.starts else 0
    at, firsts = [], []
    for j in structural:
        p = int(blocks[j])
        if btype[j] == 0x0A0D0D0A:
            current = len(state.ifaces)
            state.starts.append(current)
        else:
            lt, _, snap = struct.unpack_from(bo + "HHI", b, p + 8)
            resol, offset_s = _idb_options(b, p + 16, p + int(blen[j]) - 4, bo)
            state.ifaces.append(_Iface(lt, resol, snap, offset_s))
        at.append(j)
        firsts.append(current)
    if at:
        k = np.searchsorted(np.asarray(at), np.arange(len(blocks)), side="right") - 1
        sec_first = np.where(k >= 0, np.asarray(firsts, dtype=np.int64)[np.maximum(k, 0)], open_before)
    else:
        sec_first = np.full(len(blocks), open_before, dtype=np.int64)
    starts = np.asarray(sorted(set(state.starts)) + [len(state.ifaces)], dtype=np.int64)
    is_pkt = (btype == 6) | (btype == 2) | (btype == 3)
    other = ~is_pkt & (btype != 0x0A0D0D0A) & (btype != 1)
    for t in np.unique(btype[other]):
        count = int((btype[other] == t).sum())
        report.seen(count)
        report.skip(f"pcapng block type 0x{int(t):X} (not a packet)", count)
    pk = np.flatnonzero(is_pkt)
    p = blocks[pk]
    n = len(pk)
    report.seen(n)
    epb = btype[pk] == 6
    opb = btype[pk] == 2
    spb = btype[pk] == 3
    local = np.where(epb, _u32(b, p + 8, bo), 0).astype(np.int64)
    local = np.where(opb, _u16(b, p + 8, bo).astype(np.int64), local)
    first = sec_first[pk]
    gid = first + local
    end = starts[np.searchsorted(starts, first, side="right").clip(max=len(starts) - 1)]
    valid_id = gid < np.maximum(end, first)
    gid_c = np.where(valid_id, gid, len(state.ifaces))
    lt_table = np.array([f.linktype for f in state.ifaces] + [-1], dtype=np.int64)
    linktype = lt_table[gid_c]
    hdr = np.where(spb, 12, 28)
    caplen = _u32(b, p + 20, bo).astype(np.int64)
    origlen = np.where(spb, _u32(b, p + 8, bo), _u32(b, p + 24, bo)).astype(np.int64)
    room = blen[pk] - hdr - 4
    caplen = np.where(spb, np.minimum(origlen, room), caplen)
    bad_iface = ~valid_id
    bad_len = (caplen > room) & ~bad_iface
    units = (_u32(b, p + 12, bo).astype(np.int64) << 32) | _u32(b, p + 16, bo).astype(np.int64)
    ts = np.zeros(n, dtype=np.int64)
    ok = ~(bad_len | bad_iface | spb)
    for g in np.unique(gid_c[ok]):
        sel = ok & (gid_c == g)
        f = state.ifaces[int(g)]
        ts[sel] = _ts_ns(units[sel], f.tsresol) + f.offset_s * 1_000_000_000
    if spb.any():
        # simple packet blocks carry no timestamp: they take the previous packet's
        has = np.where(ok, np.arange(n), -1)
        prev = np.maximum.accumulate(has) if n else has
        ts = np.where(spb, np.where(prev >= 0, ts[np.maximum(prev, 0)], state.last_ts), ts)
        report.note("pcapng simple packet blocks have no timestamp: they take the previous packet's time")
    if n:
        state.last_ts = int(ts[-1])
    if bad_iface.any():
        report.bad_many("packet block names an interface its section did not describe", offsets=p[bad_iface] + base)
    if bad_len.any():
        report.bad_many("packet block captured length larger than the block", offsets=p[bad_len] + base)
    keep = ~(bad_iface | bad_len)
    return Frames(b, (p + hdr)[keep], caplen[keep], origlen[keep], ts[keep], linktype[keep].astype(np.int32),
                  (p + base)[keep])


def _idb_options(b: np.ndarray, start: int, end: int, bo: str) -> tuple[int, int]:
    resol, offset_s = 6, 0
    p = start
    while p + 4 <= end:
        code, length = struct.unpack_from(bo + "HH", b, p)
        if code == 0:
            break
        value = bytes(b[p + 4 : p + 4 + length])
        if code == 9 and length >= 1:
            resol = value[0]
        elif code == 14 and length == 8:
            offset_s = struct.unpack(bo + "q", value)[0]
        p += 4 + length + (-length % 4)
    if (resol & 0x80 and (resol & 0x7F) > 62) or (not resol & 0x80 and resol > 18):
        resol = 6  # an impossible resolution (a corrupt option): fall back to the default
    if abs(offset_s) > 1 << 33:
        offset_s = 0
    return resol, offset_s


# --- entry point -------------------------------------------------------------------------


def iter_frames(fh: BinaryIO, path: Any, report: ReadReport, window_bytes: int) -> Iterator[Frames]:
    """Frame the packets of an open capture, window by window.

    A file that is neither pcap nor pcapng gives one quarantined record at offset 0.
    """
    win = _Window(fh)
    b, _ = win.get(0, 64)
    head = bytes(b[:64])
    if head[:4] in CLASSIC_MAGICS:
        yield from _frame_classic(win, head, report, window_bytes)
    elif is_capture(head):
        yield from _frame_pcapng(win, head, report, window_bytes)
    else:
        report.seen(1)
        report.bad("not a pcap or pcapng file (unknown magic number)", offset=0, excerpt=head[:16])
