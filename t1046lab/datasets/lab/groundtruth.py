"""Ground truth of a lab run, and labels for its connections frame.

Every actor has its own address and runs one tool at a time, so labels are exact: a connection
belongs to an activity when it touches the actor's address (as source or destination) inside
the activity's time window. Two cases need their own rule:

* **decoys** (nmap ``-D``): spoofed copies of the scan come from decoy addresses that are not
  the actor's; a row touching a decoy address inside the decoy activity's window belongs to it.
* **dead addresses**: the silent host answers nothing, so rows to a dead address carry the
  prober as source and are caught by the actor rule; a row *from* a dead address (there should
  be none) inside an activity's window towards its actor is labelled with that activity too.

Scans are matched before benign activities (a row claimed by a scan is never relabelled), and
rows that no activity explains are kept with ``label="benign"`` and
``benign_category="unattributed"`` so nothing is dropped and the datasheet can count them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ...schema import LABEL_COLUMNS

__all__ = ["GROUND_TRUTH_COLUMNS", "ground_truth_frame", "label_connections", "label_counts", "probe_coverage", "read_ground_truth"]

GROUND_TRUTH_COLUMNS = [
    "activity_id", "host", "source_addresses", "tool", "command", "start_utc", "end_utc", "targets",
    "label", "scan_type", "benign_category", "campaign", "pid", "exit_code", "status",
]

#: Seconds added before a window's start and after its end (process start/exit are polled).
PAD_BEFORE_S = 0.25
PAD_AFTER_S = 1.0


def ground_truth_frame(runs: Sequence[Any], scenario: str) -> pd.DataFrame:
    """One row per activity of a run (``runner.ActivityRun`` objects)."""
    import shlex

    rows = []
    for r in runs:
        act = r.activity
        rows.append({
            "activity_id": act.id,
            "host": act.actor,
            "source_addresses": " ".join(r.sources),
            "tool": act.tool,
            "command": shlex.join(r.argv),
            "start_utc": r.start,
            "end_utc": r.end,
            "targets": " ".join(r.targets),
            "label": act.label,
            "scan_type": act.category if act.label == "scan" else None,
            "benign_category": act.category if act.label == "benign" else None,
            "campaign": act.campaign or None,
            "pid": r.pid,
            "exit_code": r.exit_code,
            "status": r.status,
        })
    gt = pd.DataFrame(rows, columns=GROUND_TRUTH_COLUMNS)
    for col in ("start_utc", "end_utc"):
        gt[col] = pd.to_datetime(gt[col], utc=True)
    gt["pid"] = gt["pid"].astype("Int64")
    gt["exit_code"] = gt["exit_code"].astype("Int64")
    gt.attrs["scenario"] = scenario
    return gt


def read_ground_truth(path: Any) -> pd.DataFrame:
    """Read ``ground_truth.csv`` back with its dtypes."""
    gt = pd.read_csv(path, dtype={"source_addresses": "string", "targets": "string", "campaign": "string",
                                  "scan_type": "string", "benign_category": "string"})
    for col in ("start_utc", "end_utc"):
        gt[col] = pd.to_datetime(gt[col], utc=True, format="ISO8601")
    return gt


def label_connections(conns: pd.DataFrame, ground_truth: pd.DataFrame, *, scenario: str,
                      pad_before: float = PAD_BEFORE_S, pad_after: float = PAD_AFTER_S) -> pd.DataFrame:
    """Return a copy of ``conns`` with ``label``, ``scan_type``, ``benign_category``, ``scenario``
    and ``lab_activity_id`` columns.

    Parameters
    ----------
    conns : DataFrame
        Canonical connections frame of the lab's capture.
    ground_truth : DataFrame
        :func:`ground_truth_frame` (or ``ground_truth.csv`` read back).
    scenario : str
        Scenario name written in every row.
    pad_before, pad_after : float
        Slack in seconds around each activity window.
    """
    out = conns.copy()
    n = len(out)
    src = out["source_ip"].astype("string").fillna("").to_numpy(dtype=object)
    dst = out["destination_ip"].astype("string").fillna("").to_numpy(dtype=object)
    t = out["event_start"]
    activity = np.full(n, None, dtype=object)
    gt = ground_truth.dropna(subset=["start_utc"])
    # Scans first, then benign; within each, in start order.
    gt = gt.assign(_scan=(gt["label"] != "scan")).sort_values(["_scan", "start_utc"], kind="stable")
    for row in gt.itertuples(index=False):
        lo = row.start_utc - pd.Timedelta(seconds=pad_before)
        hi = (row.end_utc if pd.notna(row.end_utc) else row.start_utc) + pd.Timedelta(seconds=pad_after)
        in_window = ((t >= lo) & (t <= hi)).to_numpy(dtype=bool, na_value=False)
        addrs = [a for a in str(row.source_addresses).split() if a]
        touches = np.isin(src, addrs) | np.isin(dst, addrs)
        claim = in_window & touches & pd.isna(activity)
        activity[claim] = row.activity_id

    by_id = ground_truth.set_index("activity_id")
    act = pd.Series(activity, index=out.index, dtype="string")
    label = act.map(by_id["label"]).astype("string").fillna("benign")
    scan_type = act.map(by_id["scan_type"]).astype("string")
    benign = act.map(by_id["benign_category"]).astype("string")
    benign = benign.mask(act.isna(), "unattributed")
    # dtypes as schema.LABEL_COLUMNS fixes them
    out["label"] = label.astype(LABEL_COLUMNS["label"])
    out["scan_type"] = scan_type.astype(LABEL_COLUMNS["scan_type"])
    out["benign_category"] = benign.astype(LABEL_COLUMNS["benign_category"])
    out["scenario"] = pd.Series(scenario, index=out.index, dtype=LABEL_COLUMNS["scenario"])
    out["lab_activity_id"] = act
    return out


def label_counts(conns: pd.DataFrame) -> dict[str, pd.Series]:
    """Row counts per label, per scan type and per benign category (for the datasheet)."""
    return {
        "label": conns["label"].value_counts(dropna=True).sort_index(),
        "scan_type": conns["scan_type"].value_counts(dropna=True).sort_index(),
        "benign_category": conns["benign_category"].value_counts(dropna=True).sort_index(),
    }


def probe_coverage(conns: pd.DataFrame, ground_truth: pd.DataFrame, scenario: Any) -> pd.DataFrame:
    """Did every activity's probes reach the wire? One row per (activity, target).

    For each activity of ``scenario`` (a :class:`~.scenarios.Scenario`) that declares
    ``expect_ports`` or ``expect_icmp``, compares what it was told to probe with the
    connections from its actor address to each target: ``expected`` and ``seen`` port counts,
    ``missing`` (sorted list of ports not seen) and, for sweeps, ``icmp_echo`` (echo requests seen).
    """
    gt = ground_truth.set_index("activity_id")
    src_all = conns["source_ip"].astype("string")
    rows = []
    for act in scenario.activities:
        if not (act.expect_ports or act.expect_icmp) or act.id not in gt.index:
            continue
        actor = str(gt.loc[act.id, "source_addresses"]).split()[0]
        mine = conns[(src_all == actor).to_numpy(dtype=bool, na_value=False)]
        for target in str(gt.loc[act.id, "targets"]).split():
            to_target = mine[(mine["destination_ip"].astype("string") == target).to_numpy(dtype=bool, na_value=False)]
            row: dict[str, Any] = {"activity_id": act.id, "actor": actor, "target": target}
            if act.expect_ports:
                proto = to_target[(to_target["network_transport"].astype("string") == act.expect_proto).to_numpy(dtype=bool, na_value=False)]
                seen = set(proto["destination_port"].dropna().astype(int))
                row.update(expected=len(act.expect_ports), seen=len(seen & set(act.expect_ports)),
                           missing=sorted(set(act.expect_ports) - seen))
            if act.expect_icmp:
                icmp = to_target[(to_target["network_transport"].astype("string") == "icmp").to_numpy(dtype=bool, na_value=False)]
                if "icmp_type" in icmp.columns:
                    icmp = icmp[(icmp["icmp_type"] == 8).to_numpy(dtype=bool, na_value=False)]
                row["icmp_echo"] = len(icmp)
            rows.append(row)
    return pd.DataFrame(rows)
