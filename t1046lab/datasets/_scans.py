"""Injected scans: the plan (who scans what, when) and the probe rows each scan produces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ._benign import SCENARIOS as BENIGN_SCENARIOS
from ._blocks import (
    ACK,
    EST,
    FIN,
    ICMP,
    NOREP,
    NS,
    PSH,
    REJ,
    ROLES,
    RST,
    SCAN_TYPES,
    SYN,
    TCP,
    UDP,
    URG,
    make_block,
)
from ._network import SERVERS, WORKSTATIONS, Network, subnet

DAY = 86_400 * NS

# nmap's most frequent TCP ports first (nmap-services order, abridged), then the rest of 1-65535.
_TOP_TCP = [
    80, 23, 443, 21, 22, 25, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 1723, 111, 995, 993, 5900,
    1025, 587, 8888, 199, 1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179, 1026, 2000, 8443, 8000,
    32768, 554, 26, 1433, 49152, 2001, 515, 8008, 49154, 1027, 5666, 646, 5000, 5631, 631, 49153, 8081,
    2049, 88, 79, 5800, 106, 2121, 1110, 49155, 6000, 513, 990, 5357, 427, 49156, 543, 544, 5101, 144, 7,
    389, 8009, 3128, 444, 9999, 5009, 7070, 5190, 3000, 5432, 1900, 3986, 13, 1029, 9, 5051, 6646, 49157,
    1028, 873, 1755, 2717, 4899, 9100, 119, 37, 6379, 27017, 9200, 11211, 5672, 2379, 10250, 9090, 8500,
]
TOP_TCP_PORTS = np.array(_TOP_TCP + [p for p in range(1, 65536) if p not in set(_TOP_TCP)], dtype=np.int32)
_TOP_UDP = [
    631, 161, 137, 123, 138, 1434, 445, 135, 67, 53, 139, 500, 68, 520, 1900, 4500, 514, 49152, 162, 69,
    5353, 111, 49154, 1701, 998, 996, 997, 999, 3283, 49153, 1812, 136, 2222, 2049, 3278, 5060, 1025,
    1813, 626, 4444, 8472, 177, 1645, 1646, 1027, 1028, 1029, 1030, 1031, 1032,
]
TOP_UDP_PORTS = np.array(_TOP_UDP + [p for p in range(1, 65536) if p not in set(_TOP_UDP)], dtype=np.int32)

STEALTH_FLAGS = {"fin": FIN, "null": 0, "xmas": FIN | PSH | URG}
VERSION_PROBES_PER_OPEN_PORT = 3
SLOW_INTERVAL_S = 100.0  # three probes per five-minute window

#: Default shape of each scan type: targets, ports, rate (probes/s) and extras.
SCAN_DEFAULTS: dict[str, dict] = {
    "vertical": {"n_ports": 1000, "rate": 300.0},
    "horizontal": {"rate": 40.0},
    "block": {"n_targets": 16, "n_ports": 100, "rate": 200.0},
    "slow": {"n_ports": 150},
    "distributed": {"n_sources": 4, "n_ports": 1024, "rate": 15.0},
    "udp": {"n_ports": 100, "rate": 4.0},
    "icmp_sweep": {"rate": 50.0},
    "decoy": {"n_ports": 100, "n_decoys": 4, "rate": 100.0},
    "stealth": {"n_ports": 500, "rate": 200.0},
    "version": {"n_targets": 3, "n_ports": 30, "rate": 50.0},
}

#: Scenario names of scan rows.
SCAN_SCENARIOS = tuple(f"scan:{t}" for t in SCAN_TYPES) + ("scan:decoy-spoofed", "scan:version-service-probe")
#: Every scenario name; a row's ``scenario`` code indexes this.
SCENARIOS = BENIGN_SCENARIOS + SCAN_SCENARIOS


@dataclass
class PlannedScan:
    """One injected scan: everything needed to generate its rows."""

    scan_id: str
    scan_type: str
    day: int
    start: int  # ns since the epoch
    sources: np.ndarray  # the compromised hosts (several for a distributed scan)
    targets: np.ndarray
    ports: np.ndarray  # empty for an ICMP sweep
    transport: int
    rate: float
    decoys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    variant: str = ""

    def record(self) -> dict:
        from ._blocks import TRANSPORTS

        return {
            "scan_id": self.scan_id,
            "scan_type": self.scan_type,
            "day": self.day,
            "start": np.datetime64(self.start // 1000, "us"),
            "source_ip": _dotted(self.sources[0]),
            "n_sources": len(self.sources),
            "n_decoys": len(self.decoys),
            "n_targets": len(self.targets),
            "n_ports": len(self.ports),
            "transport": TRANSPORTS[self.transport],
            "variant": self.variant,
        }


def _dotted(value: int) -> str:
    value = int(value)
    return ".".join(str((value >> s) & 255) for s in (24, 16, 8, 0))


def normalise_scans(scans: str | Sequence[str] | Mapping[str, int] | None) -> dict[str, int]:
    """``"all"`` / None / a list of types / {type: count} -> {type: count}."""
    if scans is None or (isinstance(scans, str) and scans == "none"):
        return {}
    if isinstance(scans, str):
        scans = list(SCAN_TYPES) if scans == "all" else [scans]
    counts = dict(scans) if isinstance(scans, Mapping) else {t: list(scans).count(t) for t in dict.fromkeys(scans)}
    unknown = sorted(set(counts) - set(SCAN_TYPES))
    if unknown:
        raise ValueError(f"unknown scan types {unknown}; choose from {list(SCAN_TYPES)}")
    bad = {t: n for t, n in counts.items() if not isinstance(n, (int, np.integer)) or n < 0}
    if bad:
        raise ValueError(f"scan counts must be non-negative integers, got {bad}")
    return {t: int(counts[t]) for t in SCAN_TYPES if counts.get(t)}


def plan_scans(net: Network, counts: dict[str, int], days: int, start_ns: int, rng: np.random.Generator) -> list[PlannedScan]:
    """Choose source, targets, ports and start of every injected scan."""
    plan: list[PlannedScan] = []
    all_servers = np.concatenate([net.roles[r] for r in ("web_server", "app_server", "database")])
    number = 0
    for scan_type, count in counts.items():
        for _ in range(count):
            number += 1
            p = SCAN_DEFAULTS[scan_type]
            source = _compromised(net, rng, p.get("n_sources", 1))
            # A compromised server does not scan itself.
            servers = all_servers[~np.isin(all_servers, source)]
            transport, variant, decoys = TCP, "", np.zeros(0, np.uint32)
            ports = TOP_TCP_PORTS[: p.get("n_ports", 0)]
            if scan_type in ("vertical", "slow", "stealth", "decoy", "distributed"):
                targets = rng.choice(servers, size=1)
            elif scan_type == "udp":
                transport, ports = UDP, TOP_UDP_PORTS[: p["n_ports"]]
                targets = rng.choice(np.concatenate([servers, net.roles["dns_resolver"]]), size=1)
            elif scan_type == "horizontal":
                # One service across a whole subnet, empty addresses included.
                if rng.random() < 0.5:
                    targets, ports = subnet(WORKSTATIONS, 1024), np.array([445], np.int32)
                else:
                    targets, ports = subnet(SERVERS, 256), np.array([22], np.int32)
            elif scan_type == "icmp_sweep":
                transport, ports = ICMP, np.zeros(0, np.int32)
                targets = subnet(SERVERS, 256) if rng.random() < 0.5 else subnet(WORKSTATIONS, 256)
            elif scan_type == "block":
                first = int(rng.integers(0, 256 - p["n_targets"] - 1))
                targets = subnet(SERVERS, 256)[first : first + p["n_targets"]]
            elif scan_type == "version":
                targets = rng.choice(servers, size=p["n_targets"], replace=False)
            else:  # pragma: no cover - normalise_scans rejects unknown types
                raise ValueError(scan_type)
            if scan_type == "stealth":
                variant = str(rng.choice(sorted(STEALTH_FLAGS)))
            if scan_type == "decoy":
                unused = np.setdiff1d(subnet(WORKSTATIONS, 1024), net.hosts)
                decoys = np.concatenate([rng.choice(unused, size=p["n_decoys"] // 2, replace=False), rng.choice(net.external_web[100:], size=p["n_decoys"] - p["n_decoys"] // 2, replace=False)]).astype(np.uint32)
            targets = np.setdiff1d(np.asarray(targets, np.uint32), source) if scan_type != "icmp_sweep" else targets[~np.isin(targets, source)]
            if scan_type in ("horizontal", "icmp_sweep", "block"):
                targets = np.sort(targets)
            n_probes = len(targets) * max(1, len(ports))
            duration = n_probes * SLOW_INTERVAL_S * NS if scan_type == "slow" else n_probes / p.get("rate", 100.0) * NS * 1.5 / max(1, p.get("n_sources", 1))
            day = int(rng.integers(0, days))
            latest = DAY - int(duration) - 120 * NS
            if latest <= 0:
                raise ValueError(f"a {scan_type} scan of {n_probes} probes does not fit in one day")
            office = 8 * 3600 * NS
            if rng.random() < 0.6 and latest > office:
                offset = int(rng.integers(office, min(latest, 17 * 3600 * NS)))
            else:
                offset = int(rng.integers(0, latest))
            plan.append(
                PlannedScan(
                    scan_id=f"scan-{number:03d}-{scan_type}",
                    scan_type=scan_type,
                    day=day,
                    start=start_ns + day * DAY + offset,
                    sources=source,
                    targets=np.asarray(targets, np.uint32),
                    ports=np.asarray(ports, np.int32),
                    transport=transport,
                    rate=float(p.get("rate", 0.0)),
                    decoys=decoys,
                    variant=variant,
                )
            )
    return plan


def _compromised(net: Network, rng: np.random.Generator, n: int) -> np.ndarray:
    """A compromised workstation (most often) or server, or ``n`` workstations."""
    if n > 1 or rng.random() < 0.7:
        return rng.choice(net.roles["workstation"], size=n, replace=False).astype(np.uint32)
    return rng.choice(np.concatenate([net.roles["web_server"], net.roles["app_server"]]), size=1).astype(np.uint32)


def probe_block(
    net: Network,
    rng: np.random.Generator,
    sources: np.ndarray,
    targets: np.ndarray,
    ports: np.ndarray,
    transport: int,
    start: int,
    rate_per_s: float | None = None,
    interval_s: float | None = None,
    flags: int | None = None,
) -> dict[str, np.ndarray]:
    """One probe per (target, port) in random order from ``sources[0]``, answered by the targets."""
    n_ports = max(1, len(ports))
    pairs = len(targets) * n_ports
    order = rng.permutation(pairs)
    dst = np.asarray(targets, np.uint32)[order // n_ports]
    dport = np.asarray(ports, np.int32)[order % n_ports] if len(ports) else np.full(pairs, -1, np.int32)
    if interval_s is not None:
        gaps = interval_s * NS * (1 + 0.3 * (rng.random(pairs) - 0.5))
    else:
        gaps = rng.exponential(NS / rate_per_s, size=pairs)
    t = start + np.cumsum(gaps).astype(np.int64)
    outcome = net.respond(dst, dport, transport)
    if flags is not None:
        # FIN/NULL/Xmas (RFC 793): a closed port answers RST, an open one stays silent.
        outcome = np.where(outcome == EST, NOREP, outcome).astype(np.int8)
    est, rej = outcome == EST, outcome == REJ
    if transport == TCP:
        probe_flags = SYN if flags is None else flags
        tcp_flags = np.where(est, SYN | ACK | RST, np.where(rej, probe_flags | RST | ACK, probe_flags))
        spk = np.where(est, 2, np.where(rej, 1, 1 + (rng.random(pairs) < 0.5)))
        dpk = np.where(est | rej, 1, 0)
        sb, db = spk * 40, dpk * 40
    elif transport == UDP:
        tcp_flags = np.full(pairs, -1)
        spk = np.where(outcome == NOREP, 2, 1)  # nmap retransmits unanswered UDP probes once
        dpk = np.where(outcome == NOREP, 0, 1)
        sb = spk * 28 + np.where(np.isin(dport, (53, 123, 161, 137)), 40, 0)
        db = np.where(est, 28 + rng.integers(20, 200, pairs), np.where(dpk > 0, 56, 0))
    else:
        tcp_flags = np.full(pairs, -1)
        spk, dpk = np.ones(pairs, int), np.where(est, 1, 0)
        sb, db = spk * 28, dpk * 28
    return make_block(
        pairs,
        t=t,
        dur=np.where(est | rej, rng.uniform(0.0002, 0.002, pairs), 0.0),
        src=np.full(pairs, sources[0], np.uint32),
        dst=dst,
        sport=rng.integers(40000, 65536) if transport != ICMP else -1,  # nmap keeps one source port per scan
        dport=dport,
        proto=transport,
        outcome=outcome,
        sbytes=sb,
        dbytes=db,
        spk=spk,
        dpk=dpk,
        flags=tcp_flags,
        icmp_type=8 if transport == ICMP else -1,
        label=1,
    )


def scan_rows(net: Network, scan: PlannedScan, rng: np.random.Generator, activity_code: int) -> dict[str, np.ndarray]:
    """The rows of one planned scan, labelled."""
    from ._blocks import concat_blocks

    kind = scan.scan_type
    blocks = []
    if kind == "distributed":
        # Each source takes a contiguous slice of the port range, all at the same time.
        for source, ports in zip(scan.sources, np.array_split(scan.ports, len(scan.sources))):
            blocks.append(probe_block(net, rng, np.array([source]), scan.targets, ports, scan.transport, scan.start + int(rng.integers(0, 30 * NS)), rate_per_s=scan.rate))
    elif kind == "slow":
        blocks.append(probe_block(net, rng, scan.sources, scan.targets, scan.ports, scan.transport, scan.start, interval_s=SLOW_INTERVAL_S))
    elif kind == "stealth":
        blocks.append(probe_block(net, rng, scan.sources, scan.targets, scan.ports, scan.transport, scan.start, rate_per_s=scan.rate, flags=STEALTH_FLAGS[scan.variant]))
    else:
        blocks.append(probe_block(net, rng, scan.sources, scan.targets, scan.ports, scan.transport, scan.start, rate_per_s=scan.rate))
    main = blocks[0]
    main_scenario = SCENARIOS.index(f"scan:{kind}")
    for b in blocks:
        b["scenario"][:] = main_scenario
        b["role"] = net.role_of(b["src"])
    if kind == "decoy":
        # nmap -D: a full copy of every probe from each spoofed address, interleaved in time.
        for decoy in scan.decoys:
            copy = {k: v.copy() for k, v in main.items()}
            copy["src"][:] = decoy
            copy["t"] += rng.integers(-NS // 100, NS // 100, size=len(copy["t"]))
            copy["sport"][:] = rng.integers(40000, 65536)
            copy["scenario"][:] = SCENARIOS.index("scan:decoy-spoofed")
            copy["role"][:] = ROLES.index("spoofed")
            blocks.append(copy)
    if kind == "version":
        # nmap -sV: after the SYN scan, several service probes to every open port.
        open_ = main["outcome"] == EST
        k = VERSION_PROBES_PER_OPEN_PORT
        idx = np.repeat(np.flatnonzero(open_), k)
        n = len(idx)
        end = int(main["t"].max()) if len(main["t"]) else scan.start
        blocks.append(
            make_block(
                n,
                t=end + np.sort(rng.integers(NS, 20 * NS, size=n)),
                dur=rng.uniform(0.05, 5.0, n),
                src=main["src"][idx],
                dst=main["dst"][idx],
                sport=rng.integers(40000, 65536, n),
                dport=main["dport"][idx],
                proto=TCP,
                outcome=EST,
                sbytes=200 + rng.integers(0, 400, n),
                dbytes=300 + rng.integers(0, 4000, n),
                spk=rng.integers(4, 9, n),
                dpk=rng.integers(3, 9, n),
                flags=FIN | SYN | PSH | ACK,
                label=1,
                scenario=SCENARIOS.index("scan:version-service-probe"),
                role=main["role"][0],
            )
        )
    block = concat_blocks(blocks)
    block["label"][:] = 1
    block["scan_type"][:] = SCAN_TYPES.index(kind)
    block["category"][:] = -1
    block["scan_id"][:] = activity_code
    return block
