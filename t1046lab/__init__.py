"""t1046lab: detect network service discovery (MITRE ATT&CK T1046) in the telemetry you have.

The public API is a handful of plain functions::

    conns = t1046lab.read("conn.log")            # any supported format -> canonical frame
    feats = t1046lab.window_features(conns)      # one row per (entity, window)
    alerts = t1046lab.detect(conns, detector="zeek-scan")

Heavy or optional pieces are imported lazily, so ``import t1046lab`` stays light.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from . import accessor as _accessor  # registers the df.t1046 pandas accessor (imports pandas only)
from . import schema
from .correlate import correlate
from .evaluate import evaluate
from .exceptions import DataQualityWarning, FormatDetectionError, ParseError, T1046Warning
from .io import available_formats, iter_read, read

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public names that live in modules imported only when first used. ``correlate`` and
# ``evaluate`` are imported eagerly above: they share their module's name, and a lazy
# import of the module would bind the module, not the function, to the package attribute.
_LAZY = {
    "window_features": "t1046lab.features",
    "detect": "t1046lab.detectors",
    "load_dataset": "t1046lab.datasets",
    "list_datasets": "t1046lab.datasets",
}

__all__ = [
    "read",
    "correlate",
    "evaluate",
    "iter_read",
    "available_formats",
    "schema",
    "T1046Warning",
    "DataQualityWarning",
    "ParseError",
    "FormatDetectionError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 't1046lab' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise AttributeError(f"t1046lab.{name} is not available yet ({exc})") from exc
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
