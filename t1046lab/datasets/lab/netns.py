"""Network namespaces for the scan lab: a bridge in a switch namespace, hosts on veth pairs.

Safety design (see ``docs/lab.md``):

* Every namespace the lab creates carries one random prefix (``t1046-<hex>-``), so what is
  ours can be found, and deleted, by name.
* The bridge lives inside the lab's own *switch* namespace. Each veth pair is created from
  inside the switch namespace with its peer placed straight into the host namespace
  (``ip -n SW link add ... peer name eth0 netns HOST``): no interface of the pair ever exists
  in the root namespace, and no root-namespace interface is touched.
* The lab subnet exists only inside the namespaces: no address in the root namespace, no
  default route anywhere, no NAT, no forwarding to the root namespace.
* :func:`preflight` refuses to start when a namespace with the lab's names exists, or when the
  lab subnet overlaps any address visible in the root or any named namespace.
* :func:`check_targets` refuses any target outside the lab subnet; :class:`LabNetwork` runs
  every command through ``ip netns exec <lab namespace>`` and refuses other namespaces.
* Every process started is kept in a :class:`ProcessRegistry` by PID (its own process group);
  teardown terminates, waits, then kills, and deletes every namespace, on normal exit, on an
  exception, on SIGINT/SIGTERM and at interpreter exit.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self

log = logging.getLogger("t1046lab.datasets.lab")

__all__ = [
    "LabNetwork",
    "LabSafetyError",
    "ProcessRegistry",
    "check_subnet",
    "check_targets",
    "leftover_namespaces",
    "list_namespaces",
    "new_prefix",
    "preflight",
]

#: Every lab namespace name starts with this, then a random part, then ``-``.
PREFIX_ROOT = "t1046-"
#: Upper bound for any single helper command (ip, sysctl, tc).
CMD_TIMEOUT_S = 10.0
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?:/(\d{1,2}))?(?![\d.])")


class LabSafetyError(RuntimeError):
    """The lab refused to do something that could leave its namespaces."""


# ---------------------------------------------------------------------------------------------
# Pure safety checks (no root needed; unit tested)
# ---------------------------------------------------------------------------------------------


def check_subnet(subnet: str | ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    """Parse and vet the lab subnet: IPv4, private, between /16 and /29.

    Raises
    ------
    LabSafetyError
        For a public, loopback, link-local or oversized network.
    """
    try:
        net = ipaddress.ip_network(str(subnet), strict=True)
    except ValueError as exc:
        raise LabSafetyError(f"lab subnet {subnet!r} is not a network address: {exc}") from exc
    if not isinstance(net, ipaddress.IPv4Network):
        raise LabSafetyError(f"lab subnet {net} must be IPv4")
    if not net.is_private or net.is_loopback or net.is_link_local or net.is_multicast:
        raise LabSafetyError(f"lab subnet {net} must be a private (RFC 1918) network")
    if not 16 <= net.prefixlen <= 29:
        raise LabSafetyError(f"lab subnet {net} must be between /16 and /29")
    return net


def check_targets(targets: Iterable[str], subnet: str | ipaddress.IPv4Network) -> list[str]:
    """Refuse any target that is not inside the lab subnet.

    Each target is an IPv4 address or CIDR; network and broadcast addresses of the lab subnet
    are refused too (a scanner aimed there would reach every host, not a chosen target).

    Returns the targets unchanged, so a caller can write ``cmd += check_targets(t, net)``.

    Raises
    ------
    LabSafetyError
        Naming the first target that is empty, unparsable or outside ``subnet``.
    """
    net = check_subnet(subnet)
    out = []
    targets = list(targets)
    if not targets:
        raise LabSafetyError("an activity must name its targets")
    for target in targets:
        text = str(target).strip()
        try:
            tnet = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise LabSafetyError(f"target {text!r} is not an IPv4 address or CIDR; refused") from exc
        if not isinstance(tnet, ipaddress.IPv4Network) or not tnet.subnet_of(net):
            raise LabSafetyError(f"target {text} is outside the lab subnet {net}; refused")
        if tnet.prefixlen == 32 and tnet.network_address in (net.network_address, net.broadcast_address):
            raise LabSafetyError(f"target {text} is the lab subnet's network or broadcast address; refused")
        out.append(text)
    return out


def check_command_addresses(argv: Sequence[str], subnet: str | ipaddress.IPv4Network) -> None:
    """Refuse a command line that mentions any IPv4 address outside the lab subnet.

    A second guard after :func:`check_targets`: the command's text is searched for dotted
    quads (a bash loop hides targets inside a string), and each must be in the subnet; an
    address written with ``/N`` is read as a network, which must lie inside the subnet too.
    ``0.0.0.0`` and loopback addresses are refused as well: the lab never needs them.
    """
    net = check_subnet(subnet)
    for word in argv:
        word = str(word)
        for match in _IPV4.finditer(word):
            # In bash's /dev/tcp/HOST/PORT the "/PORT" is not a prefix length.
            in_devpath = word[: match.start()].endswith(("/dev/tcp/", "/dev/udp/"))
            text = match.group(1) if in_devpath else match.group(0)
            try:
                addr = ipaddress.ip_network(text, strict=False)
            except ValueError as exc:
                raise LabSafetyError(f"command mentions {text!r}, not an address; refused") from exc
            if not addr.subnet_of(net):
                raise LabSafetyError(f"command {' '.join(argv)[:200]!r} mentions {text}, outside {net}; refused")


def new_prefix(random_state: int | None = None) -> str:
    """A namespace name prefix ``t1046-<6 hex>-``; random unless ``random_state`` is given.

    The prefix only names namespaces; a fixed one would collide between concurrent labs, so
    the default is random even when the scenario is seeded.
    """
    part = secrets.token_hex(3) if random_state is None else f"{random_state & 0xFFFFFF:06x}"
    return f"{PREFIX_ROOT}{part}-"


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _run(argv: Sequence[str], *, timeout: float = CMD_TIMEOUT_S, check: bool = True) -> subprocess.CompletedProcess:
    """Run one short helper command with a timeout; raise with its stderr when it fails."""
    log.debug("run %s", " ".join(argv))
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return proc


def _ns_sysctl(ns: str, key: str, value: str) -> None:
    """Set a ``net.*`` sysctl inside namespace ``ns`` only (``net.*`` keys are per namespace).

    Written through ``/proc/sys`` from a shell inside the namespace, so procps need not be
    installed; key and value are passed as arguments, never spliced into the shell text.
    """
    if not re.fullmatch(r"net\.[a-z0-9_]+(\.[a-z0-9_]+)+", key) or not re.fullmatch(r"-?[0-9]+", value):
        raise LabSafetyError(f"only per-namespace net.* sysctls with integer values may be set, not {key}={value}")
    if not ns.startswith(PREFIX_ROOT):
        raise LabSafetyError(f"refusing to set {key} outside a lab namespace ({ns})")
    path = "/proc/sys/" + key.replace(".", "/")
    _run(["ip", "netns", "exec", ns, "sh", "-c", 'echo "$1" > "$2"', "sh", value, path])


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def leftover_namespaces(prefix: str = PREFIX_ROOT) -> list[str]:
    """Named namespaces whose name starts with ``prefix``."""
    return [name for name in list_namespaces() if name.startswith(prefix)]


def _visible_networks() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """Every IPv4 address in the root namespace and in every named namespace."""
    found: list[tuple[str, ipaddress.IPv4Interface]] = []

    def parse(where: str, text: str) -> None:
        for line in text.splitlines():
            parts = line.split()
            if "inet" in parts:
                found.append((where, ipaddress.IPv4Interface(parts[parts.index("inet") + 1])))

    parse("root namespace", _run(["ip", "-o", "-4", "addr", "show"]).stdout)
    for name in list_namespaces():
        proc = _run(["ip", "-n", name, "-o", "-4", "addr", "show"], check=False)
        parse(f"namespace {name}", proc.stdout)
    return found


def preflight(names: Iterable[str], subnet: str | ipaddress.IPv4Network) -> None:
    """Refuse to build when a lab namespace name or the lab subnet is already in use.

    Raises
    ------
    LabSafetyError
        Naming the namespace or the address that collides.
    """
    net = check_subnet(subnet)
    existing = set(list_namespaces())
    clash = sorted(set(names) & existing)
    if clash:
        raise LabSafetyError(f"network namespace(s) {', '.join(clash)} already exist; the lab will not reuse them")
    for where, iface in _visible_networks():
        if iface.network.overlaps(net):
            raise LabSafetyError(f"lab subnet {net} overlaps {iface} in the {where}; choose another --subnet")


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


@dataclass
class Started:
    """One process the lab started."""

    name: str
    argv: list[str]
    popen: subprocess.Popen
    started: float
    returncode: int | None = None


class ProcessRegistry:
    """Processes the lab started, by PID; each runs in its own process group.

    ``stop`` sends SIGTERM to the group the lab created for that process, waits, then SIGKILL.
    Nothing else is ever signalled.
    """

    def __init__(self, logfile: IO[str] | None = None) -> None:
        self._procs: dict[int, Started] = {}
        self._lock = threading.Lock()
        self.logfile = logfile

    def _log(self, text: str) -> None:
        log.info(text)
        if self.logfile is not None and not self.logfile.closed:
            stamp = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}"
            self.logfile.write(f"{stamp} {text}\n")
            self.logfile.flush()

    def spawn(self, name: str, argv: Sequence[str], *, stdout: Any = subprocess.DEVNULL, stderr: Any = subprocess.DEVNULL, env: dict | None = None) -> Started:
        popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True, env=env)
        entry = Started(name, list(argv), popen, time.time())
        with self._lock:
            self._procs[popen.pid] = entry
        self._log(f"start {name} pid={popen.pid}: {' '.join(argv)}")
        return entry

    def wait(self, entry: Started, timeout: float) -> int | None:
        """Wait up to ``timeout`` s; return the exit code, or None (still running)."""
        try:
            rc = entry.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._finished(entry, rc)
        return rc

    def _finished(self, entry: Started, rc: int) -> None:
        with self._lock:
            if entry.returncode is None:
                entry.returncode = rc
                self._log(f"exit {entry.name} pid={entry.popen.pid} rc={rc} after {time.time() - entry.started:.1f}s")

    def stop(self, entry: Started, grace: float = 3.0) -> int | None:
        """Terminate the process group the lab made for ``entry``; kill it after ``grace`` s."""
        pid = entry.popen.pid
        if entry.popen.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
                try:
                    os.killpg(pid, sig)  # the group id is the PID we started (start_new_session)
                except ProcessLookupError:
                    break
                try:
                    entry.popen.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    self._log(f"{entry.name} pid={pid} ignored {sig.name}")
        rc = entry.popen.poll()
        if rc is not None:
            self._finished(entry, rc)
        return rc

    def stop_all(self) -> None:
        with self._lock:
            entries = list(self._procs.values())
        for entry in reversed(entries):
            if entry.popen.poll() is None:
                self.stop(entry)
            else:
                self._finished(entry, entry.popen.returncode)

    @property
    def entries(self) -> list[Started]:
        with self._lock:
            return list(self._procs.values())


#: Answers ARP requests for the addresses given (argv: MAC, addresses...) from a silent host.
#: Bounded: it exits by itself after an hour, and the lab stops it by PID long before.
ARP_RESPONDER = r"""
import socket, struct, sys, time
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
mine = {socket.inet_aton(a) for a in sys.argv[2:]}
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(("eth0", 0))
s.settimeout(1.0)
deadline = time.monotonic() + 3600
while time.monotonic() < deadline:
    try:
        frame = s.recv(2048)
    except socket.timeout:
        continue
    if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[20:22] != b"\x00\x01":
        continue
    sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
    if tpa not in mine:
        continue
    reply = sha + mac + b"\x08\x06" + struct.pack(">HHBBH", 1, 0x0800, 6, 4, 2) + mac + tpa + sha + spa
    s.send(reply)
"""


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------


@dataclass
class HostSpec:
    """A host namespace: a short name, its addresses and per-namespace options."""

    name: str
    addresses: list[str]
    mac: str | None = None
    forwarding: bool = False  # one-armed router for masscan / zmap
    silent: str | None = None  # None, "drop-ip" (answers ARP, drops IP) or "no-arp" (arp_ignore=8)


@dataclass
class LabNetwork:
    """A bridge in a switch namespace and host namespaces on veth pairs, all under ``prefix``.

    Use as a context manager; ``__exit__`` (and the signal/atexit hooks) tear everything down.
    """

    subnet: str
    prefix: str = field(default_factory=new_prefix)
    registry: ProcessRegistry = field(default_factory=ProcessRegistry)
    hosts: dict[str, HostSpec] = field(default_factory=dict)
    _created: list[str] = field(default_factory=list)
    _torn_down: bool = False

    def __post_init__(self) -> None:
        self.net = check_subnet(self.subnet)
        if not self.prefix.startswith(PREFIX_ROOT) or not re.fullmatch(r"[a-z0-9-]{1,24}", self.prefix):
            raise LabSafetyError(f"namespace prefix {self.prefix!r} must start with {PREFIX_ROOT!r}")

    # names ------------------------------------------------------------------------------
    @property
    def switch(self) -> str:
        return f"{self.prefix}sw"

    def ns(self, host: str) -> str:
        if host == "sw":
            return self.switch
        if host not in self.hosts:
            raise LabSafetyError(f"{host!r} is not a lab host")
        return f"{self.prefix}{host}"

    def namespace_names(self, hosts: Iterable[str]) -> list[str]:
        return [self.switch] + [f"{self.prefix}{h}" for h in hosts]

    # build ------------------------------------------------------------------------------
    def build(self, hosts: Sequence[HostSpec]) -> None:
        """Preflight, then create the switch and every host. Nothing is left on failure."""
        for spec in hosts:
            for addr in spec.addresses:
                check_targets([addr], self.net)
        preflight(self.namespace_names(h.name for h in hosts), self.net)
        _install_cleanup(self)
        sw = self.switch
        self._add_ns(sw)
        _run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"])
        _run(["ip", "-n", sw, "link", "set", "br0", "up"])
        for i, spec in enumerate(hosts):
            self.hosts[spec.name] = spec
            ns = self.ns(spec.name)
            self._add_ns(ns)
            port = f"p{i}"
            # The veth is born inside the switch namespace with its peer placed directly in the
            # host namespace: no end ever appears in the root namespace.
            _run(["ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
            _run(["ip", "-n", sw, "link", "set", port, "master", "br0", "up"])
            if spec.mac:
                _run(["ip", "-n", ns, "link", "set", "eth0", "address", spec.mac])
            if spec.silent != "drop-ip":
                for addr in spec.addresses:
                    _run(["ip", "-n", ns, "addr", "add", f"{addr}/{self.net.prefixlen}", "dev", "eth0"])
            # No multicast: keeps IGMP membership reports (from 0.0.0.0 on the silent host) off the wire.
            _run(["ip", "-n", ns, "link", "set", "eth0", "multicast", "off", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            if spec.forwarding:
                self.sysctl(spec.name, "net.ipv4.ip_forward", "1")
                # A one-armed router would otherwise tell senders to go direct.
                self.sysctl(spec.name, "net.ipv4.conf.all.send_redirects", "0")
                self.sysctl(spec.name, "net.ipv4.conf.eth0.send_redirects", "0")
            if spec.silent == "no-arp":
                self.sysctl(spec.name, "net.ipv4.conf.eth0.arp_ignore", "8")
                self.sysctl(spec.name, "net.ipv4.conf.all.arp_ignore", "8")
            elif spec.silent == "drop-ip":
                # Answers ARP for its addresses (as a firewalled host on a live LAN would) but owns
                # no IP address, so the kernel drops every IP packet silently (forwarding is off:
                # no ICMP). tc/iptables drop actions are not available on every kernel; this
                # needs only an AF_PACKET socket in the namespace.
                self.spawn(f"arp-responder {spec.name}", spec.name,
                           [sys.executable, "-c", ARP_RESPONDER, self.mac(spec.name), *spec.addresses])
        log.info("lab network %s built: %d hosts on %s", self.prefix, len(hosts), self.net)

    def _add_ns(self, name: str) -> None:
        _run(["ip", "netns", "add", name])
        self._created.append(name)
        # Per-namespace sysctls only: no IPv6 chatter (router solicitations, MLD) on the wire.
        _ns_sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")
        _ns_sysctl(name, "net.ipv6.conf.default.disable_ipv6", "1")

    def sysctl(self, host: str, key: str, value: str) -> None:
        _ns_sysctl(self.ns(host), key, value)

    def mac(self, host: str) -> str:
        out = _run(["ip", "-n", self.ns(host), "-o", "link", "show", "eth0"]).stdout
        return out.split("link/ether", 1)[1].split()[0]

    # commands ---------------------------------------------------------------------------
    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``ip netns exec <lab ns> argv``, after checking every address ``argv`` mentions."""
        check_command_addresses(argv, self.net)
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def spawn(self, name: str, host: str, argv: Sequence[str], **kw: Any) -> Started:
        return self.registry.spawn(name, self.command(host, argv), **kw)

    def run(self, host: str, argv: Sequence[str], timeout: float = CMD_TIMEOUT_S) -> subprocess.CompletedProcess:
        return _run(self.command(host, argv), timeout=timeout, check=False)

    # teardown ---------------------------------------------------------------------------
    def teardown(self) -> list[str]:
        """Stop every process started, then delete every namespace created. Idempotent.

        Returns the names that could not be deleted (empty when all is clean).
        """
        global _TEARING_DOWN
        if self._torn_down:
            return []
        self._torn_down = True
        # A SIGINT/SIGTERM arriving now is held until the namespaces are gone (see _on_signal).
        _TEARING_DOWN += 1
        failed: list[str] = []
        try:
            try:
                self.registry.stop_all()
            finally:
                for name in reversed(self._created):
                    # A namespace stays alive while a process holds it: anything still inside one
                    # of OUR namespaces descends from what we started; stop it by PID.
                    self._kill_inside(name)
                    proc = _run(["ip", "netns", "del", name], check=False)
                    if proc.returncode != 0 and name in list_namespaces():
                        failed.append(name)
                _uninstall_cleanup(self)
        finally:
            _TEARING_DOWN -= 1
        if failed:
            log.error("could not delete lab namespaces: %s", ", ".join(failed))
        else:
            log.info("lab network %s torn down", self.prefix)
        if _TEARING_DOWN == 0 and _PENDING:
            signum, previous = _PENDING.pop(0)
            _PENDING.clear()
            _dispatch(signum, previous, None)
        return failed

    def _kill_inside(self, ns: str) -> None:
        proc = _run(["ip", "netns", "pids", ns], check=False)
        pids = [int(p) for p in proc.stdout.split() if p.isdigit() and int(p) != os.getpid()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 2.0
            while pids and time.monotonic() < deadline:
                pids = [p for p in pids if Path(f"/proc/{p}").exists()]
                time.sleep(0.05)
            if not pids:
                break

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()


# ---------------------------------------------------------------------------------------------
# Cleanup on signals and at exit
# ---------------------------------------------------------------------------------------------

_ACTIVE: list[LabNetwork] = []
_PREVIOUS: dict[int, Any] = {}
_ATEXIT = False


def _teardown_all() -> None:
    for lab in _ACTIVE:
        try:
            lab.teardown()
        except Exception:
            log.exception("lab teardown failed")


_TEARING_DOWN = 0
_PENDING: list[tuple[int, Any]] = []


def _dispatch(signum: int, previous: Any, frame: Any) -> None:
    if callable(previous):
        previous(signum, frame)
    elif signum == signal.SIGINT:
        raise KeyboardInterrupt
    else:
        raise SystemExit(128 + signum)


def _on_signal(signum: int, frame: Any) -> None:
    previous = _PREVIOUS.get(signum)
    if _TEARING_DOWN:
        # Raising inside a teardown would leave namespaces behind: finish it, then re-raise.
        _PENDING.append((signum, previous))
        return
    _teardown_all()
    _dispatch(signum, previous, frame)


def _install_cleanup(lab: LabNetwork) -> None:
    global _ATEXIT
    _ACTIVE.append(lab)
    if not _ATEXIT:
        atexit.register(_teardown_all)
        _ATEXIT = True
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(sig)
            if current is not _on_signal:
                _PREVIOUS[sig] = current
                signal.signal(sig, _on_signal)


def _uninstall_cleanup(lab: LabNetwork) -> None:
    if lab in _ACTIVE:
        _ACTIVE.remove(lab)
    if not _ACTIVE and threading.current_thread() is threading.main_thread():
        for sig, previous in list(_PREVIOUS.items()):
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            del _PREVIOUS[sig]
