"""Generate the bundled synthetic capture: a workstation's normal traffic plus three scans.

Run from the repository root::

    python data/synthetic-capture/make.py --random-state 0

It writes ``data/synthetic-capture/synthetic-capture.pcap`` (classic pcap, Ethernet,
microsecond timestamps) and ``activities.csv`` (one row per activity: actor address,
label, scan type, start and end) with :mod:`t1046lab.io.pcap_writer`. The same
``--random-state`` gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from t1046lab.io import pcap_writer as pw

T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z, ns
S = 10**9
GATEWAY = "192.168.56.1"  # router, DNS and NTP server
WORKSTATION = "192.168.56.10"
SERVER = "192.168.56.20"  # the scan target: ssh, http, https open; a host firewall drops SMB
SCANNER = "192.168.56.66"
LIVE = [GATEWAY, WORKSTATION, SERVER, "192.168.56.30", "192.168.56.40", SCANNER]
INTERNET = ["203.0.113.10", "203.0.113.25", "198.51.100.7", "198.51.100.80", "192.0.2.44"]
MAC = {ip: f"02:00:00:00:38:{int(ip.split('.')[-1]):02x}" for ip in LIVE}


class Capture:
    def __init__(self) -> None:
        self.packets: list[tuple[int, bytes]] = []

    def ip(self, t: float, src: str, dst: str, l4: tuple[int, bytes]) -> bytes:
        pkt = pw.ipv4(src, dst, l4)
        on_lan = src.startswith("192.168.56.")
        smac = MAC.get(src, MAC[GATEWAY]) if on_lan else MAC[GATEWAY]
        dmac = MAC.get(dst, MAC[GATEWAY]) if dst.startswith("192.168.56.") else MAC[GATEWAY]
        if dst.startswith("224."):
            dmac = "01:00:5e:00:00:fb"
        self.packets.append((T0 + int(t * S), pw.ether(pkt, src=smac, dst=dmac)))
        return pkt

    def arp(self, t: float, src: str, target: str) -> None:
        body = bytes.fromhex("0001080006040001") + bytes.fromhex(MAC[src].replace(":", "")) + bytes(map(int, src.split("."))) \
            + b"\0" * 6 + bytes(map(int, target.split(".")))
        self.packets.append((T0 + int(t * S), pw.ether(body, src=MAC[src], dst="ff:ff:ff:ff:ff:ff", ethertype=0x0806)))

    def tcp_session(self, t: float, c: str, s: str, sport: int, dport: int, up: int, down: int, rng) -> float:
        rtt = float(rng.uniform(0.002, 0.04))
        self.ip(t, c, s, pw.tcp(sport, dport, "S", seq=1000))
        self.ip(t + rtt, s, c, pw.tcp(dport, sport, "SA", seq=5000, ack=1001))
        self.ip(t + rtt + 0.0002, c, s, pw.tcp(sport, dport, "A", seq=1001, ack=5001))
        self.ip(t + rtt + 0.001, c, s, pw.tcp(sport, dport, "PA", seq=1001, ack=5001, payload=b"\x16" * up))
        self.ip(t + 2 * rtt, s, c, pw.tcp(dport, sport, "PA", seq=5001, ack=1001 + up, payload=b"\x17" * down))
        end = t + 2 * rtt + float(rng.uniform(0.05, 2.0))
        self.ip(end, c, s, pw.tcp(sport, dport, "FA", seq=1001 + up, ack=5001 + down))
        self.ip(end + rtt, s, c, pw.tcp(dport, sport, "FA", seq=5001 + down, ack=1002 + up))
        self.ip(end + rtt + 0.0002, c, s, pw.tcp(sport, dport, "A", seq=1002 + up, ack=5002 + down))
        return end


def build(random_state: int = 0) -> tuple[list[tuple[int, bytes]], list[dict]]:
    rng = np.random.default_rng(random_state)
    cap = Capture()
    activities = []

    # --- the workstation's normal traffic over 10 minutes ------------------------------------
    port = 49152
    for i in range(40):
        t = float(rng.uniform(0, 600))
        site = INTERNET[int(rng.integers(len(INTERNET)))]
        q = cap.ip(t, WORKSTATION, GATEWAY, pw.udp(port, 53, b"\x12\x34\x01\x00" + b"q" * 24))
        cap.ip(t + 0.004, GATEWAY, WORKSTATION, pw.udp(53, port, b"\x12\x34\x81\x80" + b"a" * 40))
        del q
        port += 1
        cap.tcp_session(t + 0.01, WORKSTATION, site, port, 443, int(rng.integers(200, 600)), int(rng.integers(400, 1400)), rng)
        port += 1
    for i in range(10):  # NTP and ssh to the server
        t = float(rng.uniform(0, 600))
        cap.ip(t, WORKSTATION, GATEWAY, pw.udp(123, 123, b"\x23" + b"\0" * 47))
        cap.ip(t + 0.001, GATEWAY, WORKSTATION, pw.udp(123, 123, b"\x24" + b"\0" * 47))
    for i in range(5):
        cap.tcp_session(float(rng.uniform(0, 600)), WORKSTATION, SERVER, port, 22, 300, 800, rng)
        port += 1
    for i in range(10):  # mDNS announcements: to a multicast group, nobody "answers"
        cap.ip(float(rng.uniform(0, 600)), WORKSTATION, "224.0.0.251", pw.udp(5353, 5353, b"\0" * 30))
    for i in range(8):
        cap.arp(float(rng.uniform(0, 600)), WORKSTATION, GATEWAY)
    # one benign failure: a mistyped port, refused
    cap.ip(300.0, WORKSTATION, SERVER, pw.tcp(port, 8443, "S"))
    cap.ip(300.0005, SERVER, WORKSTATION, pw.tcp(8443, port, "RA"))
    activities.append({"actor": WORKSTATION, "activity": "workstation", "label": "benign", "scan_type": "", "start": 0.0, "end": 600.0})

    # --- a vertical SYN scan of the server, ports 1-1024, nmap-like -------------------------------
    start = 120.0
    ports = rng.permutation(np.arange(1, 1025))
    t = start
    for p in ports.tolist():
        t += float(rng.uniform(0.0005, 0.003))
        cap.ip(t, SCANNER, SERVER, pw.tcp(41000, p, "S", seq=0xABC0DE))
        if p in (22, 80, 443):
            cap.ip(t + 0.0003, SERVER, SCANNER, pw.tcp(p, 41000, "SA", seq=77, ack=0xABC0DF))
            cap.ip(t + 0.0004, SCANNER, SERVER, pw.tcp(41000, p, "R", seq=0xABC0DF))
        elif p in (135, 137, 138, 139, 445):
            cap.ip(t + 1.0, SCANNER, SERVER, pw.tcp(41001, p, "S", seq=0xABC0DE))  # retry from a new port
        else:
            cap.ip(t + 0.0003, SERVER, SCANNER, pw.tcp(p, 41000, "RA", ack=0xABC0DF))
    activities.append({"actor": SCANNER, "activity": "syn-scan", "label": "scan", "scan_type": "vertical", "start": start, "end": t + 1.0})

    # --- a UDP scan of the server's 60 common UDP ports ------------------------------------------
    start = t + 30.0
    udp_ports = [7, 9, 17, 19, 49, 53, 67, 68, 69, 80, 88, 111, 120, 123, 135, 136, 137, 138, 139, 158, 161, 162,
                 177, 427, 443, 445, 497, 500, 514, 515, 518, 520, 593, 623, 626, 631, 996, 997, 998, 999, 1022,
                 1023, 1025, 1026, 1027, 1433, 1434, 1645, 1701, 1812, 1900, 2049, 2222, 3283, 3456, 3703, 4444,
                 4500, 5060, 5353]
    t = start
    for i, p in enumerate(udp_ports):
        t += float(rng.uniform(0.01, 0.05))
        probe = cap.ip(t, SCANNER, SERVER, pw.udp(52000, p, b""))
        if p in (53, 123, 161):
            cap.ip(t + 0.001, SERVER, SCANNER, pw.udp(p, 52000, b"r" * 40))
        elif i % 3 == 2:
            cap.ip(t + 1.2, SCANNER, SERVER, pw.udp(52001, p, b""))  # ICMP rate limit: no answer, one retry
        else:
            cap.ip(t + 0.001, SERVER, SCANNER, pw.icmp(3, 3, quote=probe))
    activities.append({"actor": SCANNER, "activity": "udp-scan", "label": "scan", "scan_type": "udp", "start": start, "end": t + 1.2})

    # --- a ping sweep of 192.168.56.0/24 ---------------------------------------------------------
    start = t + 30.0
    t = start
    for h in range(1, 255):
        target = f"192.168.56.{h}"
        if target == SCANNER:
            continue
        t += 0.004
        cap.ip(t, SCANNER, target, pw.icmp(8, 0, ident=0x4D2, seq=h))
        if target in LIVE:
            cap.ip(t + 0.0005, target, SCANNER, pw.icmp(0, 0, ident=0x4D2, seq=h))
    activities.append({"actor": SCANNER, "activity": "ping-sweep", "label": "scan", "scan_type": "icmp_sweep", "start": start, "end": t})

    cap.packets.sort(key=lambda x: x[0])
    return cap.packets, activities


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--random-state", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    packets, activities = build(args.random_state)
    args.out.mkdir(parents=True, exist_ok=True)
    pw.write_pcap(args.out / "synthetic-capture.pcap", packets)
    with open(args.out / "activities.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["actor", "activity", "label", "scan_type", "start", "end"])
        w.writeheader()
        for a in activities:
            w.writerow({**a, "start": _iso(a["start"]), "end": _iso(a["end"])})
    print(f"wrote {len(packets):,} packets to {args.out / 'synthetic-capture.pcap'}")


def _iso(seconds: float) -> str:
    import datetime as dt

    return (dt.datetime.fromtimestamp(T0 / S, dt.UTC) + dt.timedelta(seconds=seconds)).isoformat(timespec="microseconds")


if __name__ == "__main__":
    main()
