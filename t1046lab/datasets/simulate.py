"""The enterprise simulator: labelled connections of an enterprise network over days.

Roles (workstations, web and app servers, databases, DNS resolvers, a NAT gateway,
Kubernetes nodes and pods, a Prometheus-like scraper, an uptime checker, a backup server,
CI runners and a sanctioned vulnerability scanner) produce benign traffic with a diurnal
and weekly rhythm; scans of every type are injected from compromised hosts. Targets
answer as real hosts do, from one response model (open port established, closed port
rejected, firewalled port or empty address no_reply, closed UDP port ICMP unreachable).

Everything is drawn from ``numpy.random.Generator`` objects derived with
``SeedSequence.spawn``: the network and the scan plan from the run's seed, each day and
each scan from its own child seed. A day is the unit of generation, so the rows do not
depend on ``chunk_days`` or on streaming to parquet.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import _benign, _blocks, _scans
from ._network import Network, build_network

__all__ = ["BENIGN_CATEGORIES", "SCAN_TYPES", "EnterprisePlan", "enterprise_plan", "simulate_enterprise"]

log = logging.getLogger("t1046lab")

SCAN_TYPES = _blocks.SCAN_TYPES
BENIGN_CATEGORIES = _blocks.BENIGN_CATEGORIES
NS = _blocks.NS
DAY = 86_400 * NS


@dataclass
class EnterprisePlan:
    """What a simulation run will contain, before any row is drawn.

    Attributes
    ----------
    network : Network
        Addresses by role, open ports and the response model.
    scans : list of PlannedScan
        Every injected scan: source(s), targets, ports, start.
    start_ns : int
        Midnight UTC of the first day, in ns since the epoch.
    days : int
    day_seeds, scan_seeds : list of numpy.random.SeedSequence
        One child seed per day and per scan.
    """

    network: Network
    scans: list[_scans.PlannedScan]
    start_ns: int
    days: int
    day_seeds: list[np.random.SeedSequence]
    scan_seeds: list[np.random.SeedSequence]
    entropy: int

    def scan_table(self) -> pd.DataFrame:
        """One row per injected scan (id, type, source, counts of sources, decoys, targets, ports)."""
        columns = ["scan_id", "scan_type", "day", "start", "source_ip", "n_sources", "n_decoys", "n_targets", "n_ports", "transport", "variant"]
        frame = pd.DataFrame([s.record() for s in self.scans], columns=columns)
        frame["start"] = pd.to_datetime(frame["start"], utc=True)
        return frame

    def activity_ids(self) -> list[str]:
        """The ``scan_id`` vocabulary: injected scans, then each sanctioned scan run."""
        sanctioned = [
            f"sanctioned-{pd.Timestamp(self.start_ns + d * DAY, tz='UTC'):%Y-%m-%d}"
            for d in range(self.days)
            if self._weekday(d) == _benign.SANCTIONED_WEEKDAY
        ]
        return [s.scan_id for s in self.scans] + sanctioned

    def _weekday(self, day: int) -> int:
        return int(pd.Timestamp(self.start_ns + day * DAY, tz="UTC").weekday())

    def day_frame(self, day: int) -> pd.DataFrame:
        """The canonical labelled frame of one day (rows sorted by ``event_start``)."""
        rng = np.random.default_rng(self.day_seeds[day])
        day_start = self.start_ns + day * DAY
        blocks = _benign.benign_day(self.network, day_start, self._weekday(day), rng)
        ids = self.activity_ids()
        if self._weekday(day) == _benign.SANCTIONED_WEEKDAY:
            name = f"sanctioned-{pd.Timestamp(day_start, tz='UTC'):%Y-%m-%d}"
            blocks[-1]["scan_id"][:] = ids.index(name)
        for code, (scan, seed) in enumerate(zip(self.scans, self.scan_seeds)):
            if scan.day == day:
                blocks.append(_scans.scan_rows(self.network, scan, np.random.default_rng(seed), code))
        block = _blocks.concat_blocks(blocks)
        del blocks  # the parts are copied into ``block``: free them before building the frame
        block = _blocks.sort_block(block)
        return _blocks.to_frame(block, list(_scans.SCENARIOS), ids)


def _seed_entropy(random_state: int | np.random.Generator | np.random.SeedSequence | None) -> int:
    if isinstance(random_state, np.random.SeedSequence):
        return int(random_state.entropy)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63))
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, (int, np.integer)) and random_state >= 0:
        return int(random_state)
    raise ValueError(f"random_state must be a non-negative int, a Generator, a SeedSequence or None, got {random_state!r}")


def enterprise_plan(
    n_hosts: int = 200,
    days: int = 7,
    *,
    scans: str | Sequence[str] | Mapping[str, int] | None = "all",
    start: str | pd.Timestamp = "2026-01-05",
    random_state: int | np.random.Generator | None = None,
) -> EnterprisePlan:
    """Lay out the network and the injected scans of a simulation, without drawing rows.

    Takes the same arguments as :func:`simulate_enterprise`; with the same
    ``random_state`` the plan is the one that run uses.
    """
    if not isinstance(days, (int, np.integer)) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    counts = _scans.normalise_scans(scans)
    entropy = _seed_entropy(random_state)
    root = np.random.SeedSequence(entropy)
    net_seed, plan_seed, days_seed, scans_seed = root.spawn(4)
    start_ts = pd.Timestamp(start)
    start_ts = start_ts.tz_localize("UTC") if start_ts.tzinfo is None else start_ts.tz_convert("UTC")
    start_ns = int(start_ts.normalize().value)
    net = build_network(int(n_hosts), np.random.default_rng(net_seed))
    plan = _scans.plan_scans(net, counts, int(days), start_ns, np.random.default_rng(plan_seed))
    return EnterprisePlan(
        network=net,
        scans=plan,
        start_ns=start_ns,
        days=int(days),
        day_seeds=days_seed.spawn(int(days)),
        scan_seeds=scans_seed.spawn(len(plan)),
        entropy=entropy,
    )


def _iter_chunks(plan: EnterprisePlan, chunk_days: int) -> Iterator[pd.DataFrame]:
    from .._progress import progress

    for first in progress(range(0, plan.days, chunk_days), desc="simulating", unit="chunk"):
        frames = [plan.day_frame(d) for d in range(first, min(first + chunk_days, plan.days))]
        yield frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def simulate_enterprise(
    n_hosts: int = 200,
    days: int = 7,
    *,
    scans: str | Sequence[str] | Mapping[str, int] | None = "all",
    start: str | pd.Timestamp = "2026-01-05",
    random_state: int | np.random.Generator | None = None,
    out: str | Path | None = None,
    chunk_days: int = 1,
) -> pd.DataFrame | Path:
    """Simulate an enterprise network's connections, labelled, with injected scans.

    Parameters
    ----------
    n_hosts : int, default 200
        Hosts of the enterprise (30 to 4,000); Kubernetes pods (three per node) come on top.
    days : int, default 7
        Days simulated from ``start`` (midnight UTC). UTC is taken as office time.
    scans : "all", None, list of str or dict of str to int, default "all"
        Which scans to inject: ``"all"`` gives one of each of :data:`SCAN_TYPES`; a list
        gives one of each named type; ``{"vertical": 2, "slow": 1}`` gives counts; None none.
    start : str or Timestamp, default "2026-01-05" (a Monday)
        The first day.
    random_state : int, Generator or None
        Seed. The same seed gives the same rows, in memory or streamed.
    out : str or path, optional
        Stream to disk with bounded memory and return the path instead of a frame. A name
        ending in ``.parquet`` is one file (zstd), one row group per chunk. Any other name
        is a directory written as a dataset partitioned by day, one file per day at
        ``out/day=YYYY-MM-DD/part-0.parquet`` (what ``dask.dataframe.read_parquet``,
        pyarrow and :func:`t1046lab.scale.streaming.iter_chunks` read lazily), with the
        simulation metadata in ``out/_simulation.json``; ``chunk_days`` is then 1.
    chunk_days : int, default 1
        Days per chunk when streaming (memory grows with it; rows do not change).

    Returns
    -------
    DataFrame or Path
        The canonical connections frame (``log_format="simulated"``) with label columns
        ``label`` (scan/benign), ``scan_type``, ``benign_category``, ``scenario``, plus
        ``scan_id`` (the injected scan, or sanctioned scan run, a row belongs to) and
        ``sim_source_role`` (the role of the source address). ``attrs["simulation"]`` holds
        the seed, the role counts and the scan plan. With ``out=``, the parquet path.

    Examples
    --------
    >>> conns = simulate_enterprise(n_hosts=60, days=1, scans=["vertical"], random_state=0)  # doctest: +SKIP
    >>> conns.groupby("label").size()                                                       # doctest: +SKIP
    """
    if not isinstance(chunk_days, (int, np.integer)) or chunk_days < 1:
        raise ValueError(f"chunk_days must be a positive integer, got {chunk_days!r}")
    plan = enterprise_plan(n_hosts, days, scans=scans, start=start, random_state=random_state)
    meta = {
        "random_state": plan.entropy,
        "n_hosts": int(n_hosts),
        "days": int(days),
        "start": pd.Timestamp(plan.start_ns, tz="UTC").isoformat(),
        "roles": plan.network.summary(),
        "scans": [{k: (str(v) if k == "start" else v) for k, v in s.record().items()} for s in plan.scans],
    }
    if out is None:
        frame = pd.concat(list(_iter_chunks(plan, chunk_days)), ignore_index=True)
        frame.attrs["simulation"] = meta
        return frame
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        return _stream_days(plan, out, meta)
    return _stream(plan, chunk_days, out, meta)


_WRITE_ROWS = 1_000_000


def _arrow(frame: pd.DataFrame):
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Microseconds are all the simulator draws; they take half the bits on disk.
    position = table.schema.get_field_index("event_start")
    return table.set_column(position, "event_start", table["event_start"].cast(pa.timestamp("us", tz="UTC")))


def _write_parquet(frame: pd.DataFrame, path: Path, metadata: dict[bytes, bytes] | None = None, *, level: int = 9) -> None:
    """Write ``frame`` to ``path`` a slice at a time."""
    writer = None
    try:
        # Convert to arrow a slice at a time: a whole day's table would double the peak.
        for first in range(0, max(len(frame), 1), _WRITE_ROWS):
            table = _arrow(frame.iloc[first : first + _WRITE_ROWS])
            if writer is None:
                writer = _writer(path, table.schema, metadata, level)
            writer.write_table(table.cast(writer.schema), row_group_size=_WRITE_ROWS)
    finally:
        if writer is not None:
            writer.close()


def _writer(path: Path, schema: Any, metadata: dict[bytes, bytes] | None, level: int) -> Any:
    import pyarrow.parquet as pq

    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    # Sorted microsecond times delta-encode to a few bits a row.
    return pq.ParquetWriter(
        path,
        schema,
        compression="zstd",
        compression_level=level,
        use_dictionary=[c for c in schema.names if c != "event_start"],
        column_encoding={"event_start": "DELTA_BINARY_PACKED"},
    )


#: zstd level of day-partitioned datasets: they are the large ones, written for speed.
_DATASET_LEVEL = 1


def _stream_days(plan: EnterprisePlan, root: Path, meta: dict[str, Any]) -> Path:
    import json

    from .._progress import progress

    root.mkdir(parents=True, exist_ok=True)
    rows = 0
    for day in progress(range(plan.days), desc="simulating", unit="day"):
        frame = plan.day_frame(day)
        label = pd.Timestamp(plan.start_ns + day * DAY, tz="UTC").strftime("%Y-%m-%d")
        folder = root / f"day={label}"
        folder.mkdir(exist_ok=True)
        _write_parquet(frame, folder / "part-0.parquet", level=_DATASET_LEVEL)
        rows += len(frame)
        del frame
    (root / "_simulation.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    log.info("simulated %s rows into %s (one file per day)", f"{rows:,}", root)
    return root


def _stream(plan: EnterprisePlan, chunk_days: int, path: Path, meta: dict[str, Any]) -> Path:
    import json


    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    rows = 0
    try:
        for chunk in _iter_chunks(plan, chunk_days):
            # Convert to arrow a slice at a time: a whole day's table would double the peak.
            for first in range(0, max(len(chunk), 1), _WRITE_ROWS):
                table = _arrow(chunk.iloc[first : first + _WRITE_ROWS])
                if writer is None:
                    writer = _writer(path, table.schema, {b"t1046lab.simulation": json.dumps(meta).encode()}, 9)
                writer.write_table(table.cast(writer.schema), row_group_size=_WRITE_ROWS)
            rows += len(chunk)
            del chunk
    finally:
        if writer is not None:
            writer.close()
    log.info("simulated %s rows into %s", f"{rows:,}", path)
    return path
