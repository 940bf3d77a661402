"""A small pcap / pcapng writer and packet builder, for tests, benchmarks and simulators.

It writes what :mod:`t1046lab.io.pcap` reads: classic pcap (either byte order, micro- or
nanosecond timestamps) and pcapng (either byte order, any ``if_tsresol``, one or more
interfaces with their own link types, enhanced or simple packet blocks). Packet builders
give well-formed Ethernet / VLAN / Linux cooked (SLL, SLL2) / BSD loopback frames holding
IPv4 or IPv6 with TCP, UDP, ICMP or ICMPv6.

Examples
--------
>>> from t1046lab.io import pcap_writer as pw
>>> syn = pw.ether(pw.ipv4("10.0.0.1", "10.0.0.2", pw.tcp(40000, 22, "S")))
>>> pw.write_pcap("x.pcap", [(1_700_000_000_000_000_000, syn)])      # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_LINUX_SLL2",
    "LINKTYPE_NULL",
    "LINKTYPE_RAW",
    "ether",
    "icmp",
    "icmpv6",
    "ipv4",
    "ipv6",
    "null",
    "pcap_bytes",
    "pcapng_bytes",
    "raw",
    "sll",
    "sll2",
    "tcp",
    "udp",
    "write_pcap",
    "write_pcapng",
]

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}

Packet = tuple[int, bytes]  # (timestamp in ns since the epoch, frame bytes)


def _flags(flags: int | str) -> int:
    if isinstance(flags, int):
        return flags
    return sum(_FLAG_BITS[c] for c in flags.upper())


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp(sport: int, dport: int, flags: int | str = "S", *, seq: int = 0, ack: int = 0, window: int = 1024,
        payload: bytes = b"", options: bytes = b"") -> tuple[int, bytes]:
    """A TCP segment (checksum left zero); ``flags`` like ``"SA"`` or an int. Returns (proto, bytes)."""
    options += b"\0" * (-len(options) % 4)
    offset = (20 + len(options)) // 4
    head = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, offset << 4,
                       _flags(flags), window, 0, 0)
    return 6, head + options + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> tuple[int, bytes]:
    """A UDP datagram (checksum left zero). Returns (proto, bytes)."""
    return 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(type: int, code: int = 0, *, ident: int = 0, seq: int = 0, quote: bytes | None = None,
         payload: bytes = b"") -> tuple[int, bytes]:
    """An ICMPv4 message. Echo/timestamp use ``ident``/``seq``; errors carry ``quote`` (the offending IP packet)."""
    rest = struct.pack("!HH", ident, seq) if quote is None else b"\0\0\0\0"
    body = rest + (quote[:28] if quote is not None else payload)
    head = struct.pack("!BBH", type, code, 0)
    csum = _checksum(head + body)
    return 1, struct.pack("!BBH", type, code, csum) + body


def icmpv6(type: int, code: int = 0, *, ident: int = 0, seq: int = 0, quote: bytes | None = None,
           payload: bytes = b"") -> tuple[int, bytes]:
    """An ICMPv6 message (checksum left zero); errors carry ``quote`` (the offending IPv6 packet)."""
    rest = struct.pack("!HH", ident, seq) if quote is None else b"\0\0\0\0"
    body = rest + (quote[:1232] if quote is not None else payload)
    return 58, struct.pack("!BBH", type, code, 0) + body


def ipv4(src: str, dst: str, l4: tuple[int, bytes], *, ttl: int = 64, ident: int = 0, frag_offset: int = 0,
         more_fragments: bool = False, dont_fragment: bool = False, options: bytes = b"") -> bytes:
    """An IPv4 packet around ``l4`` (as returned by :func:`tcp`, :func:`udp`, :func:`icmp`)."""
    proto, payload = l4
    options += b"\0" * (-len(options) % 4)
    ihl = 5 + len(options) // 4
    frag = (frag_offset // 8) | (0x2000 if more_fragments else 0) | (0x4000 if dont_fragment else 0)
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), ident & 0xFFFF, frag, ttl, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + options
    csum = _checksum(head)
    return head[:10] + struct.pack("!H", csum) + head[12:] + payload


def ipv6(src: str, dst: str, l4: tuple[int, bytes], *, hop_limit: int = 64,
         extensions: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """An IPv6 packet around ``l4``; ``extensions`` is a list of (header type, body) put before it.

    Bodies of hop-by-hop (0), routing (43) and destination options (60) headers are padded to
    a multiple of 8 bytes (with their next-header and length bytes added); a fragment header
    (44) body is the 6 bytes after next-header and reserved.
    """
    proto, payload = l4
    chain = b""
    types = [t for t, _ in extensions] + [proto]
    for i, (htype, body) in enumerate(extensions):
        nxt = types[i + 1]
        if htype == 44:
            chain += struct.pack("!BB", nxt, 0) + body[:6].ljust(6, b"\0")
        else:
            raw = body + b"\0" * (-(len(body) + 2) % 8)
            chain += struct.pack("!BB", nxt, (len(raw) + 2) // 8 - 1) + raw
    first = types[0]
    head = struct.pack("!IHBB16s16s", 6 << 28, len(chain) + len(payload), first, hop_limit,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed)
    return head + chain + payload


def _ethertype(packet: bytes) -> int:
    return 0x86DD if packet and packet[0] >> 4 == 6 else 0x0800


def ether(packet: bytes, *, src: str = "02:00:00:00:00:01", dst: str = "02:00:00:00:00:02",
          vlans: Sequence[int] = (), ethertype: int | None = None, qinq: bool = False) -> bytes:
    """An Ethernet II frame; ``vlans`` adds 802.1Q tags (outermost first; ``qinq`` makes the outer one 802.1ad)."""
    etype = _ethertype(packet) if ethertype is None else ethertype
    tags = b""
    for i, vid in enumerate(vlans):
        tpid = 0x88A8 if (qinq and i == 0 and len(vlans) > 1) else 0x8100
        tags += struct.pack("!HH", tpid, vid & 0x0FFF)
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + tags + struct.pack("!H", etype) + packet


def sll(packet: bytes, *, packet_type: int = 0, ethertype: int | None = None) -> bytes:
    """A Linux cooked-mode (SLL, link type 113) frame."""
    etype = _ethertype(packet) if ethertype is None else ethertype
    return struct.pack("!HHH8sH", packet_type, 1, 6, b"\x02\0\0\0\0\x01\0\0", etype) + packet


def sll2(packet: bytes, *, packet_type: int = 0, ethertype: int | None = None, ifindex: int = 2) -> bytes:
    """A Linux cooked-mode v2 (SLL2, link type 276) frame."""
    etype = _ethertype(packet) if ethertype is None else ethertype
    return struct.pack("!HHIHBB8s", etype, 0, ifindex, 1, packet_type, 6, b"\x02\0\0\0\0\x01\0\0") + packet


def null(packet: bytes, *, byteorder: str = "<") -> bytes:
    """A BSD loopback (NULL, link type 0) frame: address family in the capturing host's byte order."""
    family = 30 if packet and packet[0] >> 4 == 6 else 2  # AF_INET6 on macOS is 30
    return struct.pack(byteorder + "I", family) + packet


def raw(packet: bytes) -> bytes:
    """A raw-IP frame (link types 101, 228, 229): the packet itself."""
    return packet


# --- files ------------------------------------------------------------------------------

def pcap_bytes(packets: Iterable[Packet], *, linktype: int = LINKTYPE_ETHERNET, nanosecond: bool = False,
               byteorder: str = "<", snaplen: int = 262_144) -> bytes:
    """The bytes of a classic pcap file holding ``packets`` (``(ts_ns, frame)`` pairs)."""
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    div = 1 if nanosecond else 1000
    parts = [struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    rec = struct.Struct(byteorder + "IIII")
    for ts, frame in packets:
        sec, frac = divmod(int(ts), 1_000_000_000)
        cap = frame[:snaplen]
        parts.append(rec.pack(sec, frac // div, len(cap), len(frame)))
        parts.append(cap)
    return b"".join(parts)


def write_pcap(path: Any, packets: Iterable[Packet], **kwargs: Any) -> None:
    """Write a classic pcap file; keyword arguments as in :func:`pcap_bytes`."""
    with open(path, "wb") as fh:
        fh.write(pcap_bytes(packets, **kwargs))


def _option(code: int, value: bytes, bo: str) -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes, bo: str) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(bo + "II", btype, length) + body + struct.pack(bo + "I", length)


def pcapng_bytes(packets: Iterable[tuple[int, bytes] | tuple[int, bytes, int]], *,
                 linktypes: Sequence[int] = (LINKTYPE_ETHERNET,), byteorder: str = "<",
                 tsresol: int | Sequence[int] = 6, simple: bool = False, snaplen: int = 262_144,
                 extra_blocks: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """The bytes of a pcapng file.

    Parameters
    ----------
    packets : iterable of (ts_ns, frame) or (ts_ns, frame, interface_id)
        The packets, in order.
    linktypes : sequence of int
        One interface description block per entry.
    byteorder : {"<", ">"}
        Byte order of the whole section.
    tsresol : int or sequence of int
        ``if_tsresol`` per interface: the value of the option byte (6 = microseconds,
        9 = nanoseconds, ``0x80 | n`` = 2^-n seconds).
    simple : bool
        Write simple packet blocks (no timestamp, interface 0) instead of enhanced ones.
    extra_blocks : sequence of (block type, body)
        Other blocks written after the interfaces (e.g. a name resolution block).
    """
    bo = byteorder
    resols = [tsresol] * len(linktypes) if isinstance(tsresol, int) else list(tsresol)
    parts = [_block(0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1), bo)]
    for lt, res in zip(linktypes, resols):
        options = b""
        if res != 6:
            options = _option(9, bytes([res]), bo) + _option(0, b"", bo)
        parts.append(_block(1, struct.pack(bo + "HHI", lt, 0, snaplen) + options, bo))
    for btype, body in extra_blocks:
        parts.append(_block(btype, body, bo))
    for item in packets:
        ts, frame = item[0], item[1]
        iface = item[2] if len(item) > 2 else 0  # type: ignore[misc]
        res = resols[iface]
        if res & 0x80:
            units = (int(ts) << (res & 0x7F)) // 1_000_000_000
        else:
            units = int(ts) * 10**res // 1_000_000_000
        if simple:
            parts.append(_block(3, struct.pack(bo + "I", len(frame)) + frame, bo))
        else:
            parts.append(_block(6, struct.pack(bo + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame),
                                               len(frame)) + frame, bo))
    return b"".join(parts)


def write_pcapng(path: Any, packets: Iterable[Any], **kwargs: Any) -> None:
    """Write a pcapng file; keyword arguments as in :func:`pcapng_bytes`."""
    with open(path, "wb") as fh:
        fh.write(pcapng_bytes(packets, **kwargs))
