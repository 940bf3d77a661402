"""The ``df.t1046`` pandas accessor: the library's verbs as DataFrame methods.

This module imports only pandas; each method imports the module holding the public
function when called, so ``import t1046lab`` stays light. The accessor stores the frame and
does nothing else in its constructor (pandas 3 does not cache accessors: one is built on
every ``df.t1046``). To add a verb, add a method that calls the public function lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

import pandas as pd

__all__ = ["T1046Accessor"]


@pd.api.extensions.register_dataframe_accessor("t1046")
class T1046Accessor:
    """``df.t1046.features(...)`` and friends, for a canonical connections frame."""

    def __init__(self, pandas_obj: pd.DataFrame):
        self._obj = pandas_obj

    def _call(self, module: str, function: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), function)(self._obj, *args, **kwargs)

    def features(self, window: Any = "5min", by: str = "source_ip", features: Any = "default", slide: Any = None) -> pd.DataFrame:
        """Per (entity, window) features: :func:`t1046lab.features.window_features` on this frame."""
        return self._call("t1046lab.features", "window_features", window=window, by=by, features=features, slide=slide)
