"""Sanctioned scanners: a registry with scope, schedule and expiry, so allowlists are not blind spots.

A vulnerability scanner, an asset-discovery job or a penetration test looks exactly like an
attack on the wire. Rather than allowlisting its address forever, each sanctioned scanner is
an entry in a TOML registry saying *who* may scan *what*, *when*, *until when* and *why*::

    [[scanner]]
    name = "qualys-weekly"
    owner = "vuln-mgmt@example.com"
    ticket = "SEC-1234"
    sources = ["10.20.0.5/32"]
    targets = ["10.0.0.0/16"]
    ports = ["1-1024", 3389]          # optional; all ports when absent
    timezone = "Europe/Berlin"
    expires = 2027-03-31              # the last day the entry is valid (in its time zone)

    [[scanner.schedule]]              # optional; any time when absent
    days = ["Sat", "Sun"]
    start = "01:00"
    end = "05:00"

:func:`apply` suppresses an alert only when *every* connection behind it is inside an entry's
scope and schedule and before its expiry; otherwise the alert is escalated with the reason
("sanctioned scanner out of scope"). :func:`review` reports expired, expiring, unused, overly
broad and out-of-scope entries, so that exceptions are reviewed regularly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from ._ip import Network, in_networks, parse_networks
from .alerts import validate_alerts

__all__ = ["ScannerEntry", "Registry", "load_registry", "apply", "review", "PolicyError"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Sources broader than this many addresses make an entry "broad" in the review.
BROAD_SOURCE_ADDRESSES = 256


class PolicyError(ValueError):
    """The registry is malformed; the message names the file and the entry."""


@dataclasses.dataclass(frozen=True)
class ScheduleSlot:
    """A weekly time slot: the given weekdays (0 = Monday), from ``start`` to ``end`` minutes after midnight.

    ``end <= start`` means the slot runs past midnight into the next day.
    """

    days: tuple[int, ...]
    start_minute: int
    end_minute: int

    def contains(self, weekday: np.ndarray, minute: np.ndarray) -> np.ndarray:
        days = np.asarray(self.days)
        if self.end_minute > self.start_minute:
            return np.isin(weekday, days) & (minute >= self.start_minute) & (minute < self.end_minute)
        # Overnight: the evening part on a listed day, the morning part on the day after.
        evening = np.isin(weekday, days) & (minute >= self.start_minute)
        morning = np.isin(weekday, (days + 1) % 7) & (minute < self.end_minute)
        return evening | morning


@dataclasses.dataclass(frozen=True)
class ScannerEntry:
    """One sanctioned scanner of the registry."""

    name: str
    owner: str
    sources: tuple[Network, ...]
    targets: tuple[Network, ...]
    ports: tuple[tuple[int, int], ...] | None  # inclusive ranges; None = every port
    schedule: tuple[ScheduleSlot, ...] | None  # None = any time
    timezone: str
    expires: dt.date
    ticket: str = ""
    description: str = ""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def expires_at(self) -> pd.Timestamp:
        """The first instant after the entry's last valid day, in UTC."""
        end = dt.datetime.combine(self.expires + dt.timedelta(days=1), dt.time(), tzinfo=self.tz)
        return pd.Timestamp(end).tz_convert("UTC")

    def source_addresses(self) -> int:
        return sum(n.num_addresses for n in self.sources)


@dataclasses.dataclass(frozen=True)
class Registry:
    """The sanctioned-scanner registry: entries with unique names."""

    entries: tuple[ScannerEntry, ...]
    path: str = "<memory>"

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def to_frame(self) -> pd.DataFrame:
        """One row per entry, for display."""
        return pd.DataFrame(
            [
                {
                    "name": e.name,
                    "owner": e.owner,
                    "ticket": e.ticket,
                    "sources": ", ".join(map(str, e.sources)),
                    "targets": ", ".join(map(str, e.targets)),
                    "ports": "all" if e.ports is None else ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in e.ports),
                    "schedule": "any time" if e.schedule is None else _describe_schedule(e.schedule),
                    "timezone": e.timezone,
                    "expires": e.expires,
                }
                for e in self.entries
            ]
        )


# --- loading ---------------------------------------------------------------------------


def load_registry(source: str | Path | dict[str, Any]) -> Registry:
    """Load and validate a registry from a TOML file, a TOML string, or a parsed mapping.

    Raises
    ------
    PolicyError
        Naming the file, the entry and the field at fault.
    """
    if isinstance(source, dict):
        data, where = source, "<mapping>"
    else:
        is_text = isinstance(source, str) and ("\n" in source or "[[" in source)
        where = "<string>" if is_text else str(source)
        try:
            text = source if is_text else Path(source).read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except FileNotFoundError:
            raise PolicyError(f"{where}: no such registry file") from None
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{where}: not valid TOML: {exc}") from None
    raw_entries = data.get("scanner", [])
    if not isinstance(raw_entries, list):
        raise PolicyError(f"{where}: 'scanner' must be an array of tables ([[scanner]])")
    unknown_top = set(data) - {"scanner"}
    if unknown_top:
        raise PolicyError(f"{where}: unknown top-level keys {sorted(unknown_top)}; entries go in [[scanner]] tables")
    entries = [_parse_entry(raw, i, where) for i, raw in enumerate(raw_entries)]
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PolicyError(f"{where}: duplicate entry names {dupes}")
    return Registry(tuple(entries), where)


_ENTRY_KEYS = {"name", "owner", "ticket", "description", "sources", "targets", "ports", "schedule", "timezone", "expires"}


def _parse_entry(raw: Any, index: int, where: str) -> ScannerEntry:
    label = f"{where}: scanner entry #{index + 1}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{label}: must be a table")
    if isinstance(raw.get("name"), str):
        label = f"{where}: scanner {raw['name']!r}"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise PolicyError(f"{label}: unknown keys {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}")
    for key in ("name", "owner", "sources", "targets", "expires"):
        if key not in raw:
            raise PolicyError(f"{label}: missing required key {key!r} (an entry needs an owner, a scope and an expiry)")
    try:
        sources = tuple(parse_networks(_as_list(raw["sources"]), what="source"))
        targets = tuple(parse_networks(_as_list(raw["targets"]), what="target"))
        ports = _parse_ports(raw["ports"]) if "ports" in raw else None
        timezone = str(raw.get("timezone", "UTC"))
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}") from None
        expires = raw["expires"]
        if isinstance(expires, dt.datetime):
            expires = expires.date()
        elif isinstance(expires, str):
            expires = dt.date.fromisoformat(expires)
        if not isinstance(expires, dt.date):
            raise ValueError(f"expires must be a date like 2027-03-31, got {expires!r}")
        schedule = tuple(_parse_slot(s) for s in _as_list(raw["schedule"])) if "schedule" in raw else None
    except ValueError as exc:
        raise PolicyError(f"{label}: {exc}") from None
    if not sources or not targets:
        raise PolicyError(f"{label}: sources and targets must not be empty")
    return ScannerEntry(
        name=str(raw["name"]),
        owner=str(raw["owner"]),
        sources=sources,
        targets=targets,
        ports=ports,
        schedule=schedule,
        timezone=timezone,
        expires=expires,
        ticket=str(raw.get("ticket", "")),
        description=str(raw.get("description", "")),
    )


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse_ports(value: Any) -> tuple[tuple[int, int], ...]:
    ranges = []
    for item in _as_list(value):
        text = str(item).strip()
        low, _, high = text.partition("-")
        try:
            a, b = int(low), int(high or low)
        except ValueError:
            raise ValueError(f"port {item!r} is not a number or a range like 1-1024") from None
        if not (0 <= a <= b <= 65535):
            raise ValueError(f"port range {item!r} is outside 0-65535 or reversed")
        ranges.append((a, b))
    return tuple(ranges)


def _parse_minute(text: Any, key: str) -> int:
    try:
        t = dt.time.fromisoformat(str(text))
    except ValueError:
        if str(text) == "24:00":
            return 24 * 60
        raise ValueError(f"schedule {key} {text!r} is not a time like 01:30") from None
    return t.hour * 60 + t.minute


def _parse_slot(raw: Any) -> ScheduleSlot:
    if not isinstance(raw, dict):
        raise ValueError("each schedule item must be a table with days, start and end")
    unknown = set(raw) - {"days", "start", "end"}
    if unknown:
        raise ValueError(f"unknown schedule keys {sorted(unknown)}")
    days = []
    for d in _as_list(raw.get("days", list(_DAYS))):
        key = str(d).strip().lower()[:3]
        if key not in _DAYS:
            raise ValueError(f"schedule day {d!r} is not a weekday name")
        days.append(_DAYS.index(key))
    start = _parse_minute(raw.get("start", "00:00"), "start")
    end = _parse_minute(raw.get("end", "24:00"), "end")
    if start == end:
        raise ValueError("schedule start and end are equal: the slot would be empty")
    return ScheduleSlot(tuple(sorted(set(days))), start, end)


def _describe_schedule(slots: Sequence[ScheduleSlot]) -> str:
    parts = []
    for s in slots:
        days = ",".join(_DAYS[d].title() for d in s.days)
        parts.append(f"{days} {s.start_minute // 60:02d}:{s.start_minute % 60:02d}-{s.end_minute // 60:02d}:{s.end_minute % 60:02d}")
    return "; ".join(parts)


# --- applying --------------------------------------------------------------------------

_VIOLATIONS = ("out_of_targets", "out_of_ports", "out_of_schedule", "after_expiry")


def _violations(entry: ScannerEntry, conns: pd.DataFrame) -> pd.DataFrame:
    """Per connection of the entry's sources: which of its rules each connection breaks."""
    out = pd.DataFrame(index=conns.index)
    out["out_of_targets"] = ~in_networks(conns["destination_ip"], entry.targets)
    if entry.ports is None:
        out["out_of_ports"] = False
    else:
        port = conns["destination_port"].astype("float64").to_numpy()
        inside = np.zeros(len(conns), dtype=bool)
        for low, high in entry.ports:
            inside |= (port >= low) & (port <= high)
        # Port-less probes (ICMP) are outside a port-restricted scope.
        out["out_of_ports"] = ~inside
    local = conns["event_start"].dt.tz_convert(entry.tz)
    if entry.schedule is None:
        out["out_of_schedule"] = False
    else:
        weekday = local.dt.day_of_week.to_numpy()
        minute = (local.dt.hour * 60 + local.dt.minute).to_numpy()
        inside = np.zeros(len(conns), dtype=bool)
        for slot in entry.schedule:
            inside |= slot.contains(weekday, minute)
        out["out_of_schedule"] = ~inside
    out["after_expiry"] = (conns["event_start"] >= entry.expires_at).to_numpy()
    return out


def _reason(entry: ScannerEntry, counts: pd.Series, n: int, examples: dict[str, str]) -> str:
    parts = []
    if counts["after_expiry"]:
        parts.append(f"entry expired on {entry.expires.isoformat()} ({int(counts['after_expiry'])} of {n} attempts after it)")
    if counts["out_of_targets"]:
        parts.append(
            f"{int(counts['out_of_targets'])} of {n} attempts to targets outside "
            f"{', '.join(map(str, entry.targets))} (e.g. {examples.get('out_of_targets', '?')})"
        )
    if counts["out_of_ports"]:
        parts.append(f"{int(counts['out_of_ports'])} of {n} attempts to ports outside its scope (e.g. {examples.get('out_of_ports', '?')})")
    if counts["out_of_schedule"]:
        parts.append(
            f"{int(counts['out_of_schedule'])} of {n} attempts outside its schedule "
            f"({_describe_schedule(entry.schedule or ())} {entry.timezone})"
        )
    return f"sanctioned scanner {entry.name!r} (owner {entry.owner}) out of scope: " + "; ".join(parts)


def apply(alerts: pd.DataFrame, conns: pd.DataFrame, registry: Registry, *, by: str = "source_ip") -> pd.DataFrame:
    """Apply the sanctioned-scanner registry to an alerts frame.

    Each row whose entity is inside an entry's ``sources`` is checked against the
    connections behind it (the entity's connections in the row's window): when all of
    them are inside the entry's targets, ports and schedule and before its expiry, an
    alert is suppressed (``alert`` becomes False, ``policy_status == "suppressed"``,
    ``policy_entry`` names the entry) and a non-alerting row is ``"in_scope"``; when any
    is not, the row is escalated (``policy_status == "escalated"``, ``alert`` True, even
    if the detector had not alerted) and ``policy_reason`` says what broke the scope,
    with counts and an example. Rows of other entities get ``policy_status == "none"``.

    Pass the alerts of ``detect(..., all_windows=True)``: a detector that learned the
    scanner's role (``role-baseline``) finds its out-of-scope scanning as normal as its
    sanctioned scanning, and only the policy can tell them apart.

    Parameters
    ----------
    alerts : DataFrame
        An alerts frame (see :mod:`t1046lab.alerts`); not modified.
    conns : DataFrame
        The canonical connections the alerts were computed from.
    registry : Registry
        From :func:`load_registry`.
    by : {"source_ip"}, default "source_ip"
        The connections column the alerts' ``entity`` refers to.

    Returns
    -------
    DataFrame
        A copy of ``alerts`` with ``policy_status``, ``policy_entry``, ``policy_reason`` and
        ``alert_before_policy`` added.
    """
    validate_alerts(alerts)
    if by != "source_ip":
        raise ValueError("policy entries are scoped by scanner source address: apply it to source-side alerts (by='source_ip')")
    out = alerts.copy()
    out["alert_before_policy"] = out["alert"].to_numpy(dtype=bool)
    status = np.full(len(out), "none", dtype=object)
    entry_name = np.full(len(out), None, dtype=object)
    reason = np.full(len(out), None, dtype=object)
    positions = np.arange(len(out))
    for entry in registry:
        # Every row of the scanner's windows is checked, not only alerts: a detector that
        # learned the scanner's role finds its out-of-scope scanning normal too.
        mine = in_networks(out["entity"], entry.sources) & (status == "none")
        if not mine.any():
            continue
        scoped = out.loc[mine, ["entity", "window_start", "window_end"]].assign(_pos=positions[mine])
        sources = conns.loc[in_networks(conns[by], entry.sources)]
        joined = sources[[by, "event_start", "destination_ip", "destination_port"]].merge(
            scoped, left_on=by, right_on="entity", how="inner"
        )
        joined = joined[(joined["event_start"] >= joined["window_start"]) & (joined["event_start"] < joined["window_end"])]
        bad = _violations(entry, joined)
        per_alert = bad.groupby(joined["_pos"].to_numpy()).sum()
        n_per_alert = joined.groupby("_pos").size()
        example_target = joined.loc[bad["out_of_targets"], ["_pos", "destination_ip"]].groupby("_pos")["destination_ip"].first()
        example_port = joined.loc[bad["out_of_ports"], ["_pos", "destination_port"]].groupby("_pos")["destination_port"].first()
        fired = out["alert_before_policy"].to_numpy()
        for pos in scoped["_pos"]:  # one iteration per row, for its sentence
            entry_name[pos] = entry.name
            n = int(n_per_alert.get(pos, 0))
            if n == 0:
                if fired[pos]:
                    # An alert with no connection behind it: nothing shows it inside scope.
                    status[pos] = "escalated"
                    reason[pos] = f"sanctioned scanner {entry.name!r}: no connections found behind the alert to check its scope"
                else:
                    status[pos] = "in_scope"
                continue
            counts = per_alert.loc[pos]
            if counts.sum() == 0:
                status[pos] = "suppressed" if fired[pos] else "in_scope"
                reason[pos] = f"inside sanctioned scanner {entry.name!r} (owner {entry.owner}, ticket {entry.ticket or 'none'})"
            else:
                examples = {"out_of_targets": str(example_target.get(pos, "?")), "out_of_ports": str(example_port.get(pos, "?"))}
                status[pos] = "escalated"
                reason[pos] = _reason(entry, counts, n, examples)
    out["policy_status"] = pd.array(status, dtype="string")
    out["policy_entry"] = pd.array(entry_name, dtype="string")
    out["policy_reason"] = pd.array(reason, dtype="string")
    out["alert"] = (out["alert_before_policy"] & (status != "suppressed")) | (status == "escalated")
    return out


# --- reviewing -------------------------------------------------------------------------


def review(
    alerts: pd.DataFrame,
    registry: Registry,
    now: pd.Timestamp | dt.datetime | str | None = None,
    *,
    expiring_within: str | pd.Timedelta = "30D",
) -> pd.DataFrame:
    """Report on every registry entry so that exceptions are reviewed, not forgotten.

    Parameters
    ----------
    alerts : DataFrame
        Alerts after :func:`apply` (with ``policy_status`` and ``policy_entry``).
    registry : Registry
        The registry that was applied.
    now : timestamp, optional
        The review time (default: the current time, UTC).
    expiring_within : str or Timedelta, default "30D"
        Entries expiring within this period are flagged ``expiring``.

    Returns
    -------
    DataFrame
        One row per entry: ``name``, ``owner``, ``ticket``, ``expires``, ``suppressed``
        (alerts it suppressed), ``escalated`` (alerts it escalated), ``last_used``, and
        the flags ``expired``, ``expiring``, ``unused`` (it suppressed nothing),
        ``out_of_scope`` (its scanner acted outside its scope) and ``broad`` (its sources
        span more than :data:`BROAD_SOURCE_ADDRESSES` addresses or its targets are a
        default route), plus ``findings``, a sentence per entry.
    """
    if "policy_status" not in alerts.columns:
        raise ValueError("review() needs alerts that went through policy.apply(): policy_status is missing")
    now_ts = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    now_ts = now_ts.tz_localize("UTC") if now_ts.tzinfo is None else now_ts.tz_convert("UTC")
    horizon = pd.Timedelta(expiring_within)
    rows = []
    for entry in registry:
        mine = alerts["policy_entry"].astype("object") == entry.name
        suppressed = int((mine & (alerts["policy_status"] == "suppressed")).sum())
        escalated = int((mine & (alerts["policy_status"] == "escalated")).sum())
        last = alerts.loc[mine, "window_end"].max() if mine.any() else pd.NaT
        expired = now_ts >= entry.expires_at
        expiring = (not expired) and now_ts + horizon >= entry.expires_at
        broad = entry.source_addresses() > BROAD_SOURCE_ADDRESSES or any(t.prefixlen == 0 for t in entry.targets)
        findings = []
        if expired:
            findings.append(f"expired on {entry.expires.isoformat()}: renew it with a ticket or delete it")
        elif expiring:
            findings.append(f"expires on {entry.expires.isoformat()}, within {horizon.days} days")
        if suppressed == 0:
            findings.append("unused: it suppressed no alert in this period; delete it if the scanner is gone")
        if escalated:
            findings.append(f"its scanner acted out of scope in {escalated} alert windows")
        if broad:
            findings.append("broad: its sources or targets are wide enough to hide an attacker")
        rows.append(
            {
                "name": entry.name,
                "owner": entry.owner,
                "ticket": entry.ticket,
                "expires": entry.expires,
                "suppressed": suppressed,
                "escalated": escalated,
                "last_used": last,
                "expired": expired,
                "expiring": expiring,
                "unused": suppressed == 0,
                "out_of_scope": escalated > 0,
                "broad": broad,
                "findings": "; ".join(findings) or "ok",
            }
        )
    return pd.DataFrame(rows)
