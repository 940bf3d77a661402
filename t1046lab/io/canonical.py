"""Our own canonical frame, stored as parquet or CSV (``format="canonical"``)."""

from __future__ import annotations

import csv
import io
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
    if formats is not None and formats.nunique(dropna=True) == 1:
        return schema.conform(columns, log_format=str(formats.iloc[0]), n=len(frame))
    out = schema.conform(columns, log_format="canonical", n=len(frame))
    if formats is not None:
        out["log_format"] = pd.Categorical(formats, dtype=schema.LOG_FORMAT_DTYPE)
    return out


def _read_csv(path: PathLike, report: ReadReport, chunksize: int) -> Iterator[pd.DataFrame]:
    with open_binary(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="strict", newline="")
        try:
            rows = csv.reader(text)
            header = next(rows)
        except StopIteration:
            yield schema.empty_frame()
            return
        missing = [c for c in schema.CORE_COLUMNS if c not in header]
        if missing:
            raise schema.SchemaError([f"{path}: CSV header lacks canonical columns {missing}"])
        width = len(header)
        batch: list[list[str]] = []
        lines: list[int] = []
        yielded = False
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except UnicodeDecodeError as exc:
                report.seen()
                report.bad(f"not UTF-8: {exc.reason}", line=rows.line_num + 1)
                break  # the decoder cannot resynchronise; the rest of the file is unreadable
            report.seen()
            if len(row) != width:
                report.bad(f"expected {width} fields, found {len(row)}", line=rows.line_num, excerpt=",".join(row))
                continue
            batch.append(row)
            lines.append(rows.line_num)
            if len(batch) >= chunksize:
                yield _csv_batch(header, batch, np.asarray(lines), report)
                yielded = True
                batch, lines = [], []
        if batch or not yielded:
            yield _csv_batch(header, batch, np.asarray(lines, dtype=np.int64), report)


def _csv_batch(header: list[str], batch: list[list[str]], lines: np.ndarray, report: ReadReport) -> pd.DataFrame:
    raw = pd.DataFrame(batch, columns=header, dtype="object").replace("", None)
    ok = np.ones(len(raw), dtype=bool)
    reasons = np.full(len(raw), "", dtype=object)
    parsed: dict[str, Any] = {}
    for name in raw.columns:
        dtype = {**schema.CORE_COLUMNS, **schema.IDENTITY_COLUMNS, **schema.LABEL_COLUMNS}.get(name)
        values = raw[name]
        if dtype is None or isinstance(dtype, (pd.StringDtype, pd.CategoricalDtype)):
            if isinstance(dtype, pd.CategoricalDtype):
                bad = values.notna() & ~values.isin(list(dtype.categories))
                reasons[bad.to_numpy() & ok] = f"{name} not one of {list(dtype.categories)}"
                ok &= ~bad.to_numpy()
            parsed[name] = values
        elif dtype is schema.TIMESTAMP_DTYPE:
            ts = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
            bad = ts.isna().to_numpy()
            reasons[bad & ok] = f"{name} is not a timestamp"
            ok &= ~bad
            parsed[name] = ts
        else:
            num = pd.to_numeric(values, errors="coerce")
            bad = (num.isna() & values.notna()).to_numpy()
            reasons[bad & ok] = f"{name} is not a number"
            ok &= ~bad
            parsed[name] = num
    for reason in pd.unique(reasons[~ok]):
        report.bad_many(reason, lines=lines[~ok & (reasons == reason)])
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
