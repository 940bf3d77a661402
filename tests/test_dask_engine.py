"""The Dask path on a two-worker LocalCluster: same features and alerts as pandas, row for row."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import dask
import dask.dataframe as dd

from t1046lab.datasets import simulate_enterprise
from t1046lab.exceptions import DataQualityWarning
from t1046lab.detectors import detect
from t1046lab.detectors.iforest import IsolationForestDetector
from t1046lab.features import window_features
from t1046lab.scale.dask_engine import (
    ROW_ID,
    detect_dask,
    plan_layout,
    read_parquet,
    window_features_dask,
)

LOGGER = "t1046lab.scale.dask_engine"


@pytest.fixture(scope="module")
def client():
    # The task-based shuffle starts faster than p2p (Dask's default) on data this small;
    # the engine takes whichever method Dask is configured with.
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with dask.config.set({"dataframe.shuffle.method": "tasks"}), distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def conns() -> pd.DataFrame:
    # 24 hours of 30 simulated hosts across a midnight (about 0.2M connections, scans of
    # several types included).
    sim = simulate_enterprise(n_hosts=30, days=2, random_state=0)
    start = sim["event_start"].min().normalize() + pd.Timedelta("12h")
    keep = (sim["event_start"] >= start) & (sim["event_start"] < start + pd.Timedelta("1D"))
    return sim[keep].reset_index(drop=True)


@pytest.fixture(scope="module")
def day_dir(conns, tmp_path_factory):
    """The connections partitioned by UTC day, hive style, in files of six hours each
    (``day=YYYY-MM-DD/part-N.parquet``): four files, two per day."""
    root = tmp_path_factory.mktemp("conns")
    day = conns["event_start"].dt.strftime("%Y-%m-%d")
    quarter = conns["event_start"].dt.hour // 6
    for (name, q), rows in conns.groupby([day, quarter], sort=True):
        (root / f"day={name}").mkdir(exist_ok=True)
        rows.to_parquet(root / f"day={name}" / f"part-{int(q)}.parquet", index=False)
    return root


def layouts(caplog) -> list[str]:
    """The layouts window_features_dask logged, one per call: "map", "boundary" or "shuffle"."""
    found = []
    for r in caplog.records:
        text = r.getMessage()
        if r.name == LOGGER and text.startswith("window_features_dask"):
            found.append("boundary" if "boundary rows" in text else "map" if "mapped per partition" in text else "shuffle")
    return found


@pytest.fixture(scope="module")
def day_conns(day_dir) -> pd.DataFrame:
    """What pandas sees of the day files: the same rows, in file order."""
    return read_parquet(day_dir).compute().reset_index(drop=True)


def test_day_partitions_are_read_lazily_without_the_hive_column(day_dir, conns, day_conns):
    ddf = read_parquet(day_dir)
    assert ddf.npartitions == len(list(day_dir.glob("day=*/part-*.parquet"))) == 4
    assert len(list(day_dir.glob("day=*"))) == 2
    assert "day" not in ddf.columns
    assert list(ddf.columns) == list(conns.columns)
    assert len(day_conns) == len(conns)


def test_day_partitions_map_without_shuffle(client, day_dir, conns, caplog):
    ddf = read_parquet(day_dir)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        lazy = window_features(ddf)  # the dispatch in features.window_features
    assert layouts(caplog) == ["map"]
    assert isinstance(lazy, dd.DataFrame)
    assert lazy.optimize().npartitions >= 2
    got = lazy.compute().sort_index()
    expected = window_features(conns)
    assert len(expected) > 1000
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_random_partitions_shuffle_on_entity(client, conns, caplog):
    # Rows in random order (a slice, to keep the graph that carries them small).
    shuffled = conns.iloc[:100_000].sample(frac=1.0, random_state=1)
    ddf = dd.from_pandas(shuffled, npartitions=4, sort=False)
    assert plan_layout(ddf) == "shuffle"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        got = window_features_dask(ddf, by="destination_ip", features="minimal").compute()
    assert layouts(caplog) == ["shuffle"]
    assert ROW_ID not in got.columns
    pd.testing.assert_frame_equal(got.sort_index(), window_features(shuffled, by="destination_ip", features="minimal"), check_exact=True)


def test_sliding_windows_across_day_boundaries(client, day_dir, day_conns, caplog):
    ddf = read_parquet(day_dir)
    # 10-minute windows every 5 minutes: the window starting at 23:55 holds rows of two days.
    with caplog.at_level(logging.INFO, logger=LOGGER):
        got = window_features_dask(ddf, window="10min", slide="5min").compute().sort_index()
    assert layouts(caplog) == ["boundary"]
    expected = window_features(day_conns, window="10min", slide="5min")
    assert (expected.index.get_level_values("window_start").strftime("%H:%M") == "23:55").any()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_windows_that_divide_a_day_need_no_shuffle(client, day_dir, day_conns, caplog):
    ddf = read_parquet(day_dir)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for window in ("1h", "7h"):  # 7 h windows do not divide a day: one spans each midnight
            got = window_features_dask(ddf, window=window, features="minimal").compute().sort_index()
            pd.testing.assert_frame_equal(got, window_features(day_conns, window=window, features="minimal"), check_exact=True)
    assert layouts(caplog) == ["map", "boundary"]


def test_time_ordered_partitions_cut_inside_windows(client, day_conns, caplog):
    # Contiguous row ranges of time-sorted data (what row-group splits of a day file give):
    # windows straddle the cuts, and only their rows move to a neighbour.
    part = day_conns.iloc[:150_000]
    ddf = dd.from_pandas(part, npartitions=5, sort=True)
    assert plan_layout(ddf, window="15min", features="minimal") == "boundary"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        got = window_features_dask(ddf, window="15min", features="minimal").compute().sort_index()
    assert layouts(caplog) == ["boundary"]
    pd.testing.assert_frame_equal(got, window_features(part, window="15min", features="minimal"), check_exact=True)


def test_history_features_shuffle_even_for_day_partitions(client, day_dir, caplog):
    # First contact and new peers look at an entity's whole history: only an entity split is exact.
    # The second day's morning, in two time-ordered parts.
    day = read_parquet(sorted(day_dir.iterdir())[1]).compute()
    halves = dd.from_pandas(day, npartitions=2, sort=True)
    names = ["conn_count", "first_contact_failure_ratio", "new_peer_ratio"]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        got = window_features_dask(halves, features=names).compute().sort_index()
    assert layouts(caplog) == ["shuffle"]
    expected = window_features(day, features=names)
    assert (expected["new_peer_ratio"] < 1).any() and (expected["new_peer_ratio"] > 0).any()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


@pytest.mark.parametrize("detector", ["port-entropy", "zeek-scan", "trw"])
def test_detect_dask_equals_pandas(client, day_dir, day_conns, detector):
    expected = detect(day_conns, detector, all_windows=True)
    got = detect_dask(str(day_dir), detector, all_windows=True)
    assert expected["alert"].any() and not expected["alert"].all()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_window_detectors_with_a_baseline_period_and_roles(client, day_dir, day_conns):
    # baseline=(start, end) is cut from the Dask data itself; role-baseline infers roles on the
    # gathered features; the destination view windows by target.
    start = day_conns["event_start"].min()
    cases = [
        ("port-entropy", {"baseline": (start, start + pd.Timedelta("6h")), "by": "destination_ip", "window": "15min"}),
        ("role-baseline", {}),
    ]
    for detector, params in cases:
        expected = detect(day_conns, detector, all_windows=True, **params)
        got = detect_dask(read_parquet(day_dir), detector, all_windows=True, **params)
        assert len(expected) > 100
        pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_detect_dispatches_a_dask_frame(client, day_dir, day_conns):
    got = detect(read_parquet(day_dir), "trw", after_benign="stop")
    expected = detect(day_conns, "trw", after_benign="stop")
    assert expected["alert"].any()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_iforest_self_fit(client, day_dir, day_conns):
    params = {"n_estimators": 20, "random_state": 0}
    expected = detect(day_conns, "iforest", **params)
    got = detect_dask(read_parquet(day_dir), "iforest", **params)
    assert expected["alert"].any()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_iforest_broadcast_model_on_a_scheduler_address(client, day_dir, day_conns):
    # Fit on the first day's features; the fitted model is shipped to the workers once and
    # each partition of features is scored there.
    first = day_conns[day_conns["event_start"] < day_conns["event_start"].min().normalize() + pd.Timedelta("1D")]
    columns = list(IsolationForestDetector().features)
    model = IsolationForestDetector(n_estimators=20, random_state=0).fit(window_features(first, features=columns))
    expected = detect(day_conns, "iforest", model=model, all_windows=True)
    got = detect_dask(str(day_dir), "iforest", model=model, all_windows=True, scheduler=client.scheduler.address)
    assert expected["alert"].any() and not expected["alert"].all()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


@pytest.mark.parametrize("detector", ["snort-portscan", "ensemble"])
def test_detectors_without_a_partition_key_refuse(client, day_dir, detector):
    with pytest.raises(ValueError, match="cannot run on Dask"):
        detect_dask(str(day_dir), detector)


def test_empty_and_bad_input(client, day_conns):
    empty = dd.from_pandas(day_conns.iloc[:0], npartitions=1)
    assert window_features_dask(empty).compute().empty
    assert detect_dask(empty, "port-entropy").empty
    with pytest.raises(TypeError, match="detect\\(\\)"):
        detect_dask(day_conns, "trw")
    with pytest.raises(ValueError, match="lacks"):
        window_features_dask(dd.from_pandas(day_conns[["event_start", "source_ip"]], npartitions=1), features="default")
    with pytest.raises(FileNotFoundError):
        detect_dask("/nonexistent/conns", "trw")
    assert np.isfinite(window_features_dask(dd.from_pandas(day_conns.head(500), npartitions=2)).compute().to_numpy()).all()


def test_rows_left_out_on_workers_are_reported_on_the_client(client, day_conns):
    holes = day_conns.copy()
    holes.loc[holes.index[::500], "source_ip"] = pd.NA
    n_missing = int(holes["source_ip"].isna().sum())
    with pytest.warns(DataQualityWarning, match=f"left out {n_missing:,} rows without source_ip"):
        got = detect_dask(dd.from_pandas(holes, npartitions=4), "port-entropy")
    with pytest.warns(DataQualityWarning):
        expected = detect(holes, "port-entropy")
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
