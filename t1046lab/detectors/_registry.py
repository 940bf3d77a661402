"""The detector registry: names, parameters with their published defaults, and validation."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["DetectorInfo", "register_detector", "get_detector", "list_detectors"]


@dataclass(frozen=True)
class DetectorInfo:
    """One registered detector.

    Attributes
    ----------
    name : str
        The ``detector=`` name.
    func : callable
        ``func(conns, *, all_windows, **params) -> alerts frame``.
    params : dict
        Parameter name to default value (the published default of the original).
    description : str
        One line: what it is.
    source : str
        Where its semantics come from (the original script, module or paper).
    choices : dict
        Parameter name to its allowed values, for parameters with a closed set.
    partition_by : str, optional
        A column that keys all of the detector's state: rows with different values in it
        never influence each other's alerts. Streaming and Dask runs split the data on it
        (every source's rows in one part) and get the in-memory result exactly. ``None``
        when no column does (state keyed by both ends of a connection).
    origin_param : str, optional
        A parameter that, left ``None``, anchors the detector's clock (epochs) on the
        first ``event_start`` of the data. Partitioned runs set it to the first time of
        the whole input, so every partition keeps the in-memory epochs.
    window_model : callable, optional
        For detectors that score window features: ``window_model(resolved_params)``
        returns ``(make_estimator, feature_names)``. Streaming and Dask runs then compute
        the window features out of core and fit or apply the estimator on them.
    """

    name: str
    func: Callable[..., pd.DataFrame]
    params: Mapping[str, Any]
    description: str
    source: str
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    partition_by: str | None = None
    window_model: Callable[[Mapping[str, Any]], tuple[Callable[[], Any], list[str]]] | None = None
    origin_param: str | None = None

    def resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``params``; unknown names raise ``ValueError`` listing the known ones."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            known = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
            raise ValueError(
                f"detector {self.name!r} has no parameter(s) {unknown}; its parameters (with defaults) are: {known}"
            )
        out = dict(self.params)
        out.update(params)
        for name, allowed in self.choices.items():
            value = out[name]
            values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
            bad = [v for v in values if v not in allowed]
            if bad:
                raise ValueError(f"detector {self.name!r}: {name}={value!r} is not allowed; choose from {list(allowed)}")
        return out


_REGISTRY: dict[str, DetectorInfo] = {}
_DISCOVERED = False


def register_detector(
    name: str,
    *,
    params: Mapping[str, Any],
    description: str,
    source: str,
    choices: Mapping[str, tuple[Any, ...]] | None = None,
    partition_by: str | None = None,
    window_model: Callable[[Mapping[str, Any]], tuple[Callable[[], Any], list[str]]] | None = None,
    origin_param: str | None = None,
) -> Callable[[Callable[..., pd.DataFrame]], Callable[..., pd.DataFrame]]:
    """Decorator registering ``func(conns, *, all_windows=False, **params)`` under ``name``.

    See :class:`DetectorInfo` for ``partition_by``, ``origin_param`` and ``window_model``, which let the
    detector run on data larger than memory.
    """

    def decorate(func: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        _REGISTRY[name] = DetectorInfo(
            name, func, dict(params), description, source, dict(choices or {}), partition_by, window_model, origin_param
        )
        return func

    return decorate


def _discover() -> None:
    """Import every module of :mod:`t1046lab.detectors` once, so each registers itself."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    from . import __path__ as package_path

    for info in pkgutil.iter_modules(package_path):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__package__}.{info.name}")
    _DISCOVERED = True


def get_detector(name: str) -> DetectorInfo:
    """The registered detector called ``name``; ``ValueError`` names the known ones otherwise."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known detectors: {sorted(_REGISTRY)}") from None


def list_detectors() -> pd.DataFrame:
    """A table of the registered detectors: name, description, source and default parameters."""
    _discover()
    rows = [
        {
            "detector": info.name,
            "description": info.description,
            "source": info.source,
            "parameters": ", ".join(f"{k}={v!r}" for k, v in info.params.items()),
        }
        for info in sorted(_REGISTRY.values(), key=lambda i: i.name)
    ]
    return pd.DataFrame(rows, columns=["detector", "description", "source", "parameters"])
