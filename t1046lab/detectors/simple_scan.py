"""``simple-scan``: NCSA's bro-simple-scan (``scripts/scan.zeek``, Justin Azoff).

Source: ncsa/bro-simple-scan, ``scripts/scan.zeek`` (and the older ``scan.bro``), standalone
mode. Semantics reproduced here:

* Observed attempts: ``connection_attempt`` with history ``S``/``SW`` (a SYN never answered:
  canonical ``no_reply``, and ``icmp_unreachable`` / ``denied``, whose SYN Zeek also sees go
  unanswered) and ``connection_rejected`` with ``Sr``/``SWr`` (``rejected``), TCP only.
* One state per scanner (``attacks[scanner]``): the set of distinct (victim, port) attempts,
  a per-port count of distinct attempts, and up to ``dark_host_threshold`` = 3 dark victims.
  The table has ``&read_expire = scan_timeout`` = 15 min: a scanner silent for longer than
  that starts again from nothing (every attempt, new or repeated, refreshes it).
* Thresholds on distinct (host, port) attempts: ``scan_threshold`` = 25 for remote scanners,
  ``local_scan_threshold`` = 250 for scanners inside ``local_nets``; once the scanner has hit
  3 addresses in ``dark_nets`` they drop to ``scan_threshold_with_darknet_hits`` = 10 and
  ``local_scan_threshold_with_darknet_hits`` = 100.
* "knock-knock" (remote scanners only): the count of distinct hosts on the current attempt's
  port reaching ``knockknock_threshold`` = 20 (3 after the darknet hits) also fires, with a
  ``kk:`` prefix on the message. Set ``knockknock_threshold=0`` to turn it off (as in the older
  ``scan.bro``, which had no knock-knock rule).
* On a notice the scanner's state is deleted and the scanner is ignored while it stays in
  ``known_scanners`` (``suppress_for`` = 1 h, the notice suppression interval), after which
  it starts again from nothing. A scan that lasts hours is therefore one alert per hour at
  most, and one alert if it stops within the hour.
* The class comes from ``analyze_unique_hostports`` over the attempts at the notice:
  one port → ``Address_Scan``; one victim → ``Port_Scan``; ≤ 5 ports → ``Address_Scan``;
  ≤ 5 victims → ``Port_Scan``; otherwise ``Random_Scan``. Mapped to ``scan_type``:
  Address_Scan → ``horizontal``, Port_Scan → ``vertical``, Random_Scan → ``block`` (many hosts
  × many ports: the design's name for a block scan; ncsa calls it random).

``local_nets`` and ``dark_nets`` are lists of CIDRs (Zeek's ``Site::local_nets`` and the
bro-is-darknet plugin's ``Site::darknet_nets``); by default every scanner is remote and
no address is dark.

What it cannot see: UDP and ICMP scans, connect() scans of open ports (established
connections are not attempts), scans split across scanners, and a scanner that pauses more
than 15 minutes between attempts (the state expires, so a very slow scan never accumulates).

Alerts: one row per scanner state (from its first attempt to the notice); with
``all_windows=True`` also the states that expired without a notice. ``score`` is the largest
ratio of a checked count to its threshold (≥ 1 exactly when it fired). ``attempts_to_alert``
counts the scanner's observed attempts (repeats included) from the state's first to the one
that fired. Extra column ``zeek_notice`` (``Scan::Address_Scan`` …).

Complexity: the state machine is path dependent only through notices (a notice deletes the
state and mutes the scanner), so the code loops once per *notice round*, vectorised over all
scanners each time: O(n · r) with r the most notices of one scanner (≤ 24 a day with the
1-hour suppression); idle expiry, distinct counts and per-port counts are cumulative sums.
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
    group_starts,
    in_networks,
    ns_times,
    parse_networks,
    positive_int,
    to_seconds,
    ts_from_ns,
)
from ._registry import register_detector

NAME = "simple-scan"

PARAMS = {
    "scan_threshold": 25,
    "local_scan_threshold": 250,
    "scan_threshold_with_darknet_hits": 10,
    "local_scan_threshold_with_darknet_hits": 100,
    "knockknock_threshold": 20,
    "knockknock_threshold_with_darknet_hits": 3,
    "dark_host_threshold": 3,
    "scan_timeout": "15min",
    "suppress_for": "1h",
    "local_nets": None,
    "dark_nets": None,
}

_SCAN_TYPE = {"Address_Scan": "horizontal", "Port_Scan": "vertical", "Random_Scan": "block"}


@register_detector(
    NAME,
    params=PARAMS,
    partition_by="source_ip",
    description="ncsa bro-simple-scan: distinct failed (host, port) per scanner, 25 remote / 250 local, darknet lowering, 15-min idle expiry",
    source="ncsa/bro-simple-scan scripts/scan.zeek",
)
def simple_scan(conns: pd.DataFrame, *, all_windows: bool = False, **params: Any) -> pd.DataFrame:
    """Run bro-simple-scan over a canonical connections frame; see the module docstring."""
    check_conns(conns)
    p = _validate(params)
    transport = conns["network_transport"].astype("object").to_numpy()
    outcome = conns["conn_outcome"].astype("object").to_numpy()
    # icmp_unreachable and denied are SYNs Zeek sees go unanswered (history "S")
    mask = (transport == "tcp") & np.isin(outcome, ["no_reply", "rejected", "icmp_unreachable", "denied"])
    mask &= conns["source_ip"].notna().to_numpy() & conns["destination_ip"].notna().to_numpy() & conns["destination_port"].notna().to_numpy()
    if not mask.any():
        return _empty()
    frame = pd.DataFrame(
        {
            "src": conns["source_ip"].astype("object").to_numpy()[mask],
            "dst": conns["destination_ip"].astype("object").to_numpy()[mask],
            "port": pd.to_numeric(conns["destination_port"], errors="coerce").to_numpy()[mask].astype(np.int64),
            "t": ns_times(conns["event_start"])[mask],
        }
    ).sort_values(["src", "t"], kind="stable").reset_index(drop=True)
    frame["g"] = pd.factorize(frame["src"])[0]
    frame["dark"] = in_networks(frame["dst"], p["dark_nets"])
    src_codes, src_uniques = pd.factorize(frame["src"])
    local_by_group = in_networks(pd.Series(src_uniques), p["local_nets"])
    frame["local"] = local_by_group[frame["g"].to_numpy()]
    states = _run(frame, p)
    if not all_windows:
        states = states[states["alert"]]
    if len(states) == 0:
        return _empty()
    return _to_alerts(states)


def _validate(params: dict[str, Any]) -> dict[str, Any]:
    p = dict(params)
    for name in ("scan_threshold", "local_scan_threshold", "scan_threshold_with_darknet_hits",
                 "local_scan_threshold_with_darknet_hits", "dark_host_threshold"):
        p[name] = positive_int(p[name], name)
    for name in ("knockknock_threshold", "knockknock_threshold_with_darknet_hits"):
        p[name] = positive_int(p[name], name, allow_zero=True)
    p["scan_timeout_ns"] = int(round(to_seconds(p["scan_timeout"], "scan_timeout") * 1e9))
    p["suppress_ns"] = int(round(to_seconds(p["suppress_for"], "suppress_for") * 1e9))
    p["local_nets"] = parse_networks(p["local_nets"], "local_nets")
    p["dark_nets"] = parse_networks(p["dark_nets"], "dark_nets")
    return p


def _run(frame: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Follow every scanner's state through notices; one summary row per state."""
    n = len(frame)
    g = frame["g"].to_numpy()
    t = frame["t"].to_numpy()
    n_groups = int(g.max()) + 1
    group_end = np.searchsorted(g, np.arange(n_groups), side="right")
    start = np.searchsorted(g, np.arange(n_groups), side="left")  # first live row per scanner
    live_group = np.ones(n_groups, dtype=bool)
    summaries = []
    while live_group.any():
        alive = (np.arange(n) >= start[g]) & live_group[g]
        rows = np.flatnonzero(alive)
        if len(rows) == 0:
            break
        sub = frame.iloc[rows].reset_index(drop=True)
        computed = _evaluate(sub, p)
        fired = computed["fire"].to_numpy()
        sg = sub["g"].to_numpy()
        # first notice per scanner in this round; everything after it (until the mute ends) is ignored
        first_fire = np.full(n_groups, -1, dtype=np.int64)
        fi = np.flatnonzero(fired)
        if len(fi):
            fg = sg[fi]
            keep = np.ones(len(fi), dtype=bool)
            keep[1:] = fg[1:] != fg[:-1]
            first_fire[fg[keep]] = fi[keep]
        pos = np.arange(len(sub))
        cut = first_fire[sg]
        upto = (cut < 0) | (pos <= cut)
        summaries.append(_summarise(computed[upto], fired_rows=set(fi[keep]) if len(fi) else set()))
        # next round: scanners that fired restart after the mute; the others are finished
        fired_groups = np.flatnonzero(first_fire >= 0)
        live_group[:] = False
        if len(fired_groups):
            mute_end = sub["t"].to_numpy()[first_fire[fired_groups]] + p["suppress_ns"]
            # first row of the scanner at or after the end of the mute
            nxt = np.array([start_ + np.searchsorted(t[start_:end_], m, side="left") for start_, end_, m in
                            zip(start[fired_groups], group_end[fired_groups], mute_end)], dtype=np.int64)
            again = nxt < group_end[fired_groups]
            start[fired_groups[again]] = nxt[again]
            live_group[fired_groups[again]] = True
    return pd.concat(summaries, ignore_index=True) if summaries else pd.DataFrame()


def _evaluate(sub: pd.DataFrame, p: dict[str, Any]) -> pd.DataFrame:
    """Counts and the notice condition at every attempt, states split on idle expiry."""
    g = sub["g"].to_numpy()
    t = sub["t"].to_numpy()
    new_group = group_starts(g)
    gap = np.zeros(len(t), dtype=np.int64)
    gap[1:] = t[1:] - t[:-1]
    new_state = new_group | (gap > p["scan_timeout_ns"])
    state = np.cumsum(new_state) - 1
    frame = sub.assign(state=state)
    new = ~frame.duplicated(["state", "dst", "port"]).to_numpy()
    n_attempts = group_cumsum(new.astype(np.int64), new_state)
    n_seen = group_cumsum(np.ones(len(t), dtype=np.int64), new_state)
    port_count = pd.Series(new.astype(np.int64)).groupby([state, frame["port"].to_numpy()], sort=False).cumsum().to_numpy()
    first_victim = ~frame.duplicated(["state", "dst"]).to_numpy()
    first_port = ~frame.duplicated(["state", "port"]).to_numpy()
    n_victims = group_cumsum(first_victim.astype(np.int64), new_state)
    n_ports = group_cumsum(first_port.astype(np.int64), new_state)
    # a dark victim is remembered when its attempt is new, until dark_host_threshold of them
    n_dark = np.minimum(group_cumsum((first_victim & frame["dark"].to_numpy()).astype(np.int64), new_state), p["dark_host_threshold"])
    darknet = n_dark >= p["dark_host_threshold"]
    local = frame["local"].to_numpy()
    thresh = np.where(
        local,
        np.where(darknet, p["local_scan_threshold_with_darknet_hits"], p["local_scan_threshold"]),
        np.where(darknet, p["scan_threshold_with_darknet_hits"], p["scan_threshold"]),
    )
    knock = np.where(darknet, p["knockknock_threshold_with_darknet_hits"], p["knockknock_threshold"])
    knock_on = ~local & (knock > 0)
    is_scan = n_attempts >= thresh
    is_knock = knock_on & (port_count >= np.maximum(knock, 1))
    fire = new & (is_scan | is_knock)
    ratio = n_attempts / thresh
    ratio = np.where(knock_on, np.maximum(ratio, port_count / np.maximum(knock, 1)), ratio)
    checked = np.where(new, ratio, 0.0)  # repeated attempts return before any check
    return frame.assign(
        new=new, n_attempts=n_attempts, n_seen=n_seen, port_count=port_count, n_victims=n_victims, n_ports=n_ports,
        n_dark=n_dark, thresh=thresh, knock=knock, is_scan=is_scan, knock_fired=is_knock & ~is_scan,
        fire=fire, checked=checked,
    )


def _summarise(frame: pd.DataFrame, fired_rows: set[int]) -> pd.DataFrame:
    """One row per state: span, best score, and the notice when it fired."""
    if len(frame) == 0:
        return pd.DataFrame()
    key = ["g", "state"]
    agg = frame.groupby(key, sort=False).agg(
        src=("src", "first"), first_t=("t", "min"), last_t=("t", "max"), score=("checked", "max"),
        n_attempts=("n_attempts", "max"), n_seen=("n_seen", "max"), n_victims=("n_victims", "max"),
        n_ports=("n_ports", "max"), n_dark=("n_dark", "max"), local=("local", "first"), thresh=("thresh", "last"),
    )
    fired = frame[frame["fire"]].groupby(key, sort=False).head(1)
    agg["alert"] = False
    agg["fire_t"] = pd.array([None] * len(agg), dtype="Int64")
    agg["note"] = None
    agg["kk"] = False
    if len(fired):
        idx = pd.MultiIndex.from_frame(fired[key])
        agg.loc[idx, "alert"] = True
        agg.loc[idx, "fire_t"] = fired["t"].to_numpy()
        agg.loc[idx, "kk"] = fired["knock_fired"].to_numpy()
        agg.loc[idx, "thresh"] = fired["thresh"].to_numpy()
        # the frame stops at each scanner's first notice, so a fired state's rows are all up to it
        in_fired = pd.MultiIndex.from_frame(frame[key]).isin(idx)
        notes = {k: _analyze(rows) for k, rows in frame[in_fired].groupby(key, sort=False)}
        agg.loc[idx, "note"] = pd.Series([notes[k] for k in idx], index=idx, dtype=object)
    return agg.reset_index(drop=True)


def _analyze(rows: pd.DataFrame) -> tuple[str, str]:
    """``analyze_unique_hostports`` over the attempts up to the notice: (class, message)."""
    ports = sorted(pd.unique(rows["port"]))
    victims = sorted(pd.unique(rows["dst"]))
    if len(ports) == 1:
        return "Address_Scan", f"{len(victims)} unique hosts on port {ports[0]}/tcp"
    if len(victims) == 1:
        return "Port_Scan", f"{len(ports)} unique ports on host {victims[0]}"
    if len(ports) <= 5:
        return "Address_Scan", f"{len(victims)} unique hosts on ports {', '.join(f'{q}/tcp' for q in ports)}"
    if len(victims) <= 5:
        return "Port_Scan", f"{len(ports)} unique ports on hosts {', '.join(victims)}"
    return "Random_Scan", f"{len(victims)} hosts on {len(ports)} ports"


def _to_alerts(states: pd.DataFrame) -> pd.DataFrame:
    states = states.sort_values(["first_t", "src"], kind="stable").reset_index(drop=True)
    alert = states["alert"].to_numpy(dtype=bool)
    end = np.where(alert, states["fire_t"].fillna(0).to_numpy(dtype=np.int64), states["last_t"].to_numpy())
    side = np.where(states["local"].to_numpy(dtype=bool), "local", "remote")
    explanation = np.empty(len(states), dtype=object)
    scan_type = np.full(len(states), None, dtype=object)
    notice = np.full(len(states), None, dtype=object)
    for i in np.flatnonzero(alert):
        cls, msg = states.at[i, "note"]
        r = states.iloc[i]
        scan_type[i] = _SCAN_TYPE[cls]
        notice[i] = f"Scan::{cls}"
        dur = fmt_span((end[i] - r["first_t"]) / 1e9)
        rule = (
            "the distinct hosts on one port reached the knock-knock threshold" if r["kk"] else
            f"{int(r['n_attempts'])} distinct failed (host, port) attempts reached the threshold {int(r['thresh'])}"
        )
        explanation[i] = (
            f"{'kk: ' if r['kk'] else ''}Scan::{cls}: {r['src']} scanned at least {msg} in {dur} "
            f"({side[i]}; {rule}; {int(r['n_dark'])} dark hosts)"
        )
    quiet = ~alert
    if quiet.any():
        explanation[quiet] = (
            states.loc[quiet, "n_attempts"].astype(str) + " distinct failed (host, port) attempts by "
            + states.loc[quiet, "src"].astype(str) + " (" + pd.Series(side[quiet], index=states.index[quiet])
            + ", threshold " + states.loc[quiet, "thresh"].astype(str) + ") before the state expired"
        ).to_numpy()
    attempts = states["n_seen"].to_numpy()  # a fired state's summary stops at the firing attempt
    frame = make_alerts(
        {
            "entity": states["src"].to_numpy(),
            "window_start": ts_from_ns(states["first_t"].to_numpy()),
            "window_end": ts_from_ns(end),
            "score": states["score"].to_numpy(dtype=float),
            "alert": alert,
            "scan_type": scan_type,
            "first_alert_time": ts_from_ns(np.where(alert, end, None).astype(object)),
            "attempts_to_alert": pd.array(np.where(alert, attempts, None).astype(object), dtype="Int64"),
            "explanation": explanation,
        },
        detector=NAME,
    )
    frame["zeek_notice"] = pd.array(notice, dtype="string")
    return frame


def _empty() -> pd.DataFrame:
    return empty_alerts().assign(zeek_notice=pd.Series([], dtype="string"))
