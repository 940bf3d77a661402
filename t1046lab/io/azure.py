"""Azure NSG flow logs (``format="azure-nsg"``) and VNet flow logs (``format="azure-vnet"``).

Both are ``PT1H.json`` blobs: one JSON document ``{"records": [...]}`` per hour and NIC. A
*record* of the read report is one flow tuple (a comma-separated string); a bad tuple is
quarantined with its line in the document (and its JSON path as the excerpt). A file that
is not one JSON document may hold one document per line (each ``{"records": [...]}``, or a
bare record).

NSG flow logs, ``records[].properties.flows[].flows[].flowTuples``:
version 1 ``epoch_s,src,dst,sport,dport,T|U,I|O,A|D``; version 2 adds
``,state B|C|E,pkts_out,bytes_out,pkts_in,bytes_in`` (counts empty in B tuples).
VNet flow logs (``flowLogVersion`` 4), ``records[].flowRecords.flows[].flowGroups[].flowTuples``:
``epoch,src,dst,sport,dport,protocol number,I|O,state B|C|E|D,encryption,pkts_out,bytes_out,
pkts_in,bytes_in``, the state ``D`` meaning denied; the epoch is milliseconds in Microsoft's
sample and seconds in older examples (told apart by magnitude).

The begin (B), continuing (C) and end (E) tuples of one flow (same interface, 5-tuple and
direction) are one attempt: merged into one row from the B tuple to the next B, with the
counter deltas summed and ``event_duration_s`` from the first to the last tuple. Each
denied tuple is one attempt.

Outcome mapping (tuples carry no TCP flags):

==================================================  ===============  =============
condition (first that holds)                        conn_outcome     policy_action
==================================================  ===============  =============
decision D (NSG) / state D (VNet)                   denied           deny
allowed, packets came back (summed pkts_in > 0)     established      allow
allowed, packets sent, none back                    no_reply         allow
allowed, no counters (v1, or B tuple only)          unknown          allow
==================================================  ===============  =============

What the format cannot see: no TCP flags, so a closed port (RST back) counts as
``established`` (one packet came back), and rejected is never reported; counters are
per flow, not per direction of the handshake.

Identity: ``cloud_provider`` ``azure``, ``cloud_account_id`` (the subscription id in the
resource id), ``network_interface_id`` (the NIC's MAC address, the only NIC key the tuples
carry). Extras: ``azure_rule``, ``azure_direction`` (I/O), ``azure_states`` (the merged
states, e.g. ``BE``), ``azure_tuples`` (tuples merged), ``azure_resource`` (NSG or VNet
resource id), ``azure_acl_id`` and ``azure_encryption`` (VNet).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import _flowutil as fu
from . import register
from ._report import ReadReport
from ._source import PathLike, open_binary

__all__ = ["read_azure_nsg", "read_azure_vnet"]

_SUBSCRIPTION = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})", re.IGNORECASE)


def _sniff_nsg(head: bytes, name: str) -> bool:
    return b'"records"' in head and (b"NetworkSecurityGroupFlowEvent" in head or (b'"flowTuples"' in head and b'"flowRecords"' not in head))


def _sniff_vnet(head: bytes, name: str) -> bool:
    return b'"records"' in head and (b'"flowRecords"' in head or b"FlowLogFlowEvent" in head)


@register("azure-nsg", sniff=_sniff_nsg, description="Azure NSG flow logs v1/v2 (PT1H.json)")
def read_azure_nsg(path: PathLike, report: ReadReport, *, chunksize: int, **options: Any) -> Iterator[pd.DataFrame]:
    """Azure NSG flow logs v1/v2 (PT1H.json)."""
    if options:
        raise TypeError(f"azure-nsg reader got unknown options {sorted(options)}")
    yield from _read(path, report, chunksize, vnet=False)


@register("azure-vnet", sniff=_sniff_vnet, description="Azure VNet flow logs (PT1H.json)")
def read_azure_vnet(path: PathLike, report: ReadReport, *, chunksize: int, **options: Any) -> Iterator[pd.DataFrame]:
    """Azure VNet flow logs (PT1H.json)."""
    if options:
        raise TypeError(f"azure-vnet reader got unknown options {sorted(options)}")
    yield from _read(path, report, chunksize, vnet=True)


def _documents(text: str, report: ReadReport) -> list[tuple[Any, int]]:
    """The JSON documents of the file with the line each starts on."""
    if not text.strip():
        return []
    try:
        return [(json.loads(text), 1)]
    except ValueError as whole:
        docs: list[tuple[Any, int]] = []
        lines = text.split("\n")
        if sum(1 for ln in lines if ln.strip()) <= 1 or not lines[0].lstrip().startswith("{") or lines[0].strip() == "{":
            # one pretty-printed document that does not parse: nothing in it is readable
            report.seen()
            report.bad(f"not JSON: {whole}", line=getattr(whole, "lineno", None), excerpt=text[:200])
            return []
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                docs.append((json.loads(line), i))
            except ValueError as exc:
                report.seen()
                report.bad(f"not JSON: {exc.__class__.__name__}", line=i, excerpt=line)
        return docs


def _read(path: PathLike, report: ReadReport, chunksize: int, *, vnet: bool) -> Iterator[pd.DataFrame]:
    fmt = "azure-vnet" if vnet else "azure-nsg"
    report.note(f"{fmt}: flow tuples carry no TCP flags: a closed port that answered with RST shows as established")
    with open_binary(path) as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.seen()
        report.bad(f"not UTF-8: {exc.reason}", offset=exc.start)
        yield schema.conform({}, log_format=fmt, n=0)
        return
    tuples: list[str] = []
    meta: list[tuple[Any, ...]] = []
    counts: list[int] = []
    paths: list[str] = []
    for doc, doc_line in _documents(text, report):
        records = doc.get("records") if isinstance(doc, dict) and "records" in doc else [doc]
        if not isinstance(records, list):
            report.seen()
            report.bad("'records' is not a list", line=doc_line)
            continue
        for ri, rec in enumerate(records):
            for path_, group, info in _groups(rec, vnet):
                if not isinstance(group, list):
                    report.seen()
                    report.bad("flowTuples is not a list", line=doc_line, excerpt=f"records[{ri}].{path_}")
                    continue
                tuples.extend(group)
                meta.append(info)
                counts.append(len(group))
                paths.extend(f"records[{ri}].{path_}.flowTuples[{k}]" for k in range(len(group)))
    report.seen(len(tuples))
    if not tuples:
        yield schema.conform({}, log_format=fmt, n=0)
        return
    frame = _parse(tuples, meta, np.asarray(counts), paths, text, report, vnet=vnet)
    yield frame if frame is not None else schema.conform({}, log_format=fmt, n=0)


def _groups(rec: Any, vnet: bool) -> Iterator[tuple[str, Any, tuple[Any, ...]]]:
    if not isinstance(rec, dict):
        return
    if vnet:
        resource = rec.get("targetResourceID") or rec.get("flowLogResourceID")
        mac = rec.get("macAddress")
        flows = fu.dig(rec, "flowRecords", "flows") or []
        for fi, flow in enumerate(flows if isinstance(flows, list) else []):
            for gi, group in enumerate((flow or {}).get("flowGroups") or []):
                yield (f"flowRecords.flows[{fi}].flowGroups[{gi}]", (group or {}).get("flowTuples", []),
                       (group.get("rule"), mac, resource, (flow or {}).get("aclID"), None))
    else:
        resource = rec.get("resourceId")
        version = fu.dig(rec, "properties", "Version")
        flows = fu.dig(rec, "properties", "flows") or []
        for fi, flow in enumerate(flows if isinstance(flows, list) else []):
            for gi, group in enumerate((flow or {}).get("flows") or []):
                yield (f"properties.flows[{fi}].flows[{gi}]", (group or {}).get("flowTuples", []),
                       ((flow or {}).get("rule"), (group or {}).get("mac"), resource, None, version))


def _tuple_lines(text: str, tuples: list[str]) -> np.ndarray:
    """Line number of every tuple in the document (searched in order; only when needed)."""
    newlines = np.flatnonzero(np.frombuffer(text.encode("utf-8"), dtype=np.uint8) == 10)
    pos = 0
    out = np.zeros(len(tuples), dtype=np.int64)
    encoded = text.encode("utf-8")
    for i, t in enumerate(tuples):
        needle = json.dumps(t).encode("utf-8")
        at = encoded.find(needle, pos)
        if at < 0:
            at = pos
        else:
            pos = at + len(needle)
        out[i] = int(np.searchsorted(newlines, at, side="right")) + 1
    return out


def _parse(tuples: list[str], meta: list[tuple[Any, ...]], counts: np.ndarray, paths: list[str], text: str,
           report: ReadReport, *, vnet: bool) -> pd.DataFrame | None:
    n = len(tuples)
    info = pd.DataFrame(meta, columns=["rule", "mac", "resource", "acl", "version"]).loc[np.repeat(np.arange(len(meta)), counts)].reset_index(drop=True)
    is_str = np.array([isinstance(t, str) for t in tuples])
    series = pd.Series([t if isinstance(t, str) else "" for t in tuples], dtype=object)
    parts = series.str.split(",")
    width = parts.str.len().to_numpy()
    why, fail = fu.first_reasons(n)

    fail(~is_str, "flow tuple is not a string")
    if vnet:
        fail(width != 13, "expected 13 fields")
    else:
        version = pd.to_numeric(info["version"], errors="coerce").to_numpy()
        fail((version == 1) & (width != 8), "expected 8 fields (version 1)")
        fail((version == 2) & (width != 13), "expected 13 fields (version 2)")
        fail(~np.isin(width, (8, 13)), "expected 8 or 13 fields")
    cols = series.str.split(",", expand=True) if n else pd.DataFrame(columns=range(13))
    cols = cols.reindex(columns=range(13)).astype(object).fillna("")
    epoch, _, ok = fu.parse_ints(cols[0], missing=())
    fail(~ok, "timestamp is not a number")
    ms = epoch > 1e11
    t = np.where(ms, epoch / 1000.0, epoch)
    sport, _, ok = fu.parse_ints(cols[3], missing=())
    fail(~ok | (sport > 65535), "source port is not a port number")
    dport, _, ok = fu.parse_ints(cols[4], missing=())
    fail(~ok | (dport > 65535), "destination port is not a port number")
    if vnet:
        proto, _, ok = fu.parse_ints(cols[5], missing=())
        fail(~ok | (proto > 255), "unknown protocol")
        state = cols[7].to_numpy(dtype=object)
        fail(~np.isin(state, ("B", "C", "E", "D")), "flow state is not B, C, E or D")
        denied = state == "D"
        cnt = [8 + 1 + k for k in range(4)]
    else:
        letter = cols[5].to_numpy(dtype=object)
        proto = np.select([letter == "T", letter == "U"], [6.0, 17.0], np.nan)
        fail(np.isnan(proto), "unknown protocol")
        decision = cols[7].to_numpy(dtype=object)
        fail(~np.isin(decision, ("A", "D")), "decision is not A or D")
        denied = decision == "D"
        state = np.where(width >= 13, cols[8].to_numpy(dtype=object), "")
        fail((width >= 13) & ~np.isin(state, ("B", "C", "E")), "flow state is not B, C or E")
        cnt = [9, 10, 11, 12]
    direction = cols[6].to_numpy(dtype=object)
    fail(~np.isin(direction, ("I", "O")), "direction is not I or O")
    counters = []
    for c in cnt:
        v, _, ok = fu.parse_ints(cols[c], missing=("",))
        fail(~ok | (v < 0), "packet or byte count is not a count")
        counters.append(v)
    fail((cols[1] == "").to_numpy() | (cols[2] == "").to_numpy(), "missing address")
    bad = why != ""
    if bad.any():
        lines = _tuple_lines(text, tuples)
        fu.quarantine(report, why, lines, excerpts=[f"{p}: {t}" for p, t in zip(paths, tuples)])
    good = ~bad
    report.used(int(good.sum()))
    if not good.any():
        return None
    g = np.flatnonzero(good)
    rec = pd.DataFrame(
        {
            "t": t[g], "src": cols[1].to_numpy(dtype=object)[g], "dst": cols[2].to_numpy(dtype=object)[g],
            "sport": sport[g], "dport": dport[g], "proto": proto[g], "dir": direction[g], "state": np.asarray(state, dtype=object)[g],
            "denied": denied[g], "po": counters[0][g], "bo": counters[1][g], "pi": counters[2][g], "bi": counters[3][g],
            "mac": info["mac"].to_numpy(dtype=object)[g], "rule": info["rule"].to_numpy(dtype=object)[g],
            "resource": info["resource"].to_numpy(dtype=object)[g], "acl": info["acl"].to_numpy(dtype=object)[g],
            "enc": cols[8].to_numpy(dtype=object)[g] if vnet else np.full(len(g), None, dtype=object),
            "pos": np.arange(len(g)),
        }
    )
    return _merge(rec, vnet=vnet)


def _merge(rec: pd.DataFrame, *, vnet: bool) -> pd.DataFrame:
    keys = ["mac", "src", "dst", "sport", "dport", "proto", "dir"]
    k = rec.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    rec = rec.assign(_key=k, _b=rec["state"].isin(["B", ""]).to_numpy() | rec["denied"].to_numpy())
    # B before C/E at the same instant; then a new attempt at every B (or denied tuple) or key change
    rec = rec.assign(_rank=np.where(rec["_b"], 0, 1)).sort_values(["_key", "t", "_rank", "pos"], kind="stable")
    new = rec["_b"].to_numpy() | (rec["_key"].to_numpy() != np.roll(rec["_key"].to_numpy(), 1))
    new[0] = True
    sid = np.cumsum(new)
    g = rec.assign(_sid=sid).groupby("_sid", sort=False)
    first = g.first()
    agg = pd.DataFrame(
        {
            "t0": g["t"].min(), "t1": g["t"].max(),
            "po": g["po"].sum(min_count=1), "bo": g["bo"].sum(min_count=1),
            "pi": g["pi"].sum(min_count=1), "bi": g["bi"].sum(min_count=1),
            "denied": g["denied"].any(), "states": g["state"].sum(),
            "n": g.size(),
        }
    )
    agg = pd.concat([first[["src", "dst", "sport", "dport", "proto", "dir", "mac", "rule", "resource", "acl", "enc"]], agg], axis=1)
    agg = agg.sort_values(["t0"], kind="stable").reset_index(drop=True)
    po, pi = agg["po"].to_numpy(dtype=np.float64), agg["pi"].to_numpy(dtype=np.float64)
    denied = agg["denied"].to_numpy(dtype=bool)
    out = np.select(
        [denied, np.nan_to_num(pi) > 0, (np.nan_to_num(po) > 0) & (np.nan_to_num(pi) == 0)],
        ["denied", "established", "no_reply"],
        "unknown",
    )
    # a begin tuple whose flow never reported counts (B only) stays unknown
    m = len(agg)
    resource = agg["resource"].astype("object").to_numpy()
    sub = pd.Series(resource, dtype=object).astype(str).str.extract(_SUBSCRIPTION, expand=False).str.lower().to_numpy(dtype=object)
    transport = fu.transport_from_number(agg["proto"].to_numpy(dtype=np.int64))
    icmp = np.isin(transport, ("icmp", "icmpv6"))

    def s(values: Any) -> Any:
        values = np.asarray(values, dtype=object)
        return pd.array(np.where(pd.isna(values), None, values), dtype="string")

    t0 = agg["t0"].to_numpy(dtype=np.float64)
    columns: dict[str, Any] = {
        "event_start": pd.to_datetime(np.round(t0 * 1e3).astype(np.int64), unit="ms", utc=True),
        "event_duration_s": agg["t1"].to_numpy(dtype=np.float64) - t0,
        "source_ip": agg["src"].to_numpy(dtype=object),
        "source_port": np.where(icmp, np.nan, agg["sport"].to_numpy(dtype=np.float64)),
        "destination_ip": agg["dst"].to_numpy(dtype=object),
        "destination_port": np.where(icmp, np.nan, agg["dport"].to_numpy(dtype=np.float64)),
        "network_transport": fu.categorical(transport, schema.TRANSPORT_DTYPE),
        "conn_outcome": fu.outcome(out),
        "source_bytes": agg["bo"].to_numpy(dtype=np.float64),
        "destination_bytes": agg["bi"].to_numpy(dtype=np.float64),
        "source_packets": po,
        "destination_packets": pi,
        "policy_action": fu.policy(np.where(denied, "deny", "allow")),
        "cloud_provider": s(np.full(m, "azure", dtype=object)),
        "cloud_account_id": s(sub),
        "network_interface_id": s(agg["mac"].to_numpy(dtype=object)),
        "azure_rule": s(agg["rule"].to_numpy(dtype=object)),
        "azure_direction": s(agg["dir"].to_numpy(dtype=object)),
        "azure_states": s(agg["states"].to_numpy(dtype=object)),
        "azure_tuples": pd.Series(agg["n"].to_numpy()).astype("Int32").array,
        "azure_resource": s(resource),
    }
    if vnet:
        columns["azure_acl_id"] = s(agg["acl"].to_numpy(dtype=object))
        columns["azure_encryption"] = s(agg["enc"].to_numpy(dtype=object))
    return schema.conform(columns, log_format="azure-vnet" if vnet else "azure-nsg")
