"""Our own canonical frame, stored as parquet or CSV (``format="canonical"``)."""

from __future__ import annotations

import csv
import io
import re
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import register
from ._report import ReadReport
from ._source import PathLike, open_binary

__all__ = ["read_canonical", "write_canonical"]

_PARQUET_MAGIC = b"PAR1"


def _sniff(head: bytes, name: str) -> bool:
    if head.startswith(_PARQUET_MAGIC):
        return True
    first = head.split(b"\n", 1)[0]
    return b"event_start" in first and b"conn_outcome" in first and b"," in first


@register("canonical", sniff=_sniff, priority=10, description="t1046lab's own canonical frame as parquet or CSV")
def read_canonical(path: PathLike, report: ReadReport, *, chunksize: int, **options: Any) -> Iterator[pd.DataFrame]:
    """t1046lab's own canonical frame as parquet or CSV."""
    with open_binary(path) as fh:
        is_parquet = fh.read(4) == _PARQUET_MAGIC
    if is_parquet:
        yield from _read_parquet(path, report, chunksize)
    else:
        yield from _read_csv(path, report, chunksize)


def _read_parquet(path: PathLike, report: ReadReport, chunksize: int) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    missing = [c for c in schema.CORE_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise schema.SchemaError([f"{path}: parquet file lacks canonical columns {missing}"])
    yielded = False
    for batch in pf.iter_batches(batch_size=chunksize):
        frame = batch.to_pandas()
        report.seen(len(frame))
        report.used(len(frame))
        yield _restore(frame)
        yielded = True
    if not yielded:
        yield schema.empty_frame()


def _restore(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast a frame that went through parquet or CSV back to the canonical dtypes."""
    columns = {c: frame[c] for c in frame.columns if c != "log_format"}
    formats = frame["log_format"].astype("object") if "log_format" in frame.columns else None
    if formats is not None and len(formats) and formats.notna().all() and formats.nunique() == 1:
        return schema.conform(columns, log_format=str(formats.iloc[0]), n=len(frame))
    out = schema.conform(columns, log_format="canonical", n=len(frame))
    if formats is not None:
        out["log_format"] = pd.Categorical(formats, dtype=schema.LOG_FORMAT_DTYPE)
    return out


_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
_NS_MIN = pd.Timestamp("1677-09-22", tz="UTC")
_NS_MAX = pd.Timestamp("2262-04-11", tz="UTC")
_KNOWN = {**schema.CORE_COLUMNS, **schema.IDENTITY_COLUMNS, **schema.LABEL_COLUMNS}
# Value ranges of the numeric canonical columns (beyond these a cast would fail or validate() would).
_RANGES: dict[str, tuple[float, float]] = {"source_port": (0, 65535), "destination_port": (0, 65535)}


def _range(name: str, dtype: Any) -> tuple[float, float]:
    if name in _RANGES:
        return _RANGES[name]
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return (0.0, np.inf) if name == "event_duration_s" else (-np.inf, np.inf)
    info = np.iinfo(dtype.numpy_dtype)
    low = 0 if name in ("source_bytes", "destination_bytes", "source_packets", "destination_packets") else info.min
    return float(low), float(min(info.max, 2**63 - 1024))  # float64 rounds 2**63 - 1 up


def _read_csv(path: PathLike, report: ReadReport, chunksize: int) -> Iterator[pd.DataFrame]:
    with open_binary(path) as fh:
        # surrogateescape: a line of bad UTF-8 is quarantined on its own, the rest still reads
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
        rows = csv.reader(text)
        header: list[str] | None = None
        problem: str | None = None
        batch: list[list[str]] = []
        lines: list[int] = []
        yielded = False

        def flush() -> Iterator[pd.DataFrame]:
            nonlocal batch, lines, yielded
            if batch:
                frame = _csv_batch(header, batch, np.asarray(lines, dtype=np.int64), report)
                batch, lines = [], []
                yielded = True
                yield frame

        def bad(reason: str, line: int, excerpt: Any = "") -> Iterator[pd.DataFrame]:
            # strict mode: the buffered rows come first, so the error names the first bad line
            if report.strict:
                yield from flush()
            report.seen()
            if isinstance(excerpt, str):  # back to the raw bytes, shown with backslash escapes
                excerpt = excerpt.encode("utf-8", "surrogateescape")
            report.bad(reason, line=line, excerpt=excerpt)

        while True:
            start = rows.line_num + 1
            try:
                row = next(rows)
            except StopIteration:
                break
            except csv.Error as exc:
                yield from bad(f"not CSV: {exc}", start)
                continue
            except (EOFError, OSError, zlib.error) as exc:
                yield from bad(f"compressed stream is damaged or truncated ({exc})", start)
                break
            if header is None:
                header = row
                problem = _header_problem(header)
                if problem is not None:
                    yield from bad(problem, 1, ",".join(header))
                continue
            if not row:
                continue  # a blank line holds no record
            joined = ",".join(row)
            if problem is not None:
                yield from bad(f"{problem} (its records cannot be read)", rows.line_num, joined)
                continue
            if _SURROGATE.search(joined):
                yield from bad("not valid UTF-8", rows.line_num, joined)
                continue
            if len(row) != len(header):
                yield from bad(f"expected {len(header)} fields, found {len(row)}", rows.line_num, joined)
                continue
            report.seen()
            batch.append(row)
            lines.append(rows.line_num)
            if len(batch) >= chunksize:
                yield from flush()
        yield from flush()
        if not yielded:
            yield schema.empty_frame()


def _header_problem(header: list[str]) -> str | None:
    if any(_SURROGATE.search(name) for name in header):
        return "the CSV header (line 1) is not valid UTF-8"
    missing = [c for c in schema.CORE_COLUMNS if c not in header]
    if missing:
        return f"the CSV header (line 1) lacks canonical columns {missing}"
    if len(set(header)) != len(header):
        return "the CSV header (line 1) repeats a column name"
    return None


def _csv_batch(header: list[str], batch: list[list[str]], lines: np.ndarray, report: ReadReport) -> pd.DataFrame:
    raw = pd.DataFrame(batch, columns=header, dtype="object").replace("", None)
    ok = np.ones(len(raw), dtype=bool)
    reasons = np.full(len(raw), "", dtype=object)

    def fail(bad: np.ndarray, reason: str) -> None:
        nonlocal ok
        reasons[bad & ok] = reason
        ok &= ~bad

    parsed: dict[str, Any] = {}
    for name in raw.columns:
        dtype = _KNOWN.get(name)
        values = raw[name]
        if dtype is None or isinstance(dtype, (pd.StringDtype, pd.CategoricalDtype)):
            if isinstance(dtype, pd.CategoricalDtype):
                fail((values.notna() & ~values.isin(list(dtype.categories))).to_numpy(), f"{name} not one of {list(dtype.categories)}")
            parsed[name] = values
        elif dtype is schema.TIMESTAMP_DTYPE:
            ts = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
            fail(ts.isna().to_numpy(), f"{name} is not a timestamp")
            # ISO 8601 reaches years datetime64[ns] cannot hold (e.g. "-3")
            outside = ts.notna() & ((ts < _NS_MIN) | (ts > _NS_MAX))
            fail(outside.to_numpy(dtype=bool), f"{name} is out of range")
            parsed[name] = ts.where(~outside)
        else:
            num = pd.to_numeric(values, errors="coerce").astype("float64")
            given = values.notna().to_numpy()
            fail(given & ~np.isfinite(num.to_numpy()), f"{name} is not a number")
            low, high = _range(name, dtype)
            with np.errstate(invalid="ignore"):
                arr = num.to_numpy()
                outside = np.isfinite(arr) & ((arr < low) | (arr > high))
                if not (isinstance(dtype, np.dtype) and dtype.kind == "f"):
                    outside |= np.isfinite(arr) & (arr % 1 != 0)
            fail(outside, f"{name} is out of range for {dtype}")
            parsed[name] = num
    if report.strict and not ok.all():
        first = int(np.flatnonzero(~ok)[0])  # rows are in file order: raise on the first bad one
        report.bad(str(reasons[first]), line=int(lines[first]))
    for reason in pd.unique(reasons[~ok]):
        report.bad_many(str(reason), lines=lines[~ok & (reasons == reason)])
    report.used(int(ok.sum()))
    kept = pd.DataFrame(parsed)[ok].reset_index(drop=True)
    return _restore(kept)


def write_canonical(df: pd.DataFrame, path: PathLike) -> None:
    """Write a canonical frame to ``.parquet`` or ``.csv`` (chosen by the suffix)."""
    schema.validate(df)
    suffix = str(path).lower()
    if suffix.endswith(".parquet"):
        df.to_parquet(path, index=False)
    elif suffix.endswith(".csv") or suffix.endswith(".csv.gz"):
        df.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        raise ValueError(f"{path}: choose a .parquet or .csv output")
