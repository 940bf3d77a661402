"""Benign activity of each role for one simulated day, as row blocks.

Each generator draws per (host, hour) counts with numpy and builds whole columns at once;
Python loops run over roles and schedules, never over rows. Periodic activity (scrapes,
probes, backups) has exact, documented counts so tests can check them.
"""

from __future__ import annotations

import numpy as np

from ._blocks import (
    ACK,
    BENIGN_CATEGORIES,
    EST,
    FIN,
    NOREP,
    NS,
    PSH,
    REJ,
    ROLES,
    RST,
    SYN,
    TCP,
    UDP,
    make_block,
)
from ._network import (
    BACKUP_AGENT_PORT,
    BACKUP_STORE_PORT,
    POD_PORT,
    SCRAPE_PORT,
    Network,
)

HOUR = 3600 * NS
DAY = 24 * HOUR

#: Activity multipliers per hour of day (UTC is taken as office time).
WEEKDAY = np.array([0.03, 0.02, 0.02, 0.02, 0.02, 0.03, 0.08, 0.3, 0.8, 1.0, 1.0, 1.0, 0.7, 0.9, 1.0, 1.0, 0.9, 0.6, 0.3, 0.15, 0.1, 0.08, 0.05, 0.04])
WEEKEND = np.array([0.02] * 8 + [0.05, 0.08, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.08, 0.06, 0.05, 0.05, 0.04, 0.03, 0.02, 0.02])

#: Periods of the scheduled activity (seconds).
SCRAPE_INTERVAL_S = 15
PROBE_INTERVAL_S = 10
UPTIME_INTERVAL_S = 60
SANCTIONED_WEEKDAY = 1  # Tuesday
SANCTIONED_HOUR = 2
SANCTIONED_TOP_PORTS = 200
BACKUP_HOUR = 1
BACKUP_STREAMS = 2  # data connections each client opens to the backup server

#: Scenario names of benign activity (the ``scenario`` column).
SCENARIOS = (
    "office-browsing",
    "office-dns",
    "office-internal-apps",
    "web-to-app",
    "app-to-database",
    "database-replication",
    "resolver-recursion",
    "nat-egress",
    "pod-service-calls",
    "kubelet-liveness-probe",
    "kubelet-readiness-probe",
    "prometheus-scrape",
    "uptime-check",
    "nightly-backup-fan-out",
    "nightly-backup-fan-in",
    "ci-job-burst",
    "weekly-vulnerability-scan",
)


def _scenario(name: str) -> int:
    return SCENARIOS.index(name)


def _cat(name: str) -> int:
    return BENIGN_CATEGORIES.index(name)


def profile(weekday: int) -> np.ndarray:
    return WEEKDAY if weekday < 5 else WEEKEND


def poisson_events(rng: np.random.Generator, rates: np.ndarray, day_start: int) -> tuple[np.ndarray, np.ndarray]:
    """Per (entity, hour) Poisson counts -> entity index and event time of each event."""
    counts = rng.poisson(rates)
    entity = np.repeat(np.repeat(np.arange(rates.shape[0]), rates.shape[1]), counts.ravel())
    hour = np.repeat(np.tile(np.arange(rates.shape[1]), rates.shape[0]), counts.ravel())
    t = day_start + hour.astype(np.int64) * HOUR + rng.integers(0, HOUR, size=len(hour))
    return entity, t


def outcomes(rng: np.random.Generator, n: int, p_rejected: float, p_no_reply: float) -> np.ndarray:
    u = rng.random(n)
    out = np.full(n, EST, dtype=np.int8)
    out[u < p_rejected + p_no_reply] = NOREP
    out[u < p_rejected] = REJ
    return out


def traffic(rng: np.random.Generator, outcome: np.ndarray, proto: int, src_bytes: float | np.ndarray, dst_bytes: float | np.ndarray, duration_s: float, spread: float = 1.0) -> dict[str, np.ndarray]:
    """Bytes, packets, duration and TCP flags consistent with each outcome.

    ``spread`` scales the log-normal spread: machine-to-machine polling (scrapes, probes)
    repeats nearly the same exchange, so it uses a small one.
    """
    n = len(outcome)
    est = outcome == EST
    sb = np.where(est, np.round(rng.lognormal(np.log(src_bytes), 0.8 * spread, n)), 0).astype(np.int64)
    db = np.where(est, np.round(rng.lognormal(np.log(dst_bytes), 1.0 * spread, n)), 0).astype(np.int64)
    header = 40 if proto == TCP else 28
    spk = np.where(est, 3 + sb // 1200 + (proto == TCP) * 2, 1 + (rng.random(n) < 0.3) * 2).astype(np.int64)
    dpk = np.where(est, 2 + db // 1400, (outcome == REJ).astype(np.int64)).astype(np.int64)
    if proto != TCP:
        spk = np.where(est, 1 + sb // 1200, 1)
        dpk = np.where(est, 1 + db // 1400, 0)
    sb = sb + spk * header
    db = db + dpk * header
    dur = np.where(est, rng.lognormal(np.log(duration_s), 1.0 * max(spread, 0.3), n), np.where(outcome == REJ, 0.0005, 3.0 * (spk > 1)))
    if proto == TCP:
        flags = np.select([est, outcome == REJ], [FIN | SYN | PSH | ACK, SYN | RST | ACK], SYN).astype(np.int16)
    else:
        flags = np.full(n, -1, dtype=np.int16)
    return {"sbytes": sb, "dbytes": db, "spk": spk, "dpk": dpk, "dur": dur, "flags": flags}


def ephemeral(rng: np.random.Generator, n: int, windows: bool = False) -> np.ndarray:
    return rng.integers(49152, 65536, n) if windows else rng.integers(32768, 61000, n)


def zipf_pick(rng: np.random.Generator, pool: np.ndarray, n: int, a: float = 1.2) -> np.ndarray:
    weights = 1.0 / np.arange(1, len(pool) + 1) ** a
    return pool[rng.choice(len(pool), size=n, p=weights / weights.sum())]


def _conns(rng, t, src, dst, dport, proto, role, category, scenario, p_rej, p_norep, src_bytes, dst_bytes, duration_s, windows=False, sport=None, spread=1.0):
    n = len(t)
    outcome = outcomes(rng, n, p_rej, p_norep)
    return make_block(
        n,
        t=t,
        src=src,
        dst=dst,
        sport=ephemeral(rng, n, windows) if sport is None else sport,
        dport=dport,
        proto=proto,
        outcome=outcome,
        label=0,
        category=_cat(category),
        scenario=_scenario(scenario),
        role=ROLES.index(role),
        **traffic(rng, outcome, proto, src_bytes, dst_bytes, duration_s, spread),
    )


def _periodic(day_start: int, interval_s: int, n_entities: int, rng: np.random.Generator, jitter_ms: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Every entity once per interval all day: entity index and time (fixed phase + jitter)."""
    ticks = DAY // (interval_s * NS)
    phase = rng.integers(0, interval_s * NS, size=n_entities)
    entity = np.repeat(np.arange(n_entities), ticks)
    tick = np.tile(np.arange(ticks, dtype=np.int64), n_entities)
    jitter = rng.integers(0, int(jitter_ms * 1e6) + 1, size=len(tick))
    return entity, day_start + phase[entity] + tick * interval_s * NS + jitter


def benign_day(net: Network, day_start: int, weekday: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Every benign block of one day."""
    prof = profile(weekday)
    blocks = []
    blocks += _workstations(net, day_start, prof, rng)
    blocks += _servers(net, day_start, prof, rng)
    blocks += _resolvers(net, day_start, prof, rng)
    blocks.append(_nat(net, day_start, prof, rng))
    blocks += _kubernetes(net, day_start, rng)
    blocks += _monitoring(net, day_start, rng)
    blocks += _backup(net, day_start, rng)
    blocks.append(_ci(net, day_start, weekday, rng))
    if weekday == SANCTIONED_WEEKDAY:
        blocks.append(sanctioned_scan(net, day_start, rng))
    return blocks


def _workstations(net: Network, day_start: int, prof: np.ndarray, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    ws = net.roles["workstation"]
    # Each person has their own activity level; nights keep a trickle of updates and sync.
    level = rng.gamma(4.0, 1.0 / 4.0, size=len(ws))
    rates = 110.0 * level[:, None] * prof[None, :] + 1.5
    who, t = poisson_events(rng, rates, day_start)
    src = ws[who]
    kind = rng.choice(3, size=len(t), p=[0.55, 0.3, 0.15])
    blocks = []
    web = kind == 0
    n = int(web.sum())
    blocks.append(
        _conns(rng, t[web], src[web], zipf_pick(rng, net.external_web, n), rng.choice([443, 80, 8443, 993], size=n, p=[0.86, 0.1, 0.02, 0.02]), TCP, "workstation", "normal", "office-browsing", 0.01, 0.02, 900, 25_000, 4.0, windows=True)
    )
    dns = kind == 1
    n = int(dns.sum())
    blocks.append(_conns(rng, t[dns], src[dns], rng.choice(net.roles["dns_resolver"], size=n), 53, UDP, "workstation", "normal", "office-dns", 0.0, 0.005, 40, 120, 0.002, windows=True))
    internal = kind == 2
    n = int(internal.sum())
    pool = np.concatenate([net.roles["web_server"], net.roles["app_server"]])
    dst = rng.choice(pool, size=n)
    port = np.where(np.isin(dst, net.roles["web_server"]), 443, 8443)
    # A little SSH and SMB to servers from admins' machines.
    admin = rng.random(n) < 0.05
    port = np.where(admin, rng.choice([22, 445], size=n), port)
    blocks.append(_conns(rng, t[internal], src[internal], dst, port, TCP, "workstation", "normal", "office-internal-apps", 0.02, 0.01, 1500, 12_000, 2.0, windows=True))
    return blocks


def _servers(net: Network, day_start: int, prof: np.ndarray, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    blocks = []
    web, app, db = net.roles["web_server"], net.roles["app_server"], net.roles["database"]
    who, t = poisson_events(rng, 240.0 * prof[None, :].repeat(len(web), 0) + 30.0, day_start)
    blocks.append(_conns(rng, t, web[who], rng.choice(app, size=len(t)), 8080, TCP, "web_server", "normal", "web-to-app", 0.003, 0.002, 1200, 6000, 0.05))
    who, t = poisson_events(rng, 180.0 * prof[None, :].repeat(len(app), 0) + 20.0, day_start)
    target = rng.integers(0, len(db), size=len(t))
    blocks.append(_conns(rng, t, app[who], db[target], net.db_ports[target], TCP, "app_server", "normal", "app-to-database", 0.002, 0.001, 800, 4000, 0.02))
    who, t = poisson_events(rng, np.full((len(db), 24), 6.0), day_start)
    peer = (who + 1) % len(db)
    blocks.append(_conns(rng, t, db[who], db[peer], net.db_ports[peer], TCP, "database", "normal", "database-replication", 0.0, 0.001, 200_000, 2000, 300.0))
    return blocks


def _resolvers(net: Network, day_start: int, prof: np.ndarray, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    res = net.roles["dns_resolver"]
    # Cache misses of the whole office: many distinct authoritative servers on port 53.
    per_hour = 0.35 * 110.0 * 0.3 * len(net.roles["workstation"]) / len(res)
    who, t = poisson_events(rng, per_hour * prof[None, :].repeat(len(res), 0) + 60.0, day_start)
    dst = zipf_pick(rng, net.external_ns, len(t), a=0.8)
    return [_conns(rng, t, res[who], dst, 53, UDP, "dns_resolver", "dns_resolver", "resolver-recursion", 0.0, 0.03, 45, 180, 0.03)]


def _nat(net: Network, day_start: int, prof: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    nat = net.roles["nat_gateway"]
    rate = net.nat_clients * 100.0 * prof[None, :] + 20.0
    _, t = poisson_events(rng, rate, day_start)
    n = len(t)
    dst = zipf_pick(rng, net.external_web, n, a=0.9)
    port = rng.choice([443, 80, 8080, 5223, 3478], size=n, p=[0.82, 0.12, 0.02, 0.02, 0.02])
    # The gateway rewrites source ports from its own pool.
    return _conns(rng, t, np.full(n, nat[0]), dst, port, TCP, "nat_gateway", "nat_gateway", "nat-egress", 0.01, 0.02, 900, 30_000, 5.0, sport=rng.integers(1024, 65536, n))


def _kubernetes(net: Network, day_start: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    pods, nodes = net.roles["k8s_pod"], net.roles["k8s_node"]
    blocks = []
    # Service discovery: microservices call many cluster IPs on their service ports, all day.
    who, t = poisson_events(rng, np.full((len(pods), 24), 45.0), day_start)
    svc = rng.integers(0, len(net.services), size=len(t))
    blocks.append(_conns(rng, t, pods[who], net.services[svc], net.service_ports[svc], TCP, "k8s_pod", "service_discovery", "pod-service-calls", 0.015, 0.005, 600, 2500, 0.03))
    # kubelet probes: each node probes each of its pods every 10 s, a new TCP connection
    # each time; even pods have a liveness probe, odd pods a readiness probe.
    pod, tp = _periodic(day_start, PROBE_INTERVAL_S, len(pods), rng, jitter_ms=5)
    for parity, scenario in enumerate(("kubelet-liveness-probe", "kubelet-readiness-probe")):
        mine = pod % 2 == parity
        blocks.append(_conns(rng, tp[mine], nodes[net.pod_node[pod[mine]]], pods[pod[mine]], POD_PORT, TCP, "k8s_node", "health_check", scenario, 0.0005, 0.0, 120, 160, 0.003, spread=0.01))
    return blocks


def _monitoring(net: Network, day_start: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    targets = net.scrape_targets
    i, t = _periodic(day_start, SCRAPE_INTERVAL_S, len(targets), rng)
    prom = net.roles["monitoring"][0]
    # Each target's metrics page has its own, nearly constant, size.
    page = np.random.default_rng(int(targets.sum()) % 2**32).lognormal(np.log(40_000), 0.5, len(targets))
    blocks = [_conns(rng, t, np.full(len(t), prom), targets[i], SCRAPE_PORT, TCP, "monitoring", "monitoring", "prometheus-scrape", 0.0, 0.0005, 250, page[i], 0.02, spread=0.02)]
    web = net.roles["web_server"]
    i, t = _periodic(day_start, UPTIME_INTERVAL_S, len(web), rng)
    blocks.append(_conns(rng, t, np.full(len(t), net.roles["uptime_checker"][0]), web[i], 443, TCP, "uptime_checker", "monitoring", "uptime-check", 0.0, 0.0005, 600, 9000, 0.05, spread=0.05))
    return blocks


def _backup(net: Network, day_start: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    clients = net.backup_clients
    server = net.roles["backup_server"][0]
    n = len(clients)
    start = day_start + BACKUP_HOUR * HOUR + np.sort(rng.integers(0, 40 * 60 * NS, size=n))
    out = _conns(rng, start, np.full(n, server), clients, BACKUP_AGENT_PORT, TCP, "backup_server", "backup", "nightly-backup-fan-out", 0.0, 0.0, 2000, 4000, 600.0)
    client = np.repeat(np.arange(n), BACKUP_STREAMS)
    t_in = start[client] + rng.integers(NS, 30 * NS, size=len(client))
    fan_in = _conns(rng, t_in, clients[client], np.full(len(client), server), BACKUP_STORE_PORT, TCP, "database", "backup", "nightly-backup-fan-in", 0.0, 0.0, 400_000_000, 20_000, 900.0)
    fan_in["role"] = net.role_of(clients[client])
    return [out, fan_in]


def _ci(net: Network, day_start: int, weekday: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    runners = net.roles["ci_runner"]
    prof = profile(weekday)
    who, job_t = poisson_events(rng, 5.0 * prof[None, :].repeat(len(runners), 0) + 0.2, day_start)
    # A job is a burst: dozens of connections within two minutes to registries, git and artifacts.
    size = rng.integers(20, 90, size=len(job_t))
    job = np.repeat(np.arange(len(job_t)), size)
    t = job_t[job] + rng.integers(0, 120 * NS, size=len(job))
    kind = rng.choice(4, size=len(job), p=[0.55, 0.2, 0.15, 0.1])
    dst = np.select(
        [kind == 0, kind == 1, kind == 2],
        [rng.choice(net.registries, size=len(job)), np.full(len(job), net.artifact_repo), rng.choice(net.registries[:3], size=len(job))],
        rng.choice(net.external_web[:50], size=len(job)),
    ).astype(np.uint32)
    port = np.select([kind == 0, kind == 1, kind == 2], [443, 8081, 22], rng.choice([443, 80, 5000, 9418, 11371], size=len(job)))
    return _conns(rng, t, runners[who[job]], dst, port, TCP, "ci_runner", "ci_runner", "ci-job-burst", 0.01, 0.01, 1500, 200_000, 3.0)


def sanctioned_targets(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """The weekly scan's target range (the whole server subnet) and its ports."""
    from ._network import SERVERS, subnet
    from ._scans import TOP_TCP_PORTS

    servers = np.concatenate([net.roles[r] for r in ("web_server", "app_server", "database")])
    size = 256 * max(1, -(-int((servers.max() - subnet(SERVERS, 256)[0]) + 2) // 256))
    return subnet(SERVERS, size), TOP_TCP_PORTS[:SANCTIONED_TOP_PORTS]


def sanctioned_scan(net: Network, day_start: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The weekly full scan by the sanctioned vulnerability scanner: indistinguishable from an attack."""
    from ._scans import probe_block

    targets, ports = sanctioned_targets(net)
    start = day_start + SANCTIONED_HOUR * HOUR
    block = probe_block(net, rng, np.full(1, net.roles["vuln_scanner"][0]), targets, ports, TCP, start, rate_per_s=200.0)
    block["label"][:] = 0
    block["category"][:] = _cat("sanctioned_scanner")
    block["scan_type"][:] = -1
    block["scenario"][:] = _scenario("weekly-vulnerability-scan")
    block["role"][:] = ROLES.index("vuln_scanner")
    return block
