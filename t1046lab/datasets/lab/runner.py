"""Run a scan-lab scenario: build the namespaces, start services, capture, run the timeline.

Outputs (in ``out_dir``): ``capture.pcap`` (tcpdump on the bridge inside the switch namespace),
``ground_truth.csv`` (one row per activity), ``connections.parquet`` (the pcap read by
``t1046lab.read(..., format="pcap")`` with label columns) and ``lab.log``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .groundtruth import ground_truth_frame, label_connections
from .netns import (
    HostSpec,
    LabNetwork,
    LabSafetyError,
    ProcessRegistry,
    Started,
    check_subnet,
    check_targets,
    new_prefix,
)
from .scenarios import Activity, Scenario, get_scenario

log = logging.getLogger("t1046lab.datasets.lab")

__all__ = ["DEFAULT_SUBNET", "LabResult", "LabUnavailableError", "lab_available", "label_directory", "required_tools", "run_lab"]

#: The lab's default subnet: private, and unlikely to be routed anywhere near a lab machine.
DEFAULT_SUBNET = "10.146.46.0/24"
ROUTER_MAC = "02:46:10:46:00:01"
_SERVICE_TOOLS = {"http": None, "sshd": "sshd", "tcp": "socat", "udp": "socat", "dns": "dnsmasq", "node_exporter": "prometheus-node-exporter"}
_TOOL_BINARIES = {"nc+curl": ("nc", "curl"), "python-dns": (), "bash": ("bash", "timeout")}


class LabUnavailableError(RuntimeError):
    """The lab cannot run here (not Linux, not root, or a tool is missing)."""


@dataclass
class ActivityRun:
    """What happened to one activity."""

    activity: Activity
    argv: list[str]
    sources: list[str]
    targets: list[str]
    start: datetime | None = None
    end: datetime | None = None
    pid: int | None = None
    exit_code: int | None = None
    status: str = "pending"  # pending, running, finished, stopped, timeout
    entry: Started | None = None


@dataclass
class LabResult:
    """The outputs of one lab run."""

    scenario: str
    out_dir: Path
    capture: Path
    ground_truth: pd.DataFrame
    connections: pd.DataFrame | None
    log: Path
    prefix: str
    subnet: str
    duration_s: float
    packets: int | None = None
    paths: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        n = "n/a" if self.connections is None else f"{len(self.connections):,}"
        return (f"LabResult(scenario={self.scenario!r}, activities={len(self.ground_truth)}, "
                f"packets={self.packets}, connections={n}, out_dir='{self.out_dir}')")


# ---------------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------------


def required_tools(scenario: Scenario) -> list[str]:
    """Executables the scenario needs (besides ip, tcpdump)."""
    tools = {"ip", "tcpdump", "ss", "bash", "sh"}
    for svc in scenario.services:
        if _SERVICE_TOOLS.get(svc.kind):
            tools.add(_SERVICE_TOOLS[svc.kind])
    for act in scenario.activities:
        tools.update(_TOOL_BINARIES.get(act.tool, (act.tool,)))
        if act.tool == "ssh":
            tools.add("ssh-keygen")
    return sorted(tools)


def _which(tool: str) -> str | None:
    path = shutil.which(tool)
    if path is None:
        for d in ("/usr/sbin", "/sbin", "/usr/bin"):
            if os.access(f"{d}/{tool}", os.X_OK):
                return f"{d}/{tool}"
    return path


def lab_available(scenario: str = "smoke") -> tuple[bool, str]:
    """``(True, "")`` when the lab can run here, else ``(False, reason)``."""
    if platform.system() != "Linux":
        return False, "the scan lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return False, "the scan lab needs root (it creates network namespaces): run it with sudo"
    missing = [t for t in required_tools(get_scenario(scenario)) if _which(t) is None]
    if missing:
        return False, f"missing tools: {', '.join(missing)} (Debian: apt-get install the packages in .ci/run)"
    # Root in an unprivileged container may still lack CAP_SYS_ADMIN: try an anonymous
    # network namespace (it vanishes with the process; nothing is left behind).
    unshare = _which("unshare")
    if unshare is not None:
        try:
            probe = subprocess.run([unshare, "--net", "true"], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"cannot create a network namespace here: {exc}"
        if probe.returncode != 0:
            return False, f"cannot create a network namespace here: {probe.stderr.strip()[:200]}"
    return True, ""


# ---------------------------------------------------------------------------------------------
# Planning: every address resolved and checked before anything is built
# ---------------------------------------------------------------------------------------------


def _addresses(scenario: Scenario, net: ipaddress.IPv4Network) -> dict[str, list[str]]:
    out = {}
    for host in scenario.hosts:
        addrs = []
        for off in host.offsets:
            if not 0 < off < net.num_addresses - 1:
                raise LabSafetyError(f"host {host.name}: offset {off} is outside {net}")
            addrs.append(str(net.network_address + off))
        out[host.name] = addrs
    return out


def _resolve(name: str, addrs: dict[str, list[str]], net: ipaddress.IPv4Network) -> str:
    if name in addrs:
        return addrs[name][0]
    if name.isdigit():
        return str(net.network_address + int(name))
    return name  # an address written out; check_targets vets it


def plan(scenario: Scenario, subnet: str, tmp: str) -> tuple[dict[str, list[str]], list[ActivityRun]]:
    """Resolve hosts, targets and commands; refuse anything outside ``subnet``."""
    net = check_subnet(subnet)
    for host in scenario.hosts:
        # Host names become namespace names (after the prefix); "sw" is the switch.
        if not re.fullmatch(r"[a-z][a-z0-9]{0,11}", host.name) or host.name == "sw":
            raise ValueError(f"host name {host.name!r}: use 1-12 lowercase letters and digits, not 'sw'")
    addrs = _addresses(scenario, net)
    context: dict[str, str] = {name: a[0] for name, a in addrs.items()}
    context.update(tmp=tmp, router_mac=ROUTER_MAC)
    runs = []
    seen = set()
    for act in scenario.activities:
        if act.id in seen:
            raise ValueError(f"duplicate activity id {act.id!r}")
        seen.add(act.id)
        if act.actor not in addrs:
            raise ValueError(f"activity {act.id}: actor {act.actor!r} is not a host of scenario {scenario.name}")
        targets = check_targets([_resolve(t, addrs, net) for t in act.targets], net)
        decoys = check_targets([_resolve(str(d), addrs, net) for d in act.decoys], net) if act.decoys else []
        ctx = dict(context, targets_str=" ".join(targets), decoys=",".join(decoys))
        argv: list[str] = []
        for word in act.argv:
            if word == "{targets}":
                argv.extend(targets)
            else:
                argv.append(word.format(**ctx) if "{" in word and act.tool != "python-dns" else word)
        if act.tool == "python-dns":  # the script is literal; only the trailing arguments are templates
            argv = [argv[0], argv[1], argv[2]] + [w.format(**ctx) for w in argv[3:]]
            argv[0] = sys.executable if argv[0] == "python3" else argv[0]
        runs.append(ActivityRun(act, argv, addrs[act.actor][:1] + decoys, targets))
    return addrs, runs


# ---------------------------------------------------------------------------------------------
# Files the services need
# ---------------------------------------------------------------------------------------------


def _prepare_files(tmp: Path, scenario: Scenario, addrs: dict[str, list[str]]) -> None:
    (tmp / "www").mkdir()
    (tmp / "www" / "index.html").write_text("<html><body>t1046lab scan lab</body></html>\n")
    (tmp / "empty-blocklist").write_text("")
    (tmp / "prometheus-data").mkdir()
    exporters = sorted({f"{addrs[s.host][0]}:{s.port}" for s in scenario.services if s.kind == "node_exporter"})
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 2s\n  scrape_timeout: 1s\n  evaluation_interval: 1m\n"
        "scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ["
        + ", ".join(f"'{e}'" for e in exporters) + "]\n"
    )
    if any(s.kind == "sshd" for s in scenario.services) or any(a.tool == "ssh" for a in scenario.activities):
        for key in ("ssh_host_ed25519_key", "id_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t1046lab", "-f", str(tmp / key)],
                           check=True, timeout=10, capture_output=True)
        (tmp / "authorized_keys").write_text((tmp / "id_ed25519.pub").read_text())
        os.chmod(tmp / "authorized_keys", 0o600)


def _service_argv(svc: Any, addr: str, tmp: Path, dns_names: dict[str, str]) -> list[str]:
    if svc.kind == "http":
        return [sys.executable, "-m", "http.server", str(svc.port), "--bind", addr, "--directory", str(tmp / "www")]
    if svc.kind == "sshd":
        cfg = tmp / f"sshd_config_{svc.host}"
        cfg.write_text(
            f"ListenAddress {addr}:{svc.port}\nHostKey {tmp}/ssh_host_ed25519_key\nPidFile {tmp}/sshd_{svc.host}.pid\n"
            f"AuthorizedKeysFile {tmp}/authorized_keys\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\nPrintMotd no\n"
        )
        return [_which("sshd") or "/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)]
    if svc.kind == "tcp":
        return ["socat", f"TCP-LISTEN:{svc.port},bind={addr},reuseaddr,fork", "SYSTEM:echo t1046lab"]
    if svc.kind == "udp":
        return ["socat", f"UDP-RECVFROM:{svc.port},bind={addr},fork", "SYSTEM:echo t1046lab"]
    if svc.kind == "dns":
        names = [f"--host-record={h}.lab,{a}" for h, a in sorted(dns_names.items())]
        return [_which("dnsmasq") or "dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
                f"--listen-address={addr}", f"--port={svc.port}", "--user=root", "--group=root", f"--pid-file={tmp}/dnsmasq.pid",
                "--log-facility=-", *names]
    if svc.kind == "node_exporter":
        return ["prometheus-node-exporter", f"--web.listen-address={addr}:{svc.port}", "--log.level=warn"]
    raise ValueError(f"unknown service kind {svc.kind!r}")


def _listening(lab: LabNetwork, host: str, proto: str) -> set[int]:
    flag = "-Hltn" if proto == "tcp" else "-Hlun"
    out = lab.run(host, ["ss", flag]).stdout
    ports = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and ":" in parts[3]:
            tail = parts[3].rsplit(":", 1)[1]
            if tail.isdigit():
                ports.add(int(tail))
    return ports


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def run_lab(scenario: str | Scenario = "smoke", out_dir: str | os.PathLike = "lab-out", random_state: int = 0, *,
            subnet: str = DEFAULT_SUBNET, prefix: str | None = None, read_connections: bool = True) -> LabResult:
    """Run a lab scenario end to end and write its outputs.

    Parameters
    ----------
    scenario : str or Scenario
        ``"smoke"`` (about 30 s) or ``"full"`` (about 45 s), or a :class:`Scenario`.
    out_dir : path
        Directory for ``capture.pcap``, ``ground_truth.csv``, ``connections.parquet``, ``lab.log``.
    random_state : int
        Seeds what the lab randomises (the DNS client's query ids). Wall-clock timing and kernel
        choices (ephemeral ports, sequence numbers) are not reproducible.
    subnet : str
        The private /24 (or smaller) that exists only inside the lab's namespaces.
    prefix : str, optional
        Namespace name prefix (``t1046-<hex>-``); random by default.
    read_connections : bool
        Read the capture with ``t1046lab.read(..., format="pcap")`` and write the labelled frame.

    Returns
    -------
    LabResult

    Raises
    ------
    LabUnavailableError
        Not Linux, not root, or a tool is missing.
    LabSafetyError
        A target outside the lab subnet, or lab namespace names / subnet already in use.
    """
    scen = get_scenario(scenario) if isinstance(scenario, str) else scenario
    ok, reason = lab_available(scen.name if isinstance(scenario, str) else "smoke")
    if ok and not isinstance(scenario, str):
        missing = [t for t in required_tools(scen) if _which(t) is None]
        ok, reason = (not missing), f"missing tools: {', '.join(missing)}"
    if not ok:
        raise LabUnavailableError(reason)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="t1046lab-lab-"))
    addrs, runs = plan(scen, subnet, str(tmp))  # every target checked before anything is built
    dns_names = {h.name: addrs[h.name][0] for h in scen.hosts if h.role == "server"}
    for r in runs:  # the DNS client's seed
        if r.activity.tool == "python-dns":
            r.argv[2] = r.argv[2].replace("random.Random(0)", f"random.Random({int(random_state)})")

    logf = open(out / "lab.log", "w", encoding="utf-8")  # noqa: SIM115 - closed in the finally below
    registry = ProcessRegistry(logf)
    lab = LabNetwork(subnet, prefix=prefix or new_prefix(), registry=registry)
    registry._log(f"scenario {scen.name}: {scen.description}")
    registry._log(f"subnet {lab.net}, namespace prefix {lab.prefix}, random_state {random_state}")
    capture = out / "capture.pcap"
    made_run_sshd = False
    t_begin = time.monotonic()
    packets = None
    try:
        _prepare_files(tmp, scen, addrs)
        specs = [HostSpec(h.name, addrs[h.name], mac=ROUTER_MAC if h.forwarding else None, forwarding=h.forwarding, silent=h.silent)
                 for h in scen.hosts]
        lab.build(specs)
        for h in scen.hosts:
            registry._log(f"host {h.name} ({h.role}) ns={lab.ns(h.name)} addresses={' '.join(addrs[h.name])}"
                          + (f" silent={h.silent}" if h.silent else ""))

        registry._log("tool versions: " + _tool_versions(lab, required_tools(scen)))

        # Capture first. A one-armed router puts every masscan/zmap probe on the wire twice
        # (sender -> router, router -> target): the filter keeps the first copy only.
        router = [h for h in scen.hosts if h.forwarding]
        bpf = []
        if router:
            bpf = ["not", "(", "ether", "src", ROUTER_MAC, "and", "not", "src", "host", addrs[router[0].name][0], ")"]
        with open(tmp / "tcpdump.err", "w") as tcpdump_err:  # the child keeps its own descriptor
            lab.spawn("tcpdump", "sw", ["tcpdump", "-i", "br0", "-n", "-U", "-s", "256", "-w", str(capture), *bpf],
                      stderr=tcpdump_err)
        _wait_for(lambda: "listening on" in (tmp / "tcpdump.err").read_text(), 5.0, "tcpdump did not start")

        if any(s.kind == "sshd" for s in scen.services) and not Path("/run/sshd").exists():
            # sshd insists on its privilege-separation directory; create it only if absent, remove it after.
            Path("/run/sshd").mkdir(mode=0o755)
            made_run_sshd = True
        for i, svc in enumerate(scen.services):
            addr = addrs[svc.host][0]
            with open(tmp / f"service-{i}.out", "w") as svc_out:
                lab.spawn(f"service {svc.kind} {svc.host}:{svc.port}", svc.host, _service_argv(svc, addr, tmp, dns_names),
                          stdout=svc_out, stderr=subprocess.STDOUT)
        for svc in scen.services:
            proto = "udp" if svc.kind in ("udp", "dns") else "tcp"
            _wait_for(lambda svc=svc, proto=proto: svc.port in _listening(lab, svc.host, proto), 10.0,
                      f"service {svc.kind} on {svc.host}:{svc.port} did not start listening")
        registry._log("all services listening")

        _timeline(lab, scen, runs, tmp)
        time.sleep(1.0)  # late replies
    finally:
        try:
            for e in registry.entries:
                if e.name == "tcpdump":
                    registry.stop(e)
                    err = (tmp / "tcpdump.err").read_text() if (tmp / "tcpdump.err").exists() else ""
                    for line in err.splitlines():
                        if "packets captured" in line:
                            packets = int(line.split()[0])
                        if "packets" in line:
                            registry._log(f"tcpdump: {line.strip()}")
            failed = lab.teardown()
            if failed:
                registry._log(f"ERROR could not delete namespaces {failed}")
            else:
                registry._log(f"all namespaces with prefix {lab.prefix} deleted")
        finally:
            if made_run_sshd:
                try:
                    Path("/run/sshd").rmdir()
                except OSError:
                    pass
            for r in runs:
                if r.entry is not None and r.end is None:
                    r.end = datetime.now(UTC)
                    r.exit_code = r.entry.returncode
                    r.status = "stopped"
            for r in runs:
                if r.entry is not None:
                    _log_output(registry, r, tmp)
            for i, svc in enumerate(scen.services):
                path = tmp / f"service-{i}.out"
                if path.exists():
                    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
                    registry._log(f"service {svc.kind} {svc.host}:{svc.port} output ({len(lines)} lines), last:")
                    for ln in lines[-3:]:
                        registry._log(f"    | {ln[:200]}")
            shutil.rmtree(tmp, ignore_errors=True)
            logf.flush()

    try:
        gt = ground_truth_frame(runs, scen.name)
        gt.to_csv(out / "ground_truth.csv", index=False)
        conns = None
        if read_connections:
            conns = _read_and_label(capture, gt, scen.name, registry)
            if conns is not None:
                conns.to_parquet(out / "connections.parquet", index=False)
                registry._log(f"wrote {len(conns):,} labelled connections")
        duration = time.monotonic() - t_begin
        registry._log(f"done in {duration:.1f}s")
    finally:
        logf.close()
    paths = {"capture": capture, "ground_truth": out / "ground_truth.csv", "log": out / "lab.log"}
    if conns is not None:
        paths["connections"] = out / "connections.parquet"
    return LabResult(scen.name, out, capture, gt, conns, out / "lab.log", lab.prefix, str(lab.net), duration, packets, paths)


_VERSION_FLAGS = {"nmap": "--version", "masscan": "--version", "zmap": "--version", "hping3": "--version",
                  "tcpdump": "--version", "ssh": "-V", "dnsmasq": "--version", "prometheus": "--version",
                  "prometheus-node-exporter": "--version", "socat": "-V", "curl": "--version", "nc": "-h"}


def _tool_versions(lab: LabNetwork, tools: list[str]) -> str:
    """``tool version; ...`` for the datasheet; run inside the switch namespace (no scanner
    ever runs in the root namespace, not even to print its version)."""
    out = []
    for tool in tools:
        flag = _VERSION_FLAGS.get(tool)
        if flag is None:
            continue
        text = lab.run("sw", [tool, flag], timeout=10)
        lines = (text.stdout + "\n" + text.stderr).splitlines()
        line = next((ln for ln in lines if re.search(r"\d+\.\d+", ln)), "")
        match = re.search(r"(\d+\.\d+(?:\.\d+)?[\w.+~-]*)", line)
        out.append(f"{tool} {match.group(1) if match else '?'}")
    return "; ".join(out)


def _wait_for(cond: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise RuntimeError(message)


def _start(lab: LabNetwork, run: ActivityRun, tmp: Path) -> None:
    act = run.activity
    outf = open(tmp / f"{act.id}.out", "w")  # noqa: SIM115 - the child keeps its own copy
    run.start = datetime.now(UTC)
    run.entry = lab.spawn(f"activity {act.id}", act.actor, run.argv, stdout=outf, stderr=subprocess.STDOUT)
    outf.close()
    run.pid = run.entry.popen.pid
    run.status = "running"


def _finish(lab: LabNetwork, run: ActivityRun, status: str) -> None:
    assert run.entry is not None
    if status == "finished":
        rc = lab.registry.wait(run.entry, 0)
    else:
        rc = lab.registry.stop(run.entry)
    run.end = datetime.now(UTC)
    run.exit_code = rc
    run.status = status


def _timeline(lab: LabNetwork, scen: Scenario, runs: list[ActivityRun], tmp: Path) -> None:
    """Start each activity at its offset; stop one-shots at their timeout, loops at the end."""
    t0 = time.monotonic()
    pending = sorted(runs, key=lambda r: r.activity.start)
    running: list[ActivityRun] = []
    max_iter = int(scen.max_duration / 0.05) + 100  # bounded in count as well as in time
    for _ in range(max_iter):
        now = time.monotonic() - t0
        while pending and pending[0].activity.start <= now:
            run = pending.pop(0)
            _start(lab, run, tmp)
            running.append(run)
        for run in list(running):
            act = run.activity
            assert run.entry is not None and run.start is not None
            if run.entry.popen.poll() is not None:
                _finish(lab, run, "finished")
                running.remove(run)
            elif not act.background and time.monotonic() - run.entry.started > act.timeout:
                _finish(lab, run, "timeout")  # masscan may never exit after --wait (upstream bug)
                running.remove(run)
        one_shots_left = pending or any(not r.activity.background for r in running)
        if (not one_shots_left and now >= scen.min_duration) or now >= scen.max_duration:
            break
        time.sleep(0.05)
    for run in running:
        _finish(lab, run, "stopped" if run.activity.background else "timeout")
    for run in pending:
        run.status = "not started"


def _log_output(registry: ProcessRegistry, run: ActivityRun, tmp: Path) -> None:
    path = tmp / f"{run.activity.id}.out"
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    registry._log(f"activity {run.activity.id} status={run.status} rc={run.exit_code} pid={run.pid} "
                  f"start={run.start:%H:%M:%S.%f} end={run.end:%H:%M:%S.%f} output ({len(lines)} lines):")
    for ln in lines[-8:]:
        registry._log(f"    | {ln[:200]}")


def _read_and_label(capture: Path, gt: pd.DataFrame, scenario: str, registry: ProcessRegistry) -> pd.DataFrame | None:
    from ...io import available_formats, read

    if "pcap" not in set(available_formats()["format"]):
        registry._log("the pcap reader is not available: connections.parquet not written")
        return None
    conns = read(capture, format="pcap")
    report = conns.attrs.get("read_report")
    registry._log(f"read {capture.name}: {report}")
    labelled = label_connections(conns, gt, scenario=scenario)
    return labelled


def label_directory(out_dir: str | os.PathLike, scenario: str | None = None) -> pd.DataFrame:
    """Read a lab directory's ``capture.pcap``, label it from ``ground_truth.csv`` and write
    ``connections.parquet`` (no root needed: this redoes only the last step of :func:`run_lab`).

    Returns the labelled frame.
    """
    from ...io import read
    from .groundtruth import read_ground_truth

    out = Path(out_dir)
    gt = read_ground_truth(out / "ground_truth.csv")
    if scenario is None:
        scenario = _scenario_from_log(out / "lab.log")
    conns = read(out / "capture.pcap", format="pcap")
    labelled = label_connections(conns, gt, scenario=scenario)
    labelled.to_parquet(out / "connections.parquet", index=False)
    return labelled


def _scenario_from_log(path: Path) -> str:
    if path.exists():
        for line in path.read_text(errors="replace").splitlines()[:5]:
            if " scenario " in line:
                return line.split(" scenario ", 1)[1].split(":", 1)[0].strip()
    raise ValueError(f"cannot tell the scenario from {path}; pass scenario=")
