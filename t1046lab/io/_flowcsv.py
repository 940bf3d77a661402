"""Shared parsing for the public datasets' flow CSVs (CIC-IDS2017, UNSW-NB15, CIDDS-001).

These files have no quoting, so a record is a line and a field is what lies between commas.
Lines are taken in chunks with their numbers; a line with the wrong number of fields, bad
UTF-8 or a value that does not parse is quarantined with its line number, and the rest are
split and converted column-wise by pandas, never one line at a time in Python.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from ._report import ReadReport
from ._source import PathLike, iter_line_chunks

MAX_CHUNK_LINES = 200_000


def iter_records(
    path: PathLike,
    report: ReadReport,
    *,
    width: int | None,
    chunksize: int,
    header: bool,
    sep: str = ",",
    fallback_encoding: str | None = None,
) -> Iterator[tuple[list[str] | None, pd.DataFrame, np.ndarray]]:
    """Yield ``(header, fields, line_numbers)`` per chunk of well-formed records.

    ``fields`` is a frame of strings (columns 0..width-1). With ``header=True`` the first
    non-blank line is the header and fixes ``width``. Blank lines are not records. A line
    that is not UTF-8 is decoded with ``fallback_encoding`` when given (the original
    CIC-IDS2017 CSVs hold cp1252 bytes in labels), quarantined otherwise.
    """
    names: list[str] | None = None
    # Wide rows (CIC has 80-90 fields): cap the lines held at once to bound memory.
    for first, raw in iter_line_chunks(path, min(chunksize, MAX_CHUNK_LINES)):
        numbers = np.arange(first, first + len(raw))
        texts = _decode(raw, numbers, report, fallback_encoding)
        text = pd.Series(texts, dtype=object)
        keep = (text.notna() & text.str.strip().ne("")).to_numpy(dtype=bool, copy=True)
        if header and names is None:
            nonblank = np.flatnonzero(keep)
            if not len(nonblank):
                continue
            h = nonblank[0]
            names = texts[h].lstrip("\ufeff").split(sep)
            width = len(names)
            keep[: h + 1] = False
        if width is None:
            raise ValueError("width is needed without a header")
        lines = text.to_numpy()[keep]
        numbers = numbers[keep]
        report.seen(len(lines))
        if not len(lines):
            continue
        counts = pd.Series(lines, dtype=object).str.count(re.escape(sep)).to_numpy() + 1
        wrong = counts != width
        if report.strict and wrong.any():
            # Strict mode names the first bad line of the file: the lines before the first
            # short or long one go to the reader first, so a bad value there raises first.
            first_bad = int(np.argmax(wrong))
            if first_bad:
                yield names, _split(lines[:first_bad], width, sep), numbers[:first_bad]
            report.bad(f"expected {width} fields, found {counts[first_bad]}", line=int(numbers[first_bad]))
        for found in np.unique(counts[wrong]):
            where = wrong & (counts == found)
            report.bad_many(f"expected {width} fields, found {found}", lines=numbers[where], excerpts=list(lines[where][:20]))
        good = lines[~wrong]
        if not len(good):
            continue
        yield names, _split(good, width, sep), numbers[~wrong]


def _split(lines: np.ndarray, width: int, sep: str) -> pd.DataFrame:
    return pd.read_csv(
        io.StringIO("\n".join(lines)),
        header=None,
        names=range(width),
        dtype=str,
        sep=sep,
        na_filter=False,
        quoting=3,  # csv.QUOTE_NONE: these formats never quote
        engine="c",
    )


def _decode(raw: list[bytes], numbers: np.ndarray, report: ReadReport, fallback: str | None) -> list[str | None]:
    try:
        return b"\n".join(raw).decode("utf-8").split("\n")
    except UnicodeDecodeError:
        pass
    out: list[str | None] = []
    for line, number in zip(raw, numbers):
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            if fallback:
                out.append(line.decode(fallback, errors="replace"))
                report.note(f"some lines are not UTF-8; decoded them as {fallback}")
                continue
            report.seen()
            report.bad(f"not UTF-8: {exc.reason}", line=int(number), excerpt=line)
            out.append(None)
    return out


class Checker:
    """Collects per-row parse failures of one chunk, first reason wins, then reports them."""

    def __init__(self, n: int, lines: np.ndarray, fields: pd.DataFrame | None = None):
        self.ok = np.ones(n, dtype=bool)
        self.reason = np.full(n, "", dtype=object)
        self.lines = lines
        self.fields = fields

    def fail(self, bad: np.ndarray | pd.Series, reason: str) -> None:
        bad = np.asarray(bad, dtype=bool)
        self.reason[bad & self.ok] = reason
        self.ok &= ~bad

    def number(self, values: pd.Series, name: str, *, allow_empty: bool = True, integer: bool = False) -> pd.Series:
        """Parse numbers; empty (or ``-``) -> NaN when allowed, anything else unparsable fails."""
        text = values.str.strip()
        empty = text.isin(["", "-"])
        hexa = text.str.startswith("0x", na=False)
        num = pd.to_numeric(text.where(~empty & ~hexa), errors="coerce")
        if hexa.any():
            num = num.where(~hexa, text[hexa].map(lambda s: _hex(s)))
        bad = num.isna() & ~empty
        if not allow_empty:
            bad |= empty
        if integer:
            bad |= num.notna() & (num != np.floor(num.fillna(0)))
        self.fail(bad.to_numpy(), f"{name} is not a number")
        return num

    def report(self, report: ReadReport) -> None:
        for reason in pd.unique(self.reason[~self.ok]):
            where = ~self.ok & (self.reason == reason)
            excerpts = None
            if self.fields is not None:
                excerpts = [",".join(r) for r in self.fields[where].head(50).itertuples(index=False)]
            report.bad_many(str(reason), lines=self.lines[where], excerpts=excerpts)
        report.used(int(self.ok.sum()))


def _hex(text: str) -> float:
    try:
        return float(int(text, 16))
    except ValueError:
        return np.nan


def port_array(values: pd.Series) -> Any:
    """Nullable Int32 ports; NaN and values outside 0-65535 become NA."""
    return values.round().astype("Int64").where(values.between(0, 65535)).astype("Int32")


def int_array(values: pd.Series) -> Any:
    """Nullable Int64 counts."""
    return values.round().astype("Int64")


def keep(columns: dict[str, Any], ok: np.ndarray) -> dict[str, Any]:
    """Subset every column (arrays or Series) to the rows that parsed."""
    out = {}
    for name, value in columns.items():
        if np.isscalar(value) or value is None:
            out[name] = value
        elif isinstance(value, pd.Series):
            out[name] = value[ok].reset_index(drop=True)
        else:
            out[name] = np.asarray(value, dtype=object)[ok] if isinstance(value, list) else value[ok]
    return out
