"""Opening inputs: plain or gzip, whole or in line chunks with line numbers."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["PathLike", "open_binary", "read_head", "iter_line_chunks", "is_gzip"]

PathLike = str | os.PathLike[str]

_GZIP_MAGIC = b"\x1f\x8b"
#: Lines per chunk for line-oriented readers: large enough to vectorise, small enough to bound memory.
DEFAULT_CHUNK_LINES = 262_144


def is_gzip(path: PathLike) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def open_binary(path: PathLike) -> BinaryIO:
    """Open ``path`` for binary reading, decompressing gzip transparently (by magic, not name)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; pass a file")
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_head(path: PathLike, n: int = 65_536) -> bytes:
    """The first ``n`` bytes of the (decompressed) input, for format sniffing."""
    with open_binary(path) as fh:
        try:
            return fh.read(n)
        except (EOFError, OSError, gzip.BadGzipFile):
            return b""


def iter_line_chunks(
    path: PathLike, chunk_lines: int = DEFAULT_CHUNK_LINES
) -> Iterator[tuple[int, list[bytes]]]:
    """Yield ``(first_line_number, lines)`` with at most ``chunk_lines`` raw lines each.

    Lines are bytes without their line ending; line numbers are 1-based. Decoding is left
    to the reader so that a line of bad UTF-8 can be quarantined with its number. A
    truncated gzip stream ends the iteration after the last complete line and raises
    :class:`EOFError`, which readers turn into a quarantined record.
    """
    line_no = 1
    with open_binary(path) as fh:
        buffered = io.BufferedReader(fh) if not isinstance(fh, io.BufferedReader) else fh
        chunk: list[bytes] = []
        for raw in buffered:
            chunk.append(raw.rstrip(b"\r\n"))
            if len(chunk) >= chunk_lines:
                yield line_no, chunk
                line_no += len(chunk)
                chunk = []
        if chunk:
            yield line_no, chunk
