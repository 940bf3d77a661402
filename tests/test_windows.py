"""Tumbling and sliding window assignment, checked against a per-event brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from t1046lab.windows import assign_windows, expand_windows, to_timedelta_ns, to_utc_ns


def _utc(*stamps: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(stamps), utc=True, format="ISO8601"))


def _brute_force(times: pd.Series, window: str, slide: str) -> set[tuple[int, pd.Timestamp]]:
    """Every (row, window start) with start <= t < start + window, by walking back from floor(t)."""
    w, s = pd.Timedelta(window), pd.Timedelta(slide)
    pairs = set()
    for row, t in enumerate(times):
        start = t.floor(s)
        while start + w > t:
            pairs.add((row, start))
            start -= s
    return pairs


def _pairs(frame: pd.DataFrame) -> set[tuple[int, pd.Timestamp]]:
    return set(zip(frame["row"].tolist(), frame["window_start"].tolist()))


def test_tumbling_boundaries_are_closed_on_the_left():
    t = _utc("2024-03-01 00:04:59.999999999", "2024-03-01 00:05:00", "2024-03-01 00:00:00", "2024-03-01 00:09:59")
    out = assign_windows(t, "5min")
    assert out["row"].tolist() == [0, 1, 2, 3]
    assert out["window_start"].dt.strftime("%H:%M:%S").tolist() == ["00:00:00", "00:05:00", "00:00:00", "00:05:00"]
    assert (out["window_end"] - out["window_start"] == pd.Timedelta("5min")).all()
    assert str(out["window_start"].dt.tz) == "UTC"


def test_tumbling_across_midnight_and_new_year():
    t = _utc("2023-12-31 23:58:00", "2024-01-01 00:02:00", "2023-12-31 23:59:59.5")
    out = assign_windows(t, "5min")
    assert out["window_start"].tolist() == [
        pd.Timestamp("2023-12-31 23:55", tz="UTC"),
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2023-12-31 23:55", tz="UTC"),
    ]
    daily = assign_windows(t, "1D")
    assert daily["window_start"].dt.strftime("%Y-%m-%d").tolist() == ["2023-12-31", "2024-01-01", "2023-12-31"]


def test_sliding_windows_across_midnight():
    t = _utc("2024-01-01 00:10:00")
    out = assign_windows(t, "1h", slide="15min")
    starts = sorted(out["window_start"].dt.strftime("%d %H:%M"))
    assert starts == ["01 00:00", "31 23:15", "31 23:30", "31 23:45"]


@pytest.mark.parametrize(("window", "slide"), [("5min", "1min"), ("5min", "2min"), ("1h", "7min"), ("90s", "90s")])
def test_sliding_matches_brute_force(window, slide):
    rng = np.random.default_rng(3)
    base = pd.Timestamp("2024-01-01 23:40", tz="UTC").value
    ns = base + rng.integers(0, 3600 * 10**9, 300)
    ns[:20] = base + np.arange(20) * 60 * 10**9  # exactly on minute boundaries
    times = pd.Series(pd.to_datetime(ns, unit="ns", utc=True))
    out = assign_windows(times, window, slide=slide)
    expected = _brute_force(times, window, slide)
    assert _pairs(out) == expected
    assert len(out) == len(expected)  # no duplicates


def test_timezones_and_naive_times_are_utc():
    aware = pd.Series(pd.to_datetime(["2024-06-01 20:03:00"]).tz_localize("America/New_York"))
    out = assign_windows(aware, "1h")
    assert out["window_start"].iloc[0] == pd.Timestamp("2024-06-02 00:00", tz="UTC")
    naive = pd.Series(pd.to_datetime(["2024-06-02 00:03:00"]))
    assert assign_windows(naive, "1h")["window_start"].iloc[0] == pd.Timestamp("2024-06-02 00:00", tz="UTC")
    micro = pd.Series(pd.to_datetime(["2024-06-02 00:03:00"], utc=True)).dt.as_unit("us")
    assert to_utc_ns(micro)[0] == pd.Timestamp("2024-06-02 00:03:00", tz="UTC").value


def test_times_before_1970_floor_down():
    t = _utc("1969-12-31 23:59:59")
    assert assign_windows(t, "5min")["window_start"].iloc[0] == pd.Timestamp("1969-12-31 23:55", tz="UTC")


def test_expand_windows_respects_k_range():
    t = np.array([0, 60, 299, 300, 601], dtype=np.int64) * 10**9
    rows, k = expand_windows(t, 300 * 10**9, 60 * 10**9, k_range=(1, 5))
    assert set(zip(rows.tolist(), k.tolist())) == {
        (p, kk) for p, ts in enumerate(t.tolist()) for kk in range(1, 5) if kk * 60e9 <= ts < kk * 60e9 + 300e9
    }


def test_bad_windows_raise():
    with pytest.raises(ValueError, match="duration"):
        to_timedelta_ns("five minutes")
    with pytest.raises(ValueError, match="positive"):
        to_timedelta_ns("0s")
    with pytest.raises(TypeError, match="bare number"):
        to_timedelta_ns(300)
    with pytest.raises(ValueError, match="slide"):
        assign_windows(_utc("2024-01-01"), "1min", slide="5min")
    with pytest.raises(ValueError, match="missing"):
        to_utc_ns(pd.Series(pd.to_datetime(["2024-01-01", None], utc=True)))


def test_empty_input():
    out = assign_windows(pd.Series([], dtype="datetime64[ns, UTC]"), "5min", slide="1min")
    assert len(out) == 0 and list(out.columns) == ["row", "window_start", "window_end"]
