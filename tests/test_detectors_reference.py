"""The vectorised detectors against literal record-by-record ports of the originals.

Each reference below walks the records one at a time with the original's state (scan.zeek's
SumStats keys, bro-simple-scan's ``attacks`` table, Snort's ``PS_PROTO`` trackers, the TRW
likelihood ratio). Hypothesis draws small random traffic, with thresholds lowered so that
the rules fire often, and the detectors must report exactly the same alerts.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from _conns import T0, conns
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t1046lab import detect

pytestmark = pytest.mark.slow  # ~5 s each on a loaded 2-core machine

SOURCES = ["10.0.0.1", "192.0.2.7"]
HOSTS = [f"10.1.0.{i}" for i in range(1, 12)] + ["10.9.0.1", "10.9.0.2", "10.9.0.3"]  # 10.9/16 is dark
PORTS = [22, 80, 443, 445, 8080, 3389]
# weighted towards failures, so that the lowered thresholds are crossed in most examples
OUTCOMES = ["established", "established", "rejected", "rejected", "no_reply", "no_reply", "no_reply", "icmp_unreachable", "partial"]

records = st.lists(
    st.tuples(
        st.integers(0, 1200).map(lambda x: x / 2),  # half-second steps over 10 minutes
        st.sampled_from(SOURCES),
        st.sampled_from(HOSTS),
        st.sampled_from(PORTS),
        st.sampled_from(OUTCOMES),
    ),
    min_size=10,
    max_size=80,
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ordered(rows):
    return sorted(rows, key=lambda r: r[0])  # stable: ties keep their order, as the detectors do


def stamp(seconds):
    return T0 + pd.Timedelta(seconds=seconds)


def fired(alerts):
    return sorted(zip(alerts["entity"], alerts["first_alert_time"], alerts["attempts_to_alert"].astype(int), strict=True))


# --------------------------------------------------------------------------- TRW


def trw_reference(rows, restart):
    up, low = math.log(99), math.log(1 / 99)
    state = {}
    out = []
    for t, src, dst, _port, outcome in ordered(rows):
        if outcome not in ("established", "rejected", "no_reply", "icmp_unreachable"):
            continue
        s = state.setdefault(src, {"seen": set(), "level": 0.0, "n": 0, "done": False})
        if s["done"] or dst in s["seen"]:
            s["seen"].add(dst)
            continue
        s["seen"].add(dst)
        s["level"] += math.log(0.25) if outcome == "established" else math.log(4)
        s["n"] += 1
        if s["level"] >= up - 1e-9:
            out.append((src, stamp(t), s["n"]))
            s["done"] = True
        elif s["level"] <= low + 1e-9:
            s["level"], s["n"], s["done"] = 0.0, 0, not restart
    return sorted(out)


@SETTINGS
@given(records, st.booleans())
def test_trw_matches_the_sequential_test(rows, restart):
    alerts = detect(conns(rows), detector="trw", after_benign="restart" if restart else "stop")
    assert fired(alerts) == trw_reference(rows, restart)


# --------------------------------------------------------------------------- zeek-scan


def zeek_reference(rows, port_thr, addr_thr, interval):
    failed = [r for r in ordered(rows) if r[4] in ("rejected", "no_reply", "icmp_unreachable")]
    if not rows:
        return []
    origin = min(r[0] for r in rows)
    ports, hosts, count = {}, {}, {}
    crossings = {}
    for t, src, dst, port, _o in failed:
        epoch = int((t - origin) // interval)
        count[(src, epoch)] = count.get((src, epoch), 0) + 1
        for table, key, value, thr in ((ports, (src, dst, epoch), port, port_thr), (hosts, (src, port, epoch), dst, addr_thr)):
            seen = table.setdefault(key, set())
            if value not in seen:
                seen.add(value)
                if len(seen) == thr and (src, epoch) not in crossings:
                    crossings[(src, epoch)] = (src, stamp(t), count[(src, epoch)])
    return sorted(crossings.values())


@SETTINGS
@given(records)
def test_zeek_scan_matches_sumstats_keys(rows):
    alerts = detect(conns(rows), detector="zeek-scan", port_scan_threshold=3, addr_scan_threshold=3,
                    port_scan_interval=120, addr_scan_interval=120)
    assert fired(alerts) == zeek_reference(rows, 3, 3, 120)


# --------------------------------------------------------------------------- simple-scan


def simple_reference(rows, *, thresh, dark_thresh, knock, knock_dark, timeout, mute):
    attacks, known_until, out = {}, {}, []
    for t, src, dst, port, outcome in ordered(rows):
        if outcome not in ("rejected", "no_reply", "icmp_unreachable"):
            continue
        if t < known_until.get(src, -math.inf):
            continue
        s = attacks.get(src)
        if s is not None and t - s["last"] > timeout:
            s = None  # &read_expire
        if s is None:
            s = attacks[src] = {"attempts": set(), "ports": {}, "dark": set(), "seen": 0}
        s["last"] = t
        s["seen"] += 1
        if (dst, port) in s["attempts"]:
            continue
        s["attempts"].add((dst, port))
        s["ports"][port] = s["ports"].get(port, 0) + 1
        if len(s["dark"]) < 3 and dst not in s["dark"] and dst.startswith("10.9."):
            s["dark"].add(dst)
        darknet = len(s["dark"]) >= 3
        limit = dark_thresh if darknet else thresh
        knock_limit = knock_dark if darknet else knock
        if len(s["attempts"]) >= limit or s["ports"][port] >= knock_limit:
            out.append((src, stamp(t), s["seen"]))
            del attacks[src]
            known_until[src] = t + mute
    return sorted(out)


@SETTINGS
@given(records)
def test_simple_scan_matches_the_attacks_table(rows):
    alerts = detect(conns(rows), detector="simple-scan", scan_threshold=5, scan_threshold_with_darknet_hits=4,
                    knockknock_threshold=3, knockknock_threshold_with_darknet_hits=2, scan_timeout=40,
                    suppress_for=60, dark_nets=["10.9.0.0/16"])
    expected = simple_reference(rows, thresh=5, dark_thresh=4, knock=3, knock_dark=2, timeout=40, mute=60)
    assert fired(alerts) == expected


# --------------------------------------------------------------------------- snort-portscan

SMALL = {"scans": 4, "rejects": 2, "nets": 3, "ports": 3}


class Proto:
    """Snort's PS_PROTO with its window rule."""

    def __init__(self):
        self.window = -1
        self.reset()

    def reset(self):
        self.scans = self.rejects = self.nets = self.ports = self.attempts = 0
        self.ip = None
        self.port = 0
        self.alerted = False
        self.first_t = None

    def update(self, t, ip, port, scan, reject):
        sec = int(t // 1)
        if sec > self.window:
            self.reset()
            self.window = sec + WINDOW
            self.first_t = t
        self.scans += scan
        self.rejects += reject
        self.attempts += 1
        if ip != self.ip:
            self.nets += 1
            self.ip = ip
        if port != self.port:
            self.ports += 1
            self.port = port


WINDOW = 20


def snort_reference(rows):
    scanned, scanner, out = {}, {}, []
    c = SMALL
    for t, src, dst, port, outcome in ordered(rows):
        if outcome == "partial":
            continue
        scan, reject = int(outcome != "established"), int(outcome in ("rejected", "icmp_unreachable"))
        d = scanned.setdefault(dst, Proto())
        s = scanner.setdefault(src, Proto())
        d.update(t, src, port, scan, reject)
        s.update(t, dst, port, scan, reject)
        if not d.alerted:
            for name, limit in (("portscan", d.nets < c["nets"]), ("decoy portscan", d.nets >= c["nets"]),
                                ("distributed portscan", d.nets <= c["nets"])):
                enough_ports = d.ports >= c["ports"]
                by_rejects = d.rejects >= c["rejects"] and (s.rejects >= c["rejects"] if name == "portscan" else True)
                by_scans = d.scans >= c["scans"]
                if limit and enough_ports and (by_rejects or by_scans):
                    d.alerted = True
                    label = f"TCP {'' if by_rejects else 'filtered '}{name}"
                    entity = src if name == "portscan" else dst
                    out.append((label, entity, stamp(t), d.attempts))
                    break
        if not s.alerted and s.nets >= c["nets"] and s.ports <= c["ports"] and (s.rejects >= c["rejects"] or s.scans >= c["scans"]):
            s.alerted = True
            out.append((f"TCP {'' if s.rejects >= c['rejects'] else 'filtered '}portsweep", src, stamp(t), s.attempts))
    return sorted(out)


@SETTINGS
@given(records)
def test_snort_portscan_matches_the_ps_proto_trackers(rows):
    tables = {f"tcp_{k}": dict(SMALL) for k in ("ports", "decoy", "sweep", "dist")}
    alerts = detect(conns(rows), detector="snort-portscan", thresholds=tables, tcp_window=WINDOW, protos=["tcp"])
    got = sorted(zip(alerts["snort_alert"], alerts["entity"], alerts["first_alert_time"], alerts["attempts_to_alert"].astype(int), strict=True))
    assert got == snort_reference(rows)
