"""Labelled data: bundled datasets, the enterprise simulator, and (in ``lab``) the scan lab.

``load_dataset(name)`` reads a dataset bundled in the repository's ``data/`` directory;
``list_datasets()`` names them; ``simulate_enterprise(...)`` makes new labelled data.
"""

from __future__ import annotations

from .registry import list_datasets, load_dataset
from .simulate import enterprise_plan, simulate_enterprise

__all__ = ["enterprise_plan", "list_datasets", "load_dataset", "simulate_enterprise"]
