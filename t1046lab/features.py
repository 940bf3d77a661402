"""The feature registry and :func:`window_features`: one row per (entity, window).

Every feature is a named, tagged, vectorised kernel in an explicit registry (like tsfresh's
calculators, but listed in one place). :func:`list_features` shows them; ``docs/features.md``
is generated from the registry by :func:`features_markdown`.

Entity and peer
    ``by`` names the entity column (``source_ip`` by default). The *peer* is the other side
    of the connection: the destination for ``by="source_ip"`` and the source for
    ``by="destination_ip"`` (the view for distributed scans: many sources, one target);
    for any other ``by`` column (``host_name``, ``source_k8s_workload``, ...) it is the
    destination. Ports are always destination (service) ports.

Aggregated flow-log rows
    Some readers (cloud flow logs) produce one row that merges several probes. They write
    the number of attempts the row stands for into the optional integer column
    ``aggregated_count`` (:data:`AGGREGATED_COUNT`; missing or absent means 1). Counts,
    ratios, entropies and bytes per connection weight each row by it; distinct counts,
    time-order features (port sequence, inter-arrival) and first-contact features count
    rows, since a merged row is one observation in time.

Undefined values
    Every feature is a finite float: a ratio with an empty denominator is 0, and each
    definition says what it is for windows too small to measure it. Windows with no
    connections are absent.

Speed
    The input is sorted by time once (no sort when already sorted), entities and peers are
    factorized to integer codes, and the windows are processed in cache-sized chunks cut
    at window boundaries. Within a chunk one ``np.sort`` of packed keys groups the rows
    (``(entity, row)`` as uint32 for tumbling windows, whose rows are already in time
    order; ``(entity, window, row)`` as int64 for sliding ones), and every feature is a
    run-length, ``np.add.reduceat`` or ``np.bincount`` reduction over group codes: no
    Python call per group or per row. Per-row inputs are kept narrow (int32 codes and
    ports, one uint8 outcome/transport/port class) and gathered into group order once
    per chunk; distinct counts and entropies share one int64 sort of
    ``(group, peer, port)`` and one uint32 sort of ``(group, port)``. Floating-point sums
    keep a fixed order, so results do not depend on chunking or ``n_jobs``.

Adding a feature
    Write a kernel over :class:`WindowGroups` and register it; the first docstring line is
    its definition (regenerate ``docs/features.md`` with ``python -m t1046lab.features``)::

        @register_feature(tags=("default",), needs=("conn_outcome",))
        def established_count(g: WindowGroups) -> np.ndarray:
            \"\"\"Number of attempts that were not failures.\"\"\"
            return g.count - g.by_outcome[:, :3].sum(axis=1)
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import DataQualityWarning
from .schema import FAILED_OUTCOMES, Outcome, Transport
from .windows import WindowLike, expand_windows, to_timedelta_ns, to_utc_ns

__all__ = [
    "AGGREGATED_COUNT",
    "HISTORY_FEATURES",
    "TAGS",
    "Feature",
    "WindowGroups",
    "features_markdown",
    "get_features",
    "input_columns",
    "list_features",
    "register_feature",
    "window_features",
]

logger = logging.getLogger(__name__)

#: Optional integer column: how many connection attempts an aggregated flow-log row stands for.
AGGREGATED_COUNT = "aggregated_count"

#: Feature tags, cheapest first. ``"all"`` selects every feature.
TAGS: tuple[str, ...] = ("minimal", "default", "expensive")

#: Rows per chunk (before sliding-window expansion): small enough that a chunk's arrays
#: stay in the CPU cache, large enough that per-chunk numpy call overhead is negligible.
CHUNK_ROWS = 1 << 16

_OUTCOMES = [str(o) for o in Outcome]
_TRANSPORTS = [str(t) for t in Transport]
_FAILED_CODES = np.array([o in FAILED_OUTCOMES for o in _OUTCOMES] + [False])  # last: code -1
# Each row's class packs outcome (rejected, no_reply, other failure, not failed), transport
# (tcp, udp, icmp/icmpv6, other) and port (none, below 1024, 1024 and up): one bincount per
# chunk then gives every count and ratio feature.
_OUTCOME_CLASS = np.array(
    [{"rejected": 0, "no_reply": 1}.get(o, 2 if o in FAILED_OUTCOMES else 3) for o in _OUTCOMES] + [3], dtype=np.int64
)
_TRANSPORT_CLASS = np.array([{"tcp": 0, "udp": 1, "icmp": 2, "icmpv6": 2}.get(t, 3) for t in _TRANSPORTS] + [3], dtype=np.int64)
_N_CLASSES = 48
# a row's class is _OUTCOME_PART[outcome] + _TRANSPORT_PART[transport] + port class
_OUTCOME_PART = (_OUTCOME_CLASS * 12).astype(np.uint8)
_TRANSPORT_PART = (_TRANSPORT_CLASS * 3).astype(np.uint8)
_FAILED_CLASSES = 36  # classes below this have an outcome class 0-2: a failure
_PORT_BITS = 17  # destination_port + 1 in [0, 65536]; 0 stands for a missing port
#: Widest packed sort key (bits); wider keys fall back to ``np.lexsort``.
_MAX_KEY_BITS = 62


# --- the registry -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Feature:
    """One registered feature.

    Attributes
    ----------
    name : str
        Column name in the features frame.
    tags : tuple of str
        Subset of :data:`TAGS`.
    definition : str
        One-line definition (the first line of the kernel's docstring).
    kernel : callable
        ``kernel(groups: WindowGroups) -> ndarray`` of one float per group.
    needs : tuple of str
        Canonical columns the feature reads; ``peer_ip`` is the other side's address.
    """

    name: str
    tags: tuple[str, ...]
    definition: str
    kernel: Callable[[WindowGroups], np.ndarray]
    needs: tuple[str, ...]


_REGISTRY: dict[str, Feature] = {}


def register_feature(
    name: str | None = None, *, tags: Iterable[str], needs: Iterable[str] = ()
) -> Callable[[Callable[[WindowGroups], np.ndarray]], Callable[[WindowGroups], np.ndarray]]:
    """Register a vectorised feature kernel (decorator).

    The kernel receives a :class:`WindowGroups` (one chunk of (entity, window) groups) and
    returns one value per group. The first line of its docstring is the feature's
    one-line definition, shown by :func:`list_features` and in ``docs/features.md``.

    Parameters
    ----------
    name : str, optional
        Feature name; defaults to the function name.
    tags : iterable of str
        Tags from :data:`TAGS`.
    needs : iterable of str
        Canonical columns read (``peer_ip`` for the other side's address). List every one:
        only the columns some selected feature needs are extracted, and the others read
        as missing (port -1, peer 0, outcome and transport "other") in the per-row arrays.
    """
    tag_tuple = tuple(tags)
    unknown = set(tag_tuple) - set(TAGS)
    if unknown:
        raise ValueError(f"unknown tags {sorted(unknown)}; expected some of {TAGS}")

    def decorate(kernel: Callable[[WindowGroups], np.ndarray]) -> Callable[[WindowGroups], np.ndarray]:
        feature_name = name or kernel.__name__
        doc = (kernel.__doc__ or "").strip()
        if not doc:
            raise ValueError(f"feature {feature_name!r} needs a docstring: its first line is the definition")
        if feature_name in _REGISTRY:
            raise ValueError(f"feature {feature_name!r} is already registered")
        _REGISTRY[feature_name] = Feature(feature_name, tag_tuple, doc.splitlines()[0].strip(), kernel, tuple(needs))
        return kernel

    return decorate


def get_features(features: str | Sequence[str] = "default") -> list[Feature]:
    """Resolve a tag (``"minimal"``, ``"default"``, ``"expensive"``, ``"all"``) or feature names.

    Raises
    ------
    ValueError
        For an unknown tag or feature name, listing the valid ones.
    """
    if isinstance(features, str):
        if features == "all":
            return list(_REGISTRY.values())
        if features in TAGS:
            return [f for f in _REGISTRY.values() if features in f.tags]
        if features in _REGISTRY:
            return [_REGISTRY[features]]
        raise ValueError(
            f"unknown feature set {features!r}: expected a tag ({', '.join(TAGS)}, all) "
            f"or a feature name ({', '.join(_REGISTRY)})"
        )
    names = list(features)
    unknown = [n for n in names if n not in _REGISTRY]
    if unknown:
        raise ValueError(f"unknown feature names {unknown}; known features: {', '.join(_REGISTRY)}")
    if len(set(names)) != len(names):
        raise ValueError(f"feature names repeat: {names}")
    if not names:
        raise ValueError("no feature selected")
    return [_REGISTRY[n] for n in names]


def list_features(tag: str | None = None) -> pd.DataFrame:
    """The registry as a frame: one row per feature with ``name``, ``tags`` and ``definition``.

    Parameters
    ----------
    tag : str, optional
        Only features with this tag (``"all"`` or ``None``: every feature).
    """
    if tag is not None and tag not in (*TAGS, "all"):
        raise ValueError(f"unknown tag {tag!r}; expected one of {TAGS + ('all',)}")
    selected = get_features(tag or "all")
    return pd.DataFrame(
        {
            "name": [f.name for f in selected],
            "tags": [", ".join(f.tags) for f in selected],
            "definition": [f.definition for f in selected],
        }
    )


def features_markdown() -> str:
    """The feature reference page (``docs/features.md``), generated from the registry."""
    lines = [
        "# Window features",
        "",
        "Generated from the registry in `t1046lab/features.py` by",
        "`python -m t1046lab.features > docs/features.md`; a test checks that they agree.",
        "",
        "`window_features(conns, window=\"5min\", by=\"source_ip\", features=\"default\", slide=None)`",
        "returns one row per (entity, window) with index `(by, window_start)` and one float64",
        "column per feature. The *peer* is the other side of a connection: the destination when",
        "`by=\"source_ip\"`, the source when `by=\"destination_ip\"`. Ports are destination ports.",
        "Rows with an integer `aggregated_count` column (aggregated flow-log rows) weigh that many",
        "attempts in counts, ratios, entropies and bytes; distinct counts and time-order features",
        "count rows. Entropies are in bits. Ratios with an empty denominator are 0.",
        "",
        "Tags: `minimal` (cheap counts), `default` (what the anomaly detectors use),",
        "`expensive` (history-based: they look at all earlier data, not just the window).",
        "",
        "| feature | tags | definition |",
        "|---|---|---|",
    ]
    for f in _REGISTRY.values():
        lines.append(f"| `{f.name}` | {', '.join(f.tags)} | {f.definition} |")
    return "\n".join(lines) + "\n"


# --- inputs: per-row arrays in time order, extracted lazily -----------------------------


def _category_codes(series: pd.Series, categories: list[str]) -> np.ndarray:
    """Codes of ``series`` in ``categories`` (int8, -1 for missing or other values)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        cats = [str(c) for c in series.cat.categories]
        lut = np.array([categories.index(c) if c in categories else -1 for c in cats] + [-1], dtype=np.int8)
        return lut[series.cat.codes.to_numpy()]
    return pd.Categorical(series.astype("object"), categories=categories).codes.astype(np.int8)


def _category_lut(series: pd.Series, categories: list[str], values: np.ndarray) -> np.ndarray:
    """``values[i]`` where ``series`` holds ``categories[i]``, ``values[-1]`` for missing or other values."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        last = values[-1]
        lut = np.array(
            [values[categories.index(str(c))] if str(c) in categories else last for c in series.cat.categories] + [last],
            dtype=values.dtype,
        )
        return lut[series.cat.codes.to_numpy()]  # code -1 (missing) reads the last entry
    return values[_category_codes(series, categories)]


def _arrow_codes(chunked: Any) -> tuple[np.ndarray, Any] | None:
    """Codes (int32, -1 for null) and dictionary of an arrow string column, or None if pyarrow cannot."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        encoded = pc.dictionary_encode(chunked)
    except (pa.ArrowException, TypeError):  # e.g. an arrow column that is already dictionary-typed
        return None
    if not isinstance(encoded, pa.ChunkedArray):
        encoded = pa.chunked_array([encoded])
    if encoded.num_chunks == 0:
        return None
    if encoded.num_chunks > 1:
        encoded = encoded.unify_dictionaries()
    codes = np.concatenate([(pc.fill_null(c.indices, -1) if c.null_count else c.indices).to_numpy() for c in encoded.chunks])
    return codes.astype(np.int32, copy=False), encoded.chunk(0).dictionary


def _factorize(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (int32, -1 for missing) and uniques of an address column.

    Arrow-backed strings (the pandas 3 default) are dictionary-encoded by pyarrow chunk by
    chunk and the dictionaries unified (no pandas round trip for frames read from parquet
    in many chunks); categoricals give their codes directly; anything else goes through
    ``pd.factorize``.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.codes.to_numpy().astype(np.int32), pd.Index(series.cat.categories)
    chunked = getattr(series.array, "_pa_array", None)  # pandas' arrow-backed arrays
    if chunked is not None and len(series):
        found = _arrow_codes(chunked)
        if found is not None:
            return found[0], pd.Index(pd.array(found[1], dtype=series.dtype))
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes.astype(np.int32, copy=False), pd.Index(uniques)


def _factorize_in_value_order(series: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """:func:`_factorize` with codes numbered in the sorted order of the values.

    Float sums over a group's peers (``peer_entropy``) run in code order; numbering peers by
    value instead of first appearance makes them independent of how the rows were chunked
    or partitioned, so streaming and Dask give the in-memory values bit for bit.
    """
    codes, uniques = _factorize(series)
    if len(uniques) < 2:
        return codes, uniques
    order = np.asarray(uniques.argsort(), dtype=np.int64)
    rank = np.empty(len(uniques) + 1, dtype=np.int32)
    rank[order] = np.arange(len(uniques), dtype=np.int32)
    rank[-1] = -1  # code -1 (missing) stays -1
    return rank[codes], uniques[order]


def _bit_length(n: int) -> int:
    return max(int(n).bit_length(), 1)


class _Inputs:
    """The per-row arrays a feature may read, in time order, each extracted on first use."""

    def __init__(
        self,
        conns: pd.DataFrame,
        by: str,
        peer_column: str,
        order: np.ndarray | None,
        keep: np.ndarray | None,
        needed: Iterable[str] = (),
        peer_codes: Any = None,
    ):
        self._conns = conns
        self._peer_codes = peer_codes  # a future of _factorize(peer column), or None
        self._needed = set(needed)
        self._by = by
        self._peer_column = peer_column
        self._order = order  # positions (after ``keep``) in time order, or None if already sorted
        self._keep = keep  # rows with a usable entity and time, or None for all
        self._cache: dict[str, np.ndarray] = {}
        self.n_peers = 0

    def _column(self, name: str) -> pd.Series:
        return self._conns[name]

    def _arrange(self, values: np.ndarray) -> np.ndarray:
        if self._keep is not None:
            values = values[self._keep]
        if self._order is not None:
            values = values[self._order]
        return values

    def __getattr__(self, name: str) -> np.ndarray:
        if name.startswith("_"):
            raise AttributeError(name)
        cache = self.__dict__["_cache"]
        if name not in cache:
            loader = getattr(type(self), f"_load_{name}", None)
            if loader is None:
                raise AttributeError(name)
            cache[name] = loader(self)
        return cache[name]

    def _load_peer(self) -> np.ndarray:
        if "peer_ip" not in self._needed:  # no selected feature reads it: every peer is "missing"
            self.n_peers = 1
            return np.zeros(len(self.time), dtype=np.int32)
        if self._peer_codes is not None:
            codes, uniques = self._peer_codes.result()
        else:
            codes, uniques = _factorize_in_value_order(self._column(self._peer_column))
        self.n_peers = len(uniques) + 1
        codes += 1  # 0 stands for a missing address
        return self._arrange(codes)

    def _load_port(self) -> np.ndarray:
        if "destination_port" not in self._needed:
            return np.full(len(self.time), -1, dtype=np.int32)
        return self._arrange(self._column("destination_port").to_numpy(dtype=np.int32, na_value=-1))

    def _load_outcome(self) -> np.ndarray:
        return self._arrange(_category_codes(self._column("conn_outcome"), _OUTCOMES))

    def _load_failed(self) -> np.ndarray:
        return _FAILED_CODES[self.outcome]

    def _load_transport(self) -> np.ndarray:
        return self._arrange(_category_codes(self._column("network_transport"), _TRANSPORTS))

    def _load_row_class(self) -> np.ndarray:
        """Class of each row (uint8): outcome class * 12 + transport class * 3 + port class.

        Parts the selected features do not need read as missing, so their columns are not read.
        """
        if "conn_outcome" in self._needed:
            row_class = self._arrange(_category_lut(self._column("conn_outcome"), _OUTCOMES, _OUTCOME_PART))
        else:
            row_class = np.full(len(self.time), _OUTCOME_PART[-1], dtype=np.uint8)
        if "network_transport" in self._needed:
            row_class += self._arrange(_category_lut(self._column("network_transport"), _TRANSPORTS, _TRANSPORT_PART))
        else:
            row_class += _TRANSPORT_PART[-1]
        if "destination_port" in self._needed:
            port = self.port
            row_class += port >= 0
            row_class += port >= 1024
        return row_class

    def _load_bytes(self) -> np.ndarray:
        total = self._column("source_bytes").to_numpy(dtype=np.float64, na_value=0.0)
        total = total + self._column("destination_bytes").to_numpy(dtype=np.float64, na_value=0.0)
        return self._arrange(total)

    def _load_weight(self) -> np.ndarray | None:
        if AGGREGATED_COUNT not in self._conns.columns:
            return None
        weight = pd.to_numeric(self._column(AGGREGATED_COUNT)).to_numpy(dtype=np.float64, na_value=1.0)
        if (weight < 1).any() or not np.all(np.isfinite(weight)):
            raise ValueError(f"column {AGGREGATED_COUNT!r} must hold integers >= 1 (or be missing)")
        if np.all(weight == 1):
            return None
        return self._arrange(weight)

    def _load_first_contact(self) -> np.ndarray:
        """True where the entity contacts this peer for the first time in the data."""
        entity, peer = self.entity, self.peer
        n = len(entity)
        first = np.zeros(n, dtype=bool)
        if n == 0:
            return first
        eb, pb, rb = _bit_length(int(entity.max())), _bit_length(self.n_peers), _bit_length(n - 1)
        if eb + pb + rb <= _MAX_KEY_BITS:
            key = (entity.astype(np.int64) << (pb + rb)) | (peer.astype(np.int64) << rb) | np.arange(n, dtype=np.int64)
            key.sort()
            pair = key >> rb
            starts = np.flatnonzero(np.concatenate(([True], pair[1:] != pair[:-1])))
            first[key[starts] & ((1 << rb) - 1)] = True
        else:  # too many distinct values to pack into one int64 key
            order = np.lexsort((np.arange(n), peer, entity))
            e, p = entity[order], peer[order]
            first[order[np.concatenate(([True], (e[1:] != e[:-1]) | (p[1:] != p[:-1])))]] = True
        return first


# --- one chunk of (entity, window) groups -----------------------------------------------


class WindowGroups:
    """One chunk of (entity, window) groups, the argument of every feature kernel.

    Rows are ordered by group, then by time (ties in input order). Per-row arrays (``time``,
    ``port`` and ``peer`` as int32 codes, ``outcome``, ``failed``, ``transport``,
    ``row_class``, ``bytes``, ``first_contact``) and shared intermediate results are
    computed on first use and cached, so features that need the same sort share it.

    Attributes
    ----------
    n : int
        Number of groups.
    group : ndarray of int64
        Group of each row, non-decreasing, in ``[0, n)``.
    starts : ndarray of int64
        Position of each group's first row.
    size : ndarray of int64
        Rows per group.
    """

    def __init__(self, inputs: _Inputs, rows: np.ndarray, group: np.ndarray, starts: np.ndarray):
        self._inputs = inputs
        self._rows = rows
        self.group = group
        self.starts = starts
        self.n = len(starts)
        self.size = np.diff(np.append(starts, len(rows)))
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        cache = self.__dict__["_cache"]
        if name not in cache:
            loader = getattr(type(self), f"_load_{name}", None)
            if loader is not None:
                cache[name] = loader(self)
            else:
                values = getattr(self._inputs, name)
                cache[name] = None if values is None else np.take(values, self._rows)
        return cache[name]

    # sums over groups ------------------------------------------------------------------

    def total(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` (one per row) over each group."""
        if len(values) == 0:
            return np.zeros(self.n)
        return np.add.reduceat(values, self.starts, dtype=np.float64 if values.dtype.kind == "f" else np.int64)

    def weighted_total(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Number of attempts (``aggregated_count``-weighted) per group, where ``mask`` holds."""
        weight = self.weight
        if mask is None:
            return self.size.astype(np.float64) if weight is None else self.total(weight)
        if weight is None:
            return self.total(mask).astype(np.float64)
        return self.total(np.where(mask, weight, 0.0))

    def ratio(self, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        """``numerator / denominator`` per group, 0 where the denominator is 0."""
        out = np.zeros(self.n)
        np.divide(numerator, denominator, out=out, where=denominator > 0)
        return out

    def _load_count(self) -> np.ndarray:
        return self.weighted_total()

    def _load_failed(self) -> np.ndarray:
        return self.row_class < _FAILED_CLASSES

    def _load_class_table(self) -> np.ndarray:
        """Attempts per (group, class), weighted; class = outcome * 12 + transport * 3 + port class."""
        return self.class_counts.reshape(_N_CLASSES, self.n).T.astype(np.float64)

    def _load_class_counts(self) -> np.ndarray:
        """Attempts per (class, group), weighted, as shape (4, 4, 3, n): outcome, transport, port class.

        Class-major, so each marginal below is a sum of whole rows of ``n`` counts.
        """
        index = np.multiply(self.row_class, self.n, dtype=np.int64)
        index += self.group
        table = np.bincount(index, weights=self.weight, minlength=_N_CLASSES * self.n)
        return table.reshape(4, 4, 3, self.n)

    def _load_by_outcome(self) -> np.ndarray:
        return self.class_counts.sum(axis=(1, 2)).T.astype(np.float64)

    def _load_by_transport(self) -> np.ndarray:
        return self.class_counts.sum(axis=(0, 2)).T.astype(np.float64)

    def _load_by_port_class(self) -> np.ndarray:
        return self.class_counts.sum(axis=(0, 1)).T.astype(np.float64)

    def _load_same_previous(self) -> np.ndarray:
        return self.group[1:] == self.group[:-1]

    # runs of (group, value...) ----------------------------------------------------------

    def runs(
        self, levels: Sequence[tuple[np.ndarray, int]], select: np.ndarray | None = None, weighted: bool = True
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Sort rows by (group, *levels) and return the runs at each depth.

        Parameters
        ----------
        levels : sequence of (values, bits)
            Non-negative integer values per row and the bits they need.
        select : boolean ndarray, optional
            Only these rows.
        weighted : bool
            Run sizes weighted by ``aggregated_count``.

        Returns
        -------
        list of (run_group, run_size)
            For each depth ``d``, the runs of equal ``(group, levels[:d+1])``: the group of
            each run and its (weighted) number of rows.
        """
        group = (self.group if select is None else self.group[select]).astype(np.int64, copy=False)
        values = [((v if select is None else v[select]).astype(np.int64, copy=False), b) for v, b in levels]
        weight = self.weight if weighted else None
        if weight is not None and select is not None:
            weight = weight[select]
        n = len(group)
        if n == 0:
            empty = (np.empty(0, np.int64), np.empty(0, np.float64))
            return [empty] * len(levels)
        value_bits = sum(b for _, b in values)
        out = []
        if _bit_length(self.n - 1) + value_bits <= _MAX_KEY_BITS:
            key = group << value_bits
            shift = value_bits
            for v, bits in values:
                shift -= bits
                key |= (v << shift) if shift else v
            if weight is None:
                key.sort()
            else:
                order = np.argsort(key, kind="stable")
                key, weight = key[order], weight[order]
            shift = value_bits
            for _, bits in values:
                shift -= bits
                prefix = key >> shift
                starts = np.flatnonzero(np.concatenate(([True], prefix[1:] != prefix[:-1])))
                sizes = np.diff(np.append(starts, n)) if weight is None else np.add.reduceat(weight, starts)
                out.append((key[starts] >> value_bits, sizes))
            return out
        order = np.lexsort(tuple(v for v, _ in reversed(values)) + (group,))
        g = group[order]
        change = g[1:] != g[:-1]
        w = None if weight is None else weight[order]
        for v, _ in values:
            vs = v[order]
            change = change | (vs[1:] != vs[:-1])
            starts = np.flatnonzero(np.concatenate(([True], change)))
            sizes = np.diff(np.append(starts, n)) if w is None else np.add.reduceat(w, starts)
            out.append((g[starts], sizes))
        return out

    def distinct(self, runs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Number of runs per group (distinct values)."""
        return np.bincount(runs[0], minlength=self.n).astype(np.float64)

    def entropy(self, runs: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Shannon entropy in bits of the run sizes within each group (0 for an empty group)."""
        run_group, sizes = runs
        sizes = sizes.astype(np.float64)
        total = np.bincount(run_group, sizes, minlength=self.n)
        plogp = np.bincount(run_group, sizes * np.log2(sizes), minlength=self.n)
        seen = total > 0
        safe = np.where(seen, total, 1.0)
        # H = log2(N) - sum(c log2 c) / N; rounding can leave -1e-16 where H is 0
        return np.where(seen, np.maximum(np.log2(safe) - plogp / safe, 0.0), 0.0)

    def _load_has_port(self) -> np.ndarray:
        return self.port >= 0

    def _load_port_runs(self) -> tuple[np.ndarray, np.ndarray]:
        has = self.has_port
        if self.weight is None and self.n < 1 << 16 and _MAX_KEY_BITS >= 32:
            # Same runs as ``runs`` from one uint32 sort of group << 16 | port (half the
            # bytes of an int64 key); a missing port (-1) makes the key 0xFFFFFFFF, above
            # every real one (groups < 65535), so those rows sort last and are cut off.
            key = self.group.astype(np.uint32)
            key <<= 16
            key |= self.port.view(np.uint32)
            key.sort()
            return _sorted_runs(key[: int(np.count_nonzero(has))], 16)
        return self.runs([(self.port, 16)], select=None if has.all() else has)[0]

    def _load_peer_runs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        # one sort serves distinct peers, peer entropy and distinct (peer, port) pairs
        self._inputs.peer  # noqa: B018 - loads the peer codes, which sets n_peers
        peer_bits = _bit_length(self._inputs.n_peers)
        if self.weight is None and _bit_length(self.n - 1) + peer_bits + _PORT_BITS <= _MAX_KEY_BITS:
            # ``runs`` for these two levels, built in place: group | peer | port + 1
            key = np.left_shift(self.group, peer_bits + _PORT_BITS)
            key |= np.left_shift(self.peer, _PORT_BITS, dtype=np.int64)
            key += self.port  # the low bits are 0, so adding port + 1 is or-ing it
            key += 1
            key.sort()
            return [_sorted_runs(key >> _PORT_BITS, peer_bits), _sorted_runs(key, peer_bits + _PORT_BITS)]
        return self.runs([(self.peer, peer_bits), (self.port + 1, _PORT_BITS)])


def _sorted_runs(key: np.ndarray, group_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs of equal values in sorted ``key``: each run's group (``key >> group_shift``) and size."""
    n = len(key)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    head = np.empty(n, dtype=bool)
    head[0] = True
    np.not_equal(key[1:], key[:-1], out=head[1:])
    starts = np.flatnonzero(head)
    return (key[starts] >> group_shift).astype(np.int64, copy=False), np.diff(starts, append=n)


# --- the features -----------------------------------------------------------------------


@register_feature(tags=("minimal", "default"))
def conn_count(g: WindowGroups) -> np.ndarray:
    """Number of connection attempts (weighted by `aggregated_count`)."""
    return g.count


@register_feature(tags=("minimal", "default"), needs=("peer_ip",))
def distinct_peers(g: WindowGroups) -> np.ndarray:
    """Distinct peer addresses: destination hosts for `by="source_ip"`, sources for `by="destination_ip"`."""
    return g.distinct(g.peer_runs[0])


@register_feature(tags=("minimal", "default"), needs=("destination_port",))
def distinct_ports(g: WindowGroups) -> np.ndarray:
    """Distinct destination ports (attempts without a port, such as ICMP, are ignored)."""
    return g.distinct(g.port_runs)


@register_feature(tags=("minimal", "default"), needs=("peer_ip", "destination_port"))
def distinct_peer_ports(g: WindowGroups) -> np.ndarray:
    """Distinct (peer, destination port) pairs; a missing port (ICMP) counts as one value per peer."""
    return g.distinct(g.peer_runs[1])


@register_feature(tags=("minimal", "default"), needs=("conn_outcome",))
def failure_ratio(g: WindowGroups) -> np.ndarray:
    """(rejected + no_reply + icmp_unreachable + denied) attempts / attempts."""
    return g.ratio(g.by_outcome[:, :3].sum(axis=1), g.count)


@register_feature(tags=("default",), needs=("conn_outcome",))
def rejected_ratio(g: WindowGroups) -> np.ndarray:
    """Rejected attempts (RST from the target) / attempts."""
    return g.ratio(g.by_outcome[:, 0], g.count)


@register_feature(tags=("default",), needs=("conn_outcome",))
def no_reply_ratio(g: WindowGroups) -> np.ndarray:
    """Attempts with no reply / attempts."""
    return g.ratio(g.by_outcome[:, 1], g.count)


@register_feature(tags=("minimal", "default"), needs=("network_transport",))
def tcp_count(g: WindowGroups) -> np.ndarray:
    """Number of TCP attempts."""
    return g.by_transport[:, 0].copy()


@register_feature(tags=("minimal", "default"), needs=("network_transport",))
def udp_count(g: WindowGroups) -> np.ndarray:
    """Number of UDP attempts."""
    return g.by_transport[:, 1].copy()


@register_feature(tags=("minimal", "default"), needs=("network_transport",))
def icmp_count(g: WindowGroups) -> np.ndarray:
    """Number of ICMP and ICMPv6 attempts."""
    return g.by_transport[:, 2].copy()


@register_feature(tags=("default",), needs=("destination_port",))
def port_entropy(g: WindowGroups) -> np.ndarray:
    """Shannon entropy (bits) of the destination ports of attempts that have a port."""
    return g.entropy(g.port_runs)


@register_feature(tags=("default",), needs=("peer_ip",))
def peer_entropy(g: WindowGroups) -> np.ndarray:
    """Shannon entropy (bits) of the peer addresses of the attempts."""
    return g.entropy(g.peer_runs[0])


@register_feature(tags=("default",), needs=("destination_port",))
def low_port_ratio(g: WindowGroups) -> np.ndarray:
    """Attempts to a destination port below 1024 / attempts that have a port."""
    return g.ratio(g.by_port_class[:, 1], g.by_port_class[:, 1:].sum(axis=1))


@register_feature(tags=("default",), needs=("destination_port", "event_start"))
def port_sequence_ratio(g: WindowGroups) -> np.ndarray:
    """Fraction of consecutive attempts (time order, ported attempts only) whose port differs by exactly 1; 0 below 2 attempts."""
    port, has = g.port, g.has_port
    if has.all():
        group, ported, same = g.group, g.size, g.same_previous
    else:
        port, group = port[has], g.group[has]
        ported = g.size - np.bincount(g.group[~has], minlength=g.n)  # few rows lack a port
        same = group[1:] == group[:-1]
    step = np.diff(port)
    np.abs(step, out=step)
    stepped = step == 1  # pair (i, i + 1) is a ±1 step
    stepped &= same  # ... within one group
    hits = np.bincount(group[1:][stepped], minlength=g.n)
    return g.ratio(hits.astype(np.float64), (ported - 1).astype(np.float64))


@register_feature(tags=("default",), needs=("event_start",))
def interarrival_cv(g: WindowGroups) -> np.ndarray:
    """Coefficient of variation (population std / mean) of inter-arrival times; 0 below 3 attempts or when all start together."""
    t = g.time
    if len(t) == 0:
        return np.zeros(g.n)
    gaps = g.size - 1
    last = g.starts + gaps
    mean = g.ratio((t[last] - t[g.starts]).astype(np.float64), gaps.astype(np.float64))
    dev = np.diff(t).astype(np.float64)  # gap i is between rows i and i + 1
    dev -= np.repeat(mean, g.size)[1:]
    dev[g.starts[1:] - 1] = 0.0  # a group's first row has no gap before it in the group
    dev *= dev
    sq = np.bincount(g.group[1:], weights=dev, minlength=g.n)
    std = np.sqrt(g.ratio(sq, gaps.astype(np.float64)))
    cv = g.ratio(std, mean)
    cv[gaps < 2] = 0.0
    return cv


@register_feature(tags=("default",), needs=("source_bytes", "destination_bytes"))
def bytes_per_conn(g: WindowGroups) -> np.ndarray:
    """(source_bytes + destination_bytes, missing as 0) / attempts."""
    return g.ratio(g.total(g.bytes), g.count)


@register_feature(tags=("expensive",), needs=("peer_ip", "conn_outcome", "event_start"))
def first_contact_failure_ratio(g: WindowGroups) -> np.ndarray:
    """Failure ratio over first-contact attempts (to a peer this entity never contacted earlier in the data); 0 if none."""
    first = g.first_contact
    return g.ratio(g.total(first & g.failed).astype(np.float64), g.total(first).astype(np.float64))


@register_feature(tags=("expensive",), needs=("peer_ip", "event_start"))
def new_peer_ratio(g: WindowGroups) -> np.ndarray:
    """Fraction of the window's distinct peers this entity never contacted before the window start (in the data)."""
    return g.ratio(g.total(g.first_contact).astype(np.float64), g.distinct(g.peer_runs[0]))


# --- window_features --------------------------------------------------------------------


def _peer_column(by: str) -> str:
    return "source_ip" if by == "destination_ip" else "destination_ip"


#: Features whose value in a window depends on the entity's earlier windows (first
#: contacts "in the data"): only a split of the rows by entity keeps them exact.
HISTORY_FEATURES = frozenset({"first_contact_failure_ratio", "new_peer_ratio"})


def input_columns(features: str | Sequence[str] = "default", by: str = "source_ip") -> set[str]:
    """The input columns :func:`window_features` reads for ``features`` by ``by``.

    ``aggregated_count`` is optional (read when present) and not included.
    """
    peer_column = _peer_column(by)
    needed = {"event_start", by}
    for f in get_features(features):
        needed.update(peer_column if c == "peer_ip" else c for c in f.needs)
    return needed


def _chunks(t: np.ndarray, window_ns: int, slide_ns: int, chunk_rows: int) -> list[tuple[int, int, int, int]]:
    """Cut sorted times into (row_lo, row_hi, k_lo, k_hi) so no window straddles two chunks."""
    k_first = (int(t[0]) - window_ns) // slide_ns + 1
    k_end = int(t[-1]) // slide_ns + 1
    per_event = -(-window_ns // slide_ns)
    step = max(chunk_rows // per_event, 1)
    cuts = np.unique(np.floor_divide(t[step::step], slide_ns))
    bounds = [k_first, *[int(k) for k in cuts if k_first < k < k_end], k_end]
    starts = np.array(bounds[:-1], dtype=np.int64) * slide_ns
    ends = (np.array(bounds[1:], dtype=np.int64) - 1) * slide_ns + window_ns
    lo = np.searchsorted(t, starts, side="left")
    hi = np.searchsorted(t, ends, side="left")
    return [(int(a), int(b), k0, k1) for a, b, k0, k1 in zip(lo, hi, bounds[:-1], bounds[1:]) if b > a]


def _window_of_rows(t: np.ndarray, window_ns: int) -> np.ndarray:
    """Tumbling window of each of the time-sorted ``t``, counted from the first one's."""
    first, last = int(t[0]) // window_ns, int(t[-1]) // window_ns
    if last - first > 255:
        return np.floor_divide(t, window_ns) - first
    # a few windows: cut the sorted times at their starts (no division per row), one byte each
    cuts = np.searchsorted(t, np.arange(first + 1, last + 1, dtype=np.int64) * window_ns)
    return np.repeat(np.arange(last - first + 1, dtype=np.uint8), np.diff(cuts, prepend=0, append=len(t)))


def _group_chunk(
    entity: np.ndarray, t: np.ndarray, lo: int, hi: int, k0: int, k1: int, window_ns: int, slide_ns: int, entity_bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of one chunk ordered by (entity, window, time): rows, group, starts, group entity, group k."""
    n = hi - lo
    rb = _bit_length(n - 1)
    if slide_ns == window_ns and entity_bits + rb <= _MAX_KEY_BITS:
        # Tumbling: each row is in one window and rows are in time order, so sorting by
        # (entity, row) also orders each entity's rows by window; the key is uint32
        # (half the bytes to sort) whenever entity and row fit in 32 bits.
        key = entity[lo:hi].astype(np.uint32 if entity_bits + rb <= 32 else np.int64)
        key <<= rb
        key |= np.arange(n, dtype=key.dtype)
        key.sort()
        rows = np.bitwise_and(key, (1 << rb) - 1, dtype=np.int64)
        key >>= rb  # the entity of each row
        head = np.empty(n, dtype=bool)  # first row of a group
        head[0] = True
        np.not_equal(key[1:], key[:-1], out=head[1:])
        if int(t[lo]) // window_ns == int(t[hi - 1]) // window_ns:
            starts = np.flatnonzero(head)
            g_k = np.full(len(starts), int(t[lo]) // window_ns, dtype=np.int64)
        else:
            k = np.take(_window_of_rows(t[lo:hi], window_ns), rows)
            head[1:] |= k[1:] != k[:-1]
            starts = np.flatnonzero(head)
            g_k = k[starts].astype(np.int64) + int(t[lo]) // window_ns
        g_entity = key[starts].astype(np.int64)
        rows += lo
    else:
        if slide_ns == window_ns:
            local = np.arange(n, dtype=np.int64)
            wl = np.floor_divide(t[lo:hi], window_ns) - k0
            e = entity[lo:hi]
        else:
            local, k = expand_windows(t[lo:hi], window_ns, slide_ns, k_range=(k0, k1))
            wl = k - k0
            e = entity[lo:hi][local]
        wb = _bit_length(k1 - k0 - 1)
        if entity_bits + wb + rb <= _MAX_KEY_BITS:
            key = (e.astype(np.int64) << (wb + rb)) | (wl << rb) | local
            key.sort()
            local = key & ((1 << rb) - 1)
            gkey = key >> rb
            change = gkey[1:] != gkey[:-1]
            starts = np.flatnonzero(np.concatenate(([True], change)))
            head = gkey[starts]
            g_entity, g_k = head >> wb, (head & ((1 << wb) - 1)) + k0
        else:
            order = np.lexsort((local, wl, e))
            local, e, wl = local[order], e[order], wl[order]
            change = (e[1:] != e[:-1]) | (wl[1:] != wl[:-1])
            starts = np.flatnonzero(np.concatenate(([True], change)))
            g_entity, g_k = e[starts].astype(np.int64), wl[starts] + k0
        rows = local + lo
    group = np.repeat(np.arange(len(starts), dtype=np.int64), np.diff(starts, append=len(rows)))
    return rows, group, starts, g_entity, g_k


def _empty_result(conns: pd.DataFrame, by: str, names: list[str]) -> pd.DataFrame:
    entity_dtype = conns[by].dtype if by in conns.columns else pd.StringDtype()
    index = pd.MultiIndex.from_arrays(
        [pd.Index([], dtype=entity_dtype), pd.DatetimeIndex([], tz="UTC").as_unit("ns")], names=[by, "window_start"]
    )
    return pd.DataFrame({n: np.empty(0, dtype=np.float64) for n in names}, index=index)


def _threads(n_jobs: int | None, n_tasks: int) -> int:
    """Threads to use: scikit-learn's ``n_jobs`` convention, never more than the tasks."""
    import os

    if n_jobs is None:
        return 1
    if not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be None, a positive integer or -1, got {n_jobs!r}")
    wanted = (os.cpu_count() or 1) if n_jobs == -1 else int(n_jobs)
    return max(1, min(wanted, n_tasks))


def window_features(
    conns: pd.DataFrame,
    window: WindowLike = "5min",
    by: str = "source_ip",
    features: str | Sequence[str] = "default",
    slide: WindowLike | None = None,
    *,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Compute features per (entity, time window) from a connections frame.

    Parameters
    ----------
    conns : DataFrame, or iterator or list of DataFrame
        A canonical connections frame (see :mod:`t1046lab.schema`); only the columns the
        selected features need are read, and the frame is never modified. Chunks in time
        order (``read(path, chunksize=...)``) are streamed with bounded memory by
        :mod:`t1046lab.scale.streaming`, with the same result. A dask DataFrame gives a
        dask DataFrame (:func:`t1046lab.scale.dask_engine.window_features_dask`).
    window : str or Timedelta, default "5min"
        Window length. Windows are aligned on the Unix epoch in UTC.
    by : str, default "source_ip"
        Entity column. ``"destination_ip"`` gives the target-side view (distributed
        scans); the peer is then the source.
    features : str or list of str, default "default"
        A tag (``"minimal"``, ``"default"``, ``"expensive"``, ``"all"``) or feature names;
        see :func:`list_features`.
    slide : str or Timedelta, optional
        Sliding windows of length ``window`` starting every ``slide`` (at most ``window``);
        ``None`` for tumbling windows.
    n_jobs : int, optional
        Threads that compute time chunks in parallel: ``None`` or 1 for one, -1 for every
        core. The result does not depend on it.

    Returns
    -------
    DataFrame
        One row per (entity, window) holding at least one connection, sorted, with a
        MultiIndex ``(by, "window_start")`` (UTC) and one float64 column per feature.
        Rows whose entity or start time is missing are left out with a
        :class:`~t1046lab.exceptions.DataQualityWarning`.

    Raises
    ------
    ValueError
        For an unknown feature or tag, a bad window or slide, or missing columns.

    Examples
    --------
    >>> feats = window_features(conns, window="5min")                      # doctest: +SKIP
    >>> feats = window_features(conns, by="destination_ip", features=["distinct_peers"])  # doctest: +SKIP
    """
    if type(conns).__module__.startswith("dask"):  # dask imported only for a dask frame
        from .scale.dask_engine import window_features_dask

        return window_features_dask(conns, window=window, by=by, features=features, slide=slide)
    if isinstance(conns, (Iterator, list, tuple)):
        from .scale.streaming import stream_window_features

        return stream_window_features(conns, window, by, features, slide)
    if not isinstance(conns, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame or an iterator of them, got {type(conns).__name__}")
    selected = get_features(features)
    names = [f.name for f in selected]
    window_ns = to_timedelta_ns(window)
    slide_ns = window_ns if slide is None else to_timedelta_ns(slide, name="slide")
    if slide_ns > window_ns:
        raise ValueError(f"slide={slide!r} is longer than window={window!r}: events between windows would be lost")
    peer_column = _peer_column(by)
    needed = input_columns(names, by)
    missing = sorted(needed - set(conns.columns))
    if missing:
        raise ValueError(f"window_features needs columns {missing}, which the frame lacks (features: {names})")
    threads = _threads(n_jobs, len(conns))
    if len(conns) == 0:
        return _empty_result(conns, by, names)
    if threads == 1:
        return _window_features(conns, by, peer_column, selected, window_ns, slide_ns, None)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return _window_features(conns, by, peer_column, selected, window_ns, slide_ns, pool)


def _window_features(
    conns: pd.DataFrame,
    by: str,
    peer_column: str,
    selected: list[Feature],
    window_ns: int,
    slide_ns: int,
    pool: Any,
) -> pd.DataFrame:
    """:func:`window_features` after the checks; ``pool`` (a thread pool or None) computes chunks."""
    names = [f.name for f in selected]
    needs = {n for f in selected for n in f.needs}
    peer_codes = None
    if pool is not None and "peer_ip" in needs:
        # pyarrow releases the GIL: the peers are factorized while this thread does the entities
        peer_codes = pool.submit(_factorize_in_value_order, conns[peer_column])
    entity_codes, entity_uniques = _factorize(conns[by])
    times = conns["event_start"]
    usable = entity_codes >= 0
    time_missing = times.isna().to_numpy()
    usable &= ~time_missing
    keep = None
    if not usable.all():
        warnings.warn(
            f"window_features: left out {int((~usable).sum())} of {len(conns)} rows "
            f"({int((entity_codes < 0).sum())} without {by}, {int(time_missing.sum())} without event_start)",
            DataQualityWarning,
            stacklevel=3,  # the caller of window_features
        )
        keep = usable
        if not usable.any():
            return _empty_result(conns, by, names)
    t = to_utc_ns(times[keep] if keep is not None else times)
    entity = entity_codes[keep] if keep is not None else entity_codes
    order = None
    if len(t) > 1 and not bool(np.all(t[1:] >= t[:-1])):
        order = np.argsort(t, kind="stable")
        t, entity = t[order], entity[order]
    inputs = _Inputs(conns, by, peer_column, order, keep, needed=needs, peer_codes=peer_codes)
    inputs._cache["entity"] = entity
    inputs._cache["time"] = t
    entity_bits = _bit_length(len(entity_uniques) - 1)

    def compute(bounds: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, group, starts, g_entity, g_k = _group_chunk(entity, t, *bounds, window_ns, slide_ns, entity_bits)
        groups = WindowGroups(inputs, rows, group, starts)
        values = np.empty((len(selected), groups.n))  # feature-major: the frame's own layout
        for j, f in enumerate(selected):
            values[j] = f.kernel(groups)
        return g_entity, g_k, values

    chunks = list(_chunks(t, window_ns, slide_ns, CHUNK_ROWS))
    # The first chunk fills the shared per-row cache of ``inputs``; after it, chunks only
    # read shared arrays and write their own, and numpy releases the GIL in most kernels.
    parts = [compute(chunks[0])]
    if pool is None:
        parts += [compute(c) for c in chunks[1:]]
    else:
        parts += list(pool.map(compute, chunks[1:]))
    g_entity = np.concatenate([p[0] for p in parts])
    g_k = np.concatenate([p[1] for p in parts])

    # Sort by (entity as text, window start) and build the index from codes, not values.
    used = np.bincount(g_entity, minlength=len(entity_uniques)) > 0
    used_codes = np.flatnonzero(used)
    level_entities = entity_uniques[used_codes]
    by_text = np.argsort(np.asarray(level_entities, dtype=object), kind="stable")
    rank = np.empty(len(entity_uniques), dtype=np.int64)
    rank[used_codes[by_text]] = np.arange(len(used_codes))
    entity_rank = rank[g_entity]
    k_levels, k_codes = _dense_codes(g_k)
    order_out = _order_by(entity_rank, k_codes)
    position = np.empty(len(order_out), dtype=np.int64)
    position[order_out] = np.arange(len(order_out))
    values = np.empty((len(names), len(order_out)))
    offset = 0
    for part in parts:  # each chunk's values straight to their sorted place
        values[:, position[offset : offset + part[2].shape[1]]] = part[2]
        offset += part[2].shape[1]
    index = pd.MultiIndex(
        levels=[
            pd.Index(level_entities[by_text]),
            pd.DatetimeIndex(pd.to_datetime(k_levels * slide_ns, unit="ns", utc=True)).as_unit("ns"),
        ],
        codes=[entity_rank[order_out], k_codes[order_out]],
        names=[by, "window_start"],
        verify_integrity=False,
    )
    # values.T is the frame's column-major layout, so pandas keeps it without a copy
    return pd.DataFrame(values.T, index=index, columns=pd.Index(names), copy=False)


def _dense_codes(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of the integers ``k`` and each one's position among them."""
    low = int(k.min())
    span = int(k.max()) - low + 1
    if span > 4 * len(k) + 1024:  # sparse: a table over the span would be large
        return np.unique(k, return_inverse=True)
    present = np.bincount(k - low, minlength=span) > 0
    code_of = np.cumsum(present) - 1
    return np.flatnonzero(present) + low, code_of[k - low]


def _order_by(major: np.ndarray, minor: np.ndarray) -> np.ndarray:
    """``np.lexsort((minor, major))`` for non-negative integers, by one packed-key sort when it fits."""
    n = len(major)
    mb, nb, rb = _bit_length(int(major.max())), _bit_length(int(minor.max())), _bit_length(n - 1)
    if mb + nb + rb > _MAX_KEY_BITS:
        return np.lexsort((minor, major))
    key = major << (nb + rb)
    key |= minor << rb
    key |= np.arange(n, dtype=np.int64)
    key.sort()
    return key & ((1 << rb) - 1)


if __name__ == "__main__":  # python -m t1046lab.features > docs/features.md
    import sys

    sys.stdout.write(features_markdown())
