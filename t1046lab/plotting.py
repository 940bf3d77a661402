"""Matplotlib figures for evaluations and for looking at one entity.

Every function draws on ``ax`` when given (a new figure otherwise), returns the ``Axes`` so
a notebook can adjust it, and never changes global style (no ``plt.style.use``, no rcParams).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from .evaluate import Evaluation

__all__ = [
    "plot_roc",
    "plot_pr",
    "plot_false_positives",
    "plot_attempts_to_alert",
    "plot_coverage",
    "plot_scanner_ports",
    "plot_entity_vs_role",
]

_OUTCOME_COLOURS = {
    "established": "tab:green",
    "rejected": "tab:red",
    "no_reply": "tab:gray",
    "icmp_unreachable": "tab:orange",
    "denied": "tab:purple",
    "partial": "tab:blue",
    "unknown": "black",
}


def _axes(ax: Axes | None, figsize: tuple[float, float] = (6.0, 4.0)) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_roc(evaluation: Evaluation, *, ax: Axes | None = None) -> Axes:
    """ROC curve of each detector over (entity, window) cells, AUC in the legend."""
    ax = _axes(ax)
    auc = evaluation.summary.set_index("detector")["roc_auc"] if len(evaluation.summary) else pd.Series(dtype=float)
    for name, curve in evaluation.roc.groupby("detector", sort=False) if len(evaluation.roc) else []:
        ax.step(curve["fpr"], curve["tpr"], where="post", label=f"{name} (AUC {auc.get(name, np.nan):.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle=":", linewidth=1)
    ax.set(xlabel="false-positive rate (benign windows)", ylabel="true-positive rate (scan windows)", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("ROC per detector")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize="small")
    return ax


def plot_pr(evaluation: Evaluation, *, ax: Axes | None = None) -> Axes:
    """Precision-recall curve of each detector over (entity, window) cells."""
    ax = _axes(ax)
    ap = evaluation.summary.set_index("detector")["average_precision"] if len(evaluation.summary) else pd.Series(dtype=float)
    for name, curve in evaluation.pr.groupby("detector", sort=False) if len(evaluation.pr) else []:
        ax.step(curve["recall"], curve["precision"], where="post", label=f"{name} (AP {ap.get(name, np.nan):.3f})")
    ax.set(xlabel="recall (scan windows)", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title("Precision-recall per detector")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize="small")
    return ax


def plot_false_positives(
    evaluation: Evaluation, *, rate: str = "fp_per_1000_category_host_days", ax: Axes | None = None
) -> Axes:
    """False alerts per 1,000 host-days, one group of bars per benign category, one bar per detector.

    ``rate`` is ``"fp_per_1000_category_host_days"`` (how noisy each kind of host is) or
    ``"fp_per_1000_host_days"`` (its share of the whole alert load).
    """
    ax = _axes(ax, (8.0, 4.0))
    fp = evaluation.false_positives
    if not len(fp):
        ax.set_title("No false positives to show")
        return ax
    table = fp.pivot_table(index="benign_category", columns="detector", values=rate, aggfunc="sum", sort=False).fillna(0.0)
    n_cat, n_det = table.shape
    width = 0.8 / max(n_det, 1)
    x = np.arange(n_cat)
    for i, detector in enumerate(table.columns):
        ax.bar(x + (i - (n_det - 1) / 2) * width, table[detector].to_numpy(), width, label=str(detector))
    ax.set_xticks(x, [str(c) for c in table.index], rotation=30, ha="right")
    ax.set_ylabel("false alerts per 1,000 host-days" + (" of the category" if "category" in rate else ""))
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title("False positives by benign category")
    ax.legend(fontsize="small", ncols=min(n_det, 4))
    return ax


def plot_attempts_to_alert(evaluation: Evaluation, *, ax: Axes | None = None) -> Axes:
    """Distribution of the attempts each caught scan made before its first alert, per detector."""
    ax = _axes(ax)
    events = evaluation.events
    if not len(events):
        ax.set_title("No scan events")
        return ax
    caught = events[events["caught"]]
    names = list(dict.fromkeys(events["detector"]))
    data = [caught.loc[caught["detector"] == n, "attempts_to_alert"].dropna().astype(float).to_numpy() for n in names]
    positions = np.arange(1, len(names) + 1)
    for pos, values in zip(positions, data):
        if len(values):
            ax.boxplot(values, positions=[pos], widths=0.6, showfliers=True)
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(pos + jitter, values, s=10, alpha=0.6)
    ax.set_xticks(positions, names, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("attempts before the first alert")
    ax.set_title("Attempts to alert (caught scans)")
    return ax


def plot_coverage(evaluation: Evaluation | pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Heat map of the fraction of scan events caught: scan type (rows) by detector (columns).

    Each cell is annotated with caught/events; with several telemetry sources, rows are
    ``scan type · source``.
    """
    coverage = evaluation.coverage if hasattr(evaluation, "coverage") else evaluation
    ax = _axes(ax, (7.0, 5.0))
    if not len(coverage):
        ax.set_title("No scan events")
        return ax
    cov = coverage.copy()
    several = cov["log_format"].nunique() > 1
    cov["row"] = cov["scan_type"] + (" · " + cov["log_format"] if several else "")
    events = cov.pivot_table(index="row", columns="detector", values="events", aggfunc="sum", sort=True)
    caught = cov.pivot_table(index="row", columns="detector", values="caught_events", aggfunc="sum", sort=True)
    share = (caught / events).to_numpy(dtype=float)
    image = ax.imshow(share, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(events.shape[1]), [str(c) for c in events.columns], rotation=30, ha="right")
    ax.set_yticks(range(events.shape[0]), [str(r) for r in events.index])
    for i in range(events.shape[0]):
        for j in range(events.shape[1]):
            if not np.isnan(events.iat[i, j]):
                ax.text(j, i, f"{int(caught.iat[i, j])}/{int(events.iat[i, j])}", ha="center", va="center", fontsize="small")
    ax.figure.colorbar(image, ax=ax, label="scan events caught")
    ax.set_title("Coverage: scan type by detector")
    return ax


def plot_scanner_ports(
    conns: pd.DataFrame, entity: str, *, by: str = "source_ip", ax: Axes | None = None, max_points: int = 50_000
) -> Axes:
    """An entity's attempts over time: destination port (or peer, for port-less probes) by time, coloured by outcome."""
    ax = _axes(ax, (8.0, 4.0))
    rows = conns[conns[by].astype("object") == entity]
    if len(rows) > max_points:
        rows = rows.sample(max_points, random_state=0).sort_values("event_start")
    ported = rows["destination_port"].notna()
    for outcome, group in rows[ported].groupby(rows.loc[ported, "conn_outcome"].astype("object"), sort=False):
        ax.scatter(group["event_start"], group["destination_port"].astype(float), s=6, label=f"{outcome} ({len(group):,})",
                   color=_OUTCOME_COLOURS.get(outcome, "black"), alpha=0.7, linewidths=0)
    if (~ported).any():
        ax.text(0.01, 0.98, f"{int((~ported).sum()):,} port-less (ICMP) attempts not shown", transform=ax.transAxes, va="top", fontsize="small")
    ax.set(xlabel="time (UTC)", ylabel="destination port")
    ax.set_title(f"Attempts by {entity}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", markerscale=2)
    ax.figure.autofmt_xdate()
    return ax


def plot_entity_vs_role(
    features: pd.DataFrame,
    entity: str,
    model: Any,
    *,
    columns: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """An entity's windows against its role's distribution, feature by feature.

    Each feature is shown on the robust z scale of the baseline the fitted
    :class:`~t1046lab.detectors.role_baseline.RoleBaselineDetector` compares the entity
    with: a box plot of the role's windows in ``features`` and the entity's own windows as
    points, with the role's alert level (``min_z``) as a dashed line.
    """
    from .detectors.role_baseline import RoleBaselineDetector

    if not isinstance(model, RoleBaselineDetector):
        raise TypeError("plot_entity_vs_role needs a fitted RoleBaselineDetector")
    ax = _axes(ax, (8.0, 4.0))
    names = list(model.feature_names_in_)
    show = [c for c in (columns or names) if c in names]
    frame = features[names]
    roles = model.row_roles(frame)
    entity_mask = frame.index.get_level_values(0).astype(str) == entity
    if not entity_mask.any():
        raise ValueError(f"{entity!r} has no window in the features frame")
    role = roles[entity_mask].iloc[0]
    role_index = model.role_names_.index(role)
    Z = model._transform(frame.to_numpy(dtype=float))
    z = (Z - model.location_[role_index]) / model.scale_[role_index]
    cols = [names.index(c) for c in show]
    peers = (roles == role).to_numpy() & ~entity_mask
    ax.boxplot([z[peers, j] for j in cols], positions=np.arange(len(cols)), widths=0.6, showfliers=False)
    for k, j in enumerate(cols):
        values = z[entity_mask, j]
        ax.scatter(np.full(len(values), k) + np.linspace(-0.2, 0.2, len(values)), values, s=14, color="tab:red", zorder=3,
                   label=entity if k == 0 else None)
    ax.axhline(model.min_z, color="tab:red", linestyle="--", linewidth=1, label=f"alert level (z = {model.min_z:g})")
    ax.set_xticks(np.arange(len(cols)), show, rotation=30, ha="right")
    ax.set_ylabel(f"robust z against role {role!r}")
    ax.set_title(f"{entity} against its role {role!r}")
    ax.legend(fontsize="small")
    return ax
