"""Bundled datasets: list, load, datasheets that match the data, and the loader's errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

import t1046lab
from t1046lab import schema
from t1046lab.datasets import enterprise_plan, list_datasets, load_dataset
from t1046lab.datasets.registry import count_tables, data_dir, parse_count_tables
from t1046lab.datasets.simulate import BENIGN_CATEGORIES, SCAN_TYPES

BUNDLED = [name for name in list_datasets().query("source != 'public'")["name"]]


@pytest.fixture(scope="module")
def loaded():
    cache: dict[str, pd.DataFrame] = {}

    def get(name: str) -> pd.DataFrame:
        if name not in cache:
            cache[name] = load_dataset(name)
        return cache[name]

    return get


def test_listing():
    listing = list_datasets()
    assert list(listing.columns) == ["name", "description", "rows", "source", "labelled", "path"]
    assert "enterprise-week" in BUNDLED
    week = listing.set_index("name").loc["enterprise-week"]
    assert week["source"] == "simulated" and week["rows"] > 1_000_000 and "simulated week" in week["description"]
    assert set(listing["source"]) <= {"simulated", "lab", "bundled", "public"}
    public = listing[listing["source"] == "public"]
    assert set(public["name"]) == {"cicids2017", "unsw-nb15", "cidds-001"} and public["rows"].isna().all()
    assert not public["labelled"].any() and listing.set_index("name").loc["enterprise-week", "labelled"]
    # Every directory of data/ with a connections file is listed.
    on_disk = sorted(p.name for p in data_dir().iterdir() if (p / "connections.parquet").is_file())
    assert on_disk == sorted(BUNDLED)


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_dataset_loads_and_matches_its_datasheet(name, loaded):
    frame = loaded(name)
    schema.validate(frame)
    assert frame.attrs["dataset"] == name and frame.attrs["read_report"].balanced
    assert len(frame) == int(list_datasets().set_index("name").loc[name, "rows"])
    sheet = (data_dir() / name / "README.md").read_text(encoding="utf-8")
    tables = parse_count_tables(sheet)
    assert "label" in tables, f"{name}: the datasheet has no '| label | rows |' count table"
    for column, counts in tables.items():
        actual = {str(k): int(v) for k, v in frame[column].astype("object").fillna("(none)").value_counts().items()}
        if "(none)" not in counts:
            actual.pop("(none)", None)  # a datasheet may leave out the rows a column does not apply to
        assert actual == counts, f"{name}: datasheet counts of {column!r} differ from the data"


@pytest.mark.slow
def test_enterprise_week_holds_every_scan_type_and_benign_category(loaded):
    frame = loaded("enterprise-week")
    assert set(frame["scan_type"].dropna()) == set(SCAN_TYPES)
    assert set(frame["benign_category"].dropna()) == set(BENIGN_CATEGORIES)
    assert set(frame["label"]) == {"scan", "benign"}
    days = (frame["event_start"].astype("int64") // 86_400_000_000_000).nunique()
    assert days == 7
    assert frame["scan_id"].str.startswith("sanctioned-").sum() == (frame["benign_category"] == "sanctioned_scanner").sum()


@pytest.mark.slow
def test_enterprise_week_is_what_its_recipe_makes(loaded):
    """One day regenerated from make.py's parameters equals that day of the bundled file."""
    spec = importlib.util.spec_from_file_location("make_enterprise_week", data_dir() / "enterprise-week" / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    plan = enterprise_plan(**make.PARAMS)
    tuesday = plan.day_frame(1)
    frame = loaded("enterprise-week")
    start = pd.Timestamp(make.PARAMS["start"], tz="UTC") + pd.Timedelta(days=1)
    bundled = frame[(frame["event_start"] >= start) & (frame["event_start"] < start + pd.Timedelta(days=1))].reset_index(drop=True)
    assert len(bundled) == len(tuesday)
    for column in tuesday.columns:
        a, b = tuesday[column], bundled[column]
        if isinstance(a.dtype, pd.CategoricalDtype):
            np.testing.assert_array_equal(a.cat.codes.to_numpy(), b.cat.codes.to_numpy(), err_msg=column)
        else:
            pd.testing.assert_series_equal(a.astype(object), b.astype(object), obj=column)


def test_count_tables_round_trip():
    frame = pd.DataFrame({"label": ["scan", "benign", "benign"], "scan_type": ["vertical", None, None]})
    text = "# x\n\n" + count_tables(frame) + "\n\ntrailing text\n"
    assert parse_count_tables(text) == {"label": {"benign": 2, "scan": 1}, "scan_type": {"(none)": 2, "vertical": 1}}


def test_unknown_names_list_the_available_ones():
    with pytest.raises(KeyError, match="unknown dataset 'no-such-data'.*enterprise-week"):
        load_dataset("no-such-data")
    with pytest.raises(KeyError, match="public dataset that is not bundled.*format='cic'"):
        load_dataset("cicids2017")


def test_top_level_names():
    assert t1046lab.load_dataset is load_dataset and t1046lab.list_datasets is list_datasets
