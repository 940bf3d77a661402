"""Helpers shared by the flow-log readers (suricata, nfdump, argus, vpc, gcp, azure).

Vectorised field parsing with our own validation (so a bad value quarantines its record
instead of turning a whole column into strings), categorical builders, the TCP flag bits,
and the pairing of unidirectional records into connection attempts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ._report import ReadReport
from ._source import PathLike, iter_line_chunks

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128

_OUTCOMES = [str(o) for o in schema.Outcome]
_TRANSPORTS = [str(t) for t in schema.Transport]
_POLICIES = [str(p) for p in schema.PolicyAction]

#: IANA protocol names (as /etc/protocols spells them, lower case) that are not one of
#: tcp/udp/icmp/icmpv6: they map to ``other``. A name outside this table and not a number
#: is an unknown protocol and quarantines its record.
OTHER_PROTOCOL_NAMES = frozenset(
    "ip hopopt igmp ggp ipencap ipv4 st egp igp pup hmp xns-idp rdp iso-tp4 dccp xtp ddp idpr-cmtp "
    "ipv6 ipv6-route ipv6-frag idrp rsvp gre esp ah skip ipv6-nonxt ipv6-opts rspf vmtp eigrp ospf "
    "ospfigp ax.25 ipip etherip encap pim ipcomp vrrp l2tp isis sctp fc mobility-header udplite "
    "mpls-in-ip manet hip shim6 wesp rohc ethernet ipx-in-ip carp pfsync divert".split()
)
_NAME_TO_NUMBER = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "icmp6": 58}


def categorical(values: np.ndarray, dtype: pd.CategoricalDtype) -> pd.Categorical:
    """A canonical categorical from an array of category strings (all must be valid)."""
    cats = list(dtype.categories)
    codes = pd.Index(cats).get_indexer(np.asarray(values, dtype=object))
    if (codes < 0).any():
        bad = sorted({str(v) for v in np.asarray(values, dtype=object)[codes < 0]})[:5]
        raise ValueError(f"values outside {cats}: {bad}")
    return pd.Categorical.from_codes(codes.astype(np.int8), dtype=dtype)


def outcome(values: np.ndarray) -> pd.Categorical:
    return categorical(values, schema.OUTCOME_DTYPE)


def policy(values: np.ndarray) -> pd.Categorical:
    return categorical(values, schema.POLICY_DTYPE)


def transport_from_number(proto: np.ndarray) -> np.ndarray:
    """IANA protocol numbers → canonical transport names."""
    proto = np.asarray(proto)
    out = np.full(len(proto), "other", dtype=object)
    out[proto == 6] = "tcp"
    out[proto == 17] = "udp"
    out[proto == 1] = "icmp"
    out[proto == 58] = "icmpv6"
    return out


def protocol_numbers(names: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Protocol names or numbers (``"TCP"``, ``"006"``, ``"ipv6-icmp"``, ``"17"``) → numbers.

    Returns ``(numbers, ok)``; known non-transport names give -1 (``other``), unknown names
    and numbers outside 0–255 are not ok.
    """
    text = names.astype("object").fillna("").astype(str).str.strip().str.lower()
    num = pd.to_numeric(text.where(text.str.fullmatch(r"\d{1,3}"), None), errors="coerce")
    out = np.full(len(text), -2, dtype=np.int64)
    have_num = num.notna().to_numpy()
    out[have_num] = num.to_numpy()[have_num].astype(np.int64)
    mapped = text.map(_NAME_TO_NUMBER)
    have_name = mapped.notna().to_numpy() & ~have_num
    out[have_name] = mapped.to_numpy()[have_name].astype(np.int64)
    other = text.isin(OTHER_PROTOCOL_NAMES).to_numpy() & ~have_num & ~have_name
    out[other] = -1
    ok = (out >= -1) & (out <= 255)
    return out, ok


def parse_ints(values: pd.Series, *, missing: tuple[str, ...] = ("-", "")) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse decimal integers; returns ``(values as float64, present, ok)``.

    ``missing`` tokens give NaN and are ok; anything else that is not an integer is not ok.
    """
    text = values.astype("object").fillna("").astype(str).str.strip()
    absent = text.isin(missing).to_numpy()
    num = pd.to_numeric(text.where(~absent, None), errors="coerce").to_numpy(dtype=np.float64, copy=True)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(num) & (np.floor(num) == num)
    ok = absent | integral
    num[~integral] = np.nan
    return num, ~absent & integral, ok


def split_fields(
    lines: pd.Series, *, sep: str | None, width: int
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Split lines into exactly ``width`` fields.

    Returns ``(fields, ok, counts)``: a frame of strings for the lines with the right number
    of fields (in order, index = positions in ``lines``), the mask of those lines, and the
    field count of every line. ``sep=None`` splits on runs of whitespace.
    """
    parts = lines.str.split(sep) if sep is not None else lines.str.split()
    counts = parts.str.len().fillna(0).to_numpy(dtype=np.int64)
    ok = counts == width
    good = parts[ok]
    if len(good):
        fields = pd.DataFrame(good.tolist(), index=good.index, columns=range(width), dtype=object)
    else:
        fields = pd.DataFrame({i: pd.Series([], dtype=object) for i in range(width)})
    return fields, ok, counts


def quarantine(
    report: ReadReport,
    reason_of: np.ndarray,
    lines: np.ndarray,
    excerpts: list[Any] | None = None,
    *,
    deferred: list[tuple[int, str, Any]] | None = None,
) -> None:
    """Quarantine the records whose ``reason_of`` entry is non-empty, one call per reason.

    ``deferred`` holds ``(line, reason, excerpt)`` of records found bad earlier in the
    chunk (not JSON, ...); in strict mode the error raised is the one on the earliest line.
    """
    deferred = deferred or []
    bad = reason_of != ""
    if report.strict and (bad.any() or deferred):
        candidates = [(int(lines[i]), str(reason_of[i]), excerpts[i] if excerpts else "") for i in np.flatnonzero(bad)[:1]]
        line, reason, excerpt = min(candidates + list(deferred), key=lambda c: c[0])
        report.bad(reason, line=line, excerpt=excerpt)
    for line, reason, excerpt in deferred:
        report.bad(reason, line=line, excerpt=excerpt)
    deferred.clear()
    if not bad.any():
        return
    for reason in pd.unique(reason_of[bad]):
        sel = np.flatnonzero(reason_of == reason)
        report.bad_many(
            str(reason),
            lines=lines[sel],
            excerpts=[excerpts[i] for i in sel] if excerpts is not None else None,
        )


def flag_letters(text: pd.Series, letters: dict[str, int]) -> np.ndarray:
    """Decode flag strings such as ``...AP.SF`` or ``SPA`` into the TCP flag bitmask."""
    text = text.astype("object").fillna("").astype(str)
    out = np.zeros(len(text), dtype=np.int64)
    for letter, bit in letters.items():
        out |= np.where(text.str.contains(letter, regex=False).to_numpy(), bit, 0)
    return out


def iter_json_lines(
    path: PathLike, report: ReadReport, chunk_lines: int
) -> Iterator[tuple[np.ndarray, list[dict[str, Any]], list[tuple[int, str, Any]]]]:
    """Yield ``(line_numbers, objects, deferred)`` for each chunk of a JSON-lines file.

    Blank lines are not records. A line that is not a JSON object goes to ``deferred`` as
    ``(line, reason, excerpt)``; the caller passes it to :func:`quarantine` with its own
    findings so that strict mode raises on the earliest bad line (``json.loads`` per line is
    the parsing; column building is batched by callers).
    """
    for first, raw in iter_line_chunks(path, chunk_lines):
        objs: list[dict[str, Any]] = []
        nums: list[int] = []
        deferred: list[tuple[int, str, Any]] = []
        for i, line in enumerate(raw):
            if not line.strip():
                continue
            report.seen()
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                deferred.append((first + i, f"not JSON: {exc.__class__.__name__}", line))
                continue
            if not isinstance(obj, dict):
                deferred.append((first + i, "JSON value is not an object", line))
                continue
            objs.append(obj)
            nums.append(first + i)
        yield np.asarray(nums, dtype=np.int64), objs, deferred


def dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


# --- pairing unidirectional records ---------------------------------------------------


def pair_reverse(
    frame: pd.DataFrame,
    *,
    keys: tuple[str, str, str, str],
    same: tuple[str, ...] = (),
    start: str = "t0",
    end: str = "t1",
    tolerance: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Find one-to-one pairs of records whose 5-tuples are each other's reverse.

    ``keys`` names the (src, dst, sport, dport) columns; ``same`` columns (protocol,
    interface) must be equal; ``start``/``end`` are float seconds and the two records' time
    spans, widened by ``tolerance`` seconds, must overlap. Each record is in at most one
    pair; a record with several candidates takes the nearest in start time (greedy rounds,
    vectorised). Returns the positional indices ``(a, b)`` with ``a < b``.
    """
    n = len(frame)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    sa, da, sp, dp = keys
    cols = [sa, da, sp, dp, *same]
    left = frame[cols].copy()
    left["_i"] = np.arange(n)
    left["_t0"] = frame[start].to_numpy(dtype=np.float64)
    left["_t1"] = frame[end].to_numpy(dtype=np.float64)
    right = left.rename(columns={sa: da, da: sa, sp: dp, dp: sp})
    for c in (sa, da, sp, dp):
        # fill missing ports/addresses with a sentinel so NA keys still match each other
        left[c] = left[c].astype("object").fillna("\x00")
        right[c] = right[c].astype("object").fillna("\x00")
    for c in same:
        left[c] = left[c].astype("object").fillna("\x00")
        right[c] = right[c].astype("object").fillna("\x00")
    m = left.merge(right, on=cols, suffixes=("_a", "_b"))
    m = m[m["_i_a"] < m["_i_b"]]
    overlap = (m["_t0_b"] <= m["_t1_a"] + tolerance) & (m["_t0_a"] <= m["_t1_b"] + tolerance)
    m = m[overlap]
    if m.empty:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    m = m.assign(_d=(m["_t0_a"] - m["_t0_b"]).abs()).sort_values(["_d", "_i_a", "_i_b"], kind="stable")
    ia = m["_i_a"].to_numpy()
    ib = m["_i_b"].to_numpy()
    keep_a: list[np.ndarray] = []
    keep_b: list[np.ndarray] = []
    used = np.zeros(n, dtype=bool)
    while len(ia):
        # in candidate order, keep a pair when neither record appears earlier in this round
        both = np.concatenate([ia, ib])
        first_seen = ~pd.Series(both).duplicated().to_numpy()
        k = len(ia)
        take = first_seen[:k] & first_seen[k:]
        # a pair is only safe if its records appear in no earlier candidate at all
        order_pos = np.arange(k)
        earliest = pd.Series(np.concatenate([order_pos, order_pos])).groupby(both).transform("min").to_numpy()
        take &= (earliest[:k] == order_pos) & (earliest[k:] == order_pos)
        if not take.any():
            take[0] = True
        keep_a.append(ia[take])
        keep_b.append(ib[take])
        used[ia[take]] = True
        used[ib[take]] = True
        rest = ~used[ia] & ~used[ib]
        ia, ib = ia[rest], ib[rest]
    return np.concatenate(keep_a), np.concatenate(keep_b)


def seconds(ts: pd.Series) -> np.ndarray:
    """UTC timestamps → float seconds since the epoch (NaN for NaT)."""
    values = pd.Series(ts).astype("datetime64[ns, UTC]")
    raw = values.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    out = raw.view(np.int64).astype(np.float64) / 1e9
    out[np.isnat(raw)] = np.nan
    return out
