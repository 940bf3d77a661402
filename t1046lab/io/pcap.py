"""Packet captures (classic pcap and pcapng) assembled into connection attempts (``format="pcap"``).

Read with ``t1046lab.read("capture.pcapng")`` (or ``format="pcap"``). What is read:

* classic pcap in either byte order, micro- or nanosecond timestamps (magic ``a1b2c3d4`` /
  ``a1b23c4d``), gzip-compressed or not; pcapng with any number of sections (either byte
  order) and interfaces, each with its own link type, ``if_tsresol`` and ``if_tsoffset``;
  enhanced, simple and obsolete packet blocks. Other pcapng blocks (name resolution,
  statistics, custom...) are counted as skipped records, by block type.
* link types Ethernet (1) with stacked 802.1Q / 802.1ad VLAN tags, Linux cooked SLL (113)
  and SLL2 (276), raw IP (101, 12, 14, 228, 229), BSD loopback NULL (0) and LOOP (108).
* IPv4 (non-first fragments are skipped with a reason) and IPv6 (extension headers
  walked; non-first fragments skipped), TCP, UDP, ICMP and ICMPv6; other IP protocols give
  rows with ``network_transport="other"`` and their number in ``pcap_ip_proto``.

How packets become rows is described in :func:`read_pcap`. Bytes are counted at the IP layer
(IP header and payload, from the IP length field, so snaplen truncation does not shrink them).

A record is a packet (or a non-packet pcapng block). Corrupt records are quarantined with
their byte offset; after one, the reader resynchronises at the next plausible header.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from . import register
from ._pcap_assemble import assemble
from ._pcap_decode import ERROR_FIELDS, PACKET_FIELDS, decode
from ._pcap_frames import is_capture, iter_frames
from ._report import ReadReport
from ._source import PathLike, open_binary

__all__ = ["DEFAULT_ATTEMPT_TIMEOUT", "read_pcap"]

#: Seconds: a probe retried within this time of the previous try is the same attempt, and a
#: UDP/ICMP exchange idle for longer ends (Zeek's UDP inactivity timeout is also 60 s).
#: Linux retransmits an unanswered SYN after 1, 2, 4, 8, 16 and 32 s, so every kernel
#: retransmission falls inside it.
DEFAULT_ATTEMPT_TIMEOUT = 60.0

# bytes per window: about 96 bytes a packet, bounded so that memory stays moderate
_MIN_WINDOW = 1 << 20
_MAX_WINDOW = 16 << 20


def _sniff(head: bytes, name: str) -> bool:
    return is_capture(head)


@register("pcap", sniff=_sniff, priority=5, description="packet capture (pcap or pcapng) assembled into connection attempts")
def read_pcap(
    path: PathLike,
    report: ReadReport,
    *,
    chunksize: int,
    attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """Packet capture (pcap or pcapng) assembled into connection attempts.

    Parameters
    ----------
    path : path-like
        A ``.pcap`` or ``.pcapng`` file, gzip-compressed or not.
    report : ReadReport
        Filled as packets are read (a record is a packet).
    chunksize : int
        Packets per window of bytes framed and decoded at once (about 96 bytes a packet,
        between 1 and 64 MiB), and rows per yielded chunk.
    attempt_timeout : float, default 60.0
        Seconds. A TCP SYN on a 5-tuple whose previous flow was closed (RST or FIN), or
        idle for longer than this, starts a new flow; UDP, ICMP and other flows end after
        this much silence, TCP flows after five times as much (300 s by default, Zeek's
        TCP inactivity timeout); a retried probe (same initiator, target address, port and
        protocol, even from a new source port) is merged into the previous attempt when
        it comes within this time and no try was established yet.

    Yields
    ------
    DataFrame
        Canonical connection attempts, ``log_format="pcap"``, one row per attempt:

        * TCP: a SYN and its retransmissions are one attempt. ``established`` when the
          target sent a SYN-ACK (or anything but a RST), ``rejected`` on a RST from the
          target, ``icmp_unreachable`` on an ICMP/ICMPv6 destination-unreachable quoting
          the probe (its type and code go to ``icmp_type`` / ``icmp_code``), else
          ``no_reply``. Traffic seen without its SYN is ``partial``.
        * UDP: ``established`` when the target answered, ``icmp_unreachable`` as above,
          else ``no_reply`` (``unknown`` when sent to a multicast or broadcast address,
          where no answer is expected from the destination).
        * ICMP / ICMPv6 echo (and timestamp, information, address-mask) queries, keyed by
          identifier: ``established`` with a reply, ``no_reply`` without; ports are NA and
          ``icmp_type`` / ``icmp_code`` hold the request's.
        * ``source_*`` counts what the initiator sent, ``destination_*`` what came back
          (an ICMP error counts as a destination packet). ``tcp_flags`` is the OR of the
          flags the initiator sent (so a SYN scan reads 2 whatever the answer: the answer
          is in ``conn_outcome``). ``event_duration_s`` spans first to last packet.

    Notes
    -----
    Memory: bytes are framed and decoded in bounded windows, but connection assembly runs
    at the end on compact per-packet arrays (about 63 bytes a packet). Reading 1 million
    packets peaks at about 380 MiB resident, of which about 110 MiB is Python and the
    libraries, so memory grows by roughly 270 bytes a packet. Rows are yielded in ``chunksize`` pieces after that.
    Assembly is not streamed because its results would change: an ICMP error is matched to
    the last flow of its 5-tuple however long ago it started, a TCP flow stays open as long
    as its packets come less than five timeouts apart, rows come in global time order, and
    packets of a capture that is not time-ordered are sorted first.
    """
    if options:
        raise TypeError(f"unknown option(s) for the pcap reader: {sorted(options)}")
    if not attempt_timeout > 0:
        raise ValueError(f"attempt_timeout must be positive seconds, got {attempt_timeout!r}")
    window = int(min(max(chunksize * 96, _MIN_WINDOW), _MAX_WINDOW))
    packets: list[dict[str, np.ndarray]] = []
    errors: list[dict[str, np.ndarray]] = []
    count = 0
    with open_binary(path) as fh:
        for frames in iter_frames(fh, path, report, window):
            p, e = decode(frames, report)
            if len(e["pkt"]):
                e["pkt"] = e["pkt"] + count
            count += len(p["ts"])
            packets.append(p)
            errors.append(e)
    # handed over without keeping a reference, so that assembly can free the packets early
    conns = assemble(_drain(packets, PACKET_FIELDS), _drain(errors, ERROR_FIELDS), report,
                     timeout_ns=int(attempt_timeout * 1e9))
    if len(conns) <= chunksize:
        yield conns
        return
    for lo in range(0, len(conns), chunksize):
        yield conns.iloc[lo : lo + chunksize].reset_index(drop=True)


def _drain(parts: list[dict[str, np.ndarray]], fields: dict[str, Any]) -> dict[str, np.ndarray]:
    """The parts concatenated; the list is emptied so that it no longer holds them."""
    out = _concat(parts, fields)
    parts.clear()
    return out


def _concat(parts: list[dict[str, np.ndarray]], fields: dict[str, Any]) -> dict[str, np.ndarray]:
    if not parts:
        return {k: np.zeros(0, dtype=t) for k, t in fields.items()}
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in fields}
