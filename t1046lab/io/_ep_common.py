"""Helpers shared by the container and endpoint readers (hubble, calico, osquery, sysmon-linux, auditd).

Endpoint readers mark whether the logged process opened the connection with a boolean
``<format>_initiated`` column (``auditd_initiated``, ``osquery_initiated``,
``sysmon_linux_initiated``); :func:`t1046lab.correlate.correlate` attributes a network
connection only to a process that initiated it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from ..schema import Outcome
from ._report import ReadReport
from ._source import PathLike, iter_line_chunks

__all__ = ["ERRNO_OUTCOME", "clean_text", "decode_hex_text", "errno_outcome", "iter_json_records", "to_int"]

#: connect() errno (positive) → outcome. Anything else → ``unknown``.
ERRNO_OUTCOME: dict[int, str] = {
    0: Outcome.ESTABLISHED,  # blocking TCP connect returned: the handshake completed
    111: Outcome.REJECTED,  # ECONNREFUSED: RST from the target
    110: Outcome.NO_REPLY,  # ETIMEDOUT: SYN retries exhausted
    113: Outcome.ICMP_UNREACHABLE,  # EHOSTUNREACH: ICMP host unreachable, or no ARP answer
    101: Outcome.ICMP_UNREACHABLE,  # ENETUNREACH: ICMP net unreachable or no route
    13: Outcome.DENIED,  # EACCES: local firewall / LSM refused the connect
    1: Outcome.DENIED,  # EPERM: netfilter REJECT/DROP on OUTPUT, seccomp, LSM
    115: Outcome.UNKNOWN,  # EINPROGRESS: non-blocking connect, result comes later
    114: Outcome.UNKNOWN,  # EALREADY
    104: Outcome.REJECTED,  # ECONNRESET during connect
}


def errno_outcome(codes: np.ndarray) -> np.ndarray:
    """Map syscall exit codes (0 or negative errno; NaN when absent) to outcome strings."""
    codes = np.asarray(codes, dtype="float64")
    out = np.full(len(codes), str(Outcome.UNKNOWN), dtype=object)
    for errno, outcome in ERRNO_OUTCOME.items():
        out[codes == -errno] = str(outcome)
    return out


def to_int(values: Any) -> pd.Series:
    """Numbers from strings or numbers (osquery writes both); NA where not an integer."""
    return pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").astype("Float64").round().astype("Int64")


def clean_text(values: Any, missing: tuple[str, ...] = ("", "-")) -> pd.Series:
    """A string Series with the format's 'no value' markers turned into NA."""
    s = pd.Series(values, dtype="object")
    s = s.where(~s.isin(list(missing)), None)
    return s.astype("string")


def decode_hex_text(value: str) -> str:
    """auditd writes a field as hex when it holds spaces or special bytes; NULs separate argv."""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return value
    return raw.replace(b"\x00", b" ").decode("utf-8", "backslashreplace").strip()


def iter_json_records(
    path: PathLike, report: ReadReport, chunksize: int
) -> Iterator[tuple[np.ndarray, list[dict[str, Any]]]]:
    """Yield ``(line_numbers, objects)`` per chunk of a JSON-lines file.

    Blank lines are not records. A line that is not a JSON object is counted as seen and
    quarantined with its line number (or raises in strict mode); callers count the rest.
    """
    for first, lines in iter_line_chunks(path, chunk_lines=max(1, min(chunksize, 262_144))):
        numbers: list[int] = []
        objects: list[dict[str, Any]] = []
        for i, raw in enumerate(lines):
            if not raw.strip():
                continue
            line_no = first + i
            report.seen()
            try:
                obj = json.loads(raw)
            except (UnicodeDecodeError, ValueError) as exc:
                report.bad(f"not JSON: {type(exc).__name__}", line=line_no, excerpt=raw)
                continue
            if not isinstance(obj, dict):
                report.bad("JSON value is not an object", line=line_no, excerpt=raw)
                continue
            numbers.append(line_no)
            objects.append(obj)
        yield np.asarray(numbers, dtype=np.int64), objects
