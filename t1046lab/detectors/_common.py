"""Shared pieces of the sequential detectors: input checks, time and CIDR helpers, and
vectorised group-wise primitives over frames sorted by (group, time)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import _ip
from ..schema import SchemaError

__all__ = [
    "NEEDED",
    "check_conns",
    "to_seconds",
    "positive_int",
    "ns_times",
    "parse_networks",
    "in_networks",
    "group_starts",
    "group_cumsum",
    "window_chain",
    "fmt_span",
    "fmt_time",
    "ts_from_ns",
]

NEEDED = ("event_start", "source_ip", "destination_ip", "destination_port", "network_transport", "conn_outcome")


def check_conns(conns: Any, needed: Sequence[str] = NEEDED) -> pd.DataFrame:
    """Check that ``conns`` is a frame with the canonical columns a detector reads."""
    if not isinstance(conns, pd.DataFrame):
        raise TypeError(f"detectors take a canonical connections DataFrame, got {type(conns).__name__}")
    missing = [c for c in needed if c not in conns.columns]
    if missing:
        raise SchemaError([f"missing columns {missing} (build the frame with t1046lab.read or schema.conform)"])
    if len(conns) and conns["event_start"].isna().any():
        raise SchemaError([f"column 'event_start' has {int(conns['event_start'].isna().sum())} missing values"])
    return conns


def to_seconds(value: Any, name: str) -> float:
    """A duration parameter (``"5min"``, ``"1h"``, ``90``, a ``Timedelta``) in seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a duration such as '5min' or a number of seconds, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        seconds = float(value)
    else:
        try:
            seconds = pd.Timedelta(value).total_seconds()
        except (ValueError, TypeError):
            raise ValueError(f"{name} must be a duration such as '5min' or a number of seconds, got {value!r}") from None
    if not np.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds


def positive_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """An integer threshold parameter, validated."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or float(value) != int(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '>= 1'}, got {value!r}")
    return int(value)


def ns_times(series: pd.Series) -> np.ndarray:
    """UTC nanoseconds since the Unix epoch, as int64."""
    values = pd.to_datetime(series, utc=True)
    return values.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]").view("int64")


def parse_networks(nets: Any, name: str) -> list[Any]:
    """A list of CIDRs (a string with commas or spaces, or an iterable); ``None`` gives ``[]``."""
    if nets is None:
        return []
    if isinstance(nets, str):
        nets = [n for n in nets.replace(",", " ").split() if n]
    return _ip.parse_networks(nets, what=f"{name}:")


def in_networks(ips: pd.Series | np.ndarray, nets: Iterable[Any]) -> np.ndarray:
    """Boolean array: is each address inside one of ``nets``? (see :mod:`t1046lab._ip`)."""
    nets = list(nets)
    if not nets:
        return np.zeros(len(ips), dtype=bool)
    return _ip.in_networks(pd.Series(np.asarray(ips, dtype=object)), nets)


def group_starts(groups: np.ndarray) -> np.ndarray:
    """For rows sorted by group code: True where a new group begins."""
    starts = np.ones(len(groups), dtype=bool)
    if len(groups) > 1:
        starts[1:] = groups[1:] != groups[:-1]
    return starts


def _start_index(starts: np.ndarray) -> np.ndarray:
    return np.maximum.accumulate(np.where(starts, np.arange(len(starts)), 0))


def group_cumsum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Running sum of ``values`` restarting where ``starts`` is True (rows sorted by group)."""
    values = np.asarray(values)
    if len(values) == 0:
        return values.astype(np.int64 if values.dtype.kind in "biu" else float)
    acc = np.cumsum(values, dtype=np.int64 if values.dtype.kind in "biu" else float)
    first = _start_index(starts)
    return acc - acc[first] + values[first]


def window_chain(groups: np.ndarray, times: np.ndarray, length: int) -> np.ndarray:
    """Window starts of a "restart at the first event after expiry" window, per group.

    Rows are sorted by (group, time) and ``times`` are integers. A window opens at a group's
    first row and covers ``[t0, t0 + length]``; the next opens at the first row after it
    (Snort's ``ps_proto_update_window``). Returns a boolean array marking window-opening rows.

    The chain is path dependent, so it is followed one window at a time, but for every group
    at once: the loop runs (most windows in one group) times, each step vectorised.
    """
    n = len(times)
    opens = np.zeros(n, dtype=bool)
    if n == 0:
        return opens
    times = np.asarray(times, dtype=np.int64)
    tmin = int(times.min())
    rel = times - tmin
    stride = int(rel.max()) + int(length) + 2
    key = groups.astype(np.int64) * stride + rel
    nxt = np.searchsorted(key, key + int(length), side="right")
    starts = group_starts(groups)
    end = np.empty(n, dtype=np.int64)  # one past the last row of each row's group
    boundaries = np.append(np.flatnonzero(starts), n)
    sizes = np.diff(boundaries)
    end[:] = np.repeat(boundaries[1:], sizes)
    active = np.flatnonzero(starts)
    while len(active):
        opens[active] = True
        following = nxt[active]
        active = following[following < end[active]]
    return opens


def fmt_span(seconds: float) -> str:
    """A duration like Zeek's ``duration_to_mins_secs``: ``3m10s``, or ``1h02m`` beyond an hour."""
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt_time(ns: int) -> str:
    """UTC time of day (with date) for explanations."""
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


_NAT = np.iinfo(np.int64).min


def ts_from_ns(values: Any) -> pd.DatetimeIndex:
    """Nullable int64 nanoseconds (NA allowed) to UTC timestamps, without a float round trip."""
    series = pd.Series(values)
    arr = series.array if isinstance(series.dtype, pd.Int64Dtype) else pd.array(series.to_numpy(dtype=object), dtype="Int64")
    return pd.to_datetime(arr.to_numpy(dtype="int64", na_value=_NAT), unit="ns", utc=True)
