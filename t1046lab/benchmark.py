"""The benchmark: every detector on every bundled labelled dataset, side by side.

``run_benchmark()`` is what ``t1046lab benchmark`` runs: for each dataset it runs each
detector (every window kept, so anomaly scores give ROC curves), evaluates them together
with :func:`t1046lab.evaluate`, and returns the tidy frames; ``write_report()`` writes them
as ``report.md`` with PNG figures.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._progress import progress
from .evaluate import Evaluation, evaluate

__all__ = ["BenchmarkResult", "run_benchmark", "write_report", "headline_table"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class BenchmarkResult:
    """Evaluations per dataset, with run times.

    Attributes
    ----------
    evaluations : dict of str to Evaluation
    runtimes : DataFrame
        Seconds per (dataset, detector), and the dataset's rows.
    datasets : DataFrame
        Per dataset: rows, scan events, host-days, scan types and benign categories present.
    """

    evaluations: dict[str, Evaluation]
    runtimes: pd.DataFrame
    datasets: pd.DataFrame

    def table(self, name: str) -> pd.DataFrame:
        """One of the evaluation frames (``summary``, ``recall``, ...) for every dataset, with a ``dataset`` column."""
        frames = [getattr(ev, name).assign(dataset=ds) for ds, ev in self.evaluations.items() if len(getattr(ev, name))]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _labelled_datasets() -> list[str]:
    from .datasets import list_datasets

    table = list_datasets()
    if "labelled" in table.columns:
        table = table[table["labelled"]]
    return list(table["name"])


def run_benchmark(
    datasets: Sequence[str] | None = None,
    detectors: Sequence[str] | None = None,
    *,
    window: str = "5min",
    random_state: int = 0,
) -> BenchmarkResult:
    """Run detectors on labelled datasets and evaluate them.

    Parameters
    ----------
    datasets : sequence of str, optional
        Dataset names for :func:`t1046lab.load_dataset` (default: every bundled labelled one).
    detectors : sequence of str, optional
        Detector names (default: every registered detector).
    window : str, default "5min"
        The evaluation grid, and the window of the window-based detectors.
    random_state : int, default 0
        Passed to the detectors that take one.
    """
    from .datasets import load_dataset
    from .detectors import detect, get_detector, list_detectors

    names = list(datasets) if datasets is not None else _labelled_datasets()
    if not names:
        raise ValueError("no labelled dataset to benchmark on")
    chosen = list(detectors) if detectors is not None else list(list_detectors()["detector"])
    for d in chosen:
        get_detector(d)  # fail early on a misspelt name
    evaluations: dict[str, Evaluation] = {}
    runtimes, described = [], []
    steps = progress(total=len(names) * len(chosen), desc="benchmark", unit="run")
    try:
        for ds in names:
            conns = load_dataset(ds)
            if "label" not in conns.columns:
                raise ValueError(f"dataset {ds!r} has no label column: it cannot be benchmarked")
            frames = []
            for d in chosen:
                steps.set_postfix_str(f"{ds}: {d}")
                params = _params_for(get_detector(d), window=window, random_state=random_state)
                t0 = time.perf_counter()
                alerts = detect(conns, detector=d, all_windows=True, **params)
                runtimes.append({"dataset": ds, "detector": d, "seconds": time.perf_counter() - t0, "rows": len(conns)})
                frames.append(alerts)
                steps.update()
            alerts = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
            evaluations[ds] = evaluate(alerts, conns, window=window, detectors=chosen)
            described.append(_describe(ds, conns, evaluations[ds]))
    finally:
        steps.close()
    return BenchmarkResult(evaluations, pd.DataFrame(runtimes), pd.DataFrame(described))


def _params_for(info, *, window: str, random_state: int) -> dict:
    params = {}
    if "window" in info.params:
        params["window"] = window
    if "random_state" in info.params:
        params["random_state"] = random_state
    return params


def _describe(name: str, conns: pd.DataFrame, ev: Evaluation) -> dict:
    is_scan = conns["label"].astype("object") == "scan"
    return {
        "dataset": name,
        "rows": len(conns),
        "scan_rows": int(is_scan.sum()),
        "scan_events": int(ev.events["event"].nunique()) if len(ev.events) else 0,
        "host_days": ev.host_days,
        "scan_types": ", ".join(sorted(conns.loc[is_scan, "scan_type"].dropna().astype(str).unique())) if "scan_type" in conns else "",
        "benign_categories": ", ".join(sorted(conns.loc[~is_scan, "benign_category"].dropna().astype(str).unique()))
        if "benign_category" in conns
        else "",
    }


def headline_table(result: BenchmarkResult) -> dict[str, pd.DataFrame]:
    """The three headline tables: recall per scan type, false positives per 1,000 host-days per
    benign category, and the summary (median attempts to alert, precision, AUC), per detector."""
    recall = result.table("recall")
    fp = result.table("false_positives")
    summary = result.table("summary")
    out = {}
    if len(recall):
        out["recall"] = recall.pivot_table(index=["dataset", "detector"], columns="scan_type", values="recall", sort=False)
    if len(fp):
        out["false_positives"] = fp.pivot_table(
            index=["dataset", "detector"], columns="benign_category", values="fp_per_1000_host_days", sort=False
        )
    if len(summary):
        cols = ["events", "events_caught", "event_recall", "alerts", "precision", "roc_auc", "fp_per_1000_host_days", "median_attempts_to_alert", "median_seconds_to_alert"]
        out["summary"] = summary.set_index(["dataset", "detector"])[cols]
    return out


def _markdown(frame: pd.DataFrame, floatfmt: str = ".3g") -> str:
    frame = frame.copy()
    if isinstance(frame.index, pd.MultiIndex) or frame.index.name is not None:
        frame = frame.reset_index()
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"

    def fmt(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(v, floatfmt)
        return "" if v is None or v is pd.NA else str(v)

    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_report(result: BenchmarkResult, out_dir: str | Path) -> Path:
    """Write ``report.md`` and its PNG figures (ROC, false positives, attempts to alert, coverage) per dataset."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from . import plotting

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = headline_table(result)
    lines = [
        "# t1046lab benchmark",
        "",
        "Every detector on every bundled labelled dataset; produced by `t1046lab benchmark`.",
        "Recall counts scan events caught (any alert of the scan's source overlapping the scan);",
        "false positives are alerts covering no scan traffic of their entity, per 1,000 host-days,",
        "charged to the benign category of the traffic they cover.",
        "",
        "## Datasets",
        "",
        _markdown(result.datasets),
        "",
    ]
    if "recall" in tables:
        lines += ["## Recall per scan type", "", _markdown(tables["recall"], ".2f"), ""]
    if "false_positives" in tables:
        lines += ["## False positives per 1,000 host-days, by benign category", "", _markdown(tables["false_positives"], ".1f"), ""]
    if "summary" in tables:
        lines += ["## Summary", "", _markdown(tables["summary"]), ""]
    lines += ["## Run time", "", _markdown(result.runtimes, ".2f"), ""]
    for ds, ev in result.evaluations.items():
        stem = ds.replace("/", "_")
        figures = {
            "roc": plotting.plot_roc,
            "false_positives": plotting.plot_false_positives,
            "attempts_to_alert": plotting.plot_attempts_to_alert,
            "coverage": plotting.plot_coverage,
        }
        lines += [f"## Figures: {ds}", ""]
        for kind, draw in figures.items():
            fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
            draw(ev, ax=ax)
            ax.set_title(f"{ax.get_title()} ({ds})")
            path = out / f"{stem}_{kind}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            lines += [f"![{kind} ({ds})]({path.name})", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
