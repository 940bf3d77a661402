"""``trw``: Threshold Random Walk, a sequential hypothesis test on first-contact outcomes.

Source: J. Jung, V. Paxson, A. W. Berger, H. Balakrishnan, "Fast Portscan Detection Using
Sequential Hypothesis Testing", IEEE Symposium on Security and Privacy, 2004.

Semantics reproduced here:

* Only *first contacts* count: the first connection attempt from a remote source to each
  distinct destination host. Later attempts to a host already contacted (any port) are
  ignored. Its outcome is a Bernoulli trial: success (``established``) or failure
  (``rejected``, ``no_reply``, ``icmp_unreachable``, ``denied``); attempts whose outcome is
  unknown or partial are not trials (and do not use up the host's first contact).
* H0 (benign): P[success] = θ0 = 0.8; H1 (scanner): P[success] = θ1 = 0.2. After each trial the
  likelihood ratio Λ = P[Y | H1] / P[Y | H0] is multiplied by θ1/θ0 = 1/4 on a success and by
  (1 − θ1)/(1 − θ0) = 4 on a failure (Wald's SPRT, Λ starts at 1).
* Thresholds from the target detection and false-positive probabilities P_D = 0.99 and
  P_F = 0.01: η1 = P_D / P_F = 99 and η0 = (1 − P_D)/(1 − P_F) = 1/99. Λ ≥ η1 → scanner;
  Λ ≤ η0 → benign. With the defaults, 4 consecutive failures give Λ = 256 ≥ 99 (3 give 64) and
  4 consecutive successes give Λ = 1/256 ≤ 1/99 (3 give 1/64).
* After "scanner" the source is flagged and the walk stops (one alert per source, however
  long its scan). After "benign": the paper's trace evaluation gives each remote host one
  outcome (scanner, benign or pending); an online monitor that stopped there would trust a
  host forever after four good connections, which is the evasion the paper's discussion
  warns of. So by default the walk restarts at Λ = 1 (``after_benign="restart"``);
  ``after_benign="stop"`` reproduces the one-outcome-per-host evaluation.
* Remote sources and local destinations: ``local_nets`` (CIDRs) restricts the test, as in the
  paper, to sources outside and destinations inside those networks; by default every source
  and every destination is scored. ``transports`` = ``["tcp"]`` (the paper's TCP analysis).

What it cannot see: vertical scans of one host (one first contact, so never a decision),
scans answered mostly by open services, and scanners that mix enough successful first
contacts (e.g. to popular servers) to keep Λ below η1.

Alerts: one row per walk: from its first trial to its decision (``scanner`` or ``benign``),
or to the source's last trial (``pending``); ``score`` = log Λ at that point;
``attempts_to_alert`` = the number of first contacts the walk took to decide. Only scanner
decisions alert; ``all_windows=True`` also returns benign and pending walks. ``scan_type``
is ``horizontal`` when the walk's first contacts used at most 5 ports, ``block`` otherwise.
Extra columns: ``trw_decision``, ``first_contacts``, ``failures``.

Complexity: first contacts with one ``duplicated``; the walk is path dependent only through
restarts, so the code loops per *decision*, vectorised over every source at once, reading a
block of 32 trials per source per step: O(n + Σ_sources (trials/32 + decisions)) numpy steps.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..alerts import empty_alerts, make_alerts
from ..schema import FAILED_OUTCOMES
from ._common import check_conns, in_networks, ns_times, parse_networks, ts_from_ns
from ._registry import register_detector

NAME = "trw"

PARAMS = {
    "theta0": 0.8,
    "theta1": 0.2,
    "p_detect": 0.99,
    "p_false": 0.01,
    "local_nets": None,
    "transports": ["tcp"],
    "after_benign": "restart",
}

_BLOCK = 32
_EPS = 1e-9  # Λ exactly at a threshold counts as reaching it, despite float rounding of log sums


def thresholds(theta0: float, theta1: float, p_detect: float, p_false: float) -> dict[str, float]:
    """The walk's steps and thresholds, in natural logs: success, failure, log η1, log η0."""
    return {
        "success": math.log(theta1 / theta0),
        "failure": math.log((1 - theta1) / (1 - theta0)),
        "upper": math.log(p_detect / p_false),
        "lower": math.log((1 - p_detect) / (1 - p_false)),
    }


@register_detector(
    NAME,
    params=PARAMS,
    partition_by="source_ip",
    description="Threshold Random Walk: SPRT on first-contact outcomes (θ0=0.8, θ1=0.2, P_D=0.99, P_F=0.01)",
    source="Jung, Paxson, Berger, Balakrishnan, Fast Portscan Detection Using Sequential Hypothesis Testing, IEEE S&P 2004",
    choices={"after_benign": ("restart", "stop"), "transports": ("tcp", "udp", "icmp", "icmpv6", "other")},
)
def trw(conns: pd.DataFrame, *, all_windows: bool = False, **params: Any) -> pd.DataFrame:
    """Run the Threshold Random Walk over a canonical connections frame; see the module docstring."""
    check_conns(conns)
    theta0, theta1, p_d, p_f = (_probability(params[k], k) for k in ("theta0", "theta1", "p_detect", "p_false"))
    if not theta1 < theta0:
        raise ValueError(f"theta1 (P[success | scanner]) must be below theta0 (P[success | benign]); got theta0={theta0}, theta1={theta1}")
    if not p_f < p_d:
        raise ValueError(f"p_false must be below p_detect; got p_detect={p_d}, p_false={p_f}")
    steps = thresholds(theta0, theta1, p_d, p_f)
    transports = [params["transports"]] if isinstance(params["transports"], str) else list(params["transports"])
    local = parse_networks(params["local_nets"], "local_nets")

    outcome = conns["conn_outcome"].astype("object").to_numpy()
    success = outcome == "established"
    failure = np.isin(outcome, [str(o) for o in FAILED_OUTCOMES])
    mask = (success | failure) & np.isin(conns["network_transport"].astype("object").to_numpy(), transports)
    mask &= conns["source_ip"].notna().to_numpy() & conns["destination_ip"].notna().to_numpy()
    if local:
        mask &= ~in_networks(conns["source_ip"], local) & in_networks(conns["destination_ip"], local)
    frame = pd.DataFrame(
        {
            "src": conns["source_ip"].astype("object").to_numpy()[mask],
            "dst": conns["destination_ip"].astype("object").to_numpy()[mask],
            "port": pd.to_numeric(conns["destination_port"], errors="coerce").to_numpy()[mask],
            "t": ns_times(conns["event_start"])[mask],
            "failed": failure[mask],
        }
    ).sort_values(["src", "t"], kind="stable")
    first = frame[~frame.duplicated(["src", "dst"])].reset_index(drop=True)
    if len(first) == 0:
        return _empty()
    g = pd.factorize(first["src"])[0]
    x = np.where(first["failed"].to_numpy(), steps["failure"], steps["success"])
    walks = _walk(g, x, steps["upper"], steps["lower"], restart=params["after_benign"] == "restart")
    if not all_windows:
        walks = walks[walks["decision"] == "scanner"]
    if len(walks) == 0:
        return _empty()
    return _to_alerts(first, walks, steps, dict(theta0=theta0, theta1=theta1, p_d=p_d, p_f=p_f))


def _probability(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not 0 < float(value) < 1:
        raise ValueError(f"{name} must be a probability strictly between 0 and 1, got {value!r}")
    return float(value)


def _walk(g: np.ndarray, x: np.ndarray, upper: float, lower: float, *, restart: bool) -> pd.DataFrame:
    """Run every source's walk; one row per walk: (group, first, last, decision, log Λ)."""
    n = len(g)
    n_groups = int(g.max()) + 1
    gstart = np.searchsorted(g, np.arange(n_groups), side="left")
    gend = np.searchsorted(g, np.arange(n_groups), side="right")
    pos = gstart.copy()
    walk_start = gstart.copy()
    level = np.zeros(n_groups)
    active = pos < gend
    out_g, out_first, out_last, out_kind, out_level = [], [], [], [], []
    offsets = np.arange(_BLOCK)
    while active.any():
        a = np.flatnonzero(active)
        idx = pos[a][:, None] + offsets
        valid = idx < gend[a][:, None]
        cs = level[a][:, None] + np.cumsum(np.where(valid, x[np.minimum(idx, n - 1)], 0.0), axis=1)
        up = valid & (cs >= upper - _EPS)
        down = valid & (cs <= lower + _EPS)
        hit = up | down
        decided = hit.any(axis=1)
        k = np.argmax(hit, axis=1)
        # decisions in this block
        d, kd = a[decided], k[decided]
        if len(d):
            last = pos[d] + kd
            is_up = up[decided, kd]
            out_g.append(d)
            out_first.append(walk_start[d])
            out_last.append(last)
            out_kind.append(np.where(is_up, "scanner", "benign"))
            out_level.append(cs[decided, kd])
            again = ~is_up & restart & (last + 1 < gend[d])
            active[d] = again
            pos[d] = last + 1
            walk_start[d] = last + 1
            level[d] = 0.0
        # no decision yet: carry Λ over to the next block, or end as pending
        u = a[~decided]
        if len(u):
            n_valid = valid[~decided].sum(axis=1)
            level[u] = cs[~decided, n_valid - 1]
            pos[u] = pos[u] + n_valid
            ended = pos[u] >= gend[u]
            e = u[ended]
            if len(e):
                out_g.append(e)
                out_first.append(walk_start[e])
                out_last.append(gend[e] - 1)
                out_kind.append(np.full(len(e), "pending", dtype=object))
                out_level.append(level[e])
                active[e] = False
    if not out_g:
        return pd.DataFrame(columns=["g", "first", "last", "decision", "log_lr"])
    return pd.DataFrame(
        {
            "g": np.concatenate(out_g),
            "first": np.concatenate(out_first),
            "last": np.concatenate(out_last),
            "decision": np.concatenate(out_kind).astype(object),
            "log_lr": np.concatenate(out_level),
        }
    ).sort_values(["g", "first"], kind="stable").reset_index(drop=True)


def _to_alerts(first: pd.DataFrame, walks: pd.DataFrame, steps: dict[str, float], p: dict[str, float]) -> pd.DataFrame:
    t = first["t"].to_numpy()
    failed = first["failed"].to_numpy().astype(np.int64)
    cum_fail = np.concatenate([[0], np.cumsum(failed)])
    lo, hi = walks["first"].to_numpy(), walks["last"].to_numpy()
    n_trials = hi - lo + 1
    n_fail = cum_fail[hi + 1] - cum_fail[lo]
    # distinct ports among the walk's first contacts, for the scan type
    walk_of_row = np.repeat(np.arange(len(walks)), n_trials)
    offsets = np.cumsum(n_trials) - n_trials
    row_idx = np.repeat(lo, n_trials) + (np.arange(int(n_trials.sum())) - np.repeat(offsets, n_trials))
    ports = pd.DataFrame({"w": walk_of_row, "port": first["port"].to_numpy()[row_idx]}).groupby("w")["port"].nunique()
    n_ports = ports.reindex(np.arange(len(walks)), fill_value=0).to_numpy()
    decision = walks["decision"].to_numpy()
    alert = decision == "scanner"
    src = first["src"].to_numpy()[lo]
    lam = np.exp(walks["log_lr"].to_numpy())
    eta1, eta0 = math.exp(steps["upper"]), math.exp(steps["lower"])
    params_text = f"θ0={p['theta0']:g}, θ1={p['theta1']:g}, P_D={p['p_d']:g}, P_F={p['p_f']:g}"
    verdict = np.where(
        alert, f"≥ η1 = {eta1:.4g}: scanner",
        np.where(decision == "benign", f"≤ η0 = {eta0:.4g}: benign", f"between η0 = {eta0:.4g} and η1 = {eta1:.4g}: pending"),
    )
    explanation = (
        pd.Series(src, dtype=object).astype(str) + ": " + pd.Series(n_fail).astype(str) + " of "
        + pd.Series(n_trials).astype(str) + " first contacts failed ("
        + pd.Series(n_trials - n_fail).astype(str) + " succeeded) on "
        + pd.Series(n_ports).astype(str) + " ports; Λ = " + pd.Series(lam).map(lambda v: f"{v:.4g}")
        + " " + pd.Series(verdict) + f" ({params_text})"
    ).to_numpy()
    frame = make_alerts(
        {
            "entity": src,
            "window_start": ts_from_ns(t[lo]),
            "window_end": ts_from_ns(t[hi]),
            "score": walks["log_lr"].to_numpy(dtype=float),
            "alert": alert,
            "scan_type": np.where(alert, np.where(n_ports <= 5, "horizontal", "block"), None),
            "first_alert_time": ts_from_ns(np.where(alert, t[hi], None).astype(object)),
            "attempts_to_alert": pd.array(np.where(alert, n_trials, None).astype(object), dtype="Int64"),
            "explanation": explanation,
        },
        detector=NAME,
    )
    frame["trw_decision"] = pd.array(decision, dtype="string")
    frame["first_contacts"] = pd.array(n_trials, dtype="Int64")
    frame["failures"] = pd.array(n_fail, dtype="Int64")
    return frame.sort_values(["window_start", "entity"], kind="stable").reset_index(drop=True)


def _empty() -> pd.DataFrame:
    return empty_alerts().assign(
        trw_decision=pd.Series([], dtype="string"),
        first_contacts=pd.Series([], dtype="Int64"),
        failures=pd.Series([], dtype="Int64"),
    )
