"""``snort-portscan``: Snort 3's ``port_scan`` inspector (the sfPortscan engine).

Source: snort3/snort3 ``src/network_inspectors/port_scan/ps_detect.cc`` (Daniel Roelker, Russ
Combs), ``ps_module.cc`` (parameters) and the shipped ``lua/snort_defaults.lua`` tables
``default_{low,med,hi}_port_scan`` with ``tcp_{low,med,hi}_{ports,decoy,sweep,dist}`` etc.

Semantics reproduced here, on connection records instead of packets:

* Two trackers per attempt (``ps_tracker_lookup``): the *scanned* tracker keyed by
  (protocol, destination), fed the source address and destination port, for portscan, decoy
  and distributed portscan; the *scanner* tracker keyed by (protocol, source), fed the
  destination address and port, for portsweep. ICMP feeds only the scanner tracker (sweeps).
* Each tracker keeps four counters (``PS_PROTO``): ``scans`` (``connection_count``: +1 per
  attempt, −1 when the TCP handshake completes or a UDP server answers, so it counts the
  attempts left open — unanswered or rejected; every ICMP echo counts), ``rejects``
  (``priority_count``: RSTs on unestablished TCP streams and ICMP unreachables), ``nets``
  (``u_ip_count``) and ``ports`` (``u_port_count``). **nets and ports count changes from the
  previous attempt, not distinct values**: 80, 81, 80, 81 is 4 port changes on 2 ports.
* Windows (``ps_proto_update_window``): a tracker's window opens at its first attempt and
  lasts ``tcp_window`` / ``udp_window`` / ``icmp_window`` seconds on Snort's whole-second clock; the first attempt after it resets
  every counter and opens the next one. Sensitivity sets the window: low 60 s, medium 90 s
  (Snort's default config), high 600 s.
* Alerts (``ps_alert_one_to_one`` …): with the thresholds of the sensitivity,
  portscan: rejects ≥ R on the scanned host *and* the scanner, nets < N, ports ≥ P;
  decoy portscan: rejects ≥ R, nets ≥ N, ports ≥ P; portsweep (scanner tracker): rejects ≥ R,
  nets ≥ N, ports ≤ P; distributed portscan: rejects ≥ R, nets ≤ N, ports ≥ P. The *filtered*
  variant of each fires on ``scans`` ≥ S instead of rejects ≥ R, i.e. on attempts that were
  not answered by an open port (typically no reply at all); S = 0 (low sensitivity)
  disables the filtered variants. One alert per tracker per window (``alert_all = false``),
  checked in the order portscan, decoy, portsweep, distributed.

Deviations, forced by flow records: each record is applied as one step (its SYN, then its
answer), so the attempt that fires can differ from Snort's by the probes in flight; SYN
retransmissions within one record count once (Snort counts each unanswered SYN packet);
mid-stream (``partial``) records are ignored, as Snort does by default; the scanned- and
scanner-tracker alerts are evaluated independently (Snort's early return can delay one of
them by one packet when both qualify on the same packet). IP-protocol scans are not
modelled (the canonical frame has no IP protocol number).

What it cannot see: scans slower than the window (a scan spread over hours restarts its
counters every window and, at the shipped thresholds, alerts at most per window), a
portscan answered mostly by SYN-ACKs (open ports decrement ``scans``), and sweeps or scans
below the change thresholds.

``scan_type``: portscan → ``vertical``, portsweep → ``horizontal``, decoy → ``decoy``,
distributed → ``distributed``; the Snort name is kept in ``snort_alert`` (e.g.
``TCP filtered portscan``) and its rule in ``snort_rule`` (``122:5``). ``entity`` is the
source of the firing attempt for portscan and portsweep, the scanned host for decoy and
distributed scans (``entity_kind`` says which). ``score`` is the largest, over the alert
rules, of the smallest count-to-threshold ratio of a rule whose ``<``/``≤`` limits hold
(≥ 1 exactly when it fires).

Complexity: sorts by tracker and time; the window chain is followed one window at a time for
all trackers at once (loop count = most windows of one tracker); counters are group-wise
cumulative sums and shifted comparisons: O(n log n) overall, no per-record Python loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..alerts import empty_alerts, make_alerts
from ._common import (
    check_conns,
    fmt_span,
    group_cumsum,
    ns_times,
    ts_from_ns,
    window_chain,
)
from ._registry import register_detector

NAME = "snort-portscan"

#: lua/snort_defaults.lua: (scans, rejects, nets, ports) per protocol, scan kind and sensitivity.
DEFAULTS: dict[str, dict[str, dict[str, tuple[int, int, int, int]]]] = {
    "low": {
        "tcp": {"ports": (0, 5, 25, 5), "decoy": (0, 15, 50, 30), "sweep": (0, 5, 5, 15), "dist": (0, 15, 50, 15)},
        "udp": {"ports": (0, 5, 25, 5), "decoy": (0, 15, 50, 30), "sweep": (0, 5, 5, 15), "dist": (0, 15, 50, 15)},
        "icmp": {"sweep": (0, 5, 5, 5)},
    },
    "medium": {
        "tcp": {"ports": (200, 10, 60, 15), "decoy": (200, 30, 120, 60), "sweep": (30, 7, 7, 10), "dist": (200, 30, 120, 30)},
        "udp": {"ports": (200, 10, 60, 15), "decoy": (200, 30, 120, 60), "sweep": (30, 5, 5, 20), "dist": (200, 30, 120, 30)},
        "icmp": {"sweep": (20, 5, 5, 5)},
    },
    "high": {
        "tcp": {"ports": (200, 5, 100, 10), "decoy": (200, 7, 200, 60), "sweep": (30, 3, 3, 10), "dist": (200, 5, 200, 10)},
        "udp": {"ports": (200, 3, 100, 10), "decoy": (200, 7, 200, 60), "sweep": (30, 3, 3, 10), "dist": (200, 3, 200, 10)},
        "icmp": {"sweep": (10, 3, 3, 5)},
    },
}
WINDOWS = {"low": 60, "medium": 90, "high": 600}
SCAN_TYPES = ("portscan", "portsweep", "decoy_portscan", "distributed_portscan")
PROTOS = ("tcp", "udp", "icmp")

# Snort 3 rule ids (gid 122) and messages, by protocol and alert
_SID_BASE = {"tcp": 0, "ip": 8, "udp": 16}
_ORDER = ["portscan", "decoy", "sweep", "dist", "portscan_f", "decoy_f", "sweep_f", "dist_f"]
_MESSAGE = {
    "portscan": "portscan", "decoy": "decoy portscan", "sweep": "portsweep", "dist": "distributed portscan",
    "portscan_f": "filtered portscan", "decoy_f": "filtered decoy portscan", "sweep_f": "filtered portsweep",
    "dist_f": "filtered distributed portscan",
}
_SCAN_TYPE = {"portscan": "vertical", "sweep": "horizontal", "decoy": "decoy", "dist": "distributed"}
_ICMP_REQUEST_TYPES = (8, 13, 15, 17)  # echo, timestamp, information, address mask (ps_tracker_update_icmp)

PARAMS = {
    "sensitivity": "medium",
    "tcp_window": None,  # seconds; None: the sensitivity's window (Snort's tcp_window, udp_window, icmp_window)
    "udp_window": None,
    "icmp_window": None,
    "protos": list(PROTOS),
    "scan_types": list(SCAN_TYPES),
    "thresholds": None,
}


def _rule(proto: str, kind: str) -> tuple[str, str]:
    if proto == "icmp":
        sid = 25 if kind == "sweep" else 26
        return ("ICMP sweep" if kind == "sweep" else "ICMP filtered sweep"), f"122:{sid}"
    return f"{proto.upper()} {_MESSAGE[kind]}", f"122:{_SID_BASE[proto] + _ORDER.index(kind) + 1}"


@register_detector(
    NAME,
    params=PARAMS,
    description="Snort 3 port_scan: scans/rejects/address-change/port-change counters per tracker, low/medium/high sensitivity",
    source="snort3/snort3 src/network_inspectors/port_scan (ps_detect.cc, ps_module.cc) and lua/snort_defaults.lua",
    choices={"sensitivity": tuple(WINDOWS), "protos": PROTOS, "scan_types": SCAN_TYPES},
)
def snort_portscan(conns: pd.DataFrame, *, all_windows: bool = False, **params: Any) -> pd.DataFrame:
    """Run Snort 3's port_scan logic over a canonical connections frame; see the module docstring."""
    check_conns(conns)
    conf, windows, protos, types = _configure(params)
    # addresses as integer codes: sorting and grouping strings is the slow part on big frames
    n = len(conns)
    codes, ips = pd.factorize(np.concatenate([conns["source_ip"].astype("object").to_numpy(), conns["destination_ip"].astype("object").to_numpy()]))
    ips = np.asarray(ips, dtype=object)
    frames = []
    for proto in protos:
        rows = _rows(conns, proto, codes[:n], codes[n:])
        if len(rows) == 0:
            continue
        frames.append(_detect_proto(rows, proto, conf[proto], windows[proto], types, all_windows, ips))
    frames = [f for f in frames if len(f)]
    if not frames:
        return _empty()
    out = pd.concat(frames, ignore_index=True).sort_values(["window_start", "entity"], kind="stable").reset_index(drop=True)
    alerts = make_alerts(
        {
            "entity": out["entity"].to_numpy(),
            "window_start": ts_from_ns(out["window_start"].to_numpy()),
            "window_end": ts_from_ns(out["window_end"].to_numpy()),
            "score": out["score"].to_numpy(dtype=float),
            "alert": out["alert"].to_numpy(dtype=bool),
            "scan_type": out["scan_type"].to_numpy(),
            "first_alert_time": ts_from_ns(out["first_alert_time"].array),
            "attempts_to_alert": pd.array(out["attempts_to_alert"].array, dtype="Int64"),
            "explanation": out["explanation"].to_numpy(),
        },
        detector=NAME,
    )
    for column in ("snort_alert", "snort_rule", "entity_kind", "snort_tracker"):
        alerts[column] = pd.array(out[column].to_numpy(), dtype="string")
    return alerts


def _empty() -> pd.DataFrame:
    extra = {c: pd.Series([], dtype="string") for c in ("snort_alert", "snort_rule", "entity_kind", "snort_tracker")}
    return empty_alerts().assign(**extra)


def _configure(params: dict[str, Any]) -> tuple[dict, dict[str, int], list[str], set[str]]:
    sensitivity = params["sensitivity"]
    windows = {}
    for proto in PROTOS:
        window = params[f"{proto}_window"]
        if window is None:
            window = WINDOWS[sensitivity]
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
            raise ValueError(f"{proto}_window must be a whole number of seconds >= 0, got {window!r}")
        windows[proto] = int(window)
    protos = [params["protos"]] if isinstance(params["protos"], str) else list(params["protos"])
    types = {params["scan_types"]} if isinstance(params["scan_types"], str) else set(params["scan_types"])
    conf = {p: {k: dict(zip(("scans", "rejects", "nets", "ports"), v)) for k, v in DEFAULTS[sensitivity][p].items()} for p in PROTOS}
    overrides = params["thresholds"] or {}
    if not isinstance(overrides, dict):
        raise ValueError("thresholds must be a dict such as {'tcp_ports': {'rejects': 5}} (Snort's tcp_ports table)")
    for table, values in overrides.items():
        proto, _, kind = str(table).partition("_")
        kind = {"ports": "ports", "decoy": "decoy", "sweep": "sweep", "dist": "dist"}.get(kind)
        if proto not in conf or kind not in conf[proto] or not isinstance(values, dict):
            known = [f"{p}_{k}" for p in PROTOS for k in DEFAULTS["medium"][p]]
            raise ValueError(f"thresholds: unknown table {table!r}; known tables: {known}, each a dict of scans/rejects/nets/ports")
        for name, value in values.items():
            if name not in ("scans", "rejects", "nets", "ports") or isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"thresholds[{table!r}]: {name}={value!r}; expected scans/rejects/nets/ports, integers >= 0")
            conf[proto][kind][name] = int(value)
    return conf, windows, protos, types


def _rows(conns: pd.DataFrame, proto: str, src_codes: np.ndarray, dst_codes: np.ndarray) -> pd.DataFrame:
    transport = conns["network_transport"].astype("object").to_numpy()
    outcome = conns["conn_outcome"].astype("object").to_numpy()
    if proto == "icmp":
        mask = np.isin(transport, ["icmp", "icmpv6"])
        if "icmp_type" in conns.columns:
            itype = pd.to_numeric(conns["icmp_type"], errors="coerce").to_numpy()
            request = np.where(transport == "icmpv6", itype == 128, np.isin(itype, _ICMP_REQUEST_TYPES))
            mask &= np.isnan(itype) | request
    else:
        mask = transport == proto
    mask &= outcome != "partial"  # include_midstream = false
    mask &= (src_codes >= 0) & (dst_codes >= 0)
    port = pd.to_numeric(conns["destination_port"], errors="coerce").fillna(0).to_numpy().astype(np.int64)
    established = outcome == "established"
    frame = pd.DataFrame(
        {
            "src": src_codes[mask],
            "dst": dst_codes[mask],
            "port": (np.zeros(len(port), dtype=np.int64) if proto == "icmp" else port)[mask],
            "t": ns_times(conns["event_start"])[mask],
            # scans: +1 per attempt, -1 when answered by an open port (ICMP echoes never decrement)
            "scan": (np.ones(len(outcome), dtype=np.int64) if proto == "icmp" else (~established).astype(np.int64))[mask],
            "reject": np.isin(outcome, ["rejected", "icmp_unreachable"]).astype(np.int64)[mask],
        }
    )
    return frame.sort_values("t", kind="stable").reset_index(drop=True)


def _track(rows: pd.DataFrame, key: str, other: str, window: int) -> pd.DataFrame:
    """Counters of one tracker kind after every attempt, in ``rows`` order."""
    order = np.lexsort((rows["t"].to_numpy(), pd.factorize(rows[key])[0]))
    r = rows.iloc[order]
    g = pd.factorize(r[key])[0]
    secs = r["t"].to_numpy() // 1_000_000_000  # Snort's time_t clock
    opens = window_chain(g, secs, window)
    win = np.cumsum(opens) - 1
    ip = pd.factorize(r[other])[0]
    port = r["port"].to_numpy()
    prev_ip = np.roll(ip, 1)
    prev_port = np.roll(port, 1)
    ip_change = opens | (ip != prev_ip)  # u_ips starts cleared: the first address is a change
    port_change = np.where(opens, port != 0, port != prev_port)  # u_ports starts at 0
    first_t = r["t"].to_numpy()[np.maximum.accumulate(np.where(opens, np.arange(len(r)), 0))]
    out = pd.DataFrame(
        {
            "row": order,
            "tracker": r[key].to_numpy(),
            "win": win,
            "scans": group_cumsum(r["scan"].to_numpy(), opens),
            "rejects": group_cumsum(r["reject"].to_numpy(), opens),
            "nets": group_cumsum(ip_change.astype(np.int64), opens),
            "ports": group_cumsum(port_change.astype(np.int64), opens),
            "attempt": group_cumsum(np.ones(len(r), dtype=np.int64), opens),
            "win_first_t": first_t,
            "win_open_sec": secs[np.maximum.accumulate(np.where(opens, np.arange(len(r)), 0))],
        }
    )
    return out.sort_values("row").reset_index(drop=True)


def _ratio(count: np.ndarray, threshold: int) -> np.ndarray:
    return count / threshold if threshold > 0 else np.full(len(count), np.inf)


def _rules(d: pd.DataFrame, s: pd.DataFrame | None, conf: dict, types: set[str], proto: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(fires, score) per alert rule at every attempt. ``d``: scanned tracker, ``s``: scanner tracker."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def rule(name: str, tr: pd.DataFrame, c: dict, limit: np.ndarray, port_ratio: np.ndarray, extra: np.ndarray | None = None) -> None:
        for filtered in (False, True):
            if filtered:
                if c["scans"] == 0:
                    continue
                ratios = [_ratio(tr["scans"].to_numpy(), c["scans"])]
            else:
                ratios = [_ratio(tr["rejects"].to_numpy(), c["rejects"])]
                if extra is not None:
                    ratios.append(extra)
            ratios.append(port_ratio)
            score = np.where(limit, np.minimum.reduce(ratios), 0.0)
            out[name + ("_f" if filtered else "")] = (score >= 1.0, score)

    if d is not None:
        nets, ports = d["nets"].to_numpy(), d["ports"].to_numpy()
        if "portscan" in types:
            c = conf["ports"]
            scanner_rejects = _ratio(s["rejects"].to_numpy(), c["rejects"]) if s is not None else None
            rule("portscan", d, c, nets < c["nets"], _ratio(ports, c["ports"]), scanner_rejects)
        if "decoy_portscan" in types:
            c = conf["decoy"]
            rule("decoy", d, c, np.ones(len(d), dtype=bool), np.minimum(_ratio(nets, c["nets"]), _ratio(ports, c["ports"])))
        if "distributed_portscan" in types:
            c = conf["dist"]
            rule("dist", d, c, nets <= c["nets"], _ratio(ports, c["ports"]))
    if s is not None and "portsweep" in types:
        c = conf["sweep"]
        rule("sweep", s, c, s["ports"].to_numpy() <= c["ports"], _ratio(s["nets"].to_numpy(), c["nets"]))
    return out


def _detect_proto(rows: pd.DataFrame, proto: str, conf: dict, window: int, types: set[str], all_windows: bool, ips: np.ndarray) -> pd.DataFrame:
    scanned_kinds = types & {"portscan", "decoy_portscan", "distributed_portscan"}
    d = _track(rows, "dst", "src", window) if scanned_kinds and proto != "icmp" else None
    s = _track(rows, "src", "dst", window) if "portsweep" in types else None  # no sweep detection, no scanner tracker
    rules = _rules(d, s, conf, types, proto)
    parts = []
    for tracker_kind, tr, names in (("scanned", d, ["portscan", "decoy", "dist"]), ("scanner", s, ["sweep"])):
        if tr is None:
            continue
        names = [n + f for n in names for f in ("", "_f") if n + f in rules]
        if not names:
            continue
        if proto == "icmp" and tracker_kind == "scanned":
            continue
        # checked in Snort's order: each function tries rejects first, then scans
        fires = np.stack([rules[n][0] for n in names], axis=1)
        score = np.max(np.stack([rules[n][1] for n in names], axis=1), axis=1)
        any_fire = fires.any(axis=1)
        which = np.argmax(fires, axis=1)
        frame = tr.assign(
            src=rows["src"].to_numpy(), dst=rows["dst"].to_numpy(), t=rows["t"].to_numpy(), score=score,
            fire=any_fire, rule=np.array(names, dtype=object)[which],
        )
        parts.append(_summarise(frame, tracker_kind, proto, conf, window, all_windows, ips))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _summarise(frame: pd.DataFrame, tracker_kind: str, proto: str, conf: dict, window: int, all_windows: bool, ips: np.ndarray) -> pd.DataFrame:
    key = ["tracker", "win"]
    agg = frame.groupby(key, sort=False).agg(
        win_first_t=("win_first_t", "first"), win_open_sec=("win_open_sec", "first"), score=("score", "max"),
        attempts=("attempt", "max"), scans=("scans", "last"), rejects=("rejects", "last"), nets=("nets", "last"), ports=("ports", "last"),
    )
    frame_sorted = frame.sort_values(["tracker", "win", "t"], kind="stable")
    fired = frame_sorted[frame_sorted["fire"]].groupby(key, sort=False).head(1).set_index(key)
    agg = agg.join(fired[["t", "rule", "attempt", "src", "dst", "scans", "rejects", "nets", "ports"]].rename(
        columns={c: f"f_{c}" for c in ("t", "rule", "attempt", "src", "dst", "scans", "rejects", "nets", "ports")}), how="left")
    agg = agg.reset_index()
    agg["alert"] = agg["f_t"].notna()
    if not all_windows:
        agg = agg[agg["alert"]].reset_index(drop=True)
    if len(agg) == 0:
        return pd.DataFrame()
    alert = agg["alert"].to_numpy(dtype=bool)
    agg["tracker"] = ips[agg["tracker"].to_numpy(dtype=np.int64)]
    for column in ("f_src", "f_dst"):
        agg[column] = np.where(alert, ips[agg[column].fillna(0).to_numpy(dtype=np.int64)], None)
    base_rule = agg["f_rule"].fillna("").str.replace("_f", "", regex=False)
    entity = np.where(
        alert & base_rule.isin(["portscan", "sweep"]).to_numpy(), agg["f_src"].to_numpy(),
        np.where(alert, agg["f_dst"].to_numpy(), agg["tracker"].to_numpy()),
    )
    if tracker_kind == "scanner":
        entity = agg["tracker"].to_numpy()
    entity_kind = np.where(
        alert, np.where(base_rule.isin(["portscan", "sweep"]).to_numpy(), "source", "destination"),
        "source" if tracker_kind == "scanner" else "destination",
    )
    snort_alert = np.full(len(agg), None, dtype=object)
    snort_rule = np.full(len(agg), None, dtype=object)
    explanation = np.empty(len(agg), dtype=object)
    for i in np.flatnonzero(alert):
        r = agg.iloc[i]
        snort_alert[i], snort_rule[i] = _rule(proto, r["f_rule"])
        explanation[i] = _explain(r, snort_alert[i], tracker_kind, conf, window, entity[i])
    quiet = ~alert
    if quiet.any():
        q = agg[quiet]
        explanation[quiet] = (
            f"{proto.upper()} {tracker_kind} tracker " + q["tracker"].astype(str) + ": scans "
            + q["scans"].astype(str) + ", rejects " + q["rejects"].astype(str) + ", address changes " + q["nets"].astype(str)
            + ", port changes " + q["ports"].astype(str) + f" in a {window}-s window; no rule reached its thresholds"
        ).to_numpy()
    start_ns = agg["win_first_t"].to_numpy()
    end_ns = (agg["win_open_sec"].to_numpy() + window) * 1_000_000_000
    return pd.DataFrame(
        {
            "entity": entity,
            "window_start": start_ns,
            "window_end": np.maximum(end_ns, start_ns),
            "score": agg["score"].to_numpy(dtype=float),
            "alert": alert,
            "scan_type": base_rule.map(_SCAN_TYPE).where(alert, None).to_numpy(dtype=object),
            "first_alert_time": pd.array(agg["f_t"].astype("Int64").array),
            "attempts_to_alert": pd.array(agg["f_attempt"].astype("Int64").array),
            "explanation": explanation,
            "snort_alert": snort_alert,
            "snort_rule": snort_rule,
            "entity_kind": entity_kind,
            "snort_tracker": (f"{tracker_kind}:" + agg["tracker"].astype(str)).to_numpy(dtype=object),
        }
    )


def _explain(r: pd.Series, alert_name: str, tracker_kind: str, conf: dict, window: int, entity: str) -> str:
    rule = r["f_rule"]
    base = rule.replace("_f", "")
    c = conf[{"portscan": "ports", "decoy": "decoy", "dist": "dist", "sweep": "sweep"}[base]]
    driver = f"scans {int(r['f_scans'])} (>= {c['scans']})" if rule.endswith("_f") else f"rejects {int(r['f_rejects'])} (>= {c['rejects']})"
    limit = {"portscan": "<", "decoy": ">=", "dist": "<=", "sweep": ">="}[base]
    port_limit = "<=" if base == "sweep" else ">="
    span = fmt_span((r["f_t"] - r["win_first_t"]) / 1e9)
    tracked = f"scanned host {r['tracker']}" if tracker_kind == "scanned" else f"scanner {r['tracker']}"
    return (
        f"{alert_name} on {tracked} (entity {entity}): {driver}, address changes {int(r['f_nets'])} ({limit} {c['nets']}), "
        f"port changes {int(r['f_ports'])} ({port_limit} {c['ports']}), rejects {int(r['f_rejects'])}, unanswered-or-rejected "
        f"{int(r['f_scans'])}, after {int(r['f_attempt'])} attempts in {span} of a {window}-s window"
    )
