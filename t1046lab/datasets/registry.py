"""Bundled datasets: ``list_datasets()``, ``load_dataset(name)`` and datasheet count tables.

A bundled dataset is a directory ``data/<name>/`` holding ``connections.parquet`` (a
canonical frame with label columns) and a datasheet ``README.md``. In a source checkout the
directory is the repository's ``data/``; an installed wheel carries it as the package
``t1046lab._data``. ``T1046_DATA_DIR`` overrides both.

Datasheets state their counts in markdown tables made by :func:`count_tables`: a table whose
header is ``| <label column> | rows |`` (or ``| ... | connections |``) for ``label``,
``scan_type``, ``benign_category`` or ``scenario``; :func:`parse_count_tables` reads them
back, so tests can check that a datasheet matches what loads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

__all__ = ["PUBLIC_DATASETS", "count_tables", "data_dir", "list_datasets", "load_dataset", "parse_count_tables"]

_CONNECTIONS = "connections.parquet"
_DATASHEET = "README.md"
_COUNTED = ("label", "scan_type", "benign_category", "scenario")

#: Public datasets a user downloads and reads with :func:`t1046lab.read`.
PUBLIC_DATASETS = {
    "cicids2017": (
        (
            "CIC-IDS2017 CICFlowMeter CSVs (UNB). Download from https://www.unb.ca/cic/datasets/ids-2017.html, "
            "then t1046lab.read(path, format='cic')"
        ),
        "cic",
    ),
    "unsw-nb15": (
        (
            "UNSW-NB15 raw CSVs (UNSW Canberra). Download from https://research.unsw.edu.au/projects/unsw-nb15-dataset, "
            "then t1046lab.read(path, format='unsw')"
        ),
        "unsw",
    ),
    "cidds-001": (
        (
            "CIDDS-001 flow CSVs (Hochschule Coburg). Download from https://www.hs-coburg.de/cidds, "
            "then t1046lab.read(path, format='cidds')"
        ),
        "cidds",
    ),
}


def data_dir() -> Path:
    """The directory holding the bundled datasets."""
    override = os.environ.get("T1046_DATA_DIR")
    if override:
        return Path(override)
    # A source checkout (or editable install): the repository's top-level data/.
    root = Path(__file__).resolve().parents[2]
    checkout = root / "data"
    if checkout.is_dir() and (root / "pyproject.toml").is_file():
        return checkout
    try:
        from importlib.resources import files

        installed = Path(str(files("t1046lab._data")))
        if installed.is_dir():
            return installed
    except (ModuleNotFoundError, TypeError):
        pass
    return checkout


def _bundled() -> dict[str, Path]:
    root = data_dir()
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / _CONNECTIONS).is_file()}


def _datasheet_field(text: str, field: str) -> str | None:
    match = re.search(rf"^\s*(?:\*\*)?{field}(?:\*\*)?\s*:\s*(?:\*\*)?\s*(.+?)\s*$", text, re.IGNORECASE | re.MULTILINE)
    return match.group(1).strip("*` ") if match else None


def _description(text: str) -> str:
    explicit = _datasheet_field(text, "description")
    if explicit:
        return explicit
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if block and not block.startswith(("#", "|", "```", "<!--")) and ":" not in block.split("\n")[0][:20]:
            return " ".join(block.split())[:200]
    return ""


def _source(text: str) -> str:
    explicit = _datasheet_field(text, "source")
    if explicit:
        return explicit.split()[0].lower().strip(".,")
    title = next((line for line in text.splitlines() if line.startswith("#")), "").lower()
    if "lab" in title.split() or "lab dataset" in title:
        return "lab"
    return "simulated" if "simulat" in title else "bundled"


def list_datasets() -> pd.DataFrame:
    """The datasets :func:`load_dataset` knows, bundled first, then public ones to download.

    Returns
    -------
    DataFrame
        Columns ``name``, ``description``, ``rows`` (NA for public datasets, which are
        not bundled), ``source`` (``simulated``, ``lab``, ``bundled`` or ``public``; from
        the datasheet's ``Source:`` line, else its title), ``labelled`` (``load_dataset``
        returns label columns; False for public datasets, which it cannot load) and ``path``.
    """
    import pyarrow.parquet as pq

    records = []
    for name, path in _bundled().items():
        sheet = path / _DATASHEET
        text = sheet.read_text(encoding="utf-8") if sheet.is_file() else ""
        parquet = pq.ParquetFile(path / _CONNECTIONS)
        labelled = "label" in parquet.schema_arrow.names
        records.append((name, _description(text), parquet.metadata.num_rows, _source(text), labelled, str(path / _CONNECTIONS)))
    for name, (description, _) in PUBLIC_DATASETS.items():
        records.append((name, description, None, "public", False, None))
    frame = pd.DataFrame(records, columns=["name", "description", "rows", "source", "labelled", "path"])
    frame["rows"] = frame["rows"].astype("Int64")
    return frame


def load_dataset(name: str) -> pd.DataFrame:
    """Load a bundled labelled dataset as a canonical connections frame.

    Parameters
    ----------
    name : str
        A name from :func:`list_datasets` with a source other than ``public``.

    Returns
    -------
    DataFrame
        The canonical frame with its label columns; ``attrs["dataset"]`` names it and
        ``attrs["read_report"]`` accounts for every row.

    Raises
    ------
    KeyError
        For an unknown name (the message lists the available ones), or a public dataset
        that must be downloaded first (the message says how to read it).
    """
    from ..io import read

    bundled = _bundled()
    if name not in bundled:
        if name in PUBLIC_DATASETS:
            description = PUBLIC_DATASETS[name][0]
            raise KeyError(f"{name!r} is a public dataset that is not bundled: {description}")
        available = sorted(bundled) + sorted(PUBLIC_DATASETS)
        raise KeyError(f"unknown dataset {name!r}; available: {', '.join(available)} (bundled ones in {data_dir()})")
    frame = read(bundled[name] / _CONNECTIONS, format="canonical")
    frame.attrs["dataset"] = name
    return frame


def count_tables(frame: pd.DataFrame, columns: tuple[str, ...] = _COUNTED) -> str:
    """Markdown count tables (``| column | rows |``) of the label columns ``frame`` has.

    Missing values are counted as ``(none)``. :func:`parse_count_tables` reads them back.
    """
    parts = []
    for column in columns:
        if column not in frame.columns:
            continue
        counts = frame[column].astype("object").fillna("(none)").value_counts().sort_index()
        lines = [f"| {column} | rows |", "|---|---:|"]
        lines += [f"| {value} | {int(n):,} |" for value, n in counts.items()]
        lines.append(f"| **total** | {int(counts.sum()):,} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def parse_count_tables(text: str) -> dict[str, dict[str, int]]:
    """Read the tables :func:`count_tables` writes: ``{column: {value: rows}}`` (totals left out)."""
    tables: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.strip().startswith("|") else None
        if cells is None:
            current = None
            continue
        if len(cells) == 2 and cells[1] in ("rows", "connections") and cells[0] in _COUNTED:
            current = tables.setdefault(cells[0], {})
        elif current is not None and len(cells) == 2 and not set(cells[0]) <= set("-: ") and cells[0] != "**total**":
            current[cells[0].strip("`")] = int(cells[1].replace(",", ""))
    return tables
