"""Property tests: the line-format readers on corrupted real files.

Real inputs (a slice of the Stratosphere conn.log, the Zeek JSON samples, and a canonical
CSV written from the Stratosphere slice) are damaged by hypothesis: truncated, bytes
inserted or overwritten, a line given the wrong number of fields, bad UTF-8, a header line
damaged, a value of the wrong type. Whatever the damage:

- non-strict reading never raises, returns a valid canonical frame, and accounts for every
  record: ``rows_produced + records_quarantined + records_skipped == records_seen`` and
  ``records_used == rows_produced``;
- where the damage is confined to one line, every data line is still seen (nothing after
  the damage is lost) and the damaged line is the one quarantined;
- ``strict=True`` raises :class:`ParseError` naming the file and the first bad line, or,
  when nothing was quarantined, returns the same frame.
"""

from __future__ import annotations

import gzip
import json
import tempfile
import warnings
from pathlib import Path

import pandas as pd
import pytest
from conftest import shared_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from t1046lab import schema
from t1046lab.exceptions import DataQualityWarning, ParseError
from t1046lab.io import read
from t1046lab.io.canonical import write_canonical

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
KINDS = ("truncate", "insert", "overwrite", "fields", "utf8", "header", "type")
LOCAL_KINDS = ("fields", "utf8", "type")  # damage confined to one line


# --- the real inputs ------------------------------------------------------------------------


def _tsv_base() -> bytes:
    lines = shared_file("real/stratosphere-008/conn.log.labeled").read_bytes().split(b"\n")
    return b"\n".join(lines[:8] + lines[8:208]) + b"\n"  # the header and 200 real records


def _json_base() -> bytes:
    a = shared_file("formats/zeek_conn_portscan_vertical.json").read_bytes()
    b = shared_file("formats/zeek_conn.json").read_bytes()
    return a.rstrip(b"\n") + b"\n" + b


def _csv_base() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "conn.log"
        src.write_bytes(_tsv_base())
        out = Path(tmp) / "conn.csv"
        write_canonical(read(src), out)
        return out.read_bytes()


# format name, base bytes, field separator, the fields a reader checks (name -> position), header lines
def _tsv_case():
    base = _tsv_base()
    fields = base.split(b"\n")[6].decode().split("\t")[1:]
    checked = ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "duration", "orig_bytes", "resp_bytes", "conn_state", "orig_pkts", "resp_pkts"]
    return "zeek", base, b"\t", [fields.index(f) for f in checked]


def _csv_case():
    base = _csv_base()
    header = base.split(b"\n")[0].decode().split(",")
    checked = ["event_start", "event_duration_s", "source_port", "destination_port", "network_transport", "conn_outcome", "source_bytes", "destination_packets"]
    return "canonical", base, b",", [header.index(f) for f in checked]


CASES = {"zeek": _tsv_case, "canonical": _csv_case}
_cache: dict[str, tuple] = {}


def _case(name: str):
    if name not in _cache:
        _cache[name] = CASES[name]() if name in CASES else ("zeek-json", _json_base(), None, None)
    return _cache[name]


def _is_header(line: bytes, fmt: str, number: int) -> bool:
    if fmt == "zeek":
        return line.startswith(b"#")
    if fmt == "canonical":
        return number == 1
    return False


def _data_lines(data: bytes, fmt: str) -> list[int]:
    """Line numbers of the records, counted the plain way."""
    out = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if fmt == "zeek-json":
            line = line.strip()
        if line and not _is_header(line, fmt, number):
            out.append(number)
    if data.endswith(b"\n") and out and out[-1] == len(data.split(b"\n")):
        out.pop()
    return out


# --- corruption --------------------------------------------------------------------------------


@st.composite
def corruptions(draw, fmt: str):
    _, base, sep, checked = _case(fmt)
    kind = draw(st.sampled_from(KINDS))
    lines = base.split(b"\n")
    data_lines = [i for i, line in enumerate(lines) if line and not _is_header(line, fmt, i + 1)]
    header_lines = [i for i, line in enumerate(lines) if line and _is_header(line, fmt, i + 1)] or [0]
    target = None
    must_reject = kind in ("fields", "utf8")
    if kind == "truncate":
        data = base[: draw(st.integers(0, len(base)))]
    elif kind == "insert":
        at = draw(st.integers(0, len(base)))
        data = base[:at] + draw(st.binary(min_size=1, max_size=24)) + base[at:]
    elif kind == "overwrite":
        buf = bytearray(base)
        for _ in range(draw(st.integers(1, 8))):
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
        data = bytes(buf)
    else:
        target = draw(st.sampled_from(header_lines if kind == "header" else data_lines))
        line = lines[target]
        if kind == "header":
            buf = bytearray(line)
            for _ in range(draw(st.integers(1, 4))):
                buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
            line = bytes(buf)
        elif kind == "utf8":
            at = draw(st.integers(0, len(line)))
            line = line[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c"])) + line[at:]
        elif kind == "fields" and fmt == "zeek-json":
            line = line[: draw(st.integers(1, len(line) - 1))]  # a cut-off object
        elif kind == "fields":
            parts = line.split(sep)
            if draw(st.booleans()):
                del parts[draw(st.integers(0, len(parts) - 1))]
            else:
                parts.insert(draw(st.integers(0, len(parts))), b"extra")
            line = sep.join(parts)
        elif kind == "type" and fmt == "zeek-json":
            record = json.loads(line)
            key = draw(st.sampled_from(sorted(k for k in ("ts", "id.orig_p", "id.resp_p", "id.orig_h", "duration", "orig_bytes", "resp_pkts", "conn_state", "proto") if k in record)))
            value = draw(st.sampled_from(["x1", [1], {"a": 1}, True, -5, 1e300, None]))
            record[key] = value
            must_reject = _must_reject(key, value, fmt)
            line = json.dumps(record).encode()
        else:  # a value of the wrong type in a field the reader checks
            parts = line.split(sep)
            where = draw(st.sampled_from(checked))
            value = draw(st.sampled_from([b"x1", b"1.5.5", b"99999999999", b"-3", b"1e400", b"nan", b"-"]))
            parts[where] = value
            must_reject = _must_reject(_field_name(fmt, where), value.decode(), fmt)
            line = sep.join(parts)
        data = b"\n".join(lines[:target] + [line] + lines[target + 1 :])
    return kind, target, must_reject, data


def _field_name(fmt: str, position: int) -> str:
    base = _case(fmt)[1]
    header = base.split(b"\n")[6 if fmt == "zeek" else 0].decode()
    names = header.split("\t")[1:] if fmt == "zeek" else header.split(",")
    return names[position]


def _must_reject(field: str, value, fmt: str) -> bool:
    """Would every careful reader reject this value in this field? Text that is not a
    number, JSON arrays, objects and booleans: always. Huge numbers: in ports and times
    (a 3,000-year duration or a huge byte count is absurd but representable). Negative
    numbers: everywhere but timestamps (1969 is representable). Zeek's unset marker ("-",
    JSON null): only in the fields a record cannot do without (it is garbage in a CSV)."""
    if value is None or value == "-":
        return fmt == "canonical" or field in ("ts", "id.orig_h", "id.resp_h", "proto")
    if isinstance(value, (list, dict, bool)) or value in ("x1", "1.5.5", "1e400", "nan"):
        return True
    big = value in (1e300, "99999999999")
    port_or_time = field in ("id.orig_p", "id.resp_p", "source_port", "destination_port", "ts")
    if big:
        return port_or_time
    return field not in ("ts", "event_start")


# --- the properties ------------------------------------------------------------------------


def _quiet_read(path: Path, fmt: str, **kw) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return read(path, format=fmt, **kw)


def _check(fmt: str, kind: str, target: int | None, must_reject: bool, data: bytes, compress: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("input.gz" if compress else "input")
        path.write_bytes(gzip.compress(data) if compress else data)
        df = _quiet_read(path, fmt)
        report = df.attrs["read_report"]
        assert report.rows_produced + report.records_quarantined + report.records_skipped == report.records_seen
        assert report.records_used == report.rows_produced == len(df)
        schema.validate(df)
        q = report.quarantine_frame()
        if kind in LOCAL_KINDS:
            assert report.records_seen == len(_data_lines(data, fmt)), "records after the damage were lost"
            if must_reject:
                assert target + 1 in set(q["line"]), f"line {target + 1} ({kind}) was not quarantined"
        if report.records_quarantined:
            with pytest.raises(ParseError) as info:
                read(path, format=fmt, strict=True)
            err = info.value
            assert err.path == str(path) and str(path) in str(err)
            first = int(q["line"].min())
            assert err.line == first and f":{first}:" in str(err)
        else:
            strict = read(path, format=fmt, strict=True)
            pd.testing.assert_frame_equal(strict, df)


@pytest.mark.slow
@SETTINGS
@given(st.data())
def test_zeek_tsv_survives_corruption(data):
    _check("zeek", *data.draw(corruptions("zeek")))


@pytest.mark.slow
@SETTINGS
@given(st.data())
def test_zeek_json_survives_corruption(data):
    _check("zeek-json", *data.draw(corruptions("zeek-json")))


@pytest.mark.slow
@SETTINGS
@given(st.data())
def test_canonical_csv_survives_corruption(data):
    _check("canonical", *data.draw(corruptions("canonical")))


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fmt=st.sampled_from(["zeek", "zeek-json", "canonical"]), cut=st.floats(0.05, 0.95))
def test_truncated_gzip_is_reported_not_fatal(fmt, cut):
    base = _case(fmt)[1]
    packed = gzip.compress(base)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.gz"
        path.write_bytes(packed[: max(11, int(len(packed) * cut))])
        df = _quiet_read(path, fmt)
        report = df.attrs["read_report"]
        assert report.balanced and report.records_used == report.rows_produced == len(df)
        assert any("truncated" in reason for reason in report.quarantine_reasons)
        assert len(df) < len(_data_lines(base, fmt))
        with pytest.raises(ParseError) as info:
            read(path, format=fmt, strict=True)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["zeek", "zeek-json", "canonical"])
def test_undamaged_inputs_read_clean(fmt):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input"
        base = _case(fmt)[1]
        path.write_bytes(base)
        df = read(path, format=fmt)
        report = df.attrs["read_report"]
        assert report.records_quarantined == 0 and report.records_seen == len(df) == len(_data_lines(base, fmt))


def test_canonical_csv_values_a_cast_cannot_hold_are_quarantined():
    """Found by the property tests: each of these used to raise out of read()."""
    base = _case("canonical")[1]
    lines = base.split(b"\n")
    header = lines[0].decode().split(",")
    damage = {1: ("event_start", b"-3"), 2: ("source_port", b"99999999999"), 3: ("source_bytes", b"-3"), 4: ("event_duration_s", b"inf"), 5: ("destination_packets", b"1.5")}
    for row, (column, value) in damage.items():
        parts = lines[row].split(b",")
        parts[header.index(column)] = value
        lines[row] = b",".join(parts)
    lines[6] = lines[6][:40] + b"\xff" + lines[6][40:]  # bad UTF-8 no longer ends the file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "conn.csv"
        path.write_bytes(b"\n".join(lines))
        df = _quiet_read(path, "canonical")
        report = df.attrs["read_report"]
        assert sorted(report.quarantine_frame()["line"]) == [2, 3, 4, 5, 6, 7]
        assert report.records_seen == len(_data_lines(base, "canonical")) and report.balanced
        schema.validate(df)
        with pytest.raises(ParseError) as info:
            read(path, format="canonical", strict=True)
        assert info.value.line == 2 and "event_start is out of range" in str(info.value)
