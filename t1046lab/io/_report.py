"""Accounting for every input record a reader sees (the ``read_report``)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ParseError

__all__ = ["ReadReport", "QuarantinedRecord"]

#: How many quarantined records keep their full detail; counts per reason are always complete.
MAX_QUARANTINE_DETAIL = 10_000


@dataclasses.dataclass(frozen=True)
class QuarantinedRecord:
    """One input record a reader could not turn into a row."""

    reason: str
    line: int | None = None
    offset: int | None = None
    excerpt: str = ""


@dataclasses.dataclass
class ReadReport:
    """What a reader did with its input, stored in ``df.attrs["read_report"]``.

    Every record is accounted for: ``records_seen == records_used + records_skipped +
    records_quarantined``. A *record* is the format's unit (a log line, a JSON event, a
    packet); a *row* is a connection attempt. In line formats each used record gives one
    row; the pcap reader assembles many packets into one row, so there ``rows_produced``
    is smaller than ``records_used``.

    Attributes
    ----------
    path : str
    format : str
    records_seen : int
        Records read from the input (header and comment lines are not records).
    records_used : int
        Records that went into rows.
    records_skipped : int
        Well-formed records that hold no connection (an ARP frame, a DNS-only event),
        counted by reason in ``skipped_reasons``.
    records_quarantined : int
        Malformed records, counted by reason in ``quarantine_reasons``; the first
        ``MAX_QUARANTINE_DETAIL`` are kept with line or byte offset in ``quarantine``.
    rows_produced : int
        Rows in the returned frame.
    notes : list of str
        What the format cannot express (aggregation, missing fields), for the reader of
        the report.
    """

    path: str
    format: str
    records_seen: int = 0
    records_used: int = 0
    records_skipped: int = 0
    records_quarantined: int = 0
    rows_produced: int = 0
    skipped_reasons: Counter = dataclasses.field(default_factory=Counter)
    quarantine_reasons: Counter = dataclasses.field(default_factory=Counter)
    quarantine: list[QuarantinedRecord] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    strict: bool = False

    # -- what readers call ---------------------------------------------------------------

    def seen(self, n: int = 1) -> None:
        self.records_seen += int(n)

    def used(self, n: int = 1) -> None:
        self.records_used += int(n)

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` well-formed records that hold no connection."""
        if n:
            self.records_skipped += int(n)
            self.skipped_reasons[reason] += int(n)

    def bad(
        self, reason: str, *, line: int | None = None, offset: int | None = None, excerpt: Any = ""
    ) -> None:
        """Quarantine one record; raise :class:`ParseError` instead in strict mode."""
        if self.strict:
            raise ParseError(self.path, reason, line=line, offset=offset)
        self.records_quarantined += 1
        self.quarantine_reasons[reason] += 1
        if len(self.quarantine) < MAX_QUARANTINE_DETAIL:
            self.quarantine.append(QuarantinedRecord(reason, line, offset, _excerpt(excerpt)))

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
        if self.strict:
            first_line = int(lines[0]) if lines is not None else None
            first_offset = int(offsets[0]) if offsets is not None else None
            raise ParseError(self.path, reason, line=first_line, offset=first_offset)
        self.records_quarantined += n
        self.quarantine_reasons[reason] += n
        room = max(0, MAX_QUARANTINE_DETAIL - len(self.quarantine))
        for i in range(min(room, n)):
            self.quarantine.append(
                QuarantinedRecord(
                    reason,
                    int(lines[i]) if lines is not None else None,
                    int(offsets[i]) if offsets is not None else None,
                    _excerpt(excerpts[i]) if excerpts is not None else "",
                )
            )

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- what users read -----------------------------------------------------------------

    @property
    def balanced(self) -> bool:
        """True when every record seen was used, skipped or quarantined."""
        return self.records_seen == self.records_used + self.records_skipped + self.records_quarantined

    def quarantine_frame(self) -> pd.DataFrame:
        """The quarantined records kept in detail, one row each."""
        return pd.DataFrame(
            [dataclasses.asdict(q) for q in self.quarantine],
            columns=["reason", "line", "offset", "excerpt"],
        )

    def summary(self) -> str:
        """A short human summary."""
        text = (
            f"{self.path} ({self.format}): {self.records_seen:,} records seen, "
            f"{self.records_used:,} used, {self.records_skipped:,} skipped, "
            f"{self.records_quarantined:,} quarantined -> {self.rows_produced:,} rows"
        )
        if self.quarantine_reasons:
            top = ", ".join(f"{r} ({n:,})" for r, n in self.quarantine_reasons.most_common(3))
            text += f"; quarantine reasons: {top}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "records_seen": self.records_seen,
            "records_used": self.records_used,
            "records_skipped": self.records_skipped,
            "records_quarantined": self.records_quarantined,
            "rows_produced": self.rows_produced,
            "skipped_reasons": dict(self.skipped_reasons),
            "quarantine_reasons": dict(self.quarantine_reasons),
            "notes": list(self.notes),
        }

    def __str__(self) -> str:
        return self.summary()


def _excerpt(value: Any, limit: int = 200) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)[:limit].decode("utf-8", "backslashreplace")
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
