"""Shared fixtures: the third-party samples in ../shared/data, skipped or required."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def _require_shared() -> bool:
    return os.environ.get("T1046_REQUIRE_SHARED", "") == "1"


def shared_file(relative: str) -> Path:
    """Path of a third-party sample under ``../shared/data``.

    A user's clone has no ``../shared``: the test is skipped with the reason. CI sets
    ``T1046_REQUIRE_SHARED=1``, and there a missing sample fails the test.
    """
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"third-party sample {path} is not here (it lives in ../shared/data beside the project)"
        if _require_shared():
            pytest.fail(message + "; T1046_REQUIRE_SHARED=1 requires it")
        pytest.skip(message)
    return path


@pytest.fixture
def shared():
    """``shared("real/pcap/synscan.pcapng")`` gives the path, or skips / fails as above."""
    return shared_file
