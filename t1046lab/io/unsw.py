"""UNSW-NB15 CSV (``format="unsw"``): the raw four-file set and the training/testing sets.

- Raw ``UNSW-NB15_{1..4}.csv``: 49 columns, no header (names in ``NUSW-NB15_features.csv``,
  listed in :data:`RAW_COLUMNS`); Argus-style ``state``; ``Stime`` in epoch seconds; ports
  may be hexadecimal (``0x000b``) or ``-``. A header line starting ``srcip,`` is accepted.
- ``UNSW_NB15_training-set.csv`` / ``testing-set.csv``: 45 columns with a header, and no
  addresses, ports or times. Rows keep their counts, outcome and label; ``event_start`` is
  a placeholder (``start=``, default the epoch) and the report says so.

Labels: ``attack_cat`` ``Reconnaissance`` (UNSW's port scans, host sweeps and probes) ->
scan with no scan type (the dataset does not say which); empty / ``Normal`` with
``Label`` 0 -> benign / normal; every other attack category -> benign / ``other_attack``
(not service discovery; a negative for T1046). ``scenario`` is ``unsw:<attack_cat>``.

Outcome from the Argus ``state``: CON, FIN, ACC, CLO established; INT and REQ no_reply;
RST rejected when the target sent at most one packet and no payload, else established;
URH, URN, URP icmp_unreachable; ECO/ECR and others established when the target sent
packets, else no_reply; PAR partial; ``no`` / ``-`` unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from . import register
from ._flowcsv import Checker, int_array, iter_records, keep, port_array
from ._report import ReadReport
from ._source import PathLike

__all__ = ["RAW_COLUMNS", "read_unsw", "unsw_labels"]

RAW_COLUMNS = ["srcip", "sport", "dstip", "dsport", "proto", "state", "dur", "sbytes", "dbytes", "sttl", "dttl", "sloss", "dloss", "service", "Sload", "Dload", "Spkts", "Dpkts", "swin", "dwin", "stcpb", "dtcpb", "smeansz", "dmeansz", "trans_depth", "res_bdy_len", "Sjit", "Djit", "Stime", "Ltime", "Sintpkt", "Dintpkt", "tcprtt", "synack", "ackdat", "is_sm_ips_ports", "ct_state_ttl", "ct_flw_http_mthd", "is_ftp_login", "ct_ftp_cmd", "ct_srv_src", "ct_srv_dst", "ct_dst_ltm", "ct_src_ltm", "ct_src_dport_ltm", "ct_dst_sport_ltm", "ct_dst_src_ltm", "attack_cat", "Label"]
_TRANSPORTS = {"tcp": "tcp", "udp": "udp", "icmp": "icmp", "ipv6-icmp": "icmpv6"}
_ESTABLISHED = {"CON", "FIN", "ACC", "CLO"}
_NO_REPLY = {"INT", "REQ"}
_UNREACHABLE = {"URH", "URN", "URP"}


def _sniff(head: bytes, name: str) -> bool:
    first = head.split(b"\n", 1)[0].strip()
    if first.lower().startswith(b"srcip,sport,dstip") or first.startswith(b"id,dur,proto,service,state,spkts"):
        return True
    fields = first.split(b",")
    return len(fields) == len(RAW_COLUMNS) and fields[4].isalpha() and fields[28].strip().isdigit() and fields[5].isalpha()


@register("unsw", sniff=_sniff, priority=40, description="UNSW-NB15 CSV (raw four-file set or training/testing set), with labels")
def read_unsw(path: PathLike, report: ReadReport, *, chunksize: int, start: str | None = None, **options: Any) -> Iterator[pd.DataFrame]:
    """UNSW-NB15 CSV (raw four-file set or training/testing set), with labels."""
    if options:
        raise TypeError(f"read_unsw got unexpected options {sorted(options)}")
    from ._source import read_head

    first = read_head(path, 4096).split(b"\n", 1)[0].strip().lstrip(b"\xef\xbb\xbf")
    partitioned = first.startswith(b"id,")
    has_header = partitioned or first.lower().startswith(b"srcip,")
    placeholder = pd.Timestamp(start if start is not None else 0)
    placeholder = placeholder.tz_localize("UTC") if placeholder.tzinfo is None else placeholder.tz_convert("UTC")
    if partitioned:
        report.note(
            "training/testing-set layout has no addresses, ports or times: source_ip, destination_ip and "
            "ports are missing and event_start is a placeholder"
        )
    yielded = False
    for header, fields, lines in iter_records(
        path, report, width=None if has_header else len(RAW_COLUMNS), chunksize=chunksize, header=has_header
    ):
        names = [h.strip() for h in header] if header else list(RAW_COLUMNS)
        if not partitioned and has_header and [n.lower() for n in names] != [n.lower() for n in RAW_COLUMNS]:
            raise schema.SchemaError([f"{path}: header does not match the UNSW-NB15 raw columns"])
        fields.columns = names if partitioned else list(RAW_COLUMNS)
        yield _chunk(fields, lines, report, partitioned, placeholder)
        yielded = True
    if not yielded:
        yield schema.empty_frame(schema.LABEL_COLUMNS)


def _chunk(fields: pd.DataFrame, lines: np.ndarray, report: ReadReport, partitioned: bool, placeholder: pd.Timestamp) -> pd.DataFrame:
    check = Checker(len(fields), lines, fields)
    lower = {c.lower(): c for c in fields.columns}

    def num(name: str, **kw: Any) -> pd.Series:
        return check.number(fields[lower[name.lower()]], name, **kw)

    dur = num("dur", allow_empty=False)
    sbytes, dbytes = num("sbytes", allow_empty=False), num("dbytes", allow_empty=False)
    spkts, dpkts = num("spkts", allow_empty=False), num("dpkts", allow_empty=False)
    proto_text = fields[lower["proto"]].str.strip().str.lower()
    proto = proto_text.map(_TRANSPORTS).fillna("other")
    icmp = proto.isin(["icmp", "icmpv6"])
    if partitioned:
        start = pd.Series(placeholder, index=fields.index)
        src_ip = dst_ip = pd.Series(pd.NA, index=fields.index, dtype="string")
        sport = dport = pd.Series(np.nan, index=fields.index)
    else:
        stime = num("Stime", allow_empty=False)
        start = pd.to_datetime(stime, unit="s", utc=True, errors="coerce")
        src_ip = fields[lower["srcip"]].str.strip().astype("string")
        dst_ip = fields[lower["dstip"]].str.strip().astype("string")
        check.fail((src_ip == "") | (dst_ip == ""), "empty address")
        sport, dport = num("sport", integer=True), num("dsport", integer=True)
        check.fail(((sport < 0) | (sport > 65535) | (dport < 0) | (dport > 65535)) & ~icmp, "port outside 0-65535")
    label_value = num("label", allow_empty=False)
    check.report(report)
    state = fields[lower["state"]].str.strip().str.upper()
    answered = dpkts > 0
    outcome = np.select(
        [
            state.isin(_ESTABLISHED),
            state.isin(_NO_REPLY),
            (state == "RST") & (dpkts <= 1) & (dbytes <= 60),
            state == "RST",
            state.isin(_UNREACHABLE),
            state == "PAR",
            state.isin(["NO", "-", ""]),
        ],
        ["established", "no_reply", "rejected", "established", "icmp_unreachable", "partial", "unknown"],
        np.where(answered, "established", "no_reply"),
    )
    label, scan_type, category, scenario = unsw_labels(fields[lower["attack_cat"]], label_value)
    out = {
        "event_start": start,
        "event_duration_s": dur,
        "source_ip": src_ip,
        "source_port": port_array(sport.where(~icmp)),
        "destination_ip": dst_ip,
        "destination_port": port_array(dport.where(~icmp)),
        "network_transport": proto,
        "conn_outcome": outcome,
        "source_bytes": int_array(sbytes),
        "destination_bytes": int_array(dbytes),
        "source_packets": int_array(spkts),
        "destination_packets": int_array(dpkts),
        "label": label,
        "scan_type": scan_type,
        "benign_category": category,
        "scenario": scenario,
        "unsw_state": state.astype("string"),
        "unsw_service": fields[lower["service"]].str.strip().astype("string"),
    }
    return schema.conform(keep(out, check.ok), log_format="unsw", n=int(check.ok.sum()))


def unsw_labels(attack_cat: pd.Series, label_value: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Map ``attack_cat`` / ``Label`` to (label, scan_type, benign_category, scenario)."""
    cat = attack_cat.astype(str).str.strip()
    normal = (cat.isin(["", "Normal", "normal", "-"])) & (label_value.fillna(0) == 0)
    scan = cat.str.lower() == "reconnaissance"
    label = pd.Series(np.where(scan, "scan", "benign"), index=cat.index, dtype="string")
    scan_type = pd.Series(pd.NA, index=cat.index, dtype="string")
    category = pd.Series(np.where(scan, None, np.where(normal, "normal", "other_attack")), index=cat.index, dtype="string")
    scenario = ("unsw:" + cat.where(cat != "", "Normal")).astype("string")
    return label, scan_type, category, scenario
