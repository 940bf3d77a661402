"""The sanctioned-scanner registry: loading, suppression, escalation and review."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from t1046lab import policy, schema
from t1046lab.alerts import make_alerts

REGISTRY = """
[[scanner]]
name = "vuln-weekly"
owner = "vuln-mgmt@example.com"
ticket = "SEC-1234"
sources = ["10.20.0.5/32"]
targets = ["10.0.0.0/24"]
ports = ["1-1024", 3389]
timezone = "Europe/Berlin"
expires = 2026-12-31

[[scanner.schedule]]
days = ["Fri"]
start = "22:00"
end = "04:00"

[[scanner]]
name = "old-discovery"
owner = "netops@example.com"
sources = ["10.30.0.0/16"]
targets = ["0.0.0.0/0"]
expires = 2026-01-31
"""


def _scan(source: str, targets: list[str], ports: range, start: str) -> pd.DataFrame:
    """A SYN scan: every port on every target, one attempt every 10 ms, mostly unanswered."""
    pairs = [(t, p) for t in targets for p in ports]
    n = len(pairs)
    t0 = pd.Timestamp(start).tz_convert("UTC").value
    rng = np.random.default_rng(7)
    return schema.conform(
        {
            "event_start": t0 + np.arange(n, dtype="int64") * 10_000_000,
            "source_ip": [source] * n,
            "source_port": rng.integers(40000, 60000, n),
            "destination_ip": [t for t, _ in pairs],
            "destination_port": [p for _, p in pairs],
            "network_transport": ["tcp"] * n,
            "conn_outcome": rng.choice(["no_reply", "rejected", "established"], n, p=[0.9, 0.08, 0.02]),
        },
        log_format="pcap",
    )


def _alert_for(conns: pd.DataFrame, window: str = "1h") -> pd.DataFrame:
    """One alert per source covering its connections, as a detector would emit it."""
    g = conns.groupby("source_ip", observed=True)["event_start"]
    first = g.min().dt.floor(window)
    return make_alerts(
        {
            "entity": list(first.index),
            "window_start": list(first),
            "window_end": list(first + pd.Timedelta(window)),
            "score": [1.0] * len(first),
            "alert": [True] * len(first),
            "scan_type": ["vertical"] * len(first),
        },
        detector="test",
    )


@pytest.fixture
def registry():
    return policy.load_registry(REGISTRY)


# Saturday 2026-06-06 01:00 in Berlin (summer time, UTC+2) is Friday's overnight slot.
IN_SLOT = "2026-06-06T01:00:00+02:00"


def test_scan_inside_scope_and_schedule_is_suppressed(registry):
    conns = _scan("10.20.0.5", ["10.0.0.7", "10.0.0.8"], range(1, 200), IN_SLOT)
    alerts = _alert_for(conns)
    out = policy.apply(alerts, conns, registry)
    assert out["policy_status"].tolist() == ["suppressed"]
    assert out["policy_entry"].tolist() == ["vuln-weekly"]
    assert not out["alert"].iloc[0] and out["alert_before_policy"].iloc[0]
    assert "SEC-1234" in out["policy_reason"].iloc[0]
    assert alerts["alert"].all() and "policy_status" not in alerts  # the caller's frame is untouched


def test_scan_outside_targets_is_escalated_with_counts(registry):
    inside = _scan("10.20.0.5", ["10.0.0.7"], range(1, 101), IN_SLOT)
    outside = _scan("10.20.0.5", ["192.168.5.9"], range(1, 51), "2026-06-06T01:00:02+02:00")
    conns = pd.concat([inside, outside], ignore_index=True)
    out = policy.apply(_alert_for(conns), conns, registry)
    assert out["policy_status"].tolist() == ["escalated"]
    assert out["alert"].iloc[0]
    reason = out["policy_reason"].iloc[0]
    assert "out of scope" in reason and "50 of 150 attempts to targets outside 10.0.0.0/24" in reason
    assert "192.168.5.9" in reason


def test_scan_outside_ports_and_schedule(registry):
    conns = _scan("10.20.0.5", ["10.0.0.7"], range(3380, 3400), "2026-06-09T14:00:00+02:00")  # a Tuesday
    out = policy.apply(_alert_for(conns), conns, registry)
    reason = out["policy_reason"].iloc[0]
    assert out["policy_status"].iloc[0] == "escalated"
    assert "19 of 20 attempts to ports outside its scope" in reason  # 3389 is allowed
    assert "20 of 20 attempts outside its schedule (Fri 22:00-04:00 Europe/Berlin)" in reason


def test_schedule_follows_the_entry_time_zone_across_dst(registry):
    # 03:30 Berlin is inside the slot both in winter (UTC+1) and in summer (UTC+2),
    # although the UTC times differ by an hour.
    for local in ("2026-02-07T03:30:00+01:00", "2026-06-06T03:30:00+02:00"):
        conns = _scan("10.20.0.5", ["10.0.0.7"], range(1, 20), local)
        out = policy.apply(_alert_for(conns, "10min"), conns, registry)
        assert out["policy_status"].iloc[0] == "suppressed", local
    conns = _scan("10.20.0.5", ["10.0.0.7"], range(1, 20), "2026-06-06T04:30:00+02:00")
    assert policy.apply(_alert_for(conns, "10min"), conns, registry)["policy_status"].iloc[0] == "escalated"


def test_expired_entry_no_longer_covers_its_scanner(registry):
    conns = _scan("10.30.4.4", ["10.0.0.7"], range(1, 30), "2026-03-01T10:00:00+00:00")
    out = policy.apply(_alert_for(conns), conns, registry)
    assert out["policy_status"].iloc[0] == "escalated"
    assert "entry expired on 2026-01-31 (29 of 29 attempts after it)" in out["policy_reason"].iloc[0]


def test_unrelated_sources_are_untouched(registry):
    conns = _scan("10.0.0.99", ["10.0.0.7"], range(1, 30), IN_SLOT)
    out = policy.apply(_alert_for(conns), conns, registry)
    assert out["policy_status"].iloc[0] == "none" and out["alert"].iloc[0]


def test_review_flags_expired_expiring_unused_and_broad(registry):
    ok = _scan("10.20.0.5", ["10.0.0.7"], range(1, 50), IN_SLOT)
    bad = _scan("10.20.0.5", ["10.0.1.7"], range(1, 50), "2026-06-13T01:00:00+02:00")
    conns = pd.concat([ok, bad], ignore_index=True)
    alerts = pd.concat([_alert_for(ok), _alert_for(bad)], ignore_index=True)
    applied = policy.apply(alerts, conns, registry)
    report = policy.review(applied, registry, now="2026-12-15").set_index("name")
    weekly = report.loc["vuln-weekly"]
    assert (weekly.suppressed, weekly.escalated) == (1, 1)
    assert weekly.expiring and not weekly.expired and weekly.out_of_scope and not weekly.unused
    old = report.loc["old-discovery"]
    assert old.expired and old.unused and old.broad
    assert "expired on 2026-01-31" in old.findings


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace('owner = "vuln-mgmt@example.com"\n', ""), "scanner 'vuln-weekly': missing required key 'owner'"),
        (lambda t: t.replace('"10.0.0.0/24"', '"10.0.0.0/33"'), "target '10.0.0.0/33' is not an IP address or CIDR"),
        (lambda t: t.replace("Europe/Berlin", "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (lambda t: t.replace('"1-1024"', '"1024-1"'), "outside 0-65535 or reversed"),
        (lambda t: t.replace('days = ["Fri"]', 'days = ["Caturday"]'), "not a weekday name"),
        (lambda t: t.replace('ticket = "SEC-1234"', 'tikcet = "SEC-1234"'), "unknown keys ['tikcet']"),
        (lambda t: t.replace('name = "old-discovery"', 'name = "vuln-weekly"'), "duplicate entry names ['vuln-weekly']"),
    ],
)
def test_registry_errors_name_the_entry(edit, message):
    with pytest.raises(policy.PolicyError) as err:
        policy.load_registry(edit(REGISTRY))
    assert message in str(err.value)


def test_registry_from_file_names_the_file(tmp_path):
    path = tmp_path / "scanners.toml"
    path.write_text(REGISTRY.replace("expires = 2026-12-31", "expires = 31.12.2026"))
    with pytest.raises(policy.PolicyError, match="scanners.toml: not valid TOML"):
        policy.load_registry(path)
    path.write_text(REGISTRY)
    table = policy.load_registry(path).to_frame()
    assert table["schedule"].tolist() == ["Fri 22:00-04:00", "any time"]
    assert table["ports"].tolist() == ["1-1024, 3389", "all"]
