"""The simulated enterprise: address plan, roles, open ports, and how hosts answer probes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._blocks import EST, ICMP, NOREP, REJ, ROLES, TCP, UDP, UNREACH


def ip(text: str) -> int:
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def subnet(base: str, size: int) -> np.ndarray:
    """Usable host addresses of a subnet of ``size`` addresses (network and broadcast left out)."""
    start = ip(base)
    return np.arange(start + 1, start + size - 1, dtype=np.uint32)


# Subnets, all inside 10.0.0.0/8. Roles take random addresses in their subnet, so sweeps
# meet gaps (no host there) as they would in a real network.
INFRA = "10.0.0.0"  # /24: resolvers, NAT gateway, monitoring, backup, scanner
CI_NET = "10.0.1.0"  # /24
WORKSTATIONS = "10.10.0.0"  # /22
SERVERS = "10.20.0.0"  # /24: web, app, databases
K8S_NODES = "10.30.0.0"  # /24
PODS = "10.244.0.0"  # /16, one /24 per node
SERVICES = "10.96.0.0"  # /16 cluster IPs

WEB_PORTS = (22, 80, 443, 9100)
APP_PORTS = (22, 8080, 8443, 9100)
DB_PORTS = (22, 9100, 9102)
WORKSTATION_PORTS = (135, 139, 445, 3389, 5040)
DNS_PORTS = (22, 53, 9100)
NODE_PORTS = (22, 9100, 10250, 10256)
POD_PORT = 8080
SERVICE_PORTS = (80, 443, 8080, 9090, 6379, 5432, 3306, 27017, 11211, 9200, 5672, 2379, 8500, 9092)
OPEN_UDP = {"dns_resolver": (53, 123), "web_server": (123, 161), "app_server": (161,), "database": (161,), "k8s_node": (8472,)}
SCRAPE_PORT = 9100
BACKUP_AGENT_PORT = 9102  # backup server -> client (fan-out)
BACKUP_STORE_PORT = 9103  # client -> backup server (fan-in)


@dataclass
class Network:
    """Addresses by role and the facts the generators and the response model need."""

    n_hosts: int
    roles: dict[str, np.ndarray]  # role -> uint32 addresses
    pod_node: np.ndarray  # for each pod, the index of its node
    services: np.ndarray  # cluster IPs
    service_ports: np.ndarray  # one port per service
    external_web: np.ndarray  # popular external sites (Zipf-weighted)
    external_ns: np.ndarray  # authoritative name servers the resolvers query
    registries: np.ndarray  # package and container registries CI pulls from
    artifact_repo: int  # an app server that also serves artifacts on 8081
    db_ports: np.ndarray  # per database: 5432 or 3306
    nat_clients: int
    # Response model: sorted keys (address << 16 | port) of open TCP / UDP ports.
    open_tcp: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.uint64))
    open_udp: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.uint64))
    hosts: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.uint32))  # sorted live addresses
    filtered: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, bool))  # per host: drops closed ports
    host_role: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int8))

    def role_of(self, addresses: np.ndarray) -> np.ndarray:
        """Role codes (see ``ROLES``) of addresses; ``external`` for unknown ones."""
        pos = np.clip(np.searchsorted(self.hosts, addresses), 0, len(self.hosts) - 1)
        known = self.hosts[pos] == addresses
        return np.where(known, self.host_role[pos], ROLES.index("external")).astype(np.int8)

    def summary(self) -> dict[str, int]:
        counts = {role: len(a) for role, a in self.roles.items()}
        counts["k8s_service"] = len(self.services)
        counts["nat_hidden_clients"] = int(self.nat_clients)
        return counts

    @property
    def scrape_targets(self) -> np.ndarray:
        """Every host the Prometheus-like scraper polls on :data:`SCRAPE_PORT`."""
        names = ("web_server", "app_server", "database", "dns_resolver", "k8s_node", "backup_server")
        return np.concatenate([self.roles[r] for r in names])

    @property
    def backup_clients(self) -> np.ndarray:
        return np.concatenate([self.roles[r] for r in ("web_server", "app_server", "database")])

    def respond(self, dst: np.ndarray, port: np.ndarray, proto: np.ndarray | int) -> np.ndarray:
        """Outcome codes of probes, as the targets would answer.

        TCP: open port established, closed port rejected (RST) unless the host's firewall
        drops it (no_reply); no host at the address: no_reply. UDP: open port answered
        (established), closed port ICMP port unreachable, or nothing behind a firewall.
        ICMP echo: live hosts reply unless their firewall drops echo (Windows default).
        """
        dst = np.asarray(dst, dtype=np.uint32)
        port = np.asarray(port, dtype=np.int64)
        proto = np.broadcast_to(np.asarray(proto), dst.shape)
        pos = np.clip(np.searchsorted(self.hosts, dst), 0, max(len(self.hosts) - 1, 0))
        live = self.hosts[pos] == dst
        filtered = self.filtered[pos] & live
        key = (dst.astype(np.uint64) << np.uint64(16)) | np.clip(port, 0, 65535).astype(np.uint64)
        open_tcp = _member(key, self.open_tcp) & live
        open_udp = _member(key, self.open_udp) & live
        out = np.full(dst.shape, NOREP, dtype=np.int8)
        tcp = proto == TCP
        out[tcp & live & ~filtered] = REJ
        out[tcp & open_tcp] = EST
        udp = proto == UDP
        out[udp & live & ~filtered] = UNREACH
        out[udp & open_udp] = EST
        icmp = proto == ICMP
        out[icmp & live & ~filtered] = EST
        return out


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def _pick(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    return np.sort(rng.choice(pool, size=n, replace=False)).astype(np.uint32)


def _public_pool(rng: np.random.Generator, n: int, first_octets: tuple[int, ...]) -> np.ndarray:
    first = rng.choice(np.asarray(first_octets, dtype=np.uint32), size=n)
    rest = rng.integers(1 << 8, 1 << 24, size=n, dtype=np.uint32)
    return np.unique((first << np.uint32(24)) | rest)[:n]


def build_network(n_hosts: int, rng: np.random.Generator) -> Network:
    """Lay out an enterprise of about ``n_hosts`` hosts (Kubernetes pods come on top).

    Shares: 60 % workstations, 7 % web servers, 6 % app servers, 3 % databases, 2 % CI
    runners, 2 % Kubernetes nodes (three pods each), and one or two of each infrastructure
    role (DNS resolvers, NAT gateway, Prometheus-like scraper, uptime checker, backup
    server, vulnerability scanner).
    """
    if n_hosts < 30:
        raise ValueError(f"n_hosts must be at least 30 to hold every role, got {n_hosts}")
    if n_hosts > 4000:
        raise ValueError(f"n_hosts above 4,000 does not fit the address plan, got {n_hosts}")
    infra = {"dns_resolver": 2, "nat_gateway": 1, "monitoring": 1, "uptime_checker": 1, "backup_server": 1, "vuln_scanner": 1}
    n_web = max(2, round(0.07 * n_hosts))
    n_app = max(2, round(0.06 * n_hosts))
    n_db = max(2, round(0.03 * n_hosts))
    n_ci = max(1, round(0.02 * n_hosts))
    n_nodes = max(2, round(0.02 * n_hosts))
    n_ws = n_hosts - sum(infra.values()) - n_web - n_app - n_db - n_ci - n_nodes
    server_pool = subnet(SERVERS, 256 * max(1, -(-(n_web + n_app + n_db) * 2 // 256)))
    servers = rng.permutation(_pick(rng, server_pool, n_web + n_app + n_db))
    infra_addr = {
        "dns_resolver": np.array([ip("10.0.0.53"), ip("10.0.0.54")], np.uint32),
        "nat_gateway": np.array([ip("10.0.0.1")], np.uint32),
        "monitoring": np.array([ip("10.0.0.10")], np.uint32),
        "uptime_checker": np.array([ip("10.0.0.11")], np.uint32),
        "backup_server": np.array([ip("10.0.0.20")], np.uint32),
        "vuln_scanner": np.array([ip("10.0.0.30")], np.uint32),
    }
    ws_size = 1024 * max(1, -(-int(n_ws * 1.3) // 1024))
    roles = {
        "workstation": _pick(rng, subnet(WORKSTATIONS, ws_size), n_ws),
        "web_server": np.sort(servers[:n_web]),
        "app_server": np.sort(servers[n_web : n_web + n_app]),
        "database": np.sort(servers[n_web + n_app :]),
        **infra_addr,
        "ci_runner": _pick(rng, subnet(CI_NET, 256), n_ci),
        "k8s_node": np.sort(np.uint32(ip(K8S_NODES)) + 10 + np.arange(n_nodes, dtype=np.uint32)),
    }
    pods_per_node = 3
    pod_node = np.repeat(np.arange(n_nodes), pods_per_node)
    pod_host = rng.integers(2, 250, size=len(pod_node))
    pods = (np.uint32(ip(PODS)) + (pod_node.astype(np.uint32) << np.uint32(8)) + pod_host.astype(np.uint32)).astype(np.uint32)
    pods, first = np.unique(pods, return_index=True)
    roles["k8s_pod"] = pods
    pod_node = pod_node[first]
    n_services = max(12, len(pods))
    services = np.uint32(ip(SERVICES)) + _pick(rng, np.arange(11, 65000, dtype=np.uint32), n_services)
    service_ports = rng.choice(np.asarray(SERVICE_PORTS), size=n_services)
    net = Network(
        n_hosts=n_hosts,
        roles=roles,
        pod_node=pod_node,
        services=services.astype(np.uint32),
        service_ports=service_ports.astype(np.int32),
        external_web=_public_pool(rng, 3000, (13, 23, 34, 52, 104, 142, 151, 172, 185, 199)),
        external_ns=_public_pool(rng, 1500, (8, 9, 45, 64, 128, 192, 198, 205, 208, 216)),
        registries=_public_pool(rng, 12, (18, 54, 104, 151)),
        artifact_repo=int(roles["app_server"][0]),
        db_ports=rng.choice(np.array([5432, 3306], np.int32), size=n_db),
        nat_clients=max(10, n_hosts // 5),
    )
    _response_model(net, rng)
    return net


def _response_model(net: Network, rng: np.random.Generator) -> None:
    tcp_keys: list[np.ndarray] = []
    udp_keys: list[np.ndarray] = []
    hosts: list[np.ndarray] = []
    filtered: list[np.ndarray] = []
    host_role: list[np.ndarray] = []

    def add(addresses: np.ndarray, ports: np.ndarray | tuple[int, ...], udp: tuple[int, ...] = ()) -> None:
        addresses = np.asarray(addresses, dtype=np.uint64)[:, None]
        for source, out in ((ports, tcp_keys), (udp, udp_keys)):
            if len(source):
                out.append(((addresses << np.uint64(16)) | np.asarray(source, dtype=np.uint64)[None, :]).ravel())

    for role, addresses in net.roles.items():
        hosts.append(addresses)
        host_role.append(np.full(len(addresses), ROLES.index(role), np.int8))
        # Windows workstations drop unsolicited probes (firewall on); servers send RST.
        drop = np.full(len(addresses), role == "workstation")
        if role in ("web_server", "app_server", "database"):
            drop = rng.random(len(addresses)) < 0.2  # some servers sit behind a host firewall
        filtered.append(drop)
        ports: tuple[int, ...] = {
            "workstation": WORKSTATION_PORTS,
            "web_server": WEB_PORTS,
            "app_server": APP_PORTS,
            "dns_resolver": DNS_PORTS,
            "k8s_node": NODE_PORTS,
            "k8s_pod": (POD_PORT,),
            "monitoring": (22, 9090, 9100),
            "uptime_checker": (22, 9100),
            "backup_server": (22, BACKUP_STORE_PORT, 9100),
            "ci_runner": (22, 9100),
            "vuln_scanner": (22, 443),
            "nat_gateway": (),
        }.get(role, ())
        if role == "database":
            for port in np.unique(net.db_ports):
                add(addresses[net.db_ports == port], (*DB_PORTS, int(port)), OPEN_UDP["database"])
            continue
        if role == "app_server":
            add(addresses[:1], (8081,))  # the artifact repository
        if role == "workstation":
            # Not every workstation shares files or accepts remote desktop.
            add(addresses, (135,))
            for port in (139, 445, 3389, 5040):
                add(addresses[rng.random(len(addresses)) < 0.5], (port,))
            continue
        add(addresses, ports, OPEN_UDP.get(role, ()))
    order = np.argsort(np.concatenate(hosts), kind="stable")
    net.hosts = np.concatenate(hosts)[order]
    net.filtered = np.concatenate(filtered)[order]
    net.host_role = np.concatenate(host_role)[order]
    net.open_tcp = np.unique(np.concatenate(tcp_keys))
    net.open_udp = np.unique(np.concatenate(udp_keys)) if udp_keys else np.zeros(0, np.uint64)
