"""Score detectors against labelled connections, side by side.

Two levels, as a security team asks the two questions:

* **(entity, window)**: each entity's time is cut into tumbling windows; a window is
  positive when the entity sent scan-labelled traffic in it. Every detector's alerts are
  mapped onto these cells (an alert covering several cells covers each), giving ROC and PR
  curves, precision, and false positives per 1,000 host-days broken down by the benign
  category of the traffic behind each false alert.
* **scan event**: a scan activity (``scan_id`` or the lab's ``lab_activity_id`` when the data
  has it, else one per scanning source and scan type) is *caught* when any alert of its source overlaps its time span.
  For each caught event we report the time and the number of the event's attempts from
  its first probe to the first alert.

The coverage matrix (scan type × telemetry source × detector: caught or not) is the
evidence a team needs to show that it would notice discovery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pandas as pd

from .alerts import validate_alerts

__all__ = ["evaluate", "Evaluation", "host_days"]


@dataclasses.dataclass
class Evaluation:
    """The tidy frames :func:`evaluate` returns (one row per detector and key).

    Attributes
    ----------
    summary : DataFrame
        Per detector: events, events caught, event recall, alerts and their precision
        (alerts covering scan traffic of their entity over all alerts), precision and recall
        over (entity, window) cells, window ROC AUC and average precision, false alerts per
        1,000 host-days, median attempts and seconds to the first alert.
    recall : DataFrame
        Per detector and scan type: events, caught, recall, median attempts and time to alert.
    false_positives : DataFrame
        Per detector and benign category: false alerts (fired alert rows covering no scan
        traffic of their entity, charged to the benign category of the traffic they cover,
        or ``no_traffic``), false entity-days, host-days of the category, and the rates per
        1,000 host-days (of all hosts, and of the category's own host-days).
    events : DataFrame
        Per detector and scan event: its span, sources, attempts, whether it was caught,
        first alert time, attempts and seconds to alert.
    windows : DataFrame
        Per detector and (entity, window) cell: truth, benign category, score, alert.
    roc, pr : DataFrame
        Curves per detector (``fpr``/``tpr`` and ``recall``/``precision`` with thresholds).
    coverage : DataFrame
        Per scan type, telemetry source (``log_format``) and detector: events and caught.
    host_days : float
        The denominator of the false-positive rates.
    """

    summary: pd.DataFrame
    recall: pd.DataFrame
    false_positives: pd.DataFrame
    events: pd.DataFrame
    windows: pd.DataFrame
    roc: pd.DataFrame
    pr: pd.DataFrame
    coverage: pd.DataFrame
    host_days: float


def host_days(conns: pd.DataFrame, *, by: str = "source_ip", category: str | None = None) -> pd.Series | float:
    """Monitored host-days: distinct (entity, UTC day) pairs with traffic.

    With ``category`` (a column such as ``benign_category``), returns the host-days per
    value of that column instead.
    """
    day = conns["event_start"].dt.floor("D")
    keys = pd.DataFrame({"entity": conns[by].astype("object"), "day": day})
    if category is None:
        return float(len(keys.drop_duplicates()))
    keys["category"] = conns[category].astype("object").fillna("unlabelled")
    return keys.drop_duplicates().groupby("category").size().astype(float)


#: Columns naming the activity a labelled row belongs to, in order of preference.
EVENT_COLUMNS = ("scan_id", "lab_activity_id")


def _event_keys(conns: pd.DataFrame, by: str) -> pd.Series:
    for column in EVENT_COLUMNS:
        if column in conns.columns:
            return conns[column].astype("object")
    # Without an activity id, each (scanning source, scan type) is one event.
    return conns[by].astype("object") + "|" + conns["scan_type"].astype("object").fillna("scan")


def _cells(starts: pd.Series, ends: pd.Series, window: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
    """Expand each [start, end) span to the grid cells it covers: (row index, cell start ns)."""
    w = window.value
    first = (starts.astype("int64").to_numpy() // w) * w
    last = ((ends.astype("int64").to_numpy() - 1) // w) * w
    last = np.maximum(last, first)
    counts = (last - first) // w + 1
    rows = np.repeat(np.arange(len(starts)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, np.repeat(first, counts) + offsets * w


def _truth_cells(conns: pd.DataFrame, by: str, window: pd.Timedelta) -> pd.DataFrame:
    """One row per (entity, window) with traffic: is it scan, and its dominant benign category."""
    w = window.value
    frame = pd.DataFrame(
        {
            "entity": conns[by].astype("object").to_numpy(),
            "cell": (conns["event_start"].astype("int64").to_numpy() // w) * w,
            "scan": (conns["label"].astype("object") == "scan").to_numpy(),
            "category": conns["benign_category"].astype("object").fillna("unlabelled").to_numpy()
            if "benign_category" in conns.columns
            else "unlabelled",
        }
    )
    scan = frame.groupby(["entity", "cell"], sort=False)["scan"].any()
    benign = frame[~frame["scan"]]
    category = (
        benign.groupby(["entity", "cell", "category"], sort=False).size().rename("n").reset_index()
        .sort_values(["entity", "cell", "n", "category"], ascending=[True, True, False, True])
        .drop_duplicates(["entity", "cell"])
        .set_index(["entity", "cell"])["category"]
    )
    out = scan.to_frame("truth").join(category.rename("benign_category"))
    out["benign_category"] = out["benign_category"].fillna("scan_only")
    return out.reset_index()


def _curve_frames(detector: str, truth: np.ndarray, score: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame, float, float]:
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    if truth.all() or not truth.any():
        empty = pd.DataFrame(columns=["detector", "fpr", "tpr", "threshold"])
        return empty, pd.DataFrame(columns=["detector", "recall", "precision", "threshold"]), np.nan, np.nan
    fpr, tpr, thr = roc_curve(truth, score)
    precision, recall, pthr = precision_recall_curve(truth, score)
    roc = pd.DataFrame({"detector": detector, "fpr": fpr, "tpr": tpr, "threshold": thr})
    pr = pd.DataFrame({"detector": detector, "recall": recall, "precision": precision, "threshold": np.append(pthr, np.nan)})
    return roc, pr, float(roc_auc_score(truth, score)), float(average_precision_score(truth, score))


def evaluate(
    alerts: pd.DataFrame,
    labelled_conns: pd.DataFrame,
    *,
    by: str = "source_ip",
    window: str | pd.Timedelta = "5min",
    detectors: Iterable[str] | None = None,
) -> Evaluation:
    """Score alerts against labelled connections.

    Parameters
    ----------
    alerts : DataFrame
        Alerts of one or more detectors (concatenated alerts frames). Rows with
        ``alert == False`` still carry scores for the ROC and PR curves.
    labelled_conns : DataFrame
        The canonical frame the alerts came from, with ``label`` (``scan``/``benign``) and
        ideally ``scan_type``, ``benign_category`` and ``scan_id``.
    by : str, default "source_ip"
        The connections column the alerts' ``entity`` refers to.
    window : str or Timedelta, default "5min"
        The (entity, window) grid for window-level metrics.
    detectors : iterable of str, optional
        Detectors to report (default: every detector in ``alerts``). A detector named here
        with no alert rows is reported as catching nothing.

    Returns
    -------
    Evaluation
    """
    validate_alerts(alerts)
    if "label" not in labelled_conns.columns:
        raise ValueError("evaluate() needs labelled connections: the 'label' column (scan/benign) is missing")
    window = pd.Timedelta(window)
    names = list(dict.fromkeys(detectors)) if detectors is not None else list(dict.fromkeys(alerts["detector"].astype("object")))
    conns = labelled_conns
    is_scan = (conns["label"].astype("object") == "scan").to_numpy()
    total_host_days = host_days(conns, by=by)
    category_host_days = (
        host_days(conns.loc[~is_scan], by=by, category="benign_category") if "benign_category" in conns else pd.Series(dtype=float)
    )

    # Scan events, and each event's attempts in time order (for attempts-to-alert).
    scans = conns.loc[is_scan, [by, "event_start"]].copy()
    scans["event"] = _event_keys(conns.loc[is_scan], by).to_numpy()
    scans["scan_type"] = conns.loc[is_scan, "scan_type"].astype("object").fillna("unknown").to_numpy() if "scan_type" in conns else "unknown"
    scans["log_format"] = conns.loc[is_scan, "log_format"].astype("object").to_numpy()
    scans = scans.sort_values(["event", "event_start"], kind="stable")
    events = scans.groupby("event", sort=True).agg(
        scan_type=("scan_type", "first"),
        log_format=("log_format", "first"),
        start=("event_start", "min"),
        end=("event_start", "max"),
        attempts=("event_start", "size"),
        sources=(by, lambda s: ",".join(sorted(set(map(str, s))))),
    )

    truth_cells = _truth_cells(conns, by, window)
    summaries, recalls, fps, event_rows, window_rows, rocs, prs, coverage = [], [], [], [], [], [], [], []
    for name in names:
        mine = alerts[alerts["detector"].astype("object") == name]
        fired = mine[mine["alert"].to_numpy(dtype=bool)]

        # -- events: caught when an alert of one of its sources overlaps its span ----------
        first_alert = fired["first_alert_time"].fillna(fired["window_end"])
        hits = scans[[by, "event", "event_start"]].merge(
            pd.DataFrame({by: fired["entity"].astype("object").to_numpy(), "ws": fired["window_start"].to_numpy(),
                          "we": fired["window_end"].to_numpy(), "fa": first_alert.to_numpy()}),
            on=by,
            how="inner",
        ) if len(fired) else pd.DataFrame(columns=[by, "event", "event_start", "ws", "we", "fa"])
        spans = events[["start", "end"]]
        if len(hits):
            hits = hits.join(spans, on="event")
            overlapping = hits[(hits["ws"] <= hits["end"]) & (hits["we"] > hits["start"])]
            first = overlapping.groupby("event")["fa"].min()
        else:
            first = pd.Series(dtype="datetime64[ns, UTC]")
        ev = events.copy()
        ev["detector"] = name
        ev["caught"] = ev.index.isin(first.index)
        ev["first_alert_time"] = first.reindex(ev.index)
        ev["seconds_to_alert"] = (ev["first_alert_time"] - ev["start"]).dt.total_seconds().clip(lower=0)
        # Attempts of the event up to and including the first alert time.
        at = scans[["event", "event_start"]].join(ev["first_alert_time"], on="event")
        ev["attempts_to_alert"] = (
            (at["event_start"] <= at["first_alert_time"]).groupby(at["event"]).sum().reindex(ev.index).where(ev["caught"]).astype("Int64")
        )
        event_rows.append(ev.reset_index())

        rec = ev.groupby("scan_type").agg(
            events=("caught", "size"),
            caught=("caught", "sum"),
            median_attempts_to_alert=("attempts_to_alert", lambda s: float(s.dropna().median()) if s.notna().any() else np.nan),
            median_seconds_to_alert=("seconds_to_alert", "median"),
        )
        rec["recall"] = rec["caught"] / rec["events"]
        rec.insert(0, "detector", name)
        recalls.append(rec.reset_index())
        cov = ev.groupby(["scan_type", "log_format"]).agg(events=("caught", "size"), caught_events=("caught", "sum")).reset_index()
        cov["detector"] = name
        cov["caught"] = cov["caught_events"] > 0
        coverage.append(cov)

        # -- (entity, window) cells ---------------------------------------------------------
        rows, cell = _cells(mine["window_start"], mine["window_end"], window)
        covered = pd.DataFrame(
            {
                "entity": mine["entity"].astype("object").to_numpy()[rows],
                "cell": cell,
                "score": mine["score"].to_numpy(dtype=float)[rows],
                "alert": mine["alert"].to_numpy(dtype=bool)[rows],
            }
        ).groupby(["entity", "cell"], sort=False).agg(score=("score", "max"), alert=("alert", "any"))
        cells = truth_cells.join(covered, on=["entity", "cell"])
        # Alerts on cells with no traffic of the entity are false alarms too.
        extra = covered[~covered.index.isin(pd.MultiIndex.from_frame(truth_cells[["entity", "cell"]]))].reset_index()
        extra = extra.assign(truth=False, benign_category="no_traffic")
        cells = pd.concat([cells, extra], ignore_index=True)
        cells["alert"] = cells["alert"].astype("boolean").fillna(False).astype(bool)
        floor = np.nanmin(cells["score"]) if cells["score"].notna().any() else 0.0
        cells["score"] = cells["score"].fillna(floor - 1.0)  # unscored cells rank below every scored one
        cells["detector"] = name
        cells["window_start"] = pd.to_datetime(cells["cell"], utc=True)
        window_rows.append(cells.drop(columns="cell"))
        roc, pr, auc, ap = _curve_frames(name, cells["truth"].to_numpy(), cells["score"].to_numpy())
        rocs.append(roc)
        prs.append(pr)

        # -- false positives per benign category -------------------------------------------
        # A fired alert row is false when none of the grid cells it covers holds scan traffic
        # of its entity; it is charged to the benign category of the traffic it covers.
        frows, fcell = _cells(fired["window_start"], fired["window_end"], window)
        per_cell = pd.DataFrame({"row": frows, "entity": fired["entity"].astype("object").to_numpy()[frows], "cell": fcell})
        per_cell = per_cell.merge(truth_cells, on=["entity", "cell"], how="left")
        per_cell["truth"] = per_cell["truth"].astype("boolean").fillna(False).astype(bool)
        per_cell["benign_category"] = per_cell["benign_category"].fillna("no_traffic")
        per_cell["has_traffic"] = per_cell["benign_category"] != "no_traffic"
        per_cell = per_cell.sort_values(["row", "has_traffic", "cell"], ascending=[True, False, True])
        per_row = per_cell.groupby("row").agg(truth=("truth", "any"), benign_category=("benign_category", "first"), cell=("cell", "first"))
        false_rows = per_row[~per_row["truth"]].assign(entity=fired["entity"].astype("object").to_numpy()[per_row.index[~per_row["truth"]]])
        day = pd.to_datetime(false_rows["cell"], utc=True).dt.floor("D")
        fp = false_rows.groupby("benign_category").agg(false_alerts=("truth", "size"))
        fp["false_entity_days"] = pd.DataFrame({"c": false_rows["benign_category"], "e": false_rows["entity"], "d": day}).drop_duplicates().groupby("c").size()
        categories = sorted(set(category_host_days.index) | set(fp.index))
        fp = fp.reindex(categories, fill_value=0)
        fp["category_host_days"] = category_host_days.reindex(fp.index).fillna(0.0)
        fp["fp_per_1000_host_days"] = 1000.0 * fp["false_alerts"] / total_host_days if total_host_days else np.nan
        fp["fp_per_1000_category_host_days"] = (1000.0 * fp["false_alerts"] / fp["category_host_days"]).where(fp["category_host_days"] > 0)
        fp.insert(0, "detector", name)
        fps.append(fp.rename_axis("benign_category").reset_index())
        n_false = len(false_rows)

        true_alert_cells = int((cells["alert"] & cells["truth"]).sum())
        alert_cells = int(cells["alert"].sum())
        n_fired = len(fired)
        summaries.append(
            {
                "detector": name,
                "events": len(ev),
                "events_caught": int(ev["caught"].sum()),
                "event_recall": float(ev["caught"].mean()) if len(ev) else np.nan,
                "alerts": n_fired,
                "precision": (n_fired - n_false) / n_fired if n_fired else np.nan,
                "window_precision": true_alert_cells / alert_cells if alert_cells else np.nan,
                "window_recall": true_alert_cells / int(cells["truth"].sum()) if cells["truth"].any() else np.nan,
                "roc_auc": auc,
                "average_precision": ap,
                "false_alerts": n_false,
                "fp_per_1000_host_days": 1000.0 * n_false / total_host_days if total_host_days else np.nan,
                "median_attempts_to_alert": float(ev["attempts_to_alert"].dropna().median()) if ev["caught"].any() else np.nan,
                "median_seconds_to_alert": float(ev["seconds_to_alert"].median()) if ev["caught"].any() else np.nan,
            }
        )

    def cat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        frames = [f for f in frames if len(f)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return Evaluation(
        summary=pd.DataFrame(summaries),
        recall=cat(recalls),
        false_positives=cat(fps),
        events=cat(event_rows),
        windows=cat(window_rows),
        roc=cat(rocs),
        pr=cat(prs),
        coverage=cat(coverage),
        host_days=total_host_days,
    )
