"""Detectors: one module per detector family, one alerts frame for all (**contract**).

``detect(conns, detector=NAME, **params)`` runs one registered detector by name and returns
the alerts frame of :mod:`t1046lab.alerts`; ``list_detectors()`` lists them with their
published default parameters. Classic sequential detectors (``zeek-scan``, ``simple-scan``,
``snort-portscan``, ``trw``) read the connections frame directly. A new detector is a module
in this package that decorates its function with :func:`register_detector`; it is found
automatically.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd

from ._registry import DetectorInfo, get_detector, list_detectors, register_detector

__all__ = ["detect", "list_detectors", "register_detector", "get_detector", "DetectorInfo"]


def detect(conns: pd.DataFrame, detector: str, *, all_windows: bool = False, **params: Any) -> pd.DataFrame:
    """Run one detector by name over a canonical connections frame.

    Parameters
    ----------
    conns : DataFrame, or iterator or list of DataFrame
        A canonical connections frame (from :func:`t1046lab.read` or ``schema.conform``).
        It is not modified. Chunks in time order (``read(path, chunksize=...)``) are
        streamed by :func:`t1046lab.scale.streaming.stream_detect`, with the same alerts,
        for the detectors that have a streaming form. A dask DataFrame runs on Dask
        (:func:`t1046lab.scale.dask_engine.detect_dask`) and returns the same pandas frame.
    detector : str
        A registered name; see :func:`list_detectors`.
    all_windows : bool, default False
        Keep the rows that did not alert (every entity and window the detector scored).
    **params
        The detector's parameters; unknown names raise ``ValueError`` listing the valid ones.

    Returns
    -------
    DataFrame
        The alerts frame (``entity``, ``window_start``, ``window_end``, ``detector``, ``score``,
        ``alert``, ``scan_type``, ``first_alert_time``, ``attempts_to_alert``, ``explanation``),
        plus detector-specific columns after them.
    """
    if type(conns).__module__.startswith("dask"):  # dask imported only for a dask frame
        from ..scale.dask_engine import detect_dask

        return detect_dask(conns, detector, all_windows=all_windows, **params)
    if isinstance(conns, (Iterator, list, tuple)):
        from ..scale.streaming import stream_detect

        return stream_detect(conns, detector, all_windows=all_windows, **params)
    info = get_detector(detector)
    resolved = info.resolve(params)
    return info.func(conns, all_windows=bool(all_windows), **resolved)
