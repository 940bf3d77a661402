"""Streaming gives exactly the in-memory result, in bounded memory, or says why it cannot."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import t1046lab
from t1046lab.datasets import simulate_enterprise
from t1046lab.exceptions import DataQualityWarning
from t1046lab.features import window_features
from t1046lab.scale.streaming import (
    LateRowError,
    StreamingWindowFeatures,
    iter_chunks,
    iter_window_features,
    stream_detect,
    stream_window_features,
)


@pytest.fixture(scope="module")
def day() -> pd.DataFrame:
    """One simulated day and a half: benign traffic of 60 hosts, every scan type."""
    conns = t1046lab.load_dataset("enterprise-week")
    first = conns["event_start"].min().normalize()
    return conns[conns["event_start"] < first + pd.Timedelta("36h")].reset_index(drop=True)


def _slices(frame: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + size] for i in range(0, len(frame), size)]


@pytest.mark.parametrize(
    ("kwargs", "size"),
    [
        ({}, 100_000),
        ({}, 7_919),  # chunks much shorter than a window
        ({"window": "10min", "slide": "2min"}, 50_000),
        ({"by": "destination_ip", "features": "minimal"}, 123_457),
        ({"window": "1h", "features": ["distinct_ports", "port_entropy", "interarrival_cv"]}, 30_000),
    ],
)
def test_streamed_window_features_equal_in_memory(day, kwargs, size):
    expected = window_features(day, **kwargs)
    got = stream_window_features(iter_chunks(day, chunksize=size), **kwargs)
    # bit for bit: peers are numbered by address, so float sums run in the same order
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    # the public function streams an iterator of chunks by itself
    pd.testing.assert_frame_equal(window_features(iter(_slices(day, size)), **kwargs), expected, check_exact=True)


def test_carry_holds_only_open_windows(day):
    acc = StreamingWindowFeatures(window="5min")
    emitted = 0
    seen = pd.Series([], dtype=day["event_start"].dtype)
    for chunk in iter_chunks(day, chunksize=20_000):
        emitted += len(acc.update(chunk))
        seen = pd.concat([seen, chunk["event_start"]], ignore_index=True)
        # exactly the rows of the window still open are carried, not the data seen
        assert acc.carried_rows_ == int((seen >= seen.max().floor("5min")).sum())
    assert acc.carried_rows_ < 50_000
    emitted += len(acc.flush())
    assert emitted == acc.windows_emitted_ == len(window_features(day))


def test_out_of_order_rows_raise_unless_within_lateness(day):
    rng = np.random.default_rng(0)
    part = day.iloc[:60_000]
    # rows jittered by up to 90 s, as flow logs written at flow end are
    jitter = pd.to_timedelta(rng.integers(0, 90_000, len(part)), unit="ms")
    shuffled = part.assign(event_start=part["event_start"] + jitter)
    expected = window_features(shuffled)
    with pytest.raises(LateRowError, match="out of time order"):
        stream_window_features(_slices(shuffled.sort_values("event_start").iloc[::-1], 5_000))
    got = stream_window_features(iter(_slices(shuffled, 5_000)), lateness="2min")
    pd.testing.assert_frame_equal(got, expected)


def test_rows_without_entity_are_counted_like_in_memory(day):
    part = day.iloc[:40_000].copy()
    part.loc[part.index[::1000], "source_ip"] = pd.NA
    with pytest.warns(DataQualityWarning, match="left out 40 of 40000"):
        expected = window_features(part)
    with pytest.warns(DataQualityWarning, match="left out 40 of 40,000 rows"):
        got = stream_window_features(iter(_slices(part, 9_000)))
    pd.testing.assert_frame_equal(got, expected)


def test_history_features_cannot_stream():
    with pytest.raises(ValueError, match="whole history"):
        StreamingWindowFeatures(features=["new_peer_ratio"])


def test_iter_window_features_yields_batches_as_windows_close(day):
    batches = list(iter_window_features(iter_chunks(day, chunksize=50_000), window="1h"))
    assert len(batches) >= len(day) // 50_000
    starts = [b.index.get_level_values("window_start") for b in batches if len(b)]
    # each batch holds later windows than the one before: memory stays bounded
    assert all(a.max() < b.min() for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize(
    ("detector", "params"),
    [
        ("port-entropy", {}),
        ("port-entropy", {"baseline": ("2026-01-05T00:00Z", "2026-01-05T12:00Z")}),
        ("iforest", {"n_estimators": 25}),
        ("zeek-scan", {}),
        ("zeek-scan", {"all_windows": True}),
        ("simple-scan", {}),
        ("trw", {"all_windows": True}),
    ],
)
def test_stream_detect_equals_detect(day, tmp_path, detector, params):
    expected = t1046lab.detect(day, detector, **params)
    assert len(expected)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        got = stream_detect(iter_chunks(day, chunksize=61_000), detector, n_buckets=5, spill_dir=tmp_path, **params)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert list(tmp_path.iterdir()) == []  # spilled buckets are removed


def test_stream_detect_with_a_fitted_model_scores_batch_by_batch(day):
    from t1046lab.detectors.port_entropy import PortEntropyDetector

    base = window_features(day.iloc[:300_000], features=["distinct_ports", "port_entropy", "distinct_peers", "peer_entropy"])
    model = PortEntropyDetector(features=tuple(base.columns)).fit(base)
    expected = t1046lab.detect(day, "port-entropy", model=model, features=list(base.columns))
    got = t1046lab.detect(iter_chunks(day, chunksize=80_000), "port-entropy", model=model, features=list(base.columns))
    assert expected["alert"].any()
    pd.testing.assert_frame_equal(got, expected)


def test_detectors_without_a_streaming_form_say_so(day):
    with pytest.raises(ValueError, match="no exact streaming form"):
        stream_detect(iter_chunks(day.iloc[:1000], chunksize=500), "snort-portscan")


def test_day_partitioned_dataset_streams_in_order(tmp_path):
    root = simulate_enterprise(n_hosts=30, days=2, scans=["vertical", "horizontal"], random_state=3, out=tmp_path / "ds")
    in_memory = simulate_enterprise(n_hosts=30, days=2, scans=["vertical", "horizontal"], random_state=3)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert files == ["day=2026-01-05/part-0.parquet", "day=2026-01-06/part-0.parquet"]
    assert (root / "_simulation.json").exists()
    chunks = list(iter_chunks(root, chunksize=50_000, columns=["event_start", "source_ip", "destination_ip", "destination_port"]))
    assert sum(map(len, chunks)) == len(in_memory)
    assert set(chunks[0].columns) == {"event_start", "source_ip", "destination_ip", "destination_port"}
    assert chunks[0]["destination_port"].dtype == "Int32"
    streamed = pd.concat(chunks, ignore_index=True)
    assert streamed["event_start"].is_monotonic_increasing
    pd.testing.assert_series_equal(streamed["source_ip"], in_memory["source_ip"])
    pd.testing.assert_frame_equal(
        stream_detect(root, "port-entropy", chunksize=40_000),
        t1046lab.detect(in_memory, "port-entropy"),
    )


def test_sources_are_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        list(iter_chunks(tmp_path / "missing.parquet"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no .parquet"):
        list(iter_chunks(tmp_path / "empty"))
    with pytest.raises(TypeError, match="iterable of DataFrames"):
        list(iter_chunks([1, 2]))


def test_cli_streams_a_dataset_directory_with_the_in_memory_alerts(tmp_path, capsys):
    from t1046lab.cli import main

    root = simulate_enterprise(n_hosts=30, days=1, scans=["vertical"], random_state=5, out=tmp_path / "ds")
    single = tmp_path / "one.parquet"
    simulate_enterprise(n_hosts=30, days=1, scans=["vertical"], random_state=5).to_parquet(single)
    streamed, in_memory = tmp_path / "streamed.csv", tmp_path / "in_memory.csv"
    # a directory streams by default (auto); a small file is read into memory
    assert main(["detect", str(root), "-d", "zeek-scan", "--chunksize", "30000", "-o", str(streamed)]) == 0
    out = capsys.readouterr().out
    assert "connections scored" in out and "zeek-scan:" in out
    assert main(["detect", str(single), "-d", "zeek-scan", "--engine", "pandas", "-o", str(in_memory)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(streamed), pd.read_csv(in_memory))
    assert main(["detect", str(single), "-d", "snort-portscan", "--engine", "stream"]) != 0
    assert "cannot stream exactly" in capsys.readouterr().err


def test_a_bad_file_in_a_dataset_is_named_and_reading_stops_cleanly(tmp_path):
    root = simulate_enterprise(n_hosts=30, days=2, scans=None, random_state=1, out=tmp_path / "ds")
    bad = root / "day=2026-01-07"
    bad.mkdir()
    pd.DataFrame({"when": [1, 2]}).to_parquet(bad / "part-0.parquet")
    with pytest.raises(t1046lab.schema.SchemaError, match="day=2026-01-07.*event_start"):
        for _ in iter_chunks(root, chunksize=10_000):
            pass
    # leaving early stops the background reader instead of hanging
    chunks = iter_chunks(root, chunksize=1_000)
    first = next(chunks)
    chunks.close()
    assert len(first) == 1_000


def test_cli_dask_engine_gives_the_in_memory_alerts(tmp_path, capsys):
    pytest.importorskip("distributed")
    from t1046lab.cli import main

    root = simulate_enterprise(n_hosts=30, days=1, scans=["horizontal"], random_state=6, out=tmp_path / "ds")
    single = tmp_path / "one.parquet"
    simulate_enterprise(n_hosts=30, days=1, scans=["horizontal"], random_state=6).to_parquet(single)
    on_dask, in_memory = tmp_path / "dask.csv", tmp_path / "memory.csv"
    assert main(["detect", str(root), "-d", "trw", "--engine", "dask", "-o", str(on_dask)]) == 0
    assert main(["detect", str(single), "-d", "trw", "--engine", "pandas", "-o", str(in_memory)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(on_dask), pd.read_csv(in_memory))
