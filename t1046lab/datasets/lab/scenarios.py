"""Declarative scan-lab scenarios: hosts with roles, services, and a timeline of activities.

A scenario is data. Addresses are written as host *offsets* inside the lab subnet (``10`` means
the subnet's ``.10``), so the same scenario runs on any ``--subnet``; commands are templates
whose ``{name}`` fields the runner fills in (a host name gives its first address, ``{targets}``
as a whole word expands to the activity's target addresses, ``{tmp}`` is the lab's temporary
directory, ``{router_mac}`` the one-armed router's MAC).

Labels (the ``label`` / ``scan_type`` / ``benign_category`` columns, DESIGN.md vocabulary)
----------------------------------------------------------------------------------------------
``label``
    ``scan``: traffic of a discovery activity (T1046); ``benign``: everything else.

``scan_type`` (label ``scan``)
    ``vertical``      many ports of one host (nmap -sS of ports 1-100 on one server).
    ``horizontal``    one or two ports across many hosts (nmap -sT -p 22,80 over the servers and
                      the dead addresses; a bash ``/dev/tcp`` loop; zmap).
    ``block``         several ports across several hosts (``nc -z`` sweep; masscan).
    ``icmp_sweep``    ICMP echo to many hosts (nmap -sn -PE).
    ``udp``           UDP port scan (nmap -sU of a few ports).
    ``stealth``       FIN, NULL and Xmas scans (nmap -sF / -sN / -sX).
    ``version``       service/version probing (nmap -sV of a few ports): full connections.
    ``slow``          a scan paced below per-minute thresholds (nmap --scan-delay).
    ``decoy``         nmap -D: the real scan plus full copies from spoofed lab addresses.
    ``distributed``   one port range split across several source hosts, one slice each.

``benign_category`` (label ``benign``)
    ``sanctioned_scanner`` a scheduled vulnerability-scanner nmap -sV of the servers.
    ``monitoring``         Prometheus scraping node exporters on every server every 2 s.
    ``health_check``       periodic TCP/HTTP checks of one port on every server.
    ``dns_resolver``       DNS lookups of lab names against the lab's dnsmasq.
    ``normal``             HTTP clients (curl) and SSH sessions running a command.

Rows of the connections frame that no activity explains get ``label="benign"`` and
``benign_category="unattributed"`` (the datasheet counts them; a clean run has none or a few).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BENIGN_CATEGORIES", "SCAN_TYPES", "SCENARIOS", "Activity", "Host", "Scenario", "Service", "get_scenario"]

SCAN_TYPES = {
    "vertical": "many ports of one host",
    "horizontal": "one or two ports across many hosts",
    "block": "several ports across several hosts",
    "icmp_sweep": "ICMP echo to many hosts",
    "udp": "UDP port scan",
    "stealth": "FIN, NULL or Xmas probes",
    "version": "service/version probing with full connections",
    "slow": "a scan paced with a delay between probes",
    "decoy": "a scan with spoofed decoy sources (nmap -D)",
    "distributed": "one scan split across several source hosts",
}
BENIGN_CATEGORIES = {
    "sanctioned_scanner": "a scheduled vulnerability-scanner nmap -sV of the servers",
    "monitoring": "Prometheus scraping node exporters on every server",
    "health_check": "periodic TCP/HTTP checks of one port on every server",
    "dns_resolver": "DNS lookups against the lab's dnsmasq",
    "normal": "HTTP clients and SSH sessions",
    "unattributed": "traffic no activity explains",
}


@dataclass(frozen=True)
class Host:
    """A host namespace. ``offsets`` are addresses as offsets in the lab subnet."""

    name: str
    role: str  # server, client, scanner, router, dark
    offsets: tuple[int, ...]
    silent: str | None = None  # dead targets: "drop-ip" or "no-arp"
    forwarding: bool = False


@dataclass(frozen=True)
class Service:
    """A listener started before the timeline: ``kind`` in http, sshd, tcp, udp, dns, node_exporter."""

    host: str
    kind: str
    port: int


@dataclass(frozen=True)
class Activity:
    """One labelled activity of the timeline, run by one actor (its own address).

    ``argv`` is a command template. ``background`` activities run bounded loops until the
    scenario's end (then they are stopped); the others run to completion within ``timeout``.
    ``expect_ports`` / ``expect_icmp`` say which probes every target must receive from the actor
    (the end-to-end test checks them in the connections frame).
    """

    id: str
    actor: str
    tool: str
    label: str
    category: str
    start: float
    argv: tuple[str, ...]
    targets: tuple[str, ...]  # host names or offsets (as strings)
    timeout: float = 30.0
    background: bool = False
    decoys: tuple[int, ...] = ()
    expect_ports: tuple[int, ...] = ()
    expect_proto: str = "tcp"
    expect_icmp: bool = False
    campaign: str = ""


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    hosts: tuple[Host, ...]
    services: tuple[Service, ...]
    activities: tuple[Activity, ...]
    min_duration: float = 20.0  # background activities run at least this long
    max_duration: float = 80.0  # hard bound on the timeline

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)


# --------------------------------------------------------------------------------------------
# Building blocks shared by the scenarios
# --------------------------------------------------------------------------------------------

SERVERS = ("web1", "web2", "db1", "dns1")
DEAD = ("20", "21", "22", "23")  # owned by the silent "dark" host
_NMAP = ("nmap", "-n", "-Pn", "--max-retries", "1", "--host-timeout", "20s")

_BASE_HOSTS = (
    Host("web1", "server", (10,)),
    Host("web2", "server", (11,)),
    Host("db1", "server", (12,)),
    Host("dns1", "server", (13,)),
    # Dead targets: this namespace owns unused addresses, answers ARP for them and drops every
    # IP packet, so probes to them show on the wire as unanswered (no_reply). The other choice
    # (arp_ignore=8, "no-arp") would leave only ARP requests and no IP probe to count.
    Host("dark", "dark", (20, 21, 22, 23, 30, 31), silent="drop-ip"),
    Host("client", "client", (50,)),
    Host("prom", "monitoring", (51,)),
    Host("health", "monitoring", (52,)),
    Host("vulnscan", "scanner", (53,)),
    Host("resolver", "client", (54,)),
    Host("admin", "client", (55,)),
)

_SERVICES = (
    Service("web1", "http", 80),
    Service("web1", "sshd", 22),
    Service("web1", "tcp", 8080),
    Service("web2", "http", 80),
    Service("web2", "tcp", 443),
    Service("db1", "tcp", 5432),
    Service("db1", "udp", 161),
    Service("dns1", "dns", 53),
    *(Service(s, "node_exporter", 9100) for s in SERVERS),
)

_CURL = "curl -s -o /dev/null --max-time 2"


def _benign(duration_loops: int) -> tuple[Activity, ...]:
    """Background benign activity: bounded loops (``duration_loops`` iterations of ~1 s)."""
    n = duration_loops
    return (
        Activity(
            "benign-http", "client", "curl", "benign", "normal", 0.0,
            ("bash", "-c", f"for i in $(seq {n}); do {_CURL} http://{{web1}}/; sleep 0.6; {_CURL} http://{{web2}}/index.html; sleep 0.6; done"),
            ("web1", "web2"), timeout=n * 3, background=True,
        ),
        Activity(
            "benign-prometheus", "prom", "prometheus", "benign", "monitoring", 0.0,
            ("prometheus", "--config.file={tmp}/prometheus.yml", "--storage.tsdb.path={tmp}/prometheus-data",
             "--web.listen-address={prom}:9090", "--log.level=warn"),
            SERVERS, timeout=n * 3, background=True,
        ),
        Activity(
            "benign-health", "health", "nc+curl", "benign", "health_check", 0.5,
            ("bash", "-c", (f"for i in $(seq {max(n // 3, 1)}); do {_CURL} http://{{web1}}/; {_CURL} http://{{web2}}/; "
                            "nc -z -n -w 1 {db1} 5432; nc -z -n -w 1 {dns1} 53; sleep 3; done")),
            SERVERS, timeout=n * 3, background=True,
        ),
        Activity(
            "benign-dns", "resolver", "python-dns", "benign", "dns_resolver", 1.0,
            ("python3", "-c", _DNS_CLIENT, "{dns1}", str(max(n // 2, 1)), "web1.lab", "web2.lab", "db1.lab", "nosuch.lab"),
            ("dns1",), timeout=n * 3, background=True,
        ),
    )


# A resolver loop with the standard library only (no dig on the image): one A query per name,
# a 2 s pause between rounds, a bounded number of rounds.
_DNS_CLIENT = r"""
import random, socket, struct, sys, time
server, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rng = random.Random(0)
for _ in range(rounds):
    for name in names:
        qid = rng.randrange(65536)
        q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        try:
            s.sendto(q, (server, 53)); s.recvfrom(512)
        except OSError:
            pass
        finally:
            s.close()
    time.sleep(2.0)
"""

_SSH = ("ssh", "-i", "{tmp}/id_ed25519", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR", "root@{web1}", "uptime")


def _ssh(idx: int, start: float) -> Activity:
    return Activity(f"benign-ssh-{idx}", "admin", "ssh", "benign", "normal", start, _SSH, ("web1",), timeout=15)


def _sanctioned(idx: int, start: float) -> Activity:
    return Activity(
        f"benign-vulnscan-{idx}", "vulnscan", "nmap", "benign", "sanctioned_scanner", start,
        (*_NMAP, "-sV", "--version-light", "-p", "22,80", "{targets}"), ("web1", "web2"), timeout=40,
        expect_ports=(22, 80),
    )


_VERTICAL_PORTS = "1-100,443,5432,8080,9100"
_VERTICAL_EXPECT = tuple(range(1, 101)) + (443, 5432, 8080, 9100)
_BLOCK_PORTS = (21, 22, 80, 443, 3306, 5432)
_DEVTCP_PORTS = (21, 22, 23, 25, 80, 110, 143, 443, 3306, 8080)

_SMOKE_SCANS = (
    Activity("scan-syn", "atk1", "nmap", "scan", "vertical", 1.0,
             (*_NMAP, "-sS", "-T4", "-p", _VERTICAL_PORTS, "{targets}"), ("web1",),
             expect_ports=_VERTICAL_EXPECT),
    Activity("scan-ping-sweep", "atk2", "nmap", "scan", "icmp_sweep", 1.5,
             ("nmap", "-n", "-sn", "-PE", "--disable-arp-ping", "--max-retries", "1", "{targets}"),
             (*SERVERS, *DEAD), expect_icmp=True),
    Activity("scan-connect", "atk3", "nmap", "scan", "horizontal", 3.0,
             (*_NMAP, "-sT", "-T4", "-p", "22,80", "{targets}"), (*SERVERS, *DEAD),
             expect_ports=(22, 80)),
    Activity("scan-udp", "atk4", "nmap", "scan", "udp", 5.0,
             (*_NMAP, "-sU", "-p", "53,123,161,5353", "{targets}"), ("db1", "dns1"),
             expect_ports=(53, 123, 161, 5353), expect_proto="udp"),
    Activity("scan-nc-sweep", "atk5", "nc", "scan", "block", 6.0,
             ("bash", "-c", "for h in {targets_str}; do nc -z -n -w 1 $h " + " ".join(map(str, _BLOCK_PORTS)) + "; done"),
             ("web1", "web2", "db1", "20"), expect_ports=_BLOCK_PORTS, timeout=40),
    Activity("scan-devtcp", "atk6", "bash", "scan", "vertical", 8.0,
             ("bash", "-c", "for p in " + " ".join(map(str, _DEVTCP_PORTS)) +
              "; do timeout 1 bash -c \"echo > /dev/tcp/{web2}/$p\" 2>/dev/null && echo open $p; done"),
             ("web2",), expect_ports=_DEVTCP_PORTS),
)

_SCANNER_HOSTS_SMOKE = tuple(Host(f"atk{i}", "scanner", (100 + i,)) for i in range(1, 7))

SMOKE = Scenario(
    name="smoke",
    description="CI-sized: nmap SYN/connect/ping-sweep/UDP, an nc -z sweep and a bash /dev/tcp loop, "
    "with HTTP clients, Prometheus, health checks, DNS, SSH and a sanctioned scanner (about 30 s).",
    hosts=_BASE_HOSTS + _SCANNER_HOSTS_SMOKE,
    services=_SERVICES,
    activities=_benign(26) + (_ssh(1, 2.0), _ssh(2, 14.0), _sanctioned(1, 4.0)) + _SMOKE_SCANS,
    min_duration=25.0,
    max_duration=60.0,
)

_STEALTH = tuple(
    Activity(f"scan-{flag}", f"atk{7 + i}", "nmap", "scan", "stealth", 10.0 + 2 * i,
             (*_NMAP, f"-s{letter}", "-T4", "-p", "20-40,80,443", "{targets}"), ("db1",),
             expect_ports=tuple(range(20, 41)) + (80, 443))
    for i, (flag, letter) in enumerate((("fin", "F"), ("null", "N"), ("xmas", "X")))
)

_FULL_SCANS = _SMOKE_SCANS + _STEALTH + (
    Activity("scan-version", "atk10", "nmap", "scan", "version", 12.0,
             (*_NMAP, "-sV", "-p", "22,80,443,5432,8080", "{targets}"), ("web1", "db1"),
             expect_ports=(22, 80, 443, 5432, 8080), timeout=60),
    Activity("scan-slow", "atk11", "nmap", "scan", "slow", 2.0,
             (*_NMAP, "-sS", "--scan-delay", "2s", "-p", "21,22,23,25,80,110,139,443", "{targets}"), ("web2",),
             expect_ports=(21, 22, 23, 25, 80, 110, 139, 443), timeout=60),
    Activity("scan-decoy", "atk12", "nmap", "scan", "decoy", 16.0,
             (*_NMAP, "-sS", "-T4", "-p", "1-30", "-D", "{decoys},ME", "{targets}"), ("web2",),
             decoys=(30, 31), expect_ports=tuple(range(1, 31))),
    *(
        Activity(f"scan-distributed-{i + 1}", f"atk{13 + i}", "nmap", "scan", "distributed", 20.0,
                 (*_NMAP, "-sS", "-T4", "-p", f"{1000 + 40 * i}-{1039 + 40 * i}", "{targets}"), ("db1",),
                 expect_ports=tuple(range(1000 + 40 * i, 1040 + 40 * i)), campaign="distributed-1")
        for i in range(3)
    ),
    Activity("scan-masscan", "atk16", "masscan", "scan", "block", 24.0,
             ("masscan", "-e", "eth0", "--rate", "200", "--wait", "2", "--adapter-ip", "{atk16}", "--router-mac", "{router_mac}",
              "-p", "22,80,443,5432,8080", "{targets}"), (*SERVERS, *DEAD),
             expect_ports=(22, 80, 443, 5432, 8080), timeout=20),
    Activity("scan-zmap", "atk17", "zmap", "scan", "horizontal", 30.0,
             ("zmap", "-p", "80", "-r", "100", "-G", "{router_mac}", "-S", "{atk17}", "-i", "eth0",
              # Debian's default blocklist holds every RFC 1918 range: an empty one instead.
              "-b", "{tmp}/empty-blocklist",
              "--cooldown-time=2", "-q", "{targets}"), (*SERVERS, *DEAD),
             expect_ports=(80,), timeout=20),
    Activity("scan-hping3", "atk18", "hping3", "scan", "vertical", 26.0,
             ("hping3", "-S", "-p", "++20", "-c", "30", "-i", "u50000", "{web1}"), ("web1",),
             expect_ports=tuple(range(20, 50)), timeout=20),
)

FULL = Scenario(
    name="full",
    description="Every activity: the smoke set plus FIN/NULL/Xmas, -sV, a slow scan, decoys, a "
    "distributed scan, masscan and zmap through a one-armed router, and hping3 (about 45 s).",
    hosts=_BASE_HOSTS + (Host("router", "router", (1,), forwarding=True),)
    + tuple(Host(f"atk{i}", "scanner", (100 + i,)) for i in range(1, 19)),
    services=_SERVICES,
    activities=_benign(40) + (_ssh(1, 2.0), _ssh(2, 14.0), _ssh(3, 30.0), _sanctioned(1, 4.0), _sanctioned(2, 34.0)) + _FULL_SCANS,
    min_duration=38.0,
    max_duration=100.0,
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (SMOKE, FULL)}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown lab scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None
