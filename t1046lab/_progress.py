"""Progress bars that stay out of the way: off under ``TQDM_DISABLE=1`` or without a terminal."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["progress", "progress_enabled"]


def progress_enabled() -> bool:
    """True when a progress bar would be seen: a terminal or a notebook, and not disabled."""
    if os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes"}:
        return False
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr is not None and sys.stderr.isatty()


def progress(iterable: Iterable[T] | None = None, **kwargs: Any):
    """A ``tqdm`` bar (notebook-aware) over ``iterable``, disabled when nobody would see it."""
    kwargs.setdefault("disable", not progress_enabled())
    if kwargs["disable"]:
        # tqdm.auto warns in a kernel without ipywidgets even for a bar nobody will see.
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm

    kwargs.setdefault("leave", False)
    return tqdm(iterable, **kwargs)
