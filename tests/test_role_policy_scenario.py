"""Per-role baselines plus the sanctioned-scanner policy on a small network with look-alikes.

The network: workstations browsing servers, servers talking to a database, a monitoring
host scraping 200 exporters on one port every 15 s, Kubernetes nodes probing their pods
every 10 s, and a vulnerability scanner sweeping its target range every night inside its
registered schedule. Fitted on one day, `role-baseline` plus the policy must stay silent on
all of them, alert on a workstation that starts scanning, and escalate the vulnerability
scanner when it scans outside its target range or its schedule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import t1046lab
from t1046lab import policy, schema

DAY1 = pd.Timestamp("2026-03-02T00:00:00Z")
DAY2 = DAY1 + pd.Timedelta("1D")
HOURS = 8  # of each day simulated
SCANNER = "10.0.7.5"
WORKSTATIONS = [f"10.0.2.{i}" for i in range(1, 21)]
SERVERS = [f"10.0.1.{i}" for i in range(1, 11)]
DATABASE = "10.0.1.20"
MONITOR = "10.0.9.10"
EXPORTERS = [f"10.0.4.{i}" for i in range(200)]
NODES = [f"10.0.5.{i}" for i in range(1, 4)]
REGISTRY = f"""
[[scanner]]
name = "nightly-vuln-scan"
owner = "vuln-mgmt@example.com"
ticket = "SEC-42"
sources = ["{SCANNER}/32"]
targets = ["10.0.1.0/24"]
timezone = "UTC"
expires = 2027-01-01

[[scanner.schedule]]
start = "00:00"
end = "06:00"
"""
INVENTORY = "ip_or_cidr,role\n10.0.2.0/24,workstation\n10.0.1.0/24,server\n10.0.9.10,monitoring\n10.0.5.0/24,k8s_node\n10.0.7.5,vuln_scanner\n"


class _Rows:
    """Accumulates connection attempts as arrays (one call per activity, no loop per row)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, t: np.ndarray, src, dst, port, outcome) -> None:
        n = len(t)
        self.parts.append(
            {
                "event_start": np.asarray(t, dtype="int64"),
                "source_ip": np.broadcast_to(np.asarray(src, dtype=object), (n,)),
                "destination_ip": np.broadcast_to(np.asarray(dst, dtype=object), (n,)),
                "destination_port": np.broadcast_to(np.asarray(port), (n,)),
                "conn_outcome": np.broadcast_to(np.asarray(outcome, dtype=object), (n,)),
            }
        )

    def frame(self) -> pd.DataFrame:
        cols = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        order = np.argsort(cols["event_start"], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
        n = len(order)
        cols["network_transport"] = np.full(n, "tcp", dtype=object)
        cols["source_port"] = 30000 + np.arange(n) % 30000
        return schema.conform(cols, log_format="simulated")


def _sweep(rows: _Rows, rng, start: pd.Timestamp, hours: float, src: str, targets: list[str], ports: list[int], live: set[str]) -> None:
    """A scanner probing every (target, port) spread evenly over ``hours``."""
    pairs = [(t, p) for t in targets for p in ports]
    times = start.value + np.sort(rng.uniform(0, hours * 3600e9, len(pairs))).astype("int64")
    dst = np.array([t for t, _ in pairs], dtype=object)
    port = np.array([p for _, p in pairs])
    outcome = np.where(np.isin(dst, list(live)), np.where(np.isin(port, [22, 443]), "established", "rejected"), "no_reply")
    rows.add(times, src, dst, port, outcome)


def _day(rows: _Rows, rng, day: pd.Timestamp) -> None:
    span = HOURS * 3600e9
    for ws in WORKSTATIONS:  # browsing: ~2 attempts a minute to a few servers
        n = rng.poisson(2 * 60 * HOURS)
        rows.add(day.value + np.sort(rng.uniform(0, span, n)).astype("int64"), ws, rng.choice(SERVERS[:5], n), rng.choice([80, 443], n), "established")
    for server in SERVERS:
        n = rng.poisson(60 * HOURS)
        rows.add(day.value + np.sort(rng.uniform(0, span, n)).astype("int64"), server, DATABASE, 5432, "established")
    ticks = day.value + np.arange(0, span, 15e9).astype("int64")  # Prometheus: 200 targets every 15 s
    rows.add(np.repeat(ticks, len(EXPORTERS)), MONITOR, np.tile(EXPORTERS, len(ticks)), 9100, "established")
    ticks = day.value + np.arange(0, span, 10e9).astype("int64")  # kubelet probes: 10 pods per node every 10 s
    for k, node in enumerate(NODES):
        pods = [f"10.0.6.{k * 10 + i}" for i in range(10)]
        rows.add(np.repeat(ticks, 10), node, np.tile(pods, len(ticks)), 8080, np.where(rng.random(len(ticks) * 10) < 0.002, "rejected", "established"))
    # The sanctioned scanner's nightly sweep of its range, inside its 00:00-06:00 slot.
    _sweep(rows, rng, day, 6, SCANNER, [f"10.0.1.{i}" for i in range(1, 255)], [22, 80, 443, 3389, 8080], set(SERVERS))


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    rng = np.random.default_rng(0)
    rows = _Rows()
    _day(rows, rng, DAY1)
    _day(rows, rng, DAY2)
    # Day 2: a workstation sweeps 200 hosts on one port, which is what the monitoring host does
    # all day; then the scanner strays out of its range, and out of its schedule.
    _sweep(rows, rng, DAY2 + pd.Timedelta("3h"), 0.05, "10.0.2.7", EXPORTERS, [22], set(EXPORTERS))
    _sweep(rows, rng, DAY2 + pd.Timedelta("4h"), 0.25, SCANNER, [f"10.0.3.{i}" for i in range(1, 61)], [22, 80, 443, 3389, 8080], set())
    _sweep(rows, rng, DAY2 + pd.Timedelta("7h"), 0.25, SCANNER, [f"10.0.1.{i}" for i in range(1, 61)], [22, 80, 443, 3389, 8080], set(SERVERS))
    conns = rows.frame()
    inventory = tmp_path_factory.mktemp("net") / "inventory.csv"
    inventory.write_text(INVENTORY)
    alerts = t1046lab.detect(
        conns, detector="role-baseline", roles=str(inventory), baseline=(DAY1, DAY1 + pd.Timedelta(f"{HOURS}h")), all_windows=True
    )
    checked = policy.apply(alerts, conns, policy.load_registry(REGISTRY))
    return conns, checked


@pytest.mark.slow
def test_no_alert_on_benign_look_alikes_during_the_baseline(network):
    _, checked = network
    day1 = checked[checked["window_start"] < DAY2]
    assert len(day1) > 1000  # every entity's windows were scored
    assert not day1["alert"].any(), day1.loc[day1["alert"], ["entity", "window_start", "explanation"]]
    # The scanner's sanctioned sweeps are in scope, and its role finds them normal.
    assert set(day1.loc[day1["entity"] == SCANNER, "policy_status"]) == {"in_scope"}


@pytest.mark.slow
def test_look_alikes_stay_quiet_on_the_next_day(network):
    _, checked = network
    day2 = checked[checked["window_start"] >= DAY2]
    quiet = [MONITOR, *NODES, *SERVERS, *[w for w in WORKSTATIONS if w != "10.0.2.7"]]
    noisy = day2[day2["entity"].isin(quiet) & day2["alert"]]
    assert noisy.empty, noisy[["entity", "window_start", "explanation"]]


@pytest.mark.slow
def test_a_workstation_that_starts_scanning_alerts_against_its_role(network):
    _, checked = network
    ws = checked[(checked["entity"] == "10.0.2.7") & checked["alert"]]
    assert len(ws) >= 1
    assert ws["window_start"].min() == DAY2 + pd.Timedelta("3h")
    assert "compared with role 'workstation'" in ws["explanation"].iloc[0]
    assert "distinct_peers=204" in ws["explanation"].iloc[0]  # its 4 usual servers and the 200 swept
    assert (ws["policy_status"] == "none").all()



@pytest.mark.slow
def test_the_vulnerability_scanner_is_escalated_out_of_range_and_out_of_schedule(network):
    _, checked = network
    day2 = checked[(checked["window_start"] >= DAY2) & (checked["entity"] == SCANNER)]
    escalated = day2[day2["policy_status"] == "escalated"]
    assert escalated["alert"].all()
    hours = set(escalated["window_start"].dt.hour)
    assert hours == {4, 7}, sorted(hours)
    out_of_range = escalated[escalated["window_start"].dt.hour == 4]["policy_reason"]
    assert out_of_range.str.contains("targets outside 10.0.1.0/24").all()
    out_of_schedule = escalated[escalated["window_start"].dt.hour == 7]["policy_reason"]
    assert out_of_schedule.str.contains("outside its schedule").all()
    # Its in-range sweep inside the schedule on day 2 raises nothing.
    routine = day2[(day2["window_start"].dt.hour < 4) | (day2["window_start"].dt.hour == 5)]
    assert not routine["alert"].any() and len(routine) > 30
