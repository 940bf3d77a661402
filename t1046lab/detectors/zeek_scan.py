"""``zeek-scan``: Zeek's stock TCP scan detector, ``scripts/policy/misc/scan.zeek``.

Source: zeek/zeek, ``scripts/policy/misc/scan.zeek`` (Sheharbano Khattak, Seth Hall), built on
the SumStats framework. Semantics reproduced here:

* Only *failed* TCP attempts are observed: ``connection_attempt`` (a SYN with no TCP answer:
  canonical ``no_reply``, and ``icmp_unreachable`` / ``denied``), ``connection_rejected`` (answered by RST, ``rejected``) and the
  ``connection_reset`` / ``connection_pending`` cases of ``is_failed_conn`` (the originator
  resets after a SYN-ACK without either side sending data, as a SYN scanner does on an open
  port). The last case is counted when the frame shows it: an ``established`` row with zero
  bytes both ways and a RST (``tcp_flags & 4`` or an ``R`` in ``zeek_history``).
* Address scan (``Scan::Address_Scan``): per (scanner, port), the number of distinct victim
  hosts with a failed attempt; fires when it reaches ``addr_scan_threshold`` = 25.
  Port scan (``Scan::Port_Scan``): per (scanner, victim), distinct ports; threshold
  ``port_scan_threshold`` = 15. SumStats ``threshold`` fires when the value is >= the
  threshold, once per key per epoch, at the observation that reaches it.
* Epochs are SumStats epochs: tumbling, ``addr_scan_interval`` = ``port_scan_interval`` = 5 min,
  every count reset at each boundary. Zeek starts the epoch clock when it starts; reading a
  trace, that is the first packet, so epochs are anchored at the first record of the frame
  (``epoch_origin=None``) unless ``epoch_origin`` gives a time. A scan that straddles a
  boundary is split and can be missed, as Zeek misses it.

What it cannot see: UDP and ICMP scans, successful connections (a connect() scan of open
ports), scans slower than the threshold per 5 minutes (a scan spread over hours never fires),
backscatter/reverse scans (not modelled), and scans spread over many scanners. Zeek's notice
framework also suppresses repeated notices with the same identifier for an hour; the alerts
frame keeps one row per (scanner, epoch) instead.

Alerts: one row per (scanner, epoch) in which a threshold was crossed; ``scan_type`` is
``vertical`` for a port scan and ``horizontal`` for an address scan (the earlier crossing
when both fire). ``score`` is the largest distinct count over its threshold in the epoch.
``attempts_to_alert`` counts the scanner's failed attempts in the epoch up to the crossing.
Extra columns: ``zeek_notice`` and ``keys_crossed`` (how many (scanner, key) thresholds fired).

Complexity: one sort, then O(n) vectorised passes (``duplicated`` and group-wise cumulative
sums); no per-record Python loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..alerts import empty_alerts, make_alerts
from ._common import (
    check_conns,
    fmt_span,
    fmt_time,
    group_cumsum,
    ns_times,
    positive_int,
    to_seconds,
    ts_from_ns,
)
from ._registry import register_detector

NAME = "zeek-scan"

PARAMS = {
    "addr_scan_threshold": 25,
    "port_scan_threshold": 15,
    "addr_scan_interval": "5min",
    "port_scan_interval": "5min",
    "epoch_origin": None,
}


def failed_tcp(conns: pd.DataFrame) -> np.ndarray:
    """scan.zeek's failed attempt: rejected, unanswered, or reset after SYN-ACK with no data."""
    transport = conns["network_transport"].astype("object").to_numpy()
    outcome = conns["conn_outcome"].astype("object").to_numpy()
    tcp = transport == "tcp"
    # icmp_unreachable and denied: the SYN went unanswered as far as Zeek's TCP analysis sees
    failed = np.isin(outcome, ["rejected", "no_reply", "icmp_unreachable", "denied"])
    reset = np.zeros(len(conns), dtype=bool)
    if "tcp_flags" in conns.columns:
        flags = pd.to_numeric(conns["tcp_flags"], errors="coerce").fillna(0).astype("int64").to_numpy()
        reset |= (flags & 4) != 0
    if "zeek_history" in conns.columns:
        history = conns["zeek_history"].astype("object").fillna("").astype(str)
        reset |= history.str.contains("R", regex=False).to_numpy() & ~history.str.contains("[Dd]", regex=True).to_numpy()
    if reset.any() and {"source_bytes", "destination_bytes"} <= set(conns.columns):
        no_data = (
            (pd.to_numeric(conns["source_bytes"], errors="coerce").fillna(-1).to_numpy() == 0)
            & (pd.to_numeric(conns["destination_bytes"], errors="coerce").fillna(-1).to_numpy() == 0)
        )
        failed |= (outcome == "established") & reset & no_data
    return tcp & failed


@register_detector(
    NAME,
    params=PARAMS,
    partition_by="source_ip",
    origin_param="epoch_origin",
    description="Zeek scan.zeek: failed TCP attempts, 25 hosts on a port or 15 ports on a host per 5-min SumStats epoch",
    source="zeek/zeek scripts/policy/misc/scan.zeek (SumStats)",
)
def zeek_scan(conns: pd.DataFrame, *, all_windows: bool = False, **params: Any) -> pd.DataFrame:
    """Run Zeek's ``scan.zeek`` over a canonical connections frame; see the module docstring."""
    check_conns(conns)
    addr_thr = positive_int(params["addr_scan_threshold"], "addr_scan_threshold")
    port_thr = positive_int(params["port_scan_threshold"], "port_scan_threshold")
    addr_iv = int(round(to_seconds(params["addr_scan_interval"], "addr_scan_interval") * 1e9))
    port_iv = int(round(to_seconds(params["port_scan_interval"], "port_scan_interval") * 1e9))
    if len(conns) == 0:
        return empty_alerts().assign(zeek_notice=pd.Series([], dtype="string"), keys_crossed=pd.Series([], dtype="Int64"))
    t_all = ns_times(conns["event_start"])
    if params["epoch_origin"] is None:
        origin = int(t_all.min())
    else:
        try:
            stamp = pd.Timestamp(params["epoch_origin"])
        except (ValueError, TypeError):
            raise ValueError(f"epoch_origin must be a time such as '2024-01-01T00:00Z', got {params['epoch_origin']!r}") from None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        origin = int(stamp.as_unit("ns").value)

    # addresses as integer codes: grouping arrow strings is the slow part on big frames
    n = len(conns)
    codes, ips = pd.factorize(np.concatenate([conns["source_ip"].astype("object").to_numpy(), conns["destination_ip"].astype("object").to_numpy()]))
    ips = np.asarray(ips, dtype=object)
    src_codes, dst_codes = codes[:n], codes[n:]
    port = pd.to_numeric(conns["destination_port"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    mask = failed_tcp(conns) & (src_codes >= 0) & (dst_codes >= 0) & ~np.isnan(port)
    fail = pd.DataFrame(
        {
            "src": src_codes[mask],
            "dst": dst_codes[mask],
            "port": port[mask].astype(np.int64),
            "t": t_all[mask],
            "rej": conns["conn_outcome"].astype("object").to_numpy()[mask] == "rejected",
        }
    )
    fail = fail.sort_values(["src", "t"], kind="stable").reset_index(drop=True)

    parts = [
        _crossings(fail, "port", key="dst", counted="port", threshold=port_thr, interval=port_iv, origin=origin),
        _crossings(fail, "addr", key="port", counted="dst", threshold=addr_thr, interval=addr_iv, origin=origin),
    ]
    table = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else None
    if table is not None:
        table["src"] = ips[table["src"].to_numpy(dtype=np.int64)]
        is_port = (table["kind"] == "port").to_numpy() & table["key_value"].notna().to_numpy()
        key_value = table["key_value"].to_numpy(dtype=object)
        key_value[is_port] = ips[table.loc[is_port, "key_value"].to_numpy(dtype=np.int64)]
        table["key_value"] = key_value

    if all_windows:
        base = pd.DataFrame({"entity": src_codes, "epoch": (t_all - origin) // port_iv})
        base = base[base["entity"] >= 0].drop_duplicates()
        base["entity"] = ips[base["entity"].to_numpy()]
        base["window_start"] = origin + base["epoch"].to_numpy() * port_iv
        base["window_end"] = base["window_start"] + port_iv
        base = base.drop(columns="epoch")
    else:
        base = None
    return _assemble(table, base, all_windows, port_thr=port_thr, addr_thr=addr_thr)


def _crossings(
    fail: pd.DataFrame, kind: str, *, key: str, counted: str, threshold: int, interval: int, origin: int
) -> pd.DataFrame:
    """Per (scanner, epoch): the largest distinct count and the first threshold crossing."""
    if len(fail) == 0:
        return pd.DataFrame()
    frame = fail.assign(epoch=(fail["t"].to_numpy() - origin) // interval)
    # rows are sorted by (src, t), so (src, epoch) groups are contiguous
    src, ep = frame["src"].to_numpy(), frame["epoch"].to_numpy()
    se_start = np.ones(len(frame), dtype=bool)
    se_start[1:] = (src[1:] != src[:-1]) | (ep[1:] != ep[:-1])
    attempt_no = group_cumsum(np.ones(len(frame), dtype=np.int64), se_start)
    new = ~frame.duplicated(["src", "epoch", key, counted]).to_numpy()
    by_key = [frame["src"], frame["epoch"], frame[key]]
    distinct = pd.Series(new.astype(np.int64)).groupby(by_key, sort=False).cumsum().to_numpy()
    rejected = pd.Series(frame["rej"].to_numpy().astype(np.int64)).groupby(by_key, sort=False).cumsum().to_numpy()
    key_first_t = frame.groupby(["src", "epoch", key], sort=False)["t"].transform("min").to_numpy()
    final = pd.Series(new.astype(np.int64)).groupby(by_key, sort=False).transform("sum").to_numpy()
    frame = frame.assign(
        attempt_no=attempt_no, distinct=distinct, rejected=rejected, key_first_t=key_first_t, final=final,
        crossing=new & (distinct == threshold),
    )
    per_epoch = frame.groupby(["src", "epoch"], sort=False).agg(max_final=("final", "max"), n_failed=("t", "size"))
    crossed = frame[frame["crossing"]]
    keys_crossed = crossed.groupby(["src", "epoch"], sort=False).size().rename("keys_crossed")
    first = crossed.groupby(["src", "epoch"], sort=False).head(1).set_index(["src", "epoch"])
    first = first[["t", key, "attempt_no", "distinct", "rejected", "key_first_t"]].rename(columns={key: "key_value"})
    # nullable integers: nanosecond times must not pass through float64 when the join adds NA
    first = first.astype({"t": "Int64", "attempt_no": "Int64", "distinct": "Int64", "rejected": "Int64", "key_first_t": "Int64"})
    out = per_epoch.join(first, how="left").join(keys_crossed, how="left").reset_index()
    out["keys_crossed"] = out["keys_crossed"].fillna(0).astype(np.int64)
    out["kind"] = kind
    out["window_start"] = origin + out["epoch"].to_numpy() * interval
    out["window_end"] = out["window_start"] + interval
    out["score"] = out["max_final"] / threshold
    out["threshold"] = threshold
    out["interval"] = interval
    return out


def _explain(row: Any) -> str:
    """The notice message of one crossing, with the numbers."""
    epoch = f"the {row.interval / 60e9:g}-min epoch from {fmt_time(row.window_start)}"
    span = fmt_span((row.t - row.key_first_t) / 1e9)
    n, rej = int(row.distinct), int(row.rejected)
    if row.kind == "port":
        what = f"Scan::Port_Scan: {row.src} had failed TCP attempts to {n} distinct ports of {row.key_value}"
    else:
        what = f"Scan::Address_Scan: {row.src} had failed TCP attempts to {n} distinct hosts on port {int(row.key_value)}"
    return (
        f"{what} in {span} (threshold {int(row.threshold)}) within {epoch}; {rej} of those attempts rejected, "
        f"the rest unanswered; {int(row.max_final)} distinct by the epoch's end"
    )


def _assemble(table: pd.DataFrame | None, base: pd.DataFrame | None, all_windows: bool, *, port_thr: int, addr_thr: int) -> pd.DataFrame:
    out = pd.DataFrame(columns=["entity", "window_start", "window_end"])
    if table is not None and len(table):
        table = table.assign(alert=table["t"].notna())
        keys = ["src", "window_start", "window_end"]
        # the earliest crossing of either kind leads; epochs with none keep their best score
        ordered = table.sort_values(["t"], na_position="last", kind="stable")
        lead = ordered.groupby(keys, sort=False).head(1).set_index(keys)
        agg = table.groupby(keys, sort=False).agg(score=("score", "max"), keys_crossed=("keys_crossed", "sum"), n_failed=("n_failed", "max"))
        port_max = table[table["kind"] == "port"].groupby(keys, sort=False)["max_final"].max().rename("port_max")
        addr_max = table[table["kind"] == "addr"].groupby(keys, sort=False)["max_final"].max().rename("addr_max")
        merged = agg.join(lead[["alert", "kind", "t", "attempt_no"]]).join(port_max).join(addr_max).reset_index()
        merged[["port_max", "addr_max"]] = merged[["port_max", "addr_max"]].fillna(0).astype(np.int64)
        if not all_windows:
            merged = merged[merged["alert"]]
        explanation = np.empty(len(merged), dtype=object)
        alert = merged["alert"].to_numpy(dtype=bool)
        if alert.any():
            crossings = table[table["alert"]].sort_values("t", kind="stable")
            notes = {k: [_explain(r) for r in g.itertuples()] for k, g in crossings.groupby(keys, sort=False)}
            explanation[alert] = [
                " | ".join(notes[k][:3]) + (f" | and {len(notes[k]) - 3} more" if len(notes[k]) > 3 else "")
                for k in zip(merged.loc[alert, "src"], merged.loc[alert, "window_start"], merged.loc[alert, "window_end"])
            ]
        quiet = ~alert
        if quiet.any():
            explanation[quiet] = (
                merged.loc[quiet, "n_failed"].astype(str) + " failed TCP attempts; at most "
                + merged.loc[quiet, "port_max"].astype(str) + f" distinct ports on one host (threshold {port_thr}) and "
                + merged.loc[quiet, "addr_max"].astype(str) + f" distinct hosts on one port (threshold {addr_thr})"
            ).to_numpy()
        out = pd.DataFrame(
            {
                "entity": merged["src"].to_numpy(),
                "window_start": merged["window_start"].to_numpy(),
                "window_end": merged["window_end"].to_numpy(),
                "score": merged["score"].to_numpy(dtype=float),
                "alert": alert,
                "scan_type": np.where(alert, np.where(merged["kind"] == "port", "vertical", "horizontal"), None),
                "first_alert_time": merged["t"].array,
                "attempts_to_alert": merged["attempt_no"].array,
                "explanation": explanation,
                "zeek_notice": np.where(alert, np.where(merged["kind"] == "port", "Scan::Port_Scan", "Scan::Address_Scan"), None),
                "keys_crossed": merged["keys_crossed"].to_numpy(),
            }
        )
    if all_windows and base is not None and len(base):
        seen = pd.MultiIndex.from_arrays([out["entity"], out["window_start"].astype("int64")]) if len(out) else pd.MultiIndex.from_arrays([[], []])
        quiet_base = base[~pd.MultiIndex.from_arrays([base["entity"], base["window_start"]]).isin(seen)]
        if len(quiet_base):
            quiet_base = quiet_base.assign(score=0.0, alert=False, explanation="no failed TCP attempts", keys_crossed=0)
            out = pd.concat([out, quiet_base], ignore_index=True) if len(out) else quiet_base.reset_index(drop=True)
    if len(out) == 0:
        return empty_alerts().assign(zeek_notice=pd.Series([], dtype="string"), keys_crossed=pd.Series([], dtype="Int64"))
    out = out.sort_values(["window_start", "entity"], kind="stable").reset_index(drop=True)
    columns = {c: out[c].to_numpy() for c in ("entity", "score", "alert", "explanation")}
    columns["alert"] = out["alert"].to_numpy(dtype=bool)
    columns["score"] = out["score"].to_numpy(dtype=float)
    columns["scan_type"] = out["scan_type"].to_numpy() if "scan_type" in out else [None] * len(out)
    columns["attempts_to_alert"] = pd.array(out["attempts_to_alert"], dtype="Int64") if "attempts_to_alert" in out else [None] * len(out)
    columns["window_start"] = pd.to_datetime(out["window_start"].astype("int64"), unit="ns", utc=True)
    columns["window_end"] = pd.to_datetime(out["window_end"].astype("int64"), unit="ns", utc=True)
    fat = out["first_alert_time"] if "first_alert_time" in out else pd.Series([None] * len(out))
    columns["first_alert_time"] = ts_from_ns(fat)
    frame = make_alerts(columns, detector=NAME)
    frame["zeek_notice"] = pd.array(out["zeek_notice"].to_numpy() if "zeek_notice" in out else [None] * len(out), dtype="string")
    frame["keys_crossed"] = pd.array(out["keys_crossed"].to_numpy(), dtype="Int64")
    return frame
