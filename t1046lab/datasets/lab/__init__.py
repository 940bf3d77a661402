"""The scan lab: real scanners and real benign traffic in network namespaces, captured and labelled.

``run_lab(scenario="smoke", out_dir=...)`` builds a private LAN of network namespaces (a bridge
in a switch namespace, one namespace per host), starts services, runs a timeline of labelled
activities, captures the bridge with tcpdump and writes ``capture.pcap``, ``ground_truth.csv``,
``connections.parquet`` and ``lab.log``. Linux and root only; see ``docs/lab.md``.
"""

from __future__ import annotations

from .groundtruth import label_connections, label_counts, read_ground_truth
from .netns import LabSafetyError, check_targets, leftover_namespaces, preflight
from .runner import (
    DEFAULT_SUBNET,
    LabResult,
    LabUnavailableError,
    lab_available,
    run_lab,
)
from .scenarios import BENIGN_CATEGORIES, SCAN_TYPES, SCENARIOS, get_scenario

__all__ = [
    "BENIGN_CATEGORIES",
    "DEFAULT_SUBNET",
    "SCAN_TYPES",
    "SCENARIOS",
    "LabResult",
    "LabSafetyError",
    "LabUnavailableError",
    "check_targets",
    "get_scenario",
    "lab_available",
    "label_connections",
    "label_counts",
    "leftover_namespaces",
    "preflight",
    "read_ground_truth",
    "run_lab",
]
