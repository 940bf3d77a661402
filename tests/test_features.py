"""window_features against a slow, independent pandas reference (one Python call per group)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import t1046lab
from t1046lab import features as F
from t1046lab.exceptions import DataQualityWarning

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._synthetic import synthetic_connections

FAILED = {"rejected", "no_reply", "icmp_unreachable", "denied"}
ALL_FEATURES = list(F.list_features()["name"])


# --- the reference: plain pandas, one group at a time ------------------------------------


def _entropy_bits(values: np.ndarray, weights: np.ndarray) -> float:
    totals: dict = {}
    for v, w in zip(values.tolist(), weights.tolist()):
        totals[v] = totals.get(v, 0.0) + w
    p = np.array(list(totals.values())) / sum(totals.values()) if totals else np.array([])
    return float(-(p * np.log2(p)).sum())


def _reference_group(g: dict, window_start: int, first_time: dict, entity) -> dict:
    """Every feature of one (entity, window) from its rows (numpy arrays in time order)."""
    w, outcome, transport, peers, port = g["w"], g["outcome"], g["transport"], g["peer"], g["port"]
    n = w.sum()
    failed = np.isin(outcome, list(FAILED))
    has_port = port >= 0
    ports, pw = port[has_port], w[has_port]
    steps = np.abs(np.diff(ports))
    gaps = np.diff(g["t"]).astype(float)
    cv = gaps.std(ddof=0) / gaps.mean() if len(gaps) >= 2 and gaps.mean() > 0 else 0.0
    first = g["first"]
    distinct_peers = set(peers.tolist())
    new_peers = sum(first_time[(entity, p)] >= window_start for p in distinct_peers)
    return {
        "conn_count": n,
        "distinct_peers": len(distinct_peers),
        "distinct_ports": len(set(ports.tolist())),
        "distinct_peer_ports": len(set(zip(peers.tolist(), port.tolist()))),
        "failure_ratio": w[failed].sum() / n,
        "rejected_ratio": w[outcome == "rejected"].sum() / n,
        "no_reply_ratio": w[outcome == "no_reply"].sum() / n,
        "tcp_count": w[transport == "tcp"].sum(),
        "udp_count": w[transport == "udp"].sum(),
        "icmp_count": w[(transport == "icmp") | (transport == "icmpv6")].sum(),
        "port_entropy": _entropy_bits(ports, pw),
        "peer_entropy": _entropy_bits(peers, w),
        "low_port_ratio": pw[ports < 1024].sum() / pw.sum() if len(pw) else 0.0,
        "port_sequence_ratio": float(np.mean(steps == 1)) if len(steps) else 0.0,
        "interarrival_cv": cv,
        "bytes_per_conn": g["bytes"].sum() / n,
        "first_contact_failure_ratio": failed[first].mean() if first.any() else 0.0,
        "new_peer_ratio": new_peers / len(distinct_peers),
    }


def reference(df: pd.DataFrame, window: str = "5min", by: str = "source_ip", slide: str | None = None) -> pd.DataFrame:
    peer = "source_ip" if by == "destination_ip" else "destination_ip"
    d = df.reset_index(drop=True).sort_values("event_start", kind="stable")  # keeps input order for ties
    first = ~d.duplicated(subset=[by, peer], keep="first")
    first_time = {
        (e, p): t.value for e, p, t in zip(d.loc[first, by], d.loc[first, peer], d.loc[first, "event_start"])
    }
    w, s = pd.Timedelta(window), pd.Timedelta(slide or window)
    cols = {
        "t": d["event_start"].astype("int64").to_numpy(),
        "w": d["aggregated_count"].astype(float).to_numpy() if "aggregated_count" in d else np.ones(len(d)),
        "outcome": d["conn_outcome"].astype(str).to_numpy(),
        "transport": d["network_transport"].astype(str).to_numpy(),
        "peer": d[peer].astype(object).to_numpy(),
        "port": d["destination_port"].fillna(-1).astype(int).to_numpy(),
        "bytes": (d["source_bytes"].fillna(0) + d["destination_bytes"].fillna(0)).astype(float).to_numpy(),
        "first": first.to_numpy(),
    }
    entity = d[by].astype(object).to_numpy()
    members: dict = {}  # (entity, window start) -> row positions, in time order
    for row, t in enumerate(d["event_start"]):
        start = t.floor(s)
        while start + w > t:  # every window [start, start + w) holding t
            members.setdefault((entity[row], start), []).append(row)
            start -= s
    rows = {}
    for key in sorted(members):
        pos = np.array(sorted(members[key]))
        group = {name: values[pos] for name, values in cols.items()}
        rows[key] = _reference_group(group, key[1].value, first_time, key[0])
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index = pd.MultiIndex.from_tuples(out.index, names=[by, "window_start"])
    return out.astype(float)


# --- data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conns() -> pd.DataFrame:
    df = synthetic_connections(4000, n_hosts=40, n_servers=12, n_scanners=5, scan_fraction=0.3, duration="2h", random_state=7)
    # second-resolution times make ties, as in many flow logs; the order of ties must be kept
    df["event_start"] = df["event_start"].dt.floor("s")
    return df


@pytest.fixture(scope="module")
def shuffled(conns) -> pd.DataFrame:
    return conns.sample(frac=1.0, random_state=1).reset_index(drop=True)


def _check(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert ours.index.names == ref.index.names
    assert list(ours.index) == list(ref.index)
    assert (ours.dtypes == np.float64).all()
    for name in ours.columns:
        np.testing.assert_allclose(ours[name].to_numpy(), ref[name].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=name)


# --- tests -------------------------------------------------------------------------------


def test_all_features_match_reference_tumbling(conns):
    _check(t1046lab.window_features(conns, window="5min", features="all"), reference(conns, "5min"))


def test_unsorted_input_matches_reference(shuffled):
    _check(t1046lab.window_features(shuffled, window="10min", features="all"), reference(shuffled, "10min"))


def test_destination_view_matches_reference(conns):
    ours = t1046lab.window_features(conns, window="5min", by="destination_ip", features="all")
    _check(ours, reference(conns, "5min", by="destination_ip"))
    # the distributed scan: five sources on one target show up as distinct peers of the target
    dist = conns[conns["scan_type"] == "distributed"]
    target = dist["destination_ip"].iloc[0]
    assert ours.loc[target, "distinct_peers"].max() == 5


@pytest.mark.parametrize(("window", "slide"), [("5min", "1min"), ("10min", "3min")])
def test_sliding_windows_match_reference(conns, window, slide):
    ours = t1046lab.window_features(conns, window=window, slide=slide, features="all")
    _check(ours, reference(conns, window, slide=slide))


def test_aggregated_rows_weigh_counts(conns):
    agg = conns.copy()
    agg["aggregated_count"] = pd.array(np.random.default_rng(5).integers(1, 6, len(agg)), dtype="Int64")
    ours = t1046lab.window_features(agg, window="5min", features="all")
    _check(ours, reference(agg, "5min"))
    assert ours["conn_count"].sum() == agg["aggregated_count"].sum()
    plain = t1046lab.window_features(conns, window="5min", features="all")
    assert (ours["distinct_ports"] == plain["distinct_ports"]).all()  # distinct counts do not weigh


def test_many_small_chunks_and_lexsort_fallback(conns, shuffled, monkeypatch):
    expected = t1046lab.window_features(shuffled, window="5min", slide="2min", features="all")
    monkeypatch.setattr(F, "CHUNK_ROWS", 37)
    _check(t1046lab.window_features(shuffled, window="5min", slide="2min", features="all"), expected)
    monkeypatch.setattr(F, "_MAX_KEY_BITS", 0)  # every packed sort key "too wide"
    _check(t1046lab.window_features(shuffled, window="5min", slide="2min", features="all"), expected)


def test_scanners_stand_out(conns):
    feats = t1046lab.window_features(conns, window="5min")
    labels = conns.groupby("source_ip")["scan_type"].first()
    vertical = labels[labels == "vertical"].index[0]
    horizontal = labels[labels == "horizontal"].index[0]
    benign = feats.drop(index=list(labels.dropna().index), level="source_ip")
    assert feats.loc[vertical, "distinct_ports"].max() > 20 * benign["distinct_ports"].median()
    assert feats.loc[horizontal, "distinct_peers"].max() > 10 * benign["distinct_peers"].median()
    assert feats.loc[vertical, "failure_ratio"].mean() > 0.8 > benign["failure_ratio"].mean()


def test_result_shape_and_index(conns):
    feats = t1046lab.window_features(conns, window="5min", features="minimal")
    assert isinstance(feats.index, pd.MultiIndex)
    assert feats.index.names == ["source_ip", "window_start"]
    assert str(feats.index.get_level_values("window_start").dtype) == "datetime64[ns, UTC]"
    assert feats.index.is_monotonic_increasing and feats.index.is_unique
    assert feats["conn_count"].min() >= 1  # windows without connections are absent
    assert feats["conn_count"].sum() == len(conns)
    starts = feats.index.get_level_values("window_start")
    assert (starts.minute % 5 == 0).all() and (starts.second == 0).all()


def test_caller_frame_is_not_modified(shuffled):
    before = shuffled.copy(deep=True)
    t1046lab.window_features(shuffled, window="5min", slide="1min", features="all")
    pd.testing.assert_frame_equal(shuffled, before)


def test_feature_selection_by_tag_and_list(conns):
    minimal = t1046lab.window_features(conns, features="minimal")
    assert list(minimal.columns) == list(F.list_features("minimal")["name"])
    default = t1046lab.window_features(conns)
    assert set(minimal.columns) < set(default.columns)
    assert "new_peer_ratio" not in default.columns
    assert list(t1046lab.window_features(conns, features="all").columns) == ALL_FEATURES
    chosen = t1046lab.window_features(conns, features=["port_entropy", "conn_count"])
    assert list(chosen.columns) == ["port_entropy", "conn_count"]
    pd.testing.assert_series_equal(chosen["port_entropy"], default["port_entropy"])


def test_unknown_features_raise(conns):
    with pytest.raises(ValueError, match="no_such_feature"):
        t1046lab.window_features(conns, features=["conn_count", "no_such_feature"])
    with pytest.raises(ValueError, match="unknown feature set 'fancy'"):
        t1046lab.window_features(conns, features="fancy")
    with pytest.raises(ValueError, match="unknown tag"):
        F.list_features("fancy")


def test_missing_column_raises(conns):
    with pytest.raises(ValueError, match="destination_port"):
        t1046lab.window_features(conns.drop(columns=["destination_port"]), features=["distinct_ports"])
    # features that do not read the column still work without it
    out = t1046lab.window_features(conns.drop(columns=["destination_port"]), features=["conn_count"])
    assert out["conn_count"].sum() == len(conns)


def test_empty_frame(conns):
    out = t1046lab.window_features(conns.iloc[:0], features="all")
    assert len(out) == 0
    assert list(out.columns) == ALL_FEATURES
    assert out.index.names == ["source_ip", "window_start"]
    assert str(out.index.get_level_values("window_start").dtype) == "datetime64[ns, UTC]"


def test_rows_without_entity_are_reported(conns):
    holes = conns.copy()
    holes.loc[holes.index[:10], "source_ip"] = pd.NA
    with pytest.warns(DataQualityWarning, match="10 without source_ip"):
        out = t1046lab.window_features(holes, features="minimal")
    assert out["conn_count"].sum() == len(conns) - 10


def test_categorical_addresses_give_the_same_result(conns):
    cat = conns.assign(source_ip=conns["source_ip"].astype("category"), destination_ip=conns["destination_ip"].astype("category"))
    a = t1046lab.window_features(conns, features="all")
    b = t1046lab.window_features(cat, features="all")
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-12)  # entropy sums may differ in the last bit
    assert list(a.index.get_level_values(0)) == [str(v) for v in b.index.get_level_values(0)]


def test_accessor_calls_window_features(conns):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pd.testing.assert_frame_equal(
            conns.t1046.features(window="10min", by="destination_ip"),
            t1046lab.window_features(conns, window="10min", by="destination_ip"),
        )


def test_registry_listing_and_docs_agree():
    listing = F.list_features()
    assert list(listing.columns) == ["name", "tags", "definition"]
    required = {
        "conn_count", "distinct_peers", "distinct_ports", "distinct_peer_ports", "failure_ratio",
        "port_entropy", "peer_entropy", "low_port_ratio", "port_sequence_ratio", "interarrival_cv",
        "bytes_per_conn", "first_contact_failure_ratio", "new_peer_ratio", "tcp_count", "udp_count",
        "icmp_count", "rejected_ratio", "no_reply_ratio",
    }  # fmt: skip
    assert required <= set(listing["name"])
    for f in F.get_features("all"):
        assert f.definition and f.definition == f.kernel.__doc__.strip().splitlines()[0]
        assert set(f.tags) <= set(F.TAGS)
    assert set(F.list_features("expensive")["name"]) == {"first_contact_failure_ratio", "new_peer_ratio"}
    doc = (ROOT / "docs" / "features.md").read_text()
    assert doc == F.features_markdown(), "docs/features.md is stale: run python -m t1046lab.features > docs/features.md"
    for name, definition in zip(listing["name"], listing["definition"]):
        assert f"| `{name}` |" in doc and definition in doc


def test_register_feature_rejects_bad_definitions():
    with pytest.raises(ValueError, match="docstring"):
        F.register_feature("undocumented_feature", tags=("default",))(lambda g: g.count)
    with pytest.raises(ValueError, match="unknown tags"):
        F.register_feature("x", tags=("cheap",))
    with pytest.raises(ValueError, match="already registered"):

        @F.register_feature("conn_count", tags=("minimal",))
        def again(g):
            """Duplicate."""
            return g.count


def test_address_storage_does_not_matter(conns):
    """Arrow strings in many chunks (as read from parquet), object strings and one chunk agree."""
    expected = t1046lab.window_features(conns, features="all")
    halves = pd.concat([conns.iloc[: len(conns) // 2], conns.iloc[len(conns) // 2 :]])
    as_object = conns.assign(source_ip=conns["source_ip"].astype(object), destination_ip=conns["destination_ip"].astype(object))
    for frame in (halves, as_object):
        out = t1046lab.window_features(frame, features="all")
        np.testing.assert_allclose(out.to_numpy(), expected.to_numpy(), rtol=1e-12)
        assert [str(v) for v in out.index.get_level_values(0)] == [str(v) for v in expected.index.get_level_values(0)]
    codes, uniques = F._factorize(halves["source_ip"])
    assert (np.asarray(uniques, dtype=object)[codes] == halves["source_ip"].to_numpy(dtype=object)).all()


def test_threads_give_the_same_features(conns, shuffled, monkeypatch):
    monkeypatch.setattr(F, "CHUNK_ROWS", 97)  # many chunks, so threads really share the work
    for frame in (conns, shuffled):
        one = t1046lab.window_features(frame, features="all", slide="1min")
        _check(t1046lab.window_features(frame, features="all", slide="1min", n_jobs=2), one)
        pd.testing.assert_frame_equal(t1046lab.window_features(frame, features="all", slide="1min", n_jobs=-1), one)
    with pytest.raises(ValueError, match="n_jobs must be None, a positive integer or -1"):
        t1046lab.window_features(conns, n_jobs=0)


# --- random small frames: every chunking and key-packing path against the reference ---------

_PORTS = np.array([0, 21, 22, 23, 24, 80, 443, 444, 1023, 1024, 1025, 8080, 65534, 65535])
_OUTCOME_VALUES = ["established", "rejected", "no_reply", "icmp_unreachable", "denied", "partial", "unknown"]
_TRANSPORT_VALUES = ["tcp", "udp", "icmp", "icmpv6", "other"]


def _random_conns(seed: int, n: int, n_src: int, n_dst: int, spread_s: int, tick_s: int, weighted: bool) -> pd.DataFrame:
    """A canonical frame of ``n`` random attempts: few hosts, tied times, missing ports, peers and bytes."""
    from t1046lab import schema

    rng = np.random.default_rng(seed)
    port = pd.array(rng.choice(_PORTS, n), dtype="Int32")
    port[rng.random(n) < 0.15] = pd.NA
    dst = np.array([f"10.0.1.{i}" for i in rng.integers(0, n_dst, n)], dtype=object)
    dst[rng.random(n) < 0.05] = None
    sent = pd.array(rng.integers(0, 5000, n), dtype="Int64")
    sent[rng.random(n) < 0.1] = pd.NA
    columns = {
        "event_start": T0 + pd.to_timedelta(rng.integers(0, spread_s // tick_s + 1, n) * tick_s, unit="s"),
        "source_ip": [f"10.0.0.{i}" for i in rng.integers(0, n_src, n)],
        "destination_ip": dst,
        "destination_port": port,
        "network_transport": rng.choice(_TRANSPORT_VALUES, n, p=[0.6, 0.2, 0.1, 0.05, 0.05]),
        "conn_outcome": rng.choice(_OUTCOME_VALUES, n),
        "source_bytes": sent,
        "destination_bytes": pd.array(rng.integers(0, 90000, n), dtype="Int64"),
    }
    if weighted:
        columns["aggregated_count"] = pd.array(rng.integers(1, 6, n), dtype="Int64")
    return schema.conform(columns, log_format="simulated")


T0 = pd.Timestamp("2026-03-02T07:58:31Z")


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 160),
    n_src=st.integers(1, 5),
    n_dst=st.integers(1, 9),
    spread_s=st.sampled_from([30, 600, 4000, 400_000]),  # 400,000 s: over 255 one-minute windows in a chunk
    tick_s=st.sampled_from([1, 7, 60]),  # coarse ticks make ties, whose input order must be kept
    weighted=st.booleans(),
    view=st.sampled_from([("1min", None), ("5min", None), ("5min", "2min")]),
    by=st.sampled_from(["source_ip", "destination_ip"]),
    chunk_rows=st.sampled_from([1, 5, 64, F.CHUNK_ROWS]),
)
@settings(max_examples=60, deadline=None)
def test_random_frames_match_reference(seed, n, n_src, n_dst, spread_s, tick_s, weighted, view, by, chunk_rows):
    conns = _random_conns(seed, n, n_src, n_dst, spread_s, tick_s, weighted)
    if by == "destination_ip":
        conns = conns[conns["destination_ip"].notna()]
        if conns.empty:
            return
    window, slide = view
    saved = F.CHUNK_ROWS
    F.CHUNK_ROWS = chunk_rows  # not monkeypatch: hypothesis runs many examples in one test call
    try:
        ours = t1046lab.window_features(conns, window=window, slide=slide, by=by, features="all")
    finally:
        F.CHUNK_ROWS = saved
    _check(ours, reference(conns, window, by=by, slide=slide))


@pytest.mark.parametrize("weighted", [False, True])
def test_fast_paths_equal_the_general_ones_exactly(conns, shuffled, monkeypatch, weighted):
    """The uint32 and int64 packed-key paths give the same bits as the lexsort fallbacks."""
    frames = [conns, shuffled]
    if weighted:
        rng = np.random.default_rng(3)
        frames = [f.assign(aggregated_count=pd.array(rng.integers(1, 6, len(f)), dtype="Int64")) for f in frames]
    for frame in frames:
        for slide in (None, "2min"):
            fast = t1046lab.window_features(frame, window="5min", slide=slide, features="all")
            with monkeypatch.context() as m:
                m.setattr(F, "_MAX_KEY_BITS", 40)  # no uint32 keys; int64 keys still fit
                pd.testing.assert_frame_equal(t1046lab.window_features(frame, window="5min", slide=slide, features="all"), fast, check_exact=True)
                m.setattr(F, "_MAX_KEY_BITS", 0)  # every sort is a lexsort
                pd.testing.assert_frame_equal(t1046lab.window_features(frame, window="5min", slide=slide, features="all"), fast, check_exact=True)


def test_first_contact_with_wide_keys():
    """Over 2**17 rows and 2**14 peers: the first-contact sort key needs more than 31 bits."""
    n = 140_000
    rng = np.random.default_rng(11)
    src = rng.integers(0, 40, n)
    dst = rng.integers(0, 20_000, n)
    conns = pd.DataFrame(
        {
            "event_start": T0 + pd.to_timedelta(np.sort(rng.integers(0, 6 * 3600, n)), unit="s"),
            "source_ip": pd.array([f"10.0.0.{i}" for i in src], dtype="string"),
            "destination_ip": pd.array([f"10.{2 + i // 250}.{i % 250}.1" for i in dst], dtype="string"),
        }
    )
    ours = t1046lab.window_features(conns, window="1h", features=["new_peer_ratio"])["new_peer_ratio"]
    # independent: a pair is new in a window if its first contact falls in that window
    d = conns.assign(window_start=conns["event_start"].dt.floor("1h"))
    first = d.groupby(["source_ip", "destination_ip"])["event_start"].transform("min").dt.floor("1h") == d["window_start"]
    pairs = d.assign(new=first).drop_duplicates(["source_ip", "window_start", "destination_ip"])
    expected = pairs.groupby(["source_ip", "window_start"])["new"].mean()
    np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert list(ours.index) == list(expected.index)
    assert 0 < ours.min() and ours.max() <= 1
