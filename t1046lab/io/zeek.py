"""Zeek ``conn.log``: the TSV log with its ``#fields`` header (``format="zeek"``) and JSON
lines (``format="zeek-json"``), plain or gzip.

Each conn record becomes one canonical row. ``conn_state`` and ``history`` become
``conn_outcome`` through one table, :data:`CONN_STATE_OUTCOMES` (its docstring explains each
choice); ICMP rows, whose ``conn_state`` is always ``OTH``, get theirs from the ICMP type
(:func:`icmp_outcomes`). Source columns worth keeping stay as extras: ``zeek_uid``,
``zeek_conn_state``, ``zeek_history``, ``zeek_service``, ``icmp_type``, ``icmp_code``, and the
Stratosphere label columns as ``dataset_label`` and ``dataset_detailed_label`` (verbatim; the
canonical ``label`` column is not invented here).

Both readers work on blocks of bytes with numpy: lines, header lines, field counts and
non-ASCII bytes are found with array operations on the block; the well-formed lines of a
header block are parsed in one ``pd.read_csv`` call (JSON: one ``pd.read_json`` call per
chunk, falling back to ``json.loads`` per line only for a chunk that fails) and their values
are converted and checked column by column. Malformed records are quarantined with their
line number; ``strict=True`` raises :class:`~t1046lab.exceptions.ParseError` instead.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..schema import Outcome
from . import register
from ._report import MAX_QUARANTINE_DETAIL, ReadReport
from ._source import PathLike, open_binary

__all__ = [
    "CONN_STATE_OUTCOMES",
    "StateOutcome",
    "conn_outcomes",
    "icmp_outcomes",
    "read_zeek",
    "read_zeek_json",
]

# --------------------------------------------------------------------------------------
# conn_state + history -> conn_outcome
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StateOutcome:
    """How one ``conn_state`` value maps to ``conn_outcome``.

    Attributes
    ----------
    tcp : Outcome
        The outcome of a TCP connection in this state.
    udp : Outcome
        The outcome of a UDP flow in this state (Zeek gives UDP only S0, SF, SHR and OTH).
    refine : tuple of (str, Outcome, Outcome), optional
        For TCP only, when the ``history`` is known: ``(test, passed, failed)``: the outcome
        is ``passed`` when the history passes the named test (see :data:`HISTORY_TESTS`),
        ``failed`` otherwise. An unset history keeps ``tcp``.
    meaning : str
        Zeek's definition of the state (``base/protocols/conn/main.zeek``).
    """

    tcp: Outcome
    udp: Outcome
    refine: tuple[str, Outcome, Outcome] | None
    meaning: str


_E, _R, _N, _P, _U = Outcome.ESTABLISHED, Outcome.REJECTED, Outcome.NO_REPLY, Outcome.PARTIAL, Outcome.UNKNOWN

#: Tests on Zeek's ``history`` string (regular expressions, matched anywhere). Upper-case
#: letters are the originator's packets, lower-case the responder's: ``s`` SYN, ``h``
#: SYN-ACK, ``a`` pure ACK, ``d`` payload, ``f`` FIN, ``r`` RST, ``c`` bad checksum, ``g``
#: content gap, ``t`` retransmission, ``w`` zero window, ``i`` inconsistent packet (e.g.
#: FIN+RST), ``q`` multi-flag packet (SYN+FIN or SYN+RST), ``^`` direction flipped by Zeek,
#: ``x`` analysis partial.
HISTORY_TESTS: dict[str, str] = {
    # An unanswered attempt: an originator SYN and nothing that shows an answer: no
    # responder letter, and no originator ACK or payload (a TCP originator sends those only
    # after it saw a SYN-ACK, or when the capture began mid-stream). "S", "SR", "SF", "^S"
    # pass; "Sa", "SA", "SADdaFR", "R", "DAF" fail.
    "bare_syn": r"^\^?[^a-zAD]*S[^a-zAD]*$",
}

#: ``conn_state`` → ``conn_outcome``, the one table the reader uses.
#:
#: Zeek's ``conn_state`` describes what it saw of a connection; ``conn_outcome`` asks what
#: happened to the *attempt*. The choices, state by state (TCP unless said otherwise):
#:
#: - ``S0`` (attempt seen, no reply) → ``no_reply``: a SYN (history ``S``), or a UDP datagram
#:   (history ``D``), with no answer: the classic filtered or dead target. A TCP ``S0`` whose
#:   history is not a bare SYN is ``partial``: in ``Sa`` the responder sent a bare ACK (it
#:   is alive), in ``SA`` and ``SD`` the originator went on as if it had seen a SYN-ACK that
#:   the sensor missed.
#: - ``S1`` (established, not terminated), ``SF`` (normal establishment and termination),
#:   ``S2``/``S3`` (established, close attempt by one side only), ``RSTO`` (established,
#:   originator aborted; also nmap's ``ShR`` SYN-scan probe of an open port and a connect()
#:   scan's ``ShAR``), ``RSTR`` (established, responder sent RST) → ``established``: the
#:   responder answered the handshake, so the port was reachable. UDP ``SF`` (both
#:   directions active) → ``established``.
#: - ``REJ`` (attempt rejected: the responder answered the SYN with RST, history ``Sr``)
#:   → ``rejected``: a closed port.
#: - ``RSTOS0`` (originator sent SYN then RST, no SYN-ACK seen) → ``no_reply``: a failed
#:   attempt the originator gave up on (history ``SR``; scanners that tear down unanswered
#:   probes). Current Zeek gives this state only to histories matching ``^?S[^HAFGIQ]*R``;
#:   older Zeek gave it whenever the responder looked inactive, including mid-stream connections with
#:   traffic both ways (``SADdaFR``, ``DR``, ``R`` in the Stratosphere CTU logs), so a
#:   history that is not a bare SYN and RST is ``partial``.
#: - ``RSTRH`` (responder sent SYN-ACK then RST; the originator's SYN was never seen) →
#:   ``partial``: half the conversation is missing (asymmetric capture, backscatter).
#: - ``SH`` (originator sent SYN then FIN, no SYN-ACK) → ``partial`` in general, because
#:   Zeek also gives ``SH`` to a one-sided capture of an established connection (histories
#:   ``DAF``, ``FA``, ``SADadF``); a bare SYN then FIN (``SF``) is an unanswered attempt →
#:   ``no_reply``.
#: - ``SHR`` (responder sent SYN-ACK then FIN; no SYN seen) → ``partial``. UDP ``SHR``
#:   (only the responder was active) → ``partial``.
#: - ``OTH`` (no SYN seen, mid-stream traffic) → ``partial``. UDP ``OTH`` (neither side
#:   active, e.g. only bad-checksum packets) → ``unknown``. ICMP is always ``OTH`` in Zeek:
#:   those rows are mapped by ICMP type instead (:func:`icmp_outcomes`).
#:
#: A missing ``conn_state`` (``-``) gives ``unknown``; a value outside this table is a
#: malformed record and is quarantined. Zeek's conn.log cannot give ``icmp_unreachable`` to
#: the probe an ICMP error answers (the ICMP analyser does not touch the quoted connection's
#: history): the error is its own ICMP row, from the host that sent it, with outcome
#: ``icmp_unreachable``, and the probe keeps its own row (a UDP ``S0`` is ``no_reply``).
#: ``denied`` never comes from Zeek: it does not see firewall decisions.
CONN_STATE_OUTCOMES: dict[str, StateOutcome] = {
    "S0": StateOutcome(_N, _N, ("bare_syn", _N, _P), "Connection attempt seen, no reply."),
    "S1": StateOutcome(_E, _E, None, "Connection established, not terminated."),
    "SF": StateOutcome(_E, _E, None, "Normal establishment and termination."),
    "REJ": StateOutcome(_R, _R, None, "Connection attempt rejected."),
    "S2": StateOutcome(_E, _E, None, "Established, close attempt by originator seen (no reply from responder)."),
    "S3": StateOutcome(_E, _E, None, "Established, close attempt by responder seen (no reply from originator)."),
    "RSTO": StateOutcome(_E, _E, None, "Connection established, originator aborted (sent a RST)."),
    "RSTR": StateOutcome(_E, _E, None, "Responder sent a RST."),
    "RSTOS0": StateOutcome(_N, _N, ("bare_syn", _N, _P), "Originator sent a SYN followed by a RST, no SYN-ACK seen."),
    "RSTRH": StateOutcome(_P, _P, None, "Responder sent a SYN-ACK followed by a RST, no SYN seen from the originator."),
    "SH": StateOutcome(_P, _P, ("bare_syn", _N, _P), "Originator sent a SYN followed by a FIN, no SYN-ACK seen (half open)."),
    "SHR": StateOutcome(_P, _P, None, "Responder sent a SYN-ACK followed by a FIN, no SYN seen from the originator."),
    "OTH": StateOutcome(_P, _U, None, "No SYN seen, just midstream traffic."),
}

# ICMP types (Zeek's id.orig_p) by family. Zeek pairs request and reply types into one
# "connection" (id.resp_p is the counterpart type; for one-way messages it is the code).
_ICMP_PROBE_TYPES = {"icmp": (8, 13, 15, 17), "icmpv6": (128, 139)}  # echo, timestamp, info, mask; node info
_ICMP_REPLY_TYPES = {"icmp": (0, 14, 16, 18), "icmpv6": (129, 140)}
_ICMP_UNREACHABLE = {"icmp": 3, "icmpv6": 1}
# Types Zeek treats as two-way (ICMP4_counterpart / ICMP6_counterpart): their id.resp_p is
# the counterpart type, and their code is 0 (RFC 792); for every other type it is the code.
_ICMP_TWO_WAY = {"icmp": (0, 8, 9, 10, 13, 14, 15, 16, 17, 18), "icmpv6": (128, 129, 130, 131, 133, 134, 135, 136, 139, 140, 144, 145)}


def icmp_outcomes(transport: np.ndarray, icmp_type: np.ndarray, resp_pkts: np.ndarray, resp_bytes: np.ndarray) -> np.ndarray:
    """``conn_outcome`` of ICMP rows from the ICMP type and what came back.

    - A probe (echo, timestamp, information or address-mask request; ICMPv6 echo or node
      information query) → ``established`` when the responder sent packets (or bytes),
      ``no_reply`` when it sent none, ``unknown`` when Zeek did not count them.
      This is what a ping sweep looks like.
    - Destination unreachable (ICMP type 3, ICMPv6 type 1) → ``icmp_unreachable``. The row
      runs from the host that sent the error to the prober, as Zeek logs it.
    - A reply without its request (echo reply first) → ``partial``: half-seen.
    - Anything else (time exceeded, redirects, router and neighbour discovery, MLD) →
      ``unknown``: not an attempt to reach a service.

    Parameters
    ----------
    transport : ndarray of str
        ``"icmp"`` or ``"icmpv6"`` (other values give ``unknown``).
    icmp_type : ndarray of float
        The ICMP type (Zeek's ``id.orig_p``), NaN when unknown.
    resp_pkts, resp_bytes : ndarray of float
        Zeek's ``resp_pkts`` and ``resp_bytes``, NaN when unset.
    """
    out = np.full(len(transport), _U.value, dtype=object)
    answered = (np.nan_to_num(resp_pkts, nan=0) > 0) | (np.nan_to_num(resp_bytes, nan=0) > 0)
    counted = ~np.isnan(resp_pkts)
    for family in ("icmp", "icmpv6"):
        fam = transport == family
        probe = fam & np.isin(icmp_type, _ICMP_PROBE_TYPES[family])
        out[probe & counted] = _N.value
        out[probe & answered] = _E.value
        out[fam & np.isin(icmp_type, _ICMP_REPLY_TYPES[family])] = _P.value
        out[fam & (icmp_type == _ICMP_UNREACHABLE[family])] = Outcome.ICMP_UNREACHABLE.value
    return out


def conn_outcomes(transport: np.ndarray, conn_state: pd.Series, history: pd.Series) -> np.ndarray:
    """``conn_outcome`` of TCP, UDP and other rows from ``conn_state`` and ``history``.

    Applies :data:`CONN_STATE_OUTCOMES`; ICMP rows come out ``unknown`` here and are filled
    by :func:`icmp_outcomes`.

    Parameters
    ----------
    transport : ndarray of str
        Canonical ``network_transport`` values.
    conn_state, history : Series of str
        Zeek's columns (NA where unset).
    """
    n = len(transport)
    out = np.full(n, _U.value, dtype=object)
    state = conn_state.astype("object").to_numpy()
    hist = history.astype("string")
    known_hist = hist.notna().to_numpy()
    tests = {name: _matching(hist, rx, full=False) for name, rx in HISTORY_TESTS.items()}
    tcp = transport == "tcp"
    udp = transport == "udp"
    for name, rule in CONN_STATE_OUTCOMES.items():
        here = state == name
        if not here.any():
            continue
        out[here & tcp] = rule.tcp.value
        out[here & udp] = rule.udp.value
        if rule.refine is not None:
            test, passed, failed = rule.refine
            refined = here & tcp & known_hist
            out[refined & tests[test]] = passed.value
            out[refined & ~tests[test]] = failed.value
    return out


# --------------------------------------------------------------------------------------
# sniffing
# --------------------------------------------------------------------------------------


def _sniff_tsv(head: bytes, name: str) -> bool:
    separator = b"\t"
    seen_directive = False
    for line in head.split(b"\n")[:64]:
        line = line.rstrip(b"\r")
        if not line or line.startswith(b"# "):
            continue  # blank or a free comment ("# SOURCE: ...")
        if not line.startswith(b"#"):
            return False  # data before a #fields line: not a Zeek TSV header
        if line.startswith(b"#separator"):
            value = _unescape(line[len(b"#separator") :].strip(b" ").decode("latin-1"))
            separator = value.encode("latin-1") if value else separator
            seen_directive = True
        elif line.startswith(b"#path"):
            if not line[len(b"#path") + len(separator) :].startswith(b"conn"):
                return False
            seen_directive = True
        elif line.startswith(b"#fields"):
            return b"id.orig_h" in line and (seen_directive or b"id.resp_p" in line)
    return False


def _sniff_json(head: bytes, name: str) -> bool:
    for line in head.split(b"\n"):
        line = line.strip()
        if not line:
            continue
        if not line.startswith(b"{"):
            return False
        try:
            record = json.loads(line)
        except ValueError:
            return False
        if not isinstance(record, dict):
            return False
        if isinstance(record.get("id"), dict):
            record = {**record, **{f"id.{k}": v for k, v in record["id"].items()}}
        return "id.orig_h" in record and any(k in record for k in ("conn_state", "history", "orig_pkts", "duration"))
    return False


# --------------------------------------------------------------------------------------
# bytes -> lines, vectorised
# --------------------------------------------------------------------------------------

_BLOCK_BYTES = 1 << 24  # 16 MiB of input per block
_READ_BYTES = 1 << 20


@dataclasses.dataclass
class _Block:
    """A block of whole lines and their positions (numpy arrays over the block's bytes)."""

    data: bytes
    arr: np.ndarray  # uint8 view of data, which always ends with b"\n"
    starts: np.ndarray  # first byte of each line
    ends: np.ndarray  # end of each line's content (before "\r\n" or "\n")
    nl: np.ndarray  # position of each line's "\n"
    first_line: int  # 1-based number of line 0
    _counts: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.starts)

    def line(self, i: int) -> bytes:
        return self.data[self.starts[i] : self.ends[i]]

    def counts(self, kind: str) -> np.ndarray:
        """How many bytes of each line's content are of ``kind``: ``"high"`` (non-ASCII),
        ``"blank"`` (space, tab, CR) or ``"sep:<byte>"``; computed once per block."""
        if kind not in self._counts:
            if kind == "high":
                mask = self.arr >= 0x80
            elif kind == "blank":
                mask = (self.arr == 32) | (self.arr == 9) | (self.arr == 13)
            else:
                mask = self.arr == int(kind.split(":", 1)[1])
            where = np.flatnonzero(mask)
            self._counts[kind] = np.searchsorted(where, self.ends) - np.searchsorted(where, self.starts)
        return self._counts[kind]


def _make_block(data: bytes, first_line: int) -> _Block:
    if not data.endswith(b"\n"):
        data += b"\n"
    arr = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], nl[:-1] + 1)).astype(np.int64)
    ends = nl.copy()
    crlf = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
    ends[crlf] -= 1
    return _Block(data, arr, starts, ends, nl, first_line)


def _iter_blocks(path: PathLike, report: ReadReport, block_bytes: int = _BLOCK_BYTES) -> Iterator[_Block]:
    """Whole-line blocks of the (decompressed) input; a truncated gzip stream is reported."""
    line_no = 1
    carry = b""
    truncated: str | None = None
    with open_binary(path) as fh:
        while True:
            parts = [carry]
            size = len(carry)
            eof = False
            while size < block_bytes:
                try:
                    piece = fh.read1(_READ_BYTES)  # read1: nothing decompressed is lost if the stream breaks
                except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
                    truncated = f"compressed stream is damaged or truncated ({exc})"
                    eof = True
                    break
                if not piece:
                    eof = True
                    break
                parts.append(piece)
                size += len(piece)
            buf = b"".join(parts)
            if eof:
                if buf:
                    block = _make_block(buf, line_no)
                    line_no += block.n
                    yield block
                break
            cut = buf.rfind(b"\n")
            if cut < 0:  # one enormous line: keep reading
                carry = buf
                continue
            carry = buf[cut + 1 :]
            block = _make_block(buf[: cut + 1], line_no)
            line_no += block.n
            yield block
    if truncated is not None:
        report.seen()
        report.bad(truncated, line=line_no)


def _utf8_bad(block: _Block, idx: np.ndarray) -> np.ndarray:
    """Which of the lines ``idx`` are not valid UTF-8 (only lines with non-ASCII bytes are decoded)."""
    high = block.counts("high")[idx] > 0
    bad = np.zeros(len(idx), dtype=bool)
    for j in np.flatnonzero(high):  # only lines holding non-ASCII bytes, rare in conn logs
        try:
            block.line(int(idx[j])).decode("utf-8")
        except UnicodeDecodeError:
            bad[j] = True
    return bad


def _line_bytes(block: _Block, idx: np.ndarray) -> bytes:
    """The lines ``idx`` (sorted; content only) joined with ``\\n``."""
    first, last = int(idx[0]), int(idx[-1])
    lo, hi = int(block.starts[first]), int(block.nl[last]) + 1
    crlf = block.ends[first : last + 1] != block.nl[first : last + 1]
    if last - first + 1 == len(idx) and not crlf.any():
        return block.data[lo:hi]  # the usual case: a run of good lines, cut out as is
    wanted = np.zeros(last - first + 1, dtype=bool)
    wanted[idx - first] = True
    lengths = block.nl[first : last + 1] - block.starts[first : last + 1] + 1
    keep = np.repeat(wanted, lengths)
    keep[(block.ends[first : last + 1] - lo)[crlf]] = False  # drop the "\r" of "\r\n"
    return block.arr[lo:hi][keep].tobytes()


# --------------------------------------------------------------------------------------
# quarantine bookkeeping
# --------------------------------------------------------------------------------------


class _Bad:
    """Malformed records of one piece of input, flushed to the report together so that
    strict mode raises on the earliest one."""

    def __init__(self, report: ReadReport, block: _Block):
        self.report = report
        self.block = block
        self.items: list[tuple[str, np.ndarray, np.ndarray]] = []  # reason, line numbers, block indices

    def add(self, reason: str, idx: np.ndarray) -> None:
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx):
            self.items.append((reason, idx + self.block.first_line, idx))

    def flush(self) -> None:
        if not self.items:
            return
        if self.report.strict:
            reason, lines, _ = min(self.items, key=lambda item: int(item[1].min()))
            self.report.bad(reason, line=int(lines.min()))
        for reason, lines, idx in self.items:
            room = max(0, MAX_QUARANTINE_DETAIL - len(self.report.quarantine))
            excerpts = [self.block.line(int(i)) for i in idx[:room]] + [""] * max(0, len(idx) - room)
            self.report.bad_many(reason, lines=lines, excerpts=excerpts)
        self.items = []


# --------------------------------------------------------------------------------------
# Zeek values -> canonical columns
# --------------------------------------------------------------------------------------

_REQUIRED = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto")
_OPTIONAL = (
    "uid",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "history",
    "orig_pkts",
    "resp_pkts",
    "ip_proto",
)
#: Stratosphere (CTU-13, IoT-23, security-datasets-for-testing) label columns → extras.
_LABEL_FIELDS = {
    "label": "dataset_label",
    "detailed-label": "dataset_detailed_label",
    "detailedlabel": "dataset_detailed_label",
    "detailed_label": "dataset_detailed_label",
}
_WANTED = frozenset(_REQUIRED + _OPTIONAL) | frozenset(_LABEL_FIELDS)
_TRANSPORTS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "unknown_transport": "other"}
_IPV4 = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}"
_IP_RE = rf"^(?:{_IPV4}|[0-9A-Fa-f]{{0,4}}(?::[0-9A-Fa-f]{{0,4}}){{1,7}}(?::{_IPV4})?(?:%[\w.-]+)?)$"
_MAX_EPOCH_S = 9.2e9  # datetime64[ns] ends in 2262
_INT64_LIMIT = 9.2e18


def _numbers(values: pd.Series) -> np.ndarray:
    """float64 values, NaN where missing or not a number (text is parsed; JSON booleans,
    objects and arrays are not numbers)."""
    if values.dtype.kind in "iuf":
        return values.to_numpy(dtype="float64", na_value=np.nan)
    if values.dtype.kind == "b":
        return np.full(len(values), np.nan)
    try:  # Arrow parses a clean text column about ten times faster than to_numeric
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        pa = None
    if pa is not None:
        try:
            parsed = pc.cast(pa.array(values, from_pandas=True), pa.float64())
            return np.asarray(parsed.to_numpy(zero_copy_only=False), dtype="float64")
        except (pa.ArrowException, TypeError, ValueError):
            pass  # a column holding a value that is not a number: find it the slow way
    return pd.to_numeric(values.astype("string"), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _matching(values: pd.Series, pattern: str, *, full: bool) -> np.ndarray:
    """Which values match ``pattern``, testing each distinct value once (addresses and
    histories repeat a lot); NA gives False."""
    rx = re.compile(pattern)
    test = rx.fullmatch if full else rx.search
    distinct = pd.unique(values.dropna().astype("object"))
    hits = [v for v in distinct if test(str(v))]
    return values.isin(hits).to_numpy(dtype=bool) & values.notna().to_numpy(dtype=bool)


class _Checker:
    """Collects, per row, the first reason it is malformed."""

    def __init__(self, n: int):
        self.ok = np.ones(n, dtype=bool)
        self.reason = np.full(n, "", dtype=object)

    def fail(self, mask: np.ndarray, reason: str) -> None:
        new = mask & self.ok
        if new.any():
            self.reason[new] = reason
            self.ok &= ~new


def _convert(raw: pd.DataFrame, log_format: str) -> tuple[dict[str, Any], _Checker]:
    """Canonical columns (all rows) from Zeek columns, and which rows are malformed.

    ``raw`` has Zeek field names; missing values (unset fields, absent JSON keys) are NA.
    """
    n = len(raw)
    check = _Checker(n)

    def col(name: str) -> pd.Series:
        return raw[name] if name in raw.columns else pd.Series([None] * n, index=raw.index, dtype="object")

    def present(name: str) -> np.ndarray:
        return col(name).notna().to_numpy(dtype=bool)

    def number(name: str, *, integer: bool, low: float, high: float, what: str = "a number") -> np.ndarray:
        values = _numbers(col(name))
        given = present(name)
        bad_type = given & ~np.isfinite(values)
        check.fail(bad_type, f"{name} is not {what}")
        ok = np.isfinite(values)
        with np.errstate(invalid="ignore"):
            out_of_range = ok & ((values < low) | (values > high) | ((values % 1 != 0) if integer else False))
        check.fail(out_of_range, f"{name} is out of range" if not integer else f"{name} is not {what}")
        values = values.copy()
        values[bad_type | out_of_range] = np.nan
        return values

    for name in _REQUIRED:
        if name not in ("id.orig_p", "id.resp_p"):
            check.fail(~present(name), f"{name} is unset or missing")

    # ts: epoch seconds (TSV, JSON default) or ISO 8601 (JSON with json_timestamps=TS_ISO8601)
    ts_raw = col("ts")
    ts = _numbers(ts_raw)
    ns = np.zeros(n, dtype=np.int64)
    finite = np.isfinite(ts) & (np.abs(ts) < _MAX_EPOCH_S)
    ns[finite] = np.round(ts[finite] * 1e6).astype(np.int64) * 1000
    iso = ~np.isfinite(ts) & present("ts")
    if iso.any():
        parsed = pd.to_datetime(ts_raw[iso].astype("string"), utc=True, errors="coerce", format="ISO8601")
        good = parsed.notna().to_numpy(dtype=bool)
        spots = np.flatnonzero(iso)
        ns[spots[good]] = parsed[good].astype("datetime64[ns, UTC]").astype("int64").to_numpy()
        finite[spots[good]] = True
    check.fail(present("ts") & ~finite, "ts is not a timestamp")

    orig_p = number("id.orig_p", integer=True, low=0, high=65535, what="a port number")
    resp_p = number("id.resp_p", integer=True, low=0, high=65535, what="a port number")
    duration = number("duration", integer=False, low=0, high=np.inf)
    counts = {
        name: number(name, integer=True, low=0, high=_INT64_LIMIT, what="a count")
        for name in ("orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts")
    }
    ip_proto = number("ip_proto", integer=True, low=0, high=255, what="an IP protocol number")

    src = col("id.orig_h").astype("string")
    dst = col("id.resp_h").astype("string")
    for name, ips in (("id.orig_h", src), ("id.resp_h", dst)):
        not_ip = ips.notna().to_numpy(dtype=bool) & ~_matching(ips, _IP_RE, full=True)
        check.fail(not_ip, f"{name} is not an IP address")

    proto = col("proto").astype("string").str.lower()
    transport = proto.map(_TRANSPORTS).astype("object").to_numpy()
    check.fail(present("proto") & pd.isna(transport), "proto is not a Zeek transport (tcp, udp, icmp, unknown_transport)")
    transport = np.where(pd.isna(transport), "other", transport).astype(object)
    v6 = src.str.contains(":", regex=False).fillna(False).to_numpy(dtype=bool) | (ip_proto == 58)
    transport[(transport == "icmp") & v6] = "icmpv6"

    state = col("conn_state").astype("string")
    unknown_state = state.notna() & ~state.isin(list(CONN_STATE_OUTCOMES))
    check.fail(unknown_state.to_numpy(dtype=bool), "conn_state is not a Zeek connection state")
    history = col("history").astype("string")

    is_icmp = (transport == "icmp") | (transport == "icmpv6")
    icmp_type = np.where(is_icmp, orig_p, np.nan)
    check.fail(is_icmp & (icmp_type > 255), "id.orig_p is not an ICMP type (0-255)")
    two_way = np.zeros(n, dtype=bool)
    for family, types in _ICMP_TWO_WAY.items():
        two_way |= (transport == family) & np.isin(icmp_type, types)
    icmp_code = np.where(is_icmp, np.where(two_way, 0.0, resp_p), np.nan)
    check.fail(is_icmp & (icmp_code > 255), "id.resp_p is not an ICMP code (0-255)")

    outcome = conn_outcomes(transport, state, history)
    outcome[is_icmp] = icmp_outcomes(transport, icmp_type, counts["resp_pkts"], counts["resp_bytes"])[is_icmp]

    def ints(values: np.ndarray, dtype: str) -> pd.api.extensions.ExtensionArray:
        np_dtype = np.dtype(dtype.lower())
        info = np.iinfo(np_dtype)
        mask = ~np.isfinite(values)
        data = np.clip(np.where(mask, 0, values), info.min, info.max).astype(np_dtype)
        return pd.arrays.IntegerArray(data, mask)

    columns: dict[str, Any] = {
        "event_start": ns,
        "event_duration_s": duration,
        "source_ip": src.array,
        "source_port": ints(np.where(is_icmp, np.nan, orig_p), "Int32"),
        "destination_ip": dst.array,
        "destination_port": ints(np.where(is_icmp, np.nan, resp_p), "Int32"),
        "network_transport": pd.Categorical(transport, dtype=schema.TRANSPORT_DTYPE),
        "conn_outcome": pd.Categorical(outcome, dtype=schema.OUTCOME_DTYPE),
        "source_bytes": ints(counts["orig_bytes"], "Int64"),
        "destination_bytes": ints(counts["resp_bytes"], "Int64"),
        "source_packets": ints(counts["orig_pkts"], "Int64"),
        "destination_packets": ints(counts["resp_pkts"], "Int64"),
        "icmp_type": ints(icmp_type, "Int16"),
        "icmp_code": ints(icmp_code, "Int16"),
        "zeek_uid": col("uid").astype("string").array,
        "zeek_conn_state": state.array,
        "zeek_history": history.array,
        "zeek_service": col("service").astype("string").array,
    }
    for field, extra in _LABEL_FIELDS.items():
        if field in raw.columns:
            columns[extra] = raw[field].astype("string").array
    return columns, check


def _emit(raw: pd.DataFrame, idx: np.ndarray, bad: _Bad, report: ReadReport, log_format: str) -> pd.DataFrame | None:
    """Convert parsed rows (block line indices ``idx``), quarantine the malformed ones."""
    columns, check = _convert(raw, log_format)
    for reason in pd.unique(check.reason[~check.ok]):
        bad.add(str(reason), idx[~check.ok & (check.reason == reason)])
    keep = check.ok
    kept = int(keep.sum())
    report.used(kept)
    if kept == 0:
        return None
    selected = {name: (values[keep] if not np.isscalar(values) else values) for name, values in columns.items()}
    return schema.conform(selected, log_format=log_format, n=kept)


# --------------------------------------------------------------------------------------
# TSV
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Header:
    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    fields: list[str] | None = None
    fields_line: int = 0
    problem: str | None = None  # why records under this header cannot be read

    def reset(self, separator: str = "\t", problem: str | None = None) -> None:
        """A ``#separator`` line starts a new header block (e.g. concatenated rotated logs)."""
        fresh = _Header(separator=separator, problem=problem)
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(fresh, field.name))


_DIRECTIVES = ("set_separator", "empty_field", "unset_field", "path", "open", "fields", "types", "close")


def _unescape(value: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def _header_line(text: str, line_no: int, header: _Header, report: ReadReport, state: dict[str, Any]) -> str | None:
    """Apply one ``#`` line to ``header``; return a reason when it is a damaged directive."""
    if text.startswith("#separator"):
        value = _unescape(text[len("#separator") :].lstrip(" "))
        if not value or "\\" in value:
            header.reset(problem=f"the #separator line {line_no} is damaged")
            return f"damaged #separator header: {text[:60]!r}"
        header.reset(separator=value)
        return None
    key, sep, rest = text[1:].partition(header.separator)
    if key not in _DIRECTIVES:
        key2, _, rest2 = text[1:].partition(" ")
        if key2 in _DIRECTIVES:
            key, rest = key2, rest2  # e.g. btest-masked "#open XXXX"
        else:
            state["comments"] += 1
            return None  # a free comment, not a Zeek directive
    if key == "fields":
        fields = rest.split(header.separator) if rest else []
        header.fields, header.fields_line, header.problem = fields, line_no, None
        missing = [f for f in _REQUIRED if f not in fields]
        if len(set(fields)) != len(fields):
            header.problem = f"the #fields header on line {line_no} repeats a field name"
        elif missing:
            header.problem = f"the #fields header on line {line_no} lacks {', '.join(missing)}"
        if header.problem:
            return header.problem  # the line itself is quarantined, and the records under it
    elif key == "types":
        if header.fields is not None and len(rest.split(header.separator)) != len(header.fields):
            report.note(f"a #types header (line {line_no}) does not match its #fields; types are not used")
    elif key == "path":
        if rest and not rest.startswith("conn"):
            report.note(f"the log's #path is {rest!r}, not conn (line {line_no})")
    elif key in ("set_separator", "empty_field", "unset_field"):
        if not rest:
            return f"damaged #{key} header"
        setattr(header, key, _unescape(rest))
    return None


def _split_fallback(data: bytes, separator: str, n_fields: int) -> pd.DataFrame:
    rows = [line.split(separator) for line in data.decode("utf-8").split("\n")[:-1]]
    return pd.DataFrame(rows, columns=range(n_fields), dtype="object")


def _tsv_segment(block: _Block, idx: np.ndarray, header: _Header, report: ReadReport, log_format: str) -> pd.DataFrame | None:
    """Parse the data lines ``idx`` of ``block`` that share one header."""
    if len(idx) == 0:
        return None
    report.seen(len(idx))
    bad = _Bad(report, block)
    try:
        if header.fields is None or header.problem:
            reason = header.problem or "record before any #fields header"
            if header.fields is not None:
                reason = f"{reason} (its records cannot be read)"
            bad.add(reason, idx)
            return None
        utf8 = _utf8_bad(block, idx)
        bad.add("not valid UTF-8", idx[utf8])
        idx = idx[~utf8]
        n_fields = len(header.fields)
        sep = header.separator.encode("utf-8")
        if len(sep) == 1:
            found = block.counts(f"sep:{sep[0]}")[idx] + 1
        else:
            found = np.array([block.line(int(i)).count(sep) + 1 for i in idx], dtype=np.int64)
        wrong = found != n_fields
        for count in np.unique(found[wrong]):
            bad.add(f"expected {n_fields} fields, found {int(count)}", idx[wrong & (found == count)])
        idx = idx[~wrong]
        if len(idx) == 0:
            return None
        data = _line_bytes(block, idx)
        wanted = [i for i, f in enumerate(header.fields) if f in _WANTED]
        table = None
        if len(sep) == 1 and sep != b"\n":
            try:
                table = pd.read_csv(
                    io.BytesIO(data),
                    sep=header.separator,
                    header=None,
                    usecols=wanted,
                    dtype=str,
                    na_filter=False,
                    quoting=csv.QUOTE_NONE,
                    lineterminator="\n",
                    skip_blank_lines=False,
                    engine="c",
                    encoding="utf-8",
                )
            except (ValueError, pd.errors.ParserError):
                table = None
        if table is None or len(table) != len(idx):
            table = _split_fallback(data, header.separator, n_fields)[wanted]
        table.columns = [header.fields[i] for i in wanted]
        table = table.astype("str") if table.dtypes.eq(object).any() else table
        table = table.mask(table == header.unset_field).mask(table == header.empty_field, "")
        return _emit(table, idx, bad, report, log_format)
    finally:
        bad.flush()


def _iter_records(
    path: PathLike, report: ReadReport, chunksize: int, log_format: str, parse
) -> Iterator[pd.DataFrame]:
    """Drive a block parser and yield canonical chunks of at most about ``chunksize`` rows."""
    yielded = False
    pending: list[pd.DataFrame] = []
    pending_rows = 0
    for block in _iter_blocks(path, report):
        for lo in range(0, block.n, chunksize):
            frame = parse(block, lo, min(lo + chunksize, block.n))  # at most chunksize rows
            if frame is None or not len(frame):
                continue
            if pending_rows + len(frame) > chunksize:
                yield _join(pending)
                yielded = True
                pending, pending_rows = [], 0
            pending.append(frame)
            pending_rows += len(frame)
    if pending or not yielded:
        yield _join(pending) if pending else _empty(log_format)


def _join(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _empty(log_format: str) -> pd.DataFrame:
    raw = pd.DataFrame({name: pd.Series([], dtype="object") for name in _REQUIRED})
    columns, _ = _convert(raw, log_format)
    return schema.conform(columns, log_format=log_format, n=0).astype(
        {c: "string" for c in ("zeek_uid", "zeek_conn_state", "zeek_history", "zeek_service")}
    )


@register("zeek", sniff=_sniff_tsv, priority=20, description="Zeek conn.log, tab-separated with #fields header (gzip too)")
def read_zeek(path: PathLike, report: ReadReport, *, chunksize: int, fields: list[str] | None = None, **options: Any) -> Iterator[pd.DataFrame]:
    """Zeek conn.log, tab-separated with #fields header (gzip too).

    Parameters
    ----------
    fields : list of str, optional
        Field names for a log whose header was stripped (used until a ``#fields`` line).
    """
    header = _Header(fields=list(fields) if fields else None)
    state: dict[str, Any] = {"comments": 0}

    def parse(block: _Block, lo: int, hi: int) -> pd.DataFrame | None:
        first = block.arr[block.starts[lo:hi]]
        empty = block.ends[lo:hi] == block.starts[lo:hi]
        is_header = (first == ord("#")) & ~empty
        frames = []
        start = lo
        for h in np.flatnonzero(is_header) + lo:
            frames.append(_tsv_segment(block, _data_lines(empty, lo, start, h), header, report, "zeek"))
            line_no = block.first_line + int(h)
            problem = _header_line(block.line(int(h)).decode("utf-8", "replace"), line_no, header, report, state)
            if problem is not None:
                report.seen()
                report.bad(problem, line=line_no, excerpt=block.line(int(h)))
            start = h + 1
        frames.append(_tsv_segment(block, _data_lines(empty, lo, start, hi), header, report, "zeek"))
        frames = [f for f in frames if f is not None and len(f)]
        return _join(frames) if frames else None

    yield from _iter_records(path, report, chunksize, "zeek", parse)
    if state["comments"]:
        report.note(f"{state['comments']:,} comment lines starting with '#' that are not Zeek directives were ignored")


def _data_lines(empty: np.ndarray, lo: int, start: int, stop: int) -> np.ndarray:
    idx = np.arange(start, stop, dtype=np.int64)
    return idx[~empty[start - lo : stop - lo]]


# --------------------------------------------------------------------------------------
# JSON lines
# --------------------------------------------------------------------------------------

_READ_JSON_KW: dict[str, Any] = {"convert_dates": False} if int(pd.__version__.split(".")[0]) < 3 else {}


def _flatten_id(frame: pd.DataFrame) -> pd.DataFrame:
    """Accept ``{"id": {"orig_h": ...}}`` (nested) as well as Zeek's flat ``"id.orig_h"``."""
    if "id" not in frame.columns:
        return frame
    nested = frame["id"]
    is_dict = nested.map(lambda v: isinstance(v, dict)).to_numpy(dtype=bool)
    if not is_dict.any():
        return frame
    inner = pd.DataFrame(list(nested[is_dict]), index=frame.index[is_dict])
    out = frame.drop(columns="id").copy()
    for key in inner.columns:
        name = f"id.{key}"
        column = out[name].astype("object") if name in out.columns else pd.Series([None] * len(out), index=out.index, dtype="object")
        column[is_dict] = inner[key].astype("object")
        out[name] = column
    return out


def _json_segment(block: _Block, idx: np.ndarray, report: ReadReport) -> pd.DataFrame | None:
    if len(idx) == 0:
        return None
    report.seen(len(idx))
    bad = _Bad(report, block)
    try:
        utf8 = _utf8_bad(block, idx)
        bad.add("not valid UTF-8", idx[utf8])
        idx = idx[~utf8]
        # an object per line: first and last non-blank bytes are braces
        lead = block.counts("blank")
        first = block.arr[np.minimum(block.starts[idx], len(block.arr) - 1)]
        last = block.arr[np.maximum(block.ends[idx] - 1, 0)]
        braced = (first == ord("{")) & (last == ord("}"))
        padded = ~braced & (lead[idx] > 0)
        for j in np.flatnonzero(padded):  # lines with surrounding blanks: rare
            text = block.line(int(idx[j])).strip()
            braced[j] = text.startswith(b"{") and text.endswith(b"}")
        bad.add("not valid JSON (not one object on the line)", idx[~braced])
        idx = idx[braced]
        if len(idx) == 0:
            return None
        frame = None
        try:
            frame = pd.read_json(io.BytesIO(_line_bytes(block, idx)), lines=True, dtype=False, precise_float=True, **_READ_JSON_KW)
            if len(frame) != len(idx):
                frame = None
        except Exception:  # noqa: BLE001 - any failure sends this chunk to the per-line path
            frame = None
        if frame is None:
            records: list[dict[str, Any]] = []
            good = np.zeros(len(idx), dtype=bool)
            for j, i in enumerate(idx):  # only chunks that hold a broken line
                try:
                    value = json.loads(block.line(int(i)))
                except ValueError as exc:
                    bad.add(f"not valid JSON ({getattr(exc, 'msg', exc)})", np.array([i]))
                    continue
                if not isinstance(value, dict):
                    bad.add("not a JSON object", np.array([i]))
                    continue
                records.append(value)
                good[j] = True
            idx = idx[good]
            if len(idx) == 0:
                return None
            frame = pd.DataFrame.from_records(records)
        frame = _flatten_id(frame)
        frame.index = pd.RangeIndex(len(frame))
        keep = [c for c in frame.columns if c in _WANTED]
        return _emit(frame[keep], idx, bad, report, "zeek-json")
    finally:
        bad.flush()


@register("zeek-json", sniff=_sniff_json, priority=20, description="Zeek conn.log as JSON lines (LogAscii::use_json=T), gzip too")
def read_zeek_json(path: PathLike, report: ReadReport, *, chunksize: int, **options: Any) -> Iterator[pd.DataFrame]:
    """Zeek conn.log as JSON lines (LogAscii::use_json=T), gzip too."""

    def parse(block: _Block, lo: int, hi: int) -> pd.DataFrame | None:
        empty = (block.ends[lo:hi] - block.starts[lo:hi]) == block.counts("blank")[lo:hi]
        return _json_segment(block, _data_lines(empty, lo, lo, hi), report)

    yield from _iter_records(path, report, chunksize, "zeek-json", parse)
