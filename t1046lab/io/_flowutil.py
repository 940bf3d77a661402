"""Helpers shared by the flow-log readers (suricata, nfdump, argus, vpc, gcp, azure).

Vectorised field parsing with our own validation (so a bad value quarantines its record
instead of turning a whole column into strings), categorical builders, the TCP flag bits,
and the pairing of unidirectional records into connection attempts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ._report import ReadReport
from ._source import PathLike, iter_line_chunks

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 1, 2, 4, 8, 16, 32, 64, 128

#: Lines per internal chunk of the wide CSV and JSON readers: split fields and parsed JSON
#: cost far more memory than the raw line, so chunks stay smaller than ``read``'s default.
CHUNK_LINES = 65_536
#: Lines per chunk of the readers that pair records within a chunk (vpc, gcp): larger, so
#: that fewer pairs straddle a chunk boundary.
PAIRING_CHUNK_LINES = 262_144

#: IANA protocol names (as /etc/protocols spells them, lower case) that are not one of
#: tcp/udp/icmp/icmpv6: they map to ``other``. A name outside this table and not a number
#: is an unknown protocol and quarantines its record.
OTHER_PROTOCOL_NAMES = frozenset(
    [
        "ip", "hopopt", "igmp", "ggp", "ipencap", "ipv4", "st", "egp", "igp", "pup", "hmp", "xns-idp", "rdp",
        "iso-tp4", "dccp", "xtp", "ddp", "idpr-cmtp", "ipv6", "ipv6-route", "ipv6-frag", "idrp", "rsvp",
        "gre", "esp", "ah", "skip", "ipv6-nonxt", "ipv6-opts", "rspf", "vmtp", "eigrp", "ospf", "ospfigp",
        "ax.25", "ipip", "etherip", "encap", "pim", "ipcomp", "vrrp", "l2tp", "isis", "sctp", "fc",
        "mobility-header", "udplite", "mpls-in-ip", "manet", "hip", "shim6", "wesp", "rohc", "ethernet",
        "ipx-in-ip", "carp", "pfsync", "divert",
    ]
)
_NAME_TO_NUMBER = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "icmp6": 58}


def header_columns(
    header: list[str], aliases: dict[str, tuple[str, ...]], required: Any, path: PathLike, what: str
) -> dict[str, int]:
    """Position of each field in a CSV header, by the first of its alias names present.

    Raises ``SchemaError`` naming the file and the missing fields when a required one is absent.
    """
    where: dict[str, int] = {}
    for key, names in aliases.items():
        for name in names:
            if name in header:
                where[key] = header.index(name)
                break
    missing = [k for k in required if k not in where]
    if missing:
        raise schema.SchemaError([f"{path}: {what} header lacks {missing}; header is {header}"])
    return where


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


def per_unique(values: Any, fn: Any, fill: Any = np.nan, dtype: Any = np.float64) -> np.ndarray:
    """Apply ``fn`` (array of distinct values → array of results) once per distinct value."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
    out = np.full(len(codes), fill, dtype=dtype)
    if len(uniques):
        res = np.asarray(fn(np.asarray(uniques, dtype=object)), dtype=dtype)
        have = codes >= 0
        out[have] = res[codes[have]]
    return out


def fullmatch(values: Any, pattern: str) -> np.ndarray:
    """Which values match the regular expression (tested once per distinct value)."""
    rx = re.compile(pattern)
    return per_unique(values, lambda u: np.array([rx.fullmatch(str(x)) is not None for x in u], dtype=bool), fill=False, dtype=bool)


def strip(values: Any) -> pd.Series:
    """Strip blanks from a low-cardinality text column (once per distinct value)."""
    out = per_unique(values, lambda u: np.array([str(x).strip() for x in u], dtype=object), fill="", dtype=object)
    return pd.Series(out, dtype=object)


def _proto_lookup(uniques: np.ndarray) -> np.ndarray:
    out = np.full(len(uniques), -2, dtype=np.int64)
    for i, raw in enumerate(uniques):  # distinct protocol spellings: a handful per file
        text = str(raw).strip().lower()
        if text.isdigit() and len(text) <= 3:
            out[i] = int(text)
        elif text in _NAME_TO_NUMBER:
            out[i] = _NAME_TO_NUMBER[text]
        elif text in OTHER_PROTOCOL_NAMES:
            out[i] = -1
    return out


def protocol_numbers(names: Any) -> tuple[np.ndarray, np.ndarray]:
    """Protocol names or numbers (``"TCP"``, ``"006"``, ``"ipv6-icmp"``, ``17``) → numbers.

    Returns ``(numbers, ok)``; known non-transport names give -1 (``other``), unknown names,
    missing values and numbers outside 0–255 are not ok.
    """
    out = per_unique(names, _proto_lookup, fill=-2, dtype=np.int64)
    ok = (out >= -1) & (out <= 255)
    return out, ok


def parse_ints(values: Any, *, missing: tuple[str, ...] = ("-", "")) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse decimal integers; returns ``(values as float64, present, ok)``.

    Missing values (None, NaN) and ``missing`` tokens give NaN and are ok; anything else
    that is not an integer is not ok. Works on object arrays of str or numbers without
    converting them to a string dtype first (the costly part on large chunks).
    """
    series = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values.astype(object)
    absent = series.isna().to_numpy() | series.isin(list(missing)).to_numpy()
    num = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    num[absent] = np.nan
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


def first_reasons(n: int) -> tuple[np.ndarray, Callable[[np.ndarray, str], None]]:
    """``(why, fail)``: per-record reasons (``""`` while good) and ``fail(mask, reason)``.

    ``fail`` records ``reason`` for the masked records that have none yet, so each bad
    record is quarantined once, under the first check it failed; ``why`` goes to
    :func:`quarantine`.
    """
    why = np.full(n, "", dtype=object)

    def fail(mask: np.ndarray, reason: str) -> None:
        why[mask & (why == "")] = reason

    return why, fail


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
    def decode(uniques: np.ndarray) -> np.ndarray:
        return np.array([sum(bit for letter, bit in letters.items() if letter in str(u)) for u in uniques], dtype=np.int64)

    return per_unique(text, decode, fill=0, dtype=np.int64)


def decode_lines(raw: list[bytes], first: int, report: ReadReport) -> tuple[list[str], np.ndarray]:
    """Decode a chunk of raw lines, dropping blank ones; returns ``(texts, line_numbers)``.

    The whole chunk is decoded at once; only when that fails is it decoded line by line,
    and a line that is not UTF-8 is counted and quarantined with its number.
    """
    try:
        texts = b"\n".join(raw).decode("utf-8").split("\n")
        nums = np.arange(first, first + len(texts), dtype=np.int64)
    except UnicodeDecodeError:
        texts, kept = [], []
        for i, b in enumerate(raw):
            try:
                texts.append(b.decode("utf-8"))
                kept.append(first + i)
            except UnicodeDecodeError as exc:
                report.seen()
                report.bad(f"not UTF-8: {exc.reason}", line=first + i, excerpt=b)
        nums = np.asarray(kept, dtype=np.int64)
    if not texts:
        return [], nums
    blank = pd.Series(texts, dtype=object).str.strip().to_numpy() == ""
    if blank.any():
        keep = np.flatnonzero(~blank)
        texts = [texts[i] for i in keep]
        nums = nums[keep]
    return texts, nums


def iter_json_lines(
    path: PathLike,
    report: ReadReport,
    chunk_lines: int,
    extract: Callable[[int, dict[str, Any], list[tuple[int, str, Any]], dict[str, int]], tuple[Any, ...] | None],
) -> Iterator[tuple[np.ndarray, list[tuple[Any, ...]], list[tuple[int, str, Any]], dict[str, int]]]:
    """Yield ``(line_numbers, rows, deferred, skipped)`` for each chunk of a JSON-lines file.

    Each line is parsed with ``json.loads`` and handed to ``extract(line, obj, deferred,
    skipped)``, which returns the record's row tuple, or ``None`` after adding the record to
    ``deferred`` (bad: ``(line, reason, excerpt)``) or to ``skipped`` (reason → count). Only
    the tuples are kept, not the parsed objects, so memory follows the row width. Blank lines
    are not records; a line that is not a JSON object goes to ``deferred``. Callers pass
    ``deferred`` to :func:`quarantine` with their own findings so that strict mode raises on
    the earliest bad line.
    """
    for first, raw in iter_line_chunks(path, chunk_lines):
        rows: list[tuple[Any, ...]] = []
        nums: list[int] = []
        deferred: list[tuple[int, str, Any]] = []
        skipped: dict[str, int] = {}
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
            row = extract(first + i, obj, deferred, skipped)
            if row is not None:
                rows.append(row)
                nums.append(first + i)
        for reason, n in skipped.items():
            report.skip(reason, n)
        yield np.asarray(nums, dtype=np.int64), rows, deferred, skipped


def dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


# --- pairing unidirectional records ---------------------------------------------------


def _codes(values: Any) -> np.ndarray:
    """Integer codes of a column (NA gets its own code)."""
    codes, _ = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)
    return codes.astype(np.int64)


def pair_reverse(
    frame: pd.DataFrame,
    *,
    keys: tuple[str, str, str, str],
    same: tuple[str, ...] = (),
    start: str = "t0",
    end: str = "t1",
    tolerance: float = 1.0,
    max_rounds: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Find one-to-one pairs of records whose 5-tuples are each other's reverse.

    ``keys`` names the (src, dst, sport, dport) columns; ``same`` columns (protocol,
    interface) must be equal; ``start``/``end`` are float seconds and the two records' time
    spans, widened by ``tolerance`` seconds, must overlap.

    Records are grouped by their unordered endpoint pair and sorted by start time; a record
    pairs with a time-adjacent record of the opposite direction. Conflicts (A B A: which A
    does B answer?) go to the pair nearer in time, in vectorised rounds, so a 5-tuple
    repeated many times costs O(n log n), not a quadratic self-join. Returns positional
    indices ``(a, b)``.
    """
    n = len(frame)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    if n < 2:
        return empty
    sa, da, sp, dp = keys
    addr = _codes(np.concatenate([frame[sa].to_numpy(dtype=object), frame[da].to_numpy(dtype=object)]))
    port = _codes(np.concatenate([frame[sp].to_numpy(dtype=object), frame[dp].to_numpy(dtype=object)]))
    endpoint = addr * (int(port.max()) + 1) + port
    s_id, d_id = endpoint[:n], endpoint[n:]
    lo, hi = np.minimum(s_id, d_id), np.maximum(s_id, d_id)
    forward = s_id < d_id
    self_flow = s_id == d_id
    group_cols = {"lo": lo, "hi": hi}
    for i, c in enumerate(same):
        group_cols[f"s{i}"] = _codes(frame[c].to_numpy(dtype=object))
    group = pd.DataFrame(group_cols).groupby(list(group_cols), sort=False).ngroup().to_numpy()
    group = np.where(self_flow, -1 - np.arange(n), group)  # a flow to itself pairs with nothing
    t0 = frame[start].to_numpy(dtype=np.float64)
    t1 = frame[end].to_numpy(dtype=np.float64)
    idx = np.lexsort((np.arange(n), t0, group))
    out_a: list[np.ndarray] = []
    out_b: list[np.ndarray] = []
    for _ in range(max_rounds):
        if len(idx) < 2:
            break
        g, f, a0, a1 = group[idx], forward[idx], t0[idx], t1[idx]
        valid = (g[:-1] == g[1:]) & (f[:-1] != f[1:]) & (a0[1:] <= a1[:-1] + tolerance) & (a0[:-1] <= a1[1:] + tolerance)
        if not valid.any():
            break
        dist = np.where(valid, np.abs(a0[1:] - a0[:-1]), np.inf)
        left = np.concatenate([[np.inf], dist[:-1]])
        right = np.concatenate([dist[1:], [np.inf]])
        valid_left = np.concatenate([[False], valid[:-1]])
        valid_right = np.concatenate([valid[1:], [False]])
        take = valid & (((dist <= left) & (dist < right)) | (~valid_left & ~valid_right))
        # the conditions above never take two candidates that share a record
        where = np.flatnonzero(take)
        out_a.append(idx[where])
        out_b.append(idx[where + 1])
        alive = np.ones(len(idx), dtype=bool)
        alive[where] = False
        alive[where + 1] = False
        idx = idx[alive]
    if not out_a:
        return empty
    return np.concatenate(out_a), np.concatenate(out_b)


def seconds(ts: pd.Series) -> np.ndarray:
    """UTC timestamps → float seconds since the epoch (NaN for NaT)."""
    values = pd.Series(ts).astype("datetime64[ns, UTC]")
    raw = values.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    out = raw.view(np.int64).astype(np.float64) / 1e9
    out[np.isnat(raw)] = np.nan
    return out
