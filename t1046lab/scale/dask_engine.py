"""Window features and detectors on a ``dask.dataframe``, on any Dask scheduler.

``pip install t1046lab[dask]``. :func:`window_features` and :func:`~t1046lab.detect` hand a
dask DataFrame to :func:`window_features_dask` and :func:`detect_dask`; the result equals the
pandas result of the same rows (entropy features can differ in the last bit: their float
sums run in an order that depends on which peers share the partition).

Partitioning (no window may straddle two partitions)
    Features of an (entity, window) depend only on that entity's rows in that window, so
    any layout that gives every window all of its rows in one partition is exact. From each
    partition's first and last ``event_start`` (a pass that usually reads that one column)
    one of three is chosen:

    * **map**: the partitions already hold disjoint sets of windows (one parquet file per
      day with tumbling windows that divide a day): ``window_features`` runs on each
      partition as it is; nothing moves.
    * **boundary**: the partitions are ordered in time and share only the windows at their
      edges (a day file read as several row groups, sliding windows spanning midnight):
      each partition owns the windows that start from its first event up to the next
      partition's, and takes the few rows of those windows it lacks from its neighbours.
    * **shuffle**: anything else (partitions in no time order), or the ``expensive`` history
      features, which look at an entity's whole history: the rows are shuffled on the
      entity column so that each entity's rows share a partition. A row id taken before
      the shuffle restores the original row order inside each partition, so ties in time
      break as they do in memory.

    The choice is logged on the ``t1046lab`` logger (INFO); :func:`plan_layout` returns it.

Detectors
    * Window-model detectors (``port-entropy``, ``iforest``, ``role-baseline``): features on
      Dask. With ``model=``, the fitted estimator is one delayed object in the graph (shipped
      once to each worker that needs it, not pickled into every task) and each partition of
      features is scored in parallel. Without it, the features (one row per entity-window,
      small) are gathered, the estimator is fitted once and scored with
      :func:`~t1046lab.detectors.anomaly.score_windows`, as in memory.
    * ``partition_by`` detectors (``zeek-scan``, ``simple-scan``, ``trw``): rows shuffled on
      that column, the in-memory detector run on every partition, results concatenated.
      ``zeek-scan``'s epochs start at the first connection of the data when
      ``epoch_origin`` is not given: that time is taken from the whole data set first.
    * The others (``snort-portscan``, ``ensemble``) raise ``ValueError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..alerts import empty_alerts
from ..exceptions import DataQualityWarning
from ..features import HISTORY_FEATURES, get_features, input_columns, window_features
from ..windows import WindowLike, to_timedelta_ns

__all__ = ["connect", "detect_dask", "plan_layout", "read_parquet", "window_features_dask"]

logger = logging.getLogger(__name__)

#: Column holding each row's original position while rows are shuffled.
ROW_ID = "_t1046_row"
# Row id = partition number << _ROW_BITS | position in the partition: ordered like the rows
# of ``ddf.compute()`` with no pass to count partition lengths first.
_ROW_BITS = 40

# Label columns (and the simulator's): detectors never read them, so they are not shuffled.
_LABEL_LIKE = frozenset({"label", "scan_type", "benign_category", "scenario", "scan_id"})

#: Final sort of the partition-by detectors' alerts frames (what their in-memory code does;
#: stable, so rows of one entity keep the order its partition gave them).
_ALERT_ORDER = ["window_start", "entity"]


def _dd() -> Any:
    try:
        import dask.dataframe as dd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the Dask engine needs dask: pip install 't1046lab[dask]'") from exc
    return dd


def is_dask_frame(obj: Any) -> bool:
    """True for a dask DataFrame (checked without importing dask)."""
    return type(obj).__module__.startswith("dask") and hasattr(obj, "npartitions")


# --- reading ----------------------------------------------------------------------------


def _hive_keys(path: Path) -> set[str]:
    """Names of hive partition keys (``day`` in ``day=2024-01-01/``) under ``path``."""
    if not path.is_dir():
        return set()
    return {p.name.split("=", 1)[0] for p in path.rglob("*=*") if p.is_dir()}


def read_parquet(path: str | Path | Sequence[str | Path], **options: Any) -> Any:
    """A canonical parquet file, directory or list of files as a lazy dask DataFrame.

    Hive partition columns (``day`` of ``DIR/day=YYYY-MM-DD/part-0.parquet``) of local
    paths are dropped: they repeat ``event_start`` and are not canonical columns. URLs
    (``s3://...``) go to ``dd.read_parquet`` as they are. Each file (or row group, as
    ``dd.read_parquet`` decides; ``split_row_groups=True`` gives smaller partitions, which
    the boundary layout handles) is a partition; nothing is read until computed.
    """
    dd = _dd()
    names = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    local = [Path(n) for n in names if "://" not in n]
    for p in local:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such parquet file or directory")
    ddf = dd.read_parquet(names if len(names) > 1 else names[0], **options)
    hive = set().union(*(_hive_keys(p) for p in local)) & set(ddf.columns)
    return ddf.drop(columns=sorted(hive)) if hive else ddf


def _as_dask(data: Any) -> Any:
    if is_dask_frame(data):
        return data
    if isinstance(data, (str, Path, list, tuple)):
        return read_parquet(data)
    if isinstance(data, pd.DataFrame):
        raise TypeError("detect_dask takes a dask DataFrame or a parquet path; for a pandas frame call t1046lab.detect()")
    raise TypeError(f"expected a dask DataFrame or a parquet path, got {type(data).__name__}")


# --- schedulers -------------------------------------------------------------------------


def connect(scheduler: str | None = None, *, n_workers: int | None = None, threads_per_worker: int | None = None) -> Any:
    """A ``distributed.Client``: to the scheduler at ``scheduler``, or to a new ``LocalCluster``.

    Parameters
    ----------
    scheduler : str, optional
        Scheduler address (``tcp://10.0.0.5:8786``). ``None`` starts a ``LocalCluster`` of
        worker processes on this machine (``n_workers`` and ``threads_per_worker`` as given,
        else Dask's defaults), closed with the client.

    Returns
    -------
    distributed.Client
        Close it (or use it as a context manager) when done.
    """
    try:
        from distributed import Client
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the Dask engine needs dask.distributed: pip install 't1046lab[dask]'") from exc
    if scheduler is not None:
        return Client(scheduler)
    options = {k: v for k, v in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)) if v is not None}
    return Client(dashboard_address=None, **options)  # the client owns the LocalCluster and closes it


@contextlib.contextmanager
def _scheduler(scheduler: Any) -> Iterator[None]:
    """Run the block on ``scheduler``: None keeps the active one, a Client or an address."""
    if scheduler is None:
        yield
        return
    if isinstance(scheduler, str):
        client = connect(scheduler)
        try:
            with client.as_current():
                yield
        finally:
            client.close()
        return
    with scheduler.as_current():
        yield


# --- window features --------------------------------------------------------------------


def _time_range(times: pd.Series) -> tuple[int, int] | None:
    """First and last event time of a partition in ns, or None when it has none."""
    t = times.dropna()
    if t.empty:
        return None
    return int(t.min().value), int(t.max().value)


def _window_id_ranges(ranges: Sequence[tuple[int, int] | None], window_ns: int, slide_ns: int) -> list[tuple[int, int]]:
    """Inclusive range of window ids ``k`` (window ``[k*slide, k*slide + window)``) per partition."""
    out = []
    for r in ranges:
        if r is not None:
            lo, hi = r
            out.append(((lo - window_ns) // slide_ns + 1, hi // slide_ns))
    return out


def _disjoint(ranges: list[tuple[int, int]]) -> bool:
    ranges = sorted(ranges)
    return all(b[0] > a[1] for a, b in itertools.pairwise(ranges))


_NEG, _POS = -(1 << 62), 1 << 62  # open ends of time and window-id intervals


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Layout, and for ``"boundary"`` what each output partition reads.

    ``tasks[i] = (sources, start_ns, end_ns, k_lo, k_hi)``: output partition ``i`` takes the
    rows of partitions ``sources`` with ``start_ns <= event_start < end_ns`` and keeps the
    windows ``k_lo <= k < k_hi`` (every row of those windows is among the rows it took).
    """

    layout: str
    tasks: tuple[tuple[tuple[int, ...], int, int, int, int], ...] = ()


def _boundary_tasks(ranges: Sequence[tuple[int, int] | None], window_ns: int, slide_ns: int) -> tuple[list[Any], int]:
    """Give each partition the windows starting from its first event up to the next partition's.

    Returns the tasks (see :class:`_Plan`) and how many (partition, other partition) reads
    they need: 0 when the partitions are disjoint in windows, about one per boundary for
    time-ordered partitions (day files split into row groups, sliding windows at midnight).
    """
    known = [i for i, r in enumerate(ranges) if r is not None]
    order = sorted(known, key=lambda i: ranges[i][0])
    k_start = {i: (_NEG if pos == 0 else ranges[i][0] // slide_ns) for pos, i in enumerate(order)}
    tasks: list[Any] = [((i,), _NEG, _POS, _NEG, _POS) for i in range(len(ranges))]  # no times: own rows only
    links = 0
    for pos, i in enumerate(order):
        k_lo = k_start[i]
        k_hi = k_start[order[pos + 1]] if pos + 1 < len(order) else _POS
        start = _NEG if k_lo == _NEG else k_lo * slide_ns
        end = _POS if k_hi == _POS else (k_hi - 1) * slide_ns + window_ns
        sources = tuple(j for j in known if j == i or (ranges[j][1] >= start and ranges[j][0] < end))
        links += len(sources) - 1
        tasks[i] = (sources, start, end, k_lo, k_hi)
    return tasks, links


def _range_frame(part: pd.DataFrame) -> pd.DataFrame:
    found = _time_range(part["event_start"])
    lo, hi = found if found is not None else (-1, -2)
    return pd.DataFrame({"lo": [lo], "hi": [hi]}, dtype=np.int64)


def _partition_time_ranges(ddf: Any, parts: list[Any]) -> list[tuple[int, int] | None]:
    """First and last event time of each of ``parts`` (``ddf.to_delayed()``).

    Reading ``event_start`` alone is cheapest. Dask may fuse parquet partitions when few
    columns are read, joining consecutive ones in a way fixed by the two counts; so that
    read is used when it gives as many partitions as ``parts``, and otherwise the ranges
    come from ``parts`` themselves (one extra read of the columns the computation needs).
    """
    import dask

    one_column = ddf[["event_start"]].to_delayed()
    source = one_column if len(one_column) == len(parts) else parts
    frames = dask.compute(*[dask.delayed(_range_frame)(p) for p in source])
    pairs = [(f["lo"].iloc[0], f["hi"].iloc[0]) for f in frames]
    return [(int(lo), int(hi)) if lo <= hi else None for lo, hi in pairs]


def _plan(ddf: Any, parts: list[Any], window_ns: int, slide_ns: int, features: str | Sequence[str]) -> _Plan:
    if HISTORY_FEATURES.intersection(f.name for f in get_features(features)):
        return _Plan("shuffle")
    if len(parts) == 1:
        return _Plan("map")
    ranges = _partition_time_ranges(ddf, parts)
    if _disjoint(_window_id_ranges(ranges, window_ns, slide_ns)):
        return _Plan("map")
    if not _time_ordered(ranges):
        return _Plan("shuffle")
    tasks, links = _boundary_tasks(ranges, window_ns, slide_ns)
    return _Plan("boundary", tuple(tasks)) if links <= 2 * len(tasks) else _Plan("shuffle")


def _time_ordered(ranges: Sequence[tuple[int, int] | None]) -> bool:
    """Partitions follow one another in time, overlapping their neighbour by at most a tenth.

    Then the boundary layout moves few rows; partitions in no time order (each spanning the
    whole period) are better shuffled on the entity, which moves each row once.
    """
    spans = sorted(r for r in ranges if r is not None)
    for (lo_a, hi_a), (lo_b, hi_b) in itertools.pairwise(spans):
        overlap = min(hi_a, hi_b) - lo_b
        if overlap > 0.1 * max(min(hi_a - lo_a, hi_b - lo_b), 1):
            return False
    return True


def plan_layout(ddf: Any, window: WindowLike = "5min", features: str | Sequence[str] = "default", slide: WindowLike | None = None) -> str:
    """How :func:`window_features_dask` partitions ``ddf``: ``"map"``, ``"boundary"`` or ``"shuffle"``.

    * ``"map"``: every partition holds whole windows no other partition touches; nothing moves.
    * ``"boundary"``: partitions are ordered in time and share only the windows at their
      boundaries (a day file read as several row groups, sliding windows spanning
      midnight); each partition gets the few rows of its boundary windows from its
      neighbours.
    * ``"shuffle"``: anything else, or features that look at history: rows are shuffled
      on the entity column.

    Deciding reads each partition's first and last ``event_start`` (usually a pass over that
    one column). ``ddf`` should hold only the columns the computation reads (as
    :func:`window_features_dask` passes it): the parquet partitions Dask reads depend on them.
    """
    window_ns = to_timedelta_ns(window)
    slide_ns = window_ns if slide is None else to_timedelta_ns(slide, name="slide")
    return _plan(ddf, ddf.to_delayed(), window_ns, slide_ns, features).layout


def _rows_between(part: pd.DataFrame, start: int, end: int, own: bool) -> pd.DataFrame:
    """Rows with ``start <= event_start < end`` (and, in their own partition, rows without a time)."""
    if start == _NEG and end == _POS and own:
        return part
    t = pd.DatetimeIndex(part["event_start"]).as_unit("ns")
    missing = t.isna()
    ns = t.asi8
    keep = (ns >= start) & (ns < end) & ~missing
    if own:
        keep |= missing  # window_features warns about them, once
    return part if keep.all() else part[keep]


def _boundary_features(pieces: list[pd.DataFrame], k_lo: int, k_hi: int, window: WindowLike, by: str,
                       features: list[str], slide: WindowLike | None, slide_ns: int) -> pd.DataFrame:
    rows = pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True)
    feats = window_features(rows, window=window, by=by, features=features, slide=slide)
    k = pd.DatetimeIndex(feats.index.get_level_values("window_start")).asi8 // slide_ns
    keep = (k >= k_lo) & (k < k_hi)  # windows outside are partial here, whole in a neighbour
    return feats if keep.all() else feats[keep]


def _add_row_ids(part: pd.DataFrame, partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
    number = 0 if partition_info is None else int(partition_info["number"])
    ids = (np.int64(number) << _ROW_BITS) + np.arange(len(part), dtype=np.int64)
    return part.assign(**{ROW_ID: ids})


def _restore_order(part: pd.DataFrame) -> pd.DataFrame:
    """Rows of a shuffled partition back in their original order, without the row id."""
    order = np.argsort(part[ROW_ID].to_numpy(), kind="stable")
    return part.drop(columns=[ROW_ID]).iloc[order].reset_index(drop=True)


def _shuffle_on(ddf: Any, column: str) -> Any:
    """``ddf`` shuffled so each value of ``column`` has its rows in one partition, in original order."""
    with_ids = ddf.map_partitions(_add_row_ids, meta=_add_row_ids(ddf._meta))
    return with_ids.shuffle(on=column, npartitions=ddf.npartitions)


def _features_part(part: pd.DataFrame, window: WindowLike, by: str, features: list[str], slide: WindowLike | None,
                   shuffled: bool) -> pd.DataFrame:
    if shuffled:
        part = _restore_order(part)
    return window_features(part, window=window, by=by, features=features, slide=slide)


def _needed_columns(columns: Sequence[str], by: str, features: str | Sequence[str]) -> list[str]:
    needed = input_columns(features, by)
    if "aggregated_count" in columns:
        needed.add("aggregated_count")
    missing = sorted(needed - set(columns))
    if missing:
        raise ValueError(f"window_features needs columns {missing}, which the frame lacks")
    return [c for c in columns if c in needed]


def window_features_dask(
    ddf: Any,
    window: WindowLike = "5min",
    by: str = "source_ip",
    features: str | Sequence[str] = "default",
    slide: WindowLike | None = None,
) -> Any:
    """:func:`~t1046lab.features.window_features` of a dask DataFrame, as a dask DataFrame.

    ``result.compute().sort_index()`` equals ``window_features(ddf.compute(), ...)`` (index,
    dtypes and values, bit for bit). Only the columns the features need are read.

    Partitions already disjoint in window ids (day files with tumbling windows that divide a
    day) are mapped as they are; time-ordered partitions that share boundary windows pass
    those windows' rows to a neighbour; otherwise (partitions in no time order, the
    ``expensive`` history features) rows are shuffled on ``by`` so each entity's rows share
    a partition. The choice (``"map"``, ``"boundary"``, ``"shuffle"``) is logged (INFO) and
    available beforehand from :func:`plan_layout`; deciding reads the ``event_start``
    column once.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        Canonical connections (see :mod:`t1046lab.schema`).
    window, by, features, slide
        As for :func:`~t1046lab.features.window_features`.

    Returns
    -------
    dask.dataframe.DataFrame
        Index ``(by, "window_start")``, one float64 column per feature; each partition is
        sorted, the partitions are not ordered among themselves (``sort_index`` after
        ``compute``). Rows without ``by`` or ``event_start`` are left out; the warning is
        raised where the partition is computed (a worker, under ``distributed``), so
        :func:`detect_dask` counts them and warns on the client.
    """
    return _features_and_left_out(ddf, window, by, features, slide)[0]


def _left_out(part: pd.DataFrame, by: str) -> int:
    return int((part[by].isna() | part["event_start"].isna()).sum())


def _features_and_left_out(
    ddf: Any, window: WindowLike, by: str, features: str | Sequence[str], slide: WindowLike | None
) -> tuple[Any, Any]:
    """The lazy features and a lazy count of the rows they leave out, read from the same partitions.

    Workers' warnings do not reach the caller, so :func:`detect_dask` computes the count
    with the features (one read of each partition) and warns on the client.
    """
    if not is_dask_frame(ddf):
        raise TypeError(f"expected a dask DataFrame, got {type(ddf).__name__}")
    names = [f.name for f in get_features(features)]
    window_ns = to_timedelta_ns(window)
    slide_ns = window_ns if slide is None else to_timedelta_ns(slide, name="slide")
    if slide_ns > window_ns:
        raise ValueError(f"slide={slide!r} is longer than window={window!r}: events between windows would be lost")
    ddf = ddf[_needed_columns(list(ddf.columns), by, names)]
    meta = window_features(ddf._meta, window=window, by=by, features=names, slide=slide)
    # The partitions as they will be computed: planned and computed on the same ones.
    parts = ddf.to_delayed()
    plan = _plan(ddf, parts, window_ns, slide_ns, names)
    if plan.layout == "shuffle":
        logger.info("window_features_dask: partitions in no time order (or history features asked for); "
                    "shuffling %d partitions on %r", ddf.npartitions, by)
        feats = _shuffle_on(ddf, by).map_partitions(_features_part, window, by, names, slide, True, meta=meta,
                                                    enforce_metadata=False, clear_divisions=True)
        return feats, (ddf[by].isna() | ddf["event_start"].isna()).sum()
    import dask
    import dask.dataframe as dd

    left_out = dask.delayed(sum)([dask.delayed(_left_out)(p, by) for p in parts])
    if plan.layout == "map":
        logger.info("window_features_dask: %d partitions hold disjoint windows; mapped per partition, no shuffle", len(parts))
        out = [dask.delayed(_features_part)(p, window, by, names, slide, False) for p in parts]
    else:
        logger.info("window_features_dask: %d time-ordered partitions share boundary windows; "
                    "boundary rows copied to their neighbours, no shuffle", len(parts))
        out = []
        for i, (sources, start, end, k_lo, k_hi) in enumerate(plan.tasks):
            pieces = [dask.delayed(_rows_between)(parts[j], start, end, j == i) for j in sources]
            out.append(dask.delayed(_boundary_features)(pieces, k_lo, k_hi, window, by, names, slide, slide_ns))
    return dd.from_delayed(out, meta=meta, verify_meta=False), left_out


# --- detectors --------------------------------------------------------------------------


def _entity_sort_key(entity: pd.Series, by_dtype: Any) -> pd.Series:
    """Sort key matching the features frame's entity order (numeric entities sort as numbers)."""
    if pd.api.types.is_numeric_dtype(by_dtype):
        return pd.to_numeric(entity, errors="coerce")
    return entity


def _sort_window_alerts(alerts: pd.DataFrame, by_dtype: Any) -> pd.DataFrame:
    if alerts.empty:
        return alerts.reset_index(drop=True)
    key = pd.DataFrame({"e": _entity_sort_key(alerts["entity"], by_dtype).to_numpy(), "w": alerts["window_start"].to_numpy()})
    order = key.sort_values(["e", "w"], kind="stable").index.to_numpy()
    return alerts.iloc[order].reset_index(drop=True)


def _score_part(feats: pd.DataFrame, estimator: Any, make: Any, kwargs: dict[str, Any]) -> pd.DataFrame:
    from ..detectors.anomaly import score_windows

    if feats.empty:
        return empty_alerts()
    return score_windows(make, feats.sort_index(), model=estimator, **kwargs)


def _detect_window_model(ddf: Any, info: Any, p: dict[str, Any], all_windows: bool) -> pd.DataFrame:
    import dask

    from ..detectors.anomaly import (
        _baseline_conns,
        _model,
        feature_columns,
        score_windows,
    )

    make, columns = info.window_model(p)
    window, by = p["window"], p["by"]
    by_dtype = ddf._meta[by].dtype if by in ddf.columns else object
    feats, left_out = _features_and_left_out(ddf, window, by, feature_columns(columns), None)
    kwargs = {"detector": info.name, "columns": list(columns), "all_windows": all_windows, "window": window, "by": by}
    model, baseline = p["model"], p["baseline"]
    if model is not None:
        # One delayed object: the model is serialised once into the graph and sent to each
        # worker that scores a partition, not pickled into every task.
        estimator = dask.delayed(_model(model, type(make())), pure=True)
        parts = [dask.delayed(_score_part)(f, estimator, make, kwargs) for f in feats.to_delayed()]
        *scored, n_left_out = dask.compute(*parts, left_out)
        _warn_left_out(n_left_out, by)
        outputs = [o for o in scored if not o.empty]
        alerts = pd.concat(outputs, ignore_index=True) if outputs else empty_alerts()
        return _sort_window_alerts(alerts, by_dtype)
    base = None
    if baseline is not None:
        if is_dask_frame(baseline):
            base = window_features_dask(baseline, window=window, by=by, features=list(columns)).compute().sort_index()
        elif isinstance(baseline, (tuple, list)) and len(baseline) == 2:
            start, end = (pd.Timestamp(t) for t in baseline)
            start = start.tz_localize("UTC") if start.tzinfo is None else start
            end = end.tz_localize("UTC") if end.tzinfo is None else end
            part = ddf[(ddf["event_start"] >= start) & (ddf["event_start"] < end)]
            base = window_features_dask(part, window=window, by=by, features=list(columns)).compute().sort_index()
            if base.empty:
                raise ValueError(f"the baseline period {start} to {end} holds no connections")
        else:
            base = window_features(_baseline_conns(None, baseline), window=window, by=by, features=list(columns))
    computed, n_left_out = dask.compute(feats, left_out)
    _warn_left_out(n_left_out, by)
    return score_windows(make, computed.sort_index(), baseline_features=base, model=None, **kwargs)


def _warn_left_out(count: Any, by: str) -> None:
    if int(count):
        warnings.warn(
            f"detect_dask: left out {int(count):,} rows without {by} or event_start (they cannot be placed in a window)",
            DataQualityWarning,
            stacklevel=4,
        )


def _detect_part(part: pd.DataFrame, name: str, params: dict[str, Any], all_windows: bool) -> pd.DataFrame:
    from ..detectors import get_detector

    return get_detector(name).func(_restore_order(part), all_windows=all_windows, **params)


def _detect_partitioned(ddf: Any, info: Any, p: dict[str, Any], all_windows: bool) -> pd.DataFrame:
    import dask

    params = dict(p)
    if info.origin_param is not None and params.get(info.origin_param) is None:
        # Epochs start at the data's first connection: the whole data's, not each partition's.
        first = ddf["event_start"].min().compute()
        if pd.isna(first):
            return info.func(ddf._meta, all_windows=all_windows, **p)
        params[info.origin_param] = pd.Timestamp(first).isoformat()
    column = info.partition_by
    # Labels are never detector input: leaving them behind makes the shuffle much lighter.
    unused = [c for c in ddf.columns if c in _LABEL_LIKE or str(c).startswith("sim_")]
    if unused:
        ddf = ddf.drop(columns=unused)
    logger.info("detect_dask: %s keys its state by %r; shuffling %d partitions on it", info.name, column, ddf.npartitions)
    shuffled = _shuffle_on(ddf, column)
    parts = [dask.delayed(_detect_part)(d, info.name, params, all_windows) for d in shuffled.to_delayed()]
    outputs = list(dask.compute(*parts))
    non_empty = [o for o in outputs if not o.empty]
    if not non_empty:
        return outputs[0].iloc[:0].reset_index(drop=True) if outputs else info.func(ddf._meta, all_windows=all_windows, **params)
    alerts = pd.concat(non_empty, ignore_index=True)
    return alerts.sort_values(_ALERT_ORDER, kind="stable").reset_index(drop=True)


def detect_dask(data: Any, detector: str, *, all_windows: bool = False, scheduler: Any = None, **params: Any) -> pd.DataFrame:
    """Run one detector over a dask DataFrame (or a parquet dataset); same alerts as in memory.

    Parameters
    ----------
    data : dask.dataframe.DataFrame, str or Path
        Canonical connections: a dask DataFrame, or a parquet file or directory (for
        example one file per day, ``DIR/day=YYYY-MM-DD/part-0.parquet``), read lazily.
    detector : str
        A detector that declares ``window_model`` (``port-entropy``, ``iforest``,
        ``role-baseline``) or ``partition_by`` (``zeek-scan``, ``simple-scan``, ``trw``).
    all_windows : bool, default False
        Keep the rows that did not alert.
    scheduler : str or distributed.Client, optional
        Where to compute: a scheduler address or a client. ``None`` uses the active
        scheduler (the current ``distributed.Client`` if one exists, else Dask's default).
    **params
        The detector's parameters, as for :func:`~t1046lab.detect`. ``model=`` (a fitted
        estimator or its JSON path) is sent once to the workers, which score the feature
        partitions in parallel; without it the estimator is fitted once on the gathered
        features (or ``baseline=``: a frame, dask frame, path or ``(start, end)`` range).

    Returns
    -------
    DataFrame
        The alerts frame, equal to ``detect(data.compute(), detector, ...)``.

    Raises
    ------
    ValueError
        For a detector whose state no single column partitions (``snort-portscan``,
        ``ensemble``): splitting the data would change its alerts.
    """
    from ..detectors import get_detector, list_detectors

    info = get_detector(detector)
    resolved = info.resolve(params)
    if info.window_model is None and info.partition_by is None:
        usable = [n for n in list_detectors()["detector"] if (get_detector(n).window_model or get_detector(n).partition_by)]
        why = {
            "snort-portscan": "its trackers are keyed by source and destination together (portsweeps, decoys and "
                              "distributed scans join many sources), so no split of the rows keeps its state whole",
            "ensemble": "it calibrates its members' scores against each other over the whole data",
        }.get(detector, "it declares neither partition_by nor window_model")
        raise ValueError(
            f"detector {detector!r} cannot run on Dask: {why}. Run it in memory on data that fits "
            f"(detect(ddf.compute(), {detector!r}), e.g. one day at a time), or use a detector that runs on Dask: "
            f"{', '.join(usable)}"
        )
    ddf = _as_dask(data)
    with _scheduler(scheduler):
        if info.window_model is not None:
            return _detect_window_model(ddf, info, resolved, bool(all_windows))
        return _detect_partitioned(ddf, info, resolved, bool(all_windows))
