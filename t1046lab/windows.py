"""Tumbling and sliding time windows over connection start times, vectorised.

Windows are aligned on the Unix epoch in UTC: a tumbling window of length ``W`` starts at
every multiple of ``W`` since 1970-01-01 00:00 UTC, so 5-minute windows start at :00, :05,
... and daily windows at midnight UTC whatever the data's first timestamp. A sliding window
of length ``W`` starting every ``S`` covers ``[k*S, k*S + W)`` for every integer ``k``;
an event at time ``t`` belongs to every such window with ``k*S <= t < k*S + W``, so to
``ceil(W / S)`` or ``floor(W / S)`` of them. Intervals are closed on the left: an event
exactly on a boundary belongs to the window that starts there.

All arithmetic is on int64 nanoseconds since the epoch (:func:`to_utc_ns`), with floor
division, so times before 1970 and across midnight need no special case.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["assign_windows", "expand_windows", "to_timedelta_ns", "to_utc_ns", "window_index"]

WindowLike = str | pd.Timedelta | _dt.timedelta | np.timedelta64


def to_timedelta_ns(value: WindowLike, *, name: str = "window") -> int:
    """Return a window length or slide (``"5min"``, ``Timedelta``, ``timedelta``) in nanoseconds.

    Raises
    ------
    ValueError
        If the value is not a positive duration.
    TypeError
        For a bare number (its unit would be a guess).
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        raise TypeError(f"{name} must be a duration such as '5min', not the bare number {value!r}")
    try:
        ns = int(pd.Timedelta(value).value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}={value!r} is not a duration such as '5min' or '1h'") from exc
    if ns <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return ns


def to_utc_ns(times: Any) -> np.ndarray:
    """Return event times as int64 nanoseconds since the epoch, in UTC.

    Timezone-aware values are converted to UTC; naive values are taken as UTC (the
    canonical frame is always UTC). Any resolution (s, ms, us, ns) is accepted.

    Raises
    ------
    ValueError
        If a time is missing (NaT): it cannot be placed in a window.
    """
    series = times if isinstance(times, pd.Series) else pd.Series(times)
    if len(series) == 0:
        return np.empty(0, dtype=np.int64)
    if not isinstance(series.dtype, pd.DatetimeTZDtype) and series.dtype.kind != "M":
        series = pd.to_datetime(series, utc=True)
    index = pd.DatetimeIndex(series)
    if index.unit != "ns":
        index = index.as_unit("ns")
    values = index.asi8  # UTC-based for tz-aware values, wall time (taken as UTC) for naive
    if index.hasnans:
        raise ValueError(f"{int(index.isna().sum())} event times are missing (NaT)")
    return values


def window_index(t_ns: np.ndarray, slide_ns: int) -> np.ndarray:
    """Index ``k`` of the latest window start ``k * slide_ns`` at or before each time."""
    return np.floor_divide(t_ns, slide_ns)


def expand_windows(
    t_ns: np.ndarray, window_ns: int, slide_ns: int | None = None, *, k_range: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pair every event with every window that contains it.

    Parameters
    ----------
    t_ns : ndarray of int64
        Event times in nanoseconds since the epoch.
    window_ns : int
        Window length in nanoseconds.
    slide_ns : int, optional
        Distance between window starts; ``None`` (or equal to ``window_ns``) for tumbling.
    k_range : (int, int), optional
        Keep only windows with index ``k`` in ``[lo, hi)``.

    Returns
    -------
    rows : ndarray of int64
        Position of the event in ``t_ns`` for each (event, window) pair.
    k : ndarray of int64
        Window index of each pair; the window starts at ``k * slide_ns``.
        Pairs come in blocks, one per offset, each block in event order.
    """
    slide_ns = window_ns if slide_ns is None else slide_ns
    if slide_ns > window_ns:
        raise ValueError("slide must not be longer than the window (events between windows would be lost)")
    k_last = np.floor_divide(t_ns, slide_ns)
    per_event = -(-window_ns // slide_ns)  # ceil: the most windows one event can fall in
    rows_parts: list[np.ndarray] = []
    k_parts: list[np.ndarray] = []
    all_rows = np.arange(len(t_ns), dtype=np.int64)
    for offset in range(per_event):
        k = k_last - offset
        keep = None
        if offset:
            keep = k * slide_ns + window_ns > t_ns
        if k_range is not None:
            inside = (k >= k_range[0]) & (k < k_range[1])
            keep = inside if keep is None else keep & inside
        if keep is None:
            rows_parts.append(all_rows)
            k_parts.append(k)
        else:
            rows_parts.append(all_rows[keep])
            k_parts.append(k[keep])
    if len(rows_parts) == 1:
        return rows_parts[0], k_parts[0]
    return np.concatenate(rows_parts), np.concatenate(k_parts)


def assign_windows(times: Any, window: WindowLike = "5min", slide: WindowLike | None = None) -> pd.DataFrame:
    """Assign events to tumbling (``slide=None``) or sliding windows.

    Parameters
    ----------
    times : Series or array-like of datetimes
        Event start times; naive times are taken as UTC.
    window : str or Timedelta, default "5min"
        Window length.
    slide : str or Timedelta, optional
        Distance between window starts for sliding windows; must not exceed ``window``.

    Returns
    -------
    DataFrame
        One row per (event, window) pair with columns ``row`` (position of the event in
        ``times``), ``window_start`` and ``window_end`` (UTC), ordered by window offset
        then event position. Tumbling windows give exactly one row per event.

    Examples
    --------
    >>> t = pd.Series(pd.to_datetime(["2024-01-01 00:04:59", "2024-01-01 00:05:00"], utc=True))
    >>> assign_windows(t, "5min")["window_start"].dt.strftime("%H:%M").tolist()
    ['00:00', '00:05']
    """
    window_ns = to_timedelta_ns(window)
    slide_ns = window_ns if slide is None else to_timedelta_ns(slide, name="slide")
    t_ns = to_utc_ns(times)
    rows, k = expand_windows(t_ns, window_ns, slide_ns)
    start = k * slide_ns
    return pd.DataFrame(
        {
            "row": rows,
            "window_start": pd.to_datetime(start, unit="ns", utc=True),
            "window_end": pd.to_datetime(start + window_ns, unit="ns", utc=True),
        }
    )
