"""The canonical schema: dtypes, validation messages, ECS and OCSF export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from t1046lab import schema


def _frame(outcomes=("established", "rejected", "no_reply", "denied")) -> pd.DataFrame:
    n = len(outcomes)
    return schema.conform(
        {
            "event_start": np.arange(n, dtype="int64") * 1_000_000_000 + 1_700_000_000_000_000_000,
            "event_duration_s": np.linspace(0, 1, n),
            "source_ip": ["10.0.0.1"] * n,
            "source_port": [40000 + i for i in range(n)],
            "destination_ip": ["10.0.0.2", "10.0.0.3", "2001:db8::1", "10.0.0.5"][:n],
            "destination_port": [22, 23, 80, 443][:n],
            "network_transport": ["tcp"] * n,
            "conn_outcome": list(outcomes),
            "source_packets": [3, 1, 1, 1][:n],
        },
        log_format="zeek",
    )


def test_conform_gives_canonical_dtypes_in_order():
    df = _frame()
    assert list(df.columns) == list(schema.CORE_COLUMNS)
    for name, dtype in schema.CORE_COLUMNS.items():
        assert df[name].dtype == dtype, name
    assert df["policy_action"].eq("unknown").all()
    assert df["source_bytes"].isna().all()
    schema.validate(df)


def test_conform_rejects_unknown_category_values():
    with pytest.raises(schema.SchemaError, match="conn_outcome.*'opened'"):
        schema.conform({"conn_outcome": ["opened"], "event_start": [0]}, log_format="zeek")


def test_validate_lists_every_problem():
    df = _frame().drop(columns=["log_format"])
    df["destination_port"] = df["destination_port"].astype("float64")
    with pytest.raises(schema.SchemaError) as err:
        schema.validate(df)
    assert "missing columns: ['log_format']" in str(err.value)
    assert "'destination_port' has dtype float64, expected Int32" in str(err.value)
    assert len(err.value.problems) == 2


def test_validate_checks_ranges_and_addresses():
    df = _frame()
    df.loc[1, "destination_port"] = 70000
    with pytest.raises(schema.SchemaError, match="1 values outside 0-65535"):
        schema.validate(df)
    df = _frame()
    df["source_ip"] = pd.array(["10.0.0.1", "not-an-ip", "10.0.0.1", "10.0.0.1"], dtype="string")
    schema.validate(df)  # addresses are not parsed by default
    with pytest.raises(schema.SchemaError, match="'not-an-ip', not an IP address"):
        schema.validate(df, check_ips=True)


def test_ocsf_activity_follows_outcome():
    events = schema.to_ocsf(_frame(), nested=True)
    assert [e["activity_id"] for e in events] == [1, 5, 4, 4]
    assert [e["disposition_id"] for e in events] == [0, 0, 0, 2]  # denied -> Blocked
    assert all(e["class_uid"] == 4001 and e["type_uid"] == 400100 + e["activity_id"] for e in events)
    assert events[2]["dst_endpoint"] == {"ip": "2001:db8::1", "port": 80}
    assert events[0]["time"] == 1_700_000_000_000


def test_ecs_fields():
    ecs = schema.to_ecs(_frame())
    assert list(ecs["event.outcome"]) == ["success", "failure", "failure", "failure"]
    assert list(ecs["event.action"]) == ["established", "rejected", "no_reply", "denied"]
    assert ecs["network.iana_number"].eq(6).all()
    doc = schema.to_ecs(_frame(), nested=True)[0]
    assert doc["source"] == {"ip": "10.0.0.1", "port": 40000, "packets": 3}
    assert doc["@timestamp"].startswith("2023-11-14T22:13:20")
