"""Accounting for every input record a reader sees (the ``read_report``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ParseError

__all__ = ["ReadReport", "MAX_QUARANTINE_DETAIL"]

#: How many quarantined records keep their detail (line or offset, excerpt). Counts per
#: reason are always complete. Kept small because pandas deep-copies ``attrs`` often.
MAX_QUARANTINE_DETAIL = 1_000

_COUNTS = ("records_seen", "records_used", "records_skipped", "records_quarantined", "rows_produced")


class ReadReport(dict):
    """What a reader did with its input, stored in ``df.attrs["read_report"]``.

    Every record is accounted for: ``records_seen == records_used + records_skipped +
    records_quarantined``. A *record* is the format's unit (a log line, a JSON event, a
    packet); a *row* is a connection attempt. In line formats each used record gives one
    row; the pcap reader assembles many packets into one row, so there ``rows_produced``
    is smaller than ``records_used``.

    It is a ``dict`` of plain values, so a frame carrying it still writes to parquet, and
    its keys are also attributes:

    ``path``, ``format``
        The input and the reader that read it.
    ``records_seen``
        Records read from the input (header and comment lines are not records).
    ``records_used``
        Records that went into rows.
    ``records_skipped``, ``skipped_reasons``
        Well-formed records that hold no connection (an ARP frame, a DNS-only event), by reason.
    ``records_quarantined``, ``quarantine_reasons``
        Malformed records, by reason; the first :data:`MAX_QUARANTINE_DETAIL` are kept
        in ``quarantine`` with their line or byte offset and an excerpt.
    ``rows_produced``
        Rows in the returned frame.
    ``notes``
        What the format cannot express (aggregation, missing fields).
    """

    def __init__(self, path: str, format: str, *, strict: bool = False):
        super().__init__(
            path=str(path),
            format=format,
            strict=bool(strict),
            **{name: 0 for name in _COUNTS},
            skipped_reasons={},
            quarantine_reasons={},
            quarantine=[],
            notes=[],
        )

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self:
            raise AttributeError(f"ReadReport has no field {name!r}")
        self[name] = value

    # -- what readers call ---------------------------------------------------------------

    def seen(self, n: int = 1) -> None:
        self["records_seen"] += int(n)

    def used(self, n: int = 1) -> None:
        self["records_used"] += int(n)

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` well-formed records that hold no connection."""
        if n:
            self["records_skipped"] += int(n)
            self["skipped_reasons"][reason] = self["skipped_reasons"].get(reason, 0) + int(n)

    def bad(self, reason: str, *, line: int | None = None, offset: int | None = None, excerpt: Any = "") -> None:
        """Quarantine one record; raise :class:`ParseError` instead in strict mode."""
        if self["strict"]:
            raise ParseError(self["path"], reason, line=line, offset=offset)
        self._count_bad(reason, 1)
        if len(self["quarantine"]) < MAX_QUARANTINE_DETAIL:
            self["quarantine"].append(_detail(reason, line, offset, excerpt))

    def bad_many(
        self,
        reason: str,
        *,
        lines: np.ndarray | None = None,
        offsets: np.ndarray | None = None,
        excerpts: list[Any] | None = None,
    ) -> None:
        """Quarantine many records at once (vectorised readers); strict mode raises on the first."""
        where = lines if lines is not None else offsets
        if where is None:
            raise ValueError("bad_many needs lines or offsets")
        n = len(where)
        if n == 0:
            return
        if self["strict"]:
            raise ParseError(
                self["path"],
                reason,
                line=int(lines[0]) if lines is not None else None,
                offset=int(offsets[0]) if offsets is not None else None,
            )
        self._count_bad(reason, n)
        room = max(0, MAX_QUARANTINE_DETAIL - len(self["quarantine"]))
        for i in range(min(room, n)):
            self["quarantine"].append(
                _detail(
                    reason,
                    int(lines[i]) if lines is not None else None,
                    int(offsets[i]) if offsets is not None else None,
                    excerpts[i] if excerpts is not None else "",
                )
            )

    def note(self, text: str) -> None:
        """Record what the format loses or cannot express, once."""
        if text not in self["notes"]:
            self["notes"].append(text)

    def _count_bad(self, reason: str, n: int) -> None:
        self["records_quarantined"] += n
        self["quarantine_reasons"][reason] = self["quarantine_reasons"].get(reason, 0) + n

    # -- what users read -----------------------------------------------------------------

    @property
    def balanced(self) -> bool:
        """True when every record seen was used, skipped or quarantined."""
        return self["records_seen"] == self["records_used"] + self["records_skipped"] + self["records_quarantined"]

    def quarantine_frame(self) -> pd.DataFrame:
        """The quarantined records kept in detail, one row each."""
        return pd.DataFrame(self["quarantine"], columns=["reason", "line", "offset", "excerpt"])

    def summary(self) -> str:
        """A short human summary."""
        text = (
            f"{self['path']} ({self['format']}): {self['records_seen']:,} records seen, "
            f"{self['records_used']:,} used, {self['records_skipped']:,} skipped, "
            f"{self['records_quarantined']:,} quarantined -> {self['rows_produced']:,} rows"
        )
        if self["quarantine_reasons"]:
            top = sorted(self["quarantine_reasons"].items(), key=lambda kv: -kv[1])[:3]
            text += "; quarantine reasons: " + ", ".join(f"{r} ({n:,})" for r, n in top)
        return text

    def __repr__(self) -> str:
        return f"ReadReport({self.summary()})"


def _detail(reason: str, line: int | None, offset: int | None, excerpt: Any) -> dict[str, Any]:
    return {"reason": reason, "line": line, "offset": offset, "excerpt": _excerpt(excerpt)}


def _excerpt(value: Any, limit: int = 200) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)[:limit].decode("utf-8", "backslashreplace")
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
