"""The pcap reader: file variants, link types, protocols and connection assembly."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import pandas as pd
import pytest

import t1046lab
from t1046lab import schema
from t1046lab.exceptions import ParseError
from t1046lab.io import pcap_writer as pw
from t1046lab.io import sniff_format

T0 = 1_700_000_000_123_456_789  # ns; the sub-microsecond digits test nanosecond files
S = 1_000_000_000
A, B, C, D = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"
A6, B6 = "2001:db8::1", "2001:db8::2"


def scenario() -> list[tuple[int, bytes]]:
    """IP packets (no link layer) of a small, fully known exchange; (ts_ns, packet)."""
    p: list[tuple[int, bytes]] = []

    def at(sec: float, pkt: bytes) -> None:
        p.append((T0 + int(sec * S), pkt))

    # 1. TCP handshake, data, FIN: established (A:40000 -> B:22)
    at(0.00, pw.ipv4(A, B, pw.tcp(40000, 22, "S")))
    at(0.01, pw.ipv4(B, A, pw.tcp(22, 40000, "SA")))
    at(0.02, pw.ipv4(A, B, pw.tcp(40000, 22, "A")))
    at(0.03, pw.ipv4(A, B, pw.tcp(40000, 22, "PA", payload=b"x" * 100)))
    at(0.04, pw.ipv4(B, A, pw.tcp(22, 40000, "PA", payload=b"y" * 50)))
    at(0.05, pw.ipv4(A, B, pw.tcp(40000, 22, "FA")))
    # 2. closed port: rejected
    at(1.00, pw.ipv4(A, B, pw.tcp(40001, 23, "S")))
    at(1.01, pw.ipv4(B, A, pw.tcp(23, 40001, "RA")))
    # 3. kernel-style SYN retransmissions on one 5-tuple: one no_reply attempt of 3 packets
    at(2.0, pw.ipv4(A, B, pw.tcp(40002, 24, "S")))
    at(3.0, pw.ipv4(A, B, pw.tcp(40002, 24, "S")))
    at(5.0, pw.ipv4(A, B, pw.tcp(40002, 24, "S")))
    # 4. nmap-style retry from a new source port: merged, the first source port kept
    at(2.5, pw.ipv4(A, B, pw.tcp(50000, 25, "S")))
    at(3.5, pw.ipv4(A, B, pw.tcp(50001, 25, "S")))
    # 5. UDP answered
    at(6.0, pw.ipv4(A, B, pw.udp(53001, 53, b"q" * 30)))
    at(6.01, pw.ipv4(B, A, pw.udp(53, 53001, b"r" * 60)))
    # 6. UDP answered by ICMP port unreachable quoting it
    probe = pw.ipv4(A, B, pw.udp(53002, 161, b"s" * 10))
    at(7.0, probe)
    at(7.01, pw.ipv4(B, A, pw.icmp(3, 3, quote=probe)))
    # 7. UDP unanswered
    at(8.0, pw.ipv4(A, B, pw.udp(53003, 9999)))
    # 8. ping answered, ping unanswered
    at(9.0, pw.ipv4(A, C, pw.icmp(8, 0, ident=7, seq=1)))
    at(9.01, pw.ipv4(C, A, pw.icmp(0, 0, ident=7, seq=1)))
    at(9.5, pw.ipv4(A, D, pw.icmp(8, 0, ident=8, seq=1)))
    # 9. mid-stream TCP without its SYN: partial, A (ephemeral port) is the initiator
    at(10.0, pw.ipv4(B, A, pw.tcp(443, 50500, "PA", payload=b"z" * 20)))
    at(10.1, pw.ipv4(A, B, pw.tcp(50500, 443, "A")))
    # 10. the same 5-tuple probed again long after its RST: a new attempt
    at(11.0, pw.ipv4(A, B, pw.tcp(40100, 23, "S")))
    at(11.01, pw.ipv4(B, A, pw.tcp(23, 40100, "RA")))
    at(200.0, pw.ipv4(A, B, pw.tcp(40100, 23, "S")))
    at(200.01, pw.ipv4(B, A, pw.tcp(23, 40100, "RA")))
    # 11. IPv6: TCP established (SYN with a hop-by-hop header), UDP -> ICMPv6 port unreachable
    at(12.0, pw.ipv6(A6, B6, pw.tcp(41000, 80, "S"), extensions=[(0, b"\x01\x04\0\0\0\0")]))
    at(12.01, pw.ipv6(B6, A6, pw.tcp(80, 41000, "SA")))
    probe6 = pw.ipv6(A6, B6, pw.udp(41001, 5000, b"u"))
    at(13.0, probe6)
    at(13.01, pw.ipv6(B6, A6, pw.icmpv6(1, 4, quote=probe6)))
    # 12. an IPv4 non-first fragment: skipped
    at(14.0, pw.ipv4(A, B, (17, b"f" * 16), frag_offset=1480))
    p.sort(key=lambda x: x[0])
    return p


N_IP = 32  # packets in scenario()
EXPECTED = {
    # (destination_ip, destination_port, transport): (outcome, source_packets, destination_packets)
    (B, 22, "tcp"): ("established", 4, 2),
    (B, 24, "tcp"): ("no_reply", 3, 0),
    (B, 25, "tcp"): ("no_reply", 2, 0),
    (B, 53, "udp"): ("established", 1, 1),
    (B, 161, "udp"): ("icmp_unreachable", 1, 1),
    (B, 9999, "udp"): ("no_reply", 1, 0),
    (C, None, "icmp"): ("established", 1, 1),
    (D, None, "icmp"): ("no_reply", 1, 0),
    (B, 443, "tcp"): ("partial", 1, 1),
    (B6, 80, "tcp"): ("established", 1, 1),
    (B6, 5000, "udp"): ("icmp_unreachable", 1, 1),
}


def _key(row) -> tuple:
    port = None if pd.isna(row.destination_port) else int(row.destination_port)
    return (row.destination_ip, port, row.network_transport)


def check_scenario(df: pd.DataFrame, *, extra_skipped: int = 0) -> None:
    schema.validate(df, check_ips=True)
    assert (df["log_format"] == "pcap").all()
    rep = df.attrs["read_report"]
    assert rep.balanced
    assert rep.records_quarantined == 0
    assert rep.skipped_reasons.get("IPv4 non-first fragment (no transport header)") == 1
    assert rep.records_skipped == 1 + extra_skipped
    assert rep.records_used == N_IP - 1
    got = {}
    for row in df.itertuples():
        got.setdefault(_key(row), []).append(row)
    rejected = got.pop((B, 23, "tcp"))
    # 40001 and 40100 ten seconds later are one attempt retried (like nmap's re-probes);
    # 40100 again 189 s later (more than attempt_timeout) is a new attempt
    assert [r.conn_outcome for r in rejected] == ["rejected"] * 2
    assert [(int(r.source_port), r.source_packets) for r in rejected] == [(40001, 2), (40100, 1)]
    assert set(got) == set(EXPECTED)
    for key, (outcome, spk, dpk) in EXPECTED.items():
        (row,) = got[key]
        assert (row.conn_outcome, row.source_packets, row.destination_packets) == (outcome, spk, dpk), key
        assert row.source_ip == (A6 if ":" in key[0] else A)
    ssh = got[(B, 22, "tcp")][0]
    assert ssh.source_port == 40000
    assert ssh.tcp_flags == 0x02 | 0x10 | 0x08 | 0x01  # OR of the initiator's flags
    assert ssh.source_bytes == 40 * 4 + 100 and ssh.destination_bytes == 40 * 2 + 50
    assert ssh.event_duration_s == pytest.approx(0.05)
    assert got[(B, 25, "tcp")][0].source_port == 50000
    assert got[(B, 24, "tcp")][0].event_duration_s == pytest.approx(3.0)
    assert got[(B, 161, "udp")][0].icmp_type == 3 and got[(B, 161, "udp")][0].icmp_code == 3
    assert got[(B6, 5000, "udp")][0].icmp_type == 1 and got[(B6, 5000, "udp")][0].icmp_code == 4
    ping = got[(C, None, "icmp")][0]
    assert pd.isna(ping.source_port) and ping.icmp_type == 8 and ping.icmp_code == 0
    assert pd.isna(ssh.icmp_type)
    assert got[(B, 443, "tcp")][0].source_port == 50500
    assert df["event_start"].is_monotonic_increasing


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_classic_pcap_byte_orders_and_resolutions(tmp_path, byteorder, nanosecond):
    pkts = [(t, pw.ether(p)) for t, p in scenario()]
    path = _write(tmp_path, "s.pcap", pw.pcap_bytes(pkts, byteorder=byteorder, nanosecond=nanosecond))
    assert sniff_format(path) == "pcap"
    df = t1046lab.read(path)
    check_scenario(df)
    first = df["event_start"].iloc[0].value
    assert first == (T0 if nanosecond else T0 // 1000 * 1000)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("tsresol", [6, 9, 0x80 | 30])
def test_pcapng_byte_orders_and_tsresol(tmp_path, byteorder, tsresol):
    pkts = [(t, pw.ether(p)) for t, p in scenario()]
    nrb = (4, b"\0\0\0\0")  # an (empty) name resolution block: skipped and counted
    data = pw.pcapng_bytes(pkts, byteorder=byteorder, tsresol=tsresol, extra_blocks=[nrb])
    path = _write(tmp_path, "s.pcapng", data)
    df = t1046lab.read(path, format="pcap")
    check_scenario(df, extra_skipped=1)
    assert df.attrs["read_report"].skipped_reasons["pcapng block type 0x4 (not a packet)"] == 1
    first = df["event_start"].iloc[0].value
    expected = {6: T0 // 1000 * 1000, 9: T0}.get(tsresol)
    if expected is None:
        assert abs(first - T0) <= 1
    else:
        assert first == expected


@pytest.mark.parametrize(
    "linktype,wrap",
    [
        (pw.LINKTYPE_ETHERNET, lambda p: pw.ether(p, vlans=[100])),
        (pw.LINKTYPE_ETHERNET, lambda p: pw.ether(p, vlans=[10, 20], qinq=True)),
        (pw.LINKTYPE_ETHERNET, lambda p: pw.ether(p, vlans=[10, 20, 30])),
        (pw.LINKTYPE_LINUX_SLL, pw.sll),
        (pw.LINKTYPE_LINUX_SLL2, pw.sll2),
        (pw.LINKTYPE_RAW, pw.raw),
        (pw.LINKTYPE_NULL, pw.null),
        (pw.LINKTYPE_NULL, lambda p: pw.null(p, byteorder=">")),
    ],
    ids=["vlan", "qinq", "3-tags", "sll", "sll2", "raw", "null-le", "null-be"],
)
def test_link_types(tmp_path, linktype, wrap):
    pkts = [(t, wrap(p)) for t, p in scenario()]
    path = _write(tmp_path, "s.pcap", pw.pcap_bytes(pkts, linktype=linktype))
    check_scenario(t1046lab.read(path))


def test_pcapng_interfaces_with_their_own_link_types(tmp_path):
    # IPv4 on a LINKTYPE_IPV4 interface, IPv6 on a LINKTYPE_IPV6 one, nanosecond resolution on the second
    pkts = [(t, p, 0 if p[0] >> 4 == 4 else 1) for t, p in scenario()]
    data = pw.pcapng_bytes(pkts, linktypes=[pw.LINKTYPE_IPV4, pw.LINKTYPE_IPV6], tsresol=[6, 9])
    check_scenario(t1046lab.read(_write(tmp_path, "s.pcapng", data)))


def test_simple_packet_blocks_take_the_previous_time(tmp_path):
    pkts = [(t, pw.ether(p)) for t, p in scenario()]
    data = pw.pcapng_bytes(pkts, simple=True)
    df = t1046lab.read(_write(tmp_path, "s.pcapng", data))
    rep = df.attrs["read_report"]
    assert rep.balanced and rep.records_used == N_IP - 1
    assert any("simple packet blocks" in n for n in rep.notes)


def test_gzip_and_chunked_reading(tmp_path):
    pkts = [(t, pw.ether(p)) for t, p in scenario()]
    path = tmp_path / "s.pcap.gz"
    path.write_bytes(gzip.compress(pw.pcap_bytes(pkts)))
    check_scenario(t1046lab.read(path))
    chunks = list(t1046lab.read(path, chunksize=5))
    assert all(len(c) <= 5 for c in chunks)
    assert sum(len(c) for c in chunks) == len(t1046lab.read(path))


def test_non_ip_frames_are_skipped_by_kind(tmp_path):
    arp = pw.ether(b"\0" * 28, ethertype=0x0806, dst="ff:ff:ff:ff:ff:ff")
    lldp = pw.ether(b"\0" * 40, ethertype=0x88CC)
    syn = pw.ether(pw.ipv4(A, B, pw.tcp(1, 2, "S")))
    path = _write(tmp_path, "s.pcap", pw.pcap_bytes([(T0, arp), (T0 + 1, lldp), (T0 + 2, arp), (T0 + 3, syn)]))
    df = t1046lab.read(path)
    rep = df.attrs["read_report"]
    assert rep.skipped_reasons == {"not IP: ARP": 2, "not IP: LLDP": 1}
    assert len(df) == 1 and rep.records_used == 1 and rep.balanced


def test_multicast_without_answer_is_unknown_not_a_failure(tmp_path):
    mdns = pw.ether(pw.ipv4(A, "224.0.0.251", pw.udp(5353, 5353, b"m")))
    path = _write(tmp_path, "s.pcap", pw.pcap_bytes([(T0, mdns)]))
    assert t1046lab.read(path)["conn_outcome"].tolist() == ["unknown"]


def test_unknown_link_type_is_quarantined_with_offset(tmp_path):
    path = _write(tmp_path, "s.pcap", pw.pcap_bytes([(T0, b"\0" * 30)], linktype=147))
    with pytest.warns(t1046lab.exceptions.DataQualityWarning):
        df = t1046lab.read(path)
    rep = df.attrs["read_report"]
    assert rep.quarantine_reasons == {"unknown link type 147": 1}
    assert rep.quarantine[0]["offset"] == 24 and rep.balanced
    with pytest.raises(ParseError, match=r"s\.pcap \(byte offset 24\): unknown link type 147"):
        t1046lab.read(path, strict=True)


def test_truncated_ip_header_is_quarantined(tmp_path):
    good = pw.ether(pw.ipv4(A, B, pw.tcp(1, 2, "S")))
    bad = pw.ether(pw.ipv4(A, B, pw.tcp(1, 2, "S")))[:14 + 12]
    path = _write(tmp_path, "s.pcap", pw.pcap_bytes([(T0, good), (T0 + 1, bad)]))
    with pytest.warns(t1046lab.exceptions.DataQualityWarning):
        rep = t1046lab.read(path).attrs["read_report"]
    assert rep.quarantine_reasons == {"truncated IPv4 header": 1}
    assert rep.quarantine[0]["offset"] == 24 + 16 + len(good)


def test_synscan_sample(shared):
    """nmap SYN scan of 1,000 ports: retransmissions (from a new source port) merged."""
    df = t1046lab.read(shared("real/pcap/synscan.pcapng"))
    schema.validate(df)
    assert len(df) == 1000
    assert set(df["source_ip"]) == {"172.16.0.8"} and set(df["destination_ip"]) == {"64.13.134.52"}
    assert df["destination_port"].nunique() == 1000
    assert (df["network_transport"] == "tcp").all()
    counts = df["conn_outcome"].value_counts()
    assert (counts["established"], counts["rejected"], counts["no_reply"]) == (3, 4, 993)
    assert sorted(df.loc[df["conn_outcome"] == "established", "destination_port"]) == [22, 53, 80]
    assert sorted(df.loc[df["conn_outcome"] == "rejected", "destination_port"]) == [25, 70, 113, 31337]
    rep = df.attrs["read_report"]
    assert rep.records_seen == 2011 and rep.records_used == 2011 and rep.balanced
    # 993 filtered ports were each probed twice
    filtered = df[df["conn_outcome"] == "no_reply"]
    assert (filtered["source_packets"] == 2).all()
    assert int(df["source_packets"].sum()) == 1994


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_packet_counts_agree_with_tshark(tmp_path):
    pkts = [(t, pw.ether(p, vlans=[5])) for t, p in scenario()]
    path = _write(tmp_path, "s.pcapng", pw.pcapng_bytes(pkts, byteorder=">", tsresol=9))
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.flags", "-Y", "tcp"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    df = t1046lab.read(path)
    tcp = df[df["network_transport"] == "tcp"]
    assert int(tcp["source_packets"].sum() + tcp["destination_packets"].sum()) == len(out)


def test_attempt_timeout_option(tmp_path):
    pkts = [(t, pw.ether(p)) for t, p in scenario()]
    path = _write(tmp_path, "s.pcap", pw.pcap_bytes(pkts))
    df = t1046lab.read(path, attempt_timeout=5.0)
    rejected = df[(df["destination_port"] == 23)]
    # 10 s between the two refused tries is now more than the timeout: three attempts
    assert rejected["source_packets"].tolist() == [1, 1, 1]
    # kernel retransmissions 1 s and 2 s apart still merge
    assert df.loc[df["destination_port"] == 24, "source_packets"].tolist() == [3]
    with pytest.raises(ValueError, match="attempt_timeout"):
        t1046lab.read(path, attempt_timeout=0)
    with pytest.raises(TypeError, match="unknown option"):
        t1046lab.read(path, attempt_timeout=5.0, frobnicate=1)


def _repeated(n: int) -> list[tuple[int, bytes]]:
    one = scenario()
    return [(t + k * 1000 * S, pw.ether(p)) for k in range(n) for t, p in one]


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_windows_do_not_change_the_result(tmp_path, fmt):
    pkts = _repeated(120)  # the scenario every 1,000 s: about 340 KB
    data = pw.pcap_bytes(pkts) if fmt == "pcap" else pw.pcapng_bytes(pkts)
    path = _write(tmp_path, "big." + fmt, data)
    whole = t1046lab.read(path)
    from t1046lab.io import pcap as pcap_module

    small = pcap_module._MIN_WINDOW
    try:
        pcap_module._MIN_WINDOW = 64 << 10  # force many windows over this small file
        parts = list(t1046lab.read(path, chunksize=100))
    finally:
        pcap_module._MIN_WINDOW = small
    assert len(parts) > 1
    rep = parts[-1].attrs["read_report"]
    assert rep.balanced and rep.records_seen == len(pkts) and rep.records_quarantined == 0
    for p in parts:
        p.attrs = {}
    joined = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(joined, whole.set_axis(range(len(whole))), check_like=False)
    assert len(whole) == 120 * (len(EXPECTED) + 2)


def test_clock_jump_is_followed_not_quarantined(tmp_path):
    pkts = [(t, pw.ether(p)) for t, p in scenario()]
    later = [(t + 3 * 365 * 86400 * S, p) for t, p in pkts]
    path = _write(tmp_path, "j.pcap", pw.pcap_bytes(pkts + later))
    df = t1046lab.read(path)
    rep = df.attrs["read_report"]
    assert rep.records_quarantined == 0 and rep.records_seen == 2 * len(pkts)
    assert len(df) == 2 * (len(EXPECTED) + 2)


def test_pcapng_sections_in_both_byte_orders(tmp_path):
    pkts = [(t, pw.ether(p)) for t, p in scenario()]
    first, second = pkts[:15], pkts[15:]
    data = pw.pcapng_bytes(first, byteorder="<", tsresol=9) + pw.pcapng_bytes(second, byteorder=">")
    df = t1046lab.read(_write(tmp_path, "two.pcapng", data))
    rep = df.attrs["read_report"]
    assert rep.records_quarantined == 0 and rep.records_seen == len(pkts)
    check_scenario(df)
