"""The alerts frame every detector returns (**contract**).

One row per (entity, window) a detector scored. Anomaly detectors score every window; the
sequential classic detectors emit a row per window in which they reached a decision or
crossed a threshold. ``detect(..., all_windows=True)`` keeps the rows that did not alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .schema import STRING_DTYPE, TIMESTAMP_DTYPE, SchemaError

__all__ = ["ALERT_COLUMNS", "make_alerts", "validate_alerts", "empty_alerts"]

#: Columns of the alerts frame, in order, with their dtypes.
ALERT_COLUMNS: dict[str, Any] = {
    "entity": STRING_DTYPE,  # the scored entity: a source IP (or destination IP for the destination view)
    "window_start": TIMESTAMP_DTYPE,
    "window_end": TIMESTAMP_DTYPE,
    "detector": STRING_DTYPE,
    "score": np.dtype("float64"),  # higher is more suspicious
    "alert": np.dtype("bool"),
    "scan_type": STRING_DTYPE,  # vertical, horizontal, block, ... or NA when no alert
    "first_alert_time": TIMESTAMP_DTYPE,  # time of the attempt that made the detector fire
    "attempts_to_alert": pd.Int64Dtype(),  # attempts by the entity from its first in the window to that one
    "explanation": STRING_DTYPE,  # a short sentence with the numbers that drove the score
}


def empty_alerts() -> pd.DataFrame:
    """An alerts frame with no rows."""
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in ALERT_COLUMNS.items()})


def make_alerts(columns: Mapping[str, Any], *, detector: str) -> pd.DataFrame:
    """Build an alerts frame from column arrays, casting to the alert dtypes.

    Missing optional columns (``scan_type``, ``first_alert_time``, ``attempts_to_alert``,
    ``explanation``) are filled with NA; extra columns are kept after the standard ones.
    """
    required = ("entity", "window_start", "window_end", "score", "alert")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ValueError(f"alerts need columns {missing}")
    n = len(columns["entity"])
    out: dict[str, Any] = {}
    for name, dtype in ALERT_COLUMNS.items():
        if name == "detector":
            values: Any = [detector] * n
        else:
            values = columns.get(name, [None] * n)
        if dtype is TIMESTAMP_DTYPE:
            out[name] = pd.to_datetime(pd.Series(values, dtype="object" if name not in columns else None), utc=True).astype(TIMESTAMP_DTYPE).array
        elif name == "alert":
            out[name] = np.asarray(values, dtype=bool)
        else:
            out[name] = pd.Series(values).astype(dtype).array
    for name, values in columns.items():
        if name not in ALERT_COLUMNS:
            out[name] = values
    frame = pd.DataFrame(out)
    frame.attrs = {}
    return frame


def validate_alerts(alerts: pd.DataFrame) -> pd.DataFrame:
    """Check that ``alerts`` follows the alerts schema; return it unchanged."""
    problems = [f"missing column {c!r}" for c in ALERT_COLUMNS if c not in alerts.columns]
    for name, dtype in ALERT_COLUMNS.items():
        if name in alerts.columns and not problems:
            actual = alerts[name].dtype
            ok = (isinstance(dtype, pd.StringDtype) and (isinstance(actual, pd.StringDtype) or actual == object)) or actual == dtype
            if not ok:
                problems.append(f"column {name!r} has dtype {actual}, expected {dtype}")
    if problems:
        raise SchemaError(problems)
    return alerts
