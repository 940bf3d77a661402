"""The library's own warnings and errors.

Warnings are subclasses of :class:`T1046Warning`, so a user can filter all of them, or one
kind, with the standard :mod:`warnings` machinery; the library never silences warnings
globally.
"""

from __future__ import annotations

__all__ = ["T1046Warning", "DataQualityWarning", "ParseError", "FormatDetectionError"]


class T1046Warning(UserWarning):
    """Base class of every warning t1046lab emits."""


class DataQualityWarning(T1046Warning):
    """Input records were quarantined, or the input loses information the caller may expect."""


class ParseError(ValueError):
    """A record could not be parsed in ``strict=True`` mode.

    The message names the file and the line (text formats) or byte offset (binary formats).

    Attributes
    ----------
    path : str
        The input file.
    line : int or None
        1-based line number, for text formats.
    offset : int or None
        Byte offset of the record, for binary formats.
    reason : str
        What is wrong with the record.
    """

    def __init__(self, path: str, reason: str, *, line: int | None = None, offset: int | None = None):
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.offset = offset
        where = self.path
        if line is not None:
            where += f":{line}"
        if offset is not None:
            where += f" (byte offset {offset})"
        super().__init__(f"{where}: {reason}")


class FormatDetectionError(ValueError):
    """``format="auto"`` could not recognise the input."""
