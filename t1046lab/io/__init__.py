"""Readers: every telemetry format into the canonical connections frame.

``read(path, format="auto")`` sniffs the format when asked to, streams the file through the
format's reader in chunks, and returns one canonical frame with a
:class:`~t1046lab.io._report.ReadReport` in ``df.attrs["read_report"]``.

Adding a format: write a module in this package (its name not starting with ``_``) whose
reader function is decorated with :func:`register`; it is found and imported on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from .. import schema
from ..exceptions import DataQualityWarning, FormatDetectionError
from ._report import ReadReport
from ._source import PathLike, read_head

__all__ = ["read", "iter_read", "sniff_format", "available_formats", "register", "ReadReport"]

log = logging.getLogger(__name__)



class ReaderFunc(Protocol):
    def __call__(
        self, path: PathLike, report: ReadReport, *, chunksize: int, **options: Any
    ) -> Iterator[pd.DataFrame]: ...


@dataclasses.dataclass(frozen=True)
class _Reader:
    name: str
    func: ReaderFunc
    sniff: Callable[[bytes, str], bool] | None
    priority: int
    description: str


_REGISTRY: dict[str, _Reader] = {}


def register(
    name: str,
    *,
    sniff: Callable[[bytes, str], bool] | None = None,
    priority: int = 50,
    description: str = "",
) -> Callable[[ReaderFunc], ReaderFunc]:
    """Register a reader under its ``format=`` name.

    Parameters
    ----------
    name : str
        The ``format=`` name; must be one of :data:`t1046lab.schema.LOG_FORMATS`.
    sniff : callable, optional
        ``sniff(head, filename) -> bool``: does this input (its first 64 KiB, decompressed)
        look like this format? Readers without one are only used when named.
    priority : int
        Sniffers run from low to high priority; the first that answers True wins.
    description : str
        One line for ``t1046lab read --help`` and :func:`available_formats`.

    Notes
    -----
    The reader is called as ``func(path, report, chunksize=..., **options)`` and yields
    canonical chunks (built with :func:`t1046lab.schema.conform`), counting every record
    in ``report``; in strict mode ``report.bad(...)`` raises instead of counting.
    """
    if name not in schema.LOG_FORMATS:
        raise ValueError(f"format {name!r} is not in schema.LOG_FORMATS")

    def decorate(func: ReaderFunc) -> ReaderFunc:
        _REGISTRY[name] = _Reader(name, func, sniff, priority, description or (func.__doc__ or "").strip().split("\n")[0])
        return func

    return decorate


def _load_readers() -> dict[str, _Reader]:
    # Reader modules are imported on first use, so that ``import t1046lab`` stays light.
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return _REGISTRY


def available_formats() -> pd.DataFrame:
    """The registered formats with a one-line description each."""
    readers = _load_readers()
    return pd.DataFrame(
        [(r.name, r.description, r.sniff is not None) for r in sorted(readers.values(), key=lambda r: r.name)],
        columns=["format", "description", "auto_detected"],
    )


def sniff_format(path: PathLike) -> str:
    """Name the format of ``path`` from its first bytes (gzip is looked through).

    Raises
    ------
    FormatDetectionError
        When no registered format recognises the input.
    """
    head = read_head(path)
    name = Path(path).name
    for reader in sorted(_load_readers().values(), key=lambda r: r.priority):
        if reader.sniff is not None and reader.sniff(head, name):
            return reader.name
    preview = head[:80].decode("utf-8", "backslashreplace")
    raise FormatDetectionError(
        f"{path}: could not recognise the format (first bytes: {preview!r}); "
        f"pass format= one of {sorted(_REGISTRY)}"
    )


def _resolve(path: PathLike, format: str) -> _Reader:
    readers = _load_readers()
    if format == "auto":
        format = sniff_format(path)
        log.info("%s: detected format %r", path, format)
    if format not in readers:
        raise ValueError(f"unknown format {format!r}; choose one of {sorted(readers)} or 'auto'")
    return readers[format]


def iter_read(
    path: PathLike,
    format: str = "auto",
    *,
    strict: bool = False,
    chunksize: int = 1_000_000,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """Read ``path`` as a stream of canonical chunks of at most about ``chunksize`` records.

    Each chunk carries the (growing) ``read_report`` in ``attrs``; it is complete once the
    iterator is exhausted. See :func:`read` for the parameters.
    """
    if chunksize <= 0:
        raise ValueError(f"chunksize must be positive, got {chunksize}")
    reader = _resolve(path, format)
    report = ReadReport(path=str(path), format=reader.name, strict=strict)
    for chunk in reader.func(path, report, chunksize=chunksize, **options):
        report.rows_produced += len(chunk)
        chunk.attrs["read_report"] = report
        yield chunk
    _warn_quarantine(report)


def read(
    path: PathLike,
    format: str = "auto",
    *,
    strict: bool = False,
    chunksize: int | None = None,
    **options: Any,
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """Read a telemetry file into the canonical connections frame.

    Parameters
    ----------
    path : str or path-like
        The input file (gzip-compressed inputs are recognised by their magic bytes).
    format : str, default "auto"
        A format name (see :func:`available_formats`) or ``"auto"`` to sniff it.
    strict : bool, default False
        Raise :class:`~t1046lab.exceptions.ParseError` on the first malformed record,
        naming the file and line or byte offset. Otherwise malformed records are
        quarantined, counted in the report, and a
        :class:`~t1046lab.exceptions.DataQualityWarning` says how many.
    chunksize : int, optional
        Return an iterator of canonical chunks instead of one frame, so memory stays
        bounded on large inputs.
    **options
        Passed to the format's reader.

    Returns
    -------
    DataFrame or iterator of DataFrame
        The canonical frame, with the :class:`ReadReport` in ``attrs["read_report"]``.

    Examples
    --------
    >>> conns = t1046lab.read("conn.log")                          # doctest: +SKIP
    >>> conns.attrs["read_report"].records_quarantined             # doctest: +SKIP
    0
    """
    if chunksize is not None:
        return iter_read(path, format, strict=strict, chunksize=chunksize, **options)
    chunks = list(iter_read(path, format, strict=strict, **options))
    report = chunks[0].attrs["read_report"] if chunks else None
    if not chunks:
        raise RuntimeError(f"reader for {path} yielded nothing")  # readers yield at least one chunk
    frame = chunks[0] if len(chunks) == 1 else _concat(chunks)
    frame.attrs = {"read_report": report}
    return frame


def _concat(chunks: list[pd.DataFrame]) -> pd.DataFrame:
    for c in chunks:
        c.attrs = {}
    return pd.concat(chunks, ignore_index=True)


def _warn_quarantine(report: ReadReport) -> None:
    if report.records_quarantined:
        worst = sorted(report.quarantine_reasons.items(), key=lambda kv: -kv[1])[:3]
        top = ", ".join(f"{r} ({n:,})" for r, n in worst)
        warnings.warn(
            f"{report.path}: {report.records_quarantined:,} of {report.records_seen:,} records "
            f"quarantined: {top}; see df.attrs['read_report']",
            DataQualityWarning,
            stacklevel=4,
        )
