"""Streaming: the pipeline over data larger than memory, one chunk at a time.

Window features
    :class:`StreamingWindowFeatures` takes time-ordered canonical chunks and emits the
    features of every window that no later row can reach. It keeps only the rows of the
    windows still open (the last ``window`` of data, plus ``lateness``), so memory does
    not grow with the input, and each emitted window holds exactly the rows it would hold
    in memory: the concatenated output equals :func:`t1046lab.window_features` on the
    whole frame. Rows must come in time order, up to ``lateness``: a row that belongs to
    a window already emitted raises :class:`LateRowError`, never a silently wrong count.

Detectors
    :func:`stream_detect` runs a registered detector over chunks and returns the alerts
    frame the in-memory :func:`t1046lab.detect` returns:

    * window detectors (``port-entropy``, ``iforest``, ``role-baseline``): window features
      are streamed, then the estimator is fitted once on all of them (they are small: one
      row per entity and window) and scores them, exactly as in memory; with ``model=``
      each batch of closed windows is scored as soon as it closes.
    * detectors whose state is keyed by one column (``zeek-scan``, ``simple-scan``,
      ``trw``: the source): rows are spilled to disk in ``n_buckets`` files by a hash of
      that column, then each bucket, holding every row of its sources, is run in memory.
    * the others (``snort-portscan``: trackers keyed by both ends; ``ensemble``) have no
      exact streaming form and raise ``ValueError``.

Sources
    :func:`iter_chunks` turns a frame, an iterable of frames, a file of any supported
    format, or a directory of canonical parquet files (a dataset partitioned by day, as
    ``simulate_enterprise(out=DIR)`` writes) into canonical chunks, reading only the
    columns asked for when the input is parquet.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..exceptions import DataQualityWarning
from ..windows import WindowLike, to_timedelta_ns, to_utc_ns

__all__ = [
    "LateRowError",
    "StreamingWindowFeatures",
    "has_streaming_form",
    "iter_chunks",
    "iter_window_features",
    "stream_detect",
    "stream_window_features",
]

logger = logging.getLogger(__name__)

#: Rows per chunk read from files.
DEFAULT_CHUNKSIZE = 1_000_000


class LateRowError(ValueError):
    """A row arrived for a window that streaming had already closed and emitted."""


# --- sources ----------------------------------------------------------------------------


def _parquet_files(path: Path) -> list[Path]:
    if path.is_dir():
        # Sorted relative paths: day=YYYY-MM-DD folders sort in time order.
        import os

        files = sorted(
            Path(folder) / name
            for folder, _, names in os.walk(path, followlinks=True)
            for name in names
            if name.endswith(".parquet") and not name.startswith(("_", "."))
        )
        if not files:
            raise FileNotFoundError(f"{path}: directory holds no .parquet files")
        return files
    return [path]


def _is_parquet(path: Path) -> bool:
    if path.is_dir():
        return True
    with open(path, "rb") as fh:
        return fh.read(4) == b"PAR1"


def _canonical_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast the canonical columns a projected parquet read gave back to their dtypes, in place of a full conform."""
    known = {**schema.CORE_COLUMNS, **schema.IDENTITY_COLUMNS, **schema.LABEL_COLUMNS}
    out = {}
    for name in frame.columns:
        values = frame[name]
        dtype = known.get(name)
        if dtype is None or values.dtype == dtype:
            out[name] = values
        elif dtype is schema.TIMESTAMP_DTYPE:
            out[name] = values.dt.tz_convert("UTC").astype(dtype) if isinstance(values.dtype, pd.DatetimeTZDtype) else pd.to_datetime(values, utc=True).astype(dtype)
        else:
            out[name] = schema._cast(values, name, dtype, len(values))
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def _iter_parquet(path: Path, columns: Sequence[str] | None, chunksize: int, show_progress: bool) -> Iterator[pd.DataFrame]:
    import pyarrow.parquet as pq

    from .._progress import progress, progress_enabled

    files = _parquet_files(path)
    total = sum(pq.read_metadata(f).num_rows for f in files)
    bar = progress(total=total, desc=f"reading {path.name}", unit="row", disable=not (show_progress and progress_enabled()))

    def batches() -> Iterator[Any]:
        for file in files:
            # one file open at a time: an open reader keeps its buffered pages
            with pq.ParquetFile(file) as handle:
                names = handle.schema_arrow.names
                if "event_start" not in names:
                    raise schema.SchemaError([f"{file}: parquet file lacks the canonical column 'event_start'"])
                wanted = None if columns is None else [c for c in names if c in set(columns)]
                yield from handle.iter_batches(batch_size=chunksize, columns=wanted)

    try:
        for batch in _prefetch(batches(), depth=1):
            frame = _canonical_columns(batch.to_pandas())
            bar.update(len(frame))
            yield frame
    finally:
        bar.close()


def _prefetch(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """Iterate ``items`` on a background thread, at most ``depth`` ahead.

    Parquet decoding releases the GIL, so the next chunk is read on the second core while
    this one's features are computed; the bound keeps memory at ``depth + 1`` chunks.
    """
    import queue
    import threading

    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put((done, None))
        except BaseException as exc:  # re-raised in the consumer, with its traceback
            buffer.put((done, exc))

    worker = threading.Thread(target=produce, name="t1046lab-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.1)


def iter_chunks(
    source: Any,
    *,
    format: str = "auto",
    columns: Sequence[str] | None = None,
    chunksize: int = DEFAULT_CHUNKSIZE,
    strict: bool = False,
    progress: bool = False,
) -> Iterator[pd.DataFrame]:
    """Canonical chunks of ``source``, for the streaming functions.

    Parameters
    ----------
    source : DataFrame, iterable of DataFrame, str or path
        A frame (cut into ``chunksize`` slices), chunks already made, a telemetry file of
        any supported format (read with :func:`t1046lab.io.iter_read`), or a canonical
        parquet file or directory of them (read in sorted path order, so a dataset
        partitioned as ``day=YYYY-MM-DD/`` comes in time order).
    format : str, default "auto"
        The file format, for files that are not canonical parquet.
    columns : list of str, optional
        For parquet input, read only these columns (the others are never decoded).
    chunksize : int
        Rows per chunk.
    strict : bool
        Passed to the reader: stop at the first malformed record.
    progress : bool
        Show a progress bar of rows (with a total for parquet input, whose row count is known).

    Yields
    ------
    DataFrame
        Canonical chunks.
    """
    if chunksize <= 0:
        raise ValueError(f"chunksize must be positive, got {chunksize}")
    if isinstance(source, pd.DataFrame):
        for first in range(0, len(source), chunksize):
            yield source.iloc[first : first + chunksize]
        return
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        if format in ("auto", "canonical") and _is_parquet(path):
            yield from _iter_parquet(path, columns, chunksize, progress)
            return
        if path.is_dir():
            raise ValueError(f"{path}: only directories of canonical parquet files can be streamed")
        from .._progress import progress as bar_of, progress_enabled
        from ..io import iter_read

        # text formats do not know their record count up front: the bar counts rows
        bar = bar_of(desc=f"reading {path.name}", unit="row", disable=not (progress and progress_enabled()))
        try:
            for chunk in iter_read(path, format, strict=strict, chunksize=chunksize):
                bar.update(len(chunk))
                yield chunk
        finally:
            bar.close()
        return
    if isinstance(source, Iterable):
        for chunk in source:
            if not isinstance(chunk, pd.DataFrame):
                raise TypeError(f"expected an iterable of DataFrames, got an item of type {type(chunk).__name__}")
            yield chunk
        return
    raise TypeError(f"cannot stream a {type(source).__name__}: give a DataFrame, an iterable of them, or a path")


# --- window features --------------------------------------------------------------------


class StreamingWindowFeatures:
    """Window features over time-ordered chunks, with window state carried across them.

    Parameters
    ----------
    window, by, features, slide
        As in :func:`t1046lab.window_features`.
    lateness : str or Timedelta, default "0s"
        How far behind the newest row seen a later row may be. Windows close ``lateness``
        after their end; flow logs written when a flow ends (Zeek, NetFlow) need about
        the flow timeout here.

    Attributes
    ----------
    rows_seen_ : int
        Rows received.
    rows_left_out_ : int
        Rows without an entity or a start time (as the in-memory function leaves out).
    windows_emitted_ : int
        (entity, window) rows emitted so far.
    carried_rows_ : int
        Rows currently held for open windows.

    Examples
    --------
    >>> acc = StreamingWindowFeatures(window="5min")                   # doctest: +SKIP
    >>> parts = [acc.update(chunk) for chunk in read("big.log", chunksize=10**6)]  # doctest: +SKIP
    >>> feats = pd.concat(parts + [acc.flush()]).sort_index()          # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        window: WindowLike = "5min",
        by: str = "source_ip",
        features: str | Sequence[str] = "default",
        slide: WindowLike | None = None,
        lateness: WindowLike = "0s",
    ):
        from ..features import HISTORY_FEATURES, get_features, input_columns

        self.window = window
        self.by = by
        self.features = features
        self.slide = slide
        self.lateness = lateness
        selected = get_features(features)
        self._names = [f.name for f in selected]
        history = sorted(HISTORY_FEATURES.intersection(self._names))
        if history:
            raise ValueError(
                f"features {history} depend on each entity's whole history, which streaming in time order "
                "does not keep; compute them in memory or on Dask (partitioned by entity)"
            )
        self._window_ns = to_timedelta_ns(window)
        self._slide_ns = self._window_ns if slide is None else to_timedelta_ns(slide, name="slide")
        if self._slide_ns > self._window_ns:
            raise ValueError(f"slide={slide!r} is longer than window={window!r}")
        self._lateness_ns = int(pd.Timedelta(lateness).value)
        if self._lateness_ns < 0:
            raise ValueError(f"lateness must not be negative, got {lateness!r}")
        self.columns_ = sorted(input_columns(self._names, by)) + ["aggregated_count"]
        self._carry: pd.DataFrame | None = None
        self._carry_t = np.empty(0, dtype=np.int64)
        self._k_emitted: int | None = None  # windows below this id have been emitted
        self._max_t: int | None = None
        self.rows_seen_ = 0
        self.rows_left_out_ = 0
        self.windows_emitted_ = 0
        self.carried_rows_ = 0

    def _compute(self, frame: pd.DataFrame, k_lo: int | None, k_hi: int | None) -> pd.DataFrame:
        from ..features import window_features

        feats = window_features(frame, window=self.window, by=self.by, features=self._names, slide=self.slide)
        if len(feats) and (k_lo is not None or k_hi is not None):
            k = feats.index.get_level_values("window_start").asi8 // self._slide_ns
            keep = np.ones(len(k), dtype=bool)
            if k_lo is not None:
                keep &= k >= k_lo
            if k_hi is not None:
                keep &= k < k_hi
            if not keep.all():
                feats = feats[keep]
        self.windows_emitted_ += len(feats)
        return feats

    def update(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """Take the next chunk; return the features of the windows it closed (maybe none).

        Raises
        ------
        LateRowError
            When a row belongs to a window already emitted (input out of time order by
            more than ``lateness``).
        """
        missing = sorted(set(self.columns_) - {"aggregated_count"} - set(chunk.columns))
        if missing:
            raise ValueError(f"streaming window features need columns {missing}, which the chunk lacks")
        part = chunk[[c for c in self.columns_ if c in chunk.columns]]
        self.rows_seen_ += len(part)
        usable = part[self.by].notna().to_numpy() & part["event_start"].notna().to_numpy()
        if not usable.all():
            self.rows_left_out_ += int((~usable).sum())
            part = part[usable]
        if len(part) == 0:
            return self._empty(part)
        t = to_utc_ns(part["event_start"])
        if self._k_emitted is not None:
            closed_before = (self._k_emitted - 1) * self._slide_ns + self._window_ns
            late = t < closed_before
            if late.any():
                first = pd.Timestamp(int(t[late].min()), tz="UTC")
                raise LateRowError(
                    f"{int(late.sum()):,} row(s) (earliest {first}) belong to windows already emitted "
                    f"(closed before {pd.Timestamp(closed_before, tz='UTC')}): the chunks are out of time order. "
                    "Sort the input, raise lateness=, or use the in-memory or Dask path"
                )
        t_max = int(t.max())
        self._max_t = t_max if self._max_t is None else max(self._max_t, t_max)
        if self._carry is not None and len(self._carry):
            buffer = pd.concat([self._carry, part], ignore_index=True)
            times = np.concatenate([self._carry_t, t])
        else:
            buffer, times = part, t
        watermark = self._max_t - self._lateness_ns
        k_open = (watermark - self._window_ns) // self._slide_ns + 1  # windows below it are complete
        out = None
        if self._k_emitted is None or k_open > self._k_emitted:
            closed_end = (k_open - 1) * self._slide_ns + self._window_ns
            open_start = k_open * self._slide_ns
            if _is_sorted(times):
                # time-ordered input (the usual case): prefix and suffix slices, no copies
                n_closed = int(np.searchsorted(times, closed_end, side="left"))
                first_open = int(np.searchsorted(times, open_start, side="left"))
                if n_closed:
                    out = self._compute(buffer.iloc[:n_closed], self._k_emitted, k_open)
                buffer, times = buffer.iloc[first_open:], times[first_open:]
            else:
                in_closed = times < closed_end
                if in_closed.any():
                    out = self._compute(buffer[in_closed] if not in_closed.all() else buffer, self._k_emitted, k_open)
                keep = times >= open_start
                buffer, times = buffer[keep], times[keep]
            self._k_emitted = k_open
        self._carry, self._carry_t = buffer, times
        self.carried_rows_ = len(buffer)
        return self._empty(buffer) if out is None else out

    def _empty(self, like: pd.DataFrame) -> pd.DataFrame:
        """The features frame with no rows (the dtypes ``window_features`` gives)."""
        return self._compute(like.iloc[:0], 0, 0)

    def flush(self) -> pd.DataFrame:
        """Emit every window still open (the input has ended) and reset the carried rows."""
        if self.rows_left_out_:
            warnings.warn(
                f"streaming window features: left out {self.rows_left_out_:,} of {self.rows_seen_:,} rows "
                f"without {self.by} or event_start",
                DataQualityWarning,
                stacklevel=2,
            )
        if self._carry is None or len(self._carry) == 0:
            out = self._empty(_empty_like(self._carry, self.columns_))
        else:
            out = self._compute(self._carry, self._k_emitted, None)
        self._carry, self._carry_t = None, np.empty(0, dtype=np.int64)
        self.carried_rows_ = 0
        return out


def _release_memory() -> None:
    """Hand freed heap pages back to the system (glibc keeps them after many mid-sized frees).

    Streaming frees one chunk's arrays after another; without this the resident size
    stays at the high-water mark of the chunk phase while the next phase allocates more.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to do
        pass


def _is_sorted(times: np.ndarray) -> bool:
    return len(times) < 2 or bool(np.all(times[1:] >= times[:-1]))


def _empty_like(frame: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    if frame is not None:
        return frame.iloc[:0]
    empty = schema.empty_frame()
    return empty[[c for c in columns if c in empty.columns]]


def iter_window_features(
    chunks: Iterable[pd.DataFrame],
    window: WindowLike = "5min",
    by: str = "source_ip",
    features: str | Sequence[str] = "default",
    slide: WindowLike | None = None,
    *,
    lateness: WindowLike = "0s",
) -> Iterator[pd.DataFrame]:
    """Yield window features batch by batch as the windows close; see :class:`StreamingWindowFeatures`."""
    acc = StreamingWindowFeatures(window=window, by=by, features=features, slide=slide, lateness=lateness)
    for chunk in chunks:
        out = acc.update(chunk)
        if len(out):
            yield out
    yield acc.flush()


def _concat_sorted(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Feature batches as one frame sorted by (entity, window), as the in-memory function returns it.

    Batches cover disjoint, increasing window ranges and are each sorted, so the order is
    a stable sort on the entity alone. The values are scattered into one preallocated
    array and each batch is released as soon as it is copied (``parts`` is emptied): the
    peak is the batches plus the result, not the three copies of concatenate-then-sort.
    """
    nonempty = [p for p in parts if len(p)] or parts[:1]
    parts.clear()
    if len(nonempty) == 1:
        return nonempty[0]
    first = nonempty[0]
    columns, names = first.columns, first.index.names
    entity_levels = first.index.levels[0].append([p.index.levels[0] for p in nonempty[1:]]).unique()
    rank_of = np.empty(len(entity_levels), dtype=np.int64)
    rank_of[np.asarray(entity_levels.argsort(), dtype=np.int64)] = np.arange(len(entity_levels))
    ranks, windows = [], []
    for p in nonempty:
        ranks.append(rank_of[entity_levels.get_indexer(p.index.levels[0])][p.index.codes[0]])
        windows.append(p.index.get_level_values(1).asi8)
    rank, window = np.concatenate(ranks), np.concatenate(windows)
    del ranks, windows
    order = np.lexsort((window, rank))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    values = np.empty((len(order), len(columns)), dtype=np.float64)
    offset = 0
    for i, p in enumerate(nonempty):
        values[position[offset : offset + len(p)]] = p.to_numpy(dtype=np.float64)
        offset += len(p)
        nonempty[i] = None  # release the batch
    del position
    rank, window = rank[order], window[order]
    used, entity_codes = np.unique(rank, return_inverse=True)
    by_rank = np.empty(len(entity_levels), dtype=np.int64)
    by_rank[rank_of] = np.arange(len(entity_levels))
    window_levels, window_codes = np.unique(window, return_inverse=True)
    index = pd.MultiIndex(
        levels=[
            entity_levels[by_rank[used]],
            pd.DatetimeIndex(pd.to_datetime(window_levels, unit="ns", utc=True)).as_unit("ns"),
        ],
        codes=[entity_codes, window_codes],
        names=names,
        verify_integrity=False,
    )
    return pd.DataFrame(values, index=index, columns=columns, copy=False)


def stream_window_features(
    chunks: Iterable[pd.DataFrame],
    window: WindowLike = "5min",
    by: str = "source_ip",
    features: str | Sequence[str] = "default",
    slide: WindowLike | None = None,
    *,
    lateness: WindowLike = "0s",
) -> pd.DataFrame:
    """All window features of a stream of chunks, equal to the in-memory :func:`~t1046lab.window_features`."""
    return _concat_sorted(list(iter_window_features(chunks, window, by, features, slide, lateness=lateness)))


# --- detectors --------------------------------------------------------------------------


def _sort_alerts(parts: list[pd.DataFrame], keys: Sequence[str] = ("window_start", "entity")) -> pd.DataFrame:
    from ..alerts import empty_alerts

    parts = [p for p in parts if len(p)]
    if not parts:
        return empty_alerts()
    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return frame.sort_values(list(keys), kind="stable").reset_index(drop=True)


def _window_detector(info: Any, chunks: Iterable[pd.DataFrame], params: dict[str, Any], all_windows: bool, lateness: WindowLike) -> pd.DataFrame:
    from ..alerts import empty_alerts
    from ..detectors.anomaly import _model, feature_columns, score_windows

    make, columns = info.window_model(params)
    window, by = params["window"], params["by"]
    common = {"detector": info.name, "columns": columns, "all_windows": all_windows, "window": window, "by": by}
    if params["model"] is not None:
        estimator = _model(params["model"], type(make()))
        alerts = [
            score_windows(make, feats, model=estimator, **common)
            for feats in iter_window_features(chunks, window, by, feature_columns(columns), lateness=lateness)
            if len(feats)
        ]
        # in memory the windows are scored in (entity, window) order
        return _sort_alerts(alerts, ["entity", "window_start"])
    acc = StreamingWindowFeatures(window=window, by=by, features=feature_columns(columns), lateness=lateness)
    baseline = params["baseline"]
    base_acc = None
    span = None
    base_feats = None
    if isinstance(baseline, (tuple, list)) and len(baseline) == 2:
        span = [pd.Timestamp(t) for t in baseline]
        span = [t.tz_localize("UTC") if t.tzinfo is None else t for t in span]
        base_acc = StreamingWindowFeatures(window=window, by=by, features=list(columns), lateness=lateness)
    elif baseline is not None:
        from ..features import window_features

        base_feats = (
            window_features(baseline, window=window, by=by, features=list(columns))
            if isinstance(baseline, pd.DataFrame)
            else stream_window_features(iter_chunks(baseline), window=window, by=by, features=list(columns))
        )
    parts = []
    base_parts = []
    for chunk in chunks:
        parts.append(acc.update(chunk))
        if base_acc is not None:
            times = chunk["event_start"]
            base_parts.append(base_acc.update(chunk[(times >= span[0]) & (times < span[1])]))
    parts.append(acc.flush())
    del acc
    _release_memory()
    feats = _concat_sorted(parts)
    _release_memory()
    if base_acc is not None:
        base_parts.append(base_acc.flush())
        base_feats = _concat_sorted(base_parts)
        if base_feats.empty:
            raise ValueError(f"the baseline period {span[0]} to {span[1]} holds no connections")
    if feats.empty:
        return empty_alerts()
    return score_windows(make, feats, baseline_features=base_feats, **common)


def _bucket_of(values: pd.Series, n_buckets: int) -> np.ndarray:
    hashed = pd.util.hash_pandas_object(values, index=False).to_numpy()
    return (hashed % np.uint64(n_buckets)).astype(np.int32)


def _partitioned_detector(
    info: Any, chunks: Iterable[pd.DataFrame], params: dict[str, Any], all_windows: bool, n_buckets: int, spill_dir: str | Path | None
) -> pd.DataFrame:
    import pyarrow as pa

    from .._progress import progress
    from ..io.canonical import _restore

    key = info.partition_by
    root = Path(tempfile.mkdtemp(prefix="t1046lab-spill-", dir=spill_dir))
    writers: dict[int, Any] = {}
    sinks: dict[int, Any] = {}
    schemas: dict[int, Any] = {}
    first_time: pd.Timestamp | None = None
    try:
        for chunk in chunks:
            if key not in chunk.columns:
                raise ValueError(f"{info.name} partitions on {key!r}, which the chunk lacks")
            chunk = chunk.reset_index(drop=True)
            chunk.attrs = {}
            if len(chunk) and chunk["event_start"].notna().any():
                earliest = chunk["event_start"].min()
                first_time = earliest if first_time is None else min(first_time, earliest)
            bucket = _bucket_of(chunk[key], n_buckets)
            order = np.argsort(bucket, kind="stable")
            bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
            table = pa.Table.from_pandas(chunk, preserve_index=False).take(pa.array(order))
            for b in np.flatnonzero(np.diff(bounds)):
                piece = table.slice(int(bounds[b]), int(bounds[b + 1] - bounds[b]))
                if b not in writers:
                    sinks[b] = pa.OSFile(str(root / f"bucket-{b:04d}.arrow"), "wb")
                    writers[b] = pa.ipc.new_stream(sinks[b], piece.schema)
                    schemas[b] = piece.schema
                writers[b].write_table(piece.cast(schemas[b]))
        for b, writer in writers.items():
            writer.close()
            sinks[b].close()
        logger.info("%s: spilled the input into %d buckets by %s under %s", info.name, len(writers), key, root)
        if info.origin_param is not None and params.get(info.origin_param) is None and first_time is not None:
            params = {**params, info.origin_param: first_time}  # the epochs the whole input would have
        parts = []
        for b in progress(sorted(writers), desc=f"{info.name} per bucket", unit="bucket"):
            with pa.memory_map(str(root / f"bucket-{b:04d}.arrow")) as source:
                frame = _restore(pa.ipc.open_stream(source).read_all().to_pandas())
            parts.append(info.func(frame, all_windows=all_windows, **params))
            del frame
        return _sort_alerts(parts)
    finally:
        for sink in sinks.values():
            if not sink.closed:
                sink.close()
        shutil.rmtree(root, ignore_errors=True)


def stream_detect(
    source: Any,
    detector: str,
    *,
    all_windows: bool = False,
    chunksize: int = DEFAULT_CHUNKSIZE,
    lateness: WindowLike = "0s",
    n_buckets: int = 32,
    spill_dir: str | Path | None = None,
    progress: bool = False,
    format: str = "auto",
    strict: bool = False,
    **params: Any,
) -> pd.DataFrame:
    """Run a detector over data larger than memory; the alerts equal the in-memory ones.

    Parameters
    ----------
    source : DataFrame, iterable of DataFrame, str or path
        What :func:`iter_chunks` accepts: chunks in time order, or a file or a directory
        of canonical parquet files.
    detector : str
        A registered detector that has a streaming form (window detectors and detectors
        with ``partition_by``; see the module docstring).
    all_windows : bool
        As in :func:`t1046lab.detect`.
    chunksize : int
        Rows per chunk read from files.
    lateness : str or Timedelta
        Window detectors: how far out of time order rows may come (see
        :class:`StreamingWindowFeatures`).
    n_buckets : int
        Partitioned detectors: buckets the rows are spilled into; each bucket is held in
        memory alone, so memory is about the input divided by ``n_buckets``.
    spill_dir : str or path, optional
        Where the buckets are written (the system temporary directory by default); removed after.
    progress : bool
        Show progress bars.
    format, strict : str, bool
        For a file that is not canonical parquet: its format and whether a malformed
        record stops the read (see :func:`t1046lab.read`).
    **params
        The detector's parameters.

    Returns
    -------
    DataFrame
        The alerts frame; ``attrs["streamed"]`` counts the rows and chunks read.
    """
    from ..detectors import get_detector

    info = get_detector(detector)
    resolved = info.resolve(params)
    counts = {"rows": 0, "chunks": 0}

    def counted(chunks: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for chunk in chunks:
            counts["rows"] += len(chunk)
            counts["chunks"] += 1
            yield chunk

    def chunks_of(columns: list[str] | None) -> Iterable[pd.DataFrame]:
        if _is_chunks(source):
            return source
        return iter_chunks(source, format=format, columns=columns, chunksize=chunksize, strict=strict, progress=progress)

    if info.window_model is not None:
        chunks = chunks_of(_window_model_inputs(info, resolved))
        alerts = _window_detector(info, counted(chunks), resolved, bool(all_windows), lateness)
    elif info.partition_by is not None:
        if not isinstance(n_buckets, (int, np.integer)) or n_buckets < 1:
            raise ValueError(f"n_buckets must be a positive integer, got {n_buckets!r}")
        chunks = chunks_of(None)
        alerts = _partitioned_detector(info, counted(chunks), resolved, bool(all_windows), int(n_buckets), spill_dir)
    else:
        raise ValueError(
            f"detector {detector!r} has no exact streaming form (its state is not keyed by one column and it does not "
            "score window features); run it in memory with t1046lab.detect"
        )
    alerts.attrs["streamed"] = dict(counts)
    return alerts


def has_streaming_form(detector: str) -> bool:
    """Whether :func:`stream_detect` can run ``detector`` exactly."""
    from ..detectors import get_detector

    info = get_detector(detector)
    return info.window_model is not None or info.partition_by is not None


def _window_model_inputs(info: Any, resolved: dict[str, Any]) -> list[str]:
    """The input columns a window detector reads (for a projected parquet read)."""
    from ..detectors.anomaly import feature_columns
    from ..features import input_columns

    _, columns = info.window_model(resolved)
    return sorted(input_columns(feature_columns(columns), resolved["by"])) + ["aggregated_count"]


def _is_chunks(source: Any) -> bool:
    return not isinstance(source, (pd.DataFrame, str, Path)) and isinstance(source, Iterable)
