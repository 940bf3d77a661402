"""The pcap reader on corrupt captures: never crashes, accounts for every record, strict raises."""

from __future__ import annotations

import struct
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import t1046lab
from t1046lab.exceptions import DataQualityWarning, ParseError
from t1046lab.io import pcap_writer as pw

T0 = 1_700_000_000_000_000_000
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _packets(n: int = 120) -> list[tuple[int, bytes]]:
    out = []
    for i in range(n):
        a, b = f"10.0.{i % 3}.1", f"10.1.0.{i % 50}"
        if i % 4 == 0:
            pkt = pw.ipv4(a, b, pw.udp(30000 + i, 53, b"q" * (i % 17)))
        elif i % 4 == 1:
            pkt = pw.ipv6("2001:db8::1", f"2001:db8::{i:x}", pw.tcp(40000 + i, 443, "S"))
        else:
            pkt = pw.ipv4(a, b, pw.tcp(40000 + i, 1 + i, "S" if i % 2 else "SA", payload=b"p" * (i % 23)))
        out.append((T0 + i * 1_000_000, pw.ether(pkt, vlans=[7] if i % 5 == 0 else [])))
    return out


GENERATED = {
    "classic-le": pw.pcap_bytes(_packets()),
    "classic-be-ns": pw.pcap_bytes(_packets(), byteorder=">", nanosecond=True),
    "pcapng-le": pw.pcapng_bytes(_packets()),
    "pcapng-be": pw.pcapng_bytes(_packets(), byteorder=">", tsresol=9),
}


def _read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return t1046lab.read(path, format="pcap", **kw)


def _check(df) -> None:
    rep = df.attrs["read_report"]
    assert rep.records_seen == rep.records_used + rep.records_skipped + rep.records_quarantined
    assert rep.rows_produced == len(df)
    for q in rep.quarantine:
        assert q["offset"] is not None and q["offset"] >= 0


class _Capture(bytes):
    """Capture bytes with a short repr, so that hypothesis reports stay readable."""

    name = ""

    def __repr__(self) -> str:
        return f"<capture {self.name}, {len(self)} bytes>"


@pytest.fixture(params=sorted(GENERATED) + ["synscan"])
def capture(request, shared):
    data = shared("real/pcap/synscan.pcapng").read_bytes() if request.param == "synscan" else GENERATED[request.param]
    out = _Capture(data)
    out.name = request.param
    return out


@SETTINGS
@given(data=st.data())
def test_truncated_anywhere(tmp_path, capture, data):
    cut = data.draw(st.integers(0, len(capture)))
    path = tmp_path / "t.pcap"
    path.write_bytes(capture[:cut])
    _check(_read(path))


@SETTINGS
@given(data=st.data())
def test_random_byte_flips(tmp_path, capture, data):
    buf = bytearray(capture)
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 255)), min_size=1, max_size=20))
    for pos, value in flips:
        buf[pos] = value
    path = tmp_path / "f.pcap"
    path.write_bytes(bytes(buf))
    _check(_read(path))


@SETTINGS
@given(garbage=st.binary(min_size=1, max_size=3000), where=st.sampled_from(["append", "prepend", "middle"]))
def test_garbage_added(tmp_path, capture, garbage, where):
    if where == "append":
        buf = capture + garbage
    elif where == "prepend":
        buf = garbage + capture
    else:
        mid = len(capture) // 2
        buf = capture[:mid] + garbage + capture[mid:]
    path = tmp_path / "g.pcap"
    path.write_bytes(buf)
    _check(_read(path))


@settings(max_examples=40, deadline=None)
@given(raw=st.binary(min_size=0, max_size=5000), magic=st.sampled_from([b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b""]))
def test_random_bytes_after_a_magic(tmp_path_factory, raw, magic):
    path = tmp_path_factory.mktemp("r") / "r.pcap"
    path.write_bytes(magic + raw)
    _check(_read(path))


def _record_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return offsets


def test_corrupt_record_resynchronises(tmp_path):
    data = bytearray(GENERATED["classic-le"])
    offsets = _record_offsets(bytes(data))
    victim = offsets[40]
    struct.pack_into("<I", data, victim + 8, 0xFFFFFF)  # an impossible captured length
    path = tmp_path / "c.pcap"
    path.write_bytes(bytes(data))
    df = _read(path)
    rep = df.attrs["read_report"]
    _check(df)
    assert rep.records_quarantined == 1 and rep.quarantine[0]["offset"] == victim
    assert "resynchronised after" in rep.quarantine[0]["reason"]
    assert rep.records_used + rep.records_skipped == len(offsets) - 1  # only the corrupt record is lost
    with pytest.raises(ParseError, match=rf"c\.pcap \(byte offset {victim}\)"):
        t1046lab.read(path, strict=True)


def test_record_length_past_end_of_file(tmp_path):
    data = bytearray(GENERATED["classic-le"])
    last = _record_offsets(bytes(data))[-1]
    struct.pack_into("<II", data, last + 8, 60000, 60000)
    path = tmp_path / "l.pcap"
    path.write_bytes(bytes(data))
    rep = _read(path).attrs["read_report"]
    assert rep.quarantine_reasons == {"record length 60000 past end of file": 1}
    assert rep.quarantine[0]["offset"] == last and rep.balanced
    with pytest.raises(ParseError, match=rf"l\.pcap \(byte offset {last}\): record length 60000 past end of file"):
        t1046lab.read(path, strict=True)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_strict_names_file_and_offset_on_truncation(tmp_path, name):
    data = GENERATED[name]
    path = tmp_path / "s.pcap"
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(ParseError, match=r"s\.pcap \(byte offset \d+\)") as err:
        t1046lab.read(path, strict=True)
    assert 0 < err.value.offset < len(data)
    _check(_read(path))


@SETTINGS
@given(data=st.data())
def test_strict_raises_parse_error_or_reads_cleanly(tmp_path, capture, data):
    buf = bytearray(capture)
    for _ in range(data.draw(st.integers(1, 5))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "x.pcap"
    path.write_bytes(bytes(buf))
    lenient = _read(path).attrs["read_report"]
    if lenient.records_quarantined:
        with pytest.raises(ParseError, match=r"x\.pcap.*byte offset \d+"):
            t1046lab.read(path, format="pcap", strict=True)
    else:
        strict = t1046lab.read(path, format="pcap", strict=True).attrs["read_report"]
        assert strict.records_seen == lenient.records_seen


def test_not_a_capture_forced(tmp_path):
    path = tmp_path / "n.pcap"
    path.write_bytes(b"hello, this is text\n" * 10)
    rep = _read(path).attrs["read_report"]
    assert rep.records_quarantined == 1 and rep.balanced
    with pytest.raises(ParseError, match=r"n\.pcap \(byte offset 0\)"):
        t1046lab.read(path, format="pcap", strict=True)
